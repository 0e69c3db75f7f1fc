"""Shared fixtures: scenario paths and small, fast scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.params import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "sim" / "scenarios" / "default.yaml"
CDNOW = ROOT / "sim" / "scenarios" / "cdnow.yaml"


@pytest.fixture(scope="session")
def default_scenario() -> Scenario:
    return load_scenario(DEFAULT)


@pytest.fixture(scope="session")
def small_scenario() -> Scenario:
    """2,000 shoppers acquired over 30 days: seconds-fast yet with every process active."""
    return load_scenario(DEFAULT, {"population.shoppers": 2000, "population.acquisition_days": 30.0})
