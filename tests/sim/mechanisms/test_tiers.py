"""Tiers: inter-purchase time shrinks as shoppers near the next tier (Kivetz et al. 2006)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.engine import Simulation
from sim.mechanisms.tiers import goal_gradient_multiplier, perk_dropout_relief, tier_progress
from sim.params import load_scenario
from tests.conftest import DEFAULT


def test_progress_and_multipliers():
    thresholds = np.array([0.0, 500.0, 2000.0])
    progress = tier_progress(
        np.array([0.0, 400.0, 1250.0, 5000.0]), np.array([0, 0, 1, 2], np.int8), thresholds
    )
    assert progress.tolist() == [0.0, 0.8, 0.5, 0.0]
    assert goal_gradient_multiplier(progress, 0.3).tolist() == [1.0, 1.0 + 0.3 * 0.64, 1.075, 1.0]
    relief = perk_dropout_relief(np.array([0, 2], np.int8), np.array([1.0, 0.4, 0.1]), 2, 0.3, 0.5)
    assert relief[0] == 0.0 and relief[1] == 0.3 * 0.95


def _gaps_by_progress(goal_gradient: float | None) -> pd.Series:
    """Mean days to the next order by progress towards tier 1 (``None``: the scenario default)."""
    gradient = {} if goal_gradient is None else {"mechanisms.tiers.goal_gradient": goal_gradient}
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 4000,
            "population.acquisition_days": 0.0,
            "population.purchase": {"r": 2.0, "alpha_weeks": 4.0, "a": 0.8, "b": 8.0},
            **gradient,
        },
    )
    sim = Simulation(scenario, seed=1, horizon_days=240, log_level="aggregates").run()
    orders = pd.DataFrame(
        {
            "shopper": sim.orders.column("shopper"),
            "t": sim.orders.column("placed_at"),
            "value": sim.orders.column("list_cents") / 100.0,
        }
    ).sort_values(["shopper", "t"], kind="stable")
    orders["spend_after"] = orders.groupby("shopper")["value"].cumsum()
    orders["gap_days"] = (orders.groupby("shopper")["t"].shift(-1) - orders["t"]) / 24.0
    tier0 = orders[(orders["spend_after"] < 500.0)].dropna()
    band = pd.cut(tier0["spend_after"] / 500.0, [0.0, 0.4, 0.7, 1.0], labels=["far", "mid", "near"])
    return tier0.groupby(band, observed=True)["gap_days"].mean()


def test_inter_purchase_time_shrinks_as_shoppers_near_the_next_tier():
    with_gradient, neutral = _gaps_by_progress(None), _gaps_by_progress(0.0)
    # Same shoppers and seeds: near the next tier, gaps shrink by roughly the documented fifth.
    shrink_near = 1.0 - with_gradient["near"] / neutral["near"]
    shrink_far = 1.0 - with_gradient["far"] / neutral["far"]
    assert 0.10 < shrink_near < 0.30
    assert shrink_near > shrink_far + 0.05
