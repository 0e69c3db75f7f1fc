"""Onboarding: early attrition and habit formation.

New customers leave fastest: in customer-base data the first weeks after acquisition hold the
most defections (Fader & Hardie's shifted-beta-geometric retention curves; Reichheld & Sasser
1990 on the value of getting past them). Part of that pattern is sorting, which the Pareto/NBD's
heterogeneous dropout rates already produce; the rest is habit. Repeat purchases build a habit
that carries later buying and lowers defection (Shah, Kumar & Kim 2014: habitual buying
persists; Wood & Neal 2009 on habits cued by context). So a shopper's attrition is multiplied by
``1 + early_attrition * exp(-repeats / habit_orders)``: highest before her first repeat order,
and an incentive that brings that order about moves her hazard as a cause. Sizes are
assumptions. Neutral: ``early_attrition: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def habit_multiplier(orders: NDArray[np.int64], early_attrition: float, habit_orders: float) -> F64:
    """How her lack of habit scales her attrition, from her orders so far (the first is her trial)."""
    repeats = np.maximum(orders - 1, 0).astype(np.float64)
    return 1.0 + early_attrition * np.exp(-repeats / habit_orders)
