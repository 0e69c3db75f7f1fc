"""Shared fixtures: scenario paths and small, fast scenarios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.engine import Simulation
from sim.params import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "sim" / "scenarios" / "default.yaml"
CDNOW = ROOT / "sim" / "scenarios" / "cdnow.yaml"


def force_orders(sim: Simulation, shoppers: np.ndarray, times: np.ndarray) -> None:
    """One extra order for each of ``shoppers`` at ``times``, at list price, as if an incentive had caused it.

    Call it at a decision batch (the clock at its batch's end): the orders enter the warehouse
    then, as orders placed in that session batch do.
    """
    draws = sim._day
    assert draws is not None
    basket = sim._basket(shoppers)
    offer = np.zeros(shoppers.size, np.int16)
    sim._place_orders(
        shoppers,
        times,
        basket,
        sim._categories(shoppers, draws.u_category[shoppers], times),
        offer,
        np.zeros(shoppers.size, np.int64),
        sim.catalog.terms(offer, basket),
    )


@pytest.fixture(scope="session")
def default_scenario() -> Scenario:
    return load_scenario(DEFAULT)


@pytest.fixture(scope="session")
def small_scenario() -> Scenario:
    """2,000 shoppers acquired over 30 days: seconds-fast yet with every process active."""
    return load_scenario(DEFAULT, {"population.shoppers": 2000, "population.acquisition_days": 30.0})
