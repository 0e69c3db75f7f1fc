"""Dark patterns: short-run gains (Blake et al. 2021; Luguri & Strahilevitz 2021) paid for in trust."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.incentives import IncentiveCatalog
from sim.mechanisms.dark_patterns import distrust_multiplier, forced_response, lost_trust
from sim.metrics import summarize
from sim.params import ScenarioError, load_scenario
from tests.conftest import DEFAULT

DRESSED = [
    {"name": "coupon_5", "kind": "coupon_pct", "value": 0.05, "valid_days": 14.0},
    {"name": "coupon_15", "kind": "coupon_pct", "value": 0.15, "valid_days": 14.0},
    # 15% off shown, a 10% fee revealed at checkout: the price of coupon_5, presented better.
    {
        "name": "coupon_15_hidden",
        "kind": "coupon_pct",
        "value": 0.15,
        "valid_days": 14.0,
        "dark_pattern": "hidden_cost",
    },
    {
        "name": "coupon_15_opt_in",
        "kind": "coupon_pct",
        "value": 0.15,
        "valid_days": 14.0,
        "dark_pattern": "forced_opt_in",
    },
]
WINDOW_START, WINDOW_DAYS = 30, 14


def _scenario(n: int = 20000, **overrides: Any):
    specs = [s.model_dump() for s in load_scenario(DEFAULT).incentives] + DRESSED
    return load_scenario(
        DEFAULT,
        {"population.shoppers": n, "population.acquisition_days": 0.0, "incentives": specs, **overrides},
    )


def _once(give: str, seed: int = 0) -> tuple[float, dict[str, Any], Simulation]:
    """Each shopper gets ``give`` once, at her first login from day 30: orders in 14 days, and the year."""
    scenario = _scenario()
    offer = [i.name for i in scenario.incentives].index(give)
    sim = Simulation(scenario, seed=seed, horizon_days=365, log_level="aggregates")
    given = np.zeros(scenario.population.shoppers, dtype=bool)
    marks: dict[int, np.ndarray] = {}

    def decide(batch: DecisionBatch) -> np.ndarray:
        ids = np.zeros(batch.shoppers.size, np.int64)
        if batch.kind == "login" and sim.now_hours >= WINDOW_START * 24:
            first = ~given[batch.shoppers]
            ids[first] = offer
            given[batch.shoppers[first]] = True
        return ids

    def on_day(day: int) -> None:
        if day in (WINDOW_START, WINDOW_START + WINDOW_DAYS):
            marks[day] = sim.pop.orders.copy()

    sim.run(decide, on_day)
    window = float((marks[WINDOW_START + WINDOW_DAYS] - marks[WINDOW_START]).mean())
    return window, summarize(sim), sim


@pytest.fixture(scope="module")
def once() -> dict[str, tuple[float, dict[str, Any], Simulation]]:
    return {name: _once(name) for name in ("coupon_5", "coupon_15", "coupon_15_hidden", "coupon_15_opt_in")}


def test_trust_rules():
    trust = np.array([1.0, 0.5], np.float32)
    assert lost_trust(trust, 0.2).tolist() == pytest.approx([0.8, 0.4])
    assert distrust_multiplier(np.array([1.0, 0.5], np.float32), 1.0).tolist() == [1.0, 1.5]
    assert forced_response(np.array([0.1, 0.9]), 0.6).tolist() == [0.6, 0.9]


def test_a_hidden_cost_is_charged_at_checkout_and_none_cannot_carry_one():
    catalog = IncentiveCatalog(_scenario(100))
    hidden = catalog.names.index("coupon_15_hidden")
    terms = catalog.terms(np.array([hidden], np.int16), np.array([40.0]))
    assert terms.discount.tolist() == pytest.approx([6.0]) and terms.hidden_fee.tolist() == pytest.approx(
        [4.0]
    )
    with pytest.raises(ScenarioError, match="dark_pattern needs an incentive"):
        _scenario(incentives=[{"name": "none", "kind": "none", "dark_pattern": "hidden_cost"}])


def test_a_hidden_cost_sells_about_a_tenth_more_than_the_same_price_shown_up_front(once):
    """Blake et al. 2021: fees shown only at checkout raised purchases ~14% at the same total price."""
    honest, hidden = once["coupon_5"][0], once["coupon_15_hidden"][0]
    assert hidden / honest == pytest.approx(1.12, abs=0.08)


def test_a_forced_opt_in_converts_more_than_the_same_offer_asked_for(once):
    """Luguri & Strahilevitz 2021: dark patterns raise acceptance (here her response is at least 0.6)."""
    assert once["coupon_15_opt_in"][0] > 1.02 * once["coupon_15"][0]


def test_dark_patterns_cost_trust_and_shoppers_and_the_hidden_cost_loses_its_gain_over_a_year(once):
    """Each order under a dark pattern takes trust; lost trust raises attrition and damps offers."""
    for dressed, honest in (("coupon_15_hidden", "coupon_5"), ("coupon_15_opt_in", "coupon_15")):
        sim = once[dressed][2]
        assert sim.pop.trust.min() < 1.0 and once[honest][2].pop.trust.min() == 1.0
        assert once[dressed][1]["active_share"] < once[honest][1]["active_share"]
    assert once["coupon_15_hidden"][1]["margin"] < once["coupon_5"][1]["margin"]
