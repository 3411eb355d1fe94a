"""Simulated ptychographic X-ray computed tomography (PXCT) phase projections."""

from __future__ import annotations

import logging
import math
from typing import Optional, Union

import numpy as np

from .._progress import Progress
from ..phantom import refractive_volume
from ..tomo import project
from .. import _validate as check
from .._constants import FWHM_PER_SIGMA
from ..materials import wavelength
from ._options import PXCTOptions
from ._common import Acquisition, check_electrode, filter_frames, gaussian_transfer, pillar, rebin_axis

__all__ = ["pxct_phase"]

logger = logging.getLogger(__name__)


def pxct_phase(electrode, angles, *, options: PXCTOptions = PXCTOptions(), shifts: Union[float, np.ndarray] = 5.0,
               margin: Optional[int] = None, cylinder: bool = True, seed: int = 0,
               threads: Optional[int] = None, callback=None) -> Acquisition:
    """Simulate the phase projections a ptychographic tomography scan delivers.

    Physics, in order: each voxel's refractive index decrement ``delta`` from
    its material (xraylib, ``tomofuse.phantom.refractive_volume``); the
    projected phase ``phi = -2 pi / lambda * int delta dl`` from exact
    parallel-beam line integrals (``tomofuse.tomo.project``); a Gaussian blur
    whose FWHM is ``options.resolution`` (the ptychographic resolution, paper ~40 nm);
    a random sub-pixel translation of every projection (sample positioning
    errors; the blurred image is resampled at the displaced positions in the
    Fourier domain, exact for the band-limited image); area-integration onto
    pixels of ``options.pixel_size``; optional Gaussian phase noise; a random constant
    plus linear phase per projection (ptychography fixes neither); and wrapping
    to (-pi, pi].  Rows within the largest shift plus 4 PSF sigmas of the
    phantom's top and bottom faces are cut, so every row shows real sample.

    Parameters
    ----------
    electrode : tomofuse.phantom.Electrode
        The sample (its ``labels`` and ``voxel_size``).
    angles : (A,) array_like
        Projection angles, radians.
    options : PXCTOptions
        What ptychography delivers: photon energy, resolution (FWHM), pixel
        size, phase noise, random phase offsets and ramps, wrapping.
    shifts : float or (A, 2) array_like
        Largest random shift, detector pixels (uniform in ``[-shifts, shifts]``
        for dy and dx independently; 0 = none), or the ``(dy, dx)`` shifts
        themselves.
    margin : int, optional
        Air columns on each side of the sample's footprint, phantom voxels
        (default: the largest shift plus 4 PSF sigmas plus 10 % of the
        sample's width, at least 8: an air strip on each side for the phase
        ramp fit).
    cylinder : bool
        Cut the sample to the cylinder inscribed in its (y, x) square (a pillar
        in vacuum); else keep the box (the detector spans its diagonal).
    seed : int
        Seed of the shifts, offsets and noise.
    threads : int, optional
        Threads of the core (projection, FFT).
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    Acquisition
        ``modality="pxct"``, ``data`` the phase in rad (float32), no flat/dark.
        ``truth``: ``shifts`` (A, 2) ``(dy, dx)`` in pixels, the displacement of
        each projection's content (``data[a, r, c] = ideal[a, r - dy, c - dx]``,
        the convention of ``tomofuse.tomo.shift_projections`` and
        ``align_projections``); ``phase_ramps`` (A, 3) ``(constant, slope_row,
        slope_col)``, added as ``constant + slope_row * row + slope_col * col``
        with pixel indices (as ``tomofuse.tomo.remove_phase_ramp`` reports
        them); ``resolution_m``, ``psf_sigma_m``, ``noise``, ``wrapped``,
        ``voxel_size_m``, ``row_crop_voxels``, ``margin_voxels``, ``cylinder``,
        ``seed``.
    """
    e = check_electrode(electrode)
    theta = check.angles(angles)
    if not isinstance(options, PXCTOptions):
        raise TypeError(f"options must be a tomofuse.acquire.PXCTOptions, got {type(options).__name__}")
    energy, fwhm, max_slope, noise = options.energy_kev, options.resolution, options.max_slope, options.noise
    phase_offsets, wrap, pixel_size = options.phase_offsets, options.wrap, options.pixel_size
    th = check.threads(threads)
    seed = check.seed(seed)
    check.flag(cylinder, "cylinder")
    v = e.voxel_size
    pixel = v if pixel_size is None else pixel_size
    ratio = pixel / v
    if ratio < 1 - 1e-9:
        raise ValueError(f"pixel_size must not be finer than the phantom voxel ({v!r} m), got {pixel_size!r}")
    n_a = theta.size
    rng = np.random.default_rng(seed)
    if np.ndim(shifts) == 0:
        s_max = check.number(shifts, "shifts", unit="pixels", minimum=0.0)
        sh = rng.uniform(-s_max, s_max, (n_a, 2))
    else:
        sh = np.asarray(shifts, dtype=np.float64)
        if sh.shape != (n_a, 2):
            raise ValueError(f"shifts must be a number or an ({n_a}, 2) array of (dy, dx), got shape {sh.shape}")
        if not np.all(np.isfinite(sh)):
            raise ValueError("shifts must be finite (pixels)")
    sigma = fwhm / FWHM_PER_SIGMA
    sigma_px = sigma / v
    reach = float(np.max(np.abs(sh))) * ratio + 4 * sigma_px  # voxels
    nz, ny, nx = e.shape
    if margin is None:
        margin = int(math.ceil(reach)) + max(8, int(math.ceil(0.1 * min(ny, nx))))
    margin = check.integer(margin, "margin", minimum=0, unit="voxels")
    crop = int(math.ceil(float(np.max(np.abs(sh[:, 0]))) * ratio + 4 * sigma_px)) if np.any(sh[:, 0]) else 0
    if nz - 2 * crop < max(2.0 * ratio, 4):
        raise ValueError(f"shifts: the largest vertical shift leaves no rows of a {nz}-slice phantom")
    lam = wavelength(energy)
    progress = Progress(callback, logger)

    progress.stage(0.0, 0.05, "optical constants")
    delta, _ = refractive_volume(e, energy)
    radius = pillar((delta,), bool(cylinder))
    width = int(math.ceil(2 * radius)) + 2 * margin
    progress.stage(0.05, 0.6, "projecting")
    phi = project(delta, theta, n_cols=width, threads=th)
    phi *= np.float32(-2 * math.pi * v / lam)
    progress.stage(0.6, 0.9, "resolution and positioning")
    if sigma_px > 0 or np.any(sh):
        pad = int(math.ceil(5 * sigma_px + np.max(np.abs(sh)) * ratio)) + 4
        phi = filter_frames(phi, gaussian_transfer(sigma_px), pad=(pad, pad), shifts=sh * ratio, threads=th)
    phi = phi[:, crop:nz - crop, :].astype(np.float64)
    phi, r0 = rebin_axis(phi, 1, ratio)
    phi, _ = rebin_axis(phi, 2, ratio)
    rows, cols = phi.shape[1:]
    progress.stage(0.9, 1.0, "offsets")
    if noise > 0:
        phi = phi + rng.normal(0.0, noise, phi.shape)
    ramps = np.zeros((n_a, 3))
    if phase_offsets:
        ramps[:, 0] = rng.uniform(-math.pi, math.pi, n_a)
        ramps[:, 1:] = rng.uniform(-max_slope, max_slope, (n_a, 2))
        r = np.arange(rows, dtype=np.float64)[None, :, None]
        c = np.arange(cols, dtype=np.float64)[None, None, :]
        phi = phi + ramps[:, 0, None, None] + ramps[:, 1, None, None] * r + ramps[:, 2, None, None] * c
    if wrap:
        phi = np.angle(np.exp(1j * phi))
    progress.update(1.0, "done")

    u = (np.arange(cols) + 0.5 - cols / 2.0) * ratio
    air_cols = np.abs(u) - 0.5 * ratio > radius + reach + 1
    origin = ((crop + r0) * v, ny * v / 2 - cols * pixel / 2, nx * v / 2 - cols * pixel / 2)
    truth = {
        "shifts": sh, "phase_ramps": ramps, "resolution_m": fwhm, "psf_sigma_m": sigma, "noise": noise,
        "wrapped": bool(wrap), "voxel_size_m": v, "row_crop_voxels": crop, "margin_voxels": margin,
        "cylinder": bool(cylinder), "seed": seed,
    }
    return Acquisition(modality="pxct", data=np.ascontiguousarray(phi, dtype=np.float32), theta=theta,
                       pixel_size=pixel, energy_kev=energy, origin=origin,
                       air_mask=np.broadcast_to(air_cols, (rows, cols)).copy(), truth=truth)
