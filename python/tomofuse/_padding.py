"""Padding for FFT-based filters: a periodic extension without a jump at the wrap-around."""

from __future__ import annotations

import numpy as np

__all__ = ["periodic_pad"]


def periodic_pad(a: np.ndarray, axis: int, total: int) -> np.ndarray:
    """Extend ``a`` along ``axis`` to length ``total`` by a linear blend from its last to its first sample.

    A discrete Fourier transform treats the frame as periodic; padding with
    edge values still leaves a jump where the last sample meets the first,
    whose ringing (~ jump / (pi distance)) reaches deep into the frame when
    the spectrum is filtered or phase-shifted.  The blend makes the periodic
    extension continuous, so only a slope discontinuity remains.  The frame
    keeps indices ``0 .. n-1``; negative positions wrap into the end of the pad.

    Parameters
    ----------
    a : ndarray
    axis : int
    total : int
        Padded length, ``>= a.shape[axis]``.
    """
    n = a.shape[axis]
    extra = total - n
    if extra < 0:
        raise ValueError(f"total must be >= {n}, got {total}")
    if extra == 0:
        return a
    first = np.take(a, [0], axis=axis)
    last = np.take(a, [n - 1], axis=axis)
    shape = [1] * a.ndim
    shape[axis] = extra
    t = (np.arange(1, extra + 1, dtype=np.float64) / (extra + 1)).reshape(shape)
    blend = last + (first - last) * t
    return np.concatenate([a, blend.astype(np.result_type(a.dtype, blend.dtype), copy=False)], axis=axis)
