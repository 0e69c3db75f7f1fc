"""Attrition moved by experience: late deliveries raise churn; win-back grows with the offer's value."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine import Simulation
from sim.mechanisms.churn import dropout_probability, lump_hazard, winback_probability
from sim.params import load_scenario
from tests.conftest import DEFAULT


def test_late_delivery_and_frustration_raise_dropout_and_on_time_delivery_lowers_it():
    base = np.full(4, 0.2)
    late = np.array([False, True, False, False])
    delivered = np.array([False, True, True, False])
    frustration = np.array([0.0, 0.0, 0.0, 1.0])
    p = dropout_probability(base, late, delivered, frustration, 1.0, 0.1, 0.5)
    assert p.tolist() == pytest.approx([0.2, 0.4, 0.18, 0.3])


def _churned_share(capacity: float, churn: dict[str, float] | None = None) -> float:
    overrides = {
        "population.shoppers": 3000,
        "population.acquisition_days": 60.0,
        "warehouse.pick_capacity_per_1k_shoppers": capacity,
    }
    if churn is not None:
        overrides["mechanisms.churn"] = churn
    sim = Simulation(
        load_scenario(DEFAULT, overrides), seed=0, horizon_days=150, log_level="aggregates"
    ).run()
    n = sim.acquired()
    return float((~sim.pop.alive[:n]).mean())


def test_late_deliveries_raise_churn():
    scarce, ample = _churned_share(8.0), _churned_share(100.0)
    assert scarce > ample + 0.05
    neutral = {
        "late_delivery_churn": 0.0,
        "late_dropout_multiplier": 0.0,
        "winback_ceiling": 0.0,
        "on_time_relief": 0.0,
    }
    # Without the mechanism, capacity moves churn only through small spillovers (return and
    # points timing change later orders), far below the mechanism's effect.
    assert abs(_churned_share(8.0, neutral) - _churned_share(100.0, neutral)) < 0.01


def _winback_share(name: str) -> tuple[float, int]:
    """Share of churned shoppers reached by ``name`` at their lapsing decision who come back."""
    scenario = load_scenario(
        DEFAULT,
        {"population.shoppers": 4000, "population.acquisition_days": 30.0, "sessions.lapse_after_days": 30.0},
    )
    offer = [i.name for i in scenario.incentives].index(name)
    sim = Simulation(scenario, seed=3, horizon_days=200)
    reached = 0
    while (batch := sim.next_decision()) is not None:
        lapsing = batch.kind == "lapsing"
        reached += int((~sim.pop.alive[batch.shoppers]).sum()) if lapsing else 0
        sim.submit(np.full(batch.shoppers.size, offer if lapsing else 0))
    won = int((sim.log.to_frame()["event"] == "winback").sum())
    return won / max(reached, 1), reached


def test_winback_grows_with_the_offers_dollar_value_up_to_its_ceiling():
    """Thomas, Blattberg & Fox 2004: reacquisition rises with the offer; no free resurrection."""
    churn = load_scenario(DEFAULT).mechanisms.churn
    small, reached = _winback_share("coupon_5usd")  # $5 off
    large, _ = _winback_share("coupon_20")  # 20% of a ~$60 basket
    worthless, _ = _winback_share("streak_freeze")  # nothing to spend (and mostly ineligible)
    assert reached > 500
    assert worthless == 0.0
    assert 0.03 < small < large < churn.winback_ceiling
    # The closed form for a typical shopper: 0.30 * (1 - exp(-5 / 15)) = 0.085 for $5 off.
    assert small == pytest.approx(0.085, abs=0.035)


def test_winback_probability_is_concave_capped_and_heterogeneous():
    value = np.array([0.0, 5.0, 15.0, 1e6])
    p = winback_probability(value, np.ones(4), 0.3, 15.0)
    assert p[0] == 0.0 and p[-1] == pytest.approx(0.3)
    assert p[2] == pytest.approx(0.3 * (1.0 - np.exp(-1.0)))
    assert (np.diff(p) > 0).all() and (p[1] - p[0]) / 5.0 > (p[2] - p[1]) / 10.0  # diminishing returns
    sensitive = winback_probability(np.full(2, 5.0), np.array([0.5, 2.0]), 0.3, 15.0)
    assert sensitive[0] < sensitive[1]


def test_lump_hazard_ends_a_relationship_with_exactly_its_probability():
    rng = np.random.default_rng(0)
    budget = rng.standard_exponential(200_000)
    hazard = rng.uniform(0.0, 0.5, budget.size)
    alive = budget > hazard
    quits = budget[alive] <= hazard[alive] + lump_hazard(0.08)
    assert quits.mean() == pytest.approx(0.08, abs=0.003)
    assert lump_hazard(1.0) == np.inf and lump_hazard(0.0) == 0.0
