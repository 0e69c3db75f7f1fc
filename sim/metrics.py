"""Business metrics of a finished (or paused) simulation: LTV, margin and fulfillment load.

One module computes them for every report (CLI summary, environments' ``info``, experiments).
Money is in dollars, derived from the ledger's exact cents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.economics import LEDGER_LINES, residual_value
from sim.engine import Simulation
from sim.mechanisms.breadth import count_categories
from sim.population import CHANNEL_REFERRED, Population


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def breadth(pop: Population, rows: slice | np.ndarray) -> dict[str, float]:
    """Categories per buying shopper and the share of buyers who bought in two or more (cross-buyers)."""
    count = count_categories(pop.categories_bought[rows])
    buyers = count[count > 0]
    return {
        "categories_per_shopper": float(buyers.mean()) if buyers.size else 0.0,
        "cross_buying_share": float((buyers >= 2).mean()) if buyers.size else 0.0,
    }


def summarize(sim: Simulation) -> dict[str, Any]:
    """The headline metrics of a run, as a flat JSON-ready dict."""
    daily = sim.daily.to_frame()
    n = sim.acquired()
    rows = sim.acquired_rows()
    pop, ledger = sim.pop, sim.ledger
    totals = ledger.totals_cents()
    residual = residual_value(sim.scenario, pop, sim.now_hours, rows)
    ltv = ledger.margin_pv[rows] + residual
    orders = sim.orders
    delivered = int(np.count_nonzero(~np.isnan(orders.column("delivered_at"))))
    carts = float(daily["carts"].sum())
    converted = carts - daily["abandoned"].sum() + daily["recovered"].sum()
    utilization = daily["units_used"] / daily["capacity"].replace(0, np.nan)
    summary: dict[str, Any] = {
        "scenario": sim.scenario.name,
        "scenario_hash": sim.scenario.config_hash(),
        "shoppers": n,
        "days": sim.horizon_days,
        "visits": int(daily["visits"].sum()),
        "carts": int(carts),
        "cart_abandonment_rate": 1.0 - _ratio(converted, carts),
        "checkout_abandonment_rate": _ratio(daily["abandoned"].sum(), carts),
        "carts_recovered": int(daily["recovered"].sum()),
        "orders": orders.size,
        "repeat_orders": orders.size - int(np.unique(orders.column("shopper")).size),
        "mean_order_value": _ratio(orders.column("list_cents").sum() / 100.0, orders.size),
    }
    for line in LEDGER_LINES:
        key = "revenue" if line == "revenue" else f"{line}_cost"
        summary[key] = totals[line] / 100.0
    summary.update(
        {
            "margin": totals["margin"] / 100.0,
            "points_liability": float(pop.points[rows].sum() * sim.scenario.loyalty.point_value),
            "ltv_mean": float(ltv.mean()) if n else 0.0,
            "ltv_realized_mean": float(ledger.margin_pv[rows].mean()) if n else 0.0,
            "ltv_residual_mean": float(residual.mean()) if n else 0.0,
            "active_share": _ratio(float(pop.alive[rows].sum()), n),
            "deliveries": delivered,
            # Returns decided (the shopper will send the order back) vs received at the warehouse
            # by the horizon: returns_cost books only the received ones.
            "returns": int(orders.column("returned").sum()),
            "returns_received": int(daily["returns"].sum()),
            "returns_share": _ratio(float(orders.column("returned").sum()), delivered),
            "late_delivery_share": _ratio(daily["late_deliveries"].sum(), daily["deliveries"].sum()),
            "utilization_mean": float(utilization.mean()),
            "peak_utilization": float(utilization.max()),
            "backlog_mean": float(daily["backlog_end"].mean()),
            "backlog_max": int(daily["backlog_end"].max()),
            "overtime_orders": int(daily["overtime_orders"].sum()),
            "incentives_offered": int(pop.incentives_received[rows].sum()),
            "referred_shoppers": int((pop.channel[rows] == CHANNEL_REFERRED).sum()),
            "fake_accounts": int(pop.fake_account[rows].sum()),
            "referral_cost": sim.referral_cost_cents / 100.0,
            "referral_cost_abuser_share": _ratio(sim.referral_cost_abusers_cents, sim.referral_cost_cents),
            **breadth(pop, rows),
        }
    )
    return summary
