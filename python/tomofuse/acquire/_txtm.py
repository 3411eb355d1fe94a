"""Simulated transmission X-ray tomography (TXTM): Beer-Lambert, optics blur, Fresnel, flat/dark, Poisson."""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np

from .._phase import Phase
from .._progress import Progress
from ..phantom import refractive_volume
from ..tomo import project
from .. import _validate as check
from .._constants import FWHM_PER_SIGMA
from ..materials import wavelength
from ._options import TXTMOptions
from ._common import (Acquisition, beam_profile, check_electrode, filter_frames, gaussian_transfer, pillar,
                      rebin_axis)

__all__ = ["txtm"]

logger = logging.getLogger(__name__)


def fresnel_transfer(wavelength: float, distance: float, pixel: float):
    """Paraxial free-space propagator ``exp(-i pi lambda z |u|^2)`` (u in cycles per pixel / pixel)."""
    scale = math.pi * wavelength * distance / pixel**2

    def h(uy, ux):
        return np.exp(-1j * scale * (uy**2 + ux**2))
    return h


def _mu_per_phase(labels: np.ndarray, beta: np.ndarray, wavelength: float) -> dict:
    """``{phase name: mu (1/m)}`` of the phases present, read off the beta volume."""
    out = {}
    flat_labels, flat_beta = labels.reshape(-1), beta.reshape(-1)
    for p in np.unique(flat_labels):
        i = int(np.argmax(flat_labels == p))
        name = Phase(int(p)).name.lower() if int(p) in set(Phase) else str(int(p))
        out[name] = 4 * math.pi * float(flat_beta[i]) / wavelength
    return out


def txtm(electrode, angles, *, options: TXTMOptions = TXTMOptions(), margin: Optional[int] = None,
         cylinder: bool = True, seed: int = 0, threads: Optional[int] = None, callback=None) -> Acquisition:
    """Simulate a full-field transmission X-ray tomography scan of a phantom electrode.

    Physics, in order: each voxel's absorption index ``beta`` (and ``delta``)
    from its material (xraylib, ``tomofuse.phantom.refractive_volume``);
    exact parallel-beam line integrals (``tomofuse.tomo.project``) of the
    linear attenuation ``mu = 4 pi beta / lambda``; the exit wave
    ``exp(-int mu / 2 - i 2 pi / lambda int delta)``; optional paraxial Fresnel
    propagation over ``options.distance`` (``exp(-i pi lambda z |u|^2)``, core FFT);
    intensity blurred by a Gaussian point-spread function whose full width at
    half maximum is ``options.resolution`` (the optics; the detector pixel adds its own
    box on top); area-integration onto detector pixels of ``options.pixel_size``;
    counts = ``options.photons * beam profile * intensity`` with Poisson noise, plus a
    Poisson dark current with a fixed per-pixel pattern.  Without propagation
    the expected normalized transmission is exactly Beer-Lambert,
    ``exp(-int mu dl)``, blurred.

    The sample is the electrode cut to the cylinder inscribed in its (y, x)
    square (``cylinder=True``, a pillar in vacuum) so that it stays inside the
    detector at every angle; rows are the phantom's z slices (the blur treats
    the pillar as continuing beyond its top and bottom faces).

    Parameters
    ----------
    electrode : tomofuse.phantom.Electrode
        The sample (its ``labels`` and ``voxel_size``).
    angles : (A,) array_like
        Projection angles, radians.
    options : TXTMOptions
        The instrument: photon energy, resolution (FWHM of the optics),
        photons per pixel, propagation distance, detector pixel size, flat and
        dark frames, dark counts, beam profile variation.
    margin : int, optional
        Air columns on each side of the sample's footprint, in phantom voxels
        (default: 4 PSF sigmas plus the Fresnel spread plus 4).
    cylinder : bool
        Cut the sample to the inscribed cylinder; else keep the box (the
        detector then spans its diagonal).
    seed : int
        Seed of the beam profile, dark pattern and noise.
    threads : int, optional
        Threads of the core (projection, FFT).
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    Acquisition
        ``modality="txtm"``, ``data``/``flat``/``dark`` in counts (float32).
        ``truth``: ``resolution_m``, ``psf_sigma_m``, ``photons``, ``distance_m``,
        ``dark_counts``, ``beam_profile`` (rows, cols; mean photons per frame
        are ``photons * beam_profile``), ``dark_pattern`` (rows, cols, mean dark
        counts), ``mu_m`` (``{phase name: mu in 1/m}``), ``voxel_size_m``,
        ``margin_voxels``, ``cylinder``, ``seed``.
    """
    e = check_electrode(electrode)
    theta = check.angles(angles)
    if not isinstance(options, TXTMOptions):
        raise TypeError(f"options must be a tomofuse.acquire.TXTMOptions, got {type(options).__name__}")
    energy, fwhm, photons, z = options.energy_kev, options.resolution, options.photons, options.distance
    n_flats, n_darks, dark_counts = options.n_flats, options.n_darks, options.dark_counts
    beam_variation, pixel_size = options.beam_variation, options.pixel_size
    th = check.threads(threads)
    seed = check.seed(seed)
    check.flag(cylinder, "cylinder")
    v = e.voxel_size
    pixel = v if pixel_size is None else pixel_size
    ratio = pixel / v
    if ratio < 1 - 1e-9:
        raise ValueError(f"pixel_size must not be finer than the phantom voxel ({v!r} m), got {pixel_size!r}")
    lam = wavelength(energy)
    sigma = fwhm / FWHM_PER_SIGMA
    sigma_px = sigma / v
    spread_px = lam * z / (2 * v * v)  # lateral reach of the highest frequency, voxels
    if margin is None:
        margin = int(math.ceil(4 * sigma_px + min(spread_px, 64.0))) + 4
    margin = check.integer(margin, "margin", minimum=0, unit="voxels")
    rng = np.random.default_rng(seed)
    progress = Progress(callback, logger)

    progress.stage(0.0, 0.05, "optical constants")
    delta, beta = refractive_volume(e, energy)
    mu_table = _mu_per_phase(e.labels, beta, lam)
    radius = pillar((delta, beta), bool(cylinder))
    width = int(math.ceil(2 * radius)) + 2 * margin
    progress.stage(0.05, 0.5, "projecting")
    mu_l = project(beta, theta, n_cols=width, threads=th).astype(np.float64)
    mu_l *= 4 * math.pi * v / lam
    if z > 0:
        phi = project(delta, theta, n_cols=width, threads=th).astype(np.float64)
        phi *= -2 * math.pi * v / lam
        progress.stage(0.5, 0.7, "Fresnel propagation")
        wave = np.exp(-0.5 * mu_l + 1j * phi).astype(np.complex64)
        pad = int(math.ceil(min(spread_px, max(wave.shape[1:])))) + 8
        wave = filter_frames(wave, fresnel_transfer(lam, z, v), pad=(pad, pad), threads=th, keep_complex=True)
        intensity = (wave.real.astype(np.float64) ** 2 + wave.imag.astype(np.float64) ** 2)
        del wave, phi
    else:
        intensity = np.exp(-mu_l)
    del mu_l
    progress.stage(0.7, 0.85, "optics blur")
    if sigma_px > 0:
        pad = int(math.ceil(5 * sigma_px)) + 2
        intensity = filter_frames(intensity, gaussian_transfer(sigma_px), pad=(pad, pad), threads=th)
    intensity, r0 = rebin_axis(intensity, 1, ratio)
    intensity, c0 = rebin_axis(intensity, 2, ratio)
    intensity = np.asarray(intensity, dtype=np.float64)
    rows, cols = intensity.shape[1:]

    progress.stage(0.85, 1.0, "detector")
    profile = beam_profile((rows, cols), beam_variation, rng)
    pattern = np.clip(dark_counts * (1.0 + 0.1 * rng.standard_normal((rows, cols))), 0.0, None)
    if photons is None:
        beam = profile
        data = beam * intensity + pattern
        flat = np.broadcast_to(beam + pattern, (n_flats, rows, cols))
        dark = np.broadcast_to(pattern, (n_darks, rows, cols))
    else:
        beam = photons * profile
        data = rng.poisson(beam * intensity) + rng.poisson(pattern, intensity.shape)
        flat = rng.poisson(beam, (n_flats, rows, cols)) + rng.poisson(pattern, (n_flats, rows, cols))
        dark = rng.poisson(pattern, (n_darks, rows, cols))
    progress.update(1.0, "done")

    # air: coarse columns whose fine pixels lie beyond the footprint plus the optics' reach
    u = (np.arange(cols) + 0.5 - cols / 2.0) * ratio
    air_cols = np.abs(u) - 0.5 * ratio > radius + 4 * sigma_px + min(spread_px, 64.0) + 1
    ny, nx = e.shape[1:]
    origin = (r0 * v, ny * v / 2 - cols * pixel / 2, nx * v / 2 - cols * pixel / 2)
    truth = {
        "resolution_m": fwhm, "psf_sigma_m": sigma, "photons": photons, "distance_m": z,
        "dark_counts": dark_counts, "beam_profile": profile.astype(np.float32),
        "dark_pattern": pattern.astype(np.float32),
        "mu_m": mu_table,
        "voxel_size_m": v, "margin_voxels": margin, "cylinder": bool(cylinder), "seed": seed,
    }
    return Acquisition(modality="txtm", data=np.ascontiguousarray(data, dtype=np.float32), theta=theta,
                       pixel_size=pixel, energy_kev=energy, origin=origin,
                       air_mask=np.broadcast_to(air_cols, (rows, cols)).copy(),
                       flat=np.ascontiguousarray(flat, dtype=np.float32),
                       dark=np.ascontiguousarray(dark, dtype=np.float32), truth=truth)
