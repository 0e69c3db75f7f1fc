"""Dark patterns: an incentive dressed up with a hidden cost or a forced opt-in, and lost trust.

A *hidden cost* (drip pricing) shows the incentive's terms up front and adds a fee of
``hidden_fee_share`` of the basket only at checkout. Shoppers who have come that far weigh a fee
revealed late less than a price shown early: in Blake, Moshary, Sweeney & Tadelis (2021),
StubHub's buyers shown fees only at checkout bought about 14% more often and spent more at the
same total price. Here the late fee enters her buying decision with weight
``hidden_fee_salience`` (an assumption sized to that lift) while the shop collects all of it.

A *forced opt-in* (a pre-ticked box) enrols her in the offer whether she would have chosen it or
not: her response to it is at least ``opt_in_response``. Luguri & Strahilevitz (2021) found mild
dark patterns more than doubled acceptance of an offer (11% to 26%) and aggressive ones
nearly quadrupled it.

Both cost trust once she sees the bill: each order charged a hidden fee takes
``trust_loss_hidden_cost`` of her remaining trust, each order under a forced opt-in
``trust_loss_opt_in``; Luguri & Strahilevitz report the backlash
(annoyance, lower intent) to aggressive patterns. Lost trust raises her attrition
(``1 + distrust_attrition * (1 - trust)``) and scales down her response to every later offer
(``response * trust``). Their sizes are assumptions. Neutral: both trust losses 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

#: Codes of ``IncentiveSpec.dark_pattern`` in the incentive catalogue.
DARK_PATTERN_CODES = {"none": 0, "hidden_cost": 1, "forced_opt_in": 2}


def felt_hidden_fee(fee: F64, salience: float) -> F64:
    """The part of a fee revealed at checkout that weighs in her decision to buy."""
    return salience * fee


def lost_trust(trust: NDArray[np.float32], loss: float) -> NDArray[np.float32]:
    """Her trust after one more dark pattern: each takes ``loss`` of what is left."""
    return (trust * np.float32(1.0 - loss)).astype(np.float32)


def distrust_multiplier(trust: NDArray[np.float32], weight: float) -> F64:
    """How lost trust scales her attrition (1 while she trusts the shop fully)."""
    return 1.0 + weight * (1.0 - trust.astype(np.float64))


def forced_response(response: F64, opt_in_response: float) -> F64:
    """Her response to an offer she was opted into unasked: at least ``opt_in_response``."""
    return np.maximum(response, opt_in_response)
