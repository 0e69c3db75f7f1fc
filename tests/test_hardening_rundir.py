"""Issue 19: run directories are untrusted: planted links are refused, forged results never shown."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from experiments.cli import main
from tests.test_hardening_run import SMALL


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    data = copy.deepcopy(SMALL)
    data["seeds"] = [0]
    config = root / "exp.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["run", str(config), "--out", str(root / "out"), "--quiet"]) == 0
    return root


def _copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source / "out", target / "out")
    shutil.copy(source / "exp.yaml", target / "exp.yaml")
    return target / "out"


def _outside_files(outside: Path) -> list[Path]:
    return [p for p in outside.rglob("*") if p.is_file()]


@pytest.mark.parametrize("planted", ["plots", ".lock", "models"])
def test_a_resumed_run_refuses_a_planted_link_in_one_line_and_writes_nothing_outside(
    finished_run: Path, tmp_path: Path, planted: str, capsys: pytest.CaptureFixture[str]
):
    out = _copy_run(finished_run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = out / planted
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    target.unlink(missing_ok=True)
    os.symlink(outside if planted != ".lock" else outside / "lockfile", target)
    (out / "summary.md").unlink()  # the resume would rewrite the report and plots
    code = main(["run", str(tmp_path / "exp.yaml"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert (
        code == 2 and len(err.splitlines()) == 1 and "holds a symbolic link" in err and "Traceback" not in err
    )
    assert _outside_files(outside) == [] and not (outside / "lockfile").exists()


def test_export_refuses_a_run_whose_models_are_a_link_outside(finished_run: Path, tmp_path: Path, capsys):
    out = _copy_run(finished_run, tmp_path)
    outside = tmp_path / "outside"
    (out / "models").rename(outside)
    os.symlink(outside, out / "models")
    code = main(["export", str(out), "--out", str(tmp_path / "artifact"), "--policy", "rules", "--seed", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "holds a symbolic link" in err
    assert not (tmp_path / "artifact").exists()


def test_a_clean_run_directory_still_resumes(finished_run: Path, tmp_path: Path):
    out = _copy_run(finished_run, tmp_path)
    assert main(["run", str(tmp_path / "exp.yaml"), "--out", str(out), "--quiet"]) == 0
    assert not (out / ".lock").exists()


def _forge(out: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    frame["margin"] = frame["margin"] + 1e6  # a run that "earned" a million more
    frame.to_parquet(out / "results.parquet")


def test_compare_refuses_forged_results_in_one_line(finished_run: Path, tmp_path: Path, capsys):
    out = _copy_run(finished_run, tmp_path)
    _forge(out)
    code = main(["compare", str(out), str(finished_run / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "the results were edited after the run" in err


def test_export_refuses_to_copy_forged_metrics_into_a_card(finished_run: Path, tmp_path: Path, capsys):
    out = _copy_run(finished_run, tmp_path)
    _forge(out)
    code = main(["export", str(out), "--out", str(tmp_path / "artifact"), "--policy", "rules", "--seed", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "the results were edited after the run" in err
    assert not (tmp_path / "artifact").exists()


def test_a_rerun_rebuilds_forged_results_from_the_cells(finished_run: Path, tmp_path: Path):
    import pandas as pd

    from experiments.runner import load_results

    out = _copy_run(finished_run, tmp_path)
    _forge(out)
    assert main(["run", str(tmp_path / "exp.yaml"), "--out", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(load_results(out), load_results(finished_run / "out"))
