"""Center of rotation: 0/180-degree registration and a reconstruction-sharpness search."""

from __future__ import annotations

import logging
import math
import numbers
from typing import Optional, Sequence

import numpy as np

from .. import _validate as check
from .._progress import Progress
from ._fbp import FILTERS, center_offset, fbp, filter_rows
from ._gridrec import backproject_fourier
from ._projector import _angles, _float_array
from ._wedge import center_wedge, half_turns, suppress_stripes

__all__ = ["CENTER_METHODS", "CENTER_METRICS", "find_center"]

logger = logging.getLogger(__name__)

CENTER_METHODS = ("auto", "wedge", "opposite", "sharpness")
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


def _refine_sharpness(proj: np.ndarray, th: np.ndarray, rows: np.ndarray, start: float, lo: float, hi: float, *,
                      filter: str, threads: Optional[int]) -> float:
    """Minimize ``sum |f|`` of trial reconstructions of the field of view near ``start``.

    One half-turn of projections, the narrow stripes of each row subtracted first (their rings
    would add to the metric), filtered once and back-projected by the NUFFT (on one thread, so the
    result does not depend on ``threads``) for each trial axis; ``|f|`` is summed over the
    disk every ray sees (a smaller region, or the corners beyond it, bias the metric:
    artifacts move in and out of them): a 0.5-px grid over ``start +- 1`` px (extended
    by 0.5-px steps while the best value lies at its end, up to 5 px away), then 0.25 px on
    both sides of the best, and a parabola through the five values within 0.5 px of it.
    """
    keep = _half_turn(th)
    sub = suppress_stripes(np.ascontiguousarray(proj[keep][:, rows, :], dtype=np.float32))
    th_sub = th[keep]
    cols = sub.shape[2]
    side = int(min(cols, 2 * math.ceil(min(start, cols - start)) + 8))  # all the slice seen at every angle
    n_threads = check.threads(threads)
    filtered = filter_rows(sub, filter=filter, padding=True, threads=n_threads)
    yy, xx = np.mgrid[:side, :side] + 0.5 - side / 2
    disk = np.hypot(yy, xx) <= min(start, cols - start) - 4.0  # pixels every ray of every angle sees
    values: dict[float, float] = {}

    def score(center: float) -> float:
        key = round(float(center), 6)
        if key not in values:
            # one NUFFT thread: its spreading sums in a thread-dependent order, and the axis (hence the
            # volume) must not depend on ``threads``
            rec = backproject_fourier(filtered, th_sub, center_offset=center_offset(key, cols), ny=side, nx=side,
                                      threads=1)
            values[key] = float(np.abs(rec[:, disk]).sum(dtype=np.float64))
        return values[key]

    for c in np.clip(start + np.arange(-1.0, 1.01, 0.5), lo, hi):
        score(c)
    for _ in range(8):  # follow the slope while the minimum is at the end of the grid
        grid = sorted(values)
        k = int(np.argmin([values[c] for c in grid]))
        if 0 < k < len(grid) - 1 or abs(grid[k] - start) >= 5.0:
            break
        nxt = grid[k] + (0.5 if k == len(grid) - 1 else -0.5)
        if not lo <= nxt <= hi:
            break
        score(nxt)
    grid = sorted(values)
    best = grid[int(np.argmin([values[c] for c in grid]))]
    for c in (best - 0.25, best + 0.25):
        if lo <= c <= hi:
            score(c)
    near = np.array(sorted(c for c in values if abs(c - best) <= 0.5 + 1e-9))
    val = np.array([values[c] for c in near])
    k = int(np.argmin(val))
    if near.size >= 3 and 0 < k < near.size - 1:
        a, b, _ = np.polyfit(near - near[k], val, 2)
        if a > 0 and abs(b / (2 * a)) <= 0.25:
            return float(np.clip(near[k] - b / (2 * a), lo, hi))
    return float(near[k])


def find_center(projections: np.ndarray, angles, *, method: str = "auto", search=None,
                rows: Optional[Sequence[int]] = None, metric: str = "l1", filter: str = "hann",
                tolerance: Optional[float] = None, threads: Optional[int] = None, callback=None) -> float:
    """Column of the rotation axis, in the ``center`` convention of ``fbp``.

    Estimators (the TXTM pre-processing of the paper needs the axis to
    sub-pixel precision before FBP):

    - ``"wedge"``: Vo's double-wedge metric (Vo, Atwood & Drakopoulos, Opt.
      Express 22, 19078 (2014), doi:10.1364/OE.22.019078).  A half-turn of
      projections followed by its mirror image about a trial axis is a
      360-degree sinogram; for the right axis its 2-D Fourier transform stays
      inside the "bow tie" of an object's sinogram, a wrong axis breaks it at
      the two junctions and puts energy into the complementary double wedge.
      The metric is that energy's fraction, each trial restricted to a tapered
      window symmetric about the trial axis (the axis may lie anywhere on the
      detector; the sample may leave the field of view), the narrow stripes
      (ring sources) subtracted first and the angles a 179-degree scan lacks
      interpolated.  Coarse to fine: detector binned to ~128 columns over the
      whole search range, then 4x finer, then full resolution on a 0.5-px grid
      with a parabola.  Needs a half-turn (about 178 degrees or more); 360-
      degree scans use both half-turns.  Cheap (the sinogram alone, FFTs).
    - ``"opposite"``: parallel-beam projections 180 degrees apart are mirror
      images about the axis, ``P(theta + pi, x) = P(theta, 2 C - x)``.  Every
      projection with a partner near ``theta + pi`` (interpolated in angle
      between its two neighbors; at the end of a ``[0, pi)`` scan extrapolated
      from the last two) is registered with the flipped partner by the
      cross-correlation of their column derivatives, summed over all pairs
      and rows, with a sub-pixel peak on the band-limited interpolation of the
      correlation.  Stripes (rings) and a scan of one half-turn (few pairs)
      mislead it.
    - ``"sharpness"``: trial FBP reconstructions of a few slices (from one
      half-turn of projections) over the search range, minimizing an
      artifact metric: ``"l1"`` (``sum |f|``: a wrong axis adds the positive and
      negative arcs of the "tuning-fork" artifact to a one-signed object) or
      ``"entropy"`` (entropy of the gray-value histogram; Donath et al.,
      J. Opt. Soc. Am. A 23, 1048 (2006), doi:10.1364/JOSAA.23.001048);
      coarse-to-fine grid (2, 0.5, 0.1 px) and a parabola at the minimum.
      Slow over a wide range, and a wide range lets the metric be fooled
      (e.g. by a trial axis that moves the sample out of the slice).
    - ``"auto"`` (default): the mean of two estimates with different errors:
      ``"wedge"`` over the search range (detector binned by 2 at the finest;
      wide stripes bias it), and the minimum of the ``"l1"`` sharpness of the
      whole field of view (the disk seen at every angle, narrow stripes
      subtracted) within +-1 px of it (followed while the minimum lies at the
      window's end, up to 5 px away; noise and weak contrast bias it).  Without a
      half-turn of projections, ``"sharpness"`` over the search range.  On
      the simulated family of ``bench/center_family.py`` (179-181 and 360
      degrees, axis within +-40 % of the half-width off center, 512-2048
      px, rings of several widths, 200-5000 photons) it is within 0.5 px of
      the true axis.

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        Line integrals (``-log`` transmission, or phase), air near zero.
    angles : (A,) array_like
        Radians.
    method : {"auto", "wedge", "opposite", "sharpness"}
        See above.
    search : float or (float, float), optional
        Half-width in pixels around the detector center ``cols / 2``, or an
        absolute column range ``(lo, hi)``; default ``(cols / 4, 3 cols / 4)``.
    rows : sequence of int, optional
        Detector rows used (default: all rows for ``"opposite"``, the rows at
        1/4, 1/2 and 3/4 of the height for the others).
    metric : {"l1", "entropy"}
        Sharpness metric of ``method="sharpness"`` (``"auto"`` refines by ``"l1"``).
    filter : str
        FBP filter of the trial reconstructions (one of ``FILTERS``; a smooth
        window keeps noise out of the metric).
    tolerance : float, optional
        Largest distance (rad) from ``theta + pi`` to a measured angle for a
        pair to be used; default 1.5 median angular steps.
    threads : int, optional
        Threads of the core and of the FFTs (None = the package default).
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

    if method in ("auto", "wedge"):
        if half_turns(th):
            progress.stage(0.0, 0.3 if method == "auto" else 1.0, "double-wedge search")
            # "auto" refines by sharpness: the wedge search can stop at a detector binned by 2
            center = center_wedge(proj, th, sharp_rows, lo, hi, threads=check.threads(threads),
                                  finest=2 if method == "auto" and cols >= 256 else 1, progress=progress)
            logger.info("center from the double-wedge metric: %.3f px", center)
            if method == "auto":
                progress.stage(0.3, 1.0, "refining the center by sharpness")
                sharp = _refine_sharpness(proj, th, sharp_rows, center, lo, hi, filter=filter, threads=threads)
                logger.info("center by reconstruction sharpness (l1) near it: %.3f px", sharp)
                # two estimates with different errors (wide stripes bias the wedge metric, noise and
                # weak contrast the sharpness): their mean
                center = 0.5 * (center + sharp)
            progress.update(1.0, "done")
            return center
        if method == "wedge":
            raise ValueError("method='wedge' needs a half-turn of projections (a scan over at least about "
                             "178 degrees); use method='sharpness'")
        logger.info("less than a half-turn of projections; searching the center by sharpness")
    if method == "opposite":
        progress.stage(0.0, 1.0, "registering opposite projections")
        center = _center_opposite(proj, th, idx, lo, hi, float(tolerance))
        logger.info("center from opposite projections: %.3f px", center)
        progress.update(1.0, "done")
        return center
    progress.stage(0.0, 1.0, "searching the center by sharpness")
    center = _center_sharpness(proj, th, sharp_rows, lo, hi, metric=metric, filter=filter, threads=threads,
                               progress=progress)
    logger.info("center from reconstruction sharpness (%s): %.3f px", metric, center)
    progress.update(1.0, "done")
    return center
