"""Loss aversion: the prospect-theory value function and framed incentives.

Gains are valued ``x ** alpha``, losses ``-lambda * (-x) ** beta``, relative to a reference
point (Tversky & Kahneman 1992: alpha = beta = 0.88, lambda = 2.25; Brown, Imai, Vieider &
Camerer 2021: mean lambda 1.8-2.1 across 607 estimates). Following Novemsky & Kahneman (2005),
it applies to deviations from a reference (a price above the reference price, points that
will expire, a threatened streak or tier) and not to ordinary spending at the reference.

Consequence: a loss-framed offer ("your 500 points expire Sunday unless you order") pulls
harder than a gain-framed offer of equal face value ("earn 500 bonus points"): not buying
forfeits ``lambda * v(x)`` instead of missing ``v(x)``. Neutral: lambda = 1 for everyone
(``population.loss_aversion: {mean: 1, cv: 0}``), where the two framings are identical.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def prospect_value(x: F64, loss_aversion: F64 | float, alpha: float, beta: float) -> F64:
    """Prospect-theory value of outcomes ``x`` (gains positive, losses negative)."""
    if alpha == beta:  # one power for both sides (the usual case, and much cheaper)
        magnitude = np.abs(x) ** alpha
        return np.where(x >= 0.0, magnitude, -loss_aversion * magnitude)
    gains = np.maximum(x, 0.0) ** alpha
    losses = np.maximum(-x, 0.0) ** beta
    return gains - loss_aversion * losses


def framed_offer_pull(
    value_dollars: F64, loss_framed: NDArray[np.bool_], loss_aversion: F64, alpha: float, beta: float
) -> F64:
    """Dollar-equivalent pull of an offer on the buy decision, given its framing.

    Gain-framed: buying gains ``v(x)``. Loss-framed: not buying loses ``x``, so buying avoids
    ``-v(-x) = lambda x^beta``.
    """
    gain = prospect_value(value_dollars, 1.0, alpha, beta)
    avoided_loss = -prospect_value(-value_dollars, loss_aversion, alpha, beta)
    return np.where(loss_framed, avoided_loss, gain)
