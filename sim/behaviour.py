"""Pure, vectorized behavioural functions: arrival timing and the checkout decision.

Each function works on whole arrays of shoppers and takes no hidden state, so it can be
tested alone and swapped for ablations.

Checkout is a binary logit in the relative gap between what the shopper would pay and the
cart's reference value: ``P(buy) = sigmoid(logit(c0) - eta * (pay - reference) / reference)``.
``c0`` is the conversion when paying exactly the reference (``checkout_conversion_at_reference``)
and ``eta`` the shopper's price sensitivity; with ``eta`` near 3.7 the elasticity of conversion
at a 30% conversion is -2.62, the mean price elasticity of Bijmolt, van Heerde & Pieters (2005).
Shipping fees enter as part of ``pay``, which makes them the main driver of abandonment
(Baymard Institute: extra costs are the top reason, ~70% of carts abandoned). Paying above the
reference is a loss, weighted by the shopper's loss aversion (:mod:`sim.mechanisms.prospect`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def logit(p: float) -> float:
    """Log-odds of a probability in (0, 1)."""
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return float(np.log(p / (1.0 - p)))


def checkout_probability(
    base_logit: FloatArray | float,
    price_sensitivity: FloatArray,
    pay: FloatArray,
    reference: FloatArray,
    loss_aversion: FloatArray | float = 1.0,
) -> FloatArray:
    """Probability of completing checkout given the amount to pay and the reference value.

    Paying above the reference is a loss and weighs ``loss_aversion`` times more than an
    equal saving below it (prospect theory, linear in the relative gap).
    """
    gap = (pay - reference) / reference
    weighted = np.where(gap > 0.0, loss_aversion * gap, gap)
    with np.errstate(over="ignore"):  # a hopeless cart: exp overflows to inf, the probability to 0
        return 1.0 / (1.0 + np.exp(price_sensitivity * weighted - base_logit))


def shipping_fee(basket: FloatArray, fee: float, free_threshold: float) -> FloatArray:
    """The shipping fee a shopper is charged: ``fee`` below the free-shipping threshold, else 0."""
    return np.where(basket >= free_threshold, 0.0, fee)


def hours_from_uniform(u: FloatArray, hour_cdf: FloatArray) -> FloatArray:
    """Map uniforms to hours of the day through the piecewise-uniform diurnal profile's CDF.

    ``hour_cdf`` has 25 entries from 0 to 1; hour h covers ``[cdf[h], cdf[h+1])``.
    """
    hour = np.searchsorted(hour_cdf, u, side="right") - 1
    hour = np.clip(hour, 0, 23)
    width = hour_cdf[hour + 1] - hour_cdf[hour]
    frac = np.divide(u - hour_cdf[hour], width, out=np.zeros_like(u), where=width > 0)
    return hour + np.clip(frac, 0.0, np.nextafter(1.0, 0.0))


def expected_orders_per_cart(checkout: FloatArray, return_rate: float) -> FloatArray:
    """Orders per cart when abandoned carts come back at ``return_rate`` and decide again."""
    return checkout + (1.0 - checkout) * return_rate * checkout
