"""The behavioural model of a shop and its shoppers: every rule, written once, for both clocks.

:class:`Shop` holds the population's state, the ledger and the event log, and applies the
rules of :mod:`sim.mechanisms` to rows of shoppers at their own times: visits and streaks,
carts and checkout, orders and their booking, deliveries' and returns' effects, attrition,
and incentives given at decision points. It owns no clock. Two drivers call it:

* :class:`sim.engine.Simulation`, the SimPy-clocked population: every shopper on one
  calendar, sessions in batches, a capacity-limited warehouse (:mod:`sim.fulfillment`);
* :class:`sim.journeys.JourneyBatch`, independent shoppers each on her own clock, stepped
  decision by decision (``ShopperJourney-v0`` and its native vector env).

A driver supplies the day's random draws (``self._day``: one value per row and purpose), the
neighbour signal of social proof, the tier shares of tier inflation, where new orders go
(:meth:`_dispatch`) and what a referral invitation does (:meth:`_invite`). Every method takes
per-row times, so the two clocks share each rule bit for bit.

This module is longer than 600 lines because the rules read best in one place, in the order
a shopper meets them: sessions, carts and checkout, orders, attrition, incentives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import NDArray

from sim.behaviour import checkout_probability, logit, shipping_fee
from sim.economics import COGS, INCENTIVE, RETURNS, REVENUE, SHIPPING, Ledger, to_cents
from sim.events import DailyStats, EventLog, LogLevel
from sim.fulfillment import OrderBook, promised_by_hours
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
from sim.mechanisms.shipping_threshold import topped_up_basket
from sim.mechanisms.social import social_logit_lift
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
from sim.population import CHANNEL_REFERRED, HOURS_PER_DAY, Population

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


class Shop(ABC):
    """State and rules of one shop's shoppers; a driver supplies the clock and the draws."""

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

    # ---- the oracle's hook: the truth ordinary policies never see ------------------------------
    def true_state(self, shoppers: I64, now: Times) -> TrueState:
        """The latent traits and hidden state of ``shoppers`` at ``now`` (for the privileged oracle only)."""
        pop, scenario = self.pop, self.scenario
        churn, reference = scenario.mechanisms.churn, scenario.mechanisms.reference_price
        today = np.broadcast_to(np.floor(np.asarray(now) / HOURS_PER_DAY).astype(np.int64), shoppers.shape)
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

    # ---- the day's start: membership, streaks, attrition, lapsing --------------------------------
    def _requalify(self, rows: slice | I64, now: Times) -> None:
        """Shoppers whose membership period ended keep the tier their period's spend earned."""
        pop = self.pop
        is_due = pop.requalify_at[rows] <= now
        due = np.flatnonzero(is_due) + (rows.start or 0) if isinstance(rows, slice) else rows[is_due]
        if due.size == 0:
            return
        earned = tier_of(pop.qualifying_spend[due], self._tier_thresholds)
        self.daily.add("downgrades", _first(now), float((earned < pop.tier[due]).sum()))
        pop.tier[due] = earned
        pop.qualifying_spend[due] = 0.0
        pop.qualifying_tier[due] = 0
        pop.requalify_at[due] += self.scenario.mechanisms.tiers.membership_days * HOURS_PER_DAY

    def _streak_breaks(self, day: int | I64, rows: slice | I64) -> None:
        """Apply the missed-day rule to streaks broken yesterday; frustration fades."""
        pop, mech = self.pop, self.scenario.mechanisms
        streaks, prospect = mech.streaks, mech.prospect
        if streaks.break_penalty > 0:
            pop.frustration[rows] *= 0.5 ** (1.0 / streaks.frustration_half_life_days)
        row_ids = np.arange(rows.stop) if isinstance(rows, slice) else rows
        is_missed = (pop.streak_days[rows] > 0) & (pop.last_visit_day[rows] < day - 1)
        missed = row_ids[is_missed]
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
        # The streak, kept or shortened, carries on from here.
        pop.last_visit_day[missed] = day - 1 if np.ndim(day) == 0 else np.asarray(day)[is_missed] - 1

    def _accrue_hazard(self, rows: I64, start: Times) -> None:
        """Pareto/NBD: add a day's experience-moved hazard to alive ``rows``; churn at the budget."""
        self.pop.hazard[rows] += self._hazard_per_day(rows)
        self.end_lives(rows, start)

    def _hazard_per_day(self, rows: I64) -> F64:
        """Pareto/NBD: each row's hazard per day now, moved by her experience and her tier's perks."""
        pop, churn = self.pop, self.scenario.mechanisms.churn
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
        return np.asarray(pop.dropout_rate_per_day[rows] * multiplier * (1.0 - relief), dtype=np.float64)

    def end_lives(self, shoppers: I64, now: Times) -> None:
        """Churn the alive ``shoppers`` whose accumulated hazard has reached their lifetime budget."""
        pop = self.pop
        ending = pop.alive[shoppers] & (pop.hazard[shoppers] >= pop.lifetime_budget[shoppers])
        gone = shoppers[ending]
        if gone.size:
            gone, first = np.unique(gone, return_index=True)
            when = _at(_at(now, ending), first)
            pop.alive[gone] = False
            pop.churned_at[gone] = when
            self.log.record("churn", when, gone)
            self.daily.add("churned", _first(when), gone.size)

    def _lapsing_now(self, rows: I64, now: Times) -> I64:
        """Rows whose recency has just crossed the lapse threshold: flagged, logged and returned."""
        pop = self.pop
        threshold = self.scenario.sessions.lapse_after_days * HOURS_PER_DAY
        is_lapsing = (now - pop.last_order_at[rows] >= threshold) & ~pop.lapsing_flagged[rows]
        ids = rows[is_lapsing]
        if ids.size:
            pop.lapsing_flagged[ids] = True
            self.log.record("lapsing", _at(now, is_lapsing), ids)
        return ids

    # ---- sessions -------------------------------------------------------------------------------
    def _visit_probability(self, rows: slice | I64, now: Times, frustration: F64 | None = None) -> F64:
        """Today's session probability: the calibrated base moved by streaks and the goal gradient.

        ``frustration`` replaces the rows' own (a journey looks ahead over quiet days with it).
        """
        pop, mech = self.pop, self.scenario.mechanisms
        multiplier = visit_hazard_multiplier(
            pop.streak_days[rows],
            pop.frustration[rows] if frustration is None else frustration,
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
        if np.ndim(season) or season != 1.0:
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

    @overload
    def season_multiplier(self, now: float) -> float: ...
    @overload
    def season_multiplier(self, now: F64) -> F64: ...
    def season_multiplier(self, now: Times) -> F64 | float:
        """Visit-hazard multiplier of the seasonal peaks covering the day of ``now`` (per row)."""
        day = np.minimum(np.floor(np.asarray(now) / HOURS_PER_DAY).astype(np.int64), self.horizon_days)
        if np.ndim(day) == 0:
            return float(self._season_by_day[int(day)])
        return self._season_by_day[day]

    def _active_streak_bonus(self, rows: slice | I64, now: Times) -> NDArray[np.bool_]:
        """Shoppers holding an unexpired streak bonus."""
        pop = self.pop
        kind = self.catalog.kind[pop.offer[rows]]
        return (kind == KIND_CODES["streak_bonus"]) & (pop.offer_expires_at[rows] >= now)

    def _visit(self, shoppers: I64, times: F64) -> None:
        """Record sessions and update the daily-visit streaks."""
        pop = self.pop
        day = np.floor(times / HOURS_PER_DAY).astype(np.int64)
        continued = pop.last_visit_day[shoppers] == day - 1
        pop.streak_days[shoppers] = np.where(continued, pop.streak_days[shoppers] + 1, 1)
        pop.last_visit_day[shoppers] = day
        pop.visits[shoppers] += 1
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

    # ---- carts and checkout -----------------------------------------------------------------
    def _fill_carts(self, visitors: I64, times: F64) -> tuple[I64, F64, I64, NDArray[np.bool_]]:
        """Visitors who fill a cart check out or abandon it; returns the abandoned carts.

        Returns (shoppers, times, cart ids, bestseller badge) of the abandoned carts, their
        ``cart_expires_at`` set; a driver poses the abandonment decision and starts the timer.
        """
        day, pop = self._day, self.pop
        assert day is not None
        has_cart = day.u_cart[visitors] < self._cart_probability(visitors, times)
        shoppers, times = visitors[has_cart], times[has_cart]
        none = (shoppers[:0], times[:0], shoppers[:0], np.zeros(0, dtype=np.bool_))
        if shoppers.size == 0:
            return none
        basket = self._basket(shoppers)
        category = self._categories(day.u_category[shoppers])
        cart_ids = np.arange(self._next_cart_id, self._next_cart_id + shoppers.size, dtype=np.int64)
        self._next_cart_id += shoppers.size
        pop.cart_id[shoppers] = cart_ids
        pop.cart_value[shoppers] = basket
        pop.cart_category[shoppers] = category
        pop.carts[shoppers] += 1
        self.log.record("cart", times, shoppers, amount=basket, detail=category)
        self.daily.add("carts", times[0], shoppers.size)

        badge = day.u_bestseller[shoppers] < self.scenario.mechanisms.social.bestseller_share
        bought = self._checkout(shoppers, times, basket, category, day.u_checkout[shoppers], badge)
        abandoned = ~bought
        if not abandoned.any():
            return none
        ids = shoppers[abandoned]
        pop.cart_expires_at[ids] = times[abandoned] + self.scenario.sessions.cart_recovery_hours
        pop.carts_abandoned[ids] += 1
        self.log.record("abandon", times[abandoned], ids, amount=basket[abandoned])
        self.daily.add("abandoned", times[0], ids.size)
        return ids, times[abandoned], cart_ids[abandoned], badge[abandoned]

    def _cart_return(
        self,
        shoppers: I64,
        cart_ids: I64,
        badge: NDArray[np.bool_],
        u_return: F64,
        u_reconsider: F64,
        now: Times,
    ) -> None:
        """The cart-abandonment timer rang: returning shoppers decide again, other carts are lost."""
        pop = self.pop
        still_open = pop.cart_id[shoppers] == cart_ids  # not replaced by a newer cart, not bought
        shoppers, badge = shoppers[still_open], badge[still_open]
        now = _at(now, still_open)
        basket, category = pop.cart_value[shoppers], pop.cart_category[shoppers]
        back = pop.alive[shoppers] & (u_return[still_open] < self.scenario.sessions.cart_return_rate)
        bought = np.zeros(shoppers.size, dtype=bool)
        if back.any():
            bought[back] = self._checkout(
                shoppers[back],
                _at(now, back),
                basket[back],
                category[back],
                u_reconsider[still_open][back],
                badge[back],
            )
            pop.carts_recovered[shoppers[bought]] += 1
            self.daily.add("recovered", _first(now), float(bought.sum()))
        lost = shoppers[~bought]
        pop.cart_id[lost] = -1
        pop.cart_value[lost] = 0.0
        self.log.record("cart_lost", _at(now, ~bought), lost, amount=basket[~bought])

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
            self._basket_gamma(shoppers) / pop.spend_nu[shoppers] * self.scenario.catalog.price_index,
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

    # ---- orders -------------------------------------------------------------------------------
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
        signal = self._neighbour_signal(shoppers) if social.proof_weight > 0 else np.zeros(shoppers.size)
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
        self._dispatch(ids)
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

    def _apply_decision(
        self, kind: DecisionKind, shoppers: I64, incentive_ids: NDArray[np.int16], at: F64
    ) -> NDArray[np.int16]:
        """Give the incentives chosen at a decision point; a lapsing shopper reached may come back.

        ``at`` holds each shopper's own moment (her session, abandonment or lapse); the incentive
        is given and starts its validity then. Returns the ids actually given (0 where refused).
        """
        was_alive = self.pop.alive[shoppers]
        given = self._give(shoppers, incentive_ids, at)
        if kind == "lapsing":  # a refused (ineligible) incentive reaches no one
            reached = (given > 0) & ~was_alive
            self._win_back(shoppers[reached], given[reached], at[reached])
        return given

    def _win_back(self, shoppers: I64, offers: NDArray[np.int16], now: F64) -> None:
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
        is_back = day.u_winback[shoppers] < chance
        back = shoppers[is_back]
        if back.size:
            pop.alive[back] = True
            pop.churned_at[back] = np.nan
            pop.hazard[back] = 0.0  # a new relationship: her hazard clock starts again
            self.log.record("winback", now[is_back], back)
            self.daily.add("won_back", float(now[0]), back.size)

    def _contact(self, shoppers: I64, now: F64) -> None:
        """Being contacted drives some shoppers away (sleeping dogs; Ascarza et al. 2016)."""
        pop = self.pop
        churn = pop.contact_churn[shoppers]
        is_touched = (churn > 0) & pop.alive[shoppers]
        touched = shoppers[is_touched]
        if touched.size:
            np.add.at(pop.hazard, touched, lump_hazard(pop.contact_churn[touched]))
            self.end_lives(touched, now[is_touched])

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
            np.add.at(pop.ineligible_offers, shoppers[~eligible], 1)
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
            self._invite(shoppers[referral], incentive_ids[referral], at[referral])
        ids, offer = shoppers[given], incentive_ids[given]
        self._contact(ids, at[given])
        offers = ~(freeze | referral)[given]  # acted on at once, not held as an offer
        pop.offer[ids[offers]] = offer[offers]
        pop.offer_expires_at[ids[offers]] = (at[given] + self.catalog.valid_hours[offer])[offers]
        pop.incentives_received[ids] += 1
        self.log.record("incentive_offered", at[given], ids, incentive=offer)
        return incentive_ids

    # ---- deliveries and returns -------------------------------------------------------------
    def _delivered(self, order_ids: I64, now: Times) -> NDArray[np.bool_]:
        """Parcels arrive: a late one marks her (she may quit); returns which ones she sends back."""
        cols, pop = self.orders.cols, self.pop
        cols["delivered_at"][order_ids] = now
        late = now > cols["promised_at"][order_ids]
        cols["late"][order_ids] = late
        shoppers = cols["shopper"][order_ids]
        np.add.at(pop.deliveries, shoppers, 1)
        np.add.at(pop.late_deliveries, shoppers, late.astype(np.int64))
        pop.last_delivery_late[shoppers] = late
        self.daily.add("deliveries", _first(now), order_ids.size)
        self.daily.add("late_deliveries", _first(now), float(late.sum()))
        self.log.record("deliver", now, shoppers, order_id=order_ids, detail=late.astype(np.int16))
        hazard = self.scenario.mechanisms.churn.late_delivery_churn
        late_alive = late & pop.alive[shoppers]
        if hazard > 0 and late_alive.any():  # a late delivery can end her relationship
            quitting = shoppers[late_alive]
            np.add.at(pop.hazard, quitting, float(lump_hazard(hazard)))
            self.end_lives(quitting, _at(now, late_alive))
        rate = self._return_rate[cols["category"][order_ids]] * np.where(pop.abuser[shoppers], 2.0, 1.0)
        returned = cols["u_return"][order_ids] < np.minimum(rate, 1.0)
        cols["returned"][order_ids[returned]] = True
        return returned

    def _returned(self, order_ids: I64, now: Times) -> None:
        """Returned parcels arrive: refund, handling and restock are booked; points are taken back."""
        cols, params, pop = self.orders.cols, self.scenario.returns, self.pop
        refund = cols["list_cents"][order_ids] - cols["discount_cents"][order_ids]
        restock = np.rint(params.restock_share * cols["cogs_cents"][order_ids]).astype(np.int64)
        cost = refund + to_cents(params.handling_cost) - restock
        shoppers = cols["shopper"][order_ids]
        self.ledger.book(RETURNS, shoppers, cost, now)
        np.subtract.at(pop.points, shoppers, cols["points_earned"][order_ids])
        np.add.at(pop.returns, shoppers, 1)
        pop.points[shoppers] = np.maximum(pop.points[shoppers], 0)  # the points are spent already
        self.daily.add("returns", _first(now), order_ids.size)
        self.log.record("return", now, shoppers, order_id=order_ids, amount=refund / 100.0)
