"""Modified filtered back-projection of wrapped phase: Hilbert-filtered phase derivative."""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np

from .. import _core
from .. import _validate as check
from .._progress import Progress
from ._fbp import center_offset, padded_width, ramp_filter, slice_shape
from ._projector import _angles

__all__ = ["fbp_phase_derivative", "phase_derivative", "derivative_filter"]

logger = logging.getLogger(__name__)


def _phase_array(phase) -> np.ndarray:
    """Validate ``phase`` (real phase or complex transmission), shape (A, rows, cols)."""
    if not isinstance(phase, np.ndarray):
        raise TypeError(f"phase must be a numpy.ndarray, got {type(phase).__name__}")
    if phase.ndim != 3:
        raise ValueError(f"phase must have 3 dimensions (angle, row, column), got shape {phase.shape}")
    if phase.size == 0:
        raise ValueError(f"phase must not be empty, got shape {phase.shape}")
    if not (np.issubdtype(phase.dtype, np.floating) or np.issubdtype(phase.dtype, np.integer)
            or np.issubdtype(phase.dtype, np.complexfloating)):
        raise TypeError(f"phase must hold real (phase, rad) or complex (transmission) numbers, "
                        f"got dtype {phase.dtype}")
    if phase.shape[2] < 2:
        raise ValueError(f"phase needs at least 2 columns to differentiate, got shape {phase.shape}")
    if not np.all(np.isfinite(phase)):
        raise ValueError("phase must be finite (found NaN or inf)")
    return phase


def phase_derivative(phase: np.ndarray) -> np.ndarray:
    """Wrap-free forward difference of the phase along the detector columns.

    ``d[..., c] = arg exp(i (phi[c+1] - phi[c]))`` for real (wrapped or not)
    phase, ``arg(T[c+1] conj(T[c]))`` for a complex transmission ``T``: the
    difference of the unwrapped phase whenever neighboring pixels differ by
    less than pi, so phase wraps (multiples of 2 pi) and a constant offset
    vanish.  ``d[..., c]`` sits between pixels ``c`` and ``c + 1`` (detector
    position ``c + 1`` in the convention of ``fbp``, where pixel ``c`` is
    centered at ``c + 0.5``).

    Parameters
    ----------
    phase : (..., cols) ndarray
        Phase in radians (real) or complex transmission.

    Returns
    -------
    (..., cols - 1) ndarray of float64
        Radians per pixel.
    """
    if np.iscomplexobj(phase):
        t = np.asarray(phase, dtype=np.complex128)
        return np.angle(t[..., 1:] * np.conj(t[..., :-1]))
    p = np.asarray(phase, dtype=np.float64)
    return np.remainder(p[..., 1:] - p[..., :-1] + math.pi, 2 * math.pi) - math.pi


def derivative_filter(n: int, *, filter: str = "ramp") -> np.ndarray:
    """Frequency response (length ``n // 2 + 1``, ``rfft`` order) applied to a forward difference.

    With ``R(f)`` the FBP filter of ``ramp_filter`` (band-limited ramp times the
    window ``W``) and the transfer function of the forward difference
    ``D(f) = exp(2 pi i f) - 1 = 2 i sin(pi f) exp(i pi f)`` (``f`` in cycles per
    pixel), ``H = R / D`` turns the difference of the phase into the ramp-filtered
    phase exactly:

    ``H(f) = -i sgn(f) W(f) / (2 pi) * exp(-i pi f) * (pi f / sin(pi f))``,

    i.e. the Hilbert kernel of Guizar-Sicairos et al. (the derivative times
    ``-i sgn(f) / (2 pi)`` is ``|f|``), the half-pixel shift back from the
    difference's midpoints to the pixel centers, and the exact inverse of the
    difference's ``sin(pi f) / (pi f)`` roll-off.  ``H(0) = 0``: a derivative
    has no zero frequency (``fbp_phase_derivative`` restores it separately).

    Parameters
    ----------
    n : int
        Padded detector width (``>= 2``).
    filter : str
        One of ``FILTERS``.

    Returns
    -------
    (n // 2 + 1,) ndarray of complex128
    """
    n = check.integer(n, "n", minimum=2)
    r = ramp_filter(n, filter=filter)[: n // 2 + 1]
    m = np.arange(n // 2 + 1)
    d = np.expm1(2j * math.pi * m / n)
    h = np.zeros(n // 2 + 1, dtype=np.complex128)
    h[1:] = r[1:] / d[1:]
    return h


def fbp_phase_derivative(phase: np.ndarray, angles, *, center: Optional[float] = None, filter: str = "ramp",
                         padding: bool = True, shape: Optional[Sequence[int]] = None,
                         threads: Optional[int] = None, callback=None) -> np.ndarray:
    """Modified FBP: back-project the Hilbert-filtered derivative of *wrapped* phase.

    The paper's PXCT reconstruction (Guizar-Sicairos et al., Opt. Express 19,
    21345 (2011), doi:10.1364/OE.19.021345).  The horizontal phase derivative is
    taken wrap-free (``phase_derivative``), filtered with ``derivative_filter``
    (Hilbert kernel, half-pixel shift, difference roll-off; same windows and
    edge padding as ``fbp``) and back-projected by the core's back-projector, so
    phase wraps need no unwrapping.  Whenever neighboring pixels differ by
    less than pi (in the unwrapped phase), the result equals ``fbp`` of the
    unwrapped phase to rounding.

    Phase is known only up to a constant and a linear ramp per projection:
    remove them first (``remove_phase_ramp``) so that the air at the detector
    edges is near zero.  A constant offset is invisible to the derivative; the
    one number the derivative cannot give, the zero frequency of the ramp
    filter ``R(0) * mean(padded row)`` (a small term of the band-limited
    kernel, ~``2 / (pi^2 n)``), is restored exactly from the first moment of the
    derivative (``sum p = -sum x p'``, integration by parts) plus the phase at
    the detector edges, taken as their wrapped values (exact if the edge phase
    lies in (-pi, pi], as it does after ``remove_phase_ramp``).  A residual
    linear ramp is a constant derivative over the row and reconstructs as
    it would with ``fbp``: as an artifact.

    Parameters
    ----------
    phase : (A, rows, cols) ndarray
        Phase in radians, wrapped or not (float), or the complex transmission
        ``T = |T| exp(i phase)`` (complex), as ptychography delivers it.
    angles : (A,) array_like
        Radians; spread over 180 degrees for a complete scan.
    center : float, optional
        Column of the rotation axis in pixels (pixel ``c`` centered at
        ``c + 0.5``); None = detector center ``cols / 2``.
    filter : str
        One of ``FILTERS`` (the window of ``ramp_filter``).
    padding : bool
        Pad rows (edge values of the phase, i.e. a zero derivative) to twice
        the width (power of two), as ``fbp`` does.
    shape : (y, x) ints, optional
        Slice size (default ``(cols, cols)``).
    threads : int, optional
        Threads of the core; results do not depend on it.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    volume : (rows, y, x) ndarray
        Phase per pixel length (rad/pixel; ``-2 pi delta / wavelength`` times the
        voxel size for a phase ``-k int delta``), float32 (float64 for float64
        or complex128 input).
    """
    progress = Progress(callback, logger)
    n_threads = check.threads(threads)
    check.flag(padding, "padding")
    ph = _phase_array(phase)
    th = _angles(angles, ph.shape[0])
    n_angles, rows, cols = ph.shape
    offset = center_offset(center, cols)
    ny, nx = slice_shape(shape, cols)
    n = padded_width(cols, padding)
    h = derivative_filter(n, filter=filter)
    r0 = float(ramp_filter(n, filter=filter)[0])
    dtype = np.float64 if ph.dtype in (np.float64, np.complex128) else np.float32
    left = (n - cols) // 2 if padding else 0

    progress.stage(0.0, 0.3, "differentiating and filtering the phase")
    d = phase_derivative(ph)                                   # (A, rows, cols - 1)
    total = d.sum(axis=2)                                       # unwrapped phi[-1] - phi[0]
    if np.iscomplexobj(ph):
        e0, e1 = np.angle(ph[:, :, 0]), np.angle(ph[:, :, -1])
    else:
        e0 = np.remainder(ph[:, :, 0].astype(np.float64) + math.pi, 2 * math.pi) - math.pi
        e1 = np.remainder(ph[:, :, -1].astype(np.float64) + math.pi, 2 * math.pi) - math.pi
    p0 = 0.5 * (e0 + (e1 - total))                              # phase at column 0, from both edges
    # Mean of the edge-padded row: P(0) + (1/n) sum_j (n - 1 - j) d_pad(j).
    weights = (n - 1 - left - np.arange(cols - 1)) / n
    mean = p0 + d @ weights
    d_pad = np.zeros((n_angles, rows, n))
    d_pad[:, :, left:left + cols - 1] = d
    d_pad[:, :, n - 1] -= total                                 # circular closure of the padded row
    filtered = np.fft.irfft(np.fft.rfft(d_pad, axis=2) * h, n=n, axis=2)[:, :, left:left + cols]
    filtered += (r0 * mean)[:, :, None]
    filtered = np.ascontiguousarray(filtered, dtype=dtype)
    progress.stage(0.3, 1.0, "back-projecting")
    volume = _core.backproject_linear(filtered, th, ny=ny, nx=nx, center_offset=offset,
                                      threads=n_threads)
    volume *= math.pi / n_angles
    progress.update(1.0, "done")
    return volume
