"""Loyalty tiers: the goal gradient and perks (Kivetz, Urminsky & Zheng 2006; Nunes & Dreze 2006).

Shoppers buy more often as they near the next tier: Kivetz et al. find purchase frequency
accelerates as customers approach a reward, and inter-purchase times shrink by roughly a fifth
near the goal. The visit hazard is multiplied by ``1 + goal_gradient * progress ** 2``, where
``progress`` in [0, 1) is the share of the way from the current tier's spend threshold to the
next. Shoppers in upper tiers enjoy perks that make them less likely to drop out. A perk's
worth shrinks as the tier fills up ("tier inflation": status is worth less when everyone has
it; Nunes & Dreze 2006), so its dropout relief is ``perk_dropout_relief * tier / top tier *
(1 - inflation * share of shoppers at or above that tier)``.

Tiers are kept for a membership period (365 days) and then requalified on that period's
spend, so a tier can be lost. In the ``downgrade_warning_days`` before requalification, a
shopper whose spend so far would drop her ``k`` of ``top`` tiers feels it as a loss (prospect
theory, :mod:`sim.mechanisms.prospect`): her visit hazard is multiplied by
``exp(downgrade_weight * lambda * (k / top) ** beta)``. Neutral: ``goal_gradient: 0``,
``perk_dropout_relief: 0``, ``downgrade_weight: 0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def tier_progress(spend: F64, tier: NDArray[np.int8], thresholds: F64) -> F64:
    """Share of the way from the current tier's threshold to the next; 0 in the top tier."""
    top = len(thresholds) - 1
    lower = thresholds[tier]
    upper = thresholds[np.minimum(tier + 1, top)]
    span = np.where(tier < top, upper - lower, 1.0)
    return np.where(tier < top, np.clip((spend - lower) / span, 0.0, 1.0), 0.0)


def goal_gradient_multiplier(progress: F64, goal_gradient: float) -> F64:
    """Factor on the visit hazard that grows as the next tier comes near."""
    return 1.0 + goal_gradient * progress**2


def tier_of(spend: F64, thresholds: F64) -> NDArray[np.int8]:
    """The tier a spend qualifies for."""
    return (np.searchsorted(thresholds, spend, side="right") - 1).astype(np.int8)


def downgrade_threat_multiplier(
    tier: NDArray[np.int8],
    qualifying_tier: NDArray[np.int8],
    in_warning: NDArray[np.bool_],
    loss_aversion: F64,
    top_tier: int,
    weight: float,
    beta: float,
) -> F64:
    """Factor on the visit hazard of shoppers about to lose tiers at requalification."""
    levels_lost = np.where(in_warning, np.maximum(tier - qualifying_tier, 0), 0) / max(top_tier, 1)
    return np.exp(weight * loss_aversion * levels_lost**beta)


def perk_dropout_relief(
    tier: NDArray[np.int8], share_at_or_above: F64, top_tier: int, relief: float, inflation: float
) -> F64:
    """Share by which a tier's perk lowers dropout, eroded as the tier fills up."""
    if top_tier == 0:
        return np.zeros(tier.size)
    worth = 1.0 - inflation * share_at_or_above[tier]
    return relief * tier / top_tier * np.clip(worth, 0.0, 1.0)
