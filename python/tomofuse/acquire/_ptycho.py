"""Simulated far-field ptychographic scans: diffraction intensities of a probe scanned over a complex object."""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import scipy.fft

from .. import _validate as check

__all__ = ["ptycho_scan"]

logger = logging.getLogger(__name__)


def _complex_image(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if a.dtype.kind not in "fc" or a.dtype.fields is not None:
        raise TypeError(f"{name} must be a complex (or real float) array, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a.astype(np.complex128, copy=False)


def ptycho_scan(obj: np.ndarray, probe: np.ndarray, positions_px, *, photons: Optional[float],
                seed: int = 0) -> np.ndarray:
    """Far-field diffraction patterns of a ptychographic scan, ``|F(P . O_shifted)|^2`` with Poisson noise.

    Physics (projection approximation, Fraunhofer far field): at scan point
    ``k`` the exit wave is the probe times the object seen at the probe's
    position, ``psi_k(r) = P(r - f_k) O(r + q_k)`` on the probe's ``N x N``
    grid, and the detector records ``|FFT(psi_k)|^2`` with the zero frequency
    at the pattern center (index ``N // 2``, ``numpy.fft.fftshift``).  Each
    position ``p_k`` is split into a whole-pixel part ``q_k = floor(p_k)``,
    which selects the object crop exactly, and a fraction ``f_k`` in [0, 1),
    applied as a Fourier shift (linear phase ramp) of the probe, exact for a
    band-limited probe that vanishes at its array's edges (periodic wrap).
    Moving the probe by ``+f`` over the object is the same as moving the
    object by ``-f`` under the probe.

    With ``photons=None`` the patterns are noise free and normalized by the
    unitary FFT, so ``sum(I_k) = sum |psi_k|^2`` (Parseval).  Otherwise they
    are scaled by one factor so that the mean total count per pattern equals
    ``photons`` (the relative brightness of the patterns is kept), then each
    pixel is drawn from a Poisson distribution.

    Parameters
    ----------
    obj : (H, W) complex ndarray
        Object transmission ``exp(i phi - mu)`` (real arrays are accepted).
    probe : (N, N) complex ndarray
        Illumination, centered at index ``N // 2`` (``tomofuse.ptycho.focused_probe``).
    positions_px : (K, 2) array_like
        Probe-center positions ``(y, x)`` in object pixels relative to the
        object's center index ``(H // 2, W // 2)``; sub-pixel allowed.  The
        probe must lie inside the object: ``H // 2 + floor(y) - N // 2 >= 0``
        and ``... + N <= H`` (and likewise for x).
    photons : float or None
        Mean total counts per pattern (> 0), or None for noise-free
        intensities in the unitary normalization.
    seed : int
        Seed of the Poisson noise (``numpy.random.default_rng``).

    Returns
    -------
    (K, N, N) ndarray of float32
        Intensities (counts when ``photons`` is given).
    """
    o = _complex_image(obj, "obj")
    p = _complex_image(probe, "probe")
    n = p.shape[0]
    if p.shape != (n, n):
        raise ValueError(f"probe must be square (N, N), got shape {p.shape}")
    if o.shape[0] < n or o.shape[1] < n:
        raise ValueError(f"obj {o.shape} must be at least as large as the probe {p.shape}")
    try:
        pos = np.asarray(positions_px, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"positions_px must be a (K, 2) array of (y, x) pixels, got {type(positions_px).__name__}") \
            from None
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions_px must be (K, 2) of (y, x) pixels, got shape {pos.shape}")
    if pos.shape[0] == 0:
        raise ValueError("positions_px must hold at least one position (empty scan)")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions_px must be finite")
    if photons is not None:
        photons = check.number(photons, "photons", unit="counts per pattern", minimum=0.0, exclusive_minimum=True)
    seed = check.seed(seed)
    whole = np.floor(pos).astype(np.int64)
    frac = pos - whole
    h, w = o.shape
    start = whole + np.array([h // 2, w // 2]) - n // 2
    bad = (start[:, 0] < 0) | (start[:, 1] < 0) | (start[:, 0] + n > h) | (start[:, 1] + n > w)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"positions_px: {int(bad.sum())} of {len(pos)} positions put the {n}x{n} probe outside the "
                         f"{h}x{w} object, first k={k} at (y, x) = {tuple(pos[k])}; floor(y) must lie in "
                         f"[{n // 2 - h // 2}, {h - h // 2 - n + n // 2}] and floor(x) in "
                         f"[{n // 2 - w // 2}, {w - w // 2 - n + n // 2}]")
    u = np.fft.fftfreq(n)
    p_hat = scipy.fft.fft2(p)
    out = np.empty((len(pos), n, n), dtype=np.float64)
    for k in range(len(pos)):
        fy, fx = frac[k]
        if fy or fx:
            ramp = np.exp(-2j * math.pi * fy * u)[:, None] * np.exp(-2j * math.pi * fx * u)[None, :]
            pk = scipy.fft.ifft2(p_hat * ramp)
        else:
            pk = p
        y0, x0 = start[k]
        psi = pk * o[y0:y0 + n, x0:x0 + n]
        out[k] = np.abs(np.fft.fftshift(scipy.fft.fft2(psi, norm="ortho"))) ** 2
    if photons is not None:
        mean_total = float(out.sum()) / len(pos)
        if mean_total <= 0:
            raise ValueError("the exit waves carry no intensity (zero probe or object): cannot scale to photons")
        out *= float(photons) / mean_total
        rng = np.random.default_rng(int(seed))
        out = rng.poisson(out).astype(np.float64)
    logger.debug("ptycho_scan K=%d N=%d photons=%s", len(pos), n, photons)
    return out.astype(np.float32)
