"""Fitting the phase model to data: an initial labeling from physics, point-spread
functions, phase levels and noise.

Everything here is invariant to a channel's scale and offset: levels are fitted in the
data's units, the initial labeling comes from a mixture whose means are an affine image
of the physical levels (``_model.physical_levels``), and the noise is measured on the
residual of the fitted model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .. import _core
from .._phase import Phase

__all__ = ["affine_mixture", "blur", "farther_than", "fit_levels", "fit_psf", "measure_noise", "psf_sum_of_squares",
           "sample_blocks"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def distance_transform(mask: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Euclidean distance (voxels, float32) of every True voxel of a bool ``mask`` to the nearest
    False one (``edt.edt``).  The mask goes in as uint8: edt's bool path is 2-4x slower for the
    same distances."""
    import edt

    return edt.edt(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), parallel=max(int(threads), 1))


def farther_than(mask: np.ndarray, radius: float, *, threads: int = 1) -> np.ndarray:
    """True voxels of a bool ``mask`` whose Euclidean distance (voxels) to the nearest False one
    exceeds ``radius``: ``distance_transform(mask) > radius``, decided on the squared distances
    (``edt.edtsq``: integers, exact in float32 up to 2^24, against ``radius**2`` in double) without
    the square roots -- a third of the transform's time at 512^3."""
    import edt

    d2 = edt.edtsq(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), parallel=max(int(threads), 1))
    return d2 > float(radius) ** 2


def blur(volume: np.ndarray, sigma_vox, *, adjoint: bool = False, threads: int = 0) -> np.ndarray:
    """The core's separable Gaussian (edge-replicated) of a float32 volume; sigma in voxels (z, y, x)."""
    s = tuple(float(x) for x in np.broadcast_to(np.asarray(sigma_vox, dtype=np.float64), (3,)))
    return _core.gaussian_blur(np.ascontiguousarray(volume, dtype=np.float32), s, adjoint=adjoint, threads=threads)


def read_region(fused, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """``fused[:, lo:hi]`` as a NumPy array of the input's float type (works for NumPy, h5py, Zarr
    and Dask; the values are converted exactly as ``segment`` converts the whole volume)."""
    sl = (slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi))
    part = fused[sl]
    if hasattr(part, "compute"):
        part = part.compute()
    part = np.asarray(part)
    if not np.issubdtype(part.dtype, np.floating):
        raise TypeError(f"fused must be a float array, got dtype {part.dtype}")
    return np.ascontiguousarray(part)


def sample_blocks(shape: Sequence[int], *, block: int = 72, count: int = 8, seed: int = 0) -> list[tuple[slice, ...]]:
    """Up to ``count`` random blocks of ``block`` voxels per axis (the whole volume if it is small)."""
    shape = tuple(int(s) for s in shape)
    if all(s <= block for s in shape) or np.prod(shape) <= count * block ** 3:
        return [tuple(slice(0, s) for s in shape)]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        sl = []
        for s in shape:
            b = min(block, s)
            lo = int(rng.integers(0, s - b + 1))
            sl.append(slice(lo, lo + b))
        out.append(tuple(sl))
    return out


#: Largest weight of ``affine_mixture``'s uniform (partial-volume) component.  Left free, it grew
#: with the noise until it held every phase but the pore (0.3-0.4 of the voxels, the dense phases'
#: weights ~0.01) and the means drifted 20-30 % above the phases once the noise reached 0.13-0.16
#: of the pore-to-dense span (all 10 members of bench/segment_family.py, ``--noise``; the raw
#: channel).  Without added noise it ends at 0.18-0.26 on those members (0.33 on the demo's
#: pristine scan): 0.3 leaves them as they were and kept the scale within 1.02-1.13 of the truth
#: up to 0.2 (segment fits it to the channel smoothed by ``INITIAL_SMOOTHING``).  Not for the
#: PXCT-alone graphite/silicon split (two levels 5 % apart, the uniform between them): capped
#: there, PXCT alone lost its silicon on every member (the baseline's Dice 0.00-0.21).
MIXTURE_UNIFORM_MAX = 0.3


def affine_mixture(values: np.ndarray, physical: np.ndarray, used: np.ndarray, *, iterations: int = 80,
                   uniform_max: float = 1.0):
    """A 1-D Gaussian mixture whose means are ``a + g * physical[k]`` (g > 0), plus a uniform
    component between the lowest and highest mean for partial-volume voxels (weight at most
    ``uniform_max``; ``MIXTURE_UNIFORM_MAX`` for the mixture of all phases).

    Parameters
    ----------
    values : (n,) ndarray
        Samples of one channel.
    physical : (K,) ndarray
        Physical level of each phase in that channel (only ratios matter).
    used : (K,) bool ndarray
        Phases present.

    Returns
    -------
    a, g : float
        Offset and (positive) scale mapping physical levels to data units.
    """
    v = np.asarray(values, dtype=np.float64)
    phys = np.asarray(physical, dtype=np.float64)
    lo_p, hi_p = phys[used].min(), phys[used].max()
    span = hi_p - lo_p
    p1, p99 = np.percentile(v, [1, 99])
    g = (p99 - p1) / span if p99 > p1 else 1.0
    a = p1 - g * lo_p
    k = len(phys)
    w = np.where(used, 1.0, 0.0)
    w /= w.sum()
    sd = np.full(k, 0.05 * g * span)
    wu = 0.1
    floor = (0.005 * g * span) ** 2
    for _ in range(iterations):
        a_old, g_old = a, g
        mu = a + g * phys
        lo, hi = mu[used].min(), mu[used].max()
        dens = np.where(used[:, None], w[:, None] * np.exp(-0.5 * ((v[None] - mu[:, None]) / sd[:, None]) ** 2)
                        / (sd[:, None] * math.sqrt(2 * math.pi)), 0.0)
        du = wu * ((v >= lo) & (v <= hi)) / max(hi - lo, 1e-300)
        tot = dens.sum(0) + du + 1e-300
        r = dens / tot
        nk = r.sum(1)
        w = np.where(used, nk / v.size, 0.0)
        wu = float((du / tot).mean())
        if wu > uniform_max:
            w *= (1.0 - uniform_max) / max(float(w.sum()), 1e-300)
            wu = uniform_max
        W = r / sd[:, None] ** 2
        s0, s1, s2 = W.sum(), (W * phys[:, None]).sum(), (W * phys[:, None] ** 2).sum()
        t0, t1 = (W * v[None]).sum(), (W * phys[:, None] * v[None]).sum()
        det = s0 * s2 - s1 * s1
        if not det > 0:
            break
        a_new = (s2 * t0 - s1 * t1) / det
        g_new = (s0 * t1 - s1 * t0) / det
        if not g_new > 0:
            break
        a, g = a_new, g_new
        mu = a + g * phys
        sd = np.sqrt(np.maximum((r * (v[None] - mu[:, None]) ** 2).sum(1) / np.maximum(nk, 1e-12), floor))
        if abs(a - a_old) < 1e-6 * g * span and abs(g - g_old) < 1e-6 * g:
            break
    return float(a), float(g)


def _block_threads(shape, threads: int) -> int:
    """One thread for small blocks: a parallel region costs more than it saves there."""
    return threads if int(np.prod(shape)) >= 1 << 20 else 1


def _design(labels: np.ndarray, ks: Sequence[int], sigma, mask: np.ndarray, threads: int) -> np.ndarray:
    th = _block_threads(labels.shape, threads)
    cols = [blur((labels == k).astype(np.float32), sigma, threads=th)[mask] for k in ks]
    return np.stack(cols, axis=1).astype(np.float64)


def _margin_mask(shape, sigma_vox) -> np.ndarray:
    """Block voxels at least one kernel radius from the block faces (no edge bias)."""
    m = np.zeros(shape, bool)
    s = np.broadcast_to(np.asarray(sigma_vox, dtype=np.float64), (3,))
    r = [min(int(math.ceil(3.5 * x)), (n - 1) // 3) for x, n in zip(s, shape)]
    m[r[0]:shape[0] - r[0], r[1]:shape[1] - r[1], r[2]:shape[2] - r[2]] = True
    return m


def fit_levels(data: np.ndarray, labels: np.ndarray, ks: Sequence[int], sigma_vox, blocks, *,
               valid: np.ndarray | None = None, score: np.ndarray | None = None, threads: int = 0):
    """Least-squares levels ``m_k`` with ``data ~ sum_k m_k (H 1[labels == k])`` on the blocks.

    Parameters
    ----------
    valid : (z, y, x) bool, optional
        Voxels the levels are fitted on (default all).
    score : (z, y, x) bool, optional
        Voxels the returned mean squared residual is measured on (default: ``valid``).

    Returns
    -------
    levels : (len(ks),) ndarray
        NaN for a phase absent from the blocks.
    mse : float
        Mean squared residual.
    """
    k = len(ks)
    ata = np.zeros((k, k))
    atb = np.zeros(k)
    kept = []
    count = 0
    for sl in blocks:
        lab = labels[sl]
        m = _margin_mask(lab.shape, sigma_vox)
        if valid is not None:
            m &= valid[sl]
        if not m.any():
            continue
        A = _design(lab, ks, sigma_vox, m, threads)
        b = data[sl][m].astype(np.float64)
        ata += A.T @ A
        atb += A.T @ b
        count += b.size
        sc = None if score is None else score[sl][m]
        kept.append((A, b, sc))
    if count == 0:
        raise ValueError("no voxels to fit the phase levels on")
    # normal equations of the (n, k) least-squares problem; phases absent from the blocks stay NaN
    present = np.diag(ata) > 1e-9 * count
    lev = np.full(k, np.nan)
    sub = ata[np.ix_(present, present)]
    sol = np.linalg.solve(sub + 1e-12 * np.trace(sub) * np.eye(len(sub)), atb[present])
    lev[present] = sol
    sse, n = 0.0, 0
    for A, b, sc in kept:
        r = b - A[:, present] @ sol
        if sc is not None:
            r = r[sc]
        sse += float(r @ r)
        n += r.size
    return lev, sse / max(n, 1)


def _golden(f, lo: float, hi: float, steps: int) -> tuple[float, float]:
    """``(x, f(x))`` of the smaller of the last two golden-section probes of ``f`` on ``[lo, hi]``."""
    phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(steps):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - phi * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + phi * (hi - lo)
            fb = f(b)
    return (a, fa) if fa < fb else (b, fb)


#: Alternations of the in-slice and the axial search in ``fit_psf`` (each a golden section of
#: ``_PSF_STEPS`` steps) and the range each searches around the current sigma (factors).
_PSF_ALTERNATIONS = 2
_PSF_STEPS = 5
_PSF_RANGE = (0.6, 1.6)


def fit_psf(data: np.ndarray, labels: np.ndarray, ks: Sequence[int], blocks, *, isotropic: Sequence[float],
            valid: np.ndarray | None = None, score: np.ndarray | None = None, start=None,
            threads: int = 0) -> tuple[float, float, float]:
    """PSF sigma (voxels, (z, y, x) with y = x) that best explains the data given labels.

    The isotropic sigma by a grid then a golden-section search between its neighbors; then
    the in-slice sigma (y = x) and the axial one (z) in turn, each by a golden-section search
    with the other fixed (``_PSF_ALTERNATIONS`` times): filtered back-projection blurs within
    slices and not along the rotation axis, so the two differ: 0.83-0.86 and 1.19-1.20 voxels on the
    demo's PXCT (the phantom's own delta, blurred, fits its data best at 0.8 and 1.2), where a search of
    the axial sigma alone at the isotropic optimum stopped at (0.81, 1.01, 1.01).  The residual
    is judged on ``score`` voxels (default all fitted ones).

    ``start``: a sigma (z, y, x) fitted before to labels that have changed since (the model's
    refits between ICM rounds): the search starts there, without the isotropic stage, and
    alternates once.
    """
    def err(s):
        return fit_levels(data, labels, ks, s, blocks, valid=valid, score=score, threads=threads)[1]

    if start is not None:
        z, xy = (float(v) for v in np.asarray(start, dtype=np.float64)[:2])
        best = err((z, xy, xy))
        alternations = 1
    else:
        grid = sorted(float(x) for x in isotropic)
        errs = [err((x, x, x)) for x in grid]
        j = int(np.argmin(errs))
        lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
        x, fx = _golden(lambda t: err((t, t, t)), lo, hi, 4)
        z, xy, best = (x, x, fx) if fx < errs[j] else (grid[j], grid[j], errs[j])
        alternations = _PSF_ALTERNATIONS
    a, b = _PSF_RANGE
    for _ in range(alternations):
        t, ft = _golden(lambda u: err((z, u, u)), a * xy, b * xy, _PSF_STEPS)
        if ft < best:
            xy, best = t, ft
        t, ft = _golden(lambda u: err((u, xy, xy)), a * z, b * z, _PSF_STEPS)
        if ft < best:
            z, best = t, ft
    return (z, xy, xy)


def psf_sum_of_squares(sigma_vox) -> float:
    """``sum h^2`` of the separable PSF away from the edges: the product over the axes of the sums of
    squares of the sampled, normalized 1-D Gaussians (radius ``ceil(3.5 sigma)``, as the core's blur)."""
    out = 1.0
    for x in np.broadcast_to(np.asarray(sigma_vox, dtype=np.float64), (3,)):
        r = int(math.ceil(3.5 * x)) if x > 0 else 0
        t = np.arange(-r, r + 1)
        k = np.exp(-0.5 * (t / x) ** 2) if x > 0 else np.ones(1)
        k /= k.sum()
        out *= float((k ** 2).sum())
    return out


def measure_noise(data: np.ndarray, labels: np.ndarray, levels: np.ndarray, sigma_vox, blocks, *,
                  valid: np.ndarray | None = None, threads: int = 0) -> tuple[float, float]:
    """Noise standard deviation and correlation volume of one channel, on the residual
    ``data - H levels[labels]`` inside solid phases away from any boundary.

    The correlation volume is ``var(H^T r) / (var(r) sum h^2)``: 1 for white noise, the
    number of voxels over which the noise is correlated otherwise.
    """
    s = np.broadcast_to(np.asarray(sigma_vox, dtype=np.float64), (3,))
    c_self = psf_sum_of_squares(s)
    lv = np.asarray(levels, dtype=np.float32)
    res, back, res_all, back_all = [], [], [], []
    from scipy import ndimage

    rad = [int(math.ceil(2 * x)) for x in s]
    fp = np.ones(tuple(2 * r + 1 for r in rad), bool)
    for sl in blocks:
        lab = labels[sl]
        th = _block_threads(lab.shape, threads)
        pred = blur(lv[lab], s, threads=th)
        r = data[sl].astype(np.float32) - pred
        m = _margin_mask(lab.shape, s * 2)
        if valid is not None:
            m &= valid[sl]
            r = np.where(valid[sl], r, 0).astype(np.float32)
        gb = blur(r, s, adjoint=True, threads=th)
        uniform = ndimage.maximum_filter(lab, footprint=fp) == ndimage.minimum_filter(lab, footprint=fp)
        inner = m & uniform & (lab != int(Phase.PORE))
        res.append(r[inner])
        back.append(gb[inner])
        res_all.append(r[m])
        back_all.append(gb[m])
    r = np.concatenate(res)
    g = np.concatenate(back)
    if r.size < 500:
        r, g = np.concatenate(res_all), np.concatenate(back_all)
    var = float(np.var(r))
    if not var > 0:
        var = 1e-30
    vc = float(np.var(g) / (var * c_self))
    return math.sqrt(var), max(vc, 1.0)
