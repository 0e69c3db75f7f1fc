"""The shop's state and what a clock must supply: the base of :class:`sim.shop.Shop`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.behaviour import logit
from sim.economics import Ledger
from sim.events import DailyStats, EventLog, LogLevel
from sim.fulfillment import OrderBook
from sim.incentives import IncentiveCatalog
from sim.params import Scenario
from sim.population import Population

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Times = F64 | float


@dataclass
class DayDraws:
    """The day's uniforms, one value per population row for each purpose (the driver fills them)."""

    u_cart: F64
    u_checkout: F64
    u_cart_return: F64
    u_reconsider: F64
    u_churn: F64
    u_category: F64
    u_topup: F64
    u_bestseller: F64
    u_return: F64
    u_transit: F64
    u_winback: F64
    u_surprise: F64


def _first(times: Times) -> float:
    """The first time of a batch (daily counters bin a batch by its first event)."""
    return float(times) if np.ndim(times) == 0 else float(np.asarray(times).flat[0])


def _at(times: Times, mask: NDArray[np.bool_] | I64) -> Times:
    """``times`` of the rows selected by ``mask`` (a scalar time is everyone's)."""
    return times if np.ndim(times) == 0 else np.asarray(times)[mask]


class ShopState(ABC):
    """The shop's population, ledger, log and constants; a driver supplies the clock and the draws."""

    def __init__(
        self,
        scenario: Scenario,
        population: Population,
        horizon_days: int,
        log_level: LogLevel,
        order_capacity: int,
    ) -> None:
        if horizon_days < 1:
            raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
        self.scenario = scenario
        self.horizon_days = horizon_days
        self.pop = population
        self.ledger = Ledger(population, scenario.economics.annual_discount_rate)
        self.log = EventLog(log_level)
        self.daily = DailyStats(horizon_days)
        self.orders = OrderBook(capacity=order_capacity)
        self.catalog = IncentiveCatalog(scenario)
        weights = np.asarray(scenario.sessions.hour_weights)
        self._hour_cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        self._category_cdf = np.cumsum([c.share for c in scenario.catalog.categories])
        with np.errstate(divide="ignore"):  # a category with no share is never drawn
            self._log_category_share = np.log([c.share for c in scenario.catalog.categories])
        self._cogs_ratio = np.array([c.cogs_ratio for c in scenario.catalog.categories])
        self._return_rate = np.array([c.return_rate for c in scenario.catalog.categories])
        self._tier_thresholds = np.asarray(scenario.loyalty.tier_thresholds)
        self._base_logit = logit(scenario.sessions.checkout_conversion_at_reference)
        self._decision_kinds = frozenset(scenario.engine.decision_points)
        self._season_by_day = np.ones(horizon_days + 1)
        for peak in scenario.sessions.peaks:
            self._season_by_day[peak.start_day : peak.start_day + peak.days] *= peak.visit_multiplier
        self._next_cart_id = 0
        self._day: DayDraws | None = None
        #: Share of active shoppers at or above each tier (tier inflation); the driver keeps it.
        self._tier_share = np.zeros(len(self._tier_thresholds))
        self._mean_susceptibility = float(population.social_susceptibility.mean()) if population.size else 0.0
        self._streak_bonus_given = False
        self.referral_cost_cents = 0
        self.referral_cost_abusers_cents = 0

    # ---- what a driver supplies ---------------------------------------------------------------
    @abstractmethod
    def _neighbour_signal(self, shoppers: I64) -> F64:
        """Recent purchases among each shopper's neighbours (social proof)."""

    @abstractmethod
    def _basket_gamma(self, shoppers: I64) -> F64:
        """Today's Gamma(p, 1) variate of each shopper's basket."""

    @abstractmethod
    def _dispatch(self, order_ids: I64) -> None:
        """Hand new orders to fulfillment."""

    @abstractmethod
    def _invite(self, referrers: I64, offers: NDArray[np.int16], at: F64) -> None:
        """Referrers given a referral bonus invite friends."""
