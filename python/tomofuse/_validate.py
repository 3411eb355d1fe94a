"""Argument checks shared by the stage packages (one wording for one rule)."""

from __future__ import annotations

import math
import numbers

__all__ = ["positive_length", "positive_number"]


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


def positive_number(value, name: str, unit: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (>= 0 with ``allow_zero``) in ``unit``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools included).
    ValueError
        If it is not finite, or negative, or zero without ``allow_zero``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {unit}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite ({unit}), "
                         f"got {value!r}")
    return v
