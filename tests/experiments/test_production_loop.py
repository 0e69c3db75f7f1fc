"""The production loop at small scale: train, export, serve over real HTTP, log, join, OPE, truth."""

from __future__ import annotations

import math
from pathlib import Path

from experiments.production_loop import production_loop
from policies.decision_log import read_decisions

SHOP = {"population.shoppers": 250, "population.acquisition_days": 10.0}


def test_a_candidate_is_evaluated_from_a_log_served_over_http_and_compared_with_its_truth(tmp_path: Path):
    result = production_loop(tmp_path, SHOP, SHOP, horizon_days=12, timesteps=512, epsilon=0.3, seed=5)
    logged = read_decisions(tmp_path / "decision_log")
    assert result["decisions_logged"] == len(logged) > 50
    assert {row["propensity"] for row in logged} - {1.0}  # exploration recorded real propensities
    assert all(0 < row["propensity"] <= 1 for row in logged)
    assert set(result["estimates"]) == {"dm", "ips", "snips", "dr", "switch_dr"}
    assert all(math.isfinite(e["value"]) for e in result["estimates"].values())
    assert math.isfinite(result["candidate_true_value"])
    assert (tmp_path / "loop.json").is_file()
