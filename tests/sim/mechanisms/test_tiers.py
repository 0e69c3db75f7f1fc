"""Tiers: inter-purchase time shrinks as shoppers near the next tier (Kivetz et al. 2006)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pandas as pd

from sim.engine import Simulation
from sim.mechanisms.tiers import (
    downgrade_threat_multiplier,
    goal_gradient_multiplier,
    perk_dropout_relief,
    tier_of,
    tier_progress,
)
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


def test_requalification_and_threat_multiplier():
    thresholds = np.array([0.0, 500.0, 2000.0])
    assert tier_of(np.array([0.0, 499.0, 500.0, 9000.0]), thresholds).tolist() == [0, 0, 1, 2]
    m = downgrade_threat_multiplier(
        np.array([2, 2, 2, 1], np.int8),
        np.array([0, 1, 2, 0], np.int8),
        np.array([True, True, True, False]),
        np.full(4, 2.0),
        2,
        0.5,
        0.88,
    )
    assert m[0] > m[1] > m[2] == m[3] == 1.0  # a bigger coming loss pulls harder; none outside the window
    assert m[0] == np.exp(0.5 * 2.0)


WINDOW_START, WINDOW_END = 100, 120  # second membership period's warning window (60-day periods)


def _threatened_visits(downgrade_weight: float, loss_aversion: dict[str, float] | None = None) -> float:
    overrides: dict[str, object] = {
        "population.shoppers": 5000,
        "population.acquisition_days": 0.0,
        "population.purchase": {"r": 2.0, "alpha_weeks": 4.0, "a": 0.8, "b": 8.0},
        # Long lives (an established base): enough members still around to feel a threat.
        "population.lifetime": {"s": 0.61, "beta_weeks": 50.0},
        "loyalty.tier_thresholds": [0.0, 150.0, 600.0, 2000.0],
        "mechanisms.tiers.membership_days": 60.0,
        "mechanisms.tiers.downgrade_warning_days": 20.0,
        "mechanisms.tiers.downgrade_weight": downgrade_weight,
    }
    if loss_aversion is not None:
        overrides["population.loss_aversion"] = loss_aversion
    sim = Simulation(load_scenario(DEFAULT, overrides), seed=2, horizon_days=WINDOW_END)
    threatened: dict[str, np.ndarray] = {}

    def spot_threatened() -> Generator[Any, Any, None]:
        yield sim.env.timeout(WINDOW_START * 24 + 0.001)
        pop = sim.pop
        qualifying = tier_of(pop.qualifying_spend, np.asarray(sim.scenario.loyalty.tier_thresholds))
        threatened["ids"] = np.flatnonzero(pop.alive & (pop.tier > qualifying))

    sim.env.process(spot_threatened())
    log = sim.run().log.to_frame()
    visits = log[(log["event"] == "visit") & (log["day"] >= WINDOW_START)]["shopper_id"].value_counts()
    ids = threatened["ids"]
    assert ids.size > 100
    return float(visits.reindex(ids, fill_value=0).mean())


def test_a_coming_tier_downgrade_raises_visits_more_with_loss_aversion():
    lift = _threatened_visits(0.5) / _threatened_visits(0.0)
    neutral = {"mean": 1.0, "cv": 0.0}
    lift_without_loss_aversion = _threatened_visits(0.5, neutral) / _threatened_visits(0.0, neutral)
    assert lift > 1.05
    assert lift > lift_without_loss_aversion > 1.0
