"""Center of rotation: 0/180-degree registration and a reconstruction-sharpness search."""

from __future__ import annotations

import logging
import math
import numbers
from typing import Optional, Sequence

import numpy as np

from .._progress import Progress
from ._fbp import FILTERS, fbp
from ._projector import _angles, _float_array

__all__ = ["CENTER_METHODS", "CENTER_METRICS", "find_center"]

logger = logging.getLogger(__name__)

CENTER_METHODS = ("auto", "opposite", "sharpness")
CENTER_METRICS = ("l1", "entropy")

_TWO_PI = 2.0 * math.pi


def _search_range(search, cols: int) -> tuple[float, float]:
    """``search`` (None, half-width around cols/2, or (lo, hi)) as a column range on the detector."""
    message = f"search must be a positive half-width in pixels or a (lo, hi) column range, got {search!r}"
    if search is None:
        lo, hi = cols / 4.0, 3.0 * cols / 4.0
    elif isinstance(search, numbers.Real) and not isinstance(search, bool):
        if not (math.isfinite(search) and search > 0):
            raise ValueError(message)
        lo, hi = cols / 2.0 - float(search), cols / 2.0 + float(search)
    else:
        try:
            lo, hi = (float(v) for v in search)
        except (TypeError, ValueError):
            raise ValueError(message) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(message)
    lo, hi = max(lo, 0.0), min(hi, float(cols))
    if not lo < hi:
        raise ValueError(f"search range {search!r} does not overlap the detector [0, {cols}]")
    return lo, hi


def _row_indices(rows, n_rows: int) -> Optional[np.ndarray]:
    if rows is None:
        return None
    idx = np.atleast_1d(np.asarray(rows))
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"rows must be a non-empty sequence of detector row indices, got {rows!r}")
    if idx.min() < -n_rows or idx.max() >= n_rows:
        raise ValueError(f"rows must index the {n_rows} detector rows, got {rows!r}")
    return np.unique(idx % n_rows)


def _opposite_pairs(th: np.ndarray, tolerance: float) -> list[tuple[int, int, int, float]]:
    """Partners at ``theta_i + pi``: ``(i, j0, j1, w)`` with ``P(theta_i + pi) ~ (1 - w) P_j0 + w P_j1``.

    The partner is interpolated linearly in angle between the two measured
    angles around ``theta_i + pi``, or extrapolated from the two nearest on one
    side (the end of a ``[0, pi)`` scan, whose last angle is ``pi - step``).
    Only targets within ``tolerance`` of a measured angle are used.
    """
    phi = np.mod(th, _TWO_PI)
    pairs = []
    for i in range(th.size):
        delta = np.mod(phi - (phi[i] + math.pi) + math.pi, _TWO_PI) - math.pi  # signed, (-pi, pi]
        delta[i] = np.inf
        order = np.argsort(np.abs(delta))
        j0 = int(order[0])
        d0 = float(delta[j0])
        if abs(d0) > tolerance:
            continue
        if abs(d0) < 1e-9:
            pairs.append((i, j0, j0, 0.0))
            continue
        others = [int(j) for j in order[1:4] if np.isfinite(delta[j]) and abs(delta[j] - d0) > 1e-9]
        across = [j for j in others if np.sign(delta[j]) != np.sign(d0) and abs(delta[j]) <= 2 * tolerance]
        beside = [j for j in others if np.sign(delta[j]) == np.sign(d0) and abs(delta[j]) <= 3 * tolerance]
        j1 = across[0] if across else (beside[0] if beside else j0)
        w = 0.0 if j1 == j0 else -d0 / (float(delta[j1]) - d0)
        pairs.append((i, j0, j1, w))
    return pairs


def _band_limited_argmax(cross: np.ndarray, n: int, lo: float, hi: float) -> float:
    """Sub-pixel argmax in [lo, hi] of ``c(s) = sum_m cross(m) exp(2 pi i m s / n)`` (rfft half-spectrum)."""
    corr = np.fft.irfft(cross, n=n)
    shifts = np.fft.fftfreq(n) * n
    inside = (shifts >= math.floor(lo)) & (shifts <= math.ceil(hi))
    s0 = float(shifts[int(np.argmax(np.where(inside, corr, -np.inf)))])
    m = np.arange(cross.size)
    weight = np.full(cross.size, 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    wc = weight * cross

    def value(s):
        return np.real(np.exp(2j * math.pi * np.outer(s, m) / n) @ wc)

    for step in (0.05, 0.002):  # zoom in on the band-limited (exactly interpolated) correlation
        grid = np.clip(s0 + np.arange(-25, 26) * step, lo, hi)
        s0 = float(grid[int(np.argmax(value(grid)))])
    return s0


def _center_opposite(proj: np.ndarray, th: np.ndarray, rows: Optional[np.ndarray], lo: float, hi: float,
                     tolerance: float) -> float:
    """Register each projection with the mirrored one 180 degrees away.

    ``P(theta + pi, x) = P(theta, 2 C - x)`` (x: detector position, C: axis), so
    the flipped partner ``F[c] = P(theta + pi)[cols - 1 - c]`` is ``P(theta)``
    shifted by ``s = 2 C - cols``.  The shift is the peak of the summed cross-
    correlation of the column derivatives (background-free), over all pairs
    and rows, located sub-pixel on its band-limited interpolation.
    """
    pairs = _opposite_pairs(th, tolerance)
    if not pairs:
        raise ValueError("method='opposite' needs projections about 180 degrees apart "
                         f"(within tolerance={tolerance:.3g} rad); use method='sharpness'")
    data = proj if rows is None else proj[:, rows, :]
    cols = data.shape[2]
    n = 1 << int(math.ceil(math.log2(2 * cols)))
    grad = np.fft.rfft(np.diff(data, axis=2).astype(np.float64), n=n, axis=2)  # (A, rows, n//2+1)
    # derivative of the flipped row = minus the flipped derivative
    cross = np.zeros(n // 2 + 1, dtype=np.complex128)
    for i, j0, j1, w in pairs:
        partner = (1.0 - w) * data[j0].astype(np.float64) + w * data[j1].astype(np.float64)
        fgrad = np.fft.rfft(np.diff(partner[:, ::-1], axis=1), n=n, axis=1)
        cross += np.sum(grad[i] * np.conj(fgrad), axis=0)
    logger.debug("opposite: %d pairs", len(pairs))
    s = _band_limited_argmax(cross, n, 2.0 * lo - cols, 2.0 * hi - cols)
    return (cols + s) / 2.0


def _half_turn(th: np.ndarray) -> np.ndarray:
    """Indices of the projections within one half-turn [theta_min, theta_min + pi)."""
    rel = np.mod(th - th.min(), _TWO_PI)
    return np.flatnonzero(rel < math.pi - 1e-9)


def _center_sharpness(proj: np.ndarray, th: np.ndarray, rows: np.ndarray, lo: float, hi: float, *,
                      metric: str, filter: str, threads: Optional[int], progress: Progress) -> float:
    """Minimize an artifact metric of trial reconstructions of a few slices over the center.

    From a half-turn of projections (over 360 degrees a wrong center only blurs;
    over 180 degrees it adds the arcs of the "tuning-fork" artifact), slices
    are reconstructed on a 2-px grid over [lo, hi], then on 0.5 px and 0.1 px
    grids around the best, and a parabola through the five values around the
    minimum locates it.
    """
    keep = _half_turn(th)
    sub = np.ascontiguousarray(proj[keep][:, rows, :])
    th_sub = th[keep]
    hist_range: list[float] = []

    def score(center: float) -> float:
        rec = fbp(sub, th_sub, center=float(center), filter=filter, threads=threads)
        if metric == "l1":
            return float(np.abs(rec).sum(dtype=np.float64))
        if not hist_range:  # Donath et al. (2006): histogram entropy, over one fixed gray-value range
            spread = float(rec.max() - rec.min())
            hist_range.extend([float(rec.min()) - 0.5 * spread, float(rec.max()) + 0.5 * spread])
        hist, _ = np.histogram(rec, bins=512, range=tuple(hist_range))
        p = hist[hist > 0] / hist.sum()
        return float(-(p * np.log(p)).sum())

    def best_on(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid = np.unique(np.clip(grid, lo, hi))
        return grid, np.array([score(c) for c in grid])

    if metric == "entropy":
        score(0.5 * (lo + hi))
    if hi - lo > 4.0:
        progress.update(0.0, "coarse center search")
        grid, val = best_on(np.append(np.arange(lo, hi, 2.0), hi))
        best = float(grid[int(np.argmin(val))])
        window = best + np.arange(-1.5, 1.51, 0.5)
    else:
        window = np.append(np.arange(lo, hi, 0.5), hi)
    progress.update(0.5, "refining the center")
    grid, val = best_on(window)
    best = float(grid[int(np.argmin(val))])
    grid, val = best_on(best + np.arange(-0.3, 0.31, 0.1))
    k = int(np.argmin(val))
    if 2 <= k <= grid.size - 3:
        a, b, _ = np.polyfit(grid[k - 2:k + 3] - grid[k], val[k - 2:k + 3], 2)
        if a > 0 and abs(b / (2 * a)) <= 0.2:
            return float(np.clip(grid[k] - b / (2 * a), lo, hi))
    return float(grid[k])


def find_center(projections: np.ndarray, angles, *, method: str = "auto", search=None,
                rows: Optional[Sequence[int]] = None, metric: str = "l1", filter: str = "hann",
                tolerance: Optional[float] = None, threads: Optional[int] = None, callback=None) -> float:
    """Column of the rotation axis, in the ``center`` convention of ``fbp``.

    Two estimators (the TXTM pre-processing of the paper needs the axis to
    sub-pixel precision before FBP):

    - ``"opposite"``: parallel-beam projections 180 degrees apart are mirror
      images about the axis, ``P(theta + pi, x) = P(theta, 2 C - x)``.  Every
      projection with a partner near ``theta + pi`` (interpolated in angle
      between its two neighbors; at the end of a ``[0, pi)`` scan extrapolated
      from the last two) is registered with the flipped partner by the
      cross-correlation of their column derivatives, summed over all pairs
      and rows, with a sub-pixel peak on the band-limited interpolation of the
      correlation.  Works for scans over 180 degrees (with or without the end
      point) and over 360 degrees.
    - ``"sharpness"``: trial FBP reconstructions of a few slices (from one
      half-turn of projections) over the search range, minimizing an
      artifact metric: ``"l1"`` (``sum |f|``: a wrong axis adds the positive and
      negative arcs of the "tuning-fork" artifact to a one-signed object) or
      ``"entropy"`` (entropy of the gray-value histogram; Donath et al.,
      J. Opt. Soc. Am. A 23, 1048 (2006), doi:10.1364/JOSAA.23.001048);
      coarse-to-fine grid (2, 0.5, 0.1 px) and a parabola at the minimum.
    - ``"auto"``: ``"opposite"``, refined by ``"sharpness"`` within +-max(2 px, 5 % of
      the width) of it; ``"sharpness"`` over the whole search range if no opposite
      pairs exist or if the refined optimum lies at the window's edge (noisy,
      low-contrast data can mislead the registration).

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        Line integrals (``-log`` transmission, or phase), air near zero.
    angles : (A,) array_like
        Radians.
    method : {"auto", "opposite", "sharpness"}
    search : float or (float, float), optional
        Half-width in pixels around the detector center ``cols / 2``, or an
        absolute column range ``(lo, hi)``; default ``(cols / 4, 3 cols / 4)``.
    rows : sequence of int, optional
        Detector rows used (default: all rows for ``"opposite"``, the rows at
        1/4, 1/2 and 3/4 of the height for ``"sharpness"``).
    metric : {"l1", "entropy"}
        Sharpness metric.
    filter : str
        FBP filter of the trial reconstructions (one of ``FILTERS``; a smooth
        window keeps noise out of the metric).
    tolerance : float, optional
        Largest distance (rad) from ``theta + pi`` to a measured angle for a
        pair to be used; default 1.5 median angular steps.
    threads : int, optional
        Threads of the core for the trial reconstructions.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    center : float
        Axis position in pixels (pixel ``c`` centered at ``c + 0.5``; the
        detector center is ``cols / 2``), to pass as ``fbp(..., center=)``.
    """
    progress = Progress(callback, logger)
    proj = _float_array(projections, "projections", 3)
    th = _angles(angles, proj.shape[0])
    if method not in CENTER_METHODS:
        raise ValueError(f"method must be one of {CENTER_METHODS}, got {method!r}")
    if metric not in CENTER_METRICS:
        raise ValueError(f"metric must be one of {CENTER_METRICS}, got {metric!r}")
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    n_angles, n_rows, cols = proj.shape
    if cols < 4:
        raise ValueError(f"projections need at least 4 columns, got shape {proj.shape}")
    lo, hi = _search_range(search, cols)
    idx = _row_indices(rows, n_rows)
    if tolerance is None:
        steps = np.diff(np.unique(np.mod(th, _TWO_PI)))
        tolerance = 1.5 * float(np.median(steps)) if steps.size else 0.0
    elif isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) \
            or not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a non-negative angle in radians, got {tolerance!r}")
    sharp_rows = idx if idx is not None else np.unique(
        np.round(np.array([0.25, 0.5, 0.75]) * (n_rows - 1)).astype(int))

    if method in ("auto", "opposite"):
        progress.stage(0.0, 0.2 if method == "auto" else 1.0, "registering opposite projections")
        try:
            center = _center_opposite(proj, th, idx, lo, hi, float(tolerance))
        except ValueError:
            if method == "opposite":
                raise
            logger.info("no opposite projections; searching the center by sharpness")
        else:
            logger.info("center from opposite projections: %.3f px", center)
            if method == "opposite":
                progress.update(1.0, "done")
                return center
            half = max(2.0, 0.05 * cols)
            w_lo, w_hi = max(lo, center - half), min(hi, center + half)
            progress.stage(0.2, 0.6, "searching the center by sharpness near it")
            refined = _center_sharpness(proj, th, sharp_rows, w_lo, w_hi, metric=metric, filter=filter,
                                        threads=threads, progress=progress)
            at_edge = (refined - w_lo < 0.25 and w_lo > lo) or (w_hi - refined < 0.25 and w_hi < hi)
            if not at_edge:
                logger.info("center from reconstruction sharpness (%s): %.3f px", metric, refined)
                progress.update(1.0, "done")
                return refined
            # noisy or low-contrast data can mislead the registration: search everywhere
            logger.warning("the sharpness optimum lies at the edge of the window around the opposite-projection "
                           "estimate %.2f px; searching the whole range", center)
            progress.stage(0.6, 1.0, "searching the center by sharpness")
            center = _center_sharpness(proj, th, sharp_rows, lo, hi, metric=metric, filter=filter,
                                       threads=threads, progress=progress)
            logger.info("center from reconstruction sharpness (%s): %.3f px", metric, center)
            progress.update(1.0, "done")
            return center
    progress.stage(0.2 if method == "auto" else 0.0, 1.0, "searching the center by sharpness")
    center = _center_sharpness(proj, th, sharp_rows, lo, hi, metric=metric, filter=filter, threads=threads,
                               progress=progress)
    logger.info("center from reconstruction sharpness (%s): %.3f px", metric, center)
    progress.update(1.0, "done")
    return center
