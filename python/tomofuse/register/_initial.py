"""Automatic coarse alignment of two tomograms of the same sample in different contrasts.

The two modalities order their phases differently (PXCT phase: graphite ~ SiOx > CBD >
pore; TXTM absorption: SiOx > CBD > graphite ~ pore), so intensities cannot be
correlated directly.  Their *edges* coincide where both modalities see a phase
boundary, so the search correlates gradient magnitudes:

1. both volumes are smoothed to a coarse scale ``s`` (~1/28 of the field of view, never
   finer than twice the TXTM voxel) and their gradient magnitudes resampled on
   ``s``-spaced grids;
2. for every rotation of a grid over SO(3) (rotation vectors in a cube of half-width
   ``max_angle``), the rotated moving edges are correlated with the fixed edges over all
   shifts at once by a masked, normalized cross-correlation in Fourier space (Padfield,
   IEEE TIP 21 (2012) 2706, doi:10.1109/TIP.2011.2181402), which ignores the voxels
   outside either field of view;
3. the best distinct (rotation, shift) candidates, plus the centered identity, start short
   rigid Mattes mutual-information registrations at the coarse scale (multi-start); the
   one ending at the lowest metric wins.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
from scipy.spatial.transform import Rotation
import scipy.fft as sfft
import SimpleITK as sitk

from .. import _validate as check
from ._convert import fov_center, fov_extent, itk_seed

__all__ = ["auto_initial", "rotation_grid", "masked_ncc"]

logger = logging.getLogger(__name__)


def rotation_grid(max_angle: float, step: float) -> np.ndarray:
    """Rotation vectors (radians, (n, 3)) on a cube grid of half-width ``max_angle``."""
    k = int(math.ceil(max_angle / step - 1e-9))
    axis = np.arange(-k, k + 1) * step
    grid = np.array(list(itertools.product(axis, axis, axis)), dtype=np.float64)
    order = np.argsort(np.linalg.norm(grid, axis=1), kind="stable")
    return grid[order]


def rotvec_matrix(r) -> np.ndarray:
    """Rotation matrix of a rotation vector (radians; axis * angle, Rodrigues)."""
    return Rotation.from_rotvec(np.asarray(r, dtype=np.float64)).as_matrix()


def masked_ncc(f, mf, g, mg, *, min_overlap: float, threads: int | None = None, fixed_ffts=None):
    """Normalized cross-correlation of ``f`` and ``g`` over all shifts, on masks.

    ``ncc[u] = corr(f(x), g(x + u))`` over ``x`` with ``mf(x) * mg(x + u)``; shifts
    where that overlap holds fewer than ``min_overlap`` voxels are set to -1.

    Parameters
    ----------
    f, mf : (a, b, c) ndarray
        Fixed values and 0/1 mask.
    g, mg : (d, e, f) ndarray
        Moving values and 0/1 mask.
    min_overlap : float
        Minimum number of overlapping voxels.
    threads : int, optional
        Threads of scipy.fft (None = the package default); results do not depend on it.
    fixed_ffts : tuple, optional
        Reuse of the fixed-side transforms (returned as the second value).

    Returns
    -------
    ncc : ndarray
        Shape ``s = a + d - 1`` (per axis), shifts wrapped (index ``u mod s``).
    fixed_ffts : tuple
    """
    workers = check.threads(threads)
    shape = tuple(int(a + b - 1) for a, b in zip(f.shape, g.shape))
    shape = tuple(sfft.next_fast_len(s, real=True) for s in shape)
    if fixed_ffts is None:
        fm = f * mf
        fixed_ffts = tuple(np.conj(sfft.rfftn(a, shape, workers=workers)) for a in (mf, fm, fm * f))
    Fm, Ff, Ff2 = fixed_ffts
    gm = g * mg
    Gm, Gg, Gg2 = (sfft.rfftn(a, shape, workers=workers) for a in (mg, gm, gm * g))

    def corr(A, B):
        return sfft.irfftn(A * B, shape, workers=workers)

    n = corr(Fm, Gm)
    sf = corr(Ff, Gm)
    sg = corr(Fm, Gg)
    sfg = corr(Ff, Gg)
    sff = corr(Ff2, Gm)
    sgg = corr(Fm, Gg2)
    valid = n > max(min_overlap, 1.0)
    nn = np.where(valid, n, 1.0)
    num = sfg - sf * sg / nn
    vf = sff - sf * sf / nn
    vg = sgg - sg * sg / nn
    den = np.sqrt(np.clip(vf, 0, None) * np.clip(vg, 0, None))
    tiny = 1e-6 * (den.max() if den.size else 1.0)
    valid &= den > tiny
    out = np.full(shape, -1.0)
    out[valid] = num[valid] / den[valid]
    return out, fixed_ffts


def _peak(ncc: np.ndarray) -> tuple[np.ndarray, float]:
    """Wrapped shift (voxels, sub-voxel by a parabola per axis) and value of the maximum."""
    idx = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    value = float(ncc[idx])
    shift = np.array(idx, dtype=np.float64)
    for ax, n in enumerate(ncc.shape):
        lo = list(idx)
        hi = list(idx)
        lo[ax] = (idx[ax] - 1) % n
        hi[ax] = (idx[ax] + 1) % n
        a, b, c = float(ncc[tuple(lo)]), value, float(ncc[tuple(hi)])
        den = a - 2 * b + c
        if den < 0 and a > -1 and c > -1:
            shift[ax] += 0.5 * (a - c) / den
        if shift[ax] > n / 2:
            shift[ax] -= n
    return shift, value


def _coarse_features(image: sitk.Image, spacing: float, extra_sigma: float, threads) -> sitk.Image:
    """Gradient magnitude at scale ``spacing`` resampled on an ``spacing`` grid over the FOV."""
    sigma = math.sqrt(spacing**2 + extra_sigma**2)
    g = sitk.GradientMagnitudeRecursiveGaussianImageFilter()
    g.SetSigma(sigma)
    if threads:
        g.SetNumberOfThreads(threads)
    feat = g.Execute(image)
    size = [max(4, int(math.ceil(e / spacing))) for e in fov_extent(image)]
    center = fov_center(image)
    origin = center - (np.array(size) - 1) / 2 * spacing
    res = sitk.ResampleImageFilter()
    res.SetSize(size)
    res.SetOutputSpacing([spacing] * 3)
    res.SetOutputOrigin(tuple(origin))
    res.SetInterpolator(sitk.sitkLinear)
    res.SetDefaultPixelValue(0.0)
    if threads:
        res.SetNumberOfThreads(threads)
    return res.Execute(feat)


def _grid_mask(image: sitk.Image, like: sitk.Image) -> np.ndarray:
    """1 where ``like``'s voxel centers fall inside ``image``'s field of view."""
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    ones.CopyInformation(image)
    ones = ones + 1
    out = sitk.Resample(ones, like, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayViewFromImage(out).astype(np.float64)


def rigid_from(rotation: np.ndarray, translation_point_map, fixed_center) -> sitk.Euler3DTransform:
    """Euler3D transform about ``fixed_center`` with matrix ``rotation`` mapping ``fixed_center`` to a point."""
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in fixed_center))
    t.SetMatrix(tuple(float(v) for v in rotation.ravel()))
    t.SetTranslation(tuple(float(v) for v in (translation_point_map - np.asarray(fixed_center))))
    return t


def auto_initial(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    fixed_mask: sitk.Image | None,
    fixed_sigma: float,
    moving_sigma: float,
    max_angle: float = math.radians(10.0),
    angle_step: float = math.radians(5.0),
    candidates: int = 4,
    seed: int = 0,
    threads: int | None = None,
    progress=None,
) -> tuple[sitk.Euler3DTransform, dict]:
    """Coarse rigid alignment (see module docstring).

    Parameters
    ----------
    fixed, moving : sitk.Image
        Physical geometry set (x, y, z, meters).
    fixed_mask : sitk.Image or None
        UInt8 mask on the fixed grid.
    fixed_sigma, moving_sigma : float
        Extra smoothing (meters) that brings each image to the common resolution.
    max_angle, angle_step : float
        Rotation search half-width and step (radians).
    candidates : int
        Number of NCC candidates refined by mutual information.

    Returns
    -------
    transform : sitk.Euler3DTransform
        Fixed -> moving physical points, centered on the fixed field of view.
    info : dict
        Candidates, scores and the chosen one.
    """
    ext = np.maximum(fov_extent(fixed), fov_extent(moving))
    spacing = max(float(ext.max()) / 28.0, 2.0 * max(moving.GetSpacing()), 2.0 * max(fixed.GetSpacing()))
    f_img = _coarse_features(fixed, spacing, fixed_sigma, threads)
    m_img = _coarse_features(moving, spacing, moving_sigma, threads)
    f = sitk.GetArrayFromImage(f_img).astype(np.float64)
    mf = _grid_mask(fixed, f_img)
    if fixed_mask is not None:
        mm = sitk.Resample(fixed_mask, f_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        mf *= sitk.GetArrayViewFromImage(mm) > 0
    # shrink the fixed mask by one coarse voxel: the smoothed edges at the border are not data
    f_center = fov_center(fixed)
    m_center = fov_center(moving)
    o_f = np.asarray(f_img.GetOrigin())
    ones_m = sitk.Image(moving.GetSize(), sitk.sitkUInt8)
    ones_m.CopyInformation(moving)
    ones_m = ones_m + 1
    grid_size = m_img.GetSize()
    o_m = np.asarray(m_img.GetOrigin())
    min_overlap = 0.3 * float(mf.sum())
    rots = rotation_grid(max_angle, angle_step)
    results = []
    fixed_ffts = None
    for i, r in enumerate(rots):
        R = rotvec_matrix(r)
        tr = sitk.AffineTransform(3)
        tr.SetMatrix(tuple(R.ravel()))
        tr.SetCenter(tuple(m_center))
        g_img = sitk.Resample(m_img, grid_size, tr, sitk.sitkLinear, tuple(o_m), (spacing,) * 3,
                              (1, 0, 0, 0, 1, 0, 0, 0, 1), 0.0, sitk.sitkFloat32)
        gmask = sitk.Resample(ones_m, grid_size, tr, sitk.sitkNearestNeighbor, tuple(o_m), (spacing,) * 3,
                              (1, 0, 0, 0, 1, 0, 0, 0, 1), 0, sitk.sitkUInt8)
        g = sitk.GetArrayFromImage(g_img).astype(np.float64)
        mg = sitk.GetArrayViewFromImage(gmask).astype(np.float64)
        ncc, fixed_ffts = masked_ncc(f, mf, g, mg, min_overlap=min_overlap, threads=threads or 1,
                                     fixed_ffts=fixed_ffts)
        u_zyx, score = _peak(ncc)
        u = u_zyx[::-1] * spacing  # (x, y, z) meters
        # f at x  <->  g at x + (o_m - o_f) + u  <->  moving at c_m + R (x + (o_m - o_f) + u - c_m)
        mapped_center = m_center + R @ (f_center + (o_m - o_f) + u - m_center)
        results.append((score, i, R, mapped_center))
        if progress is not None:
            progress(0.6 * (i + 1) / len(rots), "rotation search")
    results.sort(key=lambda t: (-t[0], t[1]))

    chosen = []
    for score, i, R, mc in results:
        far = all(
            np.linalg.norm(rots[i] - rots[j]) > 1.01 * angle_step or np.linalg.norm(mc - c) > 2 * spacing
            for _, j, _, c in chosen
        )
        if far:
            chosen.append((score, i, R, mc))
        if len(chosen) >= candidates:
            break
    # the centered identity as one more start (no rotation, field-of-view centers matched)
    starts = [(s, rigid_from(R, mc, f_center)) for s, _, R, mc in chosen]
    starts.append((float("nan"), rigid_from(np.eye(3), m_center, f_center)))

    best = None
    info = {"coarse_spacing_m": spacing, "rotations": len(rots), "candidates": []}
    f_c, m_c, mask_c = _coarse_images(fixed, moving, fixed_mask, spacing / 2, fixed_sigma, moving_sigma, threads)
    for k, (score, start) in enumerate(starts):
        t, value = _coarse_rigid(f_c, m_c, mask_c, start, spacing, seed=seed, threads=threads)
        info["candidates"].append({
            "ncc": score,
            "start_parameters": list(start.GetParameters()),
            "parameters": list(t.GetParameters()),
            "mattes": value,
        })
        if best is None or value < best[1] - 1e-9:
            best = (t, value, k)
        if progress is not None:
            progress(0.6 + 0.4 * (k + 1) / len(starts), "multi-start refinement")
    info["chosen"] = best[2]
    logger.info("initial alignment: %d rotations, %d starts, chosen %d (Mattes %.4f)",
                len(rots), len(starts), best[2], best[1])
    return best[0], info


def _resampled(image: sitk.Image, spacing: float, sigma: float, threads, interp=sitk.sitkLinear) -> sitk.Image:
    """``image`` smoothed by ``sigma`` and resampled on a ``spacing`` grid over its field of view."""
    img = _smooth(image, sigma, threads) if sigma > 0 else image
    size = [max(4, int(math.ceil(e / spacing))) for e in fov_extent(image)]
    origin = fov_center(image) - (np.array(size) - 1) / 2 * spacing
    res = sitk.ResampleImageFilter()
    res.SetSize(size)
    res.SetOutputSpacing([spacing] * 3)
    res.SetOutputOrigin(tuple(origin))
    res.SetInterpolator(interp)
    res.SetDefaultPixelValue(0.0)
    if threads:
        res.SetNumberOfThreads(threads)
    return res.Execute(img)


def _coarse_images(fixed, moving, fixed_mask, spacing, fixed_sigma, moving_sigma, threads):
    f = _resampled(fixed, spacing, math.sqrt(spacing**2 + fixed_sigma**2), threads)
    m = _resampled(moving, spacing, math.sqrt(spacing**2 + moving_sigma**2), threads)
    mask = None
    if fixed_mask is not None:
        mask = sitk.Resample(fixed_mask, f, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        if not np.any(sitk.GetArrayViewFromImage(mask)):
            mask = None
    return f, m, mask


def _coarse_rigid(f, m, mask, start, spacing, *, seed, threads):
    """Short rigid Mattes-MI registration at the coarse scale; returns (transform, metric)."""
    R = sitk.ImageRegistrationMethod()
    single_threaded_metric(R)  # see _stages.SitkRegistration.run: multi-threaded ITK metrics are not reproducible
    R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    R.SetMetricSamplingStrategy(R.RANDOM)
    n = int(np.prod(f.GetSize()))
    R.SetMetricSamplingPercentage(min(1.0, 20000 / n), itk_seed(seed, 11))
    if mask is not None:
        R.SetMetricFixedMask(mask)
    R.SetInterpolator(sitk.sitkLinear)
    R.SetOptimizerAsRegularStepGradientDescent(learningRate=spacing, minStep=spacing * 2e-3,
                                               numberOfIterations=50, relaxationFactor=0.6,
                                               gradientMagnitudeTolerance=1e-8)
    R.SetOptimizerScales(euler_scales(f))
    t = sitk.Euler3DTransform(start)
    R.SetInitialTransform(t, inPlace=True)
    R.Execute(f, m)
    R2 = sitk.ImageRegistrationMethod()
    single_threaded_metric(R2)
    R2.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    value_only(R2)
    R2.SetMetricSamplingStrategy(R2.NONE)
    if mask is not None:
        R2.SetMetricFixedMask(mask)
    R2.SetInterpolator(sitk.sitkLinear)
    R2.SetInitialTransform(t)
    return t, float(R2.MetricEvaluate(f, m))


def euler_scales(image: sitk.Image) -> tuple:
    """Optimizer scales of an Euler 3-D transform so that all parameters move voxels alike.

    A rotation by ``a`` radians moves points at distance ``r`` from the center by ``a r``;
    with ``r`` the RMS distance of the field of view from its center the scales are
    ``(r^2, r^2, r^2, 1, 1, 1)`` -- what ITK's physical-shift estimator computes, without
    its random sampling (which is not seeded, so would make runs irreproducible).
    """
    r2 = float(np.sum(fov_extent(image) ** 2)) / 12.0
    return (r2, r2, r2, 1.0, 1.0, 1.0)


def value_only(method: sitk.ImageRegistrationMethod) -> None:
    """A method that only evaluates its metric (``MetricEvaluate``) skips the gradient images
    ITK's metrics otherwise build over both whole volumes when they are initialized (a
    recursive-Gaussian gradient filter; 0.28 of 0.57 CPU-s per evaluation of a 160^3 / 125^3
    pair at 1e5 samples): the value does not use them and is the same."""
    method.MetricUseFixedImageGradientFilterOff()
    method.MetricUseMovingImageGradientFilterOff()


def single_threaded_metric(method: sitk.ImageRegistrationMethod) -> None:
    """Run a registration method's metric and optimizer on one thread and one work unit.

    Set on the method itself: SimpleITK's process-wide default thread count is left alone, since
    other threads of the process (Dask workers, a caller's own SimpleITK work) read it concurrently.
    """
    method.SetNumberOfThreads(1)
    method.SetNumberOfWorkUnits(1)


def _smooth(image: sitk.Image, sigma: float, threads) -> sitk.Image:
    if sigma <= 0:
        return image
    g = sitk.SmoothingRecursiveGaussianImageFilter()
    g.SetSigma(float(sigma))
    if threads:
        g.SetNumberOfThreads(threads)
    return g.Execute(image)
