"""The shopgym command line: simulate writes its outputs, bad scenarios write nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.cli import main
from tests.conftest import DEFAULT

REQUIRED_SUMMARY_KEYS = {
    "shoppers",
    "days",
    "visits",
    "carts",
    "cart_abandonment_rate",
    "orders",
    "revenue",
    "margin",
    "incentive_cost",
    "ltv_mean",
    "returns_share",
    "late_delivery_share",
    "peak_utilization",
    "wall_seconds",
}


def test_simulate_writes_event_log_daily_table_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "run"
    code = main(
        [
            "simulate",
            "--scenario",
            str(DEFAULT),
            "--shoppers",
            "500",
            "--days",
            "30",
            "--seed",
            "4",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary.keys() >= REQUIRED_SUMMARY_KEYS
    # The default scenario spreads acquisitions over a year: about 30/365 of them arrive in 30 days.
    assert 0 < summary["shoppers"] < 100 and summary["shoppers_planned"] == 500
    assert summary["days"] == 30 and summary["incentive_cost"] >= 0
    events = pd.read_parquet(out / "events.parquet")
    assert list(events.columns) == [
        "time_hours",
        "day",
        "shopper_id",
        "event",
        "order_id",
        "amount",
        "incentive",
        "detail",
    ]
    assert (events["event"] == "order").sum() == summary["orders"]
    assert events["time_hours"].is_monotonic_increasing
    assert len(pd.read_parquet(out / "daily.parquet")) == 30
    assert "cart_abandonment_rate" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp"))


def test_simulate_with_aggregates_writes_no_event_log(tmp_path: Path):
    out = tmp_path / "agg"
    assert (
        main(
            [
                "simulate",
                "--scenario",
                str(DEFAULT),
                "--shoppers",
                "200",
                "--days",
                "10",
                "--out",
                str(out),
                "--log",
                "aggregates",
                "--quiet",
            ]
        )
        == 0
    )
    assert not (out / "events.parquet").exists()
    assert json.loads((out / "summary.json").read_text())["event_log"] == "aggregates"


def _bad_scenarios(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    base = yaml.safe_load(DEFAULT.read_text())
    cases = {}
    unknown = dict(base, colour="blue")
    negative = yaml.safe_load(DEFAULT.read_text())
    negative["warehouse"]["pick_capacity_per_1k_shoppers"] = -1.0
    probability = yaml.safe_load(DEFAULT.read_text())
    probability["sessions"]["add_to_cart_rate"] = 1.2
    for name, data, expected in [
        ("unknown", unknown, "colour: unknown key"),
        ("negative", negative, "warehouse.pick_capacity_per_1k_shoppers: got -1.0"),
        ("probability", probability, "sessions.add_to_cart_rate: got 1.2"),
    ]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        cases[name] = (path, expected)
    cases["missing"] = (tmp_path / "missing.yaml", "scenario file not found")
    return cases


@pytest.mark.parametrize("case", ["unknown", "negative", "probability", "missing"])
def test_bad_scenario_exits_nonzero_with_one_clear_message_and_writes_nothing(tmp_path: Path, case: str):
    path, expected = _bad_scenarios(tmp_path)[case]
    out = tmp_path / "never"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "simulate",
            "--scenario",
            str(path),
            "--days",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("shopgym:") == 1
    assert not out.exists()


def test_console_script_help_describes_commands():
    result = subprocess.run(["shopgym", "--help"], capture_output=True, text=True, check=True)
    assert "simulate" in result.stdout and "bench" in result.stdout
    sim_help = subprocess.run(["shopgym", "simulate", "--help"], capture_output=True, text=True, check=True)
    assert "--scenario" in sim_help.stdout and "--log" in sim_help.stdout


def test_every_subcommand_help_renders_without_escaped_percent_signs():
    import argparse

    from experiments.cli import build_parser

    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    found += parsers(child)
        return found

    every = parsers(build_parser())
    assert len(every) > 15
    for parser in every:
        text = parser.format_help()
        # A description is printed as written: "95%%" would reach the reader doubled.
        assert "%%" not in text, (parser.prog, text[text.index("%%") - 60 : text.index("%%") + 10])


def test_bench_sim_json_reports_throughput_limit_and_memory():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "bench",
            "sim",
            "--sizes",
            "300,600",
            "--days",
            "3",
            "--repeats",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(result.stdout)
    assert [(r["shoppers"], r["mechanisms"]) for r in records] == [
        (300, "on"),
        (300, "off (neutral)"),
        (600, "on"),
        (600, "off (neutral)"),
    ]
    for record in records:
        for key in (
            "shoppers",
            "days",
            "shopper_days_per_s",
            "limit_shopper_days_per_s",
            "peak_rss_bytes",
        ):
            assert record[key] > 0
        assert record["log_level"] == "aggregates"


def test_env_benchmark_helpers_measure_real_steps_and_ppo_share():
    import sim  # noqa: F401
    from experiments.bench import ppo_env_share, raw_steps_per_second

    small = {
        "overrides": {"population.shoppers": 300, "population.acquisition_days": 0.0},
        "horizon_days": 10,
    }
    assert raw_steps_per_second("CartPole-v1", {}, 500) > 0
    assert raw_steps_per_second("shopgym/IncentiveTargeting-v0", small, 300) > 0
    share = ppo_env_share("shopgym/IncentiveTargeting-v0", small, 1024)
    assert 0.0 < share < 1.0


def test_vector_env_benchmark_helpers_step_every_sub_env_and_time_ppo_on_it():
    import sim  # noqa: F401
    from experiments.bench import ppo_vector_env_share, vector_steps_per_second

    assert vector_steps_per_second("shopgym/ShopperJourney-v0", {"horizon_days": 60}, 8, 200) > 0
    share = ppo_vector_env_share("shopgym/ShopperJourney-v0", {"horizon_days": 60}, 16, 2048)
    assert 0.0 < share < 1.0
