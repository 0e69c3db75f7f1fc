"""Churn modulation: delivery experience, streak frustration and win-back.

BG/NBD dropout after each repeat order (Fader, Hardie & Lee 2005) is raised when the
shopper's last delivery was late and by her streak frustration, and lowered when her last
delivery came on time (tier perks lower it too, :mod:`sim.mechanisms.tiers`). A late delivery
can also end an active shopper's relationship on the spot. Delivery-experience surveys report
that most shoppers are less likely to buy again after a late delivery (e.g. Voxware 2017: 69%
less likely after a delivery two or more days late). The default 8% immediate hazard and x2
dropout are assumptions sized well below those stated intentions; the 10% relief after an
on-time delivery and the frustration weight are assumptions too. A churned shopper who
receives an incentive at a lapsing decision comes back with probability ``winback_rate``.
Neutral: every weight set to 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def dropout_probability(
    base: F64,
    last_delivery_late: NDArray[np.bool_],
    delivered_before: NDArray[np.bool_],
    frustration: F64,
    late_multiplier: float,
    on_time_relief: float,
    frustration_weight: float,
) -> F64:
    """BG/NBD dropout after an order, moved by the last delivery and by streak frustration."""
    on_time = delivered_before & ~last_delivery_late
    factor = (1.0 + late_multiplier * last_delivery_late) * (1.0 - on_time_relief * on_time)
    return np.minimum(1.0, base * factor * (1.0 + frustration_weight * frustration))
