"""``shopgym uplift-check``: a randomized campaign, the uplift learner, its Qini against the truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from experiments.uplift_check import normalized_qini


def test_normalized_qini_is_one_for_the_true_ranking_and_near_zero_for_a_random_one():
    rng = np.random.default_rng(0)
    effect = rng.normal(0.0, 1.0, 5000) + np.where(rng.random(5000) < 0.2, 3.0, 0.0)
    assert normalized_qini(effect, effect) == 1.0
    assert abs(normalized_qini(rng.random(5000), effect)) < 0.05
    assert normalized_qini(-effect, effect) < -0.9  # the worst ranking


def test_the_command_writes_its_table_and_rows(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "uplift-check",
            "--train",
            "600",
            "--eval",
            "200",
            "--replicates",
            "2",
            "--seeds",
            "2",
            "--start-day",
            "30",
            "--learner",
            "t",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "uplift_check.md").read_text()
    assert "learner: T-learner" in text
    assert "| normalized Qini of the learner's ranking |" in text and "| targeting rule vs none" in text
    rows = pd.read_parquet(tmp_path / "uplift_check.parquet")
    assert set(rows["seed"]) == {0, 1} and np.isfinite(rows["true_effect"]).all()


def test_bad_arguments_are_refused_in_one_line():
    run = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "uplift-check", "--incentive", "coupon_99"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith(
        "shopgym uplift-check: --incentive 'coupon_99' is not in the scenario"
    )
    run = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "uplift-check", "--window-days", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2 and "--window-days must be >= 7" in run.stderr


def test_the_validated_share_treats_nobody_when_the_log_shows_no_gain():
    import gymnasium as gym

    import sim  # noqa: F401 (registers the environments)
    from experiments.uplift_check import ENV_ID, cross_fitted_share
    from policies.base import env_spec

    spec = env_spec(gym.make(ENV_ID))
    rng = np.random.default_rng(0)
    obs = rng.random((2000, len(spec.obs_fields))).astype(np.float32)
    actions = np.where(rng.random(2000) < 0.5, 1, 0)
    allowed = np.ones(2000, dtype=bool)
    harmful = np.where(actions == 1, -5.0, 0.0) + rng.normal(0.0, 0.1, 2000)
    assert cross_fitted_share(spec, 0, obs, actions, harmful, allowed, 1) == 0.0
    effect = np.where(obs[:, 0] > 0.5, 5.0, -5.0)
    helpful = np.where(actions == 1, effect, 0.0) + rng.normal(0.0, 0.1, 2000)
    assert 0.3 <= cross_fitted_share(spec, 0, obs, actions, helpful, allowed, 1) <= 0.7
