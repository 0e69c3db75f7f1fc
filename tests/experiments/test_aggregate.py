"""Aggregate statistics (IQM, mean, optimality gap, probability of improvement, stratified bootstrap
CIs, performance profiles) against hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.aggregate import (
    interval,
    iqm,
    mean,
    optimality_gap,
    performance_profile,
    plot_performance_profiles,
    probability_of_improvement,
    run_scores,
)


def test_iqm_is_the_mean_of_the_middle_half():
    scores = np.array([[8.0, 1.0], [3.0, 6.0], [5.0, 2.0], [7.0, 4.0]])  # 1..8 over runs x tasks
    assert iqm(scores) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm(np.array([[100.0], [0.0], [1.0], [2.0]])) == pytest.approx(1.5)  # the outliers go


def test_mean_and_optimality_gap_by_hand():
    scores = np.array([[0.5, 1.2, -0.5]])
    assert mean(scores) == pytest.approx(0.4)
    assert optimality_gap(scores) == pytest.approx((0.5 + 0.0 + 1.5) / 3)  # above the oracle counts 0


def test_probability_of_improvement_counts_ties_half_and_averages_tasks():
    x = np.array([[1.0, 0.0], [2.0, 0.0]])
    y = np.array([[1.0, 1.0], [0.0, 1.0]])
    # task 0: pairs (1,1) tie 0.5, (1,0) 1, (2,1) 1, (2,0) 1 -> 0.875; task 1: X never wins -> 0
    assert probability_of_improvement(x, y) == pytest.approx((0.875 + 0.0) / 2)
    assert probability_of_improvement(x, x) == pytest.approx(0.5)


def test_stratified_bootstrap_resamples_runs_within_each_task():
    # Task 0 always scores 0, task 1 always 1: every stratified resample keeps both tasks' runs,
    # so the mean is exactly 0.5 in every resample (a pooled bootstrap would spread it).
    scores = np.column_stack([np.zeros(5), np.ones(5)])
    assert interval(mean, scores, reps=300) == (0.5, 0.5, 0.5)
    point, low, high = interval(mean, np.array([[0.0], [1.0], [2.0], [3.0]]), reps=2000)
    assert point == 1.5 and 0.0 <= low < 1.5 < high <= 3.0


def test_performance_profile_is_the_share_of_runs_above_tau():
    scores = np.array([[0.0, 1.0], [0.5, 2.0]])
    curve, low, high = performance_profile(scores, np.array([-1.0, 0.25, 1.5, 3.0]), reps=200)
    np.testing.assert_allclose(curve, [1.0, 0.75, 0.25, 0.0])
    assert (low <= curve + 1e-12).all() and (curve <= high + 1e-12).all()


def test_run_scores_normalize_each_seed_by_the_tasks_mean_oracle_span(tmp_path: Path):
    rows = []
    # Two seeds, one episode each: none earns 0, oracle 2 and 4 (mean span 3), "a" 1 and 2.
    for seed, (oracle, a) in enumerate([(2.0, 1.0), (4.0, 2.0)]):
        for policy, value in (("none", 0.0), ("oracle", oracle), ("a", a)):
            rows.append({"variant": "base", "policy": policy, "seed": seed, "episode": 0, "return": value})
    matrices, left_out = run_scores(pd.DataFrame(rows), "none", "oracle")
    np.testing.assert_allclose(matrices["a"][:, 0], [1 / 3, 2 / 3])
    np.testing.assert_allclose(matrices["oracle"][:, 0], [2 / 3, 4 / 3])  # mean 1: the oracle
    assert left_out == []
    assert plot_performance_profiles({"a": matrices["a"]}, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
