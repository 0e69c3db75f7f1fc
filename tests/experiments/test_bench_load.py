"""``shopgym bench load``: the late share rises with utilization, and bad configs fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.bench_load import LoadSweepError, load_sweep_config, run_sweep, summarize_sweep
from experiments.cli import main


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(body)
    return path


SMALL = """
name: small_sweep
scenario: default
overrides: {population.shoppers: 1500}
horizon_days: 240
seeds: [0]
capacity_scales: [2.0, 1.0, 0.6, 0.45, 0.35]
"""


def test_late_share_is_near_zero_below_seventy_percent_utilization_and_rises_past_capacity(tmp_path):
    config = load_sweep_config(_config(tmp_path, SMALL))
    table = summarize_sweep(run_sweep(config, quiet=True)).sort_values("utilization_mean")
    late = table["late_delivery_share"].to_numpy()
    assert (late[1:] >= late[:-1]).all(), table
    assert (table.loc[table["utilization_mean"] <= 0.7, "late_delivery_share"] <= 0.005).all()
    assert late[-1] > 0.05 and table["utilization_mean"].iloc[-1] > 1.0


def test_the_shipped_sweep_is_found_by_name_and_valid():
    config = load_sweep_config("load")
    assert config.name == "load_sweep" and len(config.capacity_scales) >= 5


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (SMALL.replace("seeds: [0]", "seeds: []"), "seeds"),
        (SMALL.replace("[2.0, 1.0, 0.6, 0.45, 0.35]", "[2.0, -1.0]"), "capacity_scales.1"),
        (SMALL + "capacity: 3\n", "capacity: unknown key"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_bad_sweep_configs_fail_at_load_naming_the_field(tmp_path, body, words):
    with pytest.raises(LoadSweepError, match=words):
        load_sweep_config(_config(tmp_path, body))


def test_bench_load_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["bench", "load", "--config", str(_config(tmp_path, "name: x\n")), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("shopgym bench load: ") and "seeds: required field is missing" in err
    assert not out.exists()
