"""Projection alignment: vertical from mass conservation, horizontal from tomographic consistency."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter

from .. import _validate as check
from .._padding import periodic_pad
from .._progress import Progress
from ._fbp import fbp, filter_rows
from ._projector import _angles, _float_array, project

__all__ = ["AlignmentOptions", "align_projections", "shift_projections"]

logger = logging.getLogger(__name__)

SHIFT_MODES = ("fourier", "linear")

#: Largest low-pass along the rows (pixels): reconstruction streaks run across the columns only
#: (slices are independent), and every row it smears near the frame ends is lost to the fit.
_ROW_SMOOTHING = 0.5


@dataclass(frozen=True)
class AlignmentOptions:
    """How ``align_projections`` iterates: iterations, binning schedule, search range, low-pass, stop rule.

    Attributes
    ----------
    iterations : int
        Maximum reconstruct-reproject iterations per level (>= 1).
    schedule : sequence of int, optional
        Binning factors from coarse to fine, decreasing and ending at 1 (default:
        halvings while the binned detector is >= 64 columns, at most 3 levels).
    max_shift : float, optional
        Largest shift searched, pixels (> 0; default ``min(rows, cols) // 6``);
        rows and columns within it of the frame ends take no part in the fits.
    smoothing : float
        Standard deviation (pixels of each level) of the Gaussian low-pass applied
        to projections and reprojections before registering (>= 0).
    tolerance : float
        A level stops when the RMS change of the shifts falls below this, pixels (> 0).
    """

    iterations: int = 10
    schedule: Optional[tuple] = None
    max_shift: Optional[float] = None
    smoothing: float = 1.5
    tolerance: float = 0.01

    def __post_init__(self):
        check.integer(self.iterations, "AlignmentOptions.iterations", minimum=1)
        if self.schedule is not None:
            try:
                levels = tuple(self.schedule)
            except TypeError:
                raise TypeError(f"AlignmentOptions.schedule must be a sequence of ints, got {self.schedule!r}") \
                    from None
            levels = tuple(check.integer(b, "AlignmentOptions.schedule entries", minimum=1) for b in levels)
            if not levels or levels[-1] != 1 or any(a <= b for a, b in zip(levels, levels[1:])):
                raise ValueError(f"AlignmentOptions.schedule must be decreasing binning factors ending at 1, "
                                 f"got {self.schedule!r}")
            object.__setattr__(self, "schedule", levels)
        if self.max_shift is not None:
            check.number(self.max_shift, "AlignmentOptions.max_shift", unit="pixels", minimum=0.0,
                         exclusive_minimum=True)
        object.__setattr__(self, "smoothing", check.number(self.smoothing, "AlignmentOptions.smoothing",
                                                           unit="pixels", minimum=0.0))
        check.number(self.tolerance, "AlignmentOptions.tolerance", unit="pixels", minimum=0.0,
                     exclusive_minimum=True)


def _check_shifts(shifts, n: int) -> np.ndarray:
    s = np.asarray(shifts, dtype=np.float64)
    if s.shape != (n, 2):
        raise ValueError(f"shifts must have shape ({n}, 2) (dy, dx per projection), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("shifts must be finite (pixels)")
    return s


def _fourier_shift_axis(a: np.ndarray, s: np.ndarray, axis: int, workers: int) -> np.ndarray:
    """``out[..., i, ...] = a[..., i - s, ...]`` along ``axis`` for a (A, ...) stack, band-limited.

    Each frame is extended (``periodic_pad``: a blend from its last to its
    first sample, enough for the largest shift plus 16 pixels) so that
    nothing wraps around and the periodic extension has no jump to ring.
    """
    if not np.any(s):
        return a
    n = a.shape[axis]
    pad = int(math.ceil(np.max(np.abs(s)))) + 16
    total = scipy.fft.next_fast_len(n + 2 * pad, real=True)
    padded = periodic_pad(a, axis, total)
    f = np.fft.rfftfreq(total)
    shape = [1] * a.ndim
    shape[0] = a.shape[0]
    shape[axis] = f.size
    phase = np.exp(-2j * np.pi * np.outer(s, f)).reshape(shape)
    spec = scipy.fft.rfft(padded, axis=axis, workers=workers)
    spec *= phase
    out = scipy.fft.irfft(spec, n=total, axis=axis, workers=workers)
    return np.take(out, np.arange(n), axis=axis)


def _linear_shift_axis(a: np.ndarray, s: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a[i - s]`` along ``axis``, edge values beyond the frame."""
    if not np.any(s):
        return a
    n = a.shape[axis]
    x = np.arange(n)[None, :] - s[:, None]  # (A, n) source positions
    k = np.floor(x)
    t = (x - k).reshape([a.shape[0]] + [n if d == axis else 1 for d in range(1, a.ndim)])
    k0 = np.clip(k, 0, n - 1).astype(np.intp)
    k1 = np.clip(k + 1, 0, n - 1).astype(np.intp)
    idx_shape = [a.shape[0]] + [n if d == axis else 1 for d in range(1, a.ndim)]
    k0 = np.broadcast_to(k0.reshape(idx_shape), a.shape)
    k1 = np.broadcast_to(k1.reshape(idx_shape), a.shape)
    return (1.0 - t) * np.take_along_axis(a, k0, axis=axis) + t * np.take_along_axis(a, k1, axis=axis)


def shift_projections(projections: np.ndarray, shifts, *, mode: str = "fourier",
                      threads: Optional[int] = None) -> np.ndarray:
    """Translate every projection by its own sub-pixel shift.

    ``out[a, r, c] = projections[a, r - dy_a, c - dx_a]``: the content moves by
    ``+dy`` rows and ``+dx`` columns.  ``shift_projections(p, -align_projections(p, angles))``
    aligns a stack.  What enters from beyond the frame is made up: the edge
    values (``"linear"``) or a smooth blend between the frame's opposite edges
    (``"fourier"``).

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        float32 or float64 (other real dtypes become float32).
    shifts : (A, 2) array_like
        ``(dy, dx)`` per projection, pixels.
    mode : {"fourier", "linear"}
        ``"fourier"``: exact shift of the band-limited interpolant (phase ramp
        in the Fourier domain of each axis, frames extended without a jump at
        the wrap-around);
        ``"linear"``: linear interpolation (smooths by up to a quarter pixel).
    threads : int, optional
        Threads of scipy.fft (``"fourier"``; None = the package default); results do not
        depend on it.

    Returns
    -------
    (A, rows, cols) ndarray
        Same dtype as the (converted) input.
    """
    proj = _float_array(projections, "projections", 3)
    s = _check_shifts(shifts, proj.shape[0])
    check.choice(mode, "mode", SHIFT_MODES)
    workers = check.threads(threads)
    work = proj.astype(np.float64)
    if mode == "fourier":
        work = _fourier_shift_axis(work, s[:, 0], 1, workers)
        work = _fourier_shift_axis(work, s[:, 1], 2, workers)
    else:
        work = _linear_shift_axis(work, s[:, 0], 1)
        work = _linear_shift_axis(work, s[:, 1], 2)
    return np.ascontiguousarray(work, dtype=proj.dtype)


def _ls_shift(moving: np.ndarray, reference: np.ndarray, weight: np.ndarray, max_shift: int,
              start: Optional[np.ndarray] = None, iterations: int = 12, workers: int = -1,
              chunk: int = 32) -> np.ndarray:
    """Least-squares shift ``s_a`` with ``moving[a, m, n] ~ reference[a, m, n - s_a]`` along the last axis.

    Minimizes ``sum_{m,n} w (moving - reference(n - s))^2``, with the reference
    interpolated band-limited (FFT of the ``periodic_pad`` extension).  Without ``start``, the integer
    lag in ``[-max_shift, max_shift]`` of least weighted squared difference comes
    first (three FFT correlations, a cross-correlation that accounts for content
    entering the weighted window); Gauss-Newton steps on the continuous shift
    follow.  ``weight`` (broadcast to ``moving``) must vanish within
    ``max_shift`` of the ends of the last axis where the reference is unknown.
    """
    n_a, _, n = moving.shape
    pad = max_shift + 16
    total = scipy.fft.next_fast_len(n + 2 * pad, real=True)
    f = np.fft.rfftfreq(total)
    out = np.empty(n_a)
    w_full = np.broadcast_to(weight, moving.shape)
    for s0 in range(0, n_a, chunk):
        sl = slice(s0, min(s0 + chunk, n_a))
        m = moving[sl]
        w = w_full[sl]
        r = periodic_pad(reference[sl], 2, total)  # position n - s < 0 wraps into the blend
        rf = scipy.fft.rfft(r, axis=-1, workers=workers)
        if start is None:
            # SSD(L) = sum w m^2 - 2 sum_n w m(n) r(n - L) + sum_n w(n) r(n - L)^2 on the padded grid
            wm = np.zeros((m.shape[0], m.shape[1], total))
            ww = np.zeros_like(wm)
            wm[..., :n] = w * m
            ww[..., :n] = w
            cross = scipy.fft.irfft((scipy.fft.rfft(wm, axis=-1, workers=workers) * np.conj(rf)).sum(axis=1),
                                    n=total, axis=-1, workers=workers)
            r2f = scipy.fft.rfft(r * r, axis=-1, workers=workers)
            energy = scipy.fft.irfft((scipy.fft.rfft(ww, axis=-1, workers=workers) * np.conj(r2f)).sum(axis=1),
                                     n=total, axis=-1, workers=workers)
            lags = np.arange(-max_shift, max_shift + 1)
            ssd = energy[:, lags % total] - 2.0 * cross[:, lags % total]
            s = lags[np.argmin(ssd, axis=1)].astype(np.float64)
        else:
            s = np.asarray(start[sl], dtype=np.float64).copy()
        deriv = 2j * np.pi * f
        for _ in range(iterations):
            ph = np.exp(-2j * np.pi * np.outer(s, f))[:, None, :]
            spec = rf * ph
            rs = scipy.fft.irfft(spec, n=total, axis=-1, workers=workers)[..., :n]
            # d/ds r(n - s) = -r'(n - s)
            js = -scipy.fft.irfft(spec * deriv, n=total, axis=-1, workers=workers)[..., :n]
            num = np.sum(w * (m - rs) * js, axis=(1, 2))
            den = np.sum(w * js * js, axis=(1, 2))
            step = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
            step = np.clip(step, -1.0, 1.0)
            s = np.clip(s + step, -max_shift, max_shift)
            if np.max(np.abs(step)) < 1e-5:
                break
        out[sl] = s
    return out


def _bin(a: np.ndarray, b: int) -> np.ndarray:
    """Mean over ``b x b`` blocks of the last two axes (remainder dropped)."""
    if b == 1:
        return a
    n_a, r, c = a.shape
    r2, c2 = r // b, c // b
    return a[:, :r2 * b, :c2 * b].reshape(n_a, r2, b, c2, b).mean(axis=(2, 4))


def _remove_translation(dx: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Remove ``a cos(theta) + b sin(theta)`` (an object translation) from ``dx``, keeping the constant.

    ``c + a cos + b sin`` is fitted by least squares and only the sinusoid
    is subtracted.
    """
    basis = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, dx, rcond=None)
    return dx - basis[:, 1:] @ coef[1:]


def _self_term(filtered_input: np.ndarray, n: int, center: float, circle_radius: float) -> np.ndarray:
    """What each projection contributes to its own FBP reprojection (to leave it out).

    Back-projecting one ramp-filtered projection ``q_a`` smears it along its
    rays; reprojecting at the same angle integrates the smear over the chord
    ``L(u) = 2 sqrt(R^2 - u^2)`` of the reconstruction disc, so the self term is
    ``(pi / A) q_a(u) L(u)``.  Removing it makes the reference independent of
    the projection being registered, which otherwise pulls every estimate
    towards its current value (strongly so below the Crowther angular sampling).
    """
    n_a, rows, cols = filtered_input.shape
    q = filter_rows(filtered_input, filter="ramp", padding=True)  # the filtering step of fbp
    u = np.arange(cols) + 0.5 - center
    chord = 2.0 * np.sqrt(np.clip(circle_radius**2 - u**2, 0.0, None))
    return (math.pi / n_a) * q * chord[None, None, :]


def _circle_mask(n: int) -> np.ndarray:
    c = np.arange(n) + 0.5 - n / 2.0
    return (c[:, None] ** 2 + c[None, :] ** 2) <= (n / 2.0) ** 2


def _check_mask(mask, shape, name: str = "mask") -> Optional[np.ndarray]:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"{name} must be a bool array, got dtype {m.dtype}")
    if m.shape == shape[1:]:
        m = np.broadcast_to(m, shape)
    elif m.shape != shape:
        raise ValueError(f"{name} must have shape {shape[1:]} or {shape}, got {m.shape}")
    if not m.any(axis=(1, 2)).all():
        raise ValueError(f"{name} must select at least one pixel in every projection")
    return m


def _remove_planes(proj: np.ndarray, air: np.ndarray) -> np.ndarray:
    """Subtract from each projection the plane ``c + a row + b col`` fitted to its ``air`` pixels."""
    n_a, rows, cols = proj.shape
    r = np.broadcast_to(np.arange(rows, dtype=np.float64)[:, None], (rows, cols))
    c = np.broadcast_to(np.arange(cols, dtype=np.float64)[None, :], (rows, cols))
    out = np.empty_like(proj)
    for a in range(n_a):
        sel = air[a]
        design = np.stack([np.ones(int(sel.sum())), r[sel], c[sel]], axis=1)
        if np.linalg.matrix_rank(design) < 3:
            raise ValueError("air_mask must span at least two rows and two columns (not on one line) "
                             f"in every projection; projection {a} does not")
        coef, *_ = np.linalg.lstsq(design, proj[a][sel], rcond=None)
        out[a] = proj[a] - (coef[0] + coef[1] * r + coef[2] * c)
    return out


def align_projections(projections: np.ndarray, angles, *, vertical: bool = True, horizontal: bool = True,
                      center: Optional[float] = None, air_mask: Optional[np.ndarray] = None,
                      mask: Optional[np.ndarray] = None, options: AlignmentOptions = AlignmentOptions(),
                      threads: Optional[int] = None, callback=None) -> np.ndarray:
    """Sub-pixel shifts that make a tomographic projection stack consistent.

    1. *Vertical start* (rows): in parallel beam every projection of a sample
       that stays inside the field of view holds the same mass per slice, so
       the row profile ``sum_cols p(z, col)`` is the same function of ``z`` at
       every angle.  Each profile is registered to their (iteratively
       re-aligned) mean.
    2. *Horizontal start* (columns): the center of mass of each projection
       about the rotation axis follows ``a cos(theta) + b sin(theta)`` (the
       Helgason-Ludwig first-moment condition); the remainder is the shift.
    3. *Tomographic consistency* (Guizar-Sicairos et al. 2011; Odstrčil et al.
       2019), coarse-to-fine over the ``options.schedule`` binnings: reconstruct
       (``fbp``) from the corrected projections, reproject (``project``),
       remove from each reprojection the projection's own contribution (the
       back-projected, ramp-filtered projection integrated over the chord of
       the reconstruction disc, ``(pi / A) q_a(u) 2 sqrt(R^2 - u^2)``: without
       it every estimate is pulled towards its current value and the iteration
       crawls), low-pass both with a Gaussian of ``options.smoothing`` pixels (above
       the angular sampling the leave-one-out reprojection is streaks), and
       register every projection to its reprojection along the columns and
       along the rows (there the low-pass is at most 0.5 pixel: slices are
       reconstructed independently, so the streaks run along the columns);
       iterate until the RMS change of the shifts falls below ``options.tolerance``.
       The first two iterations search all integer lags again, which catches
       starts in a side minimum (small samples have little mass structure
       along z).

    Every registration is weighted least squares, ``min_s sum w (p(n) -
    ref(n - s))^2``, away from the frame ends: the integer lag from FFT
    cross-correlations, then Gauss-Newton steps on the continuous shift with
    the reference shifted in the Fourier domain (no upsampling grid).  Vertical
    only (``horizontal=False``) stops after step 1.

    Input: projections that are proportional to line integrals, with ~0 in air
    and the whole sample inside the detector width at every angle (air on both
    sides): e.g. ptychographic phase after ``remove_phase_ramp`` (fitted on the
    air) and unwrapping (or phase that never exceeds (-pi, pi] in magnitude),
    or TXTM ``-log`` transmission.  Wrapped phase must be unwrapped first.
    With ``air_mask``, a plane (constant + linear in row and column) fitted by
    least squares to the air pixels of each projection is subtracted first,
    which removes the residual phase ramps ``remove_phase_ramp`` leaves on
    noisy data (its local-difference estimator sees only the air strips).

    Unobservable components, fixed by convention: a common vertical shift
    (moving the object along the rotation axis) — the returned ``dy`` have zero
    mean; and a translation of the object in the slice plane, which adds
    ``a cos(theta) + b sin(theta)`` to ``dx`` — the returned ``dx`` have no such
    component (least squares).  The constant part of ``dx`` (the rotation axis
    relative to ``center``) is kept.

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        Line-integral projections (see above), float32 or float64.
    angles : (A,) array_like
        Radians.
    vertical, horizontal : bool
        Which shifts to estimate (one not estimated is returned as 0).
    center : float, optional
        Rotation axis column (``fbp`` convention), None = ``cols / 2``.
    air_mask : (rows, cols) or (A, rows, cols) bool ndarray, optional
        Pixels without sample (air on both sides of it): a plane fitted there
        is removed from each projection.
    mask : (rows, cols) or (A, rows, cols) bool ndarray, optional
        Pixels that take part in the registrations (default all).
    options : AlignmentOptions
        Iterations, binning ``schedule``, ``max_shift``, ``smoothing`` and the
        stopping ``tolerance``.
    threads : int, optional
        Threads of the core and of scipy.fft (None = the package default); results
        do not depend on it.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    shifts : (A, 2) ndarray of float64
        ``(dy, dx)`` in pixels: the measured displacement of each projection's
        content, ``projections[a, r, c] ~ aligned[a, r - dy, c - dx]``; undo it
        with ``shift_projections(projections, -shifts)``.

    References
    ----------
    .. [1] M. Guizar-Sicairos et al., "Phase tomography from x-ray coherent
       diffractive imaging projections", Opt. Express 19, 21345 (2011).
       :doi:`10.1364/OE.19.021345`
    .. [2] M. Odstrčil, M. Holler, J. Raabe, M. Guizar-Sicairos, "Alignment
       methods for nanotomography with deep subpixel accuracy", Opt. Express 27,
       36637 (2019). :doi:`10.1364/OE.27.036637`
    """
    proj = _float_array(projections, "projections", 3).astype(np.float64)
    theta = _angles(angles, proj.shape[0])
    n_a, rows, cols = proj.shape
    if not isinstance(options, AlignmentOptions):
        raise TypeError(f"options must be a tomofuse.tomo.AlignmentOptions, got {type(options).__name__}")
    iterations, schedule, max_shift = options.iterations, options.schedule, options.max_shift
    smoothing, tolerance = options.smoothing, options.tolerance
    check.flag(vertical, "vertical")
    check.flag(horizontal, "horizontal")
    if rows < 8 or cols < 8:
        raise ValueError(f"projections must be at least 8 x 8 pixels, got {proj.shape[1:]}")
    if max_shift is None:
        k = max(min(rows, cols) // 6, 1)
    else:
        k = int(math.ceil(max_shift))
        if 2 * k + 4 > rows or 2 * k + 4 > cols:
            raise ValueError(f"max_shift={max_shift!r} is too large for {rows} x {cols} projections")
    if center is None:
        center = cols / 2.0
    else:
        check.number(center, "center", unit="column on the detector", minimum=0.0, maximum=cols)
    if schedule is None:
        levels = [1]
        while len(levels) < 3 and cols // (2 * levels[0]) >= 64 and rows // (2 * levels[0]) >= 8:
            levels.insert(0, 2 * levels[0])
    else:
        levels = list(schedule)
    m = _check_mask(mask, proj.shape)
    air = _check_mask(air_mask, proj.shape, "air_mask")
    if air is not None:
        proj = _remove_planes(proj, air)
    weight = np.ones(proj.shape) if m is None else m.astype(np.float64)
    threads = workers = check.threads(threads)
    progress = Progress(callback, logger)

    dy = np.zeros(n_a)
    dx = np.zeros(n_a)
    if vertical:
        progress.stage(0.0, 0.1, "vertical: row profiles")
        interior = np.zeros(rows)
        interior[k + 1:rows - k - 1] = 1.0
        # air columns carry only noise: leave them out of the mass (the sample is inside the rest)
        profile = np.sum(proj * (weight if air is None else weight * ~air), axis=2)  # (A, rows)
        for _ in range(6):
            back = _fourier_shift_axis(profile[:, None, :], -dy, 2, workers)[:, 0, :]
            valid = (np.arange(rows)[None, :] + dy[:, None] >= 0) & (np.arange(rows)[None, :] + dy[:, None] <= rows - 1)
            counts = valid.sum(axis=0)
            ref = np.where(counts > 0, (back * valid).sum(axis=0) / np.maximum(counts, 1), back.mean(axis=0))
            new = _ls_shift(profile[:, None, :], np.broadcast_to(ref, profile.shape)[:, None, :],
                            interior[None, None, :], k, start=None if not dy.any() else dy, workers=workers)
            new -= new.mean()
            change = np.max(np.abs(new - dy))
            dy = new
            if change < tolerance:
                break
        logger.debug("vertical shifts: rms %.3f px", float(np.sqrt(np.mean(dy**2))))
    if horizontal:
        progress.stage(0.1, 0.15, "horizontal: centers of mass")
        pv = _fourier_shift_axis(proj, -dy, 1, workers) if vertical else proj
        kv = int(math.ceil(np.max(np.abs(dy)))) + 1 if vertical else 0
        row_w = np.zeros(rows)
        row_w[kv:rows - kv] = 1.0
        q = np.sum(pv * weight * row_w[None, :, None], axis=1)  # (A, cols) column profiles
        u = np.arange(cols) + 0.5 - center
        mass = q.sum(axis=1)
        if np.all(np.abs(mass) > 0):
            dx = np.clip(_remove_translation((q * u).sum(axis=1) / mass, theta), -k, k)
        del pv
        n_levels = len(levels)
        for li, b in enumerate(levels):
            pb = _bin(proj, b)
            kb = max(int(math.ceil(k / b)), 1)
            rb, cb = pb.shape[1:]
            # rows that corrected frames fill from beyond their ends, widened by the low-pass (the
            # columns end in air)
            sigma_rows = min(smoothing, _ROW_SMOOTHING)
            e = kb + 1 + int(math.ceil(3 * sigma_rows))
            if rb - 2 * e < 4:
                raise ValueError(f"projections of {rows} rows are too few for max_shift={k} and "
                                 f"smoothing={smoothing} at binning {b}")
            edge_r = np.zeros(rb)
            edge_r[e:rb - e] = 1.0
            wb = _bin(weight, b) * edge_r[None, :, None]
            wt = np.ascontiguousarray(wb.transpose(0, 2, 1))
            p_lp = gaussian_filter(pb, (0, sigma_rows, smoothing), mode="nearest")
            circle = _circle_mask(cb)
            offset = center / b - cb / 2.0
            for it in range(iterations):
                progress.stage(0.15 + 0.85 * (li + it / iterations) / n_levels,
                               0.15 + 0.85 * (li + (it + 1) / iterations) / n_levels,
                               f"consistency: binning {b}, iteration {it + 1}")
                corrected = _fourier_shift_axis(_fourier_shift_axis(pb, -dy / b, 1, workers), -dx / b, 2, workers)
                corrected = corrected.astype(np.float32)
                vol = fbp(corrected, theta, center=center / b, threads=threads)
                vol *= circle
                reproj = project(vol, theta, n_cols=cb, center_offset=offset, threads=threads).astype(np.float64)
                reproj -= _self_term(corrected, cb, center / b, circle_radius=cb / 2.0)
                r_lp = gaussian_filter(reproj, (0, sigma_rows, smoothing), mode="nearest")
                moving = _fourier_shift_axis(p_lp, -dy / b, 1, workers)
                # the first two iterations search all integer lags again: a wrong start (e.g. a
                # side minimum of the row profiles) is caught against the reprojection
                search = li == 0 and it < 2
                new_dx = _ls_shift(moving, r_lp, wb, kb, start=None if search else dx / b, workers=workers) * b
                if vertical:
                    moving = _fourier_shift_axis(p_lp, -dx / b, 2, workers).transpose(0, 2, 1)
                    new_dy = _ls_shift(np.ascontiguousarray(moving), np.ascontiguousarray(r_lp.transpose(0, 2, 1)),
                                       wt, kb, start=None if search else dy / b, workers=workers) * b
                    new_dy -= new_dy.mean()
                else:
                    new_dy = dy
                new_dx = _remove_translation(new_dx, theta)  # keep the free object translation fixed
                change = float(np.sqrt(np.mean((new_dx - dx) ** 2 + (new_dy - dy) ** 2)))
                dx, dy = new_dx, new_dy
                logger.debug("binning %d iteration %d: rms change %.4f px", b, it + 1, change)
                if change < tolerance * b:
                    break
        dx = _remove_translation(dx, theta)
    progress.stage(1.0, 1.0, "done")
    return np.stack([dy, dx], axis=1)
