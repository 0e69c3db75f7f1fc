"""The event log and the daily KPI table.

Event log schema (one row per event, sorted by time then by the order events were recorded):

| column      | dtype    | meaning                                                            |
|-------------|----------|--------------------------------------------------------------------|
| time_hours  | float64  | simulation time in hours since the start (day d is [24d, 24d+24))  |
| day         | int32    | ``floor(time_hours / 24)``                                         |
| shopper_id  | int64    | row of the shopper in the population                               |
| event       | category | one of :data:`EVENT_KINDS`                                         |
| order_id    | int64    | the order concerned, -1 if none                                    |
| amount      | float64  | dollars: basket value, order value, refund or incentive cost; NaN  |
| incentive   | int16    | incentive id offered or redeemed, -1 if none                       |
| detail      | int16    | cart/order category; 1 if a delivery is late; -1 otherwise         |

With ``level="aggregates"`` no rows are kept (for speed); the daily KPI table is always kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sim.io import atomic_write_parquet

EVENT_KINDS = (
    "acquired",
    "visit",
    "cart",
    "abandon",
    "cart_lost",
    "order",
    "ship",
    "deliver",
    "return",
    "incentive_offered",
    "incentive_redeemed",
    "churn",
    "lapsing",
    "winback",
)
EVENT_CODE = {name: code for code, name in enumerate(EVENT_KINDS)}
LogLevel = Literal["events", "aggregates"]

DAILY_COLUMNS = (
    "acquired",
    "visits",
    "carts",
    "abandoned",
    "recovered",
    "orders",
    "revenue",
    "incentive_cost",
    "picked",
    "overtime_orders",
    "returns_processed",
    "units_used",
    "capacity",
    "backlog_end",
    "shipped",
    "deliveries",
    "late_deliveries",
    "returns",
    "churned",
    "won_back",
    "ineligible_offers",
    "downgrades",
    "stock_blocked",
)


class EventLog:
    """Columnar, append-only log of simulation events."""

    def __init__(self, level: LogLevel = "events") -> None:
        self.level: LogLevel = level
        self._chunks: list[tuple[NDArray[np.generic], ...]] = []

    @property
    def enabled(self) -> bool:
        """Whether individual events are kept."""
        return self.level == "events"

    def record(
        self,
        kind: str,
        time_hours: NDArray[np.float64] | float,
        shoppers: NDArray[np.int64],
        order_id: NDArray[np.int64] | int = -1,
        amount: NDArray[np.float64] | float = np.nan,
        incentive: NDArray[np.integer] | int = -1,
        detail: NDArray[np.integer] | int = -1,
    ) -> None:
        """Append one event per shopper in ``shoppers`` (scalars broadcast)."""
        n = shoppers.size
        if not self.enabled or n == 0:
            return
        # Copies, so that later updates to a caller's arrays can never rewrite the log.
        self._chunks.append(
            (
                np.array(np.broadcast_to(np.asarray(time_hours, dtype=np.float64), (n,))),
                np.array(shoppers, dtype=np.int64),
                np.full(n, EVENT_CODE[kind], dtype=np.int8),
                np.array(np.broadcast_to(np.asarray(order_id, dtype=np.int64), (n,))),
                np.array(np.broadcast_to(np.asarray(amount, dtype=np.float64), (n,))),
                np.array(np.broadcast_to(np.asarray(incentive, dtype=np.int16), (n,))),
                np.array(np.broadcast_to(np.asarray(detail, dtype=np.int16), (n,))),
            )
        )

    def __len__(self) -> int:
        return sum(c[0].size for c in self._chunks)

    def to_frame(self) -> pd.DataFrame:
        """The log as a DataFrame with the documented schema, sorted by time (stable)."""
        cols = [np.concatenate(parts) if parts else np.empty(0) for parts in zip(*self._chunks, strict=True)]
        if not cols:
            cols = [
                np.empty(0, d)
                for d in (np.float64, np.int64, np.int8, np.int64, np.float64, np.int16, np.int16)
            ]
        time, shopper, code, order, amount, incentive, detail = cols
        order_idx = np.argsort(time, kind="stable")
        return pd.DataFrame(
            {
                "time_hours": time[order_idx],
                "day": np.floor(time[order_idx] / 24.0).astype(np.int32),
                "shopper_id": shopper[order_idx],
                "event": pd.Categorical.from_codes(
                    code[order_idx].astype(np.int64), categories=pd.Index(EVENT_KINDS)
                ),
                "order_id": order[order_idx],
                "amount": amount[order_idx],
                "incentive": incentive[order_idx],
                "detail": detail[order_idx],
            }
        )

    def write_parquet(self, path: Path) -> None:
        """Write the log to ``path`` atomically."""
        atomic_write_parquet(self.to_frame(), path)


class DailyStats:
    """One row per simulated day of counters the engine adds to as events happen."""

    def __init__(self, days: int) -> None:
        self.days = days
        self.values = {name: np.zeros(days + 1) for name in DAILY_COLUMNS}

    def add(self, name: str, time_hours: float, amount: float) -> None:
        """Add ``amount`` to counter ``name`` on the day containing ``time_hours``."""
        self.values[name][min(int(time_hours // 24.0), self.days)] += amount

    def to_frame(self) -> pd.DataFrame:
        """The counters as a DataFrame indexed by day (the horizon's days only)."""
        frame = pd.DataFrame({k: v[: self.days] for k, v in self.values.items()})
        frame.index.name = "day"
        return frame
