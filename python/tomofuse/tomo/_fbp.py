"""Filtered back-projection (parallel beam) with the core's pixel-driven back-projector."""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import numpy as np
import scipy.fft

from .. import _core
from .. import _validate as check
from .._memory import check_memory
from ._gridrec import FourierBackprojector
from ._projector import _angles, _float_array, slice_shape

__all__ = ["FILTERS", "METHODS", "fbp", "ramp_filter", "reconstruct_halves"]

FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def ramp_filter(n: int, *, filter: str = "ramp") -> np.ndarray:
    """Frequency response (length ``n``, numpy FFT order) of the FBP filter.

    The ramp is the DFT of the band-limited spatial ramp kernel (Kak & Slaney,
    *Principles of Computerized Tomographic Imaging*, eq. 3.61):
    ``h(0) = 1/4``, ``h(k) = -1/(pi k)^2`` for odd ``k``, 0 for even ``k``, which
    gets the zero frequency right (unlike ``|f|`` sampled directly).  Windows
    (with ``f`` in cycles per pixel, ``|f| <= 1/2``): Shepp-Logan
    ``sinc(f)``, cosine ``cos(pi f)``, Hamming ``0.54 + 0.46 cos(2 pi f)``,
    Hann ``0.5 + 0.5 cos(2 pi f)``.

    Parameters
    ----------
    n : int
        Padded detector width.
    filter : str
        One of ``FILTERS``.

    Returns
    -------
    (n,) ndarray of float64
    """
    check.choice(filter, "filter", FILTERS)
    k = np.fft.fftfreq(n) * n  # integer offsets in FFT order
    h = np.zeros(n)
    h[0] = 0.25
    odd = (np.abs(k) % 2) == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    response = np.real(np.fft.fft(h))
    f = np.fft.fftfreq(n)
    if filter == "shepp-logan":
        response *= np.sinc(f)
    elif filter == "cosine":
        response *= np.cos(math.pi * f)
    elif filter == "hamming":
        response *= 0.54 + 0.46 * np.cos(2 * math.pi * f)
    elif filter == "hann":
        response *= 0.5 + 0.5 * np.cos(2 * math.pi * f)
    return response


def center_offset(center, cols: int) -> float:
    """The rotation axis ``center`` (column in pixels, None = ``cols / 2``) as an offset from
    the detector center, checked to lie on the detector."""
    if center is None:
        return 0.0
    c = check.number(center, "center", unit="column in pixels")
    if not (0.0 <= c <= cols):
        raise ValueError(f"center must lie on the detector [0, {cols}], got {center!r}")
    return c - cols / 2.0


def padded_width(cols: int, padding: bool) -> int:
    """Row length of the filtering FFT: twice the width rounded up to a power of two, or ``cols``."""
    return 1 << max(int(math.ceil(math.log2(2 * cols))), 1) if padding else cols


def filter_rows(proj: np.ndarray, *, filter: str = "ramp", padding: bool = True,
                threads: Optional[int] = None) -> np.ndarray:
    """Projections ``(A, rows, cols)`` filtered along the detector rows with ``ramp_filter``.

    Rows are padded with their edge values to ``padded_width`` (centered) and cropped back;
    the FFTs run in the input's precision (float32: the core's, ``threads`` OpenMP threads
    over rows; float64: scipy.fft, ``threads`` workers), over rows that are independent
    transforms, so the result does not depend on ``threads``.
    """
    cols = proj.shape[2]
    n_pad = padded_width(cols, padding)
    response = _half_response(n_pad, filter, proj.dtype.str)
    workers = check.threads(threads)
    if proj.dtype == np.float32:
        # every row a (1, cols) frame of the core's padded real filter (3x scipy.fft's speed at
        # 1024 columns: planned SIMD transforms into per-thread buffers)
        frames = np.ascontiguousarray(proj).reshape(-1, 1, cols)
        out = _core.filter_real_2d(frames, response[None, :], pad_ny=1, pad_nx=n_pad, threads=workers)
        return out.reshape(proj.shape)
    left = (n_pad - cols) // 2
    padded = np.pad(proj, ((0, 0), (0, 0), (left, n_pad - cols - left)), mode="edge") if n_pad > cols else proj
    spectrum = scipy.fft.rfft(padded, axis=2, workers=workers)
    spectrum *= response
    filtered = scipy.fft.irfft(spectrum, n=n_pad, axis=2, workers=workers)
    return np.ascontiguousarray(filtered[:, :, left:left + cols], dtype=proj.dtype)


@functools.lru_cache(maxsize=16)
def _half_response(n_pad: int, filter: str, dtype: str) -> np.ndarray:
    """``ramp_filter(n_pad)[: n_pad // 2 + 1]`` in ``dtype``, read-only: made once, not for every
    slice that the Fourier path filters."""
    r = ramp_filter(n_pad, filter=filter)[: n_pad // 2 + 1].astype(np.dtype(dtype))
    r.flags.writeable = False
    return r


METHODS = ("direct", "fourier")


def fbp(projections: np.ndarray, angles, *, center: Optional[float] = None, filter: str = "ramp",
        method: str = "direct", padding: bool = True, shape: Optional[Sequence[int]] = None,
        threads: Optional[int] = None, callback=None) -> np.ndarray:
    """Filtered back-projection of parallel-beam projections; detector rows become z.

    ``f(x, y) = pi / A * sum_a Q_a(x cos theta_a + y sin theta_a)``, with ``Q`` the
    projections filtered along the detector rows (``ramp_filter``) and the sum
    done by the core's pixel-driven back-projector with linear interpolation.
    The geometry is that of ``project``, so ``fbp(project(x), angles)`` ~ ``x``.

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        Line integrals (e.g. ``-log`` of transmission), float32 or float64.
    angles : (A,) array_like
        Radians; spread over 180 degrees for a complete scan.
    center : float, optional
        Column (in pixels, continuous, pixel ``c`` centered at ``c + 0.5``) of the
        rotation axis; None = detector center ``cols / 2``.
    filter : str
        One of ``FILTERS``.
    method : {"direct", "fourier"}
        ``"direct"``: the core's pixel-driven back-projector (linear interpolation on
        the detector; bit-identical for any thread count).  ``"fourier"``: the same
        sum by a non-uniform FFT (gridding in the core, trigonometric interpolation on the
        detector with linear interpolation's response), O(N^2 log N) per slice instead of
        O(A N^2); also bit-identical for any thread count, within 3e-5 (float32) of the
        exact sum.
    padding : bool
        Pad rows with their edge values to twice the width (power of two)
        before filtering, against truncation artifacts.
    shape : (y, x) ints, optional
        Slice size (default ``(cols, cols)``).
    threads : int, optional
        Threads of the core and of the filtering FFTs (None = the package default); the
        result does not depend on it.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    volume : (rows, y, x) ndarray
        In units of the projections per pixel length.
    """
    check.choice(method, "method", METHODS)
    check.choice(filter, "filter", FILTERS)
    check.flag(padding, "padding")
    check.callback(callback)
    n_threads = check.threads(threads)
    proj = _float_array(projections, "projections", 3)
    th = _angles(angles, proj.shape[0])
    n_angles, rows, cols = proj.shape
    offset = center_offset(center, cols)
    ny, nx = slice_shape(shape, cols)
    # Peak memory: the input as float, the filtered (padded) projections and the volume.
    item = proj.dtype.itemsize
    check_memory(item * (n_angles * rows * (cols + padded_width(cols, padding)) + rows * ny * nx),
                 stage="tomofuse.tomo.fbp", detail=f"{n_angles} projections of {rows}x{cols}, a {rows}x{ny}x{nx} volume",
                 remedy="reconstruct fewer slices (rows) per call, or write the volume in chunks with "
                        "tomofuse.distributed.fbp_to_zarr")
    if callback is not None:
        callback(0.0, "filtering")
    if method == "fourier":
        # one slice at a time: its rows are filtered and back-projected while they are in cache
        # (filtering whole blocks first made 2048-px slices 1.5x slower per slice)
        bp = FourierBackprojector(th, cols=cols, center_offset=offset, ny=ny, nx=nx, dtype=proj.dtype,
                                  threads=n_threads)
        volume = np.empty((rows, ny, nx), dtype=proj.dtype)
        for z in range(rows):
            filtered = filter_rows(proj[:, z:z + 1], filter=filter, padding=padding, threads=n_threads)
            bp(filtered[:, 0, :], volume[z])
            if callback is not None and (z + 1 == rows or (z + 1) % max(1, rows // 20) == 0):
                callback(0.99 * (z + 1) / rows, f"back-projecting (fourier) slice {z + 1}/{rows}")
    else:
        filtered = filter_rows(proj, filter=filter, padding=padding, threads=n_threads)
        if callback is not None:
            callback(0.3, "back-projecting")
        volume = _core.backproject_linear(filtered, th, ny=ny, nx=nx, center_offset=offset, threads=n_threads)
    volume *= math.pi / n_angles
    if callback is not None:
        callback(1.0, "done")
    return volume


def reconstruct_halves(projections: np.ndarray, angles, **fbp_options) -> tuple[np.ndarray, np.ndarray]:
    """Two independent reconstructions from the even and the odd projections.

    The input of ``fsc``: each half sees every other angle of the same scan,
    so their noise is independent while the object is the same.

    Parameters
    ----------
    projections : (A, rows, cols) ndarray
        A >= 4 projections.
    angles : (A,) array_like
        Radians.
    **fbp_options
        Passed to ``fbp`` (``center``, ``filter``, ``padding``, ``shape``, ``threads``).

    Returns
    -------
    even, odd : (rows, y, x) ndarray
    """
    proj = _float_array(projections, "projections", 3)
    th = _angles(angles, proj.shape[0])
    if proj.shape[0] < 4:
        raise ValueError(f"projections: need at least 4 projections to split, got {proj.shape[0]}")
    return (fbp(np.ascontiguousarray(proj[0::2]), th[0::2], **fbp_options),
            fbp(np.ascontiguousarray(proj[1::2]), th[1::2], **fbp_options))
