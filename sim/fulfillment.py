"""Orders and fulfillment: a capacity-limited warehouse, a carrier and returns, on the SimPy clock.

Scenario: orders join a FIFO backlog (a SimPy ``Container`` counts it). Pick/pack waves start
at fixed hours; each wave needs the pick team (a SimPy ``Resource``, so a long wave delays the
next) and picks up to its share of the day's regular capacity, the last wave of the day also
using overtime capacity at a premium. An order can only be picked while its category has
stock (one SimPy ``Container`` per category, refilled to a base-stock level after a supplier
lead time). Packed orders leave at the daily carrier cut-off; transit takes base + jitter
days plus congestion days when the day's parcels exceed the carrier's capacity, so lead times
grow with load both in the backlog and on the road. The shop promises a delivery *date*, as
checkout pages do ("arrives by Friday"): the end of the day ``shipping.promised_days`` after
the order's day (:func:`promised_by_hours`), whatever the hour the order was placed. A
delivery after that date is late and is recorded in the shopper's state; with the default
schedule (waves to 15:00, cut-off 17:00, 2 + 0..1 transit days, a 4-day promise) an order is
late only when the backlog or the carrier's congestion delays it, i.e. from load. Delivered
orders are returned at the category's rate (NRF/Appriss 2023: ~15-20% of online orders),
refunds are booked when the return arrives, and returns use leftover warehouse capacity
(reverse load).

All orders concerned by an event are handled in one vectorized call; no SimPy process per
order is created, so the model scales to millions of shoppers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy
from numpy.typing import NDArray

from sim.economics import OVERTIME, Ledger, to_cents
from sim.events import DailyStats, EventLog
from sim.params import Scenario
from sim.population import HOURS_PER_DAY, Population

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

_ORDER_COLUMNS: dict[str, tuple[type[np.generic], Any]] = {
    "shopper": (np.int64, -1),
    "placed_at": (np.float64, np.nan),
    "category": (np.int8, -1),
    "list_cents": (np.int64, 0),
    "fee_cents": (np.int64, 0),
    "discount_cents": (np.int64, 0),
    "cogs_cents": (np.int64, 0),
    "points_earned": (np.int64, 0),
    "incentive": (np.int16, 0),
    "u_return": (np.float64, np.nan),
    "u_transit": (np.float64, np.nan),
    "picked_at": (np.float64, np.nan),
    "shipped_at": (np.float64, np.nan),
    "delivered_at": (np.float64, np.nan),
    "promised_at": (np.float64, np.nan),
    "late": (np.bool_, False),
    "returned": (np.bool_, False),
    "overtime": (np.bool_, False),
    "new_category": (np.bool_, False),  # a cross-buy: her first order in its category, not her first
}


def promised_by_hours(placed_at: F64 | float, promised_days: float) -> F64:
    """The promised delivery deadline (hours): the end of the day ``promised_days`` after the order's."""
    order_day = np.floor(np.asarray(placed_at, dtype=np.float64) / HOURS_PER_DAY)
    return (order_day + promised_days + 1.0) * HOURS_PER_DAY


#: Hour of the daily round at which returned parcels are received and booked.
RETURNS_ROUND_HOUR = 12.0


def transit_days(u_transit: F64, scenario: Scenario, congestion_days: float = 0.0) -> F64:
    """Days on the road: the base transit, the parcel's jitter day(s) and the carrier's congestion."""
    ship = scenario.shipping
    return ship.base_transit_days + np.floor(u_transit * (ship.transit_jitter_days + 1)) + congestion_days


def unloaded_delivery_hours(scenario: Scenario, placed_at: F64, via_batch: bool, u_transit: F64) -> F64:
    """When orders arrive if the warehouse never backs up (a journey's one shopper is no load).

    The order reaches the warehouse at the end of its session batch (``via_batch``; a
    recovered cart at once), is picked by the next wave, leaves at the next carrier cut-off
    and arrives after :func:`transit_days` at the delivery hour: the schedule
    :class:`Fulfillment` keeps while its capacity suffices.
    """
    ship, waves = scenario.shipping, np.asarray(scenario.warehouse.wave_hours, dtype=np.float64)
    batch = scenario.engine.session_batch_hours
    at_warehouse = (np.floor(placed_at / batch) + 1.0) * batch if via_batch else placed_at
    day = np.floor(at_warehouse / HOURS_PER_DAY)
    hour = at_warehouse - day * HOURS_PER_DAY
    index = np.searchsorted(waves, hour, side="left")  # the first wave at or after the hour
    tomorrow = index >= waves.size
    wave = np.where(tomorrow, waves[0], waves[np.minimum(index, waves.size - 1)])
    day = day + tomorrow + (wave > ship.carrier_cutoff_hour)  # picked after the cut-off: leaves tomorrow
    shipped_at = day * HOURS_PER_DAY + ship.carrier_cutoff_hour
    due = (day + transit_days(u_transit, scenario)) * HOURS_PER_DAY + ship.delivery_hour
    return np.where(due <= shipped_at, due + HOURS_PER_DAY, due)


def next_round_hours(after: F64, hour: float) -> F64:
    """The first daily round at ``hour`` at or after ``after`` (hours): when a due item is handled."""
    return np.ceil((after - hour) / HOURS_PER_DAY) * HOURS_PER_DAY + hour


class OrderBook:
    """Every order of the run as growable columns (struct of arrays)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self.cols: dict[str, NDArray[Any]] = {
            name: np.full(max(capacity, 16), fill, dtype=dtype)
            for name, (dtype, fill) in _ORDER_COLUMNS.items()
        }

    def add(self, **values: NDArray[Any]) -> I64:
        """Append orders given as equal-length column arrays; returns their ids."""
        n = len(next(iter(values.values())))
        if self.size + n > len(self.cols["shopper"]):
            new_cap = max(len(self.cols["shopper"]) * 3 // 2, self.size + n)  # 1.5x bounds the copy peak
            for name, (dtype, fill) in _ORDER_COLUMNS.items():
                grown = np.full(new_cap, fill, dtype=dtype)
                grown[: self.size] = self.cols[name][: self.size]
                self.cols[name] = grown
        ids = np.arange(self.size, self.size + n, dtype=np.int64)
        for name, column in values.items():
            self.cols[name][ids] = column
        self.size += n
        return ids

    def column(self, name: str) -> NDArray[Any]:
        """A view of one column over the orders placed so far."""
        return self.cols[name][: self.size]

    def keep(self, ids: I64) -> I64:
        """Keep only the orders ``ids`` (renumbered 0..k-1 in that order); returns the old-to-new map.

        Journeys recycle the book this way, keeping the orders still in transit or on their way
        back, so a training run of millions of orders holds only the few in flight.
        """
        old_to_new = np.full(self.size, -1, dtype=np.int64)
        old_to_new[ids] = np.arange(ids.size)
        for name, (_, fill) in _ORDER_COLUMNS.items():
            column = self.cols[name]
            column[: ids.size] = column[ids]
            column[ids.size : self.size] = fill
        self.size = int(ids.size)
        return old_to_new


class _Pending:
    """Orders waiting for a due time (parcels in transit, returns on their way back)."""

    def __init__(self) -> None:
        self.ids = np.empty(0, dtype=np.int64)
        self.due = np.empty(0)

    def push(self, ids: I64, due: F64) -> None:
        """Add orders with their due times (hours)."""
        self.ids = np.concatenate([self.ids, ids])
        self.due = np.concatenate([self.due, due])

    def pop_due(self, now: float) -> I64:
        """Remove and return the orders due by ``now``."""
        ready = self.due <= now
        ids = self.ids[ready]
        self.ids, self.due = self.ids[~ready], self.due[~ready]
        return ids


class Fulfillment:
    """Warehouse, carrier, deliveries, returns and replenishment as SimPy processes."""

    def __init__(
        self,
        env: simpy.Environment,
        scenario: Scenario,
        population: Population,
        ledger: Ledger,
        log: EventLog,
        daily: DailyStats,
        orders: OrderBook,
        delivered: Callable[[I64, float], NDArray[np.bool_]],
        returned: Callable[[I64, float], None],
    ) -> None:
        self.env, self.scenario, self.pop = env, scenario, population
        # What arriving parcels and returns do to shoppers and the ledger: the shop's rules.
        self.delivered, self.returned = delivered, returned
        self.ledger, self.log, self.daily, self.orders = ledger, log, daily, orders
        wh, ship = scenario.warehouse, scenario.shipping
        scale = scenario.population.shoppers / 1000.0
        self.capacity_per_day = wh.pick_capacity_per_1k_shoppers * scale
        self.wave_capacity = self.capacity_per_day / len(wh.wave_hours)
        self.overtime_capacity = wh.overtime_capacity_share * self.capacity_per_day
        # Whole orders per wave; the fraction carries to the next wave, so a small shop's waves
        # pick its capacity on average instead of losing each wave's fractional order.
        self._wave_credit = 0.0
        self.carrier_capacity = ship.carrier_capacity_per_1k_shoppers * scale
        cats = scenario.catalog.categories
        self.base_stock = [
            max(1, math.ceil(wh.stock_days_of_cover * self.capacity_per_day * c.share)) for c in cats
        ]
        self.pick_team = simpy.Resource(env, capacity=1)
        self.backlog = simpy.Container(env)
        self.stock = [simpy.Container(env, capacity=s, init=s) for s in self.base_stock]
        self.on_order = [0] * len(cats)
        self._queue = np.empty(0, dtype=np.int64)
        self._packed: list[I64] = []
        self._in_transit = _Pending()
        self._returning = _Pending()
        self.returns_waiting = 0
        for i, hour in enumerate(wh.wave_hours):
            env.process(self._wave_loop(hour, last=i == len(wh.wave_hours) - 1))
        env.process(self._daily(ship.carrier_cutoff_hour, self._ship))
        env.process(self._daily(ship.delivery_hour, self._deliver))
        env.process(self._daily(RETURNS_ROUND_HOUR, self._receive_returns))
        env.process(self._daily(0.0, self._replenish))
        env.process(self._daily(23.999, self._close_day))

    # ---- intake ---------------------------------------------------------------------------
    def receive(self, order_ids: I64) -> None:
        """New orders join the pick backlog."""
        if order_ids.size:
            self._queue = np.concatenate([self._queue, order_ids])
            self.backlog.put(order_ids.size)

    @property
    def queue_length(self) -> int:
        """Orders waiting to be picked."""
        return int(self._queue.size)

    # ---- processes ------------------------------------------------------------------------
    def _daily(self, hour: float, action: Any) -> Generator[simpy.Event, Any, None]:
        """Run ``action`` every day at ``hour``."""
        yield self.env.timeout(hour)
        while True:
            action()
            yield self.env.timeout(HOURS_PER_DAY)

    def _wave_loop(self, hour: float, last: bool) -> Generator[simpy.Event, Any, None]:
        """A pick/pack wave every day at ``hour``; it waits for the pick team if a wave overruns."""
        day = 0
        while True:
            start = day * HOURS_PER_DAY + hour
            if start > self.env.now:
                yield self.env.timeout(start - self.env.now)
            with self.pick_team.request() as request:
                yield request
                picked = self._pick(last)
                work_hours = self.scenario.warehouse.pick_hours_per_wave * picked.size / self.wave_capacity
                if work_hours > 0:
                    yield self.env.timeout(work_hours)
                self.orders.cols["picked_at"][picked] = self.env.now
                self._packed.append(picked)
            day += 1

    def _pick(self, last: bool) -> I64:
        """Pick FIFO orders whose category has stock, up to the wave's regular (+ overtime) capacity."""
        queue = self._queue
        credit = self._wave_credit + self.wave_capacity
        regular_capacity = int(credit)
        self._wave_credit = credit - regular_capacity
        if queue.size == 0:
            self._process_returns(self.wave_capacity)
            return queue[:0]
        wanted = regular_capacity + (int(self.overtime_capacity) if last else 0)
        # Only a prefix of the FIFO queue can be picked; widen it only if stock blocks too much.
        span = min(queue.size, 2 * wanted + 64)
        while True:
            cats = self.orders.cols["category"][queue[:span]].astype(np.int64)
            in_stock = np.zeros(span, dtype=bool)
            for c, container in enumerate(self.stock):
                in_stock[np.flatnonzero(cats == c)[: int(container.level)]] = True
            eligible = np.flatnonzero(in_stock)
            if eligible.size >= wanted or span == queue.size:
                break
            span = min(queue.size, 4 * span)
        n_cats = len(self.stock)
        regular = min(eligible.size, regular_capacity)
        extra = min(eligible.size - regular, int(self.overtime_capacity)) if last else 0
        take = eligible[: regular + extra]
        picked = queue[take]
        self.daily.add("stock_blocked", self.env.now, float(np.count_nonzero(~in_stock)))
        if picked.size:
            keep = np.ones(queue.size, dtype=bool)
            keep[take] = False
            self._queue = queue[keep]
            self.backlog.get(picked.size)
            per_cat = np.bincount(cats[take], minlength=n_cats)
            for c in np.flatnonzero(per_cat).tolist():
                self.stock[c].get(int(per_cat[c]))
            if extra:
                overtime_ids = picked[regular:]
                self.orders.cols["overtime"][overtime_ids] = True
                cost = np.full(extra, to_cents(self.scenario.warehouse.overtime_cost_per_order))
                self.ledger.book(OVERTIME, self.orders.cols["shopper"][overtime_ids], cost, self.env.now)
                self.daily.add("overtime_orders", self.env.now, extra)
        self.daily.add("picked", self.env.now, picked.size)
        self.daily.add("units_used", self.env.now, picked.size)
        self._process_returns(self.wave_capacity - regular)
        return picked

    def _process_returns(self, capacity_left: float) -> None:
        """Put away waiting returns with the wave's leftover regular capacity."""
        weight = self.scenario.returns.processing_weight
        if self.returns_waiting == 0:
            return
        count = (
            self.returns_waiting if weight == 0 else min(self.returns_waiting, int(capacity_left / weight))
        )
        if count > 0:
            self.returns_waiting -= count
            self.daily.add("returns_processed", self.env.now, count)
            self.daily.add("units_used", self.env.now, count * weight)

    def _ship(self) -> None:
        """Carrier cut-off: every packed order leaves; transit grows when parcels exceed capacity."""
        if not self._packed:
            return
        ids = np.concatenate(self._packed)
        self._packed = []
        if ids.size == 0:
            return
        ship = self.scenario.shipping
        now = self.env.now
        overload = max(0.0, ids.size / self.carrier_capacity - 1.0)
        congestion = round(overload * ship.congestion_days_per_overload)
        transit = transit_days(self.orders.cols["u_transit"][ids], self.scenario, congestion)
        due = (np.floor(now / HOURS_PER_DAY) + transit) * HOURS_PER_DAY + ship.delivery_hour
        due = np.where(due <= now, due + HOURS_PER_DAY, due)
        self.orders.cols["shipped_at"][ids] = now
        self._in_transit.push(ids, due)
        self.daily.add("shipped", now, ids.size)
        self.log.record("ship", now, self.orders.cols["shopper"][ids], order_id=ids)

    def _deliver(self) -> None:
        """Daily delivery round: due parcels arrive (:meth:`sim.shop.Shop._delivered`); returns start back."""
        now = self.env.now
        ids = self._in_transit.pop_due(now)
        if ids.size == 0:
            return
        returned = self.delivered(ids, now)
        back_at = now + self.scenario.returns.delay_days * HOURS_PER_DAY
        self._returning.push(ids[returned], np.full(int(returned.sum()), back_at))

    def _receive_returns(self) -> None:
        """Returned parcels arrive (:meth:`sim.shop.Shop._returned`); they wait for put-away."""
        now = self.env.now
        ids = self._returning.pop_due(now)
        if ids.size == 0:
            return
        self.returned(ids, now)
        self.returns_waiting += ids.size

    def _replenish(self) -> None:
        """Order each category back up to its base stock; goods arrive after the lead time."""
        for c, container in enumerate(self.stock):
            quantity = self.base_stock[c] - int(container.level) - self.on_order[c]
            if quantity > 0:
                self.on_order[c] += quantity
                self.env.process(self._inbound(c, quantity))

    def _inbound(self, category: int, quantity: int) -> Generator[simpy.Event, Any, None]:
        """A supplier delivery: wait the lead time, then put the goods on the shelf."""
        yield self.env.timeout(self.scenario.warehouse.replenish_lead_days * HOURS_PER_DAY)
        self.on_order[category] -= quantity
        yield self.stock[category].put(quantity)

    def _close_day(self) -> None:
        """End-of-day snapshot of the backlog and the day's regular capacity."""
        self.daily.add("backlog_end", self.env.now, self._queue.size)
        self.daily.add("capacity", self.env.now, self.capacity_per_day)
