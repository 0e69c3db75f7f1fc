"""Price image: what a shopper learns of the shop's deals from the prices she paid.

A new customer does not know how good a deal the shop is; she learns it from what she pays.
Anderson & Simester (2004) randomized the depth of catalogue discounts: deeper discounts raised
the later purchases of first-time customers and lowered those of established ones, and they name
customer learning among the long-run effects. Store choice follows the price image a shopper has
formed from her purchases (Hamilton & Chernev 2013), and what she has learned weighs less the
more she has seen (a Bayesian mean). So her image is the mean discount depth of her orders (the
share of list price she did not pay, less a fee revealed at checkout as she felt it), shrunk
towards none by ``prior_orders`` pseudo-orders at full price,

    image_n = image_(n-1) + (depth_n - image_(n-1)) / (prior_orders + n),

and her daily visit probability is multiplied by ``exp(visit_gain * image)``. A deep discount
on a second order moves a new customer's image by a third of its depth, an established
customer's (ten orders) by a twelfth; her reference price (:mod:`sim.mechanisms.reference_price`)
moves the other way, with weight growing with experience, which is the established customers'
loss. Sizes are assumptions (docs/MODEL.md gives what they produce). Neutral: ``visit_gain: 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
Image = NDArray[np.floating[Any]]  # stored as float32 per shopper


def learned_image(image: Image, depth: F64, orders_before: NDArray[np.int64], prior_orders: float) -> F64:
    """Her price image after an order at discount ``depth`` (share of list price not paid)."""
    return np.asarray(image + (depth - image) / (prior_orders + orders_before + 1.0), dtype=np.float64)


def image_visit_multiplier(image: Image, visit_gain: float) -> F64:
    """How her price image scales her daily visit probability."""
    return np.exp(visit_gain * image.astype(np.float64))
