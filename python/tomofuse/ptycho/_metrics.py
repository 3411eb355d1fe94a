"""Quality of a reconstructed ptychographic object against the known truth, up to the ambiguities of ptychography."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple, Optional

import numpy as np
import scipy.fft
import scipy.optimize

from .. import _validate as check

__all__ = ["fourier_ring_correlation", "object_error"]

logger = logging.getLogger(__name__)


class _Fit(NamedTuple):
    """The best match of an estimate onto the truth (internal; see :func:`_align`)."""

    residual: float  # ||c shift_s(exp(i(a y + b x)) estimate) - truth||_mask
    scale: complex  # c
    ramp: tuple  # (a, b), radians per pixel along (y, x), applied before the shift
    shift: tuple  # (dy, dx), pixels the (ramped) estimate was moved by
    aligned: np.ndarray  # c shift_s(exp(i(a y + b x)) estimate), (H, W) complex128


def _image(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype.kind not in "iufc" or a.dtype.fields is not None:
        raise TypeError(f"{name} must be a complex (or real) numeric array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols), got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got shape {a.shape}")
    out = a.astype(np.complex128, copy=False)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return out


def _check(estimate, truth, mask, max_shift):
    e = _image(estimate, "estimate")
    t = _image(truth, "truth")
    if e.shape != t.shape:
        raise ValueError(f"estimate {e.shape} and truth {t.shape} must have the same shape")
    if mask is None:
        m = np.ones(t.shape, dtype=bool)
    else:
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"mask must be a numpy.ndarray of bool or None, got {type(mask).__name__}")
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be a bool array (True = include), got dtype {mask.dtype}")
        if mask.shape != t.shape:
            raise ValueError(f"mask {mask.shape} must have the shape of truth {t.shape}")
        m = mask
    if int(np.count_nonzero(m)) < 3:
        raise ValueError(f"mask must include at least 3 pixels, it includes {int(np.count_nonzero(m))}")
    s = check.number(max_shift, "max_shift", unit="pixels, at most a quarter of the smaller side",
                     minimum=0.0, maximum=min(t.shape) / 4.0)
    return e, t, m, s


class _Matcher:
    """Residual of ``c shift_s(exp(i(a y + b x)) estimate)`` against the truth, ``c`` in closed form.

    The ramp is applied before the shift, so a ramp the estimate carries is
    removed before the (periodic) Fourier shift, which then moves a periodic-ish
    image instead of one with a phase jump at the edges; the other order
    differs only by a constant phase.  The shift multiplies the spectrum by
    ``exp(-2 pi i (u dy + v dx))``.  Coordinates ``y, x`` are pixel indices
    relative to the image center.
    """

    def __init__(self, e: np.ndarray, t: np.ndarray, m: np.ndarray):
        h, w = t.shape
        self.m = m
        self.t_m = t[m]
        self.t2 = float(np.vdot(self.t_m, self.t_m).real)
        self.e = e
        self.u = np.fft.fftfreq(h)[:, None]
        self.v = np.fft.fftfreq(w)[None, :]
        self.y = (np.arange(h) - h // 2).astype(np.float64)[:, None]
        self.x = (np.arange(w) - w // 2).astype(np.float64)[None, :]
        self.evaluations = 0

    def moved(self, a: float, b: float, dy: float, dx: float) -> np.ndarray:
        """``shift_(dy, dx)(exp(i(a y + b x)) e)`` on the whole grid."""
        z = self.e * (np.exp(1j * a * self.y) * np.exp(1j * b * self.x)) if (a or b) else self.e
        if dy == 0.0 and dx == 0.0:
            return z
        ph = np.exp(-2j * math.pi * self.u * dy) * np.exp(-2j * math.pi * self.v * dx)
        return scipy.fft.ifft2(scipy.fft.fft2(z) * ph)

    def residual2(self, a: float, b: float, dy: float, dx: float) -> tuple:
        """``(||c u - t||^2, c)`` with ``u`` the ramped, shifted estimate over the mask and the best ``c``."""
        self.evaluations += 1
        u = self.moved(a, b, dy, dx)[self.m]
        uu = float(np.vdot(u, u).real)
        if uu == 0.0:
            return self.t2, 0.0j
        ut = complex(np.vdot(u, self.t_m))
        return max(self.t2 - abs(ut) ** 2 / uu, 0.0), ut / uu


def _mean_gradient_phase(z: np.ndarray, m: np.ndarray, axis: int) -> float:
    """Phase of ``sum z[r + 1] conj z[r]`` along ``axis`` over neighboring pixels both in the mask."""
    sl_hi = [slice(None), slice(None)]
    sl_lo = [slice(None), slice(None)]
    sl_hi[axis] = slice(1, None)
    sl_lo[axis] = slice(None, -1)
    both = m[tuple(sl_hi)] & m[tuple(sl_lo)]
    acc = np.sum((z[tuple(sl_hi)] * np.conj(z[tuple(sl_lo)]))[both])
    return float(np.angle(acc)) if acc != 0 else 0.0


def _integer_shift(e: np.ndarray, t: np.ndarray, m: np.ndarray, max_shift: float) -> tuple:
    """Shift (dy, dx) moving ``e`` onto ``t``: cross-correlation peak within +-max_shift, refined by a parabola."""
    e0 = np.where(m, e - e[m].mean(), 0.0)
    t0 = np.where(m, t - t[m].mean(), 0.0)
    # xc[s] = sum_r t0(r) conj(e0(r - s)): peaks at the shift s that moves e0 onto t0.
    xc = np.abs(scipy.fft.ifft2(scipy.fft.fft2(t0) * np.conj(scipy.fft.fft2(e0))))
    h, w = t.shape
    r = int(math.floor(max_shift + 0.5))  # search whole pixels within reach of the bound
    offs = np.arange(-r, r + 1)
    win = xc[np.ix_(offs % h, offs % w)]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    out = [float(offs[iy]), float(offs[ix])]
    # parabolic refinement along each axis on the full (periodic) correlation map
    py, px = int(offs[iy]) % h, int(offs[ix]) % w
    for axis, (c0, cm, cp) in enumerate(((xc[py, px], xc[(py - 1) % h, px], xc[(py + 1) % h, px]),
                                         (xc[py, px], xc[py, (px - 1) % w], xc[py, (px + 1) % w]))):
        den = cm - 2.0 * c0 + cp
        if den < 0:
            out[axis] += float(np.clip(0.5 * (cm - cp) / den, -0.5, 0.5))
    return tuple(float(np.clip(s, -max_shift, max_shift)) for s in out)


def _fit(e: np.ndarray, t: np.ndarray, m: np.ndarray, max_shift: float) -> _Fit:
    """Minimize ``||c shift_s(exp(i(a y + b x)) e) - t||_m`` over c, (a, b) and |s_y|, |s_x| <= max_shift."""
    h, w = t.shape
    match = _Matcher(e, t, m)
    # 1) ramp guess: difference of the mean phase gradients (insensitive to a small shift)
    a0 = _mean_gradient_phase(t, m, 0) - _mean_gradient_phase(e, m, 0)
    b0 = _mean_gradient_phase(t, m, 1) - _mean_gradient_phase(e, m, 1)
    a0 = (a0 + math.pi) % (2 * math.pi) - math.pi
    b0 = (b0 + math.pi) % (2 * math.pi) - math.pi
    # 2) shift guess: cross-correlation of the de-ramped estimate with the truth.  A
    #    constant estimate is left where it is (a shift does not change it).
    if max_shift > 0 and np.ptp(e.real) == 0 and np.ptp(e.imag) == 0:
        max_shift = 0.0
    if max_shift > 0:
        ramp0 = np.exp(1j * (a0 * match.y + b0 * match.x))
        s0 = _integer_shift(e * ramp0, t, m, max_shift)
    else:
        s0 = (0.0, 0.0)
    # 3) joint refinement of ramp and shift.  Ramps are scaled to radians across the
    #    image so that all variables are O(1).
    sy, sx = h / (2 * math.pi), w / (2 * math.pi)
    scale2 = match.t2 if match.t2 > 0 else 1.0
    p0 = np.array([a0 * sy, b0 * sx, s0[0], s0[1]])
    n_var = 4 if max_shift > 0 else 2

    def f(q):
        full = np.concatenate([q, p0[n_var:]])
        return match.residual2(full[0] / sy, full[1] / sx, full[2], full[3])[0] / scale2

    bounds = [(None, None), (None, None), (-max_shift, max_shift), (-max_shift, max_shift)][:n_var]
    r = scipy.optimize.minimize(f, p0[:n_var], method="L-BFGS-B", bounds=bounds,
                                options=dict(ftol=1e-14, gtol=1e-9, maxiter=100))
    p = np.concatenate([r.x, p0[n_var:]]) if r.fun <= f(p0[:n_var]) else p0
    a, b, dy, dx = p[0] / sy, p[1] / sx, float(p[2]), float(p[3])
    res2, c = match.residual2(a, b, dy, dx)
    aligned = c * match.moved(a, b, dy, dx)
    logger.debug("object_error fit: %d evaluations", match.evaluations)
    return _Fit(math.sqrt(res2), complex(c), (float(a), float(b)), (dy, dx), aligned)


def _align(estimate, truth, *, mask=None, max_shift: float = 2.0) -> tuple:
    """``(error, fit)``: :func:`object_error` and the best match ``fit`` of the estimate (a :class:`_Fit`)."""
    e, t, m, s = _check(estimate, truth, mask, max_shift)
    flat = _fit(np.ones_like(t), t, m, 0.0).residual
    if not flat > 0.0 or flat <= 1e-12 * math.sqrt(float(np.vdot(t[m], t[m]).real)):
        raise ValueError("truth has no contrast over the mask beyond a constant and a phase ramp: "
                         "the error is undefined")
    fit = _fit(e, t, m, s)
    err = fit.residual / flat
    logger.debug("object_error %.4g shift=%s ramp=%s scale=%s", err, fit.shift, fit.ramp, fit.scale)
    return err, fit


def object_error(estimate: np.ndarray, truth: np.ndarray, *, mask: Optional[np.ndarray] = None,
                 max_shift: float = 2.0) -> float:
    """Error of a reconstructed complex object against the truth, up to the ambiguities of ptychography.

    A ptychographic reconstruction is determined only up to a constant complex
    factor (phase offset and, with an unknown probe, amplitude), a linear phase
    ramp (traded against a shift of the far-field pattern) and a small lateral
    shift (traded against the probe's position).  This metric removes all of
    them before comparing::

        e = min_{c, a, b, s} || c exp(i (a y + b x)) shift_s(estimate) - truth ||_mask
            / min_{c, a, b}  || c exp(i (a y + b x))                   - truth ||_mask

    with ``||.||_mask`` the 2-norm over the pixels where ``mask`` is True,
    ``c`` complex, ``(a, b)`` a phase ramp and ``s`` a sub-pixel shift.  The
    denominator is the same fit applied to a flat guess, so a flat (constant)
    estimate scores exactly 1.0 and the truth itself 0.  It equals the
    object's contrast ``||truth - mean_mask(truth)||_mask`` unless the truth
    itself contains a phase ramp (a ramp is not counted as contrast); it is
    never larger.  0.1 means the residual is a tenth of the object's
    contrast; values above 1 are worse than a flat guess.

    Algorithm: a ramp guess from the difference of the mean phase gradients
    of truth and estimate, a shift guess from the cross-correlation peak
    (within ``max_shift``, refined by a parabola), then a joint refinement of
    ramp and shift with ``scipy.optimize`` (``c`` in closed form, ``c = <u,
    t> / <u, u>`` over the mask).  The shift is applied as a Fourier shift,
    which treats the image as periodic: keep the mask away from the image
    edges (the well-scanned region) so wrapped-around pixels do not count.
    A 512 x 512 image takes about a second.

    Parameters
    ----------
    estimate : (H, W) complex ndarray
        Reconstructed object transmission (real arrays are accepted), any
        global scale and phase.
    truth : (H, W) complex ndarray
        True object transmission on the same pixel grid.
    mask : (H, W) bool ndarray, optional
        True where the error is measured (e.g. the well-scanned region);
        default all pixels.  At least 3 pixels.
    max_shift : float
        Largest shift searched along each axis, pixels, in ``[0, min(H, W) /
        4]``; 0 disables the shift.

    Returns
    -------
    float
        Dimensionless error, >= 0 (0 = perfect, 1 = as good as a flat guess).

    Raises
    ------
    TypeError
        If an argument is not an array of the right kind (``mask`` not bool,
        ``estimate`` or ``truth`` not numeric) or ``max_shift`` is not a number.
    ValueError
        On a shape mismatch, non-finite values, a mask with fewer than 3
        pixels, ``max_shift`` out of range, or a truth without contrast over
        the mask.
    """
    return _align(estimate, truth, mask=mask, max_shift=max_shift)[0]


def fourier_ring_correlation(object_a: np.ndarray, object_b: np.ndarray, *, pixel_size: float,
                             mask: Optional[np.ndarray] = None, max_shift: float = 2.0,
                             threshold="half-bit"):
    """Resolution of a ptychographic reconstruction from two independent half-scan objects (Fourier ring correlation).

    Ptychography's usual resolution estimate without a known truth: reconstruct
    the object twice from disjoint halves of the scan (e.g. even and odd
    positions), remove from the second what ptychography cannot determine
    (a complex factor, a linear phase ramp and a sub-pixel shift, fitted as in
    :func:`object_error` with the first object as the reference), and correlate
    their phase images ring by ring in Fourier space.  The images are cut to
    the largest square inside the bounding box of ``mask`` and tapered by a
    Hann window (no edge jump enters the spectrum).  Noise that each half
    fitted on its own lowers the correlation; the crossing with the threshold
    is the resolution.

    Parameters
    ----------
    object_a, object_b : (H, W) complex ndarray
        The two reconstructions on the same object grid (``Reconstruction.object``).
    pixel_size : float
        Object pixel size, meters (``tomofuse.ptycho.object_pixel_size``).
    mask : (H, W) bool ndarray, optional
        The well-scanned region of both, e.g. ``(ill_a > 0.3 max) & (ill_b >
        0.3 max)`` from the reconstructions' ``illumination``; default all
        pixels.
    max_shift : float
        Largest relative shift fitted between the two, pixels.
    threshold : str or float
        As :func:`tomofuse.tomo.fsc` (``"half-bit"`` default).

    Returns
    -------
    tomofuse.tomo.FSCResult
        ``resolution`` is the half-period, meters; ``frequency`` in 1/m.
    """
    from ..tomo import fsc

    a, b, m, s = _check(object_a, object_b, mask, max_shift)
    ys, xs = np.nonzero(m)
    side = (min(ys.max() - ys.min(), xs.max() - xs.min()) + 1) // 2 * 2
    if side < 16:
        raise ValueError(f"mask spans only {side} pixels: at least 16 x 16 are needed for a ring correlation")
    cy, cx = (ys.max() + ys.min() + 1) // 2, (xs.max() + xs.min() + 1) // 2
    cut = (slice(cy - side // 2, cy + side // 2), slice(cx - side // 2, cx + side // 2))
    a, b, m = a[cut], b[cut], m[cut]
    fit = _fit(b, a, m, s)
    ref = np.vdot(a[m], np.ones(int(m.sum())))  # the mean phase of a, removed from both
    ref = ref / abs(ref) if ref != 0 else 1.0
    win = np.outer(np.hanning(side), np.hanning(side))
    pa = np.angle(a * ref)
    pb = np.angle(fit.aligned * ref)
    pa = (pa - pa.mean()) * win
    pb = (pb - pb.mean()) * win
    return fsc(pa, pb, voxel_size=pixel_size, threshold=threshold)
