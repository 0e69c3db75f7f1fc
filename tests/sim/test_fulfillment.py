"""Fulfillment: capacity binds, lead times grow with load, overtime and lateness follow."""

from __future__ import annotations

import numpy as np

from sim.engine import Simulation
from sim.metrics import summarize
from sim.params import load_scenario
from tests.conftest import DEFAULT


def _run(capacity_per_1k: float, seed: int = 0) -> Simulation:
    scenario = load_scenario(
        DEFAULT,
        {
            "population.shoppers": 3000,
            "population.acquisition_days": 60.0,
            "warehouse.pick_capacity_per_1k_shoppers": capacity_per_1k,
        },
    )
    return Simulation(scenario, seed=seed, horizon_days=90, log_level="aggregates").run()


def _lead_days(sim: Simulation) -> np.ndarray:
    cols = sim.orders.cols
    n = sim.orders.size
    delivered = ~np.isnan(cols["delivered_at"][:n])
    return (cols["delivered_at"][:n][delivered] - cols["placed_at"][:n][delivered]) / 24.0


def test_scarce_capacity_lengthens_lead_times_and_raises_late_share_backlog_and_overtime():
    ample, scarce = _run(100.0), _run(8.0)
    a, s = summarize(ample), summarize(scarce)
    # Same seed, same shoppers: only the warehouse differs.
    assert a["shoppers"] == s["shoppers"]
    assert _lead_days(scarce).mean() > _lead_days(ample).mean() + 1.0
    assert s["late_delivery_share"] > a["late_delivery_share"] + 0.2
    assert s["backlog_max"] > 10 * max(a["backlog_max"], 1)
    assert s["overtime_orders"] > 0 and a["overtime_orders"] == 0
    assert s["overtime_cost"] > 0 and s["peak_utilization"] > 1.0  # overtime above regular capacity


def test_late_deliveries_are_recorded_in_shopper_state():
    sim = _run(8.0)
    cols, n = sim.orders.cols, sim.orders.size
    late_per_shopper = np.bincount(cols["shopper"][:n][cols["late"][:n]], minlength=sim.pop.size)
    assert late_per_shopper.sum() > 0
    assert np.array_equal(late_per_shopper, sim.pop.late_deliveries)


def test_orders_flow_through_pick_ship_deliver_in_time_order():
    sim = _run(30.0)
    cols, n = sim.orders.cols, sim.orders.size
    done = ~np.isnan(cols["delivered_at"][:n])
    assert done.mean() > 0.8
    placed, picked = cols["placed_at"][:n][done], cols["picked_at"][:n][done]
    shipped, delivered = cols["shipped_at"][:n][done], cols["delivered_at"][:n][done]
    assert (placed <= picked).all() and (picked <= shipped).all() and (shipped < delivered).all()
    returned = cols["returned"][:n]
    assert not returned[~done].any()  # only delivered orders come back
