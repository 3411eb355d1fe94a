"""Ring-artifact removal in the sinogram domain (stripe detection and removal)."""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np
from scipy import ndimage

from .._progress import Progress
from ._projector import _float_array

__all__ = ["RING_METHODS", "remove_rings"]

logger = logging.getLogger(__name__)

RING_METHODS = ("combined", "detect", "sorting")


def _predict(s: np.ndarray) -> np.ndarray:
    """Robust value of each column from its neighbors (last axis): median of five local fits.

    From columns ``c-2, c-1, c+1, c+2`` (edge-padded): the two central means,
    the two one-sided linear extrapolations and the quadratic fit.  Exact for
    profiles linear in the column, and unaffected by one outlying neighbor.
    """
    p = np.pad(s, [(0, 0)] * (s.ndim - 1) + [(2, 2)], mode="edge")
    m2, m1, p1, p2 = p[..., :-4], p[..., 1:-3], p[..., 3:-1], p[..., 4:]
    return np.median(np.stack([0.5 * (m1 + p1), 0.5 * (m2 + p2), 2 * m1 - m2, 2 * p1 - p2,
                               (4 * (m1 + p1) - m2 - p2) / 6.0]), axis=0)


def _interpolate_columns(s: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Columns of ``s`` (A, cols) linearly interpolated from the ``good`` ones (constant beyond them)."""
    cols = np.arange(s.shape[1])
    gi = np.flatnonzero(good)
    k = np.clip(np.searchsorted(gi, cols), 1, gi.size - 1) if gi.size > 1 else np.zeros(cols.size, int)
    if gi.size == 1:
        return np.repeat(s[:, gi[:1]], s.shape[1], axis=1)
    lo, hi = gi[k - 1], gi[k]
    w = np.clip((cols - lo) / (hi - lo), 0.0, 1.0)
    return (1.0 - w) * s[:, lo] + w * s[:, hi]


def _narrow_runs(mask: np.ndarray, max_width: int) -> np.ndarray:
    """``mask`` without its runs of more than ``max_width`` consecutive True columns."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    widths = np.bincount(labels.ravel())
    return mask & (widths[labels] <= max_width)


def _detect_sinogram(sino: np.ndarray, snr: float, window: int, rounds: int,
                     max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (cols,) of the stripe columns of one sinogram (A, cols), and the stripe mask."""
    ranked = np.sort(sino, axis=0)
    cols = sino.shape[1]
    floor = 1e-7 * float(np.max(np.abs(ranked))) + np.finfo(np.float64).tiny
    flag = np.zeros(cols, dtype=bool)
    offset = np.zeros(cols)
    for _ in range(rounds):
        # uniform shift of each column against the prediction from its (corrected) neighbors
        stat = np.median(ranked - _predict(ranked - offset), axis=0)
        magnitude = np.abs(stat)
        scale = 1.4826 * ndimage.median_filter(magnitude, size=window, mode="reflect")
        busy = magnitude[magnitude > floor]
        if busy.size:  # not below the spread over the whole object (smooth regions of noise-free data)
            scale = np.maximum(scale, 1.4826 * float(np.median(busy)))
        new = magnitude > snr * np.maximum(scale, floor)
        if np.array_equal(new, flag) or new.all():
            break
        flag = new
        reference = _interpolate_columns(ranked, ~flag)
        offset = np.where(flag, np.median(ranked - reference, axis=0), 0.0)
    # a stripe's neighbors look shifted too until it is corrected, so wide runs are judged last
    narrow = _narrow_runs(flag, max_width)
    if not np.array_equal(narrow, flag):
        flag = narrow
        reference = _interpolate_columns(ranked, ~flag) if not flag.all() else ranked
        offset = np.where(flag, np.median(ranked - reference, axis=0), 0.0)
    return offset, flag


def _outliers(values: np.ndarray, snr: float) -> np.ndarray:
    """Entries more than ``snr`` robust standard deviations (1.4826 MAD) from the median."""
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if not mad > 0:
        return np.zeros(values.shape, dtype=bool)
    return np.abs(values - med) > snr * mad


def _sort_filter(sino: np.ndarray, size: int) -> np.ndarray:
    """Vo et al.'s sorting-based removal: each column sorted along the angles, a median filter of
    ``size`` columns across the sorted sinogram, values put back at their angles."""
    order = np.argsort(sino, axis=0, kind="stable")
    ranked = np.take_along_axis(sino, order, axis=0)
    smoothed = ndimage.median_filter(ranked, size=(1, size), mode="reflect")
    restored = np.empty_like(sino)
    np.put_along_axis(restored, order, smoothed, axis=0)
    return restored


def _dead_columns(sino: np.ndarray, snr: float, window: int) -> np.ndarray:
    """Unresponsive columns of a sinogram (A, cols): their fluctuation along the angles (mean
    absolute difference from a running median over the angles) is an outlier, below a quarter
    of the running median of the fluctuations over ``window`` columns (a dead pixel reads a
    constant whatever the sample; Vo et al. 2018, algorithm 6)."""
    smooth = ndimage.median_filter(sino, size=(max(3, (sino.shape[0] // 40) | 1), 1), mode="reflect")
    fluct = np.mean(np.abs(sino - smooth), axis=0)
    ref = ndimage.median_filter(fluct, size=window, mode="reflect")
    floor = 1e-6 * float(fluct.max()) + np.finfo(np.float64).tiny
    ratio = np.where(ref > floor, fluct / np.maximum(ref, floor), 1.0)  # air next to air: not dead
    return _outliers(np.log(np.maximum(ratio, 1e-6)), snr) & (ratio < 0.25)


def _combined_sinogram(sino: np.ndarray, snr: float, window: int, rounds: int,
                       max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unresponsive columns interpolated, then narrow stripes detected and corrected."""
    dead = _dead_columns(sino, snr, window)
    out = _interpolate_columns(sino, ~dead) if dead.any() and not dead.all() else sino
    offset, flag = _detect_sinogram(out, snr, window, rounds, max_width)
    return out - offset, dead | flag


def remove_rings(sinogram_or_projections: np.ndarray, *, method: str = "combined", snr: float = 4.0,
                 window: int = 31, rounds: int = 5, max_width: int = 5, size: int = 5,
                 return_mask: bool = False,
                 callback=None):
    """Remove the stripes that become ring artifacts, sinogram by sinogram.

    A detector column whose gain or offset differs from its neighbors adds
    the same error to every angle of that column: a stripe in the sinogram, a
    ring about the axis in the reconstruction.  (After flat-field correction
    and ``-log``, a gain error is a constant offset of the column: a "full"
    stripe.)  The methods compare each column with its neighbors after
    sorting every column along the angle axis, which makes neighboring
    columns comparable (their sorted values are close whatever the angles at
    which the object crossed them; Vo, Atwood & Drakopoulos, Opt. Express 26,
    28396 (2018), doi:10.1364/OE.26.028396).

    - ``"combined"`` (default): unresponsive columns first, then ``"detect"``.
      A dead or saturated pixel reads (nearly) the same value whatever the
      sample: its fluctuation along the angles (mean absolute difference from
      a running median over 1/40 of the angles) is an outlier (``snr`` robust
      standard deviations of the log-ratio to its running median over
      ``window`` columns) and below a quarter of that running median.  Such
      columns carry no information and are interpolated linearly from their
      neighbors (Vo et al.'s algorithm 6); ``"detect"`` then removes the
      narrow stripes.  On the simulated family of ``bench/center_family.py``
      it lowers the ring error of every member against ``"detect"`` alone.
      Vo et al.'s large-stripe step (algorithm 5: outliers of the sorted
      column means against a running median over ~61 columns) raised the
      ring error of that family (it takes object structure for stripes), so
      it is not part of it: wide, smooth stripes (tens of columns) stay.
    - ``"detect"``: stripe detection and offset correction.  For
      each column, the median over its sorted values of their difference
      from a robust prediction by the neighboring columns (median of the
      linear and quadratic predictions from columns ``c +- 1``, ``c +- 2``)
      measures a uniform shift of the column, which an object feature
      crossing the column at a few angles does not produce.  Columns where
      the shift exceeds ``snr`` robust standard deviations (1.4826 x the
      larger of its running median magnitude over ``window`` columns and its
      median magnitude over the object) are stripes, detected against a
      robust threshold and interpolated from their neighbors as in Vo et
      al.; the correction is an offset per column, as in column-mean ring
      correction (Boin & Haibel, Opt. Express 14, 12071 (2006),
      doi:10.1364/OE.14.012071): the median difference between the column's
      sorted values and those interpolated linearly from the nearest
      non-stripe columns.  Detection is repeated up to ``rounds`` times with
      the neighbors' offsets removed (neighboring stripes hide each
      other); runs wider than ``max_width`` columns are not stripes.  Columns
      not detected are left untouched, so the object is not smoothed;
      stripes weaker than the threshold, or wider than ``max_width``, stay.
    - ``"sorting"``: Vo et al.'s algorithm 3: a median filter of ``size``
      columns across the sorted sinogram replaces every column, and the values
      are put back at their angles.  It removes stripes that stand out from
      the local variation across columns but also alters sharp, sparse
      features of the object (their sorted profiles change quickly from
      column to column).

    Parameters
    ----------
    sinogram_or_projections : (A, cols) or (A, rows, cols) ndarray
        A sinogram, or projections (angle, row, column) whose rows are
        treated independently (the axes of ``fbp``).  Line integrals (after
        ``minus_log``) or phase.
    method : {"combined", "detect", "sorting"}
        See above.
    snr : float
        ``"combined"``, ``"detect"``: detection threshold in robust standard
        deviations (> 0).
    window : int
        ``"combined"``, ``"detect"``: columns (odd, >= 3) over which the
        spread is estimated.
    rounds : int
        ``"combined"``, ``"detect"``: detection passes (>= 1).
    max_width : int
        ``"combined"``, ``"detect"``: widest stripe in columns (>= 1); wider runs of outlying
        columns are taken as object structure (e.g. the columns a feature
        near the axis covers at every angle) and left alone.
    size : int
        ``"sorting"``: width of the median filter in columns (odd, >= 3).
    return_mask : bool
        ``"combined"``, ``"detect"``: also return the mask of the columns
        corrected (stripes and unresponsive columns).
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    corrected : ndarray
        Same shape as the input, float32 (float64 kept).
    mask : (cols,) or (rows, cols) bool ndarray
        Stripe columns found per row; only with ``return_mask``.
    """
    progress = Progress(callback, logger)
    if not isinstance(sinogram_or_projections, np.ndarray):
        raise TypeError("sinogram_or_projections must be a numpy.ndarray, "
                        f"got {type(sinogram_or_projections).__name__}")
    ndim = sinogram_or_projections.ndim
    if ndim not in (2, 3):
        raise ValueError("sinogram_or_projections must be (A, cols) or (A, rows, cols), "
                         f"got shape {sinogram_or_projections.shape}")
    data = _float_array(sinogram_or_projections, "sinogram_or_projections", ndim)
    if method not in RING_METHODS:
        raise ValueError(f"method must be one of {RING_METHODS}, got {method!r}")
    if isinstance(snr, bool) or not isinstance(snr, numbers.Real) or not (math.isfinite(snr) and snr > 0):
        raise ValueError(f"snr must be a positive number, got {snr!r}")
    for name, value in (("window", window), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 3 or value % 2 == 0:
            raise ValueError(f"{name} must be an odd integer >= 3, got {value!r}")
    for name, value in (("rounds", rounds), ("max_width", max_width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    cube = data[:, None, :] if ndim == 2 else data
    n_angles, rows, cols = cube.shape
    if cols < 5:
        raise ValueError(f"sinogram_or_projections needs at least 5 columns, got shape {data.shape}")
    if method == "sorting" and size > cols:
        raise ValueError(f"size ({size}) must not exceed the number of columns ({cols})")
    out = np.empty_like(cube)
    mask = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        sino = cube[:, r, :].astype(np.float64)
        if method == "detect":
            offset, mask[r] = _detect_sinogram(sino, float(snr), int(window), int(rounds), int(max_width))
            out[:, r, :] = sino - offset
        elif method == "combined":
            out[:, r, :], mask[r] = _combined_sinogram(sino, float(snr), int(window), int(rounds),
                                                       int(max_width))
        else:
            out[:, r, :] = _sort_filter(sino, int(size))
        progress.update((r + 1) / rows, "removing stripes")
    logger.debug("remove_rings(%s): %d stripe columns", method, int(mask.sum()))
    result = out[:, 0, :] if ndim == 2 else out
    if return_mask:
        return result, (mask[0] if ndim == 2 else mask)
    return result
