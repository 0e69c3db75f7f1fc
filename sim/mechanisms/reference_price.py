"""Reference prices and promotion dependence (Mela, Gupta & Lehmann 1997).

Each shopper's reference price for a basket is its list value times her reference ratio, an
exponentially smoothed average of the share of list price she actually paid (smoothing 0.3,
i.e. carry-over 0.7, within the range of reference-price models reviewed by Kalyanaram &
Winer 1995). Discount-heavy histories therefore lower the reference, so full price then feels
like a loss. Her price sensitivity also grows with the smoothed share of her purchases made on
promotion: Mela et al. find long-run promotion exposure makes consumers more price and
promotion sensitive. This is the long-run cost of coupons that a myopic policy ignores.
Neutral: ``smoothing: 0``, ``promo_sensitivity: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def update_reference(
    reference_ratio: F64,
    promo_share: F64,
    paid_ratio: F64,
    on_promotion: NDArray[np.bool_],
    smoothing: F64 | float,
) -> tuple[F64, F64]:
    """Smooth the paid/list ratio and the promotion share after a purchase."""
    new_reference = (1.0 - smoothing) * reference_ratio + smoothing * paid_ratio
    new_promo = (1.0 - smoothing) * promo_share + smoothing * on_promotion
    return new_reference, new_promo


def effective_price_sensitivity(price_sensitivity: F64, promo_share: F64, promo_sensitivity: float) -> F64:
    """Price sensitivity raised by a history of buying on promotion."""
    return price_sensitivity * (1.0 + promo_sensitivity * promo_share)


def faded(value: F64, target: F64 | float, half_life_days: float, days: F64 | float) -> F64:
    """``value`` after drifting ``days`` towards ``target`` with the given half-life (calendar time)."""
    return target + (value - target) * np.exp2(-np.asarray(days, dtype=np.float64) / half_life_days)


def update_weight(smoothing: float, orders_before: NDArray[np.int64], established_orders: int) -> F64:
    """How much a purchase moves her reference: growing with experience (Anderson & Simester 2004)."""
    return smoothing * np.minimum(1.0, (orders_before + 1.0) / established_orders)
