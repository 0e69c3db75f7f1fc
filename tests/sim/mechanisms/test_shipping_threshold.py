"""Free-shipping threshold: order values bunch just above it (Lewis, Singh & Fay 2006)."""

from __future__ import annotations

import numpy as np

from sim.engine import Simulation
from sim.mechanisms.shipping_threshold import topped_up_basket
from sim.params import load_scenario
from tests.conftest import DEFAULT


def test_only_baskets_close_below_the_threshold_top_up():
    basket = np.array([30.0, 45.0, 49.0, 55.0])
    u = np.array([0.1, 0.1, 0.9, 0.1])
    out = topped_up_basket(
        basket, u, fee=5.99, threshold=50.0, topup_prob=0.5, max_gap_fee_multiple=2.0, overshoot_max=8.0
    )
    assert out[0] == 30.0  # 20 short: more than two fees
    assert 50.0 <= out[1] < 58.0  # topped up
    assert out[2] == 49.0  # chose not to (u above topup_prob)
    assert out[3] == 55.0  # already above


def _order_values(topup_prob: float) -> np.ndarray:
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 4000,
            "population.acquisition_days": 60.0,
            "mechanisms.shipping_threshold.topup_prob": topup_prob,
        },
    )
    sim = Simulation(scenario, seed=0, horizon_days=120, log_level="aggregates").run()
    return sim.orders.column("list_cents") / 100.0


def test_order_values_bunch_just_above_the_free_shipping_threshold():
    threshold = 50.0
    with_bunching, neutral = _order_values(0.5), _order_values(0.0)
    above = ((with_bunching >= threshold) & (with_bunching < threshold + 5)).sum()
    below = ((with_bunching >= threshold - 5) & (with_bunching < threshold)).sum()
    assert above > 2.5 * below
    neutral_above = ((neutral >= threshold) & (neutral < threshold + 5)).sum()
    neutral_below = ((neutral >= threshold - 5) & (neutral < threshold)).sum()
    assert neutral_above < 1.3 * neutral_below  # a smooth density without the mechanism
    assert above > 1.5 * neutral_above
