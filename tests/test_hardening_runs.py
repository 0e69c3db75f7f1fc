"""Issue 19, hostile input second round: runs, configs and ``shopgym calibrate``.

Each refusal is one bounded message from shopgym, a non-zero exit code, nothing written and
no traceback; each silent loss (a run that can never finish, a resume refused for a field
that changes no result) is fixed at its root.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.calibrate import validate_log
from experiments.cli import main
from experiments.config import config_from_dict
from experiments.report import _score_lines, normalized_scores
from experiments.runner import cell_problem, run_experiment, scenario_hashes
from sim.envs import ENV_IDS

ROOT = Path(__file__).resolve().parents[1]
SMALL: dict[str, Any] = {
    "name": "small",
    "env": {
        "id": "shopgym/IncentiveTargeting-v0",
        "scenario": "default",
        "overrides": {"population.shoppers": 150, "population.acquisition_days": 3.0},
        "kwargs": {"horizon_days": 5},
    },
    "seeds": [0, 1],
    "policies": [{"name": "none", "kind": "none"}, {"name": "rules", "kind": "segment_rules"}],
    "evaluation": {"episodes": 1},
}


def _write(tmp_path: Path, data: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _one_clean_error(err: str) -> None:
    assert "Traceback" not in err and len(err) < 2000 and err.startswith("shopgym")


# ---- objective weights ------------------------------------------------------------------------------
@pytest.mark.parametrize("weight", [1e308, -1e7, 1e6 + 1])
def test_unbounded_objective_weights_are_refused_at_load_naming_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weight: float
):
    data = {**copy.deepcopy(SMALL), "objective_weights": {"margin": weight}}
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, data)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    _one_clean_error(err)
    assert "objective_weights" in err and "margin" in err and "at most 1e+06" in err
    assert not out.exists()


def test_the_environments_refuse_unbounded_objective_weights_too():
    for env_id in ENV_IDS:
        with pytest.raises(ValueError, match=r"objective_weights\.margin: 1e\+308 not allowed"):
            gym.make(env_id, objective_weights={"margin": 1e308})


# ---- export --set ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("population.shoppers=[1, 2", "not plain YAML data"),
        ("population.shoppers={a: 1", "not plain YAML data"),
        ('population.shoppers=!!python/object/apply:os.system ["echo planted"]', "no !! tags"),
        ("population.shoppers=.nan", "finite numbers only"),
        ("population.shoppers=" + "[" * 100, "nested deeper than"),
        ("x" * 5000, "expected KEY=VALUE"),
    ],
)
def test_export_set_with_hostile_yaml_is_one_line_from_shopgym(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, words: str
):
    out = tmp_path / "artifact"
    assert main(["export", str(tmp_path), "--out", str(out), "--set", value]) == 2
    err = capsys.readouterr().err
    _one_clean_error(err)
    assert len(err.strip().splitlines()) == 1 and words in err and "planted" not in capsys.readouterr().out
    assert not out.exists()


# ---- Ctrl-C --------------------------------------------------------------------------------------
def test_sigint_during_a_run_is_one_line_exit_130_and_the_finished_cells_resume(tmp_path: Path):
    """The original failure: four KeyboardInterrupt tracebacks with two workers, exit code -2."""
    data = copy.deepcopy(SMALL)
    data["seeds"] = list(range(3))
    data["policies"] = [
        {"name": "none", "kind": "none"},
        {"name": "greedy", "kind": "epsilon_greedy", "kwargs": {"epsilon": 0.1}},
    ]
    data["training"] = {"episodes": 10}  # the bandit cells take long enough to be interrupted
    config = _write(tmp_path, data)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "experiments.cli", "run", str(config), "--out", str(out), "--quiet"]
    # A shell starts background jobs with SIGINT ignored, and children inherit that: give the run
    # Ctrl-C as a terminal would, however pytest itself was started.
    process = subprocess.Popen(
        [*command, "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("cells/base/none/seed*/done.json")):
            assert process.poll() is None and time.monotonic() < deadline, "no cell finished"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "interrupted" in err and "run the same command again to resume" in err
    cells = config_from_dict(data).cells()
    finished = [cell for cell in cells if cell_problem(out, *cell) is None]
    assert finished and len(finished) < len(cells)
    done = {
        cell: (out / "cells" / cell[0] / cell[1] / f"seed{cell[2]}" / "done.json").read_text()
        for cell in finished
    }
    assert not (out / "results.parquet").exists()

    run_experiment(config_from_dict(data), out, quiet=True)
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == len(cells)  # one evaluation episode per cell
    for (variant, policy, seed), text in done.items():  # kept, not redone
        assert (out / "cells" / variant / policy / f"seed{seed}" / "done.json").read_text() == text


# ---- the scenario an env kwarg set produces ------------------------------------------------------------
#: A value for every constructor argument of every environment (``scenario``, ``overrides`` and
#: ``objective_weights`` come from their own config fields). A new argument must be added here.
KWARG_SAMPLES: dict[str, list[Any]] = {
    "horizon_days": [3],
    "attribution_days": [7.0],
    "incentive_budget": [100.0],
    "decision_points": [["login"], ["lapsing"], ["login", "cart_abandoned"], ["cart_abandoned", "lapsing"]],
    "reward_scale": [0.5],
    "neighbour_signal": [2.0],
    "new_days": [10.0],
    "at_risk_days": [20.0],
    "high_value": [200.0],
    "low_value": [50.0],
    "render_mode": ["ansi"],
}


def _env_arguments(env_id: str) -> list[str]:
    import importlib

    module, name = str(gym.spec(env_id).entry_point).split(":")
    cls = getattr(importlib.import_module(module), name)
    taken = {"self", "scenario", "overrides", "objective_weights"}
    return [p for p in inspect.signature(cls.__init__).parameters if p not in taken]


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        (env_id, {key: value})
        for env_id in ENV_IDS
        for key in _env_arguments(env_id)
        for value in KWARG_SAMPLES.get(key, [None])
    ],
    ids=lambda item: item if isinstance(item, str) else json.dumps(item),
)
def test_the_run_records_the_scenario_every_env_kwarg_makes(env_id: str, kwargs: dict[str, Any]):
    """The original failure: decision_points changed the env's scenario, not the run's record of it."""
    assert list(kwargs.values()) != [None], f"add a sample of {list(kwargs)} to KWARG_SAMPLES"
    data = copy.deepcopy(SMALL)
    data["env"] = {**data["env"], "id": env_id, "kwargs": {"horizon_days": 3, **kwargs}}
    data["variants"] = [{"name": "base"}, {"name": "fee", "overrides": {"shipping.fee": 1.5}}]
    data["policies"] = [{"name": "none", "kind": "none"}]
    config = config_from_dict(data)
    hashes = scenario_hashes(config)
    for variant in config.variant_names:
        env = gym.make(env_id, **config.env_kwargs(variant))
        assert env.unwrapped.scenario.config_hash() == hashes[variant]  # type: ignore[attr-defined]
        env.close()


def test_a_run_with_decision_points_finishes_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The original failure: exit 2 after all the training, no results, on every rerun."""
    data = copy.deepcopy(SMALL)
    data["env"]["kwargs"] = {"horizon_days": 5, "decision_points": ["login"]}
    path, out = _write(tmp_path, data), tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert len(pd.read_parquet(out / "results.parquet")) == 4
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "4 of 4 cells already finished" in " ".join(capsys.readouterr().err.split())


def test_changing_only_workers_or_description_resumes_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 0
    changed = {**copy.deepcopy(SMALL), "workers": 2, "description": "the same experiment, described"}
    assert main(["run", str(_write(tmp_path, changed, "changed.yaml")), "--out", str(out)]) == 0
    assert "4 of 4 cells already finished" in " ".join(capsys.readouterr().err.split())
    other = {**copy.deepcopy(SMALL), "seeds": [0, 2]}
    assert main(["run", str(_write(tmp_path, other, "other.yaml")), "--out", str(out), "--quiet"]) == 2
    assert "different config" in capsys.readouterr().err


def test_normalized_scores_say_why_when_the_oracle_equals_the_reference():
    rows = [
        {"variant": "base", "policy": policy, "kind": policy, "seed": seed, "episode": 0, "return": value}
        for seed in (0, 1)
        for policy, value in (("none", 5.0), ("oracle", 5.0), ("rules", 6.0 + seed))
    ]
    scores = normalized_scores(pd.DataFrame(rows), "none", "oracle").assign(metric="return")
    text = "\n".join(_score_lines(scores, "base", "none", ["oracle"], "shopgym/ShopperJourney-v0"))
    assert "nan" not in text and "earns exactly what `none` earns" in text


# ---- calibrate -----------------------------------------------------------------------------------
def _orders(customers: int, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """Customers with a few orders each over 120 days, order values of tens of dollars."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        days = np.sort(rng.uniform(0, 120, size=rng.integers(1, 6)))
        rows += [
            (
                f"c{c}",
                str(pd.Timestamp(start) + pd.Timedelta(days=float(d))),
                round(float(rng.gamma(5, 8)), 2),
            )
            for d in days
        ]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


def _calibrate(tmp_path: Path, frame: pd.DataFrame, *extra: str) -> tuple[int, Path]:
    log = tmp_path / "log.csv"
    frame.to_csv(log, index=False)
    out = tmp_path / "out" / "shop.yaml"
    return main(["calibrate", str(log), "--out", str(out), "--seeds", "0", *extra]), out


@pytest.mark.parametrize("stamp", ["2090-06-01", "1677-09-30", "1969-12-31"])
def test_rows_dated_outside_the_plausible_window_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stamp: str
):
    frame = _orders(150)
    frame.loc[7, "timestamp"] = stamp
    code, out = _calibrate(tmp_path, frame)
    err = capsys.readouterr().err
    assert code == 2 and "outside the plausible window 1970-01-01 to" in err and stamp in err
    assert "--earliest and --latest" in err and not out.parent.exists()


def test_the_plausible_window_can_be_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    frame = _orders(150, start="1960-01-01")
    window = (pd.Timestamp("1950-01-01"), pd.Timestamp("1961-01-01"))
    assert len(validate_log(frame, window=window).frame) == len(frame)
    code, _ = _calibrate(tmp_path, frame, "--earliest", "1950-01-01", "--latest", "1960-02-01")
    assert code == 2 and "outside the plausible window 1950-01-01 to 1960-02-01" in capsys.readouterr().err


def test_a_long_calibration_end_is_echoed_cut_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, _ = _calibrate(tmp_path, _orders(150), "--calibration-end", "9" * 5000)
    err = capsys.readouterr().err
    assert code == 2 and "--calibration-end" in err and "is not a date" in err and len(err) < 300


def test_a_log_over_the_row_cap_is_refused_before_it_is_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    frame = _orders(150)
    code, out = _calibrate(tmp_path, frame, "--max-rows", "100")
    err = capsys.readouterr().err
    assert code == 2 and f"{len(frame):,} rows; at most 100 (--max-rows" in err and not out.parent.exists()


def test_duplicated_rows_are_dropped_by_default_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    frame = _orders(150)
    doubled = pd.concat([frame, frame], ignore_index=True)
    pd.testing.assert_frame_equal(validate_log(doubled).frame, validate_log(frame).frame)
    # The command's default too (a calibration end before the log stops it right after reading).
    code, _ = _calibrate(tmp_path, doubled, "--calibration-end", "2000-01-01")
    assert code == 2 and f"warning: dropped {len(frame)} duplicate rows" in capsys.readouterr().err


def test_offset_timestamps_keep_the_shops_local_days_and_mixed_offsets_are_accepted():
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            # an evening order either side of the spring daylight-saving change, and a UTC one
            "timestamp": ["2024-03-30T23:30:00+01:00", "2024-03-31T23:30:00+02:00", "2024-04-01T08:00Z"],
            "amount": [10.0, 20.0, 30.0],
        }
    )
    times = validate_log(frame).frame.set_index("amount")["time"]
    assert times[10.0] == pd.Timestamp("2024-03-30 23:30") and times[20.0] == pd.Timestamp("2024-03-31 23:30")
    assert times[30.0] == pd.Timestamp("2024-04-01 08:00")
    zoned = frame.assign(timestamp=pd.to_datetime(["2024-03-30 23:30"] * 3).tz_localize("Europe/Berlin"))
    assert (validate_log(zoned).frame["time"].dt.day == 30).all()


def test_one_customer_with_several_orders_warns_that_the_log_does_not_identify_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """The original failure: population.spend.q past its bound, 'invalid scenario', exit 2."""
    frame = pd.DataFrame(
        {
            "customer_id": ["a"] * 4,
            "timestamp": ["2024-01-01", "2024-01-05", "2024-02-01", "2024-03-01"],
            "amount": [10.0, 12.0, 9.0, 11.0],
        }
    )
    code, out = _calibrate(tmp_path, frame)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "does not identify this model" in err and "scaled into bounds, keeping the fitted mean" in err
    spend = yaml.safe_load(out.read_text())["population"]["spend"]
    fitted = json.loads((out.parent / "shop_report" / "calibration.json").read_text())["fits"]["gamma_gamma"]
    mean = fitted["params"]["p"] * fitted["params"]["gamma"] / (fitted["params"]["q"] - 1)
    assert fitted["params"]["q"] > 1e6 >= spend["q"] and 9 < mean < 13  # the repeat orders' values
    assert spend["p"] * spend["gamma"] / (spend["q"] - 1) == pytest.approx(mean, rel=1e-4)


def test_amounts_in_cents_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    frame = _orders(150)
    assert not any("cents" in note for note in validate_log(frame).warnings)
    cents = frame.assign(amount=(frame["amount"] * 100).round())
    code, _ = _calibrate(tmp_path, cents, "--calibration-end", "2000-01-01")
    assert code == 2 and "if the amounts are in cents, divide them by 100" in capsys.readouterr().err
