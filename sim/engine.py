"""The simulation engine: a SimPy clock driving a vectorized shopper population.

The rules shoppers follow live in :class:`sim.shop.Shop`; this module is their population
clock. Scenario: every day, each acquired shopper draws a fixed number of random values (whatever her
state, so that common random numbers hold): whether and when she starts a session, whether she
fills a cart, its value and category, whether she checks out, and what happens later to her
cart and order. Sessions are handled in batches of ``engine.session_batch_hours`` on the SimPy
clock, each event keeping its exact timestamp; abandoned carts start a cart-abandonment timer
(a SimPy process per batch) after which returning shoppers decide again; orders flow into the
warehouse (:mod:`sim.fulfillment`). Shoppers are acquired with a first order (the "trial").
Attrition is a latent lifetime in calendar time (Pareto/NBD, the default): every day starts by
adding each shopper's experience-moved hazard to her total, and she churns once it reaches the
budget drawn at her acquisition; or, with ``population.attrition: bgnbd``, she drops out after
a repeat order with her BG/NBD probability (:mod:`sim.mechanisms.churn`).

Decision points (a shopper logged in, abandoned a cart, or is lapsing) are where a policy may
give incentives. A caller drives them step by step::

    sim = Simulation(scenario, seed=0, horizon_days=90)
    while (batch := sim.next_decision()) is not None:
        sim.submit(my_policy(batch))          # one incentive id per shopper in the batch

or runs without incentives with ``sim.run()``. The waiting process receives the incentives
through a SimPy event (``Event.succeed``), so the clock never runs ahead of a decision.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import simpy
from numpy.typing import NDArray

from sim.behaviour import hours_from_uniform
from sim.economics import INCENTIVE, REVENUE
from sim.events import LogLevel
from sim.fulfillment import Fulfillment
from sim.mechanisms.referral import accepted_invitations, fake_accounts
from sim.mechanisms.social import neighbour_signal
from sim.oracle import TrueState
from sim.params import DecisionKind, Scenario
from sim.population import CHANNEL_REFERRED, HOURS_PER_DAY, draw_shoppers, sample_population, twin_population
from sim.rng import Streams
from sim.shop import DayDraws, Shop
from sim.twins import read_twins

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Random values drawn per shopper per day, by stream (the bare-numpy benchmark limit uses this).
DRAWS_PER_SHOPPER_DAY = {"arrivals": 2, "behaviour": 9, "fulfillment": 2, "incentives": 2}
# Uniform draws per stream (the behaviour stream's ninth draw is the basket's gamma variate).
_DRAWS = {"arrivals": 2, "behaviour": 8, "fulfillment": 2, "incentives": 2}


@dataclass(frozen=True)
class DecisionBatch:
    """Shoppers at the same kind of decision point at the same time, awaiting incentives."""

    kind: DecisionKind
    time_hours: float
    shoppers: I64


@dataclass
class _PopulationDay(DayDraws):
    """The day's fixed-shape draws for every acquired shopper, plus who visits when."""

    visit_ids: I64
    visit_times: F64
    acquisition_ids: I64
    basket_gamma: F64


class Simulation(Shop):
    """One run of a scenario: population, ledger, warehouse and event log on one SimPy clock."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int | np.random.SeedSequence = 0,
        horizon_days: int = 365,
        log_level: LogLevel = "events",
        future_seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        """``future_seed``: draw everything after the population from it (see ``Streams.from_seed``)."""
        if horizon_days < 1:
            raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
        self.env = simpy.Environment()
        #: The seed the population was drawn from (a planning oracle forks its futures from it).
        self.seed = seed
        self.streams = Streams.from_seed(seed, future_seed)
        twins = None if scenario.population.twins is None else read_twins(scenario.population.twins)
        #: Real customer ids by population row (twins only; rows joined by referral have none).
        self.customer_ids = None if twins is None else twins.customer_id
        population = (
            sample_population(scenario, self.streams.acquisition, self.streams.social)
            if twins is None
            else twin_population(scenario, twins, self.streams.acquisition, self.streams.social)
        )
        super().__init__(
            scenario, population, horizon_days, log_level, max(1024, scenario.population.shoppers // 4)
        )
        self._recent_decay = 0.5 ** (1.0 / scenario.mechanisms.social.recent_half_life_days)
        self._recent_at_day_start = np.zeros(0)
        self.fulfillment = Fulfillment(
            self.env,
            scenario,
            self.pop,
            self.ledger,
            self.log,
            self.daily,
            self.orders,
            self._delivered,
            self._returned,
        )
        self._draws: _PopulationDay | None = None
        self._invited: list[tuple[I64, NDArray[np.int16], NDArray[np.bool_]]] = []
        self._mode: str | None = None
        self._ready: simpy.Event = self.env.event()
        self._answer: simpy.Event | None = None
        self._pending: DecisionBatch | None = None
        self._on_day: Callable[[int], None] | None = None
        self.done = False
        self.env.process(self._day_loop())

    def customer_results(self) -> pd.DataFrame | None:
        """Per real customer of a twins run: what she was given and what she earned (else None).

        Columns: ``customer_id``, ``incentives_received`` (count), ``incentive_cost``,
        ``revenue`` and ``margin`` (dollars, this run only), ``orders`` (her total, calibration
        included) and ``alive`` at the current time. Rows in population order.
        """
        if self.customer_ids is None:
            return None
        n = self.customer_ids.size
        lines = self.ledger.lines[:, :n]
        return pd.DataFrame(
            {
                "customer_id": self.customer_ids,
                "incentives_received": self.pop.incentives_received[:n],
                "incentive_cost": lines[INCENTIVE] / 100.0,
                "revenue": lines[REVENUE] / 100.0,
                "margin": self.ledger.margin_cents()[:n] / 100.0,
                "orders": self.pop.orders[:n],
                "alive": self.pop.alive[:n],
            }
        )

    def true_state(self, shoppers: I64, now: F64 | float | None = None) -> TrueState:
        """The latent traits and hidden state of ``shoppers`` now (for the privileged oracle only)."""
        return super().true_state(shoppers, self.now_hours if now is None else now)

    def run(
        self,
        decide: Callable[[DecisionBatch], NDArray[np.integer]] | None = None,
        on_day: Callable[[int], None] | None = None,
    ) -> Simulation:
        """Run to the horizon; ``decide`` (if given) chooses incentives at every decision point."""
        self._on_day = on_day
        if decide is not None:
            while (batch := self.next_decision()) is not None:
                self.submit(decide(batch))
            return self
        self._start("batch")
        self._ready = self.env.event()
        self.env.run(until=self._ready)
        self.done = True
        return self

    def next_decision(self) -> DecisionBatch | None:
        """Advance the clock to the next decision point; ``None`` once the horizon is reached."""
        if self._pending is not None:
            raise RuntimeError("submit() incentives for the pending decision batch first")
        if self.done:
            return None
        self._start("interactive")
        self._ready = self.env.event()
        batch: DecisionBatch | None = self.env.run(until=self._ready)
        if batch is None:
            self.done = True
        self._pending = batch
        return batch

    def submit(self, incentive_ids: NDArray[np.integer]) -> None:
        """Give one incentive id per shopper of the pending batch (0 = none) and resume the clock."""
        if self._pending is None or self._answer is None:
            raise RuntimeError("no decision is pending: call next_decision() first")
        ids = self.catalog.validate(np.asarray(incentive_ids), self._pending.shoppers.size)
        self._pending = None
        self._answer.succeed(ids)

    def _start(self, mode: str) -> None:
        if self._mode not in (None, mode):
            raise RuntimeError(f"this simulation already runs in {self._mode} mode")
        self._mode = mode

    @property
    def now_hours(self) -> float:
        """Current simulation time in hours."""
        return float(self.env.now)

    def acquired(self) -> int:
        """Number of shoppers acquired so far."""
        return self.pop.acquired_count(np.nextafter(self.env.now, np.inf))

    def acquired_rows(self) -> slice | I64:
        """Population rows of the shoppers acquired so far."""
        return self.pop.active_rows(np.nextafter(self.env.now, np.inf))

    # ---- what the population clock supplies to the rules ---------------------------------------
    def _neighbour_signal(self, shoppers: I64) -> F64:
        # Yesterday's purchases as they stood at the day's start, summed only where a cart needs them.
        return neighbour_signal(self._recent_at_day_start, self.pop.neighbours[shoppers])

    def _basket_gamma(self, shoppers: I64) -> F64:
        assert self._draws is not None
        return self._draws.basket_gamma[shoppers]

    def _dispatch(self, order_ids: I64) -> None:
        self.fulfillment.receive(order_ids)

    # ---- the day ----------------------------------------------------------------------------
    def _day_loop(self) -> Generator[simpy.Event, Any, None]:
        batch_hours = self.scenario.engine.session_batch_hours
        batches = round(HOURS_PER_DAY / batch_hours)
        for day in range(self.horizon_days):
            if self._on_day is not None:
                self._on_day(day)
            start = day * HOURS_PER_DAY
            self._accept_referrals(start)
            self._requalify(slice(0, self.pop.size), start)
            self._day = self._draws = None  # release yesterday's draws before drawing today's
            self._day = self._draws = self._draw_day(day)
            self._tier_share = self._tier_shares()
            yield from self._lapsing(start)
            for k in range(batches):
                end = start + (k + 1) * batch_hours
                yield self.env.timeout(end - self.env.now)
                yield from self._session_batch(start + k * batch_hours, end)
        self._ready.succeed(None)

    def _draw_day(self, day: int) -> _PopulationDay:
        """Draw the day's values for every shopper acquired by the end of the day (fixed shape).

        Organic shoppers draw from the named streams, referred ones from the ``referred``
        stream, so however many shoppers a policy's referrals bring, organic draws never shift.
        """
        pop, start = self.pop, day * HOURS_PER_DAY
        end = start + HOURS_PER_DAY
        n_organic, n_referred = pop.organic_count(end), pop.size - pop.planned
        streams, draws = self.streams, _DRAWS

        def fill(rng: np.random.Generator, k: int, referred: F64) -> F64:
            values = np.empty((k, pop.size))
            for row in range(k):  # row by row into place: the same numbers as random((k, n))
                rng.random(out=values[row, :n_organic])
            values[:, pop.planned :] = referred
            return values

        referred = streams.referred.random((sum(draws.values()), n_referred))
        cut = np.cumsum([0, *draws.values()])
        arrivals = fill(streams.arrivals, draws["arrivals"], referred[cut[0] : cut[1]])
        behaviour = fill(streams.behaviour, draws["behaviour"], referred[cut[1] : cut[2]])
        fulfillment = fill(streams.fulfillment, draws["fulfillment"], referred[cut[2] : cut[3]])
        incentives = fill(streams.incentives, draws["incentives"], referred[cut[3] : cut[4]])
        basket_gamma = np.empty(pop.size)
        basket_gamma[:n_organic] = streams.behaviour.standard_gamma(pop.spend_p, n_organic)
        basket_gamma[pop.planned :] = streams.referred.standard_gamma(pop.spend_p, n_referred)

        rows = pop.active_rows(end)
        row_ids = np.arange(n_organic) if isinstance(rows, slice) else rows
        self._streak_breaks(day, rows)
        if self.scenario.population.attrition == "pareto_nbd":
            self._attrition(start)
        self._update_social_signal(rows)
        ids = row_ids[pop.alive[rows] & (arrivals[0][rows] < self._visit_probability(rows, start))]
        times = start + hours_from_uniform(arrivals[1][ids], self._hour_cdf)
        after_acquisition = times > pop.acquired_at[ids]
        ids, times = ids[after_acquisition], times[after_acquisition]
        order = np.argsort(times, kind="stable")
        new = np.concatenate(
            [np.arange(pop.organic_count(start), n_organic), self._joined_today(start, end)]
        ).astype(np.int64)
        return _PopulationDay(
            visit_ids=ids[order],
            visit_times=times[order],
            acquisition_ids=new[np.argsort(pop.acquired_at[new], kind="stable")],
            u_cart=behaviour[0],
            basket_gamma=basket_gamma,
            u_checkout=behaviour[1],
            u_cart_return=behaviour[2],
            u_reconsider=behaviour[3],
            u_churn=behaviour[4],
            u_category=behaviour[5],
            u_topup=behaviour[6],
            u_bestseller=behaviour[7],
            u_return=fulfillment[0],
            u_transit=fulfillment[1],
            u_winback=incentives[0],
            u_surprise=incentives[1],
        )

    def _accept_referrals(self, start: float) -> None:
        """Friends invited yesterday join today as referred shoppers in the referrer's community."""
        if not self._invited:
            return
        referrers = np.concatenate([r for r, _, _ in self._invited])
        offers = np.concatenate([o for _, o, _ in self._invited])
        fake = np.concatenate([f for _, _, f in self._invited])
        self._invited = []
        pop, rng = self.pop, self.streams.referred
        count = referrers.size
        neighbours = np.empty((count, pop.neighbours.shape[1]), dtype=np.int32)
        if neighbours.shape[1]:  # a graph without edges (both degrees 0) has no referrer link to keep
            neighbours[:, 0] = referrers
            neighbours[:, 1:] = pop.neighbours[referrers, :-1]
        joined = draw_shoppers(
            self.scenario,
            start + np.sort(rng.random(count)) * HOURS_PER_DAY,
            pop.community[referrers],
            neighbours,
            CHANNEL_REFERRED,
            rng,
        )
        kept = 1.0 - self.scenario.mechanisms.referral.referred_churn_reduction
        joined.dropout_prob *= kept
        joined.dropout_rate_per_day *= kept
        joined.referred_by[:] = referrers
        joined.referral_offer[:] = offers
        joined.fake_account[:] = fake
        joined.visit_prob[fake] = 0.0  # a fake account never comes back
        pop.append(joined)
        self.ledger.grow(count)

    def _invite(self, referrers: I64, offers: NDArray[np.int16], at: F64) -> None:
        """Referrers given a bonus invite friends; abusers open fake accounts where that pays."""
        pop, params = self.pop, self.scenario.mechanisms.referral
        invites_left = params.max_invites - pop.invites_sent[referrers].astype(np.int64)
        invited, friends = accepted_invitations(
            pop.referral_propensity[referrers], invites_left, params.accept_rate, self.streams.referred
        )
        pop.invites_sent[referrers] += invited.astype(np.int8)  # referrers are unique in a batch
        fakes = fake_accounts(
            pop.abuser[referrers],
            self.catalog.min_basket[offers],
            params.fake_order_value,
            params.abuser_fake_accounts,
        )
        total = friends + fakes
        if total.sum() == 0:
            return
        # Within each referrer's block, real friends come first, then fake accounts.
        position = np.arange(total.sum()) - np.repeat(np.cumsum(total) - total, total)
        fake = position >= np.repeat(friends, total)
        self._invited.append((np.repeat(referrers, total), np.repeat(offers, total), fake))

    def _joined_today(self, start: float, end: float) -> I64:
        """Referred rows whose acquisition falls in ``[start, end)``."""
        referred_at = self.pop.acquired_at[self.pop.planned :]
        return self.pop.planned + np.flatnonzero((referred_at >= start) & (referred_at < end))

    def _attrition(self, start: float) -> None:
        """Add the day's hazard to every alive shopper acquired before today; churn at the budget."""
        pop = self.pop
        acquired = pop.active_rows(start)
        row_ids = np.arange(acquired.stop) if isinstance(acquired, slice) else acquired
        rows = row_ids[pop.alive[acquired] & (pop.acquired_at[acquired] < start)]
        if rows.size:
            self._accrue_hazard(rows, start)

    def _update_social_signal(self, rows: slice | I64) -> None:
        """Fade recent purchases by a day; keep them as they stand for the day's social proof."""
        pop = self.pop
        pop.recent_purchases[rows] *= self._recent_decay
        if self.scenario.mechanisms.social.proof_weight > 0:
            self._recent_at_day_start = pop.recent_purchases.copy()

    def _tier_shares(self) -> F64:
        """Share of active shoppers at or above each tier (for tier inflation)."""
        pop = self.pop
        rows = self.acquired_rows()
        tiers = pop.tier[rows][pop.alive[rows]]
        counts = np.bincount(tiers, minlength=len(self._tier_thresholds)).astype(np.float64)
        at_or_above = np.cumsum(counts[::-1])[::-1]
        return at_or_above / max(tiers.size, 1)

    def _lapsing(self, now: float) -> Generator[simpy.Event, Any, None]:
        """Shoppers whose recency just crossed the lapse threshold become decision points."""
        rows = self.pop.active_rows(now)
        ids = self._lapsing_now(np.arange(rows.stop) if isinstance(rows, slice) else rows, now)
        if ids.size:
            yield from self._decide("lapsing", ids, now)

    def _session_batch(self, start: float, end: float) -> Generator[simpy.Event, Any, None]:
        """Handle the acquisitions and sessions that started in ``[start, end)``."""
        day, pop = self._draws, self.pop
        assert day is not None
        acq = day.acquisition_ids
        lo, hi = np.searchsorted(pop.acquired_at[acq], [start, end], side="left")
        if hi > lo:
            new = self._acquire(acq[lo:hi])
            # Her trial order is her first session: the shop may welcome her (a login decision).
            yield from self._decide("login", new, end, at=pop.acquired_at[new])
        lo, hi = np.searchsorted(day.visit_times, [start, end], side="left")
        visitors, times = day.visit_ids[lo:hi], day.visit_times[lo:hi]
        still_alive = pop.alive[visitors]
        visitors, times = visitors[still_alive], times[still_alive]
        if visitors.size == 0:
            return
        self._visit(visitors, times)
        yield from self._decide("login", visitors, end, at=times)
        reached = pop.alive[visitors]  # a contact may have driven a sleeping dog away
        ids, times, cart_ids, badge = self._fill_carts(visitors[reached], times[reached])
        if ids.size == 0:
            return
        yield from self._decide("cart_abandoned", ids, end, at=times)
        self.env.process(
            self._cart_timer(
                ids,
                cart_ids,
                badge,
                day.u_cart_return[ids],
                day.u_reconsider[ids],
                wake_at=end + self.scenario.sessions.cart_recovery_hours,
            )
        )

    def _cart_timer(
        self,
        shoppers: I64,
        cart_ids: I64,
        badge: NDArray[np.bool_],
        u_return: F64,
        u_reconsider: F64,
        wake_at: float,
    ) -> Generator[simpy.Event, Any, None]:
        """The cart-abandonment timer of a session batch (:meth:`Shop._cart_return` when it rings)."""
        yield self.env.timeout(wake_at - self.env.now)
        self._cart_return(shoppers, cart_ids, badge, u_return, u_reconsider, self.env.now)

    def _decide(
        self, kind: DecisionKind, shoppers: I64, now: float, at: F64 | None = None
    ) -> Generator[simpy.Event, Any, None]:
        """Ask the driver for incentives for ``shoppers`` (interactive mode only) and give them.

        ``at`` holds each shopper's own moment (her session or abandonment time within the
        batch); the incentive is given and starts its validity then.
        """
        if self._mode != "interactive" or kind not in self._decision_kinds or shoppers.size == 0:
            return
        self._answer = self.env.event()
        self._ready.succeed(DecisionBatch(kind=kind, time_hours=now, shoppers=shoppers.copy()))
        incentive_ids = yield self._answer
        self._apply_decision(kind, shoppers, incentive_ids, np.full(shoppers.size, now) if at is None else at)
