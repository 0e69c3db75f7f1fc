"""Attrition moved by experience, contact fatigue and the win-back of lapsed shoppers.

Pareto/NBD attrition (Schmittlein, Morrison & Colombo 1987), the default: each shopper has a
dropout rate ``mu`` per day and a lifetime budget ``E ~ Exp(1)`` drawn at acquisition; every day
her hazard ``mu * m`` accumulates, and she churns once it reaches ``E``. Buying never adds to it.
The experience multiplier ``m`` is raised while her last delivery was late and by her streak
frustration, and lowered while her last delivery came on time and by tier perks
(:mod:`sim.mechanisms.tiers`). Events that can end a relationship at once add a lump of hazard
``-log(1 - p)``, which ends it with exactly probability ``p``: a late delivery
(``late_delivery_churn``) and, for sleeping dogs, being contacted at all (Ascarza, Iyengar &
Schleicher 2016). Because the budget is drawn once, a policy that changes nothing of her
experience leaves her churn day exactly where it was (common random numbers).

Delivery-experience surveys report that most shoppers are less likely to buy again after a
late delivery (e.g. Voxware 2017: 69% less likely after a delivery two or more days late). The
default 8% immediate hazard and x2 attrition are assumptions sized well below those stated
intentions; the 10% relief after an on-time delivery and the frustration weight are
assumptions too. BG/NBD's dropout after each repeat purchase (Fader, Hardie & Lee 2005) is
kept, moved by the same multiplier, for reproducing that model's papers (CDNOW).

A churned shopper reached by an incentive at her lapsing decision comes back with a
probability that rises with the offer's dollar value, with diminishing returns up to a ceiling,
and varies across shoppers (Thomas, Blattberg & Fox 2004: reacquisition depends on the offer);
an offer worth nothing (a streak freeze) brings no one back.
Neutral: every weight set to 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def experience_multiplier(
    last_delivery_late: NDArray[np.bool_],
    delivered_before: NDArray[np.bool_],
    frustration: F64,
    late_multiplier: float,
    on_time_relief: float,
    frustration_weight: float,
) -> F64:
    """How her delivery experience and streak frustration scale her attrition."""
    on_time = delivered_before & ~last_delivery_late
    factor = (1.0 + late_multiplier * last_delivery_late) * (1.0 - on_time_relief * on_time)
    return factor * (1.0 + frustration_weight * frustration)


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
    factor = experience_multiplier(
        last_delivery_late, delivered_before, frustration, late_multiplier, on_time_relief, frustration_weight
    )
    return np.minimum(1.0, base * factor)


def lump_hazard(probability: F64 | float) -> F64:
    """Hazard that ends a relationship with ``probability`` at once: ``-log(1 - p)`` (inf at 1)."""
    with np.errstate(divide="ignore"):
        return np.asarray(-np.log1p(-np.asarray(probability, dtype=np.float64)))


def winback_probability(value_dollars: F64, sensitivity: F64, ceiling: float, value_scale: float) -> F64:
    """Chance an offer worth ``value_dollars`` brings a churned shopper back (concave, capped)."""
    return ceiling * -np.expm1(-np.maximum(value_dollars, 0.0) * sensitivity / value_scale)
