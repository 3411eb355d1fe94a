"""The whole simulated chain, phantom to fused volume, with the truth on the PXCT grid.

Built here from the stages' public functions, never by ``tomofuse.segment``:

phantom electrode (``tomofuse.phantom``, optionally rendered on a finer grid than the
PXCT pixel so that the detectors integrate sub-voxel detail) ->
``acquire.pxct_phase`` (projected delta at 6.2 keV, 40 nm blur, random sub-pixel
positioning errors, random constant + linear phase, wrapped, Gaussian phase noise) ->
``remove_phase_ramp`` + ``align_projections`` + ``fbp_phase_derivative`` ->
PXCT volume on 21.4 nm voxels;
``acquire.txtm`` (Beer-Lambert at 8.4 keV, 130 nm blur, 27.5 nm pixels, Poisson noise,
flat/dark, the sample turned by ``txtm_turn`` about the rotation axis relative to the PXCT
scan) -> ``normalize`` + ``paganin`` (delta/beta = 0.028, as the paper) + ``find_center`` +
``fbp`` -> TXTM volume;
``register(initial="auto")`` -> ``fuse``.

The truth: the phantom's exact geometry evaluated at the centers of the PXCT voxels in the
phantom's frame, including the translation that projection alignment leaves unobservable
(a common vertical shift and an in-plane translation; computed from the true and the
estimated shifts), so the labels are exact, not resampled.  The registration's target
registration error is measured against the known map between the two reconstructions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from tomofuse import Phase
from tomofuse.acquire import PXCTOptions, TXTMOptions, pxct_phase, txtm
from tomofuse.phantom import electrode
from tomofuse.register import fuse, register
from tomofuse.tomo import (align_projections, fbp, fbp_phase_derivative, find_center, normalize, paganin,
                           remove_phase_ramp, shift_projections)


@dataclass
class ChainCase:
    fused: np.ndarray            # (2, z, y, x) float32
    truth: np.ndarray            # (z, y, x) uint8 Phase codes on the PXCT grid
    truth_particles: np.ndarray  # (z, y, x) int32 particle ids on the PXCT grid
    inside: np.ndarray           # (z, y, x) bool: inside the sample pillar (where the truth is a sample)
    voxel_size: float
    electrode: object            # the phantom (truth table, geometry)
    registration: object
    tre_m: np.ndarray            # TRE at solid PXCT voxels inside the TXTM field of view, meters
    info: dict = field(default_factory=dict)


def _classify(geometry, points: np.ndarray, block: int = 1 << 16):
    labels = np.empty(len(points), np.uint8)
    parts = np.empty(len(points), np.int32)
    for s in range(0, len(points), block):
        p = points[s:s + block]
        ph, pi = geometry.classify_block(p, p.min(axis=0), p.max(axis=0))
        labels[s:s + block] = ph
        parts[s:s + block] = pi
    return labels, parts


def _grid_points(shape, origin, pixel, translation_px):
    """Phantom-frame centers (m) of a reconstruction's voxels, content translated by ``translation_px``."""
    axes = [origin[a] + (np.arange(shape[a]) + 0.5 - translation_px[a]) * pixel for a in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _rotation_z(phi: float) -> np.ndarray:
    """Rotation of (z, y, x) vectors about z by ``phi`` (x -> y positive)."""
    c, s = math.cos(phi), math.sin(phi)
    return np.array([[1, 0, 0], [0, c, s], [0, -s, c]], dtype=np.float64).T


def simulate_chain(shape=(96, 96, 96), *, voxel_size=21.4e-9, cycled=False, seed=0, oversample=1,
                   pxct_angles=None, txtm_angles=None, pxct_noise=0.01, pxct_resolution=40e-9,
                   txtm_resolution=130e-9, txtm_pixel=27.5e-9, txtm_photons=1e5, txtm_turn_deg=3.0,
                   shifts=1.5, pxct_filter="hann", threads=2, phantom_options=None, timings=True) -> ChainCase:
    """Run the chain (module docstring) on a phantom of ``shape`` PXCT voxels."""
    t0 = time.perf_counter()
    info: dict = {}
    v = float(voxel_size)
    fine = tuple(int(s) * oversample for s in shape)
    e = electrode(fine, v / oversample, cycled=cycled, seed=seed, truth_samples=20000, threads=threads,
                  **(phantom_options or {}))
    info["phantom_s"] = time.perf_counter() - t0
    n_p = pxct_angles if pxct_angles is not None else int(round(1.6 * shape[1]))
    n_t = txtm_angles if txtm_angles is not None else int(round(1.6 * shape[1] * v / txtm_pixel))
    th_p = np.linspace(0, np.pi, n_p, endpoint=False)
    th_t = np.linspace(0, np.pi, n_t, endpoint=False)

    # --- PXCT
    t = time.perf_counter()
    acq = pxct_phase(e, th_p, options=PXCTOptions(energy_kev=6.2, resolution=pxct_resolution, noise=pxct_noise,
                                                  pixel_size=v), shifts=shifts, seed=seed + 11, threads=threads)
    ph = remove_phase_ramp(acq.data, mask=acq.air_mask)
    ph = np.angle(np.exp(1j * ph)).astype(np.float32)
    est = align_projections(ph, th_p, air_mask=acq.air_mask, threads=threads)
    ph = shift_projections(ph, -est, threads=threads)
    vol_p = fbp_phase_derivative(ph, th_p, filter=pxct_filter, threads=threads)
    # unobservable translation left by the alignment (tomo.align_projections docstring)
    true = acq.truth["shifts"]
    ey = est[:, 0] - true[:, 0]
    basis = np.stack([np.ones_like(th_p), np.cos(th_p), np.sin(th_p)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, est[:, 1] - true[:, 1], rcond=None)
    # corrected content moves by true - est: -mean(ey) rows, -(c0 + a cos + b sin) columns; a column
    # displacement a cos + b sin is the object translated by (x, y) = (a, b) (detector axis (cos, sin))
    trans_p = np.array([-ey.mean(), -coef[2], -coef[1]])
    info["pxct_axis_error_px"] = float(coef[0])
    info["pxct_s"] = time.perf_counter() - t

    # --- TXTM: the sample turned by txtm_turn about z relative to the PXCT scan
    t = time.perf_counter()
    turn = math.radians(txtm_turn_deg)
    tacq = txtm(e, th_t + turn, options=TXTMOptions(energy_kev=8.4, resolution=txtm_resolution, photons=txtm_photons,
                                                    pixel_size=txtm_pixel, distance=0.0), seed=seed + 23, threads=threads)
    tr = normalize(tacq.data, tacq.flat, tacq.dark)
    mu = paganin(tr, pixel_size=txtm_pixel, distance=5e-3, energy_kev=8.4, delta_beta=0.028, threads=threads)
    center = find_center(mu, th_t, threads=threads) if _accepts_threads(find_center) else find_center(mu, th_t)
    vol_t = fbp(mu, th_t, center=center, filter="hann", threads=threads)
    info["txtm_center_error_px"] = float(center - mu.shape[2] / 2.0)
    info["txtm_s"] = time.perf_counter() - t

    # --- registration and fusion
    t = time.perf_counter()
    reg = register(vol_p, vol_t, fixed_voxel_size=v, moving_voxel_size=txtm_pixel, initial="auto", seed=0,
                   threads=threads)
    fused = fuse(vol_p, vol_t, reg, threads=threads)
    info["register_s"] = time.perf_counter() - t

    # --- truth on the PXCT grid
    t = time.perf_counter()
    pts = _grid_points(vol_p.shape, acq.origin, v, trans_p)
    labels, parts = _classify(e.geometry, pts)
    truth = labels.reshape(vol_p.shape)
    truth_particles = parts.reshape(vol_p.shape)
    # inside the pillar: the simulators cut the phantom to the cylinder inscribed in its (y, x) square
    ext = np.array(fine) * (v / oversample)
    ry = pts[:, 1] - ext[1] / 2
    rx = pts[:, 2] - ext[2] / 2
    inside = ((np.hypot(ry, rx) < 0.5 * min(ext[1], ext[2]) - v) & (pts[:, 0] > 0) & (pts[:, 0] < ext[0]))
    inside = inside.reshape(vol_p.shape)
    truth = np.where(inside, truth, np.uint8(Phase.PORE)).astype(np.uint8)
    truth_particles = np.where(inside, truth_particles, 0).astype(np.int32)

    # TRE: the true map from a PXCT voxel's physical point (index * v) to the TXTM volume's
    # physical point (index * pixel): phantom frame -> TXTM reconstruction frame.  The TXTM scan
    # saw the sample turned by `turn` (angles th + turn): its reconstruction is the phantom
    # rotated by -turn about the pillar axis, sampled on the grid of tacq.origin.
    center_xy = ext[1:] / 2
    sel = inside & (truth != Phase.PORE)
    idx = np.argwhere(sel)
    if len(idx) > 20000:
        idx = idx[np.random.default_rng(0).choice(len(idx), 20000, replace=False)]
    X = _grid_points_at(idx, acq.origin, v, trans_p)                 # phantom frame
    rel = X.copy()
    rel[:, 1:] -= center_xy
    rotated = rel @ _rotation_z(turn).T
    rotated[:, 1:] += center_xy
    # TXTM voxel (k, i, j) centered at origin_t + (k, i, j) + 0.5) * pixel, with the detector center
    # shifted by the found center's error (fbp puts the axis at `center`)
    y_t = (rotated - np.asarray(tacq.origin)) / txtm_pixel - 0.5     # TXTM voxel index
    mapped = reg.map_points(idx * v)
    tre = np.linalg.norm(mapped - y_t * txtm_pixel, axis=1)
    info["truth_s"] = time.perf_counter() - t
    info["total_s"] = time.perf_counter() - t0
    info["pxct_translation_px"] = trans_p.tolist()
    return ChainCase(fused=fused, truth=truth, truth_particles=truth_particles, inside=inside, voxel_size=v,
                     electrode=e, registration=reg, tre_m=tre, info=info)


def _grid_points_at(idx, origin, pixel, translation_px):
    return np.asarray(origin) + (idx + 0.5 - np.asarray(translation_px)) * pixel


def _accepts_threads(fn) -> bool:
    import inspect
    return "threads" in inspect.signature(fn).parameters
