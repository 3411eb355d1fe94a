"""Center of rotation from the sinogram alone: Vo's double-wedge consistency metric.

A parallel-beam sinogram over a half-turn, followed by its own mirror image about the
rotation axis, is the sinogram over a full turn: ``P(theta + pi, x) = P(theta, 2 C - x)``.
For the right axis ``C`` this 360-degree sinogram is that of an object, whose 2-D Fourier
transform is confined to a "bow tie" ``|u| <= 2 pi rho |v| / n`` (``u``: angular
frequency in cycles per turn, ``v / n``: detector frequency in cycles per pixel, ``rho``:
the largest radius of the object); a wrong axis breaks the sinogram at the two junctions
and spreads energy into the complementary double wedge (large ``|u|``, small ``|v|``).
The metric is the fraction of the energy in that wedge (Vo, Atwood & Drakopoulos, Opt.
Express 22, 19078 (2014), doi:10.1364/OE.22.019078), implemented here from the paper's
description with three changes: each trial is restricted to a tapered window symmetric
about the trial axis (so the axis may lie anywhere on the detector and the sample may
leave the field of view), the energy is normalized by that of the window, and narrow
full stripes (ring sources, identical at every angle) are subtracted first.
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import scipy.fft
from scipy import ndimage

__all__ = ["center_wedge", "half_turns"]

logger = logging.getLogger(__name__)

_PI = math.pi


def half_turns(th: np.ndarray, *, max_gap: Optional[float] = None) -> list[np.ndarray]:
    """Indices (sorted by angle) of the consecutive half-turns ``[t0 + k pi, t0 + (k + 1) pi)``.

    A half-turn is kept if the angles it lacks at its end are at most ``max_gap`` radians
    (default: the larger of 2 degrees and 3 median angular steps).
    """
    order = np.argsort(th, kind="stable")
    rel = th[order] - th[order[0]]
    steps = np.diff(rel)
    step = float(np.median(steps[steps > 1e-12])) if np.any(steps > 1e-12) else 0.0
    gap = max(math.radians(2.0), 3.0 * step) if max_gap is None else max_gap
    out = []
    k = 0
    while k * _PI <= rel[-1] + 1e-9:
        sel = (rel >= k * _PI - 1e-9) & (rel < (k + 1) * _PI - 1e-9)
        idx = order[sel]
        if idx.size >= 8 and (rel[sel].max() - k * _PI) >= _PI - step - gap:
            out.append(idx)
        k += 1
    return out


def _bin(a: np.ndarray, factor: int, axis: int) -> np.ndarray:
    if factor <= 1:
        return a
    n = a.shape[axis] // factor
    a = np.take(a, np.arange(n * factor), axis=axis)
    shape = a.shape[:axis] + (n, factor) + a.shape[axis + 1:]
    return a.reshape(shape).mean(axis=axis + 1)


def suppress_stripes(sino: np.ndarray, width: int = 11) -> np.ndarray:
    """``sino`` (A, rows, cols) minus its narrow full stripes: the part of the column means (over
    the angles) that a running median of ``width`` columns does not follow."""
    mean = sino.mean(axis=0)
    stripes = mean - ndimage.median_filter(mean, size=(1, width), mode="nearest")
    return sino - stripes[None]


def _taper(x: np.ndarray, half: float, frac: float = 0.25) -> np.ndarray:
    """1 within ``(1 - frac) half`` of 0, a cos^2 roll-off to 0 at ``half``."""
    ax = np.abs(x)
    edge = half * (1.0 - frac)
    return np.cos(0.5 * _PI * np.clip((ax - edge) / (half * frac), 0.0, 1.0)) ** 2


class _Wedge:
    """The double-wedge metric of one preprocessed stack of half-turns (list of (A, rows, cols))."""

    def __init__(self, halves: list[np.ndarray], gap: int, *, margin: float = 1.15, drop: int = 2,
                 threads: int = 1):
        self.halves = halves
        self.n_gap = gap
        self.margin = margin
        self.drop = drop
        self.threads = threads

    def _gap(self, last: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Rows for the angles a scan shorter than a half-turn lacks: linear in angle between the
        last row of one half and the first of the next."""
        w = (np.arange(1, self.n_gap + 1) / (self.n_gap + 1)).astype(last.real.dtype)[:, None, None]
        return (1.0 - w) * last[None] + w * first[None]

    def __call__(self, center: float, half: float) -> float:
        inside = total = 0.0
        for d in self.halves:
            a, rows, cols = d.shape
            h = int(math.ceil(half)) + 1
            j = int(round(center))
            lo, hi = j - h, j + h  # crop [lo, hi) about the trial axis, zeros beyond the detector
            crop = np.zeros((a, rows, 2 * h), dtype=d.dtype)
            s0, s1 = max(lo, 0), min(hi, cols)
            crop[:, :, s0 - lo:s1 - lo] = d[:, :, s0:s1]
            x = np.arange(2 * h) + 0.5 - (center - lo)  # position relative to the trial axis
            first = crop * _taper(x, half).astype(d.dtype)
            # mirror about the trial axis: the reversed crop (mirrored about sample h, i.e. about j) shifted
            # by 2 (center - j) below; the taper is applied before the shift, at the shifted positions
            mirror = crop[:, :, ::-1] * _taper(-x[::-1], half).astype(d.dtype)
            n = scipy.fft.next_fast_len(2 * h + 4, real=True)
            v = np.arange(n // 2 + 1)
            k = 2.0 * _PI * half / n * self.margin
            vmax = min(n // 2 + 1, int(a / k) + 2)
            shift = 2.0 * (center - j)
            f1 = scipy.fft.rfft(first, n=n, axis=2, workers=self.threads)[:, :, :vmax]
            f2 = scipy.fft.rfft(mirror, n=n, axis=2, workers=self.threads)[:, :, :vmax]
            f2 *= np.exp(-2j * _PI * v[:vmax] * shift / n).astype(f2.dtype)
            parts = [f1, self._gap(f1[-1], f2[0]), f2, self._gap(f2[-1], f1[0])]
            g = scipy.fft.fft(np.concatenate(parts, axis=0), axis=0, workers=self.threads)
            a = g.shape[0] // 2
            power = (g.real ** 2 + g.imag ** 2).sum(axis=1)  # (2a, vmax), summed over rows
            u = np.abs(np.fft.fftfreq(2 * a) * (2 * a))[:, None]
            mask = u > k * v[None, :vmax] + self.drop
            weight = np.ones(vmax)
            weight[1:] = 2.0  # rfft: negative detector frequencies
            inside += float((power * mask * weight).sum())
            total += float((power * weight).sum())
        return inside / total if total > 0 else 0.0


def _parabola_min(grid: np.ndarray, val: np.ndarray) -> float:
    k = int(np.argmin(val))
    if 1 <= k <= grid.size - 2:
        lo, hi = max(k - 2, 0), min(k + 3, grid.size)
        a, b, _ = np.polyfit(grid[lo:hi] - grid[k], val[lo:hi], 2)
        if a > 0 and abs(b / (2 * a)) <= grid[1] - grid[0]:
            return float(grid[k] - b / (2 * a))
    return float(grid[k])


def center_wedge(proj: np.ndarray, th: np.ndarray, rows: np.ndarray, lo: float, hi: float, *,
                 threads: int = 1, finest: int = 1, progress=None) -> float:
    """Axis column (``fbp`` convention) minimizing the double-wedge energy, searched in [lo, hi].

    Coarse-to-fine: detector binned to ~128 columns (and angles to <= 180 per half-turn)
    over the whole range, then binned 4 times less around the best, ..., down to
    ``finest`` (a power of 2; 1 = full resolution), where all the angles are used on a
    half-bin grid with a parabola through the minimum.
    """
    turns = half_turns(th)
    if not turns:
        raise ValueError("no half-turn of projections (the scan covers less than about 180 degrees)")
    cols = proj.shape[2]
    sel = np.ascontiguousarray(proj[:, rows, :], dtype=np.float32)
    data = [suppress_stripes(sel[t]) for t in turns]
    # angles missing at the end of a half-turn (e.g. a 179-degree scan): rows to interpolate
    th0 = th[turns[0]]
    step = (th0.max() - th0.min()) / (th0.size - 1)
    gap = max(0, int(round((_PI - (th0.max() - th0.min()) - step) / step)))
    b = max(finest, int(cols // 128))
    best = prev_b = None
    level = 0
    while True:
        final = b <= finest
        m = 1 if final else max(1, int(min(t.size for t in turns) // 180))
        halves = [_bin(_bin(d, b, 2), m, 0) for d in data]
        metric = _Wedge(halves, int(round(gap / m)), threads=threads)
        nb = halves[0].shape[2]
        if best is None:
            g_lo, g_hi, step = lo / b, hi / b, (0.5 if final else 1.0)
        else:
            span = 0.5 * prev_b / b + 1.0 if final else 2.0 * prev_b / b
            g_lo, g_hi = max(lo / b, best / b - span), min(hi / b, best / b + span)
            step = 0.5 if final else 1.0
        grid = np.unique(np.clip(np.append(np.arange(g_lo, g_hi, step), g_hi), lo / b, hi / b))
        half = min(grid.min(), nb - grid.max()) * 0.95
        if best is not None and final:
            half = min(best, cols - best) / b * 0.95 - 2.0
        if half < 8:
            raise ValueError(f"the search range [{lo:.1f}, {hi:.1f}] reaches too close to the detector edge "
                             f"for the double-wedge metric")
        val = np.array([metric(c, half) for c in grid])
        logger.debug("wedge level %d (bin %d x %d): best %.2f px", level, b, m, grid[int(np.argmin(val))] * b)
        if final:
            return _parabola_min(grid, val) * b
        best = float(grid[int(np.argmin(val))]) * b
        prev_b = b
        b = max(finest, b // 4)
        level += 1
        if progress is not None:
            progress.update(min(0.3 * level, 0.9), "double-wedge search")
