"""``shopgym tune``: Optuna on training-side validation episodes only, a config snippet, a held-out report."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from experiments.cli import main
from experiments.config import ConfigError, config_from_dict
from experiments.runner import eval_seed
from experiments.tune import check_no_leakage, validation_seed

CONFIG: dict[str, Any] = {
    "name": "tune_tiny",
    "env": {
        "id": "shopgym/ShopperJourney-v0",
        "scenario": "configs/scenarios/default.yaml",
        "kwargs": {"horizon_days": 120},
    },
    "objective_weights": {"margin": 1.0},
    "seeds": [0, 1],
    "policies": [
        {"name": "none", "kind": "none"},
        {"name": "oracle", "kind": "oracle"},
        {"name": "lin_ucb", "kind": "lin_ucb"},
    ],
    "training": {"episodes": 4},
    "evaluation": {"episodes": 3},
    "reference": "none",
}


def test_tune_writes_trials_a_valid_snippet_and_a_held_out_report(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "tune"
    code = main(
        [
            "tune",
            str(path),
            "--policy",
            "lin_ucb",
            "--trials",
            "3",
            "--val-episodes",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and {"number", "state", "value", "alpha", "ridge"} <= set(trials.columns)
    snippet = yaml.safe_load((out / "best.yaml").read_text())
    (tuned,) = snippet["policies"]
    assert tuned["name"] == "lin_ucb_tuned" and set(tuned["kwargs"]) == {"alpha", "ridge"}
    merged = copy.deepcopy(CONFIG)
    merged["policies"].append(tuned)
    config_from_dict(merged)  # the snippet is a valid policy entry
    results = pd.read_parquet(out / "evaluation" / "results.parquet")
    assert set(results["policy"]) == {"none", "oracle", "lin_ucb", "lin_ucb_tuned"}
    held_out = {eval_seed(s) + k for s in (0, 1) for k in range(3)}
    assert set(results["episode_seed"]) == held_out
    report = (out / "tune.md").read_text()
    assert "## Held-out evaluation" in report and "| lin_ucb_tuned |" in report


def test_validation_episodes_never_touch_evaluation_episodes():
    config = config_from_dict(CONFIG, check=False)
    check_no_leakage(config, 2500)
    validation = {validation_seed(s) + k for s in range(50) for k in range(2500)}
    evaluation = {eval_seed(s) + k for s in range(50) for k in range(7500)}
    assert not validation & evaluation
    greedy = copy.deepcopy(CONFIG)
    greedy["evaluation"]["episodes"] = 8000
    with pytest.raises(ConfigError, match="validation episodes overlap evaluation episodes"):
        check_no_leakage(config_from_dict(greedy, check=False), 10)


def test_tune_refuses_a_kind_without_a_search_space(tmp_path: Path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    assert main(["tune", str(path), "--policy", "none", "--trials", "1", "--out", str(tmp_path / "o")]) == 2
    assert "kind 'none' has no search space; tunable kinds:" in capsys.readouterr().err
