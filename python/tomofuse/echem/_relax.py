"""Aitken's dynamic relaxation of a fixed-point iteration (shared by the time steps and the steady states)."""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["aitken"]


def aitken(omega: float, r: np.ndarray, r_prev: Optional[np.ndarray], *, largest: float,
           smallest: float = 0.1) -> float:
    """The relaxation factor of the next update ``x + omega r`` (Irons & Tuck 1969).

    ``r`` is the fixed-point residual ``g(x) - x`` of this iteration and
    ``r_prev`` that of the last one (None on the first): the factor follows
    the secant of the two, which speeds up a monotone contraction (omega > 1)
    and damps an oscillating one (omega < 1).

    Parameters
    ----------
    omega : float
        The last factor (1 to start).
    r, r_prev : (n,) ndarray
        Residuals of this and of the last iteration.
    largest, smallest : float
        Bounds of the factor.

    Returns
    -------
    float
    """
    if r_prev is None:
        return omega
    dr = r - r_prev
    den = float(np.dot(dr, dr))
    if not den > 0:
        return omega
    return min(largest, max(smallest, -omega * float(np.dot(r_prev, dr)) / den))
