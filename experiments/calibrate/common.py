"""What every step of ``shopgym calibrate`` shares: units, types, the error and the warning."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
Attrition = Literal["pareto_nbd", "bgnbd"]
DuplicatePolicy = Literal["keep", "drop", "error"]

DAYS_PER_WEEK = 7
#: Longest excerpt of a user's value (a cell, an option) echoed in a message.
ECHO_CHARS = 40


class CalibrationError(ValueError):
    """A log could not be calibrated; the message names the column or value and the fix."""


class CalibrationWarning(UserWarning):
    """Something in a calibration deserves the user's attention; the calibration went on."""


def shown(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr`` of a user's value, cut to ``limit`` characters: messages name values, not files."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."
