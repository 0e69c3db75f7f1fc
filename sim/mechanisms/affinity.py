"""Incentive types: hedonic perks, surprise rewards and each shopper's affinity for a type.

Every incentive has a type: hedonic, utilitarian, social or surprise (DESIGN.md). Shoppers
draw Dirichlet affinities over the four, and an offer's appeal is scaled by
``1 + affinity_weight * (4 * affinity[type] - 1)``, which is 1 on average. Hedonic rewards
are valued above their cost to the shop: Kivetz & Simonson (2002) show consumers prefer
hedonic luxury rewards to cash of equal value when effort is high, so a ``tier_perk`` costs
``perk_cost_ratio`` of its perceived value. Its appeal is eroded by tier inflation
(:mod:`sim.mechanisms.tiers`). Uncertain rewards can motivate as much as their best outcome
(Goldsmith & Amir 2010), so a ``surprise_box`` pulls with its expected value times
``1 + uncertainty_premium``; the gift the shop actually pays for is drawn from U(0.5, 1.5) x
value. Neutral: ``affinity_weight: 0``, ``uncertainty_premium: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

TYPE_COLUMN = {"hedonic": 0, "utilitarian": 1, "social": 2, "surprise": 3}


def affinity_factor(affinity: NDArray[np.float32], type_column: NDArray[np.int64], weight: float) -> F64:
    """Appeal multiplier of each offer for its shopper (mean 1; 1 for everyone at weight 0)."""
    share = affinity[np.arange(type_column.size), np.maximum(type_column, 0)].astype(np.float64)
    return np.where(type_column >= 0, 1.0 + weight * (4.0 * share - 1.0), 1.0)


def surprise_value(expected: F64, u: F64) -> F64:
    """The gift actually inside a surprise box: uniform between half and one and a half times its value."""
    return expected * (0.5 + u)
