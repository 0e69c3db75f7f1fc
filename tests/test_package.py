"""What a user expects of the package: ``import shopgym``, ``--version``, license, configs by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.table import Table

from experiments.cli import main
from experiments.config import ConfigError, load_config, shipped_configs
from experiments.report import source_of
from experiments.terminal import FILE_WIDTH, make_console, package_version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_shopgym_prefix_registers_the_ids_in_a_fresh_process():
    code = (
        "import sys, gymnasium as gym\n"
        "env = gym.make('shopgym:shopgym/ShopperJourney-v0')\n"
        "env.reset(seed=0); env.step(0)\n"
        "assert 'shopgym' in sys.modules\n"
        "import shopgym; print(shopgym.__version__, len(shopgym.ENV_IDS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [package_version(), "3"]


def test_shopgym_is_a_package_the_wheel_carries():
    assert "shopgym*" in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"shopgym {package_version()}"
    assert package_version() == PYPROJECT["project"]["version"]


def test_license_and_citation_match_the_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"]["text"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a pointer to it
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    assert citation["version"] == PYPROJECT["project"]["version"] and citation["title"]
    classifiers = PYPROJECT["project"]["classifiers"]
    assert "License :: OSI Approved :: Apache Software License" in classifiers


def test_a_shipped_config_is_found_by_name_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    assert {"quickstart", "bandits_vs_rl"} <= set(shipped_configs())
    assert load_config("quickstart", check=False).name == "quickstart"
    with pytest.raises(ConfigError, match=r"not found: quickstar \(shipped configs, by name: .*quickstart"):
        load_config("quickstar")


def test_the_repository_configs_folder_still_works():
    assert load_config(ROOT / "configs" / "quickstart.yaml", check=False).name == "quickstart"


def test_summary_names_the_version_and_the_commit_only_when_there_is_one():
    assert source_of({"git_sha": None, "shopgym_version": "0.1.0"}) == "shopgym 0.1.0"
    assert source_of({"git_sha": "abc", "shopgym_version": "0.1.0"}) == "shopgym 0.1.0, git abc"
    assert source_of({"git_sha": None, "versions": {"shopgym": "0.0.9"}}) == "shopgym 0.0.9"  # older runs


def test_tables_written_to_a_file_keep_their_headers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()
    assert not console.is_terminal and console.width == FILE_WIDTH
    headers = ["incentive_cost_per_shopper", "late_delivery_share", "normalized_score", "ltv_mean", "margin"]
    table = Table(*headers)
    table.add_row("12.34", "0.031", "0.52", "101.20", "35.10")
    console.print(table)
    out = capsys.readouterr().out
    assert all(header in out for header in headers) and "…" not in out
