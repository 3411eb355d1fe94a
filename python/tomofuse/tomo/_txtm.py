"""TXTM preprocessing: flat/dark normalization, -log, Paganin filtering (core FFT)."""

from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np
import scipy.fft

from .. import _core, materials
from .. import _validate as check

__all__ = ["minus_log", "normalize", "paganin"]

def _stack(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"{name} must be a (rows, cols) image or (n, rows, cols) stack, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def normalize(data: np.ndarray, flat: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Flat-field correction ``(data - dark) / (flat - dark)``.

    Parameters
    ----------
    data : (A, rows, cols) ndarray
        Raw projections.
    flat, dark : (rows, cols) or (n, rows, cols) ndarray
        White (beam, no sample) and dark (no beam) fields; stacks are averaged.

    Returns
    -------
    (A, rows, cols) ndarray of float32
        Transmission; pixels whose flat does not exceed the dark are set to 1.
    """
    d = _stack(data, "data")
    if d.ndim != 3:
        raise ValueError(f"data must be an (A, rows, cols) stack, got shape {d.shape}")
    f = _stack(flat, "flat").astype(np.float64)
    k = _stack(dark, "dark").astype(np.float64)
    f = f.mean(axis=0) if f.ndim == 3 else f
    k = k.mean(axis=0) if k.ndim == 3 else k
    for name, a in (("flat", f), ("dark", k)):
        if a.shape != d.shape[1:]:
            raise ValueError(f"{name} must match the frames of data, {d.shape[1:]}, got {a.shape}")
    span = f - k
    good = span > 0
    out = np.where(good, (d - k) / np.where(good, span, 1.0), 1.0)
    return out.astype(np.float32)


def minus_log(transmission: np.ndarray, *, floor: float = 1e-6) -> np.ndarray:
    """Line integrals ``-ln(T)`` of transmission images (Beer-Lambert), with ``T`` clipped at ``floor``.

    Returns
    -------
    ndarray of float32, same shape
    """
    t = _stack(transmission, "transmission")
    floor = check.positive_number(floor, "floor", "transmission")
    return (-np.log(np.clip(t.astype(np.float64), floor, None))).astype(np.float32)


def paganin(projections: np.ndarray, *, pixel_size: float, distance: float, energy_kev: float,
            delta_beta: float, pad="auto", chunk: int = 64, fft_rigor: str = "estimate",
            threads: Optional[int] = None) -> np.ndarray:
    """Single-material phase retrieval (Paganin et al. 2002) used as a low-pass filter.

    ``mu t = -ln( F^-1[ F[T] / (1 + pi lambda z (delta/beta) |u|^2) ] )`` with ``u``
    the spatial frequency (cycles/m) and ``T`` the flat-corrected transmission.
    The paper used ``delta/beta = 0.028`` on the TXTM data.  Frames are padded
    with their edge values against wrap-around; padding, real-to-complex FFTs,
    filter and crop run in the compiled core (``_core.filter_real_2d``, OpenMP
    over frames).

    The filter's point-spread function is ``K0(r / l) / (2 pi l^2)`` with
    ``l = sqrt(lambda z (delta/beta) / (4 pi))``; it decays like ``exp(-r / l)``, so
    ``pad="auto"`` adds a margin of ``max(8, 12 l / pixel)`` pixels per side (the
    kernel's weight beyond it is below 1e-5) and rounds up to an FFT-friendly size.
    At the paper's TXTM numbers (8.4 keV, 27.5 nm, z = 5 mm) ``l`` is 1.5 pixels: a
    1024^2 frame is filtered on 1080^2 instead of the classic 2048^2, with the same
    result to ~1e-6.

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        Transmission images (> 0), e.g. from ``normalize``.
    pixel_size : float
        Detector pixel size at the sample, meters.
    distance : float
        Propagation distance, meters.
    energy_kev : float
        Photon energy in keV.
    delta_beta : float
        Ratio of the refractive index decrement to the absorption index (>= 0).
    pad : "auto", bool or int
        ``"auto"``: margin from the filter's decay length (above); ``True``: twice the
        frame size; ``False``: none (periodic wrap-around); an int: that margin in pixels
        per side.
    chunk : int
        Projections handed to the core at once (transient memory ``chunk * rows * cols * 4``
        bytes; each core thread holds one padded frame and its spectrum).
    fft_rigor : {"estimate", "measure"}
        Planning of an FFTW build: ``"estimate"`` plans at once; ``"measure"`` times
        candidate algorithms once per frame size and process (~1 s at 2048^2), which can pay
        off on an idle machine for long stacks.  The two may differ in the last bits.  The
        default MKL build has one algorithm per size and ignores it
        (``tomofuse._core.fft_backend()`` says which library a build has).
    threads : int, optional
        Threads of the core FFT.

    Returns
    -------
    (A, rows, cols) ndarray of float32
        Attenuation line integrals ``mu t`` of the retrieved object (input for FBP).

    References
    ----------
    .. [1] D. Paganin et al., "Simultaneous phase and amplitude extraction from a
       single defocused image of a homogeneous object", J. Microsc. 206, 33 (2002).
       :doi:`10.1046/j.1365-2818.2002.01010.x`
    """
    p = _stack(projections, "projections")
    if p.ndim != 3:
        raise ValueError(f"projections must be an (A, rows, cols) stack, got shape {p.shape}")
    p = p.astype(np.float32, copy=False)
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("projections must be finite transmission values > 0 (normalize flat/dark first)")
    pixel = check.positive_length(pixel_size, "pixel_size")
    z = check.positive_number(distance, "distance", "meters", allow_zero=True)
    wavelength = materials.wavelength(energy_kev)
    db = check.positive_number(delta_beta, "delta_beta", "delta per beta", allow_zero=True)
    check.choice(fft_rigor, "fft_rigor", ("measure", "estimate"))
    chunk = check.integer(chunk, "chunk", minimum=1)
    th = check.threads(threads)
    rows, cols = p.shape[1:]
    decay = math.sqrt(wavelength * z * db / (4 * math.pi)) / pixel  # l in pixels
    if isinstance(pad, str):
        if pad != "auto":
            raise ValueError(f"pad must be 'auto', a bool or a margin in pixels, got {pad!r}")
        margin = max(8, int(math.ceil(12 * decay)))
        pr, pc = (scipy.fft.next_fast_len(n + 2 * margin, real=True) for n in (rows, cols))
    elif isinstance(pad, (bool, np.bool_)):
        pr, pc = (2 * rows, 2 * cols) if pad else (rows, cols)
    elif isinstance(pad, numbers.Integral):
        margin = check.integer(pad, "pad (margin in pixels)", minimum=0)
        pr, pc = rows + 2 * margin, cols + 2 * margin
    else:
        raise TypeError(f"pad must be 'auto', a bool or a margin in pixels (int >= 0), got {pad!r}")
    uy = np.fft.fftfreq(pr, d=pixel)[:, None]
    ux = np.fft.rfftfreq(pc, d=pixel)[None, :]
    response = (1.0 / (1.0 + math.pi * wavelength * z * db * (uy**2 + ux**2))).astype(np.float32)
    out = np.empty(p.shape, dtype=np.float32)
    for s in range(0, p.shape[0], chunk):
        # edge padding, real-to-complex FFT, filter, inverse and crop in the core (OpenMP over frames)
        filtered = _core.filter_real_2d(np.ascontiguousarray(p[s:s + chunk]), response, pad_ny=pr, pad_nx=pc,
                                        rigor=fft_rigor, threads=th)
        np.maximum(filtered, np.float32(1e-6), out=filtered)
        np.log(filtered, out=filtered)
        np.negative(filtered, out=out[s:s + chunk])
    return out
