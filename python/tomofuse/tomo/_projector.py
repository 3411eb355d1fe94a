"""Parallel-beam projector pair (exact intersection lengths) on the core's ray walker."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .. import _core
from .. import _validate as check

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
    return check.angles(angles, n)


def _offset(center_offset) -> float:
    return check.number(center_offset, "center_offset", unit="pixels")


def slice_shape(shape, cols: int) -> tuple[int, int]:
    """The reconstructed slice size ``(y, x)``; None = ``(cols, cols)``."""
    if shape is None:
        return cols, cols
    return check.ints(shape, "shape", length=2, minimum=1, expected="two positive ints (y, x)")


def project(volume: np.ndarray, angles, *, center_offset: float = 0.0, n_cols: Optional[int] = None,
            threads: Optional[int] = None) -> np.ndarray:
    """Parallel-beam projections of a volume: exact-length line integrals.

    The rotation axis is z through the center of each (y, x) slice; at angle
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
        Shift of the rotation axis from the detector center, in pixels.
    n_cols : int, optional
        Detector width in pixels (default: ``x`` size of the volume).
    threads : int, optional
        Threads of the core (None = the package default); results do not depend on it.

    Returns
    -------
    projections : (A, z, n_cols) ndarray
        Line integrals in voxel lengths (multiply by the voxel size for meters).
    """
    vol = _float_array(volume, "volume", 3)
    th = _angles(angles)
    cols = vol.shape[2] if n_cols is None else check.integer(n_cols, "n_cols", minimum=1)
    return _core.project(vol, th, n_cols=cols, center_offset=_offset(center_offset),
                         threads=check.threads(threads))


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
    ny, nx = slice_shape(shape, proj.shape[2])
    return _core.backproject(proj, th, ny=ny, nx=nx, center_offset=_offset(center_offset),
                             threads=check.threads(threads))
