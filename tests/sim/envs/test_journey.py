"""ShopperJourney-v0 and its driver: journeys on their own clocks, the engine's rules, incentives, endings."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

import sim
import sim.journeys
from sim.engine import Simulation
from sim.envs.journey import OBS_FIELDS, ShopperJourneyEnv
from sim.incentives import IncentiveCatalog
from sim.journeys import DONE, JourneyBatch
from sim.metrics import summarize
from sim.params import Scenario, load_scenario

SCENARIO = "configs/scenarios/default.yaml"
Decide = Callable[[JourneyBatch, np.ndarray], np.ndarray]


def _none(batch: JourneyBatch, rows: np.ndarray) -> np.ndarray:
    return np.zeros(rows.size, dtype=np.int64)


def run_journeys(
    scenario: Scenario, n: int, days: int, seed: int, decide: Decide = _none, signal: float = 0.0
) -> JourneyBatch:
    """``n`` journeys, row ``i`` drawn from ``default_rng([seed, i])``, run to their ends under ``decide``."""
    batch = JourneyBatch(scenario, n, days, neighbour_signal=signal)
    rows = np.arange(n)
    batch.reset_rows(rows, [np.random.default_rng([seed, i]) for i in range(n)])
    batch.advance(rows)
    while (waiting := rows[batch.phase != DONE]).size:
        batch.submit(waiting, decide(batch, waiting))
        batch.advance(waiting)
    return batch


def _fingerprint(batch: JourneyBatch, rows: np.ndarray) -> list[np.ndarray]:
    """Every per-row array of the shoppers' state and ledger, for exact comparisons."""
    pop = batch.pop
    state = [value[rows] for value in vars(pop).values() if isinstance(value, np.ndarray)]
    return [*state, batch.ledger.lines[:, rows], batch.ledger.margin_pv[rows], batch.end_hours[rows]]


def _coupon_sometimes(batch: JourneyBatch, rows: np.ndarray) -> np.ndarray:
    """An incentive-rich policy that depends only on each row's own state (so it is batch-invariant)."""
    pop = batch.pop
    return np.where((pop.visits[rows] + pop.orders[rows]) % 3 == 0, 1 + (pop.visits[rows] % 6), 0)


# ---- one driver, the same trajectory in any batch -------------------------------------------------
def test_a_journey_is_bit_identical_alone_and_in_a_batch_of_any_size():
    scenario = load_scenario(SCENARIO)
    together = run_journeys(scenario, 9, 365, seed=4, decide=_coupon_sometimes, signal=1.0)
    for i in (0, 4, 8):
        alone = JourneyBatch(scenario, 1, 365, neighbour_signal=1.0)
        row = np.zeros(1, dtype=np.int64)
        alone.reset_rows(row, [np.random.default_rng([4, i])])
        alone.advance(row)
        while alone.phase[0] != DONE:
            alone.submit(row, _coupon_sometimes(alone, row))
            alone.advance(row)
        for a, b in zip(_fingerprint(alone, row), _fingerprint(together, np.array([i])), strict=True):
            np.testing.assert_array_equal(a, b)
    assert together.pop.incentives_received.sum() > 0 and together.pop.orders.sum() > 9


def test_looking_ahead_over_quiet_days_gives_exactly_the_day_by_day_trajectory(
    monkeypatch: pytest.MonkeyPatch,
):
    scenario = load_scenario(SCENARIO)
    ahead = run_journeys(scenario, 40, 365, seed=5, decide=_coupon_sometimes)
    monkeypatch.setattr(sim.journeys, "_LOOKAHEAD_DAYS", 1)  # one day at a time: no stretch skipped
    daily = run_journeys(scenario, 40, 365, seed=5, decide=_coupon_sometimes)
    rows = np.arange(40)
    for a, b in zip(_fingerprint(ahead, rows), _fingerprint(daily, rows), strict=False):
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-9, atol=1e-9)


def test_a_copied_journey_with_her_key_continues_exactly_as_she_does():
    scenario = load_scenario(SCENARIO)
    her = run_journeys(scenario, 1, 365, seed=6)  # to the end: the reference
    replay = JourneyBatch(scenario, 1, 365, neighbour_signal=0.0)
    row = np.zeros(1, dtype=np.int64)
    replay.reset_rows(row, [np.random.default_rng([6, 0])])
    replay.advance(row)
    for _ in range(3):  # three decisions in, copy her into three rows
        replay.submit(row, np.zeros(1, dtype=np.int64))
        replay.advance(row)
    copies = JourneyBatch(scenario, 3, 365, neighbour_signal=0.0)
    copies.copy_rows(replay, 0)
    rows = np.arange(3)
    while (waiting := rows[copies.phase != DONE]).size:
        copies.submit(waiting, np.zeros(waiting.size, dtype=np.int64))
        copies.advance(waiting)
    for i in rows:
        for a, b in zip(
            _fingerprint(her, np.zeros(1, dtype=np.int64)), _fingerprint(copies, np.array([i])), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    copies.copy_rows(replay, 0)
    copies.rekey(rows, np.array([1, 2, 3], dtype=np.uint64))  # new futures part ways
    while (waiting := rows[copies.phase != DONE]).size:
        copies.submit(waiting, np.zeros(waiting.size, dtype=np.int64))
        copies.advance(waiting)
    assert len({float(v) for v in copies.ledger.margin_pv}) > 1


def test_a_rare_visitors_decade_costs_driver_steps_by_her_events_not_her_days(
    monkeypatch: pytest.MonkeyPatch,
):
    """Quiet stretches are looked ahead in one step: day starts handled stay near her events' count."""
    scenario = load_scenario(SCENARIO, {"population.purchase.r": 0.05})  # mostly very rare shoppers
    handled = []
    start_day = JourneyBatch._start_day

    def counting(self: JourneyBatch, rows: np.ndarray) -> None:
        handled.append(rows.size)
        start_day(self, rows)

    monkeypatch.setattr(JourneyBatch, "_start_day", counting)
    batch = run_journeys(scenario, 200, 3650, seed=3)
    pop = batch.pop
    events = int(pop.visits.sum() + pop.orders.sum() + pop.deliveries.sum() + pop.returns.sum())
    days = batch.end_hours.sum() / 24.0
    # A few day starts per event and one per look-ahead window of quiet days, not one per day.
    assert sum(handled) < 3 * (events + 200) + days / sim.journeys._LOOKAHEAD_DAYS
    assert sum(handled) < 0.1 * days  # an order of magnitude fewer than her days


# ---- the two clocks on the same rules -----------------------------------------------------------
#: Queue-free fulfillment in the engine (capacity far above demand) and no social proof on either side.
CONSISTENCY = {
    "population.shoppers": 3000,
    "population.acquisition_days": 0.0,
    "warehouse.pick_capacity_per_1k_shoppers": 100_000.0,
    "shipping.carrier_capacity_per_1k_shoppers": 100_000.0,
    "mechanisms.social.proof_weight": 0.0,
    "mechanisms.tiers.inflation": 0.0,
}


def test_none_policy_journeys_and_the_population_clock_agree_on_orders_abandonment_and_churn():
    """With no incentives, 3,000 journeys and 3,000 engine shoppers over 180 days agree.

    Both clocks call the same rules (:class:`sim.shop.Shop`) and differ only in what a shared
    clock has: session batches (decisions at the batch's end) and the warehouse, here given
    capacity far above demand; social proof and tier inflation are off on both sides. The
    draws differ (engine streams, journey keys), so the comparison is statistical: about 3
    standard errors of the difference, which shopper heterogeneity makes large.
    """
    scenario = load_scenario(SCENARIO, CONSISTENCY)
    days = 180
    engine = summarize(Simulation(scenario, seed=7, horizon_days=days, log_level="aggregates").run())
    batch = run_journeys(scenario, 3000, days, seed=8)
    pop, n = batch.pop, 3000
    carts = pop.carts.sum()
    converted = carts - pop.carts_abandoned.sum() + pop.carts_recovered.sum()
    assert pop.orders.mean() == pytest.approx(engine["orders"] / engine["shoppers"], rel=0.10)
    assert pop.visits.mean() == pytest.approx(engine["visits"] / engine["shoppers"], rel=0.10)
    # Abandonment is a ratio of two heavy-tailed sums: seed pairs differ by -0.019 to +0.031.
    assert 1.0 - converted / carts == pytest.approx(engine["cart_abandonment_rate"], abs=0.035)
    assert pop.alive.mean() == pytest.approx(engine["active_share"], abs=0.04)
    ended_early = batch.end_hours < days * 24.0
    assert (ended_early == ~pop.alive).all()  # a journey ends before the horizon only at churn
    late = pop.late_deliveries.sum() / pop.deliveries.sum()
    assert late == pytest.approx(engine["late_delivery_share"], abs=0.015)  # the same queue-free schedule
    returned = pop.returns.sum() / pop.deliveries.sum()
    assert returned == pytest.approx(engine["returns_share"], abs=0.02)
    assert n == pop.size


def test_coupon_policy_journeys_and_the_population_clock_agree_on_orders_costs_and_survival():
    """The same comparison with an incentive: coupon_10 at every abandoned cart, on both clocks."""
    scenario = load_scenario(SCENARIO, CONSISTENCY)
    coupon = [i.name for i in scenario.incentives].index("coupon_10")
    days = 180

    def engine_policy(batch: object) -> np.ndarray:
        return np.full(batch.shoppers.size, coupon if batch.kind == "cart_abandoned" else 0)  # type: ignore[attr-defined]

    def journey_policy(batch: JourneyBatch, rows: np.ndarray) -> np.ndarray:
        return np.array([coupon if batch.pending_kind(int(r)) == "cart_abandoned" else 0 for r in rows])

    engine = summarize(
        Simulation(scenario, seed=7, horizon_days=days, log_level="aggregates").run(engine_policy)
    )
    batch = run_journeys(scenario, 3000, days, seed=8, decide=journey_policy)
    pop = batch.pop
    assert pop.orders.mean() == pytest.approx(engine["orders"] / engine["shoppers"], rel=0.10)
    cost = batch.ledger.lines[2].sum() / 100.0 / pop.size
    assert cost == pytest.approx(engine["incentive_cost"] / engine["shoppers"], rel=0.15)
    assert pop.alive.mean() == pytest.approx(engine["active_share"], abs=0.04)


def test_coupon_at_an_abandoned_cart_raises_its_recovery_by_more_than_a_fifth():
    scenario = load_scenario(SCENARIO, {"engine.decision_points": ["cart_abandoned"]})
    coupon = IncentiveCatalog(scenario).names.index("coupon_20")

    def recovery(action: int) -> float:
        pop = run_journeys(scenario, 600, 365, seed=9, decide=lambda b, rows: np.full(rows.size, action)).pop
        return float(pop.carts_recovered.sum() / pop.carts_abandoned.sum())

    none, with_coupon = recovery(0), recovery(coupon)
    # Only the quarter of shoppers who come back decide again, so recovery is at most 0.25.
    assert 0.01 < none < with_coupon < 0.25
    # On average over the uplift classes: persuadables' recovery rises by more than half
    # (tests/sim/test_causal.py), sure things' and lost causes' barely moves.
    assert with_coupon > 1.2 * none


# ---- the environment ------------------------------------------------------------------------------
def test_masks_follow_eligibility_and_the_budget_and_over_budget_actions_are_not_given():
    env = ShopperJourneyEnv(incentive_budget=15.0)
    names = env.catalog.names
    obs, _ = env.reset(seed=2)
    assert obs.shape == (len(OBS_FIELDS),) and env.observation_space.contains(obs)
    mask = env.action_masks()
    assert mask[0] and mask[names.index("coupon_10")]
    assert not mask[names.index("tier_perk")]  # a new shopper is tier 0
    assert not mask[names.index("streak_freeze")] and not mask[names.index("streak_bonus_200")]
    info = env.step(names.index("tier_perk"))[4]
    assert not info["given"]  # ineligible: not given
    coupon, spent_out, seed = names.index("coupon_20"), False, 2
    for _ in range(3000):
        if env.task.budget_left(np.zeros(1, dtype=np.int64))[0] <= 0:
            spent_out = True
            assert env.action_masks().tolist() == [True] + [False] * (len(names) - 1)
            _, _, terminated, truncated, info = env.step(coupon)
            assert not info["given"]  # (an offer given earlier may still be redeemed)
        else:
            _, _, terminated, truncated, info = env.step(coupon)
        if terminated or truncated:
            # One coupon given before the budget ran out may still be redeemed (20% of a basket,
            # up to ~$30 on the largest), and loyalty points she redeems later count as incentive
            # cost too; nothing is given after (asserted above).
            assert info["episode_metrics"]["incentive_cost"] <= 15.0 + 60.0
            seed += 1
            env.reset(seed=seed)
    assert spent_out


def _residual(env: ShopperJourneyEnv) -> float:
    task, row = env.task, np.zeros(1, dtype=np.int64)
    return float(task.objective_state(row)[0, 1] - task.batch.ledger.margin_pv[0])


def test_episode_terminates_at_churn_with_the_residual_value_gone():
    env = gym.make("shopgym/ShopperJourney-v0", objective_weights={"ltv": 1.0}, reward_scale=1.0)
    churned = 0
    for seed in range(40):
        env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            _, _, terminated, truncated, info = env.step(0)
        episode = info["episode_metrics"]
        assert terminated and not truncated  # the horizon is part of the task: it terminates too
        if episode["churned"]:
            churned += 1
            assert not info["alive"] and _residual(env.unwrapped) == 0.0
            assert info["ltv"] == pytest.approx(episode["ltv_realized"])  # LTV is the realized part only
            assert episode["days"] < 365
        else:
            assert info["alive"] and _residual(env.unwrapped) > 0.0 and episode["days"] == 365
    assert 5 < churned < 40


def test_churn_costs_the_ltv_objective_her_whole_residual_value_at_once():
    """The step in which she churns loses her residual value: LTV change = realized change - residual."""
    drops, residuals = [], []
    env = ShopperJourneyEnv(reward_scale=1.0, objective_weights={"ltv": 1.0})
    ledger = env.task.batch.ledger
    for seed in range(60):
        env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            realized, residual = float(ledger.margin_pv[0]), _residual(env)
            was_alive = bool(env.task.batch.pop.alive[0])  # (a lifetime may end before her first decision)
            _, reward, terminated, truncated, info = env.step(0)
            if was_alive and not info["alive"]:
                assert reward == pytest.approx(ledger.margin_pv[0] - realized - residual)
                drops.append(reward)
                residuals.append(residual)
                break
    assert len(drops) > 10 and min(residuals) > 0.0 and np.mean(drops) < -20.0


def test_reward_is_the_weighted_objective_vector():
    def run(weights: dict[str, float]) -> tuple[float, dict[str, float]]:
        env = ShopperJourneyEnv(reward_scale=1.0, objective_weights=weights)
        total, objective = 0.0, dict.fromkeys(("margin", "ltv", "load", "budget"), 0.0)
        for seed in range(5):
            env.reset(seed=seed)
            done = False
            while not done:
                _, reward, terminated, truncated, info = env.step(1)  # coupon_10 always
                total += reward
                objective = {k: objective[k] + v for k, v in info["objective"].items()}
                done = terminated or truncated
        return total, objective

    margin_reward, objective = run({"margin": 1.0})
    mixed_reward, _ = run({"margin": 1.0, "ltv": 0.5, "load": -2.0, "budget": -1.0})
    assert margin_reward == pytest.approx(objective["margin"]) and objective["budget"] > 0
    expected = objective["margin"] + 0.5 * objective["ltv"] - 2.0 * objective["load"] - objective["budget"]
    assert mixed_reward == pytest.approx(expected)


def test_rollout_values_rank_incentives_by_her_true_future_and_pair_them_by_common_random_numbers():
    env = ShopperJourneyEnv(reward_scale=1.0)
    env.reset(seed=3)
    incentives = np.arange(env.n_actions)
    values = env.rollout_values(16, incentives)
    assert values.shape == (env.n_actions,) and np.isfinite(values).all()
    np.testing.assert_array_equal(values, env.rollout_values(16, incentives))  # reproducible
    ineligible = ~env.action_masks()
    np.testing.assert_array_equal(values[ineligible], values[0])  # not given: the same future as none


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="decision_points"):
        ShopperJourneyEnv(decision_points=("checkout",))
    with pytest.raises(ValueError, match="horizon_days"):
        ShopperJourneyEnv(horizon_days=0)
    with pytest.raises(ValueError, match="objective_weights"):
        ShopperJourneyEnv(objective_weights={"joy": 1.0})
    with pytest.raises(ValueError, match="neighbour_signal"):
        ShopperJourneyEnv(neighbour_signal=-1.0)
    env = ShopperJourneyEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step(len(IncentiveCatalog(env.scenario)))


# ---- what the shop earns from her: friends she referred, parcels in flight when she leaves ---------
def test_friends_she_referred_are_credited_with_a_referred_shoppers_expected_worth():
    scenario = load_scenario(SCENARIO, {"population.referral_propensity": {"a": 5.0, "b": 5.0}})
    referral = [i.name for i in scenario.incentives].index("referral_10")
    batch = run_journeys(scenario, 400, 120, seed=3, decide=lambda b, rows: np.full(rows.size, referral))
    rows = np.arange(400)
    referred = batch.friends_referred[rows]
    assert referred.sum() > 100
    worth = sim.journeys.referred_friend_worth(scenario)
    # Each friend is worth her first order plus her future to the horizon: between these bounds.
    low, high = worth.over(np.array([0.0, 120.0]))
    credit = batch.referred_margin[rows]
    assert ((credit >= referred * low - 1e-9) & (credit <= referred * high + 1e-9)).all()
    assert (batch.referred_ltv[rows] > batch.referred_margin_pv[rows])[referred > 0].all()
    task_margin = batch.margin_cents(rows) / 100.0 + credit  # what the journey's margin objective holds
    from sim.envs.journey_task import _objectives

    np.testing.assert_allclose(_objectives(batch, rows, np.zeros(400))[:, 0], task_margin)


def test_parcels_in_flight_when_she_churns_are_still_delivered_and_returned():
    # Frequent buyers with short lives and no win-back to wait for: many leave with a parcel on
    # its way, and their journeys end at their churn.
    scenario = load_scenario(
        SCENARIO,
        {
            "mechanisms.churn.late_delivery_churn": 0.0,
            "mechanisms.churn.winback_ceiling": 0.0,
            "population.purchase.alpha_weeks": 1.0,
            "population.lifetime.beta_weeks": 0.5,
        },
    )
    batch = run_journeys(scenario, 600, 200, seed=5)
    n = batch.orders.size
    cols = batch.orders.cols
    placed, shopper = cols["placed_at"][:n], cols["shopper"][:n]
    ended_early = batch.end_hours < 190 * 24
    # Orders placed within three days of her journey's end arrive after it: they are delivered.
    in_flight = ended_early[shopper] & (batch.end_hours[shopper] - placed < 3 * 24)
    assert in_flight.sum() > 5
    assert np.isfinite(cols["delivered_at"][:n][in_flight]).all()
    # Only parcels the horizon cuts off stay undelivered.
    assert (placed[~np.isfinite(cols["delivered_at"][:n])] > 195 * 24).all()
