"""Churn modulation: delivery experience and win-back.

BG/NBD dropout after each repeat order (Fader, Hardie & Lee 2005) is raised when the
shopper's last delivery was late, and a late delivery can end an active shopper's relationship
on the spot. Delivery-experience surveys report that most shoppers are less likely to buy
again after a late delivery (e.g. Voxware 2017: 69% less likely after a delivery two or more
days late). The default 8% immediate hazard and x2 dropout are assumptions sized well below
those stated intentions. A churned shopper who receives an incentive at a lapsing decision
comes back with probability ``winback_rate``. Neutral: all three set to 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def dropout_probability(base: F64, last_delivery_late: NDArray[np.bool_], late_multiplier: float) -> F64:
    """BG/NBD dropout after an order, raised after a late delivery."""
    return np.minimum(1.0, base * (1.0 + late_multiplier * last_delivery_late))
