"""Pure behavioural functions: direction and size of their effects."""

from __future__ import annotations

import numpy as np
import pytest

from sim.behaviour import checkout_probability, hours_from_uniform, logit, shipping_fee
from sim.engine import DecisionBatch, Simulation
from sim.params import Scenario


def test_checkout_elasticity_is_bijmolt_mean_at_thirty_percent_conversion():
    """Bijmolt, van Heerde & Pieters 2005: mean price elasticity -2.62."""
    base, eta, ref = logit(0.30), np.array([3.74]), np.array([100.0])
    p0 = checkout_probability(base, eta, np.array([100.0]), ref)[0]
    p1 = checkout_probability(base, eta, np.array([101.0]), ref)[0]
    elasticity = (np.log(p1) - np.log(p0)) / np.log(1.01)
    assert p0 == pytest.approx(0.30)
    assert elasticity == pytest.approx(-2.62, rel=0.02)


def test_paying_more_than_the_reference_lowers_conversion():
    pay = np.linspace(50, 150, 11)
    p = checkout_probability(logit(0.4), np.full(11, 3.0), pay, np.full(11, 100.0))
    assert np.all(np.diff(p) < 0)


def test_shipping_fee_applies_only_below_threshold():
    assert shipping_fee(np.array([10.0, 49.99, 50.0, 80.0]), 5.99, 50.0).tolist() == [
        5.99,
        5.99,
        0.0,
        0.0,
    ]


def test_session_hours_follow_the_diurnal_profile():
    weights = np.zeros(24)
    weights[[3, 20]] = [1.0, 3.0]
    cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    hours = hours_from_uniform(np.random.default_rng(0).random(40_000), cdf)
    assert set(np.floor(hours).astype(int)) == {3, 20}
    assert (np.floor(hours) == 20).mean() == pytest.approx(0.75, abs=0.01)


def test_coupon_at_login_raises_orders_and_costs_margin_per_order(small_scenario: Scenario):
    """A 20% coupon for everyone converts more carts (paired by common random numbers)."""
    coupon = [i.name for i in small_scenario.incentives].index("coupon_20")

    def everyone(batch: DecisionBatch) -> np.ndarray:
        return np.full(batch.shoppers.size, coupon if batch.kind == "login" else 0)

    with_coupon = Simulation(small_scenario, seed=5, horizon_days=60).run(decide=everyone)
    without = Simulation(small_scenario, seed=5, horizon_days=60).run()
    from sim.metrics import summarize

    w, o = summarize(with_coupon), summarize(without)
    assert w["cart_abandonment_rate"] < o["cart_abandonment_rate"] - 0.05
    assert w["orders"] > o["orders"]
    assert w["incentive_cost"] > 10 * max(o["incentive_cost"], 1.0)
    assert w["margin"] / w["orders"] < o["margin"] / o["orders"]
