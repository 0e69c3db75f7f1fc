"""Money: an exact per-shopper ledger in integer cents, and customer lifetime value.

The ledger books six lines per shopper, all in int64 cents so that

    margin = revenue - cogs - incentive - shipping - returns - overtime

holds exactly, per shopper and in total:

* ``revenue``: list value of the goods plus the standard shipping fee for that basket;
* ``cogs``: cost of goods sold;
* ``incentive``: what incentives and points gave away, booked on redemption (coupon discount,
  waived shipping fee, points redeemed); points not yet redeemed are a liability, reported
  apart and not booked;
* ``shipping``: what the carrier charges the shop;
* ``returns``: refund of what was paid for the goods + handling - restocked cost of goods;
* ``overtime``: the warehouse overtime premium of the shopper's orders.

LTV of a shopper = realized net margin discounted to her acquisition time + the expected
discounted margin of her future orders computed from her true latent traits (BG/NBD rate and
dropout, Gamma-Gamma spend): while alive, purchases arrive at rate ``lambda`` and each ends
her life with probability ``p``, so future purchases discounted at rate ``delta`` are worth
``lambda / (delta + lambda * p)`` orders (Fader, Hardie & Lee 2005; Fader & Hardie 2007).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from sim.mechanisms.churn import experience_multiplier
from sim.params import Scenario
from sim.population import HOURS_PER_DAY, Population

LEDGER_LINES = ("revenue", "cogs", "incentive", "shipping", "returns", "overtime")
REVENUE, COGS, INCENTIVE, SHIPPING, RETURNS, OVERTIME = range(len(LEDGER_LINES))
_SIGN = np.array([1.0, -1.0, -1.0, -1.0, -1.0, -1.0])


#: Largest single amount booked (dollars): sums of millions of them stay far inside int64 cents.
MAX_BOOKED_DOLLARS = 1e10


def to_cents(dollars: NDArray[np.floating[Any]] | float) -> NDArray[np.int64]:
    """Round dollar amounts to whole cents (half to even), as int64; never silently overflows."""
    amounts = np.asarray(dollars, dtype=np.float64)
    if amounts.size and not np.all(np.abs(amounts) <= MAX_BOOKED_DOLLARS):  # NaN fails too
        worst = amounts.flat[int(np.argmax(~(np.abs(amounts) <= MAX_BOOKED_DOLLARS)))]
        raise OverflowError(
            f"money amount {worst!r} dollars is not finite or exceeds {MAX_BOOKED_DOLLARS:g}; "
            "int64 cents would overflow. The scenario's prices or spend parameters are unphysical."
        )
    return np.rint(amounts * 100.0).astype(np.int64)


def daily_discount_rate(annual_rate: float) -> float:
    """Continuous discount rate per day equivalent to an annual rate."""
    return float(np.log1p(annual_rate) / 365.0)


class Ledger:
    """Per-shopper ledger lines in cents plus the present value of margin at acquisition."""

    def __init__(self, population: Population, annual_discount_rate: float) -> None:
        self._population = population
        self._rate_per_hour = daily_discount_rate(annual_discount_rate) / HOURS_PER_DAY
        self.lines = np.zeros((len(LEDGER_LINES), population.size), dtype=np.int64)
        self.margin_pv = np.zeros(population.size)

    def book(
        self,
        line: int,
        shoppers: NDArray[np.int64],
        cents: NDArray[np.int64],
        time_hours: NDArray[np.float64] | float,
    ) -> None:
        """Add ``cents`` to one ledger line of each shopper, at ``time_hours`` (for discounting)."""
        if shoppers.size == 0:
            return
        np.add.at(self.lines[line], shoppers, cents)
        np.add.at(
            self.margin_pv,
            shoppers,
            _SIGN[line] * cents / 100.0 * self.discount(shoppers, time_hours),
        )

    def book_unique(
        self,
        shoppers: NDArray[np.int64],
        cents_by_line: Mapping[int, NDArray[np.int64]],
        time_hours: NDArray[np.float64],
    ) -> None:
        """Book several lines at once for shoppers who each appear once (an order batch)."""
        net = np.zeros(shoppers.size)
        for line, cents in cents_by_line.items():
            self.lines[line, shoppers] += cents
            net += _SIGN[line] * cents
        self.margin_pv[shoppers] += net / 100.0 * self.discount(shoppers, time_hours)

    def discount(
        self, shoppers: NDArray[np.int64], time_hours: NDArray[np.float64] | float
    ) -> NDArray[np.float64]:
        """Discount factor from ``time_hours`` back to each shopper's acquisition, or the run's start.

        A twin was acquired before the run (a negative time); her margins are discounted to the start.
        """
        since = np.maximum(self._population.acquired_at[shoppers], 0.0)
        return np.exp(-self._rate_per_hour * (time_hours - since))

    def grow(self, count: int) -> None:
        """Open ledger rows for ``count`` shoppers who just joined (referred shoppers)."""
        self.lines = np.concatenate([self.lines, np.zeros((len(LEDGER_LINES), count), np.int64)], axis=1)
        self.margin_pv = np.concatenate([self.margin_pv, np.zeros(count)])

    def margin_of(self, shopper: int) -> int:
        """Net margin of one shopper, in cents (cheap: one column of the ledger)."""
        column = self.lines[:, shopper]
        return int(column[REVENUE] - column[1:].sum())

    def margin_cents(self) -> NDArray[np.int64]:
        """Net margin per shopper, in cents: revenue minus the five cost lines."""
        return self.lines[REVENUE] - self.lines[1:].sum(axis=0)

    def totals_cents(self) -> dict[str, int]:
        """Every line and the margin summed over shoppers, in cents."""
        totals = {name: int(self.lines[i].sum()) for i, name in enumerate(LEDGER_LINES)}
        totals["margin"] = int(self.margin_cents().sum())
        return totals


def expected_order_margin(
    scenario: Scenario, population: Population, rows: slice | NDArray[np.int64] = slice(None)
) -> NDArray[np.float64]:
    """Expected net margin (dollars) of one future order of the shoppers in ``rows`` at list prices."""
    cats = scenario.catalog.categories
    share = np.array([c.share for c in cats])
    cogs = float(share @ np.array([c.cogs_ratio for c in cats]))
    ret = float(share @ np.array([c.return_rate for c in cats]))
    ret_cogs = float(share @ np.array([c.return_rate * c.cogs_ratio for c in cats]))
    ship, loyalty, returns = scenario.shipping, scenario.loyalty, scenario.returns
    spend = population.mean_spend[rows]
    p_below = stats.gamma.cdf(ship.free_threshold * population.spend_nu[rows], population.spend_p)
    points_cost = loyalty.points_per_dollar * loyalty.point_value
    return (
        spend * (1.0 - cogs - points_cost)
        + ship.fee * p_below
        - ship.carrier_cost_per_order
        - ret * (spend + returns.handling_cost)
        + returns.restock_share * ret_cogs * spend
    )


def residual_value(
    scenario: Scenario,
    population: Population,
    now_hours: float | NDArray[np.float64],
    rows: slice | NDArray[np.int64],
    order_margin: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Expected discounted margin of future orders of the shoppers in ``rows``.

    ``order_margin`` may hold :func:`expected_order_margin` for those rows, precomputed (it
    depends only on traits), to save its cost in tight loops.

    Valued at ``now_hours`` and discounted back to each shopper's acquisition; zero for
    shoppers who have churned (the simulator knows who has). Discounted future orders are
    ``lambda / (delta + lambda p + mu m)``: BG/NBD dropout ``p`` per order, or the Pareto/NBD
    hazard ``mu`` moved by her current delivery experience ``m`` (the expected
    remaining lifetime given that she is alive, not her drawn budget).
    """
    delta = daily_discount_rate(scenario.economics.annual_discount_rate)
    rate = population.purchase_rate_per_day[rows]
    churn = scenario.mechanisms.churn
    hazard = population.dropout_rate_per_day[rows] * experience_multiplier(
        population.last_delivery_late[rows],
        population.deliveries[rows] > 0,
        population.frustration[rows],
        churn.late_dropout_multiplier,
        churn.on_time_relief,
        0.0,  # a lost streak adds its hazard once (sim.engine), not as a rate
    )
    orders = rate / (delta + rate * population.dropout_prob[rows] + hazard)
    margin = expected_order_margin(scenario, population, rows) if order_margin is None else order_margin
    value = orders * margin
    age_days = (now_hours - np.maximum(population.acquired_at[rows], 0.0)) / HOURS_PER_DAY  # twins: from 0
    return np.where(population.alive[rows], value * np.exp(-delta * age_days), 0.0)
