"""The incentive catalogue: what a shop can give a shopper, what it costs and when it is paid.

An incentive is offered at a decision point and stays active for ``valid_days``. It acts at
the shopper's next checkout by changing what she pays (coupons, free shipping) or what she
earns (points multiplier, bonus points). ``points_bonus`` is gain-framed ("earn 500 points
with your next order"); ``expiring_points`` is loss-framed ("500 points are yours, they expire
unless you order"). Both credit the points on the order, and loss aversion makes the second
pull harder (:mod:`sim.mechanisms.prospect`). ``streak_freeze`` is granted at once: it
keeps the shopper's streak through one missed day (:mod:`sim.mechanisms.streaks`).
``referral_bonus`` is acted on at once too: the shopper invites friends, and the bonus is paid
when a friend's first order reaches the floor (:mod:`sim.mechanisms.referral`).
``tier_perk`` (hedonic, tier 1 and up) and ``surprise_box`` (surprise) pull at checkout with
their perceived value and are paid for on the order; ``streak_bonus`` (shoppers with a shown
streak) pays its points when the streak continues the next day. ``cross_sell`` is a
percentage off carts in one category, or in any she has not bought yet
(:mod:`sim.mechanisms.breadth`). The onboarding incentives are for new shoppers (at most
one order): ``welcome_bundle`` gives free shipping and ``value`` bonus points on her next
order, ``first_purchase_bonus`` a dollar credit on it
(:mod:`sim.mechanisms.habit`). Any incentive may carry a dark pattern
(:mod:`sim.mechanisms.dark_patterns`). Cost is booked only on redemption; points are a
liability until redeemed. Action ``0`` is always ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.mechanisms.affinity import TYPE_COLUMN
from sim.mechanisms.breadth import NEW_CATEGORY, cross_sell_applies
from sim.mechanisms.dark_patterns import DARK_PATTERN_CODES
from sim.params import ONBOARDING_MAX_ORDERS, IncentiveKind, Scenario
from sim.population import HOURS_PER_DAY, INCENTIVE_FAMILIES

KIND_CODES: dict[IncentiveKind, int] = {
    "none": 0,
    "coupon_pct": 1,
    "coupon_fixed": 2,
    "free_shipping": 3,
    "points_multiplier": 4,
    "points_bonus": 5,
    "expiring_points": 6,
    "streak_freeze": 7,
    "referral_bonus": 8,
    "tier_perk": 9,
    "surprise_box": 10,
    "streak_bonus": 11,
    "cross_sell": 12,
    "welcome_bundle": 13,
    "first_purchase_bonus": 14,
}
_FAMILY: dict[IncentiveKind, str] = {
    "coupon_pct": "coupon",
    "coupon_fixed": "coupon",
    "free_shipping": "free_shipping",
    "points_multiplier": "points",
    "points_bonus": "points",
    "expiring_points": "points",
    "streak_freeze": "streak",
    "streak_bonus": "streak",
    "referral_bonus": "referral",
    "tier_perk": "tier_perk",
    "surprise_box": "surprise_box",
    "cross_sell": "coupon",
    "welcome_bundle": "free_shipping",
    "first_purchase_bonus": "coupon",
}
INCENTIVE_TYPE: dict[IncentiveKind, str] = {
    "none": "none",
    "coupon_pct": "utilitarian",
    "coupon_fixed": "utilitarian",
    "free_shipping": "utilitarian",
    "points_multiplier": "hedonic",
    "points_bonus": "hedonic",
    "expiring_points": "hedonic",
    "streak_freeze": "utilitarian",
    "referral_bonus": "social",
    "tier_perk": "hedonic",
    "surprise_box": "surprise",
    "streak_bonus": "hedonic",
    "cross_sell": "utilitarian",
    "welcome_bundle": "utilitarian",
    "first_purchase_bonus": "utilitarian",
}

F64 = NDArray[np.float64]
_AT_CHECKOUT_PERKS = (KIND_CODES["tier_perk"], KIND_CODES["surprise_box"])
_ONBOARDING = (KIND_CODES["welcome_bundle"], KIND_CODES["first_purchase_bonus"])


@dataclass(frozen=True)
class Terms:
    """What the active incentives change at checkout, per cart."""

    discount: F64
    free_shipping: NDArray[np.bool_]
    points_multiplier: F64
    bonus_points: NDArray[np.int64]
    loss_framed: NDArray[np.bool_]
    hedonic_value: F64
    type_column: NDArray[np.int64]
    applies: NDArray[np.bool_]
    hidden_fee: F64  # a fee revealed only at checkout (a dark pattern)
    forced: NDArray[np.bool_]  # she was opted in unasked (a dark pattern)

    def select(self, mask: NDArray[np.bool_]) -> Terms:
        """The terms of the carts selected by ``mask``."""
        return Terms(
            self.discount[mask],
            self.free_shipping[mask],
            self.points_multiplier[mask],
            self.bonus_points[mask],
            self.loss_framed[mask],
            self.hedonic_value[mask],
            self.type_column[mask],
            self.applies[mask],
            self.hidden_fee[mask],
            self.forced[mask],
        )


class IncentiveCatalog:
    """The scenario's incentives as arrays indexed by incentive id (the action)."""

    def __init__(self, scenario: Scenario) -> None:
        specs = scenario.incentives
        self.names = tuple(s.name for s in specs)
        self.kind = np.array([KIND_CODES[s.kind] for s in specs], dtype=np.int8)
        #: Each incentive's column in the response log (-1 for ``none``).
        self.family = np.array(
            [INCENTIVE_FAMILIES.index(_FAMILY[s.kind]) if s.kind != "none" else -1 for s in specs],
            dtype=np.int64,
        )
        self.value = np.array([s.value for s in specs])
        self.valid_hours = np.array([s.valid_days * HOURS_PER_DAY for s in specs])
        self.min_basket = np.array([s.min_basket for s in specs])
        self.type_column = np.array(
            [TYPE_COLUMN.get(INCENTIVE_TYPE[s.kind], -1) for s in specs], dtype=np.int64
        )
        categories = [c.name for c in scenario.catalog.categories]
        #: A cross-sell coupon's category (NEW_CATEGORY: any not bought yet; -1: not a cross-sell).
        self.category = np.array(
            [
                -1
                if s.category is None
                else NEW_CATEGORY
                if s.category == "new"
                else categories.index(s.category)
                for s in specs
            ],
            dtype=np.int64,
        )
        self.dark_pattern = np.array([DARK_PATTERN_CODES[s.dark_pattern] for s in specs], dtype=np.int8)
        self._hidden_fee_share = scenario.mechanisms.dark_patterns.hidden_fee_share
        self._fee = scenario.shipping.fee
        self._point_dollars = scenario.loyalty.point_value
        self._points_per_dollar = scenario.loyalty.points_per_dollar

    def face_value(self, incentive_ids: NDArray[np.int16], basket: F64) -> F64:
        """What each incentive is worth to its shopper in dollars on a typical ``basket``.

        Coupons their discount, free shipping the fee, points their cash value, perks and
        surprise boxes their stated value; a streak freeze or a referral bonus gives her nothing
        to spend. Win-back responses grow with it (:mod:`sim.mechanisms.churn`).
        """
        kind, value = self.kind[incentive_ids], self.value[incentive_ids]
        points = np.isin(
            kind, (KIND_CODES["points_bonus"], KIND_CODES["expiring_points"], KIND_CODES["streak_bonus"])
        )
        extra_points = (value - 1.0) * basket * self._points_per_dollar
        worth = np.select(
            [
                np.isin(kind, (KIND_CODES["coupon_pct"], KIND_CODES["cross_sell"])),
                np.isin(kind, (KIND_CODES["coupon_fixed"], KIND_CODES["first_purchase_bonus"])),
                kind == KIND_CODES["free_shipping"],
                kind == KIND_CODES["welcome_bundle"],
                kind == KIND_CODES["points_multiplier"],
                points,
                np.isin(kind, _AT_CHECKOUT_PERKS),
            ],
            [
                value * basket,
                value,
                np.full(kind.shape, self._fee),
                self._fee + value * self._point_dollars,
                extra_points * self._point_dollars,
                value * self._point_dollars,
                value,
            ],
            0.0,
        )
        return np.asarray(worth, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.names)

    def validate(self, incentive_ids: NDArray[np.integer], count: int) -> NDArray[np.int16]:
        """Check a batch of chosen incentive ids (one per shopper) and return them as int16."""
        ids = np.asarray(incentive_ids)
        if ids.shape != (count,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"expected {count} integer incentive ids, got shape {ids.shape} {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"incentive ids must be in [0, {len(self) - 1}] ({', '.join(self.names)})")
        return ids.astype(np.int16)

    def terms(
        self,
        offer: NDArray[np.int16],
        basket: F64,
        category: NDArray[np.integer] | None = None,
        bought: NDArray[np.uint64] | None = None,
    ) -> Terms:
        """The discount, free shipping, points and hidden fee each cart's active offer gives.

        ``category`` and ``bought`` (each cart's category and her categories bought so far) decide
        whether a cross-sell coupon applies; without them it applies to no cart.
        """
        if not offer.any():  # the common case: no active offers in this batch
            none = np.zeros(offer.size, dtype=bool)
            no_points = np.zeros(offer.size, dtype=np.int64)
            zeros, no_type = np.zeros(offer.size), np.full(offer.size, -1, dtype=np.int64)
            return Terms(zeros, none, np.ones(offer.size), no_points, none, zeros, no_type, none, zeros, none)
        kind, value = self.kind[offer], self.value[offer]
        eligible = basket >= self.min_basket[offer]
        cross_sell = kind == KIND_CODES["cross_sell"]
        if cross_sell.any():
            if category is None or bought is None:
                eligible &= ~cross_sell
            else:
                eligible &= ~cross_sell | cross_sell_applies(self.category[offer], category, bought)
        pct = (kind == KIND_CODES["coupon_pct"]) | cross_sell
        fixed = (kind == KIND_CODES["coupon_fixed"]) | (kind == KIND_CODES["first_purchase_bonus"])
        discount = np.where(pct, value * basket, 0.0)
        discount = np.where(fixed, np.minimum(value, basket), discount)
        discount = np.where(eligible, discount, 0.0)
        bundle = kind == KIND_CODES["welcome_bundle"]
        free_shipping = eligible & ((kind == KIND_CODES["free_shipping"]) | bundle)
        multiplier = np.where(eligible & (kind == KIND_CODES["points_multiplier"]), value, 1.0)
        points_offer = eligible & (
            (kind == KIND_CODES["points_bonus"]) | (kind == KIND_CODES["expiring_points"]) | bundle
        )
        dark = self.dark_pattern[offer]
        active = eligible & (kind != KIND_CODES["none"])
        hidden = active & (dark == DARK_PATTERN_CODES["hidden_cost"])
        return Terms(
            discount=discount,
            free_shipping=free_shipping,
            points_multiplier=multiplier,
            bonus_points=np.where(points_offer, value, 0.0).astype(np.int64),
            loss_framed=eligible & (kind == KIND_CODES["expiring_points"]),
            hedonic_value=np.where(eligible & np.isin(kind, _AT_CHECKOUT_PERKS), value, 0.0),
            type_column=np.where(eligible, self.type_column[offer], -1),
            # A streak bonus is redeemed by visiting, not by ordering.
            applies=active & (kind != KIND_CODES["streak_bonus"]),
            hidden_fee=np.where(hidden, self._hidden_fee_share * basket, 0.0),
            forced=active & (dark == DARK_PATTERN_CODES["forced_opt_in"]),
        )

    def eligible(
        self,
        incentive_ids: NDArray[np.int16],
        streak_days: NDArray[np.int64],
        tier: NDArray[np.int8],
        min_streak: int,
        orders: NDArray[np.int64],
    ) -> NDArray[np.bool_]:
        """Whether each shopper may receive the incentive chosen for her.

        Streak incentives need a shown streak (``min_streak`` days); tier perks need tier 1 or
        above; onboarding incentives a new shopper (at most one order); everything else is open
        to every shopper.
        """
        kind = self.kind[incentive_ids]
        streak_kind = (kind == KIND_CODES["streak_freeze"]) | (kind == KIND_CODES["streak_bonus"])
        ok = np.where(streak_kind, streak_days >= min_streak, True)
        ok &= np.where(np.isin(kind, _ONBOARDING), orders <= ONBOARDING_MAX_ORDERS, True)
        return ok & np.where(kind == KIND_CODES["tier_perk"], tier >= 1, True)
