"""Breadth: the categories a shopper buys in, how her experience moves them, and cross-selling.

Each cart's category is drawn from the catalogue's shares moved by the shopper's own category
weights: ``P(c) ~ share_c * exp(w_c + steer_c)``. Weights start at 0, so a new shopper follows
the shares. Experience moves them: an order she keeps in a category she had not kept an order
in before adds ``experience_gain`` to its weight; an order she sends back subtracts
``return_loss`` (learning from product experience: a good trial raises the chance of buying the
category again, a bad one lowers it). Each category she has bought and kept beyond her first
raises her cart probability by ``cross_buying_lift``, up to ``max_lift_categories`` of them: the
shop now serves another of her needs. Kumar, George & Pancras (2008) find cross-buying raises a
retail customer's later orders and revenue; Reinartz, Thomas & Bascoul (2008) find much of the
cross-sectional link is loyalty causing cross-buying rather than the reverse, so the causal lift
here (an assumption) is kept well below that correlation.

The downside follows Shah, Kumar, Qu & Chen (2012): 10-35% of cross-buyers in their five firms
were unprofitable, above all those with heavy returns. A first order in a category she has never
bought, after orders in others (a cross-buy, not her trial order), is returned
``1 + new_category_return_premium`` times as often (unfamiliar fit, an
assumption); a serial returner (``population.abuser_share``, returns x2) cross-bought into new
categories sends back more than the extra orders earn.

A cross-sell coupon (``kind: cross_sell``) is a percentage off carts in one named category, or
in any category she has not bought yet (``category: new``). While she holds it, it steers her
category choice by its saving in the checkout's logit units (``price_sensitivity * value``: the
same weight a relative saving has at checkout, :mod:`sim.behaviour`), and it discounts only a
cart in its category. Neutral: every weight 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
U64 = NDArray[np.uint64]

#: ``category: new`` on a cross-sell coupon: any category she has not bought yet.
NEW_CATEGORY = -2
#: Category weights stay within this band (a shopper never rules a category out for good).
MAX_WEIGHT = 5.0


def category_bit(category: NDArray[np.integer]) -> U64:
    """The bitmask bit of each category (categories are numbered 0..63)."""
    return np.left_shift(np.uint64(1), category.astype(np.uint64))


def count_categories(mask: U64) -> NDArray[np.int64]:
    """How many categories each bitmask holds."""
    return np.bitwise_count(mask).astype(np.int64)


def has_category(mask: U64, category: NDArray[np.integer]) -> NDArray[np.bool_]:
    """Whether each bitmask holds its row's category."""
    return (mask & category_bit(category)) != 0


def choose_categories(log_shares: F64, weights: F64, u: F64) -> NDArray[np.int64]:
    """Each row's category: ``u`` mapped through the CDF of ``exp(log_shares + weights)`` per row."""
    scores = log_shares + weights
    probability = np.exp(scores - scores.max(axis=1, keepdims=True))
    cdf = np.cumsum(probability, axis=1)
    below = cdf <= (u * cdf[:, -1])[:, None]
    return np.minimum(below.sum(axis=1), weights.shape[1] - 1)


def steering(
    target: NDArray[np.integer],
    bought: U64,
    categories: int,
    pull: F64,
) -> F64:
    """What a held cross-sell coupon adds to each category's weight: ``pull`` on its categories.

    ``target`` is the coupon's category, :data:`NEW_CATEGORY` for every category not bought yet,
    or -1 for no cross-sell coupon.
    """
    columns = np.arange(categories)
    named = target[:, None] == columns[None, :]
    unbought = ((bought[:, None] >> columns.astype(np.uint64)[None, :]) & np.uint64(1)) == 0
    on = named | ((target == NEW_CATEGORY)[:, None] & unbought)
    return np.where(on, pull[:, None], 0.0)


def cross_sell_applies(
    target: NDArray[np.integer], category: NDArray[np.integer], bought: U64
) -> NDArray[np.bool_]:
    """Whether each cart's category is the one its cross-sell coupon is valid in."""
    return (target == category) | ((target == NEW_CATEGORY) & ~has_category(bought, category))


def cross_buying_multiplier(kept: NDArray[np.int64], lift: float, max_categories: int) -> F64:
    """Cart-probability multiplier of the categories she has kept orders in beyond her first."""
    return 1.0 + lift * np.clip(kept - 1, 0, max_categories).astype(np.float64)


def experienced_weight(
    weight: F64, first_kept: NDArray[np.bool_], returns: NDArray[np.int64], gain: float, loss: float
) -> F64:
    """Her category's weight after deliveries: up for a first order kept there, down per return."""
    moved = weight + np.where(first_kept, gain, 0.0) - returns * loss
    return np.clip(moved, -MAX_WEIGHT, MAX_WEIGHT)
