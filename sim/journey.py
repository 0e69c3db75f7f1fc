"""One shopper's life on a SimPy clock: the scalar simulation behind ``shopgym/ShopperJourney-v0``.

Scenario: a shopper is acquired (with her first, "trial" order when the scenario says so) and
lives until she churns or the horizon ends. Her traits are drawn exactly as the population
engine draws them (:func:`sim.population.draw_shoppers` for one shopper), so episodes differ
the way shoppers do. Each day she starts a session with her calibrated visit probability,
moved by streaks, streak bonuses, seasonal peaks, the tier goal gradient and a coming tier
downgrade; a session may fill a cart, whose checkout is the engine's logit with the reference
price, loss aversion, the shipping fee and threshold, points and the active offer. Abandoned
carts start a cart-abandonment timer after which she may come back and decide again. Orders
are delivered (late or not), may be returned, and after each repeat order she may drop out
(BG/NBD, moved by deliveries, streak frustration and tier perks); a late delivery can end her
relationship at once. Decision points (login, cart abandoned, lapsing) hand control to a
driver, which gives an incentive.

Same model, scalar arithmetic: the population engine (:mod:`sim.engine`) updates arrays of
shoppers per event; for one shopper numpy's per-call overhead would dominate, so this module
uses Python floats and ``math`` with *scalar twins* of the mechanism functions of
:mod:`sim.mechanisms`, :mod:`sim.behaviour` and :mod:`sim.economics` (the functions ending in
``_scalar`` below). ``tests/sim/envs/test_journey.py`` checks each twin equals its vectorized
original on random inputs. Randomness comes from one ``np.random.Generator``, read in blocks.

Idle days are skipped: while her visit probability is constant (or only rising, as streak
frustration fades) the next session day is drawn from the geometric distribution, with a
thinning step for the rising case, so a step costs O(1) whatever the gap between sessions.
The days between two changes of her state are independent Bernoulli trials, so draws made
ahead are exact; when another event changes her state (a recovered cart's order, a churn
at delivery) the shopper process is interrupted and plans again from the next day.

Her life is one SimPy process and referral payouts another; one-shot timers (a cart's
abandonment timer, a parcel's delivery and return) are ``Timeout`` events with a callback,
which costs one event each instead of a process's three (start, timeout, end). The step
path is written for a training loop, where it runs cache-cold between policy updates:
``__slots__``, scenario constants read once into :class:`JourneyModel`, few calls per step
(``shopgym bench envs`` measures the share of PPO's wall time).

A one-shopper world differs from the population engine where other shoppers matter; each
difference is documented on :class:`Journey` (no warehouse queue, a constant neighbour signal,
no tier inflation, referred friends not simulated, no session batches).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import simpy
from numpy.typing import NDArray
from scipy import special

from sim.behaviour import checkout_probability, expected_orders_per_cart, logit, shipping_fee
from sim.economics import daily_discount_rate
from sim.fulfillment import promised_by_hours
from sim.incentives import KIND_CODES, IncentiveCatalog
from sim.mechanisms.affinity import TYPE_COLUMN
from sim.oracle import TrueState
from sim.params import DecisionKind, LogNormalTrait, Scenario
from sim.population import (
    DAYS_PER_WEEK,
    HOURS_PER_DAY,
    attrition_traits,
    basket_quantiles,
    uplift_class_of,
)

_BLOCK = 256
_NO_OFFER = 0
_K = KIND_CODES
_STREAK_BONUS = KIND_CODES["streak_bonus"]


# ---- scalar twins of the vectorized mechanisms (each tested against its original) ------------
def prospect_value_scalar(x: float, loss_aversion: float, alpha: float, beta: float) -> float:
    """Twin of :func:`sim.mechanisms.prospect.prospect_value` for one outcome."""
    if x >= 0.0:
        return float(x**alpha)
    return -loss_aversion * (-x) ** beta


def framed_offer_pull_scalar(
    value_dollars: float, loss_framed: bool, loss_aversion: float, alpha: float, beta: float
) -> float:
    """Twin of :func:`sim.mechanisms.prospect.framed_offer_pull` for one offer."""
    if loss_framed:
        return -prospect_value_scalar(-value_dollars, loss_aversion, alpha, beta)
    return prospect_value_scalar(value_dollars, 1.0, alpha, beta)


def loss_weight_scalar(
    length: float, cap_days: float, min_days: int, loss_aversion: float, alpha: float, beta: float
) -> float:
    """Twin of :func:`sim.mechanisms.streaks.loss_weight` for one streak."""
    counted = min(length, cap_days) if length >= min_days else 0.0
    return -prospect_value_scalar(-counted / cap_days, loss_aversion, alpha, beta)


def visit_hazard_multiplier_scalar(
    streak: int,
    frustration: float,
    streak_sensitivity: float,
    loss_aversion: float,
    weight: float,
    cap_days: float,
    min_days: int,
    alpha: float,
    beta: float,
) -> float:
    """Twin of :func:`sim.mechanisms.streaks.visit_hazard_multiplier` for one shopper."""
    exponent = -frustration
    if weight > 0 and streak >= min_days:
        pull = loss_weight_scalar(float(streak), cap_days, min_days, loss_aversion, alpha, beta)
        exponent += weight * streak_sensitivity * pull
    return math.exp(exponent)


def visit_probability_scalar(base_visit_prob: float, multiplier: float) -> float:
    """Today's session probability: the base daily probability's hazard times ``multiplier``.

    Twin of the last line of :meth:`sim.engine.Simulation._visit_probability`.
    """
    return -math.expm1(multiplier * math.log1p(-min(base_visit_prob, 1.0 - 1e-12)))


def tier_of_scalar(spend: float, thresholds: Sequence[float]) -> int:
    """Twin of :func:`sim.mechanisms.tiers.tier_of` for one spend."""
    return bisect_right(thresholds, spend) - 1


def tier_progress_scalar(spend: float, tier: int, thresholds: Sequence[float]) -> float:
    """Twin of :func:`sim.mechanisms.tiers.tier_progress` for one shopper."""
    top = len(thresholds) - 1
    if tier >= top:
        return 0.0
    lower, upper = thresholds[tier], thresholds[tier + 1]
    return min(max((spend - lower) / (upper - lower), 0.0), 1.0)


def downgrade_threat_scalar(
    tier: int, qualifying_tier: int, loss_aversion: float, top_tier: int, weight: float, beta: float
) -> float:
    """Twin of :func:`sim.mechanisms.tiers.downgrade_threat_multiplier` inside the warning window."""
    levels_lost = max(tier - qualifying_tier, 0) / max(top_tier, 1)
    return math.exp(weight * loss_aversion * levels_lost**beta)


def perk_dropout_relief_scalar(
    tier: int, share_at_or_above: Sequence[float], top_tier: int, relief: float, inflation: float
) -> float:
    """Twin of :func:`sim.mechanisms.tiers.perk_dropout_relief` for one shopper."""
    if top_tier == 0:
        return 0.0
    worth = min(max(1.0 - inflation * share_at_or_above[tier], 0.0), 1.0)
    return relief * tier / top_tier * worth


def dropout_probability_scalar(
    base: float,
    last_delivery_late: bool,
    delivered_before: bool,
    frustration: float,
    late_multiplier: float,
    on_time_relief: float,
    frustration_weight: float,
) -> float:
    """Twin of :func:`sim.mechanisms.churn.dropout_probability` for one shopper."""
    on_time = delivered_before and not last_delivery_late
    factor = (1.0 + late_multiplier * last_delivery_late) * (1.0 - on_time_relief * on_time)
    return min(1.0, base * factor * (1.0 + frustration_weight * frustration))


def checkout_probability_scalar(
    base_logit: float, price_sensitivity: float, pay: float, reference: float, loss_aversion: float
) -> float:
    """Twin of :func:`sim.behaviour.checkout_probability` for one cart."""
    gap = (pay - reference) / reference
    weighted = loss_aversion * gap if gap > 0.0 else gap
    z = price_sensitivity * weighted - base_logit
    return 0.0 if z > 700.0 else 1.0 / (1.0 + math.exp(z))


def social_logit_lift_scalar(
    signal: float,
    susceptibility: float,
    badge: bool,
    mean_susceptibility: float,
    proof_weight: float,
    saturation: float,
    bestseller_lift: float,
) -> float:
    """Twin of :func:`sim.mechanisms.social.social_logit_lift` for one cart."""
    proof = proof_weight * susceptibility * -math.expm1(-signal / saturation)
    return proof + bestseller_lift * badge * susceptibility / mean_susceptibility


def topped_up_basket_scalar(
    basket: float,
    u: float,
    fee: float,
    threshold: float,
    topup_prob: float,
    max_gap_fee_multiple: float,
    overshoot_max: float,
) -> float:
    """Twin of :func:`sim.mechanisms.shipping_threshold.topped_up_basket` for one cart."""
    gap = threshold - basket
    if fee > 0.0 and 0.0 < gap <= max_gap_fee_multiple * fee and u < topup_prob:
        return threshold + u / topup_prob * overshoot_max
    return basket


def hour_from_uniform_scalar(u: float, hour_cdf: Sequence[float]) -> float:
    """Twin of :func:`sim.behaviour.hours_from_uniform` for one uniform."""
    hour = min(max(bisect_right(hour_cdf, u) - 1, 0), 23)
    width = hour_cdf[hour + 1] - hour_cdf[hour]
    frac = (u - hour_cdf[hour]) / width if width > 0 else 0.0
    return hour + min(max(frac, 0.0), math.nextafter(1.0, 0.0))


def affinity_factor_scalar(affinity: Sequence[float], type_column: int, weight: float) -> float:
    """Twin of :func:`sim.mechanisms.affinity.affinity_factor` for one offer."""
    if type_column < 0:
        return 1.0
    return 1.0 + weight * (4.0 * float(affinity[type_column]) - 1.0)


def residual_value_scalar(
    purchase_rate_per_day: float,
    dropout_prob: float,
    hazard_per_day: float,
    order_margin: float,
    delta_per_day: float,
    age_days: float,
) -> float:
    """Twin of :func:`sim.economics.residual_value` for one alive shopper."""
    orders = purchase_rate_per_day / (delta_per_day + purchase_rate_per_day * dropout_prob + hazard_per_day)
    return orders * order_margin * math.exp(-delta_per_day * age_days)


def experience_multiplier_scalar(
    last_delivery_late: bool,
    delivered_before: bool,
    late_multiplier: float,
    on_time_relief: float,
) -> float:
    """Twin of :func:`sim.mechanisms.churn.experience_multiplier` without frustration (a rate, Pareto/NBD)."""
    if last_delivery_late:
        return 1.0 + late_multiplier
    return 1.0 - on_time_relief if delivered_before else 1.0


def lump_hazard_scalar(probability: float) -> float:
    """Twin of :func:`sim.mechanisms.churn.lump_hazard`."""
    return math.inf if probability >= 1.0 else -math.log1p(-probability)


def winback_probability_scalar(value: float, sensitivity: float, ceiling: float, scale: float) -> float:
    """Twin of :func:`sim.mechanisms.churn.winback_probability`."""
    return ceiling * -math.expm1(-max(value, 0.0) * sensitivity / scale)


def need_factor_scalar(age_days: float, rate_per_day: float, depletion: float, restock_days: float) -> float:
    """Twin of :func:`sim.mechanisms.need.need_factor`."""
    x = rate_per_day * restock_days
    norm = 1.0 - depletion * x / (1.0 + x)
    return (1.0 - depletion * math.exp(-max(age_days, 0.0) / restock_days)) / norm


def faded_scalar(value: float, target: float, half_life_days: float, days: float) -> float:
    """Twin of :func:`sim.mechanisms.reference_price.faded`."""
    return target + (value - target) * 2.0 ** (-days / half_life_days)


class OfferTerms(NamedTuple):
    """What one active offer changes at checkout (twin of one row of :class:`sim.incentives.Terms`)."""

    discount: float
    free_shipping: bool
    points_multiplier: float
    bonus_points: int
    loss_framed: bool
    hedonic_value: float
    type_column: int
    applies: bool


def offer_terms_scalar(model: JourneyModel, offer: int, basket: float) -> OfferTerms:
    """Twin of :meth:`sim.incentives.IncentiveCatalog.terms` for one cart (the model's catalogue)."""
    kind, value = model.kind[offer], model.value[offer]
    eligible = basket >= model.min_basket[offer]
    discount = 0.0
    if eligible and kind == _K["coupon_pct"]:
        discount = value * basket
    elif eligible and kind == _K["coupon_fixed"]:
        discount = min(value, basket)
    points_offer = eligible and kind in (_K["points_bonus"], _K["expiring_points"])
    return OfferTerms(
        discount=discount,
        free_shipping=eligible and kind == _K["free_shipping"],
        points_multiplier=value if eligible and kind == _K["points_multiplier"] else 1.0,
        bonus_points=int(value) if points_offer else 0,
        loss_framed=eligible and kind == _K["expiring_points"],
        hedonic_value=value if eligible and kind in (_K["tier_perk"], _K["surprise_box"]) else 0.0,
        type_column=model.type_column[offer] if eligible else -1,
        applies=eligible and kind not in (_K["none"], _K["streak_bonus"]),
    )


_NO_TERMS = OfferTerms(0.0, False, 1.0, 0, False, 0.0, -1, False)


# ---- the scenario's constants and one shopper's traits ----------------------------------------
class JourneyModel:
    """A scenario's constants as Python values, computed once and shared by every journey."""

    def __init__(self, scenario: Scenario) -> None:
        sc = self.scenario = scenario
        self.catalog = IncentiveCatalog(scenario)
        self.kind = [int(k) for k in self.catalog.kind]
        self.value = [float(v) for v in self.catalog.value]
        self.valid_hours = [float(v) for v in self.catalog.valid_hours]
        self.min_basket = [float(v) for v in self.catalog.min_basket]
        self.type_column = [int(t) for t in self.catalog.type_column]
        self.base_logit = logit(sc.sessions.checkout_conversion_at_reference)
        cumulative = np.cumsum(sc.sessions.hour_weights) / sum(sc.sessions.hour_weights)
        self.hour_cdf = [0.0, *(float(c) for c in cumulative)]
        cats = sc.catalog.categories
        self.category_cdf = [float(c) for c in np.cumsum([c.share for c in cats])]
        self.cogs_ratio = [c.cogs_ratio for c in cats]
        self.return_rate = [c.return_rate for c in cats]
        self.thresholds = [float(t) for t in sc.loyalty.tier_thresholds]
        self.top_tier = len(self.thresholds) - 1
        # No other shoppers: tier 0 holds everyone, no one fills the tiers above (no inflation).
        self.tier_share = [1.0] + [0.0] * self.top_tier
        self.delta_per_day = daily_discount_rate(sc.economics.annual_discount_rate)
        self.frustration_decay = 0.5 ** (1.0 / sc.mechanisms.streaks.frustration_half_life_days)
        susceptibility = sc.population.social_susceptibility
        self.mean_susceptibility = susceptibility.a / (susceptibility.a + susceptibility.b)
        peaks = sc.sessions.peaks
        self.season_changes = sorted({p.start_day for p in peaks} | {p.start_day + p.days for p in peaks})
        #: (first day, end day, visit multiplier) of each peak.
        self.peaks = tuple((p.start_day, p.start_day + p.days, p.visit_multiplier) for p in peaks)
        # Hot-path constants as plain values (read once per step; see Journey._life).
        streaks, tiers = sc.mechanisms.streaks, sc.mechanisms.tiers
        self.streaks_break = streaks.missed_day_rule != "freeze"
        self.streak_min_days = streaks.min_days
        self.goal_gradient = tiers.goal_gradient
        self.downgrade_weight = tiers.downgrade_weight
        self.downgrade_warning_hours = tiers.downgrade_warning_days * HOURS_PER_DAY
        self.lapse_hours = sc.sessions.lapse_after_days * HOURS_PER_DAY
        self.basket_quantiles = basket_quantiles(sc.population.spend.p)
        share = np.array([c.share for c in cats])
        self.mean_cogs = float(share @ np.array([c.cogs_ratio for c in cats]))
        self.mean_return = float(share @ np.array([c.return_rate for c in cats]))
        self.mean_return_cogs = float(share @ np.array([c.return_rate * c.cogs_ratio for c in cats]))


@dataclass(frozen=True)
class ShopperTraits:
    """One shopper's latent traits, as :func:`sim.population.draw_shoppers` draws them."""

    purchase_rate_per_day: float
    dropout_prob: float
    dropout_rate_per_day: float
    spend_nu: float
    loss_aversion: float
    price_sensitivity: float
    streak_sensitivity: float
    social_susceptibility: float
    referral_propensity: float
    affinity: tuple[float, float, float, float]
    abuser: bool
    uplift_class: int
    offer_response: float
    checkout_shift: float
    contact_churn: float
    winback_sensitivity: float
    lifetime_budget: float
    visit_prob: float
    cart_prob: float


def _lognormal_one(trait: LogNormalTrait, rng: np.random.Generator) -> float:
    if trait.cv == 0.0:
        return trait.mean
    sigma2 = math.log1p(trait.cv**2)
    return float(rng.lognormal(math.log(trait.mean) - sigma2 / 2.0, math.sqrt(sigma2), 1)[0])


def draw_traits(model: JourneyModel, rng: np.random.Generator) -> ShopperTraits:
    """One shopper's traits: the same draws, in the same order, as ``draw_shoppers`` for one shopper.

    Faster than calling it for one row (the basket quadrature is computed once per scenario);
    a test checks both give the same traits from the same generator state.
    """
    pop = model.scenario.population
    rate_per_week = float(rng.gamma(pop.purchase.r, 1.0 / pop.purchase.alpha_weeks, 1)[0])
    dropouts, dropout_rates = attrition_traits(model.scenario, rng, 1)
    dropout, dropout_rate_per_week = float(dropouts[0]), float(dropout_rates[0])
    nu = float(rng.gamma(pop.spend.q, 1.0 / pop.spend.gamma, 1)[0])
    loss_aversion = _lognormal_one(pop.loss_aversion, rng)
    price_sensitivity = _lognormal_one(pop.price_sensitivity, rng)
    streak_sensitivity = _lognormal_one(pop.streak_sensitivity, rng)
    susceptibility = float(rng.beta(pop.social_susceptibility.a, pop.social_susceptibility.b, 1)[0])
    referral = float(rng.beta(pop.referral_propensity.a, pop.referral_propensity.b, 1)[0])
    a = pop.affinity
    drawn = rng.dirichlet([a.hedonic, a.utilitarian, a.social, a.surprise], 1).astype(np.float32)[0]
    affinity = (float(drawn[0]), float(drawn[1]), float(drawn[2]), float(drawn[3]))
    abuser = bool(rng.random(1)[0] < pop.abuser_share)
    uplift = int(uplift_class_of(model.scenario, rng.random(1))[0])
    winback = _lognormal_one(pop.winback_sensitivity, rng)
    budget = float(rng.standard_exponential(1)[0])
    group = pop.uplift.classes()[uplift]
    rate_per_day = rate_per_week / DAYS_PER_WEEK
    visit_prob, cart_prob = calibrate_one(
        model, rate_per_day, nu, price_sensitivity, loss_aversion, group.checkout_logit_shift
    )
    return ShopperTraits(
        rate_per_day,
        dropout,
        dropout_rate_per_week / DAYS_PER_WEEK,
        nu,
        loss_aversion,
        price_sensitivity,
        streak_sensitivity,
        susceptibility,
        referral,
        affinity,
        abuser,
        uplift,
        group.offer_response,
        group.checkout_logit_shift,
        group.contact_churn,
        winback,
        budget,
        visit_prob,
        cart_prob,
    )


def calibrate_one(
    model: JourneyModel,
    rate_per_day: float,
    nu: float,
    price_sensitivity: float,
    loss_aversion: float,
    checkout_shift: float,
) -> tuple[float, float]:
    """Twin of :func:`sim.population.calibrate_session_rates` for one shopper."""
    sc = model.scenario
    s = sc.sessions
    baskets = model.basket_quantiles / nu
    pay = baskets + shipping_fee(baskets, sc.shipping.fee, sc.shipping.free_threshold)
    checkout = checkout_probability(
        model.base_logit + checkout_shift, np.array(price_sensitivity), pay, baskets, loss_aversion
    )
    carts_per_day = rate_per_day / max(
        float(expected_orders_per_cart(checkout.mean(), s.cart_return_rate)), 1e-12
    )
    visit_prob = -math.expm1(-carts_per_day / s.add_to_cart_rate)
    return visit_prob, min(1.0, carts_per_day / max(visit_prob, 1e-300))


def expected_order_margin_scalar(model: JourneyModel, spend_nu: float) -> float:
    """Twin of :func:`sim.economics.expected_order_margin` for one shopper."""
    sc = model.scenario
    ship, loyalty, returns = sc.shipping, sc.loyalty, sc.returns
    p = sc.population.spend.p
    spend = p / spend_nu
    p_below = float(special.gammainc(p, ship.free_threshold * spend_nu))
    points_cost = loyalty.points_per_dollar * loyalty.point_value
    return (
        spend * (1.0 - model.mean_cogs - points_cost)
        + ship.fee * p_below
        - ship.carrier_cost_per_order
        - model.mean_return * (spend + returns.handling_cost)
        + returns.restock_share * model.mean_return_cogs * spend
    )


# ---- the simulation -------------------------------------------------------------------------
class Parcel(NamedTuple):
    """An order on its way: what its delivery and a possible return need to know."""

    placed_at: float
    due: float
    category: int
    list_cents: int
    discount_cents: int
    cogs_cents: int
    points_earned: int


class Decision(NamedTuple):
    """The shopper at a decision point, awaiting an incentive."""

    kind: DecisionKind
    time_hours: float


class Journey:
    """One shopper's life from acquisition to churn or the horizon, on its own SimPy clock.

    Drive it like the engine: ``while (d := journey.next_decision()) is not None:
    journey.submit(incentive_id)``. Where the one-shopper world differs from the population
    engine:

    * **Deliveries without a warehouse queue.** An order follows the scenario's delivery
      schedule as if the warehouse never backed up: it reaches the warehouse at the end of its
      session batch (``engine.session_batch_hours``; recovered carts at once), is picked by
      the next wave, leaves at the next carrier cut-off and arrives after the base transit and
      jitter days at the delivery hour. The promise is a date that the default schedule keeps
      (:func:`sim.fulfillment.promised_by_hours`): lateness comes from load, and one shopper
      is no load, so her deliveries are on time.
    * **Social proof from a constant neighbour signal** (``neighbour_signal`` recent neighbour
      purchases; the population engine's default shop averages about 1). The bestseller badge
      is scaled by the population mean of social susceptibility (the Beta mean).
    * **No tier inflation**: no other shoppers fill the tiers, so a perk keeps its full worth.
    * **Referred friends are not simulated.** A referral bonus makes her invite friends as in
      :mod:`sim.mechanisms.referral`; each friend's first order is drawn (Gamma-Gamma, topped
      up), and the bonus cost is booked on her ledger the day after, when that order reaches
      the anti-fraud floor (abusers' fake accounts too). The friends' own margin is not hers,
      so here a referral shows only its cost.
    * **No session batches**: decisions happen at the session's own time.
    * **Churn and win-back**: a churned shopper still reaches her lapsing decision, where an
      incentive brings her back with ``mechanisms.churn.winback_rate`` (as in the engine).
      The journey ends at churn unless such a win-back point lies ahead within the horizon;
      it then ends there if she is not won back.
    """

    __slots__ = (
        "_answer",
        "_badge_lift",
        "_cart_id",
        "_decides_at_abandonment",
        "_decides_at_login",
        "_frustration",
        "_frustration_day",
        "_gammas",
        "_hazard",
        "_hazard_day",
        "_kind",
        "_lumps",
        "_mech",
        "_pareto",
        "_pending",
        "_price_index",
        "_process",
        "_proof",
        "_rate_per_hour",
        "_replan_day",
        "_sleeping_until_day",
        "_streak_args",
        "_u",
        "_value",
        "abandoned",
        "acquired_at",
        "affinity",
        "alive",
        "cart_prob",
        "cart_value",
        "carts",
        "catalog",
        "churned_at",
        "cogs_cents",
        "decision_kinds",
        "deliveries",
        "done",
        "end_hours",
        "env",
        "friends_referred",
        "horizon_days",
        "horizon_hours",
        "incentive_cents",
        "incentives_received",
        "ineligible_offers",
        "invites_sent",
        "lapsing_flagged",
        "last_delivery_late",
        "last_order_at",
        "last_visit_day",
        "late_deliveries",
        "loss_aversion",
        "margin_pv",
        "model",
        "monetary",
        "offer",
        "offer_expires_at",
        "order_margin",
        "orders",
        "points",
        "price_sensitivity",
        "promo_share",
        "qualifying_spend",
        "qualifying_tier",
        "recovered",
        "reference_day",
        "reference_ratio",
        "referral_cost_cents",
        "requalify_at",
        "returns",
        "returns_cents",
        "revenue_cents",
        "rng",
        "scenario",
        "shipping_cents",
        "spend_nu",
        "spend_p",
        "streak_days",
        "streak_freezes",
        "streak_sensitivity",
        "terminated",
        "tier",
        "traits",
        "visits",
    )

    def __init__(
        self,
        model: JourneyModel,
        rng: np.random.Generator,
        horizon_days: int,
        decision_kinds: frozenset[str],
        neighbour_signal: float,
    ) -> None:
        if horizon_days < 1:
            raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
        self.model = model
        self.scenario = sc = model.scenario
        self.catalog = model.catalog
        self.rng = rng
        self.horizon_days = horizon_days
        self.horizon_hours = horizon_days * HOURS_PER_DAY
        self.decision_kinds = decision_kinds
        self._u: list[float] = []
        self._gammas: list[float] = []
        mech = self._mech = sc.mechanisms
        self._kind, self._value = model.kind, model.value

        # --- the shopper: traits drawn as the population engine draws them -----------------
        acquired_at = float(rng.random()) * HOURS_PER_DAY if sc.population.acquisition_days > 0 else 0.0
        traits = self.traits = draw_traits(model, rng)  # the simulator's truth, never observed
        self.acquired_at = acquired_at
        self.spend_p = sc.population.spend.p
        self.spend_nu = traits.spend_nu
        self.loss_aversion = traits.loss_aversion
        self.price_sensitivity = traits.price_sensitivity
        self.streak_sensitivity = traits.streak_sensitivity
        self.affinity = traits.affinity
        self.cart_prob = traits.cart_prob
        self.order_margin = expected_order_margin_scalar(model, traits.spend_nu)
        self._pareto = sc.population.attrition == "pareto_nbd"
        self._price_index = sc.catalog.price_index
        self._rate_per_hour = model.delta_per_day / HOURS_PER_DAY
        streaks, prospect = mech.streaks, mech.prospect
        #: visit_hazard_multiplier_scalar's arguments after (streak, frustration): hers and the scenario's.
        self._streak_args = (
            traits.streak_sensitivity,
            traits.loss_aversion,
            streaks.weight,
            streaks.cap_days,
            streaks.min_days,
            prospect.alpha,
            prospect.beta,
        )
        self._decides_at_login = "login" in decision_kinds
        self._decides_at_abandonment = "cart_abandoned" in decision_kinds
        social = mech.social
        self._proof = social_logit_lift_scalar(
            neighbour_signal,
            traits.social_susceptibility,
            False,
            model.mean_susceptibility,
            social.proof_weight,
            social.saturation,
            social.bestseller_lift,
        )
        self._badge_lift = (
            social_logit_lift_scalar(
                neighbour_signal,
                traits.social_susceptibility,
                True,
                model.mean_susceptibility,
                social.proof_weight,
                social.saturation,
                social.bestseller_lift,
            )
            - self._proof
        )

        # --- observable state -------------------------------------------------------------------
        self.alive = True
        self.churned_at = math.nan
        self.last_order_at = acquired_at
        self.last_visit_day = -10
        self.orders = 0
        self.monetary = 0.0
        self.points = 0
        self.tier = 0
        self.streak_days = 0
        self.streak_freezes = 0
        self.cart_value = 0.0
        self._cart_id = -1
        self.deliveries = 0
        self.late_deliveries = 0
        self.last_delivery_late = False
        self.incentives_received = 0
        self.ineligible_offers = 0
        self.offer = _NO_OFFER
        self.offer_expires_at = -math.inf
        self.lapsing_flagged = False
        self.reference_ratio = 1.0  # as of the start of day reference_day
        self.promo_share = 0.0
        self.reference_day = 0
        # Pareto/NBD hazard: accumulated over the days before _hazard_day; lost streaks' lumps
        # wait in _lumps (day, hazard) until those days are accumulated.
        self._hazard = 0.0
        self._hazard_day = math.floor(acquired_at / HOURS_PER_DAY) + 1
        self._lumps: list[tuple[int, float]] = []
        self.qualifying_spend = 0.0
        self.qualifying_tier = 0
        self.requalify_at = acquired_at + mech.tiers.membership_days * HOURS_PER_DAY
        self._frustration = 0.0  # as of the start of day _frustration_day
        self._frustration_day = 0
        # --- ledger (int cents, as sim.economics.Ledger) and counters ----------------------------
        self.revenue_cents = self.cogs_cents = self.incentive_cents = 0
        self.shipping_cents = self.returns_cents = 0
        self.margin_pv = 0.0
        self.referral_cost_cents = 0
        self.visits = self.carts = self.abandoned = self.recovered = self.returns = 0
        self.friends_referred = 0
        self.invites_sent = 0

        # --- the clock ----------------------------------------------------------------------------
        self.env = simpy.Environment()
        self.done = False
        self.terminated = False  # ended by churn (else by the horizon)
        self.end_hours = math.nan
        self._pending: Decision | None = None
        self._answer: simpy.Event | None = None
        self._sleeping_until_day = -1  # the day the shopper process sleeps towards (-1: awake)
        self._replan_day = 0  # where to plan from after an interrupt
        self._process = self.env.process(self._life())

    # ---- driving ------------------------------------------------------------------------------
    def next_decision(self) -> Decision | None:
        """Run the clock to the next decision point; ``None`` once the journey has ended."""
        if self._pending is not None:
            return self._pending
        step = self.env.step
        while self._pending is None and not self.done:
            step()
        return self._pending

    def submit(self, incentive_id: int) -> None:
        """Give ``incentive_id`` (0 = none) at the pending decision point and resume the clock."""
        if self._pending is None or self._answer is None:
            raise RuntimeError("no decision is pending: call next_decision() first")
        if not 0 <= incentive_id < len(self._kind):
            raise ValueError(f"incentive id must be in [0, {len(self._kind) - 1}], got {incentive_id}")
        self._pending = None
        self._answer.succeed(incentive_id)

    @property
    def now_hours(self) -> float:
        """Current time in hours since the start of day 0 (the end time once the journey ended)."""
        return self.end_hours if self.done else float(self.env.now)

    def margin_cents(self) -> int:
        """Net margin so far, in cents (revenue minus the cost lines)."""
        return (
            self.revenue_cents
            - self.cogs_cents
            - self.incentive_cents
            - self.shipping_cents
            - self.returns_cents
        )

    def residual_value(self) -> float:
        """Expected discounted margin of her future orders from her true traits (0 once churned)."""
        if not self.alive:
            return 0.0
        traits, churn = self.traits, self._mech.churn
        hazard = traits.dropout_rate_per_day * experience_multiplier_scalar(
            self.last_delivery_late, self.deliveries > 0, churn.late_dropout_multiplier, churn.on_time_relief
        )
        return residual_value_scalar(
            traits.purchase_rate_per_day,
            traits.dropout_prob,
            hazard,
            self.order_margin,
            self.model.delta_per_day,
            (self.now_hours - self.acquired_at) / HOURS_PER_DAY,
        )

    def true_state(self) -> TrueState:
        """Her latent traits and hidden state now, as one-row arrays (for the privileged oracle only)."""
        traits, mech = self.traits, self._mech
        churn = mech.churn
        ratio, promo = self._reference_on(int(self.now_hours // HOURS_PER_DAY))
        hazard = traits.dropout_rate_per_day * experience_multiplier_scalar(
            self.last_delivery_late, self.deliveries > 0, churn.late_dropout_multiplier, churn.on_time_relief
        )

        def one(value: float) -> NDArray[np.float64]:
            return np.array([value], dtype=np.float64)

        return TrueState(
            alive=np.array([self.alive]),
            purchase_rate_per_day=one(traits.purchase_rate_per_day),
            dropout_prob=one(traits.dropout_prob),
            hazard_per_day=one(hazard),
            spend_nu=one(traits.spend_nu),
            loss_aversion=one(traits.loss_aversion),
            price_sensitivity=one(
                traits.price_sensitivity * (1.0 + mech.reference_price.promo_sensitivity * promo)
            ),
            checkout_shift=one(traits.checkout_shift),
            offer_response=one(traits.offer_response),
            contact_churn=one(traits.contact_churn),
            winback_sensitivity=one(traits.winback_sensitivity),
            affinity=np.array([traits.affinity], dtype=np.float32),
            reference_ratio=one(ratio),
            visit_prob=one(traits.visit_prob),
            cart_prob=one(traits.cart_prob),
            cart_value=one(self.cart_value),
            referral_propensity=one(traits.referral_propensity),
            invites_left=one(float(mech.referral.max_invites - self.invites_sent)),
        )

    # ---- Pareto/NBD attrition ---------------------------------------------------------------
    def _hazard_rate(self) -> float:
        """Her hazard per day in her present state (the engine's ``_attrition`` for one shopper)."""
        churn, tiers = self._mech.churn, self._mech.tiers
        relief = perk_dropout_relief_scalar(
            self.tier, self.model.tier_share, self.model.top_tier, tiers.perk_dropout_relief, tiers.inflation
        )
        experience = experience_multiplier_scalar(
            self.last_delivery_late, self.deliveries > 0, churn.late_dropout_multiplier, churn.on_time_relief
        )
        return self.traits.dropout_rate_per_day * experience * (1.0 - relief)

    def _accrue(self, to_day: int) -> None:
        """Accumulate her hazard over the days before ``to_day`` at the present rate, lumps included."""
        days = to_day - self._hazard_day
        if days <= 0:
            return
        self._hazard += self._hazard_rate() * days
        while self._lumps and self._lumps[0][0] < to_day:
            self._hazard += self._lumps.pop(0)[1]
        self._hazard_day = to_day

    def _churn_day(self, day: int) -> int:
        """The first day from ``day`` whose start finds her hazard at her budget (horizon if none)."""
        rate, hazard, start = self._hazard_rate(), self._hazard, self._hazard_day
        budget = self.traits.lifetime_budget
        for lump_day, lump in [*self._lumps, (self.horizon_days, 0.0)]:
            if rate > 0 and lump_day > start:  # the days before this lump at the present rate
                crossing = start - 1 + math.ceil((budget - hazard) / rate)
                if crossing < lump_day:
                    return max(crossing, day)
                hazard += rate * (lump_day - start)
                start = lump_day
            hazard += lump
            if hazard >= budget:
                return max(lump_day, day)
        return self.horizon_days

    def _experience_changes(self, t: float) -> None:
        """Before her experience changes at ``t``: accumulate her hazard through today at the old rate."""
        if self._pareto:
            self._accrue(math.floor(t / HOURS_PER_DAY) + 1)

    def _add_hazard(self, lump: float, t: float) -> None:
        """An event that can end the relationship at once: a lump of hazard, checked against her budget."""
        self._experience_changes(t)
        self._hazard += lump
        if self.alive and self._hazard >= self.traits.lifetime_budget:
            self._churn(t)

    def frustration_on(self, day: int) -> float:
        """Streak frustration after the start of ``day``'s fading."""
        if not self._frustration:  # the usual case: no broken streak to resent
            return 0.0
        return self._frustration * self.model.frustration_decay ** (day - self._frustration_day)

    def offer_active(self, now: float) -> bool:
        """Whether she holds an unexpired offer."""
        return self.offer != _NO_OFFER and self.offer_expires_at >= now

    def reseed(self, rng: np.random.Generator) -> None:
        """Draw the rest of her life from ``rng``: a counterfactual replicate (:mod:`sim.counterfactual`)."""
        self.rng = rng
        self._u, self._gammas = [], []

    # ---- random numbers ---------------------------------------------------------------------
    def _uniform(self) -> float:
        if not self._u:  # the next block, reversed: pop() then reads it in the generator's order
            self._u = self.rng.random(_BLOCK)[::-1].tolist()
        return self._u.pop()

    def _standard_gamma(self) -> float:
        if not self._gammas:
            self._gammas = self.rng.standard_gamma(self.spend_p, 64).tolist()
        return self._gammas.pop()

    # ---- the shopper process ----------------------------------------------------------------
    def _life(self) -> Generator[simpy.Event, Any, None]:
        env, sc = self.env, self.scenario
        if self.acquired_at > 0:
            yield env.timeout(self.acquired_at)
        if sc.population.first_order_at_acquisition:
            basket = self._basket(self._standard_gamma() / self.spend_nu)
            self._place_order(self.acquired_at, basket, self._category(), _NO_OFFER, 0, _NO_TERMS, True)
        day = int(self.acquired_at // HOURS_PER_DAY)
        hour_cdf = self.model.hour_cdf
        while not self.done:
            if day >= self.horizon_days:
                yield env.timeout(self.horizon_hours - env.now)
                self._finish(self.horizon_hours, terminated=False)
                return
            start = day * HOURS_PER_DAY
            if self.requalify_at <= start:  # a boundary day: wait for it, then requalify
                woke = yield from self._sleep_until(start, day)
                if not woke:
                    day = self._replan_day
                    continue
                if self._pareto:  # the days before keep the tier they had (its perk's relief)
                    self._accrue(day)
                self._requalify(start)
            if self.streak_days > 0 and self.last_visit_day < day - 1:
                self._settle_streak(day)
            if self._pareto and self.alive and self._churn_day(day) <= day:
                woke = yield from self._sleep_until(start, day)
                if not woke:
                    day = self._replan_day
                    continue
                self._accrue(day + 1)
                if self._hazard >= self.traits.lifetime_budget:  # her lifetime ends at this day's start
                    self._churn(start)
                    continue
            lapse_day = self._lapse_day()
            if lapse_day <= day:
                day = yield from self._lapsing_day(day)
                continue
            if not self.alive:  # churned, a win-back point ahead: go there
                day = lapse_day
                continue
            limit = self._window_end(day, lapse_day)
            session_day = self._draw_session_day(day, limit)
            if session_day is None:
                day = limit
                continue
            t = session_day * HOURS_PER_DAY + hour_from_uniform_scalar(self._uniform(), hour_cdf)
            if t <= self.acquired_at:  # the acquisition day: only sessions after acquisition count
                day = session_day + 1
                continue
            woke = yield from self._sleep_until(t, session_day)
            if not woke:
                day = self._replan_day
                continue
            if self.alive:
                if self.streak_days > 0 and self.last_visit_day < session_day - 1:
                    self._settle_streak(session_day)
                yield from self._session(t)
            day = session_day + 1

    def _sleep_until(self, t: float, day: int) -> Generator[simpy.Event, Any, bool]:
        """Sleep until ``t`` (in ``day``); False if woken early because her state changed."""
        self._sleeping_until_day = day
        try:
            yield self.env.timeout(t - self.env.now)
        except simpy.Interrupt:
            return False
        finally:
            self._sleeping_until_day = -1
        return True

    def _state_changed(self, now: float) -> None:
        """Another event changed what her visits depend on: plan again from tomorrow."""
        day = int(now // HOURS_PER_DAY)
        if self._sleeping_until_day > day and not self.done:
            self._replan_day = day + 1
            self._sleeping_until_day = -1  # one interrupt per sleep
            self._process.interrupt()

    def _lapse_day(self) -> int:
        """The day whose start finds her lapsing (recency past the threshold); horizon if none."""
        if self.lapsing_flagged:
            return self.horizon_days
        return min(
            math.ceil((self.last_order_at + self.model.lapse_hours) / HOURS_PER_DAY), self.horizon_days
        )

    def _lapsing_day(self, day: int) -> Generator[simpy.Event, Any, int]:
        """The lapsing decision at the day's start; the day's visit is drawn before it, as in the engine."""
        start = day * HOURS_PER_DAY
        visit = self.alive and self._uniform() < self._visit_probability(day)
        woke = yield from self._sleep_until(start, day)
        if not woke:
            return self._replan_day
        self.lapsing_flagged = True
        if "lapsing" in self.decision_kinds:
            action = yield self._decision_point("lapsing", start)
            was_alive = self.alive
            given = self._give(action, start)
            if given and not was_alive and self._uniform() < self._winback_chance(action):
                self.alive = True
                self.churned_at = math.nan
                self._hazard, self._hazard_day, self._lumps = 0.0, day + 1, []
        if not self.alive:
            self._finish(start, terminated=True)
            return day
        if visit:
            t = start + hour_from_uniform_scalar(self._uniform(), self.model.hour_cdf)
            woke = yield from self._sleep_until(t, day)
            if not woke:
                return self._replan_day
            if self.alive:
                yield from self._session(t)
        return day + 1

    def _winback_chance(self, incentive_id: int) -> float:
        """Chance that ``incentive_id`` brings her back, by its dollar value (twin of the engine's)."""
        typical = self.spend_p / self.spend_nu * self._price_index
        value = float(
            self.catalog.face_value(np.array([incentive_id], dtype=np.int16), np.array([typical]))[0]
        )
        churn = self._mech.churn
        return winback_probability_scalar(
            value, self.traits.winback_sensitivity, churn.winback_ceiling, churn.winback_value_dollars
        )

    def _window_end(self, day: int, lapse_day: int) -> int:
        """The first day after ``day`` on which her visit probability or her life may change by itself."""
        model = self.model
        limit = lapse_day
        if self._pareto:
            limit = min(limit, self._churn_day(day))
        if self.streak_days > 0 and model.streaks_break:
            limit = min(limit, self.last_visit_day + 2 + self.streak_freezes)
        for change in model.season_changes:
            if change > day:
                limit = min(limit, change)
                break
        if model.downgrade_weight > 0:
            warning_day = math.ceil((self.requalify_at - model.downgrade_warning_hours) / HOURS_PER_DAY)
            if warning_day > day:
                limit = min(limit, warning_day)
        limit = min(limit, math.ceil(self.requalify_at / HOURS_PER_DAY))
        offer = self.offer
        held = offer and (self._kind[offer] == _STREAK_BONUS or self._mech.advertising.visit_lift > 0)
        if held and self.offer_expires_at >= day * HOURS_PER_DAY:
            limit = min(limit, int(self.offer_expires_at // HOURS_PER_DAY) + 1)
        if self._frustration > 1e-3:  # frustration fades: keep the thinning bound tight
            limit = min(limit, day + 7)
        return max(limit, day + 1)

    def _draw_session_day(self, day: int, limit: int) -> int | None:
        """The next session day in ``[day, limit)`` (None if none), by geometric skips and thinning.

        Within the window only frustration changes, and it only fades: the probability with the
        window's last frustration bounds every day's, and a candidate day is kept with the ratio.
        """
        rest = self._visit_multiplier_rest(day)
        bound = self._visit_probability(limit - 1, rest)
        if bound <= 0.0:
            return None
        exact = not self._frustration or self.frustration_on(day) == self.frustration_on(limit - 1)
        log_miss = math.log1p(-bound) if bound < 1.0 else -math.inf
        d = day
        while True:
            if log_miss != -math.inf:
                d += int(math.log(1.0 - self._uniform()) / log_miss)
            if d >= limit:
                return None
            if exact or self._uniform() * bound < self._visit_probability(d, rest):
                return d
            d += 1

    def _visit_probability(self, day: int, rest: float | None = None) -> float:
        """Her session probability on ``day``; ``rest`` is :meth:`_visit_multiplier_rest` if known."""
        multiplier = visit_hazard_multiplier_scalar(
            self.streak_days, self.frustration_on(day), *self._streak_args
        )
        if rest is None:
            rest = self._visit_multiplier_rest(day)
        return visit_probability_scalar(self.traits.visit_prob, multiplier * rest)

    def _visit_multiplier_rest(self, day: int) -> float:
        """The visit-hazard factors other than streak and frustration: bonus, season, tiers."""
        model = self.model
        multiplier = 1.0
        start = day * HOURS_PER_DAY
        offer = self.offer
        lift = self._mech.advertising.visit_lift
        if offer and lift > 0 and self.offer_expires_at >= start:  # the advertising effect of an offer
            multiplier *= 1.0 + lift * self.traits.offer_response
        if offer and self._kind[offer] == _STREAK_BONUS and self.offer_expires_at >= start:
            mech = self._mech
            types = mech.incentive_types
            appeal = affinity_factor_scalar(self.affinity, model.type_column[offer], types.affinity_weight)
            value = self._value[offer] * self.scenario.loyalty.point_value
            pull = mech.streaks.weight * self.streak_sensitivity * appeal
            multiplier *= math.exp(pull * (value / types.streak_bonus_reference) ** mech.prospect.alpha)
        for first, end, factor in model.peaks:
            if first <= day < end:
                multiplier *= factor
        if model.goal_gradient > 0 and self.qualifying_spend > 0:
            progress = tier_progress_scalar(self.qualifying_spend, self.qualifying_tier, model.thresholds)
            multiplier *= 1.0 + model.goal_gradient * progress**2
        if model.downgrade_weight > 0 and self.requalify_at - start <= model.downgrade_warning_hours:
            multiplier *= downgrade_threat_scalar(
                self.tier,
                self.qualifying_tier,
                self.loss_aversion,
                model.top_tier,
                model.downgrade_weight,
                self._mech.prospect.beta,
            )
        return multiplier

    def _settle_streak(self, day: int) -> None:
        """Apply the missed-day rule for every day up to ``day`` she missed (engine: day start)."""
        streaks = self._mech.streaks
        while self.streak_days > 0 and self.last_visit_day < day - 1:
            missed_on = self.last_visit_day + 2  # the day whose start finds yesterday missed
            if self.streak_freezes > 0:
                self.streak_freezes -= 1
            elif streaks.missed_day_rule == "freeze":
                self.last_visit_day = day - 1  # nothing changes on any later missed day either
                return
            else:
                before = self.streak_days
                keep = 0.0 if streaks.missed_day_rule == "reset" else streaks.decay_keep
                after = math.floor(before * keep)
                self.streak_days = after
                lost = before - after if before >= streaks.min_days else 0
                if lost and streaks.break_penalty > 0:
                    prospect = self._mech.prospect
                    added = (
                        streaks.break_penalty
                        * self.streak_sensitivity
                        * loss_weight_scalar(
                            float(lost),
                            streaks.cap_days,
                            1,
                            self.loss_aversion,
                            prospect.alpha,
                            prospect.beta,
                        )
                    )
                    self._frustration = self.frustration_on(missed_on) + added
                    self._frustration_day = missed_on
                    if self._pareto:  # the engine's _streak_breaks: a lump at that day's start
                        self._lumps.append((missed_on, self._mech.churn.frustration_weight * added))
            self.last_visit_day = missed_on - 1

    def _requalify(self, start: float) -> None:
        """Her membership period ended: she keeps the tier its spend earned."""
        while self.requalify_at <= start:
            self.tier = tier_of_scalar(self.qualifying_spend, self.model.thresholds)
            self.qualifying_spend = 0.0
            self.qualifying_tier = 0
            self.requalify_at += self._mech.tiers.membership_days * HOURS_PER_DAY

    # ---- sessions, carts, checkout ------------------------------------------------------------
    def _session(self, t: float) -> Generator[simpy.Event, Any, None]:
        """A session: streak, login decision, maybe a cart, its checkout or abandonment."""
        day = int(t // HOURS_PER_DAY)
        continued = self.last_visit_day == day - 1
        self.streak_days = self.streak_days + 1 if continued else 1
        self.last_visit_day = day
        self.visits += 1
        streaks = self._mech.streaks
        offer = self.offer
        if (
            self._kind[offer] == _K["streak_bonus"]
            and continued
            and self.streak_days >= streaks.min_days
            and self.offer_expires_at >= t
        ):  # the streak held: the bonus points are credited
            self.points += int(self._value[offer])
            self.offer, self.offer_expires_at = _NO_OFFER, -math.inf
        if self._decides_at_login:
            action = yield self._decision_point("login", t)
            self._give(action, t)
            if not self.alive:  # the contact drove her away
                return
        cart_prob = self.cart_prob
        need = self._mech.need
        if need.depletion > 0:
            age_days = (t - self.last_order_at) / HOURS_PER_DAY
            factor = need_factor_scalar(
                age_days, self.traits.purchase_rate_per_day, need.depletion, need.restock_days
            )
            cart_prob = min(cart_prob * factor, 1.0)
        if self._uniform() >= cart_prob:
            return
        self.carts += 1
        basket = self._basket(self._standard_gamma() / self.spend_nu)
        category = self._category()
        badge = self._uniform() < self._mech.social.bestseller_share
        self._cart_id += 1
        cart_id = self._cart_id
        self.cart_value = basket
        if self._checkout(t, basket, category, badge):
            return
        self.abandoned += 1
        if self._decides_at_abandonment:
            action = yield self._decision_point("cart_abandoned", t)
            self._give(action, t)
        batch = self.scenario.engine.session_batch_hours
        wake = (math.floor(t / batch) + 1) * batch + self.scenario.sessions.cart_recovery_hours
        timer = self.env.timeout(wake - self.env.now, (cart_id, basket, category, badge))
        timer.callbacks.append(self._cart_timer)  # a callback, not a process: one event, no generator

    def _decision_point(self, kind: DecisionKind, t: float) -> simpy.Event:
        """Pose a decision to the driver; the process yields the event, whose value is the incentive."""
        self._answer = self.env.event()
        self._pending = Decision(kind, t)
        return self._answer

    def _basket(self, drawn: float) -> float:
        ship, topup = self.scenario.shipping, self._mech.shipping_threshold
        return topped_up_basket_scalar(
            drawn * self._price_index,
            self._uniform(),
            ship.fee,
            ship.free_threshold,
            topup.topup_prob,
            topup.max_gap_fee_multiple,
            topup.overshoot_max,
        )

    def _category(self) -> int:
        return min(bisect_right(self.model.category_cdf, self._uniform()), len(self.model.category_cdf) - 1)

    def _cart_timer(self, timer: simpy.Event) -> None:
        """The cart-abandonment timer: she may come back and decide again; otherwise the cart is lost."""
        cart_id, basket, category, badge = cast(tuple[int, float, int, bool], timer.value)
        if self.done or self._cart_id != cart_id or self.cart_value == 0.0:
            return  # replaced by a newer cart, or already bought
        now = self.env.now
        back = self.alive and self._uniform() < self.scenario.sessions.cart_return_rate
        if back and self._checkout(now, basket, category, badge, recovered=True):
            self.recovered += 1
            self._state_changed(now)
            return
        self.cart_value = 0.0

    def _checkout(self, t: float, basket: float, category: int, badge: bool, recovered: bool = False) -> bool:
        """She sees what she would pay (offer, shipping, points) and decides; an order if she buys."""
        sc = self.scenario
        loyalty, ship, mech = sc.loyalty, sc.shipping, self._mech
        offer = self.offer if self.offer_expires_at >= t else _NO_OFFER
        terms = offer_terms_scalar(self.model, offer, basket) if offer != _NO_OFFER else _NO_TERMS
        fee = 0.0 if terms.free_shipping or basket >= ship.free_threshold else ship.fee
        redeem_points = 0
        if self.points >= loyalty.min_redeem_points and loyalty.point_value > 0:
            redeem_points = min(self.points, math.floor((basket - terms.discount) / loyalty.point_value))
        pay = basket - terms.discount - redeem_points * loyalty.point_value + fee
        felt = pay
        if terms.applies:  # her uplift class scales what the offer is felt to be worth
            response = self.traits.offer_response
            saving = terms.discount + (
                ship.fee if terms.free_shipping and basket < ship.free_threshold else 0.0
            )
            felt = pay + (1.0 - response) * saving - response * self._offer_pull(terms, basket)
        ratio, promo = self._reference_on(int(t // HOURS_PER_DAY))
        sensitivity = self.price_sensitivity * (1.0 + mech.reference_price.promo_sensitivity * promo)
        lift = self._proof + (self._badge_lift if badge else 0.0)
        prob = checkout_probability_scalar(
            self.model.base_logit + self.traits.checkout_shift + lift,
            sensitivity,
            felt,
            basket / self._price_index * ratio,
            self.loss_aversion,
        )
        if self._uniform() >= prob:
            return False
        self._place_order(t, basket, category, offer, redeem_points, terms, not recovered)
        return True

    def _reference_on(self, day: int) -> tuple[float, float]:
        """Her reference ratio and promotion share on ``day``, faded since her last purchase."""
        reference = self._mech.reference_price
        days = day - self.reference_day
        return (
            faded_scalar(self.reference_ratio, 1.0, reference.memory_half_life_days, days),
            faded_scalar(self.promo_share, 0.0, reference.promo_memory_half_life_days, days),
        )

    def _offer_pull(self, terms: OfferTerms, basket: float) -> float:
        """Dollar-equivalent pull of points, perks and surprises (twin of the engine's ``_offer_pull``)."""
        loyalty, mech = self.scenario.loyalty, self._mech
        prospect, types = mech.prospect, mech.incentive_types
        extra_points = (
            terms.points_multiplier - 1.0
        ) * basket * loyalty.points_per_dollar + terms.bonus_points
        appeal = affinity_factor_scalar(self.affinity, terms.type_column, types.affinity_weight)
        perk = terms.hedonic_value
        if terms.type_column == TYPE_COLUMN["surprise"]:
            perk *= 1.0 + types.uncertainty_premium
        if terms.type_column == TYPE_COLUMN["hedonic"]:
            perk *= min(max(1.0 - mech.tiers.inflation * self.model.tier_share[self.tier], 0.0), 1.0)
        framed = framed_offer_pull_scalar(
            extra_points * loyalty.point_value,
            terms.loss_framed,
            self.loss_aversion,
            prospect.alpha,
            prospect.beta,
        )
        return appeal * (framed + prospect_value_scalar(perk, 1.0, prospect.alpha, prospect.beta))

    def _book(self, t: float, revenue: int, cogs: int, incentive: int, shipping: int, returns: int) -> None:
        self.revenue_cents += revenue
        self.cogs_cents += cogs
        self.incentive_cents += incentive
        self.shipping_cents += shipping
        self.returns_cents += returns
        net = revenue - cogs - incentive - shipping - returns
        self.margin_pv += net / 100.0 * math.exp(-self._rate_per_hour * (t - self.acquired_at))

    def _place_order(
        self,
        t: float,
        basket: float,
        category: int,
        offer: int,
        redeem_points: int,
        terms: OfferTerms,
        via_batch: bool,
    ) -> None:
        """Book an order: ledger, points, offer redeemed, state, BG/NBD dropout, delivery."""
        sc, mech = self.scenario, self._mech
        loyalty, ship = sc.loyalty, sc.shipping
        list_cents = round(basket * 100.0)
        fee = ship.fee if basket < ship.free_threshold else 0.0
        fee_cents = round(fee * 100.0)
        coupon_cents = round(terms.discount * 100.0)
        redeem_cents = round(redeem_points * loyalty.point_value * 100.0)
        cogs_cents = round(list_cents / self._price_index * self.model.cogs_ratio[category])
        earned = math.floor(basket * loyalty.points_per_dollar * terms.points_multiplier) + terms.bonus_points
        perk_cents = 0
        if terms.hedonic_value:
            types = mech.incentive_types
            if terms.type_column == TYPE_COLUMN["surprise"]:
                cost = terms.hedonic_value * (0.5 + self._uniform()) * types.surprise_cost_ratio
            else:
                cost = terms.hedonic_value * types.perk_cost_ratio
            perk_cents = round(cost * 100.0)
        incentive = coupon_cents + redeem_cents + (fee_cents if terms.free_shipping else 0) + perk_cents
        self._book(
            t, list_cents + fee_cents, cogs_cents, incentive, round(ship.carrier_cost_per_order * 100.0), 0
        )
        self.points += earned - redeem_points
        if offer != _NO_OFFER and terms.applies:
            self.offer, self.offer_expires_at = _NO_OFFER, -math.inf
        reference = mech.reference_price
        smoothing = reference.smoothing * min(1.0, (self.orders + 1.0) / reference.established_orders)
        paid_ratio = (list_cents - coupon_cents - redeem_cents) / max(list_cents, 1) * self._price_index
        today = int(t // HOURS_PER_DAY)
        ratio, promo = self._reference_on(today)
        self.reference_ratio = (1.0 - smoothing) * ratio + smoothing * paid_ratio
        self.promo_share = (1.0 - smoothing) * promo + smoothing * (coupon_cents > 0)
        self.reference_day = today
        self._experience_changes(t)  # her tier may change below
        repeat = self.orders > 0
        self.orders += 1
        self.monetary += basket
        self.last_order_at = t
        self.lapsing_flagged = False
        self.cart_value = 0.0
        self.qualifying_spend += basket
        self.qualifying_tier = tier_of_scalar(self.qualifying_spend, self.model.thresholds)
        self.tier = max(self.tier, self.qualifying_tier)
        due = self.delivery_due_hours(t, via_batch, self._uniform())
        parcel = Parcel(t, due, category, list_cents, coupon_cents + redeem_cents, cogs_cents, earned)
        self.env.timeout(due - self.env.now, parcel).callbacks.append(self._delivered)
        if not repeat or self._pareto:  # Pareto/NBD: buying never ends a life
            return
        churn, tiers = mech.churn, mech.tiers
        relief = perk_dropout_relief_scalar(
            self.tier, self.model.tier_share, self.model.top_tier, tiers.perk_dropout_relief, tiers.inflation
        )
        dropout = (1.0 - relief) * dropout_probability_scalar(
            self.traits.dropout_prob,
            self.last_delivery_late,
            self.deliveries > 0,
            self.frustration_on(int(t // HOURS_PER_DAY)),
            churn.late_dropout_multiplier,
            churn.on_time_relief,
            churn.frustration_weight,
        )
        if self._uniform() < dropout:
            self._churn(t)

    def delivery_due_hours(self, placed_at: float, via_batch: bool, u_transit: float) -> float:
        """When an order arrives on the queue-free schedule (batch end, wave, cut-off, transit)."""
        sc = self.scenario
        ship, waves = sc.shipping, sc.warehouse.wave_hours
        batch = sc.engine.session_batch_hours
        at_warehouse = (math.floor(placed_at / batch) + 1) * batch if via_batch else placed_at
        day = math.floor(at_warehouse / HOURS_PER_DAY)
        hour = at_warehouse - day * HOURS_PER_DAY
        wave = next((w for w in waves if w >= hour), None)
        if wave is None:
            day, wave = day + 1, waves[0]
        if wave > ship.carrier_cutoff_hour:  # picked after today's cut-off: leaves tomorrow
            day += 1
        shipped_at = day * HOURS_PER_DAY + ship.carrier_cutoff_hour
        transit = ship.base_transit_days + math.floor(u_transit * (ship.transit_jitter_days + 1))
        due = (day + transit) * HOURS_PER_DAY + ship.delivery_hour
        return due + HOURS_PER_DAY if due <= shipped_at else due

    def _delivered(self, arrival: simpy.Event) -> None:
        """The parcel arrives, late or not (she may churn); it may come back as a return."""
        if self.done:
            return
        parcel = cast(Parcel, arrival.value)
        sc = self.scenario
        late = bool(parcel.due > promised_by_hours(parcel.placed_at, sc.shipping.promised_days))
        self._experience_changes(parcel.due)
        self.deliveries += 1
        self.late_deliveries += late
        self.last_delivery_late = late
        late_churn = self._mech.churn.late_delivery_churn
        if late and self.alive and late_churn > 0:
            self._add_hazard(lump_hazard_scalar(late_churn), parcel.due)
            if self.done:
                return
        if self._pareto:
            self._state_changed(parcel.due)  # her hazard rate changed: plan her churn day again
        rate = self.model.return_rate[parcel.category] * (2.0 if self.traits.abuser else 1.0)
        if self._uniform() >= min(rate, 1.0):
            return
        # Back after the delay; booked at the next daily returns round (12:00), as in the engine.
        back = parcel.due + sc.returns.delay_days * HOURS_PER_DAY
        booked = math.ceil((back - 12.0) / HOURS_PER_DAY) * HOURS_PER_DAY + 12.0
        self.env.timeout(booked - self.env.now, (parcel, booked)).callbacks.append(self._returned)

    def _returned(self, returned: simpy.Event) -> None:
        """A returned parcel is booked: refund net of restocking, handling cost, points taken back."""
        if self.done:
            return
        parcel, booked = cast(tuple[Parcel, float], returned.value)
        params = self.scenario.returns
        restock = round(params.restock_share * parcel.cogs_cents)
        cost = parcel.list_cents - parcel.discount_cents + round(params.handling_cost * 100.0) - restock
        self._book(booked, 0, 0, 0, 0, cost)
        self.points = max(self.points - parcel.points_earned, 0)
        self.returns += 1

    def _churn(self, t: float) -> None:
        """She quits. The journey ends here unless a win-back point (her lapsing decision) lies ahead."""
        self.alive = False
        self.churned_at = t
        lapse_at = self.last_order_at + self.scenario.sessions.lapse_after_days * HOURS_PER_DAY
        winnable = (
            "lapsing" in self.decision_kinds
            and self._mech.churn.winback_ceiling > 0
            and not self.lapsing_flagged
            and math.ceil(lapse_at / HOURS_PER_DAY) < self.horizon_days
        )
        if not winnable:
            self._finish(t, terminated=True)
        else:
            self._state_changed(t)

    def _finish(self, t: float, terminated: bool) -> None:
        self.done = True
        self.terminated = terminated
        self.end_hours = t

    # ---- incentives -----------------------------------------------------------------------------
    def eligible_flags(self) -> tuple[bool, bool]:
        """(shown streak, tier >= 1): all that :meth:`IncentiveCatalog.eligible` depends on."""
        return self.streak_days >= self.model.streak_min_days, self.tier >= 1

    def _give(self, incentive_id: int, t: float) -> bool:
        """Make a non-``none`` incentive her active offer, or act on it at once; False if none was given."""
        if incentive_id == _NO_OFFER:
            return False
        kind = self._kind[incentive_id]
        streak_ok, tier_ok = self.eligible_flags()
        if (kind in (_K["streak_freeze"], _K["streak_bonus"]) and not streak_ok) or (
            kind == _K["tier_perk"] and not tier_ok
        ):
            self.ineligible_offers += 1  # not given (the environment masks these)
            return False
        self.incentives_received += 1
        if self.traits.contact_churn > 0 and self.alive:  # a sleeping dog woken by the contact
            self._add_hazard(lump_hazard_scalar(self.traits.contact_churn), t)
        if kind == _K["streak_freeze"]:
            self.streak_freezes += 1
        elif kind == _K["referral_bonus"]:
            self._invite(incentive_id, t)
        else:
            self.offer = incentive_id
            self.offer_expires_at = t + self.model.valid_hours[incentive_id]
        return True

    def _invite(self, incentive_id: int, t: float) -> None:
        """She invites friends (and an abuser opens fake accounts where the floor lets them through)."""
        params = self._mech.referral
        invites_left = params.max_invites - self.invites_sent  # her friends are finite
        invites = int(self.rng.binomial(invites_left, self.traits.referral_propensity))
        self.invites_sent += invites
        friends = int(self.rng.binomial(invites, params.accept_rate))
        floor = self.model.min_basket[incentive_id]
        fakes = params.abuser_fake_accounts if self.traits.abuser and floor <= params.fake_order_value else 0
        if friends + fakes == 0:
            return
        self.friends_referred += friends
        tomorrow = (math.floor(t / HOURS_PER_DAY) + 1) * HOURS_PER_DAY
        joins = sorted(tomorrow + self._uniform() * HOURS_PER_DAY for _ in range(friends + fakes))
        q, gamma = self.scenario.population.spend.q, self.scenario.population.spend.gamma
        baskets = [
            self._basket(self._standard_gamma() / float(self.rng.gamma(q, 1.0 / gamma)))
            for _ in range(friends)
        ] + [params.fake_order_value] * fakes
        self.env.process(self._referral_payouts(incentive_id, joins, baskets))

    def _referral_payouts(
        self, incentive_id: int, joins: list[float], baskets: list[float]
    ) -> Generator[simpy.Event, Any, None]:
        """Pay her bonus for each friend whose first order reaches the anti-fraud floor."""
        cents = round(self._value[incentive_id] * 100.0)
        for at, basket in zip(joins, baskets, strict=True):
            yield self.env.timeout(at - self.env.now)
            if self.done:
                return
            if basket >= self.model.min_basket[incentive_id]:
                self._book(at, 0, 0, cents, 0, 0)
                self.referral_cost_cents += cents
