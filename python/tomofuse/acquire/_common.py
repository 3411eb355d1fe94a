"""Shared pieces of the forward models: the dataset, optics on projection stacks, detector sampling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import scipy.fft

from .. import _core, materials
from .._constants import FWHM_PER_SIGMA
from .._padding import periodic_pad
from ..phantom import Electrode

__all__ = ["Acquisition", "FWHM_PER_SIGMA"]



@dataclass(eq=False)
class Acquisition:
    """A simulated tomographic scan with the truth it was made from.

    Attributes
    ----------
    modality : str
        ``"txtm"`` (transmission images in counts) or ``"pxct"`` (phase in rad).
    data : (A, rows, cols) ndarray of float32
        Projections; rows run along z (the rotation axis), columns across the
        detector.
    theta : (A,) ndarray of float64
        Projection angles, radians (``tomofuse.tomo.project`` geometry).
    pixel_size : float
        Detector pixel at the sample, meters.
    energy_kev : float
        Photon energy, keV.
    origin : (3,) tuple of float
        ``(z, y, x)`` in meters, in the phantom's frame (its corner voxel's
        outer corner at 0), of the outer corner of the grid that
        ``tomofuse.tomo.fbp(data-derived projections, theta)`` reconstructs with
        its default center and shape: voxel ``(k, i, j)`` of that volume is
        centered at ``origin + (k + 0.5, i + 0.5, j + 0.5) * pixel_size``.
    air_mask : (rows, cols) ndarray of bool
        Pixels that see no sample in any projection (beam only).
    flat : (n_flats, rows, cols) ndarray of float32 or None
        White fields (beam, no sample), counts; TXTM only.
    dark : (n_darks, rows, cols) ndarray of float32 or None
        Dark fields (no beam), counts; TXTM only.
    truth : dict
        The simulation's parameters and hidden quantities (e.g. ``"shifts"``,
        ``"phase_ramps"``, ``"beam_profile"``); see the simulator's docstring.
    """

    modality: str
    data: np.ndarray
    theta: np.ndarray
    pixel_size: float
    energy_kev: float
    origin: tuple
    air_mask: np.ndarray
    flat: Optional[np.ndarray] = None
    dark: Optional[np.ndarray] = None
    truth: dict = field(default_factory=dict)

    @property
    def wavelength(self) -> float:
        """Photon wavelength, meters."""
        return materials.wavelength(self.energy_kev)


# ---------------------------------------------------------------- argument checks

def check_electrode(electrode) -> Electrode:
    if not isinstance(electrode, Electrode):
        raise TypeError(f"electrode must be a tomofuse.phantom.Electrode, got {type(electrode).__name__}")
    return electrode


# ---------------------------------------------------------------- sample

def pillar(volumes: tuple[np.ndarray, ...], cylinder: bool) -> float:
    """Empty (vacuum) every voxel outside the cylinder inscribed in the (y, x) plane, in place.

    Returns the radius of the sample's footprint about the rotation axis, in
    voxels: the cylinder's, or half the (y, x) diagonal without it.
    """
    _, ny, nx = volumes[0].shape
    if not cylinder:
        return 0.5 * math.hypot(ny, nx)
    radius = 0.5 * min(ny, nx)
    y = np.arange(ny) + 0.5 - ny / 2.0
    x = np.arange(nx) + 0.5 - nx / 2.0
    outside = (y[:, None] ** 2 + x[None, :] ** 2) > radius**2
    for v in volumes:
        v[:, outside] = 0.0
    return radius


# ---------------------------------------------------------------- optics on frames

def filter_frames(frames: np.ndarray, transfer: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                  pad: tuple[int, int], shifts: Optional[np.ndarray] = None, threads: int = 0,
                  keep_complex: bool = False, chunk: int = 16) -> np.ndarray:
    """Multiply every frame's 2-D spectrum by ``transfer`` (core FFT, complex64).

    Frames are extended by at least ``2 * pad = (rows, cols)`` pixels (to a fast
    FFT size) with a blend from their last to their first row/column
    (``periodic_pad``), so nothing wraps around and the periodic extension has
    no jump to ring.

    Parameters
    ----------
    frames : (A, rows, cols) real or complex ndarray
    transfer : callable
        ``transfer(uy, ux)`` with spatial frequencies in cycles per pixel,
        shaped ``(P, 1)`` and ``(1, Q)``, returning a ``(P, Q)`` array.
    shifts : (A, 2) ndarray, optional
        ``(dy, dx)`` pixels: frame ``a`` also moves by ``+dy, +dx``
        (``out(r, c) = in(r - dy, c - dx)``), exact for band-limited content.
    keep_complex : bool
        Return complex64; else the real part as float32.
    """
    n_a, rows, cols = frames.shape
    pr = scipy.fft.next_fast_len(rows + 2 * pad[0])
    pc = scipy.fft.next_fast_len(cols + 2 * pad[1])
    uy = np.fft.fftfreq(pr)[:, None]
    ux = np.fft.fftfreq(pc)[None, :]
    h = np.asarray(transfer(uy, ux), dtype=np.complex64)
    plan = _core.FFTPlan2D(pr, pc)
    out = np.empty(frames.shape, dtype=np.complex64 if keep_complex else np.float32)
    for s in range(0, n_a, chunk):
        block = frames[s:s + chunk]
        work = periodic_pad(periodic_pad(block, 1, pr), 2, pc)
        work = np.ascontiguousarray(work, dtype=np.complex64)
        plan.forward(work, out=work, threads=threads)
        work *= h
        if shifts is not None:
            sh = shifts[s:s + chunk]
            ramp_y = np.exp(-2j * np.pi * uy[None] * sh[:, 0, None, None])  # (k, pr, 1)
            ramp_x = np.exp(-2j * np.pi * ux[None] * sh[:, 1, None, None])  # (k, 1, pc)
            work *= (ramp_y * ramp_x).astype(np.complex64)
        plan.backward(work, out=work, threads=threads)
        res = work[:, :rows, :cols]
        out[s:s + chunk] = res if keep_complex else res.real
    return out


def gaussian_transfer(sigma_px: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Optical transfer function of a Gaussian PSF of standard deviation ``sigma_px`` pixels."""
    def h(uy, ux):
        return np.exp(-2.0 * math.pi**2 * sigma_px**2 * (uy**2 + ux**2))
    return h


# ---------------------------------------------------------------- detector sampling

def rebin_axis(a: np.ndarray, axis: int, ratio: float) -> tuple[np.ndarray, float]:
    """Average ``a`` over detector pixels ``ratio`` (>= 1) fine pixels wide, centered on the fine grid.

    Exact area integration of the piecewise-constant fine pixels (cumulative
    sum, linear between pixel edges).  Returns the coarse array and the
    offset (fine pixels) of the first coarse pixel's edge.
    """
    n = a.shape[axis]
    if abs(ratio - 1.0) < 1e-9:
        return a, 0.0
    n_out = int(math.floor(n / ratio + 1e-9))
    x0 = 0.5 * (n - n_out * ratio)
    cum = np.concatenate([np.zeros_like(np.take(a, [0], axis=axis)), np.cumsum(a, axis=axis, dtype=np.float64)],
                         axis=axis)
    edges = x0 + ratio * np.arange(n_out + 1)
    lo = np.clip(np.floor(edges).astype(np.intp), 0, n - 1)
    t = edges - lo
    shape = [1] * a.ndim
    shape[axis] = n_out + 1
    t = t.reshape(shape)
    c_lo = np.take(cum, lo, axis=axis)
    c_hi = np.take(cum, lo + 1, axis=axis)
    at_edges = c_lo + t * (c_hi - c_lo)
    coarse = np.diff(at_edges, axis=axis) / ratio
    return coarse, x0


def beam_profile(shape: tuple[int, int], variation: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth illumination ``1 + variation * g`` with ``g`` a random low-order field in [-1, 1]."""
    rows, cols = shape
    r = (np.arange(rows) + 0.5) / rows
    c = (np.arange(cols) + 0.5) / cols
    g = np.zeros(shape)
    for ky in range(3):
        for kx in range(3):
            if ky == kx == 0:
                continue
            amp = rng.normal() / (1 + ky + kx)
            g += amp * np.cos(math.pi * ky * r + rng.uniform(0, 2 * math.pi))[:, None] \
                * np.cos(math.pi * kx * c + rng.uniform(0, 2 * math.pi))[None, :]
    peak = np.max(np.abs(g))
    if peak > 0:
        g /= peak
    return 1.0 + variation * g
