"""Issue 12: validate everything before writing, run-directory integrity, locks and one-line disk errors."""

from __future__ import annotations

import copy
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments import runner
from experiments.cli import main
from experiments.config import ConfigError, config_from_dict
from experiments.runner import cell_dir, run_experiment, run_lock

ROOT = Path(__file__).resolve().parents[1]
SMALL: dict[str, Any] = {
    "name": "small",
    "env": {
        "id": "shopgym/IncentiveTargeting-v0",
        "scenario": "configs/scenarios/default.yaml",
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


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"backend": "ray"}, "ray"),
        ({"policies": [{"name": "p", "kind": "ppo", "kwargs": {"n_steps": 0}}]}, "n_steps"),
        ({"policies": [{"name": "p", "kind": "ppo", "kwargs": {"batch_size": 1}}]}, "batch_size"),
        ({"policies": [{"name": "p", "kind": "ppo", "kwargs": {"learning_rate": "x"}}]}, "learning_rate"),
        ({"policies": [{"name": "p", "kind": "ppo", "kwargs": {"gamma": 2}}]}, "gamma"),
        ({"policies": [{"name": "p", "kind": "dqn", "kwargs": {"buffer_size": 0}}]}, "buffer_size"),
        ({"policies": [{"name": "t", "kind": "thompson"}]}, "likelihood"),
        ({"env": {**SMALL["env"], "kwargs": {"horizon_days": "x"}}}, "horizon_days"),
        (
            {"env": {**SMALL["env"], "kwargs": {"horizon_days": 5, "reward_scale": float("nan")}}},
            "reward_scale",
        ),
        ({"env": {**SMALL["env"], "overrides": {"shipping.fee": float("inf")}}}, "fee"),
        ({"seeds": [2**63]}, "seeds"),
        ({"variants": []}, "variants"),
    ],
)
def test_bad_configs_exit_2_with_one_message_and_write_nothing(
    tmp_path: Path,
    change: dict[str, Any],
    field: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without ray: import fails
    path = _write(tmp_path, {**copy.deepcopy(SMALL), **change})
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert field in err and "Traceback" not in err and len(err) < 4000
    assert not out.exists()  # nothing written: no config.resolved.yaml, no meta.json


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("runs")
    scenario = where / "scenario.yaml"
    scenario.write_text((ROOT / "sim" / "scenarios" / "default.yaml").read_text())
    data = copy.deepcopy(SMALL)
    data["env"]["scenario"] = str(scenario)
    run = run_experiment(config_from_dict(data), where / "run", quiet=True)
    return run, scenario


def _config(scenario: Path) -> Any:
    data = copy.deepcopy(SMALL)
    data["env"]["scenario"] = str(scenario)
    return config_from_dict(data)


def test_resume_after_the_scenario_file_was_edited_is_refused(finished: tuple[Path, Path], tmp_path: Path):
    run, scenario = finished
    edited = tmp_path / "run"
    import shutil

    shutil.copytree(run, edited)
    original = scenario.read_text()
    try:
        scenario.write_text(original.replace("fee: 5.99", "fee: 6.99"))
        assert "fee: 6.99" in scenario.read_text()
        with pytest.raises(ConfigError, match="scenario"):
            run_experiment(_config(scenario), edited, quiet=True)
    finally:
        scenario.write_text(original)


def test_cells_with_deleted_or_swapped_files_are_redone_not_dropped(
    finished: tuple[Path, Path], tmp_path: Path
):
    import shutil

    run, scenario = finished
    copy_dir = tmp_path / "run"
    shutil.copytree(run, copy_dir)
    before = pd.read_parquet(run / "results.parquet")
    a = cell_dir(copy_dir, "base", "none", 0)
    b = cell_dir(copy_dir, "base", "rules", 1)
    (a / "episodes.parquet").unlink()  # deleted
    shutil.copy(a / "mix.parquet", b / "mix.parquet")  # swapped in from another cell
    assert runner.cell_problem(copy_dir, "base", "none", 0) == "episodes.parquet is missing"
    assert "sha256" in str(runner.cell_problem(copy_dir, "base", "rules", 1))
    with pytest.raises(ConfigError, match=r"episodes\.parquet is missing"):
        runner.gather(copy_dir, _config(scenario))
    run_experiment(_config(scenario), copy_dir, quiet=True)
    after = pd.read_parquet(copy_dir / "results.parquet")
    pd.testing.assert_frame_equal(before, after)  # redone cells are byte-for-byte the same results
    done = json.loads((a / "done.json").read_text())
    assert set(done["files"]) >= {"episodes.parquet", "mix.parquet"} and done["scenario_hash"]


def test_a_second_run_into_a_locked_directory_is_refused(finished: tuple[Path, Path]):
    run, scenario = finished
    with run_lock(run), pytest.raises(ConfigError, match="another shopgym run"):
        run_experiment(_config(scenario), run, quiet=True)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
):
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(code, os.strerror(code), str(tmp_path / "out" / "meta.json"))

    monkeypatch.setattr(runner, "atomic_write_json", fail)
    status = main(["run", str(_write(tmp_path, SMALL)), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and os.strerror(code) in err


def test_pool_workers_exit_when_the_parent_is_killed(tmp_path: Path):
    """The original failure: kill -9 of `shopgym run` left its process-pool workers running."""
    pid_file = tmp_path / "worker.pid"
    script = textwrap.dedent(
        f"""
        import os, time
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context
        from experiments.runner import _die_with_parent

        def work(path):
            open(path, "w").write(str(os.getpid()))
            time.sleep(60)

        if __name__ == "__main__":
            pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_die_with_parent,
                                       initargs=(os.getpid(),))
            pool.submit(work, {str(pid_file)!r})
            time.sleep(60)
        """
    )
    (tmp_path / "parent.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.is_file() or not pid_file.read_text():
            assert time.monotonic() < deadline, "worker never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker):
            assert time.monotonic() < deadline, "worker outlived its parent"
            time.sleep(0.2)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_an_episode_without_any_decision_point_evaluates_to_a_finite_row():
    """The original failure: evaluation stepped an episode over at reset ('call reset() before step()')."""
    import math

    import gymnasium as gym

    from policies.evaluate import evaluate
    from policies.registry import make_policy

    overrides = {"population.shoppers": 1, "population.acquisition_days": 0.0}
    env = gym.make(
        "shopgym/IncentiveTargeting-v0", overrides=overrides, horizon_days=1, decision_points=("lapsing",)
    )
    policy = make_policy("segment_rules", env)
    (record,) = evaluate(policy, env, 1, seed=0)
    assert record.row["length"] == 0 and record.row["return"] == 0.0
    assert all(math.isfinite(v) for v in record.row.values() if isinstance(v, float))
    assert "margin" in record.row


def test_stale_temporary_files_of_a_killed_run_are_removed_on_resume(
    finished: tuple[Path, Path], tmp_path: Path
):
    import shutil

    run, scenario = finished
    copy_dir = tmp_path / "run"
    shutil.copytree(run, copy_dir)
    strays = [
        copy_dir / ".results.parquet.k3j2.tmp",
        copy_dir / "plots" / ".incentive_mix.tmp.png",
        copy_dir / "models" / "base" / "none" / "seed0" / "model.tmp.zip",
    ]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"half written")
    run_experiment(_config(scenario), copy_dir, quiet=True)
    assert not any(stray.exists() for stray in strays)


def test_an_environment_without_decisions_runs_empty_episodes_to_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("SHOPGYM_TRACEBACK", raising=False)
    data = copy.deepcopy(SMALL)
    data["env"] = {
        "id": "shopgym/ShopperJourney-v0",
        "scenario": "configs/scenarios/default.yaml",
        "overrides": {"population.shoppers": 150},
        "kwargs": {"horizon_days": 1, "decision_points": ["lapsing"]},
    }
    data["policies"] = [{"name": "none", "kind": "none"}]
    code = main(["run", str(_write(tmp_path, data)), "--out", str(tmp_path / "out"), "--quiet"])
    # Every reset can be stepped (issue 19): an episode with no decision ends on its first step.
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    results = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert len(results) > 0 and np.isfinite(results["return"]).all()
