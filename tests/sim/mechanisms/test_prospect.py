"""Loss aversion: loss-framed points beat gain-framed points of equal face value."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine import DecisionBatch, Simulation
from sim.mechanisms.prospect import framed_offer_pull, prospect_value
from sim.metrics import summarize
from sim.params import Scenario, load_scenario
from tests.conftest import DEFAULT


def test_value_function_is_concave_for_gains_and_steeper_for_losses():
    x = np.array([1.0, 10.0, 100.0])
    gains = prospect_value(x, 2.25, 0.88, 0.88)
    losses = prospect_value(-x, 2.25, 0.88, 0.88)
    assert np.allclose(gains, x**0.88)
    assert np.allclose(losses, -2.25 * x**0.88)
    assert gains[1] - gains[0] > gains[2] - gains[1] - (gains[2] - gains[1]) * 0.9  # diminishing
    assert (gains[1] / gains[0]) < 10.0


def test_loss_framed_pull_is_lambda_times_gain_framed_pull():
    value, lam = np.array([5.0, 5.0]), np.array([2.0, 2.0])
    pull = framed_offer_pull(value, np.array([False, True]), lam, 0.88, 0.88)
    assert pull[1] == pytest.approx(2.0 * pull[0])


def _orders_with_points_offer(scenario: Scenario, offer_name: str, seed: int) -> int:
    offer = [i.name for i in scenario.incentives].index(offer_name)

    def everyone_at_login(batch: DecisionBatch) -> np.ndarray:
        return np.full(batch.shoppers.size, offer if batch.kind == "login" else 0)

    sim = Simulation(scenario, seed=seed, horizon_days=60, log_level="aggregates")
    return int(summarize(sim.run(decide=everyone_at_login))["orders"])


def test_loss_framed_offer_beats_gain_framed_of_equal_value_and_the_gap_vanishes_without_loss_aversion():
    overrides = {"population.shoppers": 3000, "population.acquisition_days": 20.0}
    scenario = load_scenario(DEFAULT, overrides)
    loss = _orders_with_points_offer(scenario, "expiring_500_points", seed=2)
    gain = _orders_with_points_offer(scenario, "bonus_500_points", seed=2)
    none = _orders_with_points_offer(scenario, "none", seed=2)
    # Paired by common random numbers: the difference is the framing alone.
    assert gain > none
    assert loss > gain * 1.02
    neutral = load_scenario(DEFAULT, {**overrides, "population.loss_aversion": {"mean": 1.0, "cv": 0.0}})
    assert _orders_with_points_offer(neutral, "expiring_500_points", 2) == _orders_with_points_offer(
        neutral, "bonus_500_points", 2
    )
