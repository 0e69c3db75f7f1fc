"""``shopgym ope validate``: estimators scored against the truth; an interrupted run resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import ope
from experiments.config import ConfigError
from experiments.ope import load_validate_config, run_validation

TINY = """
name: tiny
scenario: default
overrides: {population.shoppers: 300, population.acquisition_days: 5.0}
horizon_days: 30
logger: {name: logger, kind: segment_rules, epsilon: 0.3}
candidates:
  - {name: close, kind: segment_rules, epsilon: 0.1}
replications: 2
sizes: [100]
workers: 1
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "validate.yaml"
    path.write_text(text)
    return path


def test_a_validation_reports_every_estimator_and_a_rerun_reuses_the_finished_shops(tmp_path, monkeypatch):
    config = load_validate_config(_config(tmp_path, TINY))
    out = run_validation(config, tmp_path / "out", quiet=True)
    text = (out / "summary.md").read_text()
    for estimator in ("dm", "ips", "snips", "dr"):
        assert estimator in text.lower()
    shops = sorted(ope.shops_dir(config, out).glob("*.npz"))
    assert [p.name for p in shops] == [
        "close-0000.npz",
        "close-0001.npz",
        "logger-0000.npz",
        "logger-0001.npz",
    ]
    before = (out / "estimates.parquet").read_bytes()

    def refuse(*args: object) -> None:
        raise AssertionError("a finished shop run was simulated again")

    monkeypatch.setattr(ope, "run_shop", refuse)
    run_validation(config.model_copy(update={"workers": 1}), out, quiet=True)
    assert (out / "estimates.parquet").read_bytes() == before  # the same numbers, from the kept runs


def test_a_bad_validation_config_fails_in_shopgyms_words(tmp_path):
    with pytest.raises(ConfigError, match=r"replications: got 1"):
        load_validate_config(_config(tmp_path, TINY.replace("replications: 2", "replications: 1")))
    with pytest.raises(ConfigError, match="unknown key"):
        load_validate_config(_config(tmp_path, TINY + "bogus: 1\n"))
