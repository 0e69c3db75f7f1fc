"""Daily-visit streaks: loss-weighted fear of breaking them, frustration when they break.

A streak counts consecutive days with a visit. Its pull on visiting grows with its length,
loss-weighted as a threatened loss: ``weight * streak_sensitivity * v_loss(min(streak, cap) / cap)``
with the prospect value of :mod:`sim.mechanisms.prospect`. It multiplies the visit hazard by
``exp(pull)``. A broken streak lowers later engagement (Silverman & Barasch 2023): the lost
length, again loss-weighted, becomes frustration, which divides the visit hazard by
``exp(frustration)`` and halves every ``frustration_half_life_days``.

What happens on a missed day is the shop's design choice (``missed_day_rule``): ``reset`` to
zero, the "streak punishment" anti-pattern that maximizes the loss; ``decay`` keeps a share;
``freeze`` keeps the streak. A streak freeze (earned or given as an incentive) turns one
missed day into a kept streak. Shorter runs than ``min_days`` are not shown as streaks, so
they neither pull nor hurt when lost. Neutral: ``weight: 0``, ``break_penalty: 0``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from sim.mechanisms.prospect import prospect_value

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
MissedDayRule = Literal["reset", "decay", "freeze"]


def streak_after_miss(streak: I64, rule: MissedDayRule, decay_keep: float) -> I64:
    """The streak length a shop's rule leaves after one missed day."""
    if rule == "reset":
        return np.zeros_like(streak)
    if rule == "decay":
        return np.floor(streak * decay_keep).astype(np.int64)
    return streak.copy()


def loss_weight(
    length: F64, cap_days: float, min_days: int, loss_aversion: F64, alpha: float, beta: float
) -> F64:
    """Loss-weighted size of losing ``length`` streak days (0 below ``min_days``, lambda at the cap)."""
    counted = np.where(length >= min_days, np.minimum(length, cap_days), 0.0)
    return -prospect_value(-counted / cap_days, loss_aversion, alpha, beta)


def visit_hazard_multiplier(
    streak: I64,
    frustration: F64,
    streak_sensitivity: F64,
    loss_aversion: F64,
    weight: float,
    cap_days: float,
    min_days: int,
    alpha: float,
    beta: float,
) -> F64:
    """Factor on the daily visit hazard: streak pull up, frustration down."""
    exponent = -frustration
    shown = np.flatnonzero(streak >= min_days)  # most shoppers have no streak: skip their powers
    if weight > 0 and shown.size:
        length = streak[shown].astype(np.float64)
        weights = loss_weight(length, cap_days, min_days, loss_aversion[shown], alpha, beta)
        exponent = exponent + np.bincount(shown, weight * streak_sensitivity[shown] * weights, streak.size)
    return np.exp(exponent)
