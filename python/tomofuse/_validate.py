"""Argument checks shared by the stage packages (one wording for one rule)."""

from __future__ import annotations

import math
import numbers

__all__ = ["positive_length"]


def positive_length(value, name: str) -> float:
    """``value`` as a float if it is a positive, finite length in metres.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools included).
    ValueError
        If it is not finite and positive.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in metres, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive length in metres, got {value!r}")
    return v
