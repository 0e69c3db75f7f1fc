"""Free-shipping thresholds: baskets bunch just above them (Lewis, Singh & Fay 2006).

A shopper whose basket falls a little short of the free-shipping threshold (at most
``max_gap_fee_multiple`` shipping fees short) adds items to reach it with probability
``topup_prob``, overshooting by up to ``overshoot_max`` dollars. Lewis et al. show order size
responds strongly to shipping-fee schedules; the bunching shows in the order-value
distribution. Neutral: ``topup_prob: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def topped_up_basket(
    basket: F64,
    u: F64,
    fee: float,
    threshold: float,
    topup_prob: float,
    max_gap_fee_multiple: float,
    overshoot_max: float,
) -> F64:
    """Basket values after shoppers close below the threshold top up (``u`` uniform per cart)."""
    gap = threshold - basket
    eligible = (fee > 0.0) & (gap > 0.0) & (gap <= max_gap_fee_multiple * fee)
    tops_up = eligible & (u < topup_prob)
    # Conditional on topping up, u / topup_prob is uniform on [0, 1): reuse it for the overshoot.
    overshoot = np.divide(u, topup_prob, out=np.zeros_like(u), where=tops_up) * overshoot_max
    return np.where(tops_up, threshold + overshoot, basket)
