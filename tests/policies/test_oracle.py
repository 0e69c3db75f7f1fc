"""The privileged oracle and the causal world it measures, on each environment's default scenario.

Five seeds each, every policy facing the same shoppers and draws (episode seeds shared: common
random numbers), differences paired episode by episode with a 95% t interval over the paired
episodes (one whole shop per seed; many independent one-shopper journeys per seed). These are the issue's
acceptance tests for a world where incentives have real, heterogeneous effects: the oracle
(which reads the true model) beats doing nothing, a coupon for everyone does not pay, and the
same coupon given only to persuadables pays.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sim  # noqa: F401  (registers the environments)
from policies.evaluate import episode_frame, evaluate
from policies.registry import load_policy, make_policy
from sim.engine import DecisionBatch, Simulation
from sim.metrics import summarize
from sim.params import load_scenario
from sim.population import UPLIFT_CLASSES

SEEDS = range(5)
#: Seeds per environment: a whole shop per seed on IncentiveTargeting, where the blanket coupon's
#: LTV effect (-$0.46 +- 0.38 per shopper over 8 seeds) needs more than five to be resolved.
ENV_SEEDS = {"shopgym/IncentiveTargeting-v0": range(8)}
PERSUADABLE = UPLIFT_CLASSES.index("persuadable")
#: Evaluation episodes per seed: many one-shopper journeys, one whole shop otherwise.
EPISODES = {
    "shopgym/ShopperJourney-v0": 400,
    "shopgym/IncentiveTargeting-v0": 1,
    "shopgym/CampaignPlanning-v0": 1,
}


class CouponToPersuadables:
    """Gives coupon_10 at abandoned carts to persuadables only, read from the true traits."""

    name = "coupon_to_persuadables"

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.base = env.unwrapped
        self.coupon = self.base.scenario.incentives.index(
            next(i for i in self.base.scenario.incentives if i.name == "coupon_10")
        )

    def predict(self, observation: Any, **_: Any) -> tuple[np.ndarray, None]:
        base = self.base
        if hasattr(base, "task"):  # ShopperJourney: her row of the journey batch
            persuadable = base.task.batch.pop.uplift_class[0] == PERSUADABLE
            abandoned = base.task.batch.pending_kind(0) == "cart_abandoned"
        else:
            shopper = base._batch.shoppers[base._position]
            persuadable = base._sim.pop.uplift_class[shopper] == PERSUADABLE
            abandoned = base._batch.kind == "cart_abandoned"
        return np.asarray(self.coupon if persuadable and abandoned else 0), None

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


def _per_seed(env_id: str, make: Any, metric: str) -> np.ndarray:
    """``metric`` of every evaluated episode, seeds in order (episode k of seed s: seed 1000 s + k)."""
    return _episodes(env_id, make)[metric].to_numpy(dtype=np.float64)


@functools.cache
def _episodes(env_id: str, make: Any) -> pd.DataFrame:
    """Every evaluated episode of one policy (cached: several tests compare against the same runs)."""
    env = gym.make(env_id)
    frames = [
        episode_frame(evaluate(make(env), env, EPISODES[env_id], seed=1000 * seed, learn=False))
        for seed in ENV_SEEDS.get(env_id, SEEDS)
    ]
    env.close()
    return pd.concat(frames, ignore_index=True)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of ``a - b`` over paired episodes and the half-width of its 95% t interval."""
    diff = a - b
    return float(diff.mean()), float(
        stats.t.ppf(0.975, diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size)
    )


def _none(env: gym.Env[Any, Any]) -> Any:
    return make_policy("none", env)


def _oracle(env: gym.Env[Any, Any]) -> Any:
    return make_policy("oracle", env)


def _blanket(env: gym.Env[Any, Any]) -> Any:
    return make_policy("blanket", env, incentive="coupon_10")


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(EPISODES))
def test_oracle_beats_none_on_the_objective_by_at_least_five_percent_with_the_ci_above_zero(env_id: str):
    none, oracle = _per_seed(env_id, _none, "return"), _per_seed(env_id, _oracle, "return")
    gain, half = _paired(oracle, none)
    assert gain - half > 0.0
    assert gain >= 0.05 * abs(none.mean())


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["shopgym/ShopperJourney-v0", "shopgym/CampaignPlanning-v0"])
def test_blanket_ten_percent_coupon_does_not_pay(env_id: str):
    """On margin per journey; on the shop's LTV in CampaignPlanning, where the loss is resolved.

    Habit, cross-buying, the price image and a coupon given at her first session pay some of a
    coupon's subsidy back: an order it brings forms habit and may open a category, and a new
    shopper learns the shop is a good deal. On ShopperJourney the coupon's margin effect is
    -$0.95 +- 1.43 per journey over 5 x 1,000 journeys (docs/FINDINGS.md; -$1.94 +- 1.53 over
    5 x 400 before issue 25): a loss as a point estimate, and the CI rules out any gain worth 5%
    of a journey's margin. In IncentiveTargeting's default shop it breaks even on margin (+$90 +-
    548 of shop margin) and loses LTV (-$1.8 +- 1.4 per shopper) over 5 shops: not resolved at a
    unit test's size, so not asserted.
    """
    metric = "margin" if env_id == "shopgym/ShopperJourney-v0" else "ltv_mean"
    none, blanket = _per_seed(env_id, _none, metric), _per_seed(env_id, _blanket, metric)
    loss, half = _paired(blanket, none)
    if env_id == "shopgym/CampaignPlanning-v0":
        assert loss + half < 0.0
    else:
        assert loss < 0.0 and loss + half < 0.05 * abs(none.mean())


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["shopgym/ShopperJourney-v0", "shopgym/IncentiveTargeting-v0"])
def test_coupons_targeted_at_persuadables_beat_none_and_blanket_coupons_on_margin(env_id: str):
    targeted = _per_seed(env_id, CouponToPersuadables, "margin")
    for other in (_none, _blanket):
        gain, half = _paired(targeted, _per_seed(env_id, other, "margin"))
        assert gain - half > 0.0


@pytest.mark.slow
def test_coupons_targeted_at_persuadables_pay_in_the_campaign_planners_peak_season_shop():
    """CampaignPlanning acts per segment, not per shopper: the comparison on its scenario, via the engine."""
    scenario = load_scenario("configs/scenarios/peak_season.yaml")
    coupon = [i.name for i in scenario.incentives].index("coupon_10")

    def margin(rule: str, seed: int) -> float:
        shop = Simulation(scenario, seed=seed, horizon_days=90, log_level="aggregates")

        def decide(batch: DecisionBatch) -> np.ndarray:
            if rule == "none" or batch.kind != "cart_abandoned":
                return np.zeros(batch.shoppers.size, dtype=np.int64)
            persuadable = shop.pop.uplift_class[batch.shoppers] == PERSUADABLE
            return np.where(persuadable | (rule == "blanket"), coupon, 0)

        return float(summarize(shop.run(decide))["margin"])

    runs = {
        rule: np.array([margin(rule, seed) for seed in SEEDS]) for rule in ("none", "blanket", "targeted")
    }
    for other in ("none", "blanket"):
        gain, half = _paired(runs["targeted"], runs[other])
        assert gain - half > 0.0


def test_oracle_is_a_measuring_stick_not_an_artifact(tmp_path):
    env = gym.make("shopgym/ShopperJourney-v0")
    oracle = make_policy("oracle", env)
    env.reset(seed=0)
    action, _ = oracle.predict(np.zeros(1), action_masks=env.unwrapped.action_masks())
    assert 0 <= int(action) < env.action_space.n
    oracle.save(tmp_path)
    with pytest.raises(ValueError, match="cannot be exported or loaded"):
        load_policy(tmp_path)
    with pytest.raises(ValueError, match="pass the env"):
        from policies.base import env_spec

        make_policy("oracle", env_spec(env))


def test_oracle_contacts_alive_sleeping_dogs_far_less_than_persuadables():
    """A contact can cost a sleeping dog's future; only near the episode's end is that worth less."""
    # Every offer a fresh contact (the old rule), so any decision's contact can cost a sleeping dog.
    every_offer = {"mechanisms.churn.reactive_contact_share": 1.0, "mechanisms.churn.contact_saturation": 1.0}
    env = gym.make("shopgym/ShopperJourney-v0", overrides=every_offer)
    oracle = make_policy("oracle", env)
    decisions, given = np.zeros(4), np.zeros(4)
    for seed in range(80):
        env.reset(seed=seed)
        her = env.unwrapped.task.batch.pop
        done = False
        while not done:
            action, _ = oracle.predict(np.zeros(1), action_masks=env.unwrapped.action_masks())
            if her.alive[0]:
                decisions[her.uplift_class[0]] += 1
                given[her.uplift_class[0]] += int(action) > 0
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    share = given / np.maximum(decisions, 1)
    sleeping_dog, persuadable = UPLIFT_CLASSES.index("sleeping_dog"), PERSUADABLE
    assert decisions[sleeping_dog] > 50 and share[persuadable] > 0.3
    assert share[sleeping_dog] < share[persuadable] / 5


def _journey_returns(env: Any, seed: int, probe: bool) -> list[float]:
    """One episode under none; with ``probe``, rollouts are asked for at every decision."""
    env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        if probe:
            values = env.unwrapped.rollout_values(3, np.array([0, 1, 2]))
            assert values.shape == (3,) and np.isfinite(values).all()
        _, reward, terminated, truncated, _ = env.step(0)
        rewards.append(reward)
        done = terminated or truncated
    return rewards


def test_rollouts_replay_her_journey_without_touching_the_live_episode():
    env = gym.make("shopgym/ShopperJourney-v0", horizon_days=120)
    for seed in (0, 1, 2):
        assert _journey_returns(env, seed, probe=True) == _journey_returns(env, seed, probe=False)


def test_rollouts_pair_the_arms_by_common_random_numbers():
    """Identical arms get identical futures (common random numbers across the arms)."""
    env = gym.make("shopgym/ShopperJourney-v0", horizon_days=120)
    env.reset(seed=4)
    values = env.unwrapped.rollout_values(6, np.array([0, 0]))
    assert values[0] == values[1]  # common random numbers: identical arms give identical futures


def test_the_rollout_oracle_plans_on_shopper_journey_only_and_checks_its_arguments():
    journey = gym.make("shopgym/ShopperJourney-v0", horizon_days=60)
    oracle = make_policy("oracle_rollout", journey, seed=0, replicates=4)
    obs, _ = journey.reset(seed=0)
    action, _ = oracle.predict(obs, action_masks=journey.unwrapped.action_masks())
    assert journey.unwrapped.action_masks()[int(action)]
    with pytest.raises(ValueError, match="replicates must be an integer in \\[2, 256\\]"):
        make_policy("oracle_rollout", journey, seed=0, replicates=1)
    with pytest.raises(ValueError, match="takes only replicates"):
        make_policy("oracle_rollout", journey, seed=0, depth=3)
    targeting = gym.make(
        "shopgym/IncentiveTargeting-v0", overrides={"population.shoppers": 200}, horizon_days=10
    )
    with pytest.raises(ValueError, match="replays one shopper's journey"):
        make_policy("oracle_rollout", targeting, seed=0)


def test_oracle_gives_every_segment_none_on_a_day_without_decisions():
    """A small shop has quiet days; a multi-head action must still have one entry per segment."""
    env = gym.make(
        "shopgym/CampaignPlanning-v0",
        scenario="configs/scenarios/default.yaml",  # acquisitions spread over the year: quiet days
        horizon_days=10,
        overrides={"population.shoppers": 1000},
    )
    oracle = make_policy("oracle", env)
    env.reset(seed=0)
    quiet = 0
    for _ in range(10):
        quiet += env.unwrapped.oracle_view().kinds.size == 0
        action, _ = oracle.predict(np.zeros(1))
        assert np.shape(action) == env.action_space.shape
        *_, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert quiet > 0


def _small_campaign(**kwargs: Any) -> gym.Env[Any, Any]:
    return gym.make(
        "shopgym/CampaignPlanning-v0",
        overrides={
            "population.shoppers": 300,
            "sessions.peaks": [{"start_day": 4, "days": 2, "visit_multiplier": 3.0}],
        },
        horizon_days=8,
        **kwargs,
    )


def test_campaign_rollouts_run_the_episodes_own_shoppers_through_fresh_futures():
    env = _small_campaign()
    env.reset(seed=3)
    base = env.unwrapped
    assert base.phases().tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    plans = np.zeros((3, 2, 5), dtype=np.int64)
    plans[2] = [i.name for i in base.scenario.incentives].index("coupon_20")
    values = base.rollout_plans(plans, 2)
    assert values[0] == values[1]  # identical plans, identical futures (common random numbers)
    assert values[2] != values[0]
    assert np.array_equal(base.rollout_plans(plans, 2), values)  # reproducible
    # The same shoppers, another future: the population matches the episode's, the outcome differs.
    episode = base._sim
    fork = Simulation(base.scenario, seed=episode.seed, horizon_days=8, future_seed=99)
    assert np.array_equal(fork.pop.acquired_at, episode.pop.acquired_at)
    assert np.array_equal(fork.pop.visit_prob, episode.pop.visit_prob)
    while env.step(np.zeros(5, dtype=np.int64))[3] is False:
        pass
    fork.run()
    assert fork.ledger.totals_cents()["revenue"] != episode.ledger.totals_cents()["revenue"]
    with pytest.raises(RuntimeError, match="plans from the start"):
        base.rollout_plans(plans, 1)


def test_the_planning_oracle_follows_its_plan_and_checks_its_arguments():
    env = _small_campaign()
    oracle = make_policy("oracle_plan", env, seed=0, sweeps=1)
    obs, _ = env.reset(seed=1)
    first, _ = oracle.predict(obs)
    plan = oracle._plan[1]
    assert np.array_equal(first, plan[0])
    action = first
    for day in range(1, 8):
        obs, *_ = env.step(action)
        action, _ = oracle.predict(obs)
        assert np.array_equal(action, plan[env.unwrapped.phases()[day]])
    # The search starts from the best blanket plan and keeps only improvements.
    env.reset(seed=1)
    blanket = np.broadcast_to(np.arange(13)[:, None, None], (13, 2, 5))
    best_blanket = env.unwrapped.rollout_plans(blanket, 1).max()
    assert env.unwrapped.rollout_plans(plan[None], 1)[0] >= best_blanket
    with pytest.raises(ValueError, match="sweeps must be an integer in \\[1, 8\\]"):
        make_policy("oracle_plan", env, seed=0, sweeps=0)
    with pytest.raises(ValueError, match="takes only replicates and sweeps"):
        make_policy("oracle_plan", env, seed=0, depth=3)
    journey = gym.make("shopgym/ShopperJourney-v0", horizon_days=60)
    with pytest.raises(ValueError, match="plans a whole episode by rollouts"):
        make_policy("oracle_plan", journey, seed=0)


def _small_targeting(horizon_days: int = 20) -> gym.Env[Any, Any]:
    return gym.make(
        "shopgym/IncentiveTargeting-v0",
        overrides={"population.shoppers": 300, "population.acquisition_days": 5.0},
        horizon_days=horizon_days,
    )


def test_targeting_plans_give_each_decision_kind_and_true_class_an_incentive_or_the_lookahead():
    env = _small_targeting()
    base = env.unwrapped
    names = [i.name for i in base.scenario.incentives]
    obs, info = env.reset(seed=3)
    rows, columns, options = base.plan_shape()
    assert (rows, columns, options) == (3, len(UPLIFT_CLASSES), len(names) + 1)
    lookahead = options - 1
    plans = np.zeros((3, rows, columns), dtype=np.int64)
    plans[1] = lookahead
    plans[2] = names.index("referral_10")
    # Rollouts are reproducible and compare plans on the same futures.
    values = base.rollout_plans(plans, 2)
    assert np.array_equal(values, base.rollout_plans(plans, 2))
    assert len(set(values.tolist())) == 3
    # A mixed plan is followed step by step: a cell's incentive where she may have it (else none),
    # and the one-step oracle's own choice where the cell defers to the lookahead.
    plan = np.full((rows, columns), lookahead, dtype=np.int64)
    plan[:, UPLIFT_CLASSES.index("persuadable")] = names.index("coupon_10")
    plan[:, UPLIFT_CLASSES.index("sleeping_dog")] = 0
    one_step = make_policy("oracle", env, seed=0)
    seen: set[str] = set()
    for _ in range(300):
        cell = int(base._sim.pop.uplift_class[info["shopper"]])  # the truth, as the plan reads it
        action = base.plan_action(plan)
        if UPLIFT_CLASSES[cell] == "persuadable":
            expected = names.index("coupon_10") if base.action_masks()[names.index("coupon_10")] else 0
        elif UPLIFT_CLASSES[cell] == "sleeping_dog":
            expected = 0
        else:
            expected = int(one_step.predict(obs, action_masks=base.action_masks())[0])
        assert int(action) == expected
        seen.add(UPLIFT_CLASSES[cell])
        obs, _, _, truncated, info = env.step(action)
        if truncated:
            break
    assert {"persuadable", "sleeping_dog"} <= seen and len(seen) >= 3
    with pytest.raises(RuntimeError, match="plans from the start"):
        base.rollout_plans(plans, 1)
    env.reset(seed=3)
    with pytest.raises(ValueError, match=r"plans must be \(plans, 3, 4\) with options in \[0, 13\]"):
        base.rollout_plans(np.full((1, 3, 4), options, dtype=np.int64), 1)


def test_the_planning_oracle_on_targeting_keeps_the_lookahead_unless_a_plan_beats_it():
    env = _small_targeting(horizon_days=10)
    oracle = make_policy("oracle_plan", env, seed=0, sweeps=1)
    obs, _ = env.reset(seed=5)
    oracle.predict(obs, action_masks=env.unwrapped.action_masks())
    plan = oracle._plan[1]
    env.reset(seed=5)
    options = env.unwrapped.plan_shape()[2]
    blanket = np.broadcast_to(np.arange(options)[:, None, None], (options, 3, 4))
    everywhere = env.unwrapped.rollout_plans(blanket, 1)
    # Its plan is at least as good, on the rollouts, as every blanket incentive and as deferring
    # every decision to the one-step oracle (the last blanket).
    assert env.unwrapped.rollout_plans(plan[None], 1)[0] >= everywhere.max()
