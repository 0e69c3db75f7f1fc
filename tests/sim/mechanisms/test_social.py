"""Social proof: neighbours' purchases raise conversion and saturate; bestsellers lift choice."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from sim.engine import Simulation
from sim.mechanisms.social import community_graph, neighbour_signal, social_logit_lift
from sim.metrics import summarize
from sim.params import load_scenario
from tests.conftest import DEFAULT


def test_graph_is_community_structured_with_fixed_degree():
    community, neighbours = community_graph(5000, 100, 5, 1, np.random.default_rng(0))
    assert neighbours.shape == (5000, 6) and neighbours.dtype == np.int32
    assert (community[neighbours[:, :5]] == community[:, None]).all()
    assert (community[neighbours[:, 5]] == community).mean() < 0.05
    assert np.bincount(community).max() == 100


def test_social_lift_rises_with_neighbour_purchases_concavely_and_saturates():
    signal = np.array([0.0, 1.0, 2.0, 4.0, 50.0])
    lift = social_logit_lift(signal, np.full(5, 0.5), np.zeros(5, bool), 0.5, 1.0, 1.0, 0.0)
    assert lift[0] == 0.0
    assert np.all(np.diff(lift) > 0)
    assert lift[1] - lift[0] > lift[2] - lift[1] > lift[3] - lift[2]  # concave
    assert lift[-1] == np.float64(0.5) or abs(lift[-1] - 0.5) < 1e-9  # saturates at weight x susceptibility
    assert neighbour_signal(
        np.array([1.0, 0.0, 2.0]), np.array([[1, 2], [0, 0], [0, 1]], np.int32)
    ).tolist() == [
        2.0,
        2.0,
        1.0,
    ]


def _checkout_conversion(bestseller_lift: float) -> float:
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 4000,
            "population.acquisition_days": 30.0,
            "mechanisms.social.proof_weight": 0.0,
            "mechanisms.social.bestseller_share": 1.0,
            "mechanisms.social.bestseller_lift": bestseller_lift,
        },
    )
    sim = Simulation(scenario, seed=0, horizon_days=90, log_level="aggregates").run()
    return 1.0 - summarize(sim)["checkout_abandonment_rate"]


def test_bestseller_badge_lifts_choice_by_roughly_ten_to_twenty_five_percent():
    """Cai, Chen & Fang 2009: popularity information lifts choice by about 13-20%."""
    default_lift = load_scenario(DEFAULT).mechanisms.social.bestseller_lift
    ratio = _checkout_conversion(default_lift) / _checkout_conversion(0.0)
    assert 1.10 <= ratio <= 1.25


def _watched_conversion(proof_weight: float, level: float) -> float:
    """Checkout conversion of shoppers whose community peers are made to look like recent buyers.

    Every day, just before the social signal is computed, half the shoppers of even
    communities get ``level`` recent purchases; the other half of those communities is watched.
    """
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 6000,
            "population.acquisition_days": 0.0,
            "mechanisms.social.proof_weight": proof_weight,
        },
    )
    sim = Simulation(scenario, seed=5, horizon_days=60)
    even = sim.pop.community % 2 == 0
    seeded = np.flatnonzero(even & (np.arange(sim.pop.size) % 2 == 0))

    def neighbours_buy() -> Generator[Any, Any, None]:
        while True:
            sim.pop.recent_purchases[seeded] = level
            yield sim.env.timeout(24.0)

    sim.env.process(neighbours_buy())
    log = sim.run().log.to_frame()
    watched = even & (np.arange(sim.pop.size) % 2 == 1)
    mine = log[watched[log["shopper_id"].to_numpy()]]
    return 1.0 - (mine["event"] == "abandon").sum() / (mine["event"] == "cart").sum()


def test_conversion_rises_with_neighbours_recent_purchases_and_saturates():
    conversion = [_watched_conversion(1.0, level) for level in (0.0, 0.5, 2.0, 20.0)]
    assert conversion[0] < conversion[1] < conversion[2]
    # Natural purchases already half-saturate the signal (mean ~0.7), so the rest adds ~5%.
    assert conversion[2] / conversion[0] > 1.04
    assert conversion[3] - conversion[2] < conversion[2] - conversion[0]  # saturating
    # Without social proof, what the neighbours buy makes no difference at all.
    assert _watched_conversion(0.0, 0.0) == _watched_conversion(0.0, 20.0)
