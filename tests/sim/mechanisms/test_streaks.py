"""Streaks: a broken streak lowers engagement; freezes soften it; reset costs more than decay."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

from sim.engine import Simulation
from sim.mechanisms.streaks import loss_weight, streak_after_miss, visit_hazard_multiplier
from sim.params import load_scenario
from tests.conftest import DEFAULT

BREAK_DAY, FOLLOW_DAYS = 29, 14


def test_missed_day_rules():
    streak = np.array([0, 4, 10])
    assert streak_after_miss(streak, "reset", 0.5).tolist() == [0, 0, 0]
    assert streak_after_miss(streak, "decay", 0.5).tolist() == [0, 2, 5]
    assert streak_after_miss(streak, "freeze", 0.5).tolist() == [0, 4, 10]


def test_streak_pull_grows_with_length_is_loss_weighted_and_saturates():
    lam = np.full(4, 2.0)
    weight = loss_weight(np.array([2.0, 7.0, 14.0, 40.0]), 14.0, 3, lam, 0.88, 0.88)
    assert weight[0] == 0.0  # not yet a streak
    assert 0 < weight[1] < weight[2] == weight[3] == pytest.approx(2.0)
    m = visit_hazard_multiplier(
        np.array([0, 10]), np.zeros(2), np.ones(2), np.full(2, 2.0), 0.4, 14, 3, 0.88, 0.88
    )
    assert m[0] == 1.0 and m[1] > 1.0


def _break_experiment(rule: str, freezes: bool) -> tuple[float, float]:
    """Visits per shopper in the two weeks after half of a streaking group misses one day."""
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 6000,
            "population.acquisition_days": 0.0,
            "population.purchase": {"r": 4.0, "alpha_weeks": 2.0, "a": 0.8, "b": 8.0},
            "mechanisms.streaks.missed_day_rule": rule,
        },
    )
    sim = Simulation(scenario, seed=0, horizon_days=BREAK_DAY + FOLLOW_DAYS + 1)
    groups: dict[str, np.ndarray] = {}

    def skip_one_day() -> Generator[Any, Any, None]:
        yield sim.env.timeout(BREAK_DAY * 24 + 0.001)  # just after the day's schedule is drawn
        pop, day = sim.pop, sim._draws
        assert day is not None
        scheduled = day.visit_ids
        streaking = scheduled[
            (pop.streak_days[scheduled] >= 5) & (pop.last_visit_day[scheduled] == BREAK_DAY - 1)
        ]
        groups["broken"], groups["intact"] = streaking[streaking % 2 == 0], streaking[streaking % 2 == 1]
        if freezes:
            pop.streak_freezes[streaking] = 1
        keep = ~np.isin(scheduled, groups["broken"])
        sim._day = sim._draws = dataclasses.replace(
            day, visit_ids=scheduled[keep], visit_times=day.visit_times[keep]
        )

    sim.env.process(skip_one_day())
    log = sim.run().log.to_frame()
    after = log[(log["event"] == "visit") & (log["day"] > BREAK_DAY)]
    counts = after["shopper_id"].value_counts()
    rate = {k: float(counts.reindex(v, fill_value=0).mean()) for k, v in groups.items()}
    assert min(len(v) for v in groups.values()) > 200
    return rate["broken"], rate["intact"]


def test_broken_streak_lowers_engagement_a_freeze_shrinks_the_gap_and_reset_costs_more_than_decay():
    broken, intact = _break_experiment("reset", freezes=False)
    assert broken < intact * 0.93
    frozen_broken, frozen_intact = _break_experiment("reset", freezes=True)
    assert intact - broken > 2 * abs(frozen_intact - frozen_broken)
    decay_broken, decay_intact = _break_experiment("decay", freezes=False)
    assert (intact - broken) > (decay_intact - decay_broken) > 0
