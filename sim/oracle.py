"""The privileged oracle's view: every shopper's true state and each incentive's true expected value.

Ordinary policies see observations; the simulator also knows each shopper's latent traits
(purchase rate, lifetime hazard, uplift class, price and loss sensitivity, win-back
sensitivity) and hidden state (alive or not, reference price, promotion share). The engine
(:meth:`sim.engine.Simulation.true_state`) and the one-shopper journey
(:meth:`sim.shop.Shop.true_state`, for journeys too) hand that truth out as one :class:`TrueState`, and the
environments expose it through ``oracle_view()`` (documented on each env, never part of an
observation). :func:`incentive_values` turns it into the expected value of every incentive at
a decision by a one-step lookahead on the true model, for ``kind: oracle``
(:mod:`policies.oracle`): a measuring stick for how much a policy leaves on the table.

The lookahead (dollars of margin, each incentive against ``none``):

* **the offer's validity window**: her expected carts in the window (her daily session and
  cart probabilities, raised by the advertising effect of a held offer) times the change in
  each cart's expected margin: checkout probability with the offer as she feels it (her uplift
  class's response, the loss-framed pull of points and perks) times the order's margin net of
  what the incentive costs, less the same without it. A cart-abandonment decision adds her
  open cart, which comes back with the cart-return rate. Checkout is integrated over her
  Gamma-Gamma basket distribution (32-point quadrature);
* **retention**: a sleeping dog's contact ends her life with ``contact_churn`` (all of it at a
  lapsing decision, ``reactive_contact_share`` of it in a session), losing her future value;
  a churned shopper at her lapsing decision comes back with the win-back probability of the
  incentive's dollar value, regaining it;
* **referral bonuses**: expected friends times what a friend is worth to the objective, less
  the bonus.

It is myopic where the model has long-run effects (reference prices, promotion sensitivity,
the need state's pull-forward, streaks and tiers) and ignores social proof: it values each
decision alone. An oracle that beats it would have to plan; one it beats leaves money on the
table that the simulator can name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.behaviour import checkout_probability, logit, shipping_fee
from sim.economics import daily_discount_rate, expected_order_margin
from sim.incentives import KIND_CODES, IncentiveCatalog
from sim.mechanisms.affinity import TYPE_COLUMN, affinity_factor
from sim.mechanisms.churn import winback_probability
from sim.mechanisms.prospect import framed_offer_pull, prospect_value
from sim.params import DecisionKind, Scenario
from sim.population import CHANNEL_REFERRED, basket_quantiles, draw_unlinked_shoppers

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class TrueState:
    """The simulator's truth about ``n`` shoppers at a decision (arrays of length ``n``)."""

    alive: NDArray[np.bool_]
    purchase_rate_per_day: F64
    dropout_prob: F64
    hazard_per_day: F64  # her Pareto/NBD hazard now, moved by her delivery experience
    spend_nu: F64
    loss_aversion: F64
    price_sensitivity: F64  # moved by her promotion history
    checkout_shift: F64
    offer_response: F64
    contact_churn: F64  # a proactive contact's chance of ending her relationship now (saturated)
    winback_sensitivity: F64
    affinity: NDArray[np.float32]  # (n, 4)
    reference_ratio: F64  # today's, faded since her last purchase
    visit_prob: F64
    cart_prob: F64
    cart_value: F64  # the open cart's posted value (0 without one)
    referral_propensity: F64
    invites_left: F64


@dataclass(frozen=True)
class OracleView:
    """What the oracle sees at a step: the truth about the shoppers this step decides for.

    ``heads`` maps each shopper to the action component that decides for her (per-segment
    actions); ``None`` means one shopper and one action: the one at ``row`` (0 if ``None``).
    ``weights`` is each shopper's chance of meeting a decision point in the step (already scaled
    up where shoppers were subsampled).
    """

    scenario: Scenario
    catalog: IncentiveCatalog
    state: TrueState
    kinds: NDArray[np.int8]  # each shopper's decision kind, as an index into DECISION_KINDS
    objective_weights: F64  # over (margin, ltv, load, budget), as the environment's reward
    days_left: float  # of the episode: how far ahead margin counts
    friend_value: tuple[float, float]  # a referred friend's worth over days_left, and as LTV
    load_per_order: float = 0.0  # late deliveries and overtime orders one more order now adds
    late_per_order: float = 0.0  # late deliveries one more order now adds (congestion)
    heads: NDArray[np.int64] | None = None
    weights: F64 | None = None
    row: int | None = None  # one shopper's decision: her row in ``state`` (a batch's rows share it)
    batch: int | None = None  # identifies the batch ``state`` describes, for caching its values


def friend_value(scenario: Scenario, state: TrueState, order_margin: F64, days: float) -> float:
    """What a new shopper like these is worth: her first order and her future (for referral bonuses)."""
    return float(np.mean(order_margin + future_value(scenario, state, order_margin, days)))


def future_value(scenario: Scenario, state: TrueState, order_margin: F64, days: float) -> F64:
    """Her expected discounted margin over the next ``days`` were she alive (``inf`` days: LTV's residual)."""
    return discounted_future(
        scenario, state.purchase_rate_per_day, state.dropout_prob, state.hazard_per_day, order_margin, days
    )


def discounted_future(
    scenario: Scenario, rate: F64, dropout_prob: F64, hazard: F64, order_margin: F64, days: F64 | float
) -> F64:
    """Expected discounted margin of future orders over ``days`` (broadcast; ``inf``: a whole life).

    Orders come at ``rate`` a day while she stays; she leaves at ``rate x dropout_prob + hazard``
    a day, and money is discounted at the scenario's daily rate.
    """
    delta = daily_discount_rate(scenario.economics.annual_discount_rate)
    leave = delta + rate * dropout_prob + hazard
    span = np.maximum(np.asarray(days, dtype=np.float64), 0.0)
    share = np.where(np.isinf(span), 1.0, -np.expm1(-leave * np.where(np.isinf(span), 0.0, span)))
    return np.asarray(rate * order_margin * share / leave, dtype=np.float64)


@dataclass(frozen=True)
class FriendWorth:
    """What a referred friend is worth, averaged over a fixed sample of the scenario's referred shoppers.

    For journeys, whose friends are not simulated: each friend who joins credits her referrer
    with her expected first order and future margin (:meth:`over`).
    """

    scenario: Scenario
    order_margin: F64
    rate: F64
    dropout_prob: F64
    hazard: F64

    def over(self, days: F64) -> F64:
        """Per entry of ``days``: a friend's first order plus her discounted future over that many days."""
        future = discounted_future(
            self.scenario,
            self.rate[:, None],
            self.dropout_prob[:, None],
            self.hazard[:, None],
            self.order_margin[:, None],
            np.asarray(days, dtype=np.float64)[None, :],
        )
        return np.asarray((self.order_margin[:, None] + future).mean(axis=0), dtype=np.float64)

    def for_oracle(self, days_left: float) -> tuple[float, float]:
        """``OracleView.friend_value``: her worth over ``days_left``, and as LTV (a whole life)."""
        worth = self.over(np.array([days_left, np.inf]))
        return float(worth[0]), float(worth[1])


#: Referred shoppers drawn to value a friend (fixed seed: the same worth in every run).
FRIEND_SAMPLE = 2048


@functools.lru_cache(maxsize=16)
def referred_friend_worth(scenario: Scenario) -> FriendWorth:
    """:class:`FriendWorth` of ``scenario``'s referred shoppers (a fixed sample, cached)."""
    friends = draw_unlinked_shoppers(scenario, FRIEND_SAMPLE, CHANNEL_REFERRED, np.random.default_rng(0))
    return FriendWorth(
        scenario=scenario,
        order_margin=expected_order_margin(scenario, friends),
        rate=friends.purchase_rate_per_day,
        dropout_prob=friends.dropout_prob,
        hazard=friends.dropout_rate_per_day,
    )


def incentive_values(view: OracleView, state: TrueState, kind: DecisionKind) -> F64:
    """Expected gain in the objective of each incentive against ``none``, shape ``(n, incentives)``.

    The objective is the environment's weighted vector: margin (the window's orders, and her
    future over the episode's remaining days), LTV (the same with her whole future), load (the
    extra orders times ``load_per_order``) and incentive cost.
    """
    scenario, catalog = view.scenario, view.catalog
    w_margin, w_ltv, w_load, w_budget = (float(w) for w in view.objective_weights)
    n, count = state.alive.size, len(catalog)
    ship, loyalty, mech = scenario.shipping, scenario.loyalty, scenario.mechanisms
    price_index = scenario.catalog.price_index
    cats = scenario.catalog.categories
    share = np.array([c.share for c in cats])
    cogs = float(share @ np.array([c.cogs_ratio for c in cats]))
    ret = float(share @ np.array([c.return_rate for c in cats]))
    ret_cogs = float(share @ np.array([c.return_rate * c.cogs_ratio for c in cats]))
    point_dollars = loyalty.points_per_dollar * loyalty.point_value

    def margin(charged: F64) -> F64:  # one order's expected margin at posted prices, no incentive
        regular = charged / price_index
        fee = shipping_fee(charged, ship.fee, ship.free_threshold)
        return (
            charged * (1.0 - point_dollars)
            - regular * cogs
            + fee
            - ship.carrier_cost_per_order
            - ret * (charged + scenario.returns.handling_cost)
            + scenario.returns.restock_share * ret_cogs * regular
        )

    # Baskets: the quadrature of her Gamma-Gamma spend, plus her open cart as the last column.
    quantiles = basket_quantiles(scenario.population.spend.p)
    spend = quantiles[None, :] / state.spend_nu[:, None] * price_index
    open_cart = np.where(state.cart_value > 0.0, state.cart_value, spend.mean(axis=1))
    baskets = np.concatenate([spend, open_cart[:, None]], axis=1)
    shape, points = baskets.shape, quantiles.size
    base_logit = logit(scenario.sessions.checkout_conversion_at_reference) + state.checkout_shift
    reference = baskets / price_index * state.reference_ratio[:, None]
    fee = shipping_fee(baskets, ship.fee, ship.free_threshold)
    order_margin = margin(baskets)
    p_none = checkout_probability(
        base_logit[:, None], state.price_sensitivity[:, None], baskets + fee, reference,
        state.loss_aversion[:, None],
    )  # fmt: skip
    carts_per_day = state.visit_prob * state.cart_prob
    typical_margin = order_margin[:, :points].mean(axis=1)
    # Her future were she alive: over the episode (margin) and in full (LTV).
    future = w_margin * future_value(scenario, state, typical_margin, view.days_left)
    future = future + w_ltv * future_value(scenario, state, typical_margin, float("inf"))
    friend = w_margin * view.friend_value[0] + w_ltv * view.friend_value[1]
    types = mech.incentive_types
    # Every incentive at once: arrays of shape (shoppers, baskets, incentives).
    arms = np.arange(count, dtype=np.int16)
    cube = (n, shape[1], count)
    flat_baskets = np.broadcast_to(baskets[:, :, None], cube).ravel()
    terms = catalog.terms(np.broadcast_to(arms, cube).ravel(), flat_baskets)
    basket3, fee3 = baskets[:, :, None], fee[:, :, None]
    saving = terms.discount.reshape(cube) + np.where(terms.free_shipping.reshape(cube), fee3, 0.0)
    extra_points = (terms.points_multiplier.reshape(cube) - 1.0) * basket3 * loyalty.points_per_dollar
    extra_points = extra_points + terms.bonus_points.reshape(cube)
    hedonic = terms.hedonic_value.reshape(cube)
    surprise = catalog.type_column == TYPE_COLUMN["surprise"]
    perk_cost = hedonic * np.where(surprise, types.surprise_cost_ratio, types.perk_cost_ratio)
    applies = terms.applies.reshape(cube)
    cost = np.where(applies, saving + extra_points * loyalty.point_value + perk_cost, 0.0)
    affinity = np.repeat(state.affinity, shape[1] * count, axis=0)
    appeal = affinity_factor(affinity, terms.type_column, types.affinity_weight).reshape(cube)
    perk = hedonic * np.where(surprise, 1.0 + types.uncertainty_premium, 1.0)
    loss_aversion = state.loss_aversion[:, None, None]
    pull = appeal * (
        framed_offer_pull(
            extra_points * loyalty.point_value,
            terms.loss_framed.reshape(cube),
            loss_aversion,
            mech.prospect.alpha,
            mech.prospect.beta,
        )
        + prospect_value(perk, 1.0, mech.prospect.alpha, mech.prospect.beta)
    )
    response = state.offer_response[:, None, None]
    felt = basket3 + fee3 - saving + (1.0 - response) * saving - response * pull
    p_base = p_none[:, :, None]
    p_offer = np.where(
        applies,
        checkout_probability(
            base_logit[:, None, None], state.price_sensitivity[:, None, None], felt,
            reference[:, :, None], loss_aversion,
        ),
        p_base,
    )  # fmt: skip
    # Per cart: the margin gained, what the incentive costs, the extra orders.
    margin3 = order_margin[:, :, None]
    gained = p_offer * (margin3 - cost) - p_base * margin3
    paid, orders = p_offer * cost, p_offer - p_base
    spread = slice(0, points)  # her basket distribution; column ``points`` is her open cart
    held = ~np.isin(catalog.kind, (KIND_CODES["streak_freeze"], KIND_CODES["referral_bonus"]))
    held[0] = False  # none
    carts = np.outer(carts_per_day, catalog.valid_hours / 24.0)  # carts that meet the offer
    if kind == "login":  # the session she just started may fill a cart at once
        carts = carts + state.cart_prob[:, None]
    carts = np.where(held, carts, 0.0)
    extra = carts * mech.advertising.visit_lift * state.offer_response[:, None]  # advertising
    reach = carts + extra
    gain = (
        reach * gained[:, spread].mean(axis=1)
        + extra * (p_none * order_margin)[:, spread].mean(axis=1)[:, None]
    )
    cost_total = reach * paid[:, spread].mean(axis=1)
    more_orders = reach * orders[:, spread].mean(axis=1) + extra * p_none[:, spread].mean(axis=1)[:, None]
    if kind == "cart_abandoned":  # her open cart comes back on the abandonment timer
        returns = scenario.sessions.cart_return_rate * held
        gain = gain + returns * gained[:, points]
        cost_total = cost_total + returns * paid[:, points]
        more_orders = more_orders + returns * orders[:, points]
    alive = state.alive[:, None]
    values = np.where(alive, (w_margin + w_ltv) * gain + w_load * view.load_per_order * more_orders, 0.0)
    # Orders into a congested warehouse make deliveries late, and a late delivery may end a life
    # and raises attrition until the next one: priced at her future (the average shopper's).
    churn = mech.churn
    late_loss = churn.late_delivery_churn + churn.late_dropout_multiplier / (
        1.0 + churn.late_dropout_multiplier
    )
    values -= np.where(alive, view.late_per_order * late_loss * more_orders * future.mean(), 0.0)
    values += w_budget * np.where(alive, cost_total, 0.0)
    # A sleeping dog woken: fully by outreach (lapsing), by reactive_contact_share in a session.
    woken = state.contact_churn * (1.0 if kind == "lapsing" else churn.reactive_contact_share)
    values -= np.where(alive, (woken * future)[:, None], 0.0)
    per_bonus = w_margin + w_ltv - w_budget  # what a dollar the shop pays out costs the objective
    referral = catalog.kind == KIND_CODES["referral_bonus"]
    if referral.any():
        friends = state.referral_propensity * state.invites_left * mech.referral.accept_rate
        worth = friends[:, None] * (friend - per_bonus * catalog.value[None, :])
        values += np.where(alive & referral, worth, 0.0)
    if kind == "lapsing":  # a churned shopper may come back for it (and then redeem it)
        typical = scenario.population.spend.p / state.spend_nu * price_index  # as the engine values it
        worth = catalog.face_value(np.broadcast_to(arms, (n, count)).ravel(), np.repeat(typical, count))
        back = winback_probability(
            worth.reshape(n, count),
            state.winback_sensitivity[:, None],
            mech.churn.winback_ceiling,
            mech.churn.winback_value_dollars,
        )
        redeemed = np.minimum(carts, 1.0) * paid[:, spread].mean(axis=1)
        values += np.where(alive, 0.0, back * (future[:, None] - per_bonus * redeemed))
    values[:, 0] = 0.0  # none is the reference
    return np.asarray(values, dtype=np.float64)


def best_allowed(values: F64, allowed: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
    """Each row's allowed incentive of highest value, ``none`` (column 0, worth 0) unless one beats it."""
    totals = np.where(allowed, values, -np.inf) if allowed is not None else values.copy()
    totals[:, 0] = np.maximum(totals[:, 0], 0.0)  # none is always allowed and worth 0
    return np.argmax(totals, axis=1).astype(np.int64)
