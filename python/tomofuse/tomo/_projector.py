"""Parallel-beam projector pair (exact intersection lengths) on the core's ray walker."""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import numpy as np

from .. import _core

__all__ = ["project", "backproject"]


def _float_array(a, name: str, ndim: int) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    dtype = np.float64 if a.dtype == np.float64 else np.float32
    a = np.ascontiguousarray(a, dtype=dtype)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return a


def _angles(angles, n: Optional[int] = None) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(angles, dtype=np.float64).reshape(-1))
    if a.size == 0:
        raise ValueError("angles must not be empty")
    if not np.all(np.isfinite(a)):
        raise ValueError("angles must be finite (radians)")
    if n is not None and a.size != n:
        raise ValueError(f"angles: expected {n} angles (one per projection), got {a.size}")
    return a


def _offset(center_offset) -> float:
    if isinstance(center_offset, bool) or not isinstance(center_offset, numbers.Real) \
            or not math.isfinite(center_offset):
        raise ValueError(f"center_offset must be a finite number of pixels, got {center_offset!r}")
    return float(center_offset)


def project(volume: np.ndarray, angles, *, center_offset: float = 0.0, n_cols: Optional[int] = None,
            threads: Optional[int] = None) -> np.ndarray:
    """Parallel-beam projections of a volume: exact-length line integrals.

    The rotation axis is z through the centre of each (y, x) slice; at angle
    ``theta`` the rays run along ``(x, y) = (-sin theta, cos theta)`` and the
    detector axis is ``(cos theta, sin theta)``.  Each ray's integral is the sum
    of voxel values times the exact lengths of the ray inside the voxels
    (Siddon), walked by the core's Amanatides-Woo traversal.

    Parameters
    ----------
    volume : (z, y, x) ndarray
        float32 (float64 is kept; other real dtypes become float32).
    angles : (A,) array_like
        Projection angles in radians.
    center_offset : float
        Shift of the rotation axis from the detector centre, in pixels.
    n_cols : int, optional
        Detector width in pixels (default: ``x`` size of the volume).
    threads : int, optional
        Threads of the core (None = tomofuse default).

    Returns
    -------
    projections : (A, z, n_cols) ndarray
        Line integrals in voxel lengths (multiply by the voxel size for metres).
    """
    vol = _float_array(volume, "volume", 3)
    th = _angles(angles)
    cols = vol.shape[2] if n_cols is None else int(n_cols)
    if cols <= 0:
        raise ValueError(f"n_cols must be positive, got {n_cols!r}")
    return _core.project(vol, th, n_cols=cols, center_offset=_offset(center_offset),
                         threads=0 if threads is None else int(threads))


def backproject(projections: np.ndarray, angles, *, shape: Optional[Sequence[int]] = None,
                center_offset: float = 0.0, threads: Optional[int] = None) -> np.ndarray:
    """The exact adjoint of ``project``: spread every ray over the voxels it crosses.

    ``<project(x), y> == <x, backproject(y)>`` to rounding.  (Filtered back
    projection for reconstruction builds on this geometry.)

    Parameters
    ----------
    projections : (A, z, n_cols) ndarray
        float32 or float64.
    angles : (A,) array_like
        Radians, one per projection.
    shape : (y, x) ints, optional
        In-plane size of the volume (default: ``(n_cols, n_cols)``).
    center_offset : float
        As in ``project``.
    threads : int, optional
        Threads of the core; results do not depend on it.

    Returns
    -------
    volume : (z, y, x) ndarray
    """
    proj = _float_array(projections, "projections", 3)
    th = _angles(angles, proj.shape[0])
    if shape is None:
        ny = nx = proj.shape[2]
    else:
        dims = tuple(int(s) for s in shape)
        if len(dims) != 2 or min(dims) <= 0:
            raise ValueError(f"shape must be two positive ints (y, x), got {shape!r}")
        ny, nx = dims
    return _core.backproject(proj, th, ny=ny, nx=nx, center_offset=_offset(center_offset),
                             threads=0 if threads is None else int(threads))
