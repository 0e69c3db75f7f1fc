"""ShopperJourney-v0 and its scalar simulation: twins of the mechanisms, the engine, incentives, endings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401  (registers the environments)
from sim.behaviour import checkout_probability, hours_from_uniform, shipping_fee
from sim.economics import daily_discount_rate, expected_order_margin, residual_value
from sim.engine import Simulation
from sim.envs.journey import OBS_FIELDS, ShopperJourneyEnv
from sim.incentives import IncentiveCatalog
from sim.journey import (
    Decision,
    Journey,
    JourneyModel,
    affinity_factor_scalar,
    calibrate_one,
    checkout_probability_scalar,
    draw_traits,
    dropout_probability_scalar,
    expected_order_margin_scalar,
    framed_offer_pull_scalar,
    hour_from_uniform_scalar,
    loss_weight_scalar,
    offer_terms_scalar,
    perk_dropout_relief_scalar,
    prospect_value_scalar,
    residual_value_scalar,
    social_logit_lift_scalar,
    tier_of_scalar,
    tier_progress_scalar,
    topped_up_basket_scalar,
    visit_hazard_multiplier_scalar,
    visit_probability_scalar,
)
from sim.mechanisms.affinity import affinity_factor
from sim.mechanisms.churn import dropout_probability
from sim.mechanisms.prospect import framed_offer_pull, prospect_value
from sim.mechanisms.shipping_threshold import topped_up_basket
from sim.mechanisms.social import social_logit_lift
from sim.mechanisms.streaks import loss_weight, visit_hazard_multiplier
from sim.mechanisms.tiers import downgrade_threat_multiplier, perk_dropout_relief, tier_of, tier_progress
from sim.metrics import summarize
from sim.params import load_scenario
from sim.population import CHANNEL_ORGANIC, calibrate_session_rates, draw_shoppers

SCENARIO = "configs/scenarios/default.yaml"
N = 400  # random inputs per twin


@pytest.fixture(scope="module")
def model() -> JourneyModel:
    return JourneyModel(load_scenario(SCENARIO))


def _close(scalar: Callable[..., Any], columns: list[np.ndarray], expected: np.ndarray) -> None:
    got = np.array([scalar(*row) for row in zip(*columns, strict=True)], dtype=np.float64)
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), rtol=1e-12, atol=1e-12)


# ---- scalar twins equal the vectorized mechanisms on random inputs ------------------------------
def test_scalar_prospect_and_framing_twins_equal_vectorized():
    rng = np.random.default_rng(0)
    x, lam = rng.normal(0, 5, N), rng.lognormal(0.6, 0.4, N)
    framed = rng.random(N) < 0.5
    _close(lambda a, b: prospect_value_scalar(a, b, 0.88, 0.88), [x, lam], prospect_value(x, lam, 0.88, 0.88))
    _close(lambda a, b: prospect_value_scalar(a, b, 0.8, 0.9), [x, lam], prospect_value(x, lam, 0.8, 0.9))
    v = np.abs(x)
    expected = framed_offer_pull(v, framed, lam, 0.88, 0.88)
    _close(lambda a, f, b: framed_offer_pull_scalar(a, bool(f), b, 0.88, 0.88), [v, framed, lam], expected)


def test_scalar_streak_twins_equal_vectorized():
    rng = np.random.default_rng(1)
    streak = rng.integers(0, 30, N)
    frustration, sens, lam = rng.exponential(0.5, N), rng.lognormal(0, 0.5, N), rng.lognormal(0.6, 0.4, N)
    length = streak.astype(np.float64)
    _close(
        lambda a, b: loss_weight_scalar(a, 14.0, 3, b, 0.88, 0.88),
        [length, lam],
        loss_weight(length, 14.0, 3, lam, 0.88, 0.88),
    )
    expected = visit_hazard_multiplier(streak, frustration, sens, lam, 0.4, 14.0, 3, 0.88, 0.88)
    _close(
        lambda s, f, e, b: visit_hazard_multiplier_scalar(int(s), f, e, b, 0.4, 14.0, 3, 0.88, 0.88),
        [streak, frustration, sens, lam],
        expected,
    )
    base, multiplier = rng.random(N), rng.lognormal(0, 0.7, N)
    base[:5] = 1.0  # the engine clamps a certain visitor just below 1
    engine = -np.expm1(multiplier * np.log1p(-np.minimum(base, 1.0 - 1e-12)))
    _close(visit_probability_scalar, [base, multiplier], engine)


def test_scalar_tier_and_churn_twins_equal_vectorized():
    rng = np.random.default_rng(2)
    thresholds = np.array([0.0, 500.0, 2000.0, 10000.0])
    spend = rng.uniform(0, 15000, N)
    tier = tier_of(spend, thresholds)
    _close(lambda s: tier_of_scalar(s, list(thresholds)), [spend], tier)
    _close(
        lambda s, t: tier_progress_scalar(s, int(t), list(thresholds)),
        [spend, tier],
        tier_progress(spend, tier, thresholds),
    )
    qualifying = rng.integers(0, 4, N).astype(np.int8)
    lam = rng.lognormal(0.6, 0.4, N)
    expected = downgrade_threat_multiplier(tier, qualifying, np.ones(N, dtype=bool), lam, 3, 0.5, 0.88)
    from sim.journey import downgrade_threat_scalar

    _close(
        lambda t, q, b: downgrade_threat_scalar(int(t), int(q), b, 3, 0.5, 0.88),
        [tier, qualifying, lam],
        expected,
    )
    shares = np.array([1.0, 0.3, 0.1, 0.02])
    _close(
        lambda t: perk_dropout_relief_scalar(int(t), list(shares), 3, 0.3, 0.5),
        [tier],
        perk_dropout_relief(tier, shares, 3, 0.3, 0.5),
    )
    base, late, delivered = rng.beta(0.8, 2.4, N), rng.random(N) < 0.3, rng.random(N) < 0.7
    frustration = rng.exponential(0.5, N)
    expected = dropout_probability(base, late, delivered, frustration, 1.0, 0.1, 0.5)
    _close(
        lambda b, lt, d, f: dropout_probability_scalar(b, bool(lt), bool(d), f, 1.0, 0.1, 0.5),
        [base, late, delivered, frustration],
        expected,
    )


def test_scalar_checkout_basket_and_hour_twins_equal_vectorized(model: JourneyModel):
    rng = np.random.default_rng(3)
    sens, lam = rng.lognormal(1.2, 0.5, N), rng.lognormal(0.6, 0.4, N)
    reference = rng.uniform(5, 150, N)
    pay = reference * rng.uniform(0.5, 1.6, N)
    pay[:3] = reference[:3] * 1000.0  # so large the engine's probability underflows to 0
    with np.errstate(over="ignore"):
        expected = checkout_probability(0.1, sens, pay, reference, lam)
    _close(
        lambda e, p, r, b: checkout_probability_scalar(0.1, e, p, r, b), [sens, pay, reference, lam], expected
    )
    signal, susc, badge = rng.exponential(1.0, N), rng.beta(2, 5, N), rng.random(N) < 0.2
    expected = social_logit_lift(signal, susc, badge, 0.29, 1.0, 1.0, 0.25)
    _close(
        lambda s, c, b: social_logit_lift_scalar(s, c, bool(b), 0.29, 1.0, 1.0, 0.25),
        [signal, susc, badge],
        expected,
    )
    basket, u = rng.uniform(20, 60, N), rng.random(N)
    expected = topped_up_basket(basket, u, 5.99, 50.0, 0.5, 2.0, 8.0)
    _close(lambda b, v: topped_up_basket_scalar(b, v, 5.99, 50.0, 0.5, 2.0, 8.0), [basket, u], expected)
    cdf = np.asarray(model.hour_cdf)
    _close(lambda v: hour_from_uniform_scalar(v, model.hour_cdf), [u], hours_from_uniform(u, cdf))
    affinity = rng.dirichlet(np.ones(4), N).astype(np.float32)
    column = rng.integers(-1, 4, N)
    expected = affinity_factor(affinity, column, 1.0)
    _close(
        lambda a, c: affinity_factor_scalar(tuple(float(x) for x in a), int(c), 1.0),
        [affinity, column],
        expected,
    )


def test_scalar_offer_terms_twin_equals_catalog_terms(model: JourneyModel):
    rng = np.random.default_rng(4)
    catalog = model.catalog
    offer = rng.integers(0, len(catalog), N).astype(np.int16)
    offer[0] = 1  # not every offer the catalogue's fast path for "no offers" would take
    basket = rng.uniform(5, 120, N)
    terms = catalog.terms(offer, basket)
    for i in range(N):
        got = offer_terms_scalar(model, int(offer[i]), float(basket[i]))
        assert got.discount == pytest.approx(terms.discount[i], abs=1e-12)
        assert got.free_shipping == terms.free_shipping[i]
        assert got.points_multiplier == terms.points_multiplier[i]
        assert got.bonus_points == terms.bonus_points[i]
        assert got.loss_framed == terms.loss_framed[i]
        assert got.hedonic_value == terms.hedonic_value[i]
        assert got.type_column == terms.type_column[i]
        assert got.applies == terms.applies[i]


def test_one_shopper_traits_calibration_and_value_equal_the_population_engine(model: JourneyModel):
    scenario = model.scenario
    for seed in range(20):
        traits = draw_traits(model, np.random.default_rng(seed))
        pop = draw_shoppers(
            scenario,
            np.zeros(1),
            np.zeros(1, dtype=np.int32),
            np.zeros((1, 0), dtype=np.int32),
            CHANNEL_ORGANIC,
            np.random.default_rng(seed),
        )
        assert traits.purchase_rate_per_day == pop.purchase_rate_per_day[0]
        assert traits.dropout_prob == pop.dropout_prob[0] and traits.spend_nu == pop.spend_nu[0]
        assert traits.loss_aversion == pytest.approx(pop.loss_aversion[0], rel=1e-14)
        assert traits.price_sensitivity == pytest.approx(pop.price_sensitivity[0], rel=1e-14)
        assert traits.affinity == tuple(pop.affinity[0].tolist()) and traits.abuser == pop.abuser[0]
        assert traits.dropout_rate_per_day == pop.dropout_rate_per_day[0]
        assert traits.uplift_class == pop.uplift_class[0]
        assert traits.offer_response == pop.offer_response[0]
        assert traits.checkout_shift == pop.checkout_shift[0]
        assert traits.contact_churn == pop.contact_churn[0]
        assert traits.winback_sensitivity == pytest.approx(pop.winback_sensitivity[0], rel=1e-14)
        assert traits.lifetime_budget == pop.lifetime_budget[0]
        assert traits.visit_prob == pytest.approx(pop.visit_prob[0], rel=1e-12)
        assert traits.cart_prob == pytest.approx(pop.cart_prob[0], rel=1e-12)
        margin = expected_order_margin(scenario, pop)[0]
        assert expected_order_margin_scalar(model, traits.spend_nu) == pytest.approx(margin, rel=1e-12)
        pop.acquired_at[:] = 3.0
        delta = daily_discount_rate(scenario.economics.annual_discount_rate)
        expected = residual_value(scenario, pop, 1000.0, slice(None), np.array([margin]))[0]
        got = residual_value_scalar(
            traits.purchase_rate_per_day,
            traits.dropout_prob,
            traits.dropout_rate_per_day,  # no delivery yet: her hazard before experience
            margin,
            delta,
            997.0 / 24.0,
        )
        assert got == pytest.approx(expected, rel=1e-12)
    rng = np.random.default_rng(0)
    rate, nu = rng.gamma(0.6, 0.25 / 7, N), rng.gamma(3.74, 1 / 24, N)
    sens, lam = rng.lognormal(1.2, 0.5, N), rng.lognormal(0.6, 0.4, N)
    shift = rng.normal(0.0, 1.0, N)
    visit, cart = calibrate_session_rates(scenario, rate, nu, sens, lam, shift)
    got = np.array([calibrate_one(model, *row) for row in zip(rate, nu, sens, lam, shift, strict=True)])
    np.testing.assert_allclose(got, np.column_stack([visit, cart]), rtol=1e-12)
    assert shipping_fee(np.array([49.0]), 5.99, 50.0)[0] == 5.99  # the calibration's fee rule


# ---- the journey against the population engine ---------------------------------------------------
#: Queue-free fulfillment in the engine (capacity far above demand) and no social proof on either side.
CONSISTENCY = {
    "population.shoppers": 3000,
    "population.acquisition_days": 0.0,
    "warehouse.pick_capacity_per_1k_shoppers": 100_000.0,
    "shipping.carrier_capacity_per_1k_shoppers": 100_000.0,
    "mechanisms.social.proof_weight": 0.0,
    "mechanisms.tiers.inflation": 0.0,
}


def _journeys(
    scenario_model: JourneyModel, n: int, days: int, seed: int, decide: Callable[[Journey, Decision], int]
) -> list[Journey]:
    rng = np.random.default_rng(seed)
    kinds = frozenset(scenario_model.scenario.engine.decision_points)
    done = []
    for _ in range(n):
        journey = Journey(scenario_model, rng, days, kinds, neighbour_signal=0.0)
        while (decision := journey.next_decision()) is not None:
            journey.submit(decide(journey, decision))
        done.append(journey)
    return done


def test_none_policy_journeys_match_the_population_engine_on_orders_abandonment_and_churn():
    """With no incentives, 3,000 journeys and 3,000 engine shoppers over 180 days agree.

    Both run every mechanism except the two a one-shopper world cannot share: the engine's
    warehouse gets capacity far above demand (so both deliver on the queue-free schedule) and
    social proof and tier inflation are off on both sides. Tolerances (about 3 standard errors
    of the difference, which shopper heterogeneity makes large): orders and visits per shopper
    within 10%, cart abandonment within 0.03, share still active at day 180 within 0.04, late
    deliveries within 0.015 and returns per delivery within 0.02.
    """
    scenario = load_scenario(SCENARIO, CONSISTENCY)
    days = 180
    engine = summarize(Simulation(scenario, seed=7, horizon_days=days, log_level="aggregates").run())
    journeys = _journeys(JourneyModel(scenario), 3000, days, seed=8, decide=lambda j, d: 0)
    n = len(journeys)
    carts = sum(j.carts for j in journeys)
    converted = carts - sum(j.abandoned for j in journeys) + sum(j.recovered for j in journeys)
    orders = sum(j.orders for j in journeys) / n
    visits = sum(j.visits for j in journeys) / n
    assert orders == pytest.approx(engine["orders"] / engine["shoppers"], rel=0.10)
    assert visits == pytest.approx(engine["visits"] / engine["shoppers"], rel=0.10)
    assert 1.0 - converted / carts == pytest.approx(engine["cart_abandonment_rate"], abs=0.03)
    assert sum(j.alive for j in journeys) / n == pytest.approx(engine["active_share"], abs=0.04)
    assert sum(j.terminated for j in journeys) == n - sum(j.alive for j in journeys)  # ended = churned
    deliveries = sum(j.deliveries for j in journeys)
    late = sum(j.late_deliveries for j in journeys) / deliveries
    assert late == pytest.approx(engine["late_delivery_share"], abs=0.015)  # the same queue-free schedule
    returned = sum(j.returns for j in journeys) / deliveries
    assert returned == pytest.approx(engine["returns_share"], abs=0.02)


def test_coupon_policy_journeys_match_the_population_engine_on_orders_costs_and_survival():
    """The same comparison with an incentive: coupon_10 at every abandoned cart, on both sides.

    This exercises what the incentive moves in both simulators (uplift-class responses at
    checkout, the advertising effect, sleeping dogs' contact churn, reference prices, Pareto/NBD
    attrition). Orders per shopper within 10%, incentive cost per shopper within 15%, active
    share within 0.04.
    """
    scenario = load_scenario(SCENARIO, CONSISTENCY)
    coupon = [i.name for i in scenario.incentives].index("coupon_10")
    days = 180

    def engine_policy(batch: Any) -> np.ndarray:
        return np.full(batch.shoppers.size, coupon if batch.kind == "cart_abandoned" else 0)

    engine = summarize(
        Simulation(scenario, seed=7, horizon_days=days, log_level="aggregates").run(engine_policy)
    )
    journeys = _journeys(
        JourneyModel(scenario),
        3000,
        days,
        seed=8,
        decide=lambda j, d: coupon if d.kind == "cart_abandoned" else 0,
    )
    n = len(journeys)
    orders = sum(j.orders for j in journeys) / n
    assert orders == pytest.approx(engine["orders"] / engine["shoppers"], rel=0.10)
    cost = sum(j.incentive_cents for j in journeys) / 100.0 / n
    assert cost == pytest.approx(engine["incentive_cost"] / engine["shoppers"], rel=0.15)
    assert sum(j.alive for j in journeys) / n == pytest.approx(engine["active_share"], abs=0.04)


def test_coupon_at_an_abandoned_cart_raises_its_recovery_by_more_than_a_fifth():
    scenario = load_scenario(SCENARIO, {"engine.decision_points": ["cart_abandoned"]})
    model = JourneyModel(scenario)
    coupon = model.catalog.names.index("coupon_20")

    def recovery(action: int) -> float:
        journeys = _journeys(model, 600, 365, seed=9, decide=lambda j, d: action)
        return sum(j.recovered for j in journeys) / sum(j.abandoned for j in journeys)

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
        if env._budget_left() <= 0:
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


def test_episode_terminates_at_churn_with_the_residual_value_gone():
    env = gym.make("shopgym/ShopperJourney-v0", objective_weights={"ltv": 1.0}, reward_scale=1.0)
    churned = 0
    for seed in range(40):
        env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            _, _, terminated, truncated, info = env.step(0)
        episode = info["episode_metrics"]
        journey = env.unwrapped._journey
        assert terminated and not truncated  # the horizon is part of the task: it terminates too
        if episode["churned"]:
            churned += 1
            assert not info["alive"] and journey.residual_value() == 0.0
            assert info["ltv"] == pytest.approx(episode["ltv_realized"])  # LTV is the realized part only
            assert episode["days"] < 365
        else:
            assert info["alive"] and journey.residual_value() > 0.0 and episode["days"] == 365
    assert 5 < churned < 40


def test_churn_costs_the_ltv_objective_her_whole_residual_value_at_once():
    """The step in which she churns loses her residual value: LTV change = realized change - residual."""
    drops, residuals = [], []
    env = ShopperJourneyEnv(reward_scale=1.0, objective_weights={"ltv": 1.0})
    for seed in range(60):
        env.reset(seed=seed)
        journey = env._journey
        assert journey is not None
        terminated = truncated = False
        while not (terminated or truncated):
            realized, residual = journey.margin_pv, journey.residual_value()
            was_alive = journey.alive  # (a lifetime may end before her first decision)
            _, reward, terminated, truncated, info = env.step(0)
            if was_alive and not info["alive"]:
                assert reward == pytest.approx(journey.margin_pv - realized - residual)
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


def test_idle_shoppers_cost_a_step_each_whatever_the_gap():
    """A rare visitor's year is a handful of steps and SimPy events, not one per idle day."""
    scenario = load_scenario(SCENARIO, {"population.purchase.r": 0.05})  # mostly very rare shoppers
    model = JourneyModel(scenario)
    journeys = _journeys(model, 200, 3650, seed=3, decide=lambda j, d: 0)
    events = sum(next(j.env._eid) for j in journeys)  # SimPy's event counter: events scheduled
    visits = sum(j.visits for j in journeys)
    orders = sum(j.orders for j in journeys)
    assert events < 10 * (visits + orders + 200)


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
