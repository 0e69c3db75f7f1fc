"""Purchase timing: a need that depletes at each order and recovers (Van Heerde, Gupta & Wittink 2003).

A session fills a cart with her calibrated probability times ``(1 - depletion * exp(-age /
restock_days)) / norm``, where ``age`` is the days since her last order. ``norm = 1 - depletion *
x / (1 + x)`` with ``x = rate * restock_days`` is the factor's time average when her orders come
at her purchase rate (exponential gaps), so her long-run purchase rate stays calibrated. An
order an incentive pulls forward therefore lowers the chance of the next one soon after: part
of a promotion's bump is acceleration, part incremental (Van Heerde, Gupta & Wittink 2003
attribute roughly a third of a bump to acceleration; depletion 0.5 and a 14-day restock are
assumptions sized in that range).
Neutral: ``depletion: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def need_factor(age_days: F64, rate_per_day: F64, depletion: float, restock_days: float) -> F64:
    """Multiplier of the cart probability ``age_days`` after her last order (mean 1 over her gaps)."""
    x = rate_per_day * restock_days
    norm = 1.0 - depletion * x / (1.0 + x)
    return (1.0 - depletion * np.exp(-np.maximum(age_days, 0.0) / restock_days)) / norm
