"""Shipped scenarios are package data, found by name; their old configs/ paths still resolve."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import sim
from sim.envs.common import resolve_scenario
from sim.params import ScenarioError, load_scenario
from sim.scenarios import SCENARIO_DIR, SHIPPED, scenario_path


def test_the_scenarios_ship_inside_the_sim_package():
    assert {"cdnow", "default", "peak_season"} <= set(SHIPPED)
    assert Path(sim.__file__).resolve().parent / "scenarios" == SCENARIO_DIR


@pytest.mark.parametrize("name", ["default", "cdnow", "peak_season"])
def test_a_name_and_the_legacy_configs_path_load_the_same_scenario(name: str):
    by_name = load_scenario(name)
    legacy = load_scenario(f"configs/scenarios/{name}.yaml")
    assert by_name.config_hash() == legacy.config_hash() == resolve_scenario(name, None).config_hash()


def test_an_existing_file_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").write_text("name: mine\n")
    assert scenario_path("default") == Path("default")


def test_an_unknown_name_fails_naming_the_path():
    with pytest.raises(ScenarioError, match="scenario file not found: no_such_shop"):
        load_scenario("no_such_shop")


def test_envs_default_to_shipped_scenarios_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    env = gym.make("shopgym/ShopperJourney-v0", horizon_days=30)
    assert env.unwrapped.scenario.config_hash() == load_scenario("default").config_hash()
