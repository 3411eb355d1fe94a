"""PXCT-like / TXTM-like volume pairs with a known transform, for the registration tests.

The truth is built here, not by ``tomofuse.register``: a phantom electrode is
rendered once on a world grid at the PXCT voxel size (with a margin), and each
modality is a blurred rendering of the same labels with its own per-phase
contrast:

* PXCT-like (fixed): ``delta`` at 6.2 keV (graphite ~ SiOx > CBD > pore),
  Gaussian blur of FWHM ``fixed_resolution`` (~40 nm), sampled on the world grid
  itself (21.4 nm voxels), plus white noise.
* TXTM-like (moving): ``beta`` at 8.4 keV (SiOx > CBD > graphite > pore, a
  different ordering), blur of FWHM ``moving_resolution`` (~130 nm), sampled with
  linear interpolation at ``T^-1(y)`` for every moving voxel center ``y``
  (27.5 nm voxels), plus white noise.

The true transform maps fixed physical points ``x`` (meters, (z, y, x), origin 0
at the center of voxel 0) to moving ones:
``T(x) = R (x + d(x) - c_f) + c_m + t`` with ``c_f``/``c_m`` the centers of the
two fields of view, ``R`` a rotation, ``t`` a shift and ``d`` a smooth
deformation (a few long-wavelength sine waves per component, scaled to a given
maximum over the fixed field of view).  ``T^-1`` is evaluated by fixed-point
iteration (``d`` is small and slowly varying).

The TRE of an estimated map is ``|T_est(x) - T(x)|`` over foreground (solid)
fixed voxel centers whose true image lies inside the moving field of view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tomofuse.phantom import electrode, refractive_volume

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def rotation_matrix(rotvec) -> np.ndarray:
    """Rotation matrix (acting on (z, y, x) vectors) of a rotation vector (radians)."""
    return Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_matrix()


@dataclass
class Deformation:
    """``d(x) = sum_j a_j sin(2 pi k_j . (x - c) + phi_j)`` per component (meters)."""

    center: np.ndarray
    wavevectors: np.ndarray  # (3 components, waves, 3) cycles per meter
    phases: np.ndarray  # (3, waves)
    amplitudes: np.ndarray  # (3, waves) meters

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64) - self.center
        out = np.empty_like(p)
        for c in range(3):
            arg = 2.0 * np.pi * (p @ self.wavevectors[c].T) + self.phases[c]
            out[:, c] = np.sin(arg) @ self.amplitudes[c]
        return out


def random_deformation(extent: float, center, max_displacement: float, *, rng, waves: int = 3,
                       wavelength=(1.0, 2.0), sample_points=None) -> Deformation | None:
    """Smooth random deformation with ``max |d|`` = ``max_displacement`` over ``sample_points``."""
    if max_displacement <= 0:
        return None
    k = np.empty((3, waves, 3))
    for c in range(3):
        for j in range(waves):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            k[c, j] = u / (extent * rng.uniform(*wavelength))
    d = Deformation(np.asarray(center, float), k, rng.uniform(0, 2 * np.pi, (3, waves)), rng.uniform(0.5, 1.0, (3, waves)))
    mag = np.linalg.norm(d(sample_points), axis=1).max()
    d.amplitudes *= max_displacement / mag
    return d


@dataclass
class TrueTransform:
    """``T(x) = R (x + d(x) - c_f) + c_m + t`` on (n, 3) (z, y, x) meters."""

    rotation: np.ndarray
    shift: np.ndarray
    fixed_center: np.ndarray
    moving_center: np.ndarray
    deformation: Deformation | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        u = x - self.fixed_center
        if self.deformation is not None:
            u = u + self.deformation(x)
        return u @ self.rotation.T + self.moving_center + self.shift

    def inverse(self, y: np.ndarray, iterations: int = 30) -> np.ndarray:
        z = (np.asarray(y, dtype=np.float64) - self.moving_center - self.shift) @ self.rotation + self.fixed_center
        if self.deformation is None:
            return z
        x = z.copy()
        for _ in range(iterations):
            x = z - self.deformation(x)
        return x


@dataclass
class Pair:
    fixed: np.ndarray
    moving: np.ndarray
    fixed_voxel_size: float
    moving_voxel_size: float
    fixed_labels: np.ndarray
    moving_labels: np.ndarray
    truth: TrueTransform
    fixed_resolution: float
    moving_resolution: float
    info: dict = field(default_factory=dict)

    def grid_points(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(index, dtype=np.float64) * self.fixed_voxel_size

    def foreground_points(self, *, max_points: int | None = 20000, border: float = 0.0, seed: int = 0) -> np.ndarray:
        """Fixed voxel centers (meters, z y x) on solids whose true image is inside the moving FOV."""
        idx = np.argwhere(self.fixed_labels != 0)
        pts = idx * self.fixed_voxel_size
        y = self.truth(pts)
        ext = (np.array(self.moving.shape) - 1) * self.moving_voxel_size
        inside = np.all((y >= border) & (y <= ext - border), axis=1)
        pts = pts[inside]
        if max_points is not None and len(pts) > max_points:
            pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
        return pts

    def tre(self, mapped: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``|mapped - T(points)|`` in meters."""
        return np.linalg.norm(np.asarray(mapped) - self.truth(points), axis=1)


_WORLD_CACHE: dict = {}


def _world(n_world: int, spacing: float, seed: int):
    key = (n_world, spacing, seed)
    if key not in _WORLD_CACHE:
        e = electrode((n_world,) * 3, spacing, seed=seed, truth_samples=1000, threads=2)
        delta, _ = refractive_volume(e, 6.2)
        _, beta = refractive_volume(e, 8.4)
        _WORLD_CACHE[key] = (e.labels, delta.astype(np.float64), beta.astype(np.float64))
    return _WORLD_CACHE[key]


def make_pair(
    *,
    fixed_shape: int = 64,
    moving_shape: int | None = None,
    fixed_voxel_size: float = 21.4e-9,
    moving_voxel_size: float = 27.5e-9,
    fixed_resolution: float = 40e-9,
    moving_resolution: float = 130e-9,
    rotation_deg=(0.0, 0.0, 0.0),
    shift=(0.0, 0.0, 0.0),
    max_deformation: float = 0.0,
    fixed_noise: float = 0.05,
    moving_noise: float = 0.05,
    margin: float = 0.25,
    seed: int = 0,
    phantom_seed: int = 1,
    moving_contrast: str = "beta",
    wavelength=None,
    waves: int = 3,
) -> Pair:
    """A PXCT-like / TXTM-like pair (see module docstring).

    ``rotation_deg`` is a rotation vector in degrees ((z, y, x) axis times angle),
    ``shift`` is in meters (z, y, x); noise is a fraction of the modality's
    contrast range; ``margin`` the world margin on each side as a fraction of
    the fixed field of view; ``moving_contrast="delta"`` renders the moving volume
    in the fixed contrast (a mono-modal control); ``wavelength`` (meters, (min, max))
    is the range of the deformation's wavelengths (default: 1-2 fields of view),
    ``waves`` the number of sine waves per component.
    """
    rng = np.random.default_rng(seed)
    nf = int(fixed_shape)
    fov = nf * fixed_voxel_size
    nm = int(moving_shape) if moving_shape is not None else int(round(fov / moving_voxel_size))
    m = int(math.ceil(margin * nf))
    nw = nf + 2 * m
    labels_w, delta_w, beta_w = _world(nw, fixed_voxel_size, phantom_seed)
    h = fixed_voxel_size

    fixed_center = np.full(3, (nf - 1) / 2 * h)
    moving_center = np.full(3, (nm - 1) / 2 * moving_voxel_size)
    fixed_pts = (np.indices((nf,) * 3).reshape(3, -1).T.astype(np.float64)) * h
    wl = (1.0, 2.0) if wavelength is None else (wavelength[0] / fov, wavelength[1] / fov)
    deformation = random_deformation(fov, fixed_center, max_deformation, rng=rng, waves=waves, wavelength=wl,
                                     sample_points=fixed_pts[:: 7])
    truth = TrueTransform(rotation_matrix(np.deg2rad(rotation_deg)), np.asarray(shift, float), fixed_center,
                          moving_center, deformation)

    # fixed: delta blurred to the PXCT resolution on the world grid, cropped
    sig_f = fixed_resolution * FWHM_TO_SIGMA / h
    crop = (slice(m, m + nf),) * 3
    fixed = ndimage.gaussian_filter(delta_w, sig_f, mode="nearest")[crop]
    rng_f = float(delta_w.max() - delta_w.min())
    fixed = fixed + rng.normal(scale=fixed_noise * rng_f, size=fixed.shape)

    # moving: beta blurred to the TXTM resolution, sampled at T^-1(moving grid)
    sig_m = moving_resolution * FWHM_TO_SIGMA / h
    mov_w = beta_w if moving_contrast == "beta" else delta_w  # "delta": a mono-modal control
    blurred = ndimage.gaussian_filter(mov_w, sig_m, mode="nearest")
    mov_pts = (np.indices((nm,) * 3).reshape(3, -1).T.astype(np.float64)) * moving_voxel_size
    x = truth.inverse(mov_pts)
    world_idx = x / h + m  # fixed voxel i sits at world voxel i + m
    outside = np.any((world_idx < 0) | (world_idx > nw - 1), axis=1).mean()
    # cubic B-spline interpolation of the (band-limited) blurred world: no linear-interpolation blur
    # that would vary with the sub-voxel position and differ from the fixed image
    moving = ndimage.map_coordinates(blurred, world_idx.T, order=3, mode="nearest").reshape((nm,) * 3)
    moving_labels = ndimage.map_coordinates(labels_w, world_idx.T, order=0, mode="nearest").reshape((nm,) * 3)
    rng_m = float(mov_w.max() - mov_w.min())
    moving = moving + rng.normal(scale=moving_noise * rng_m, size=moving.shape)

    return Pair(
        fixed=fixed.astype(np.float32),
        moving=moving.astype(np.float32),
        fixed_voxel_size=fixed_voxel_size,
        moving_voxel_size=moving_voxel_size,
        fixed_labels=labels_w[crop].copy(),
        moving_labels=moving_labels.astype(np.uint8),
        truth=truth,
        fixed_resolution=fixed_resolution,
        moving_resolution=moving_resolution,
        info={"outside_world_fraction": float(outside), "world_shape": nw, "moving_shape": nm},
    )


def random_misalignment(rng, *, max_angle_deg: float = 10.0, max_shift_fraction: float = 0.15, fov: float):
    """A rotation vector (deg, random axis, angle uniform in [0, max]) and a shift (m, each axis in +-max)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(0.0, max_angle_deg)
    shift = rng.uniform(-max_shift_fraction, max_shift_fraction, 3) * fov
    return axis * angle, shift


FAMILY_SEED = 1515
FAMILY_MEMBERS = 12
FAMILY_ZERO_WARP = (2, 6, 10)  # members without deformation
FAMILY_MAX_SHAPE = 160


def family_member(i: int) -> dict:
    """Parameters of member ``i`` of the registration family (bench/registration_family.py).

    Independent members with fixed seeds, drawn within: field of view 2-8 um (stratified; PXCT
    voxels 21.4 nm, coarser where needed to keep <= 160^3), TXTM voxels 1.15-1.45x the PXCT ones,
    TXTM resolution 4-5.5 TXTM voxels (FWHM), PXCT 1.87 PXCT voxels, rotation 0-10 degrees
    (stratified) about a random axis, shift +-10 % of the field of view, deformation of 3 sine
    waves per component with wavelengths in a band within 0.5-4 um and maximum 10-60 nm (none for
    ``FAMILY_ZERO_WARP``), noise 2-10 % per modality.
    """
    rng = np.random.default_rng([FAMILY_SEED, i])
    # field of view and rotation angle stratified over the family (one random value per stratum)
    strata = np.random.default_rng(FAMILY_SEED).permutation(FAMILY_MEMBERS)
    fov = 2e-6 + 6e-6 * (i + rng.uniform()) / FAMILY_MEMBERS
    h = max(21.4e-9, fov / FAMILY_MAX_SHAPE)
    n = int(round(fov / h))
    hm = h * rng.uniform(1.15, 1.45)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = 10.0 * (strata[i] + rng.uniform()) / FAMILY_MEMBERS
    shift = rng.uniform(-0.10, 0.10, 3) * n * h
    lo = rng.uniform(0.5e-6, 2.0e-6)
    hi = min(4e-6, lo * rng.uniform(1.5, 2.5))
    amp = 0.0 if i in FAMILY_ZERO_WARP else rng.uniform(10e-9, 60e-9)
    return dict(
        index=i, fixed_shape=n, fixed_voxel_size=h, moving_voxel_size=hm, fixed_resolution=1.87 * h,
        moving_resolution=hm * rng.uniform(4.0, 5.5), rotation_deg=(axis * angle).tolist(), shift=shift.tolist(),
        max_deformation=amp, wavelength=(lo, hi), fixed_noise=rng.uniform(0.02, 0.10),
        moving_noise=rng.uniform(0.02, 0.10), seed=int(rng.integers(1 << 30)), phantom_seed=int(rng.integers(1 << 30)),
        angle_deg=angle, fov=n * h)


def make_family_pair(p: dict) -> Pair:
    """The pair of a ``family_member`` parameter set."""
    kw = {k: p[k] for k in ("fixed_shape", "fixed_voxel_size", "moving_voxel_size", "fixed_resolution",
                            "moving_resolution", "rotation_deg", "shift", "max_deformation", "wavelength",
                            "fixed_noise", "moving_noise", "seed", "phantom_seed")}
    pair = make_pair(margin=0.15, **kw)
    _WORLD_CACHE.pop((pair.info["world_shape"], p["fixed_voxel_size"], p["phantom_seed"]), None)
    return pair
