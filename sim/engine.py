"""The simulation engine: a SimPy clock driving a vectorized shopper population.

Scenario: every day, each acquired shopper draws a fixed number of random values (whatever her
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

from sim.behaviour import checkout_probability, hours_from_uniform, logit, shipping_fee
from sim.economics import COGS, INCENTIVE, REVENUE, SHIPPING, Ledger, to_cents
from sim.events import DailyStats, EventLog, LogLevel
from sim.fulfillment import Fulfillment, OrderBook, promised_by_hours
from sim.incentives import KIND_CODES, IncentiveCatalog, Terms
from sim.mechanisms.affinity import TYPE_COLUMN, affinity_factor, surprise_value
from sim.mechanisms.churn import (
    dropout_probability,
    experience_multiplier,
    lump_hazard,
    winback_probability,
)
from sim.mechanisms.need import need_factor
from sim.mechanisms.prospect import framed_offer_pull, prospect_value
from sim.mechanisms.reference_price import (
    effective_price_sensitivity,
    faded,
    update_reference,
    update_weight,
)
from sim.mechanisms.referral import accepted_invitations, fake_accounts
from sim.mechanisms.shipping_threshold import topped_up_basket
from sim.mechanisms.social import neighbour_signal, social_logit_lift
from sim.mechanisms.streaks import loss_weight, streak_after_miss, visit_hazard_multiplier
from sim.mechanisms.tiers import (
    downgrade_threat_multiplier,
    goal_gradient_multiplier,
    perk_dropout_relief,
    tier_of,
    tier_progress,
)
from sim.oracle import TrueState
from sim.params import DecisionKind, Scenario
from sim.population import CHANNEL_REFERRED, HOURS_PER_DAY, draw_shoppers, sample_population, twin_population
from sim.rng import Streams
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


@dataclass(frozen=True)
class _DayDraws:
    """The day's fixed-shape draws, one value per acquired shopper for each purpose."""

    visit_ids: I64
    visit_times: F64
    acquisition_ids: I64
    u_cart: F64
    basket_gamma: F64
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


class Simulation:
    """One run of a scenario: population, ledger, warehouse and event log on one SimPy clock."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int | np.random.SeedSequence = 0,
        horizon_days: int = 365,
        log_level: LogLevel = "events",
    ) -> None:
        if horizon_days < 1:
            raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
        self.scenario = scenario
        self.horizon_days = horizon_days
        self.env = simpy.Environment()
        self.streams = Streams.from_seed(seed)
        twins = None if scenario.population.twins is None else read_twins(scenario.population.twins)
        #: Real customer ids by population row (twins only; rows joined by referral have none).
        self.customer_ids = None if twins is None else twins.customer_id
        self.pop = (
            sample_population(scenario, self.streams.acquisition, self.streams.social)
            if twins is None
            else twin_population(scenario, twins, self.streams.acquisition, self.streams.social)
        )
        self._mean_susceptibility = float(self.pop.social_susceptibility.mean())
        self._recent_decay = 0.5 ** (1.0 / scenario.mechanisms.social.recent_half_life_days)
        self._social_signal = np.zeros(0)
        self.ledger = Ledger(self.pop, scenario.economics.annual_discount_rate)
        self.log = EventLog(log_level)
        self.daily = DailyStats(horizon_days)
        self.orders = OrderBook(capacity=max(1024, scenario.population.shoppers // 4))
        self.catalog = IncentiveCatalog(scenario)
        self.fulfillment = Fulfillment(
            self.env, scenario, self.pop, self.ledger, self.log, self.daily, self.orders, self.end_lives
        )
        weights = np.asarray(scenario.sessions.hour_weights)
        self._hour_cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        self._category_cdf = np.cumsum([c.share for c in scenario.catalog.categories])
        self._cogs_ratio = np.array([c.cogs_ratio for c in scenario.catalog.categories])
        self._tier_thresholds = np.asarray(scenario.loyalty.tier_thresholds)
        self._base_logit = logit(scenario.sessions.checkout_conversion_at_reference)
        self._decision_kinds = frozenset(scenario.engine.decision_points)
        self._next_cart_id = 0
        self._day: _DayDraws | None = None
        self._tier_share = np.zeros(len(self._tier_thresholds))
        self._invited: list[tuple[I64, NDArray[np.int16], NDArray[np.bool_]]] = []
        self._streak_bonus_given = False
        self.referral_cost_cents = 0
        self.referral_cost_abusers_cents = 0
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

    # ---- the oracle's hook: the truth ordinary policies never see ------------------------------
    def true_state(self, shoppers: I64) -> TrueState:
        """The latent traits and hidden state of ``shoppers`` now (for the privileged oracle only)."""
        pop, scenario = self.pop, self.scenario
        churn, reference = scenario.mechanisms.churn, scenario.mechanisms.reference_price
        today = np.full(shoppers.size, int(self.now_hours // HOURS_PER_DAY), dtype=np.int64)
        ratio, promo = self._reference_now(shoppers, today)
        experience = experience_multiplier(
            pop.last_delivery_late[shoppers],
            pop.deliveries[shoppers] > 0,
            pop.frustration[shoppers],
            churn.late_dropout_multiplier,
            churn.on_time_relief,
            0.0,
        )
        return TrueState(
            alive=pop.alive[shoppers].copy(),
            purchase_rate_per_day=pop.purchase_rate_per_day[shoppers],
            dropout_prob=pop.dropout_prob[shoppers],
            hazard_per_day=pop.dropout_rate_per_day[shoppers] * experience,
            spend_nu=pop.spend_nu[shoppers],
            loss_aversion=pop.loss_aversion[shoppers],
            price_sensitivity=effective_price_sensitivity(
                pop.price_sensitivity[shoppers], promo, reference.promo_sensitivity
            ),
            checkout_shift=pop.checkout_shift[shoppers],
            offer_response=pop.offer_response[shoppers],
            contact_churn=pop.contact_churn[shoppers],
            winback_sensitivity=pop.winback_sensitivity[shoppers],
            affinity=pop.affinity[shoppers],
            reference_ratio=ratio,
            visit_prob=pop.visit_prob[shoppers],
            cart_prob=pop.cart_prob[shoppers],
            cart_value=np.where(pop.cart_id[shoppers] >= 0, pop.cart_value[shoppers], 0.0),
            referral_propensity=pop.referral_propensity[shoppers],
            invites_left=(scenario.mechanisms.referral.max_invites - pop.invites_sent[shoppers]).astype(
                np.float64
            ),
        )

    # ---- driving the clock ------------------------------------------------------------------
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

    # ---- the day ----------------------------------------------------------------------------
    def _day_loop(self) -> Generator[simpy.Event, Any, None]:
        batch_hours = self.scenario.engine.session_batch_hours
        batches = round(HOURS_PER_DAY / batch_hours)
        for day in range(self.horizon_days):
            if self._on_day is not None:
                self._on_day(day)
            start = day * HOURS_PER_DAY
            self._accept_referrals(start)
            self._requalify(start)
            self._day = None  # release yesterday's draws before drawing today's
            self._day = self._draw_day(day)
            self._tier_share = self._tier_shares()
            yield from self._lapsing(start)
            for k in range(batches):
                end = start + (k + 1) * batch_hours
                yield self.env.timeout(end - self.env.now)
                yield from self._session_batch(start + k * batch_hours, end)
        self._ready.succeed(None)

    def _draw_day(self, day: int) -> _DayDraws:
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
        return _DayDraws(
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

    def _invite(self, referrers: I64, offers: NDArray[np.int16]) -> None:
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

    def _requalify(self, now: float) -> None:
        """Shoppers whose membership period ended keep the tier their period's spend earned."""
        pop = self.pop
        due = np.flatnonzero(pop.requalify_at <= now)
        if due.size == 0:
            return
        earned = tier_of(pop.qualifying_spend[due], self._tier_thresholds)
        self.daily.add("downgrades", now, float((earned < pop.tier[due]).sum()))
        pop.tier[due] = earned
        pop.qualifying_spend[due] = 0.0
        pop.qualifying_tier[due] = 0
        pop.requalify_at[due] += self.scenario.mechanisms.tiers.membership_days * HOURS_PER_DAY

    def _joined_today(self, start: float, end: float) -> I64:
        """Referred rows whose acquisition falls in ``[start, end)``."""
        referred_at = self.pop.acquired_at[self.pop.planned :]
        return self.pop.planned + np.flatnonzero((referred_at >= start) & (referred_at < end))

    def _streak_breaks(self, day: int, rows: slice | I64) -> None:
        """Apply the missed-day rule to streaks broken yesterday; frustration fades."""
        pop, mech = self.pop, self.scenario.mechanisms
        streaks, prospect = mech.streaks, mech.prospect
        if streaks.break_penalty > 0:
            pop.frustration[rows] *= 0.5 ** (1.0 / streaks.frustration_half_life_days)
        row_ids = np.arange(rows.stop) if isinstance(rows, slice) else rows
        missed = row_ids[(pop.streak_days[rows] > 0) & (pop.last_visit_day[rows] < day - 1)]
        if missed.size == 0:
            return
        frozen = pop.streak_freezes[missed] > 0
        pop.streak_freezes[missed[frozen]] -= 1
        broken = missed[~frozen]
        before = pop.streak_days[broken]
        after = streak_after_miss(before, streaks.missed_day_rule, streaks.decay_keep)
        pop.streak_days[broken] = after
        lost = np.where(before >= streaks.min_days, before - after, 0)  # a shown streak was lost
        added = (
            streaks.break_penalty
            * pop.streak_sensitivity[broken]
            * loss_weight(
                lost.astype(np.float64),
                streaks.cap_days,
                1,
                pop.loss_aversion[broken],
                prospect.alpha,
                prospect.beta,
            )
        )
        pop.frustration[broken] += added
        if self.scenario.population.attrition == "pareto_nbd":  # checked by the day's attrition
            pop.hazard[broken] += self.scenario.mechanisms.churn.frustration_weight * added
        pop.last_visit_day[missed] = day - 1  # the streak, kept or shortened, carries on from here

    def _attrition(self, start: float) -> None:
        """Add the day's hazard to every alive shopper acquired before today; churn at the budget."""
        pop, churn = self.pop, self.scenario.mechanisms.churn
        acquired = pop.active_rows(start)
        row_ids = np.arange(acquired.stop) if isinstance(acquired, slice) else acquired
        rows = row_ids[pop.alive[acquired] & (pop.acquired_at[acquired] < start)]
        if rows.size == 0:
            return
        tiers = self.scenario.mechanisms.tiers
        relief = perk_dropout_relief(
            pop.tier[rows],
            self._tier_share,
            len(self._tier_thresholds) - 1,
            tiers.perk_dropout_relief,
            tiers.inflation,
        )
        multiplier = experience_multiplier(
            pop.last_delivery_late[rows],
            pop.deliveries[rows] > 0,
            pop.frustration[rows],
            churn.late_dropout_multiplier,
            churn.on_time_relief,
            0.0,  # a lost streak adds its hazard once, when it is lost (_streak_breaks)
        )
        pop.hazard[rows] += pop.dropout_rate_per_day[rows] * multiplier * (1.0 - relief)
        self.end_lives(rows, start)

    def end_lives(self, shoppers: I64, now: float) -> None:
        """Churn the alive ``shoppers`` whose accumulated hazard has reached their lifetime budget."""
        pop = self.pop
        gone = shoppers[pop.alive[shoppers] & (pop.hazard[shoppers] >= pop.lifetime_budget[shoppers])]
        if gone.size:
            gone = np.unique(gone)
            pop.alive[gone] = False
            pop.churned_at[gone] = now
            self.log.record("churn", now, gone)
            self.daily.add("churned", now, gone.size)

    def _update_social_signal(self, rows: slice | I64) -> None:
        """Fade recent purchases by a day and sum them over each shopper's neighbours."""
        pop = self.pop
        pop.recent_purchases[rows] *= self._recent_decay
        if self.scenario.mechanisms.social.proof_weight > 0:
            self._social_signal = np.zeros(pop.size)
            self._social_signal[rows] = neighbour_signal(pop.recent_purchases, pop.neighbours[rows])

    def _visit_probability(self, rows: slice | I64, now: float) -> F64:
        """Today's session probability: the calibrated base moved by streaks and the goal gradient."""
        pop, mech = self.pop, self.scenario.mechanisms
        multiplier = visit_hazard_multiplier(
            pop.streak_days[rows],
            pop.frustration[rows],
            pop.streak_sensitivity[rows],
            pop.loss_aversion[rows],
            mech.streaks.weight,
            mech.streaks.cap_days,
            mech.streaks.min_days,
            mech.prospect.alpha,
            mech.prospect.beta,
        )
        bonus = self._active_streak_bonus(rows, now) if self._streak_bonus_given else None
        if bonus is not None and bonus.any():
            types = mech.incentive_types
            value = self.catalog.value[pop.offer[rows]] * self.scenario.loyalty.point_value
            appeal = affinity_factor(
                pop.affinity[rows], self.catalog.type_column[pop.offer[rows]], types.affinity_weight
            )
            pull = mech.streaks.weight * pop.streak_sensitivity[rows] * appeal
            pull *= (value / types.streak_bonus_reference) ** mech.prospect.alpha
            multiplier *= np.exp(np.where(bonus, pull, 0.0))
        lift = mech.advertising.visit_lift
        if lift > 0:  # an offer held, redeemed or not, brings her back (the advertising effect)
            held = (pop.offer[rows] > 0) & (pop.offer_expires_at[rows] >= now)
            if held.any():
                multiplier *= np.where(held, 1.0 + lift * pop.offer_response[rows], 1.0)
        season = self.season_multiplier(now)
        if season != 1.0:
            multiplier *= season
        if mech.tiers.goal_gradient > 0:
            progress = tier_progress(
                pop.qualifying_spend[rows], pop.qualifying_tier[rows], self._tier_thresholds
            )
            multiplier *= goal_gradient_multiplier(progress, mech.tiers.goal_gradient)
        if mech.tiers.downgrade_weight > 0:
            warning = mech.tiers.downgrade_warning_days * HOURS_PER_DAY
            in_window = np.flatnonzero(pop.requalify_at[rows] - now <= warning)  # positions in rows
            if in_window.size:
                ids = (np.arange(rows.stop) if isinstance(rows, slice) else rows)[in_window]
                multiplier[in_window] *= downgrade_threat_multiplier(
                    pop.tier[ids],
                    pop.qualifying_tier[ids],
                    np.ones(ids.size, dtype=bool),
                    pop.loss_aversion[ids],
                    len(self._tier_thresholds) - 1,
                    mech.tiers.downgrade_weight,
                    mech.prospect.beta,
                )
        return -np.expm1(multiplier * np.log1p(-np.minimum(pop.visit_prob[rows], 1.0 - 1e-12)))

    def season_multiplier(self, now: float) -> float:
        """Visit-hazard multiplier of the seasonal peaks covering the day of ``now``."""
        day = int(now // HOURS_PER_DAY)
        factor = 1.0
        for peak in self.scenario.sessions.peaks:
            if peak.start_day <= day < peak.start_day + peak.days:
                factor *= peak.visit_multiplier
        return factor

    def _active_streak_bonus(self, rows: slice | I64, now: float | F64) -> NDArray[np.bool_]:
        """Shoppers holding an unexpired streak bonus."""
        pop = self.pop
        kind = self.catalog.kind[pop.offer[rows]]
        return (kind == KIND_CODES["streak_bonus"]) & (pop.offer_expires_at[rows] >= now)

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
        pop = self.pop
        rows = pop.active_rows(now)
        row_ids = np.arange(rows.stop) if isinstance(rows, slice) else rows
        threshold = self.scenario.sessions.lapse_after_days * HOURS_PER_DAY
        ids = row_ids[(now - pop.last_order_at[rows] >= threshold) & ~pop.lapsing_flagged[rows]]
        if ids.size:
            pop.lapsing_flagged[ids] = True
            self.log.record("lapsing", now, ids)
            yield from self._decide("lapsing", ids, now)

    def _session_batch(self, start: float, end: float) -> Generator[simpy.Event, Any, None]:
        """Handle the acquisitions and sessions that started in ``[start, end)``."""
        day, pop = self._day, self.pop
        assert day is not None
        acq = day.acquisition_ids
        lo, hi = np.searchsorted(pop.acquired_at[acq], [start, end], side="left")
        if hi > lo:
            self._acquire(acq[lo:hi])
        lo, hi = np.searchsorted(day.visit_times, [start, end], side="left")
        visitors, times = day.visit_ids[lo:hi], day.visit_times[lo:hi]
        still_alive = pop.alive[visitors]
        visitors, times = visitors[still_alive], times[still_alive]
        if visitors.size == 0:
            return
        self._visit(visitors, times)
        yield from self._decide("login", visitors, end, at=times)
        reached = pop.alive[visitors]  # a contact may have driven a sleeping dog away
        visitors, times = visitors[reached], times[reached]

        has_cart = day.u_cart[visitors] < self._cart_probability(visitors, times)
        shoppers, times = visitors[has_cart], times[has_cart]
        if shoppers.size == 0:
            return
        basket = self._basket(shoppers)
        category = self._categories(day.u_category[shoppers])
        cart_ids = np.arange(self._next_cart_id, self._next_cart_id + shoppers.size, dtype=np.int64)
        self._next_cart_id += shoppers.size
        pop.cart_id[shoppers] = cart_ids
        pop.cart_value[shoppers] = basket
        pop.cart_category[shoppers] = category
        self.log.record("cart", times, shoppers, amount=basket, detail=category)
        self.daily.add("carts", start, shoppers.size)

        badge = day.u_bestseller[shoppers] < self.scenario.mechanisms.social.bestseller_share
        bought = self._checkout(shoppers, times, basket, category, day.u_checkout[shoppers], badge)
        abandoned = ~bought
        if not abandoned.any():
            return
        ids = shoppers[abandoned]
        expires = times[abandoned] + self.scenario.sessions.cart_recovery_hours
        pop.cart_expires_at[ids] = expires
        self.log.record("abandon", times[abandoned], ids, amount=basket[abandoned])
        self.daily.add("abandoned", start, ids.size)
        yield from self._decide("cart_abandoned", ids, end, at=times[abandoned])
        self.env.process(
            self._cart_timer(
                ids,
                cart_ids[abandoned],
                basket[abandoned],
                category[abandoned],
                badge[abandoned],
                day.u_cart_return[ids],
                day.u_reconsider[ids],
                wake_at=end + self.scenario.sessions.cart_recovery_hours,
            )
        )

    def _cart_probability(self, shoppers: I64, times: F64) -> F64:
        """Her calibrated cart probability moved by her need since her last order."""
        pop, need = self.pop, self.scenario.mechanisms.need
        if need.depletion == 0.0:
            return pop.cart_prob[shoppers]
        age_days = (times - pop.last_order_at[shoppers]) / HOURS_PER_DAY
        factor = need_factor(age_days, pop.purchase_rate_per_day[shoppers], need.depletion, need.restock_days)
        return np.minimum(pop.cart_prob[shoppers] * factor, 1.0)

    def _basket(self, shoppers: I64) -> F64:
        """Today's Gamma-Gamma basket of each shopper, topped up towards free shipping."""
        day, pop = self._day, self.pop
        assert day is not None
        ship, topup = self.scenario.shipping, self.scenario.mechanisms.shipping_threshold
        return topped_up_basket(
            day.basket_gamma[shoppers] / pop.spend_nu[shoppers] * self.scenario.catalog.price_index,
            day.u_topup[shoppers],
            ship.fee,
            ship.free_threshold,
            topup.topup_prob,
            topup.max_gap_fee_multiple,
            topup.overshoot_max,
        )

    def _categories(self, u: F64) -> NDArray[np.int8]:
        """Map uniforms to product categories by their cart shares."""
        category = np.searchsorted(self._category_cdf, u, side="right")
        return np.minimum(category, len(self._category_cdf) - 1).astype(np.int8)

    def _visit(self, shoppers: I64, times: F64) -> None:
        """Record sessions and update the daily-visit streaks."""
        pop = self.pop
        day = int(times[0] // HOURS_PER_DAY)
        continued = pop.last_visit_day[shoppers] == day - 1
        pop.streak_days[shoppers] = np.where(continued, pop.streak_days[shoppers] + 1, 1)
        pop.last_visit_day[shoppers] = day
        self.log.record("visit", times, shoppers)
        self.daily.add("visits", times[0], shoppers.size)
        if not self._streak_bonus_given:
            return
        shown = pop.streak_days[shoppers] >= self.scenario.mechanisms.streaks.min_days
        kept = continued & shown & self._active_streak_bonus(shoppers, times)
        if kept.any():  # the streak held: the bonus points are credited
            earners, offer = shoppers[kept], pop.offer[shoppers[kept]]
            points = self.catalog.value[offer].astype(np.int64)
            pop.points[earners] += points
            pop.offer[earners] = 0
            pop.offer_expires_at[earners] = -np.inf
            self.log.record(
                "incentive_redeemed",
                times[kept],
                earners,
                amount=points * self.scenario.loyalty.point_value,
                incentive=offer,
            )

    def _acquire(self, shoppers: I64) -> None:
        """New shoppers arrive with their first order (the BG/NBD trial purchase)."""
        day, pop = self._day, self.pop
        assert day is not None
        times = pop.acquired_at[shoppers]
        fake = pop.fake_account[shoppers]
        basket = np.where(fake, self.scenario.mechanisms.referral.fake_order_value, self._basket(shoppers))
        category = self._categories(day.u_category[shoppers])
        self.log.record("acquired", times, shoppers, detail=pop.channel[shoppers].astype(np.int16))
        self.daily.add("acquired", times[0], shoppers.size)
        if not self.scenario.population.first_order_at_acquisition:
            # Established customers are observed from now on, with no trial order; a referred
            # friend (or a fake account) is new, and joins with the first order that pays the bonus.
            trial = pop.channel[shoppers] == CHANNEL_REFERRED
            if not trial.any():
                return
            shoppers, times, basket, category = shoppers[trial], times[trial], basket[trial], category[trial]
        offer = np.zeros(shoppers.size, dtype=np.int16)
        no_points = np.zeros(shoppers.size, np.int64)
        terms = self.catalog.terms(offer, basket)
        order_ids = self._place_orders(shoppers, times, basket, category, offer, no_points, terms)
        self._pay_referral_bonuses(shoppers, times, basket, order_ids)

    def _pay_referral_bonuses(self, shoppers: I64, times: F64, basket: F64, order_ids: I64) -> None:
        """Pay each referrer whose friend's first order reaches the bonus's anti-fraud floor."""
        pop = self.pop
        offer = pop.referral_offer[shoppers]
        paid = (pop.referred_by[shoppers] >= 0) & (basket >= self.catalog.min_basket[offer])
        if not paid.any():
            return
        referrers, offer = pop.referred_by[shoppers[paid]], offer[paid]
        cents = to_cents(self.catalog.value[offer])
        self.ledger.book(INCENTIVE, referrers, cents, times[paid])
        self.referral_cost_cents += int(cents.sum())
        self.referral_cost_abusers_cents += int(cents[pop.abuser[referrers]].sum())
        self.daily.add("incentive_cost", times[0], float(cents.sum()) / 100.0)
        self.log.record(
            "incentive_redeemed",
            times[paid],
            referrers,
            order_id=order_ids[paid],
            amount=cents / 100.0,
            incentive=offer,
        )

    # ---- checkout and orders ----------------------------------------------------------------
    def _checkout(
        self,
        shoppers: I64,
        times: F64 | float,
        basket: F64,
        category: NDArray[np.int8],
        u: F64,
        badge: NDArray[np.bool_],
    ) -> NDArray[np.bool_]:
        """Each cart's shopper sees what she would pay (offers, shipping, points) and decides."""
        pop, loyalty, ship = self.pop, self.scenario.loyalty, self.scenario.shipping
        active = pop.offer_expires_at[shoppers] >= times
        offer = np.where(active, pop.offer[shoppers], 0).astype(np.int16)
        terms = self.catalog.terms(offer, basket)
        fee = np.where(terms.free_shipping, 0.0, shipping_fee(basket, ship.fee, ship.free_threshold))
        points = pop.points[shoppers]
        if loyalty.point_value > 0:  # points worth nothing are never redeemed
            redeem_points = np.where(
                points >= loyalty.min_redeem_points,
                np.minimum(points, np.floor((basket - terms.discount) / loyalty.point_value)),
                0,
            ).astype(np.int64)
        else:
            redeem_points = np.zeros(shoppers.size, dtype=np.int64)
        pay = basket - terms.discount - redeem_points * loyalty.point_value + fee
        reference = self.scenario.mechanisms.reference_price
        loss_aversion = pop.loss_aversion[shoppers]
        felt = pay
        if terms.applies.any():
            # Her uplift class scales what the offer is felt to be worth (the saving and the pull).
            response = pop.offer_response[shoppers]
            saving = terms.discount + np.where(
                terms.free_shipping, shipping_fee(basket, ship.fee, ship.free_threshold), 0.0
            )
            pull = self._offer_pull(shoppers, terms, basket, loss_aversion)
            felt = pay + (1.0 - response) * saving - response * pull
        today = np.floor(np.asarray(times) / HOURS_PER_DAY).astype(np.int64)
        ratio, promo = self._reference_now(shoppers, today)
        sensitivity = effective_price_sensitivity(
            pop.price_sensitivity[shoppers], promo, reference.promo_sensitivity
        )
        social = self.scenario.mechanisms.social
        signal = self._social_signal[shoppers] if social.proof_weight > 0 else np.zeros(shoppers.size)
        lift = social_logit_lift(
            signal,
            pop.social_susceptibility[shoppers],
            badge,
            self._mean_susceptibility,
            social.proof_weight,
            social.saturation,
            social.bestseller_lift,
        )
        prob = checkout_probability(
            self._base_logit + pop.checkout_shift[shoppers] + lift,
            sensitivity,
            felt,
            basket / self.scenario.catalog.price_index * ratio,
            loss_aversion,
        )
        bought = u < prob
        if bought.any():
            times_b = times[bought] if isinstance(times, np.ndarray) else np.full(int(bought.sum()), times)
            self._place_orders(
                shoppers[bought],
                times_b,
                basket[bought],
                category[bought],
                offer[bought],
                redeem_points[bought],
                terms.select(bought),
            )
        return bought

    def _place_orders(
        self,
        shoppers: I64,
        times: F64,
        basket: F64,
        category: NDArray[np.int8],
        offer: NDArray[np.int16],
        redeem_points: I64,
        terms: Terms,
    ) -> I64:
        """Book orders: ledger, points, offers redeemed, shopper state, BG/NBD dropout, warehouse."""
        pop, day, scenario = self.pop, self._day, self.scenario
        assert day is not None
        loyalty, ship = scenario.loyalty, scenario.shipping
        list_cents = to_cents(basket)
        fee_cents = to_cents(shipping_fee(basket, ship.fee, ship.free_threshold))
        waived_cents = np.where(terms.free_shipping, fee_cents, 0)
        coupon_cents = to_cents(terms.discount)
        redeem_cents = to_cents(redeem_points * loyalty.point_value)
        regular_cents = list_cents / scenario.catalog.price_index  # COGS do not move with prices
        cogs_cents = np.rint(regular_cents * self._cogs_ratio[category]).astype(np.int64)
        earned = (
            np.floor(basket * loyalty.points_per_dollar * terms.points_multiplier).astype(np.int64)
            + terms.bonus_points
        )
        ids = self.orders.add(
            shopper=shoppers,
            placed_at=times,
            category=category,
            list_cents=list_cents,
            fee_cents=fee_cents,
            discount_cents=coupon_cents + redeem_cents,
            cogs_cents=cogs_cents,
            points_earned=earned,
            incentive=offer,
            u_return=day.u_return[shoppers],
            u_transit=day.u_transit[shoppers],
            promised_at=promised_by_hours(times, ship.promised_days),
        )
        incentive_cents = coupon_cents + redeem_cents + waived_cents + self._perk_cents(shoppers, terms)
        carrier_cents = np.full(shoppers.size, to_cents(ship.carrier_cost_per_order))
        self.ledger.book_unique(
            shoppers,
            {
                REVENUE: list_cents + fee_cents,
                COGS: cogs_cents,
                INCENTIVE: incentive_cents,
                SHIPPING: carrier_cents,
            },
            times,
        )
        pop.points[shoppers] += earned - redeem_points

        redeemed = (offer > 0) & terms.applies
        if redeemed.any():
            used = shoppers[redeemed]
            self.log.record(
                "incentive_redeemed",
                times[redeemed],
                used,
                order_id=ids[redeemed],
                amount=(incentive_cents - redeem_cents)[redeemed] / 100.0,
                incentive=offer[redeemed],
            )
            pop.offer[used] = 0
            pop.offer_expires_at[used] = -np.inf

        reference = scenario.mechanisms.reference_price
        today = np.floor(times / HOURS_PER_DAY).astype(np.int64)
        ratio, promo = self._reference_now(shoppers, today)
        pop.reference_ratio[shoppers], pop.promo_share[shoppers] = update_reference(
            ratio,
            promo,
            (list_cents - coupon_cents - redeem_cents)
            / np.maximum(list_cents, 1)
            * scenario.catalog.price_index,
            coupon_cents > 0,
            update_weight(reference.smoothing, pop.orders[shoppers], reference.established_orders),
        )
        pop.reference_day[shoppers] = today
        repeat = pop.orders[shoppers] > 0
        pop.orders[shoppers] += 1
        pop.recent_purchases[shoppers] += 1.0
        pop.monetary[shoppers] += basket
        pop.last_order_at[shoppers] = times
        pop.lapsing_flagged[shoppers] = False
        pop.cart_id[shoppers] = -1
        pop.cart_value[shoppers] = 0.0
        pop.qualifying_spend[shoppers] += basket
        pop.qualifying_tier[shoppers] = tier_of(pop.qualifying_spend[shoppers], self._tier_thresholds)
        pop.tier[shoppers] = np.maximum(pop.tier[shoppers], pop.qualifying_tier[shoppers])
        self.log.record(
            "order", times, shoppers, order_id=ids, amount=basket, incentive=offer, detail=category
        )
        self.daily.add("orders", times[0], shoppers.size)
        self.daily.add("revenue", times[0], float((list_cents + fee_cents).sum()) / 100.0)
        self.daily.add("incentive_cost", times[0], float(incentive_cents.sum()) / 100.0)

        if scenario.population.attrition == "bgnbd":
            self._bgnbd_dropout(shoppers, times, repeat)
        self.fulfillment.receive(ids)
        return ids

    def _bgnbd_dropout(self, shoppers: I64, times: F64, repeat: NDArray[np.bool_]) -> None:
        """BG/NBD: after a repeat order she drops out with her probability, moved by experience."""
        pop, day, scenario = self.pop, self._day, self.scenario
        assert day is not None
        tiers = scenario.mechanisms.tiers
        relief = perk_dropout_relief(
            pop.tier[shoppers],
            self._tier_share,
            len(self._tier_thresholds) - 1,
            tiers.perk_dropout_relief,
            tiers.inflation,
        )
        churn_params = scenario.mechanisms.churn
        dropout = (1.0 - relief) * dropout_probability(
            pop.dropout_prob[shoppers],
            pop.last_delivery_late[shoppers],
            pop.deliveries[shoppers] > 0,
            pop.frustration[shoppers],
            churn_params.late_dropout_multiplier,
            churn_params.on_time_relief,
            churn_params.frustration_weight,
        )
        churn = repeat & (day.u_churn[shoppers] < dropout)
        if churn.any():
            gone = shoppers[churn]
            pop.alive[gone] = False
            pop.churned_at[gone] = times[churn]
            self.log.record("churn", times[churn], gone)
            self.daily.add("churned", times[0], gone.size)

    def _reference_now(self, shoppers: I64, today: I64) -> tuple[F64, F64]:
        """Her reference ratio and promotion share today, faded since her last purchase."""
        pop, reference = self.pop, self.scenario.mechanisms.reference_price
        days = (today - pop.reference_day[shoppers]).astype(np.float64)
        # Her anchor is the market's regular price level (other shops'): the ratio drifts back to 1.
        ratio = faded(pop.reference_ratio[shoppers], 1.0, reference.memory_half_life_days, days)
        promo = faded(pop.promo_share[shoppers], 0.0, reference.promo_memory_half_life_days, days)
        return ratio, promo

    def _offer_pull(self, shoppers: I64, terms: Terms, basket: F64, loss_aversion: F64) -> F64:
        """Dollar-equivalent pull of points, perks and surprises, framed and scaled by type affinity."""
        pop, loyalty = self.pop, self.scenario.loyalty
        prospect = self.scenario.mechanisms.prospect
        extra_points = (
            terms.points_multiplier - 1.0
        ) * basket * loyalty.points_per_dollar + terms.bonus_points
        types = self.scenario.mechanisms.incentive_types
        appeal = affinity_factor(pop.affinity[shoppers], terms.type_column, types.affinity_weight)
        surprise = terms.type_column == TYPE_COLUMN["surprise"]
        perk = terms.hedonic_value * np.where(surprise, 1.0 + types.uncertainty_premium, 1.0)
        worth = 1.0 - self.scenario.mechanisms.tiers.inflation * self._tier_share[pop.tier[shoppers]]
        perk *= np.where(terms.type_column == TYPE_COLUMN["hedonic"], np.clip(worth, 0.0, 1.0), 1.0)
        pull = appeal * (
            framed_offer_pull(
                extra_points * loyalty.point_value,
                terms.loss_framed,
                loss_aversion,
                prospect.alpha,
                prospect.beta,
            )
            + prospect_value(perk, 1.0, prospect.alpha, prospect.beta)
        )
        return pull

    def _perk_cents(self, shoppers: I64, terms: Terms) -> I64:
        """What the shop pays for the tier perks and surprise gifts redeemed on these orders."""
        if not terms.hedonic_value.any():
            return np.zeros(shoppers.size, dtype=np.int64)
        day, types = self._day, self.scenario.mechanisms.incentive_types
        assert day is not None
        gift = surprise_value(terms.hedonic_value, day.u_surprise[shoppers]) * types.surprise_cost_ratio
        perk = terms.hedonic_value * types.perk_cost_ratio
        return to_cents(np.where(terms.type_column == TYPE_COLUMN["surprise"], gift, perk))

    def _cart_timer(
        self,
        shoppers: I64,
        cart_ids: I64,
        basket: F64,
        category: NDArray[np.int8],
        badge: NDArray[np.bool_],
        u_return: F64,
        u_reconsider: F64,
        wake_at: float,
    ) -> Generator[simpy.Event, Any, None]:
        """The cart-abandonment timer: returning shoppers decide again, other carts are lost."""
        yield self.env.timeout(wake_at - self.env.now)
        pop = self.pop
        still_open = pop.cart_id[shoppers] == cart_ids  # not replaced by a newer cart
        shoppers, basket, category = shoppers[still_open], basket[still_open], category[still_open]
        badge = badge[still_open]
        back = pop.alive[shoppers] & (u_return[still_open] < self.scenario.sessions.cart_return_rate)
        bought = np.zeros(shoppers.size, dtype=bool)
        if back.any():
            bought[back] = self._checkout(
                shoppers[back],
                self.env.now,
                basket[back],
                category[back],
                u_reconsider[still_open][back],
                badge[back],
            )
            self.daily.add("recovered", self.env.now, float(bought.sum()))
        lost = shoppers[~bought]
        pop.cart_id[lost] = -1
        pop.cart_value[lost] = 0.0
        self.log.record("cart_lost", self.env.now, lost, amount=basket[~bought])

    # ---- incentives -------------------------------------------------------------------------
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
        was_alive = self.pop.alive[shoppers]
        given = self._give(shoppers, incentive_ids, np.full(shoppers.size, now) if at is None else at)
        if kind == "lapsing":  # a refused (ineligible) incentive reaches no one
            reached = (given > 0) & ~was_alive
            self._win_back(shoppers[reached], given[reached], now)

    def _win_back(self, shoppers: I64, offers: NDArray[np.int16], now: float) -> None:
        """Churned shoppers reached by an incentive while lapsing may come back, more for a richer offer."""
        day, pop, churn = self._day, self.pop, self.scenario.mechanisms.churn
        assert day is not None
        typical = pop.mean_spend[shoppers] * self.scenario.catalog.price_index
        chance = winback_probability(
            self.catalog.face_value(offers, typical),
            pop.winback_sensitivity[shoppers],
            churn.winback_ceiling,
            churn.winback_value_dollars,
        )
        back = shoppers[day.u_winback[shoppers] < chance]
        if back.size:
            pop.alive[back] = True
            pop.churned_at[back] = np.nan
            pop.hazard[back] = 0.0  # a new relationship: her hazard clock starts again
            self.log.record("winback", now, back)
            self.daily.add("won_back", now, back.size)

    def _contact(self, shoppers: I64, now: float) -> None:
        """Being contacted drives some shoppers away (sleeping dogs; Ascarza et al. 2016)."""
        pop = self.pop
        churn = pop.contact_churn[shoppers]
        touched = shoppers[(churn > 0) & pop.alive[shoppers]]
        if touched.size:
            np.add.at(pop.hazard, touched, lump_hazard(pop.contact_churn[touched]))
            self.end_lives(touched, now)

    def _give(self, shoppers: I64, incentive_ids: NDArray[np.int16], at: F64) -> NDArray[np.int16]:
        """Make each non-``none`` incentive the shopper's active offer; returns the ids actually given."""
        pop = self.pop
        eligible = self.catalog.eligible(
            incentive_ids,
            pop.streak_days[shoppers],
            pop.tier[shoppers],
            self.scenario.mechanisms.streaks.min_days,
        )
        if not eligible.all():  # an ineligible incentive is not given (environments mask them)
            self.daily.add("ineligible_offers", float(at[0]), float((~eligible).sum()))
            incentive_ids = np.where(eligible, incentive_ids, 0).astype(np.int16)
        given = incentive_ids > 0
        if not given.any():
            return incentive_ids
        kind = self.catalog.kind[incentive_ids]
        self._streak_bonus_given |= bool((kind == KIND_CODES["streak_bonus"]).any())
        freeze = kind == KIND_CODES["streak_freeze"]
        pop.streak_freezes[shoppers[freeze]] += 1
        referral = kind == KIND_CODES["referral_bonus"]
        if referral.any():
            self._invite(shoppers[referral], incentive_ids[referral])
        ids, offer = shoppers[given], incentive_ids[given]
        self._contact(ids, float(at[given][0]))
        offers = ~(freeze | referral)[given]  # acted on at once, not held as an offer
        pop.offer[ids[offers]] = offer[offers]
        pop.offer_expires_at[ids[offers]] = (at[given] + self.catalog.valid_hours[offer])[offers]
        pop.incentives_received[ids] += 1
        self.log.record("incentive_offered", at[given], ids, incentive=offer)
        return incentive_ids
