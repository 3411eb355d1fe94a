"""The SimpleITK pipeline: initial alignment, rigid and B-spline stages on Mattes mutual information."""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import SimpleITK as sitk

from .._progress import Progress
from ..io import jsonable
from ._convert import UNIT, fov_center, fov_extent, itk_seed, scale_transform, to_image
from ._initial import _smooth, auto_initial, euler_scales, single_threaded_metric, value_only
from ._prepare import initial_transform, normalized
from ._result import Registration, RegistrationWarning

__all__ = ["SitkRegistration"]

logger = logging.getLogger(__name__)

FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: PXCT resolution assumed when estimating the TXTM resolution from the relative blur
#: (Gaussian sigma in fixed voxels, i.e. a FWHM of ~2 voxels).
_FIXED_SIGMA_VOXELS = 0.85
#: Fraction of the estimated relative blur applied to the fixed image for the rigid and B-spline
#: stages.  Full resolution matching maximizes the MI of the pair but biases its optimum: on the
#: simulated 160^3 pairs the rigid TRE is 3.1 / 12.8 nm (no / 32 nm deformation) with the full
#: blur, 0.8 / 12.5 nm with half of it, 1.6 / 12.4 nm with none; the B-spline candidate
#: 7.9 / 9.1, 5.0 / 7.7 and 4.0 / 8.5 nm.
FIXED_SMOOTHING = 0.5
#: Default B-spline control-point spacing in units of the moving image's resolution (FWHM).
GRID_PER_RESOLUTION = 5.0
#: ... and not finer than this fraction of the smallest fixed field-of-view edge: on simulated
#: PXCT/TXTM pairs, finer grids let mutual information fit the structures that only one
#: modality shows (MI above that of the true transform, larger TRE) -- bench/compare_registration.py.
GRID_PER_FOV = 1.0
#: A B-spline with at least this share of its interior coefficients (control points off the grid's
#: outer layer) at their bound (98 % of the moving resolution) is rejected.  On the demo's scans (no
#: deformation between them; 48x96x96 and 40x64x64) the held-out check accepted warps with 35-52 %
#: of them at the bound (240 nm displacement) that took the TRE from 7 nm (rigid) to 36-40 nm; on
#: the pairs of tests/register_pairs.py with 32 and 60 nm deformations 4.2 % and 8.3 % are (1 and 2
#: of 24), and their accepted warps lower the TRE (60 nm: 24 -> 18 nm).  Counting all coefficients
#: separated the two less well (edge coefficients saturate in both: 0.5-4.7 % vs 6.7-33 %).
BSPLINE_SATURATION = 0.20
#: ... and a B-spline whose held-out gain (the sum of the relative changes of the held-out similarities)
#: is not above this is rejected too: a gain that small is within what warps fitted to the modalities'
#: differences reach. Measured on the pairs of bench/registration_family.py and tests/register_pairs.py
#: and on the demo's scans (session 44): warps that lowered the TRE had gains of 0.019-0.072 (32-60 nm
#: deformations); the demo's quick pristine scan on an AVX-512 machine accepted a warp at +0.0052 (15 %
#: saturated) that took its TRE from ~10 nm to 30.8 nm, and a family member's at +0.0004 had raised
#: its TRE by 0.4 nm.
BSPLINE_MIN_GAIN = 0.01
#: Never finer than this many moving resolutions, even when asked.
MIN_GRID_PER_RESOLUTION = 4.0


class _CpuClock:
    def __enter__(self):
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0



def _checkerboard_mask(shape_zyx, block: int, parity: int, base: np.ndarray | None) -> np.ndarray:
    idx = [np.arange(n) // block for n in shape_zyx]
    cb = (idx[0][:, None, None] + idx[1][None, :, None] + idx[2][None, None, :]) % 2 == parity
    if base is not None:
        cb &= base
    return cb


def _subsampling_step(mask_or_shape, samples: int) -> int:
    """The largest stride ``s`` for which every ``s``-th voxel along each axis still leaves at least
    ``samples`` voxels (of the mask when given a boolean array, of the volume when given a shape); 1 if
    none does."""
    if isinstance(mask_or_shape, np.ndarray):
        mask = mask_or_shape

        def count(s):
            return int(np.count_nonzero(mask[::s, ::s, ::s]))
    else:
        shape = tuple(int(n) for n in mask_or_shape)

        def count(s):
            return int(np.prod([-(-n // s) for n in shape]))
    step = max(1, int((count(1) / max(samples, 1)) ** (1.0 / 3.0)) + 1)
    while step > 1 and count(step) < samples:
        step -= 1
    return step


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.CopyInformation(like)
    return img



class SitkRegistration:
    """The SimpleITK pipeline (one object per call, keeps the intermediate images)."""

    def __init__(self, f, m, fsp, msp, fo, mo, mask, stages, initial, grid, mres, seed, threads, callback,
                 holdout=("mattes", "edges")):
        self.f_arr, self.m_arr = f, m
        self.fsp, self.msp, self.fo, self.mo = fsp, msp, fo, mo
        self.mask = mask
        self.stages = stages
        self.initial = initial
        self.grid = grid
        self.mres = mres
        self.seed = seed
        self.threads = threads
        self.progress = Progress(callback, logger)
        self.metrics: dict = {}
        self.holdout = tuple(holdout)

    # -- building blocks ----------------------------------------------------------
    def _method(self, *, bins: int = 32) -> sitk.ImageRegistrationMethod:
        """A registration method on Mattes MI, its metric on one thread.

        The metrics' derivatives use the moving image's gradient only: the fixed image's gradient
        image, which ITK otherwise builds over the whole (level's) fixed volume at every level, is
        not computed (same result).  The moving image's stays: computed at the sample points by
        central differences instead, it moved the rigid TRE of family members by up to 0.4 nm and
        took the B-spline fit 2-3x more iterations.
        """
        R = sitk.ImageRegistrationMethod()
        single_threaded_metric(R)  # see run(): reproducible metric sums
        R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
        R.SetInterpolator(sitk.sitkLinear)
        R.MetricUseFixedImageGradientFilterOff()
        return R

    def _smooth(self, img, sigma):
        return _smooth(img, sigma, self.threads)

    def run(self) -> Registration:
        """The whole pipeline, reproducibly.

        ITK's registration metrics sum per-thread partial results in an order that varies
        between runs, so two multi-threaded runs differ in the last bits and the optimizer
        paths drift apart.  The metric and optimizer therefore run on one thread and one work
        unit (set on each registration method, never through SimpleITK's process-wide default,
        which other threads -- e.g. Dask workers -- may be using at the same time); filters,
        resampling and FFTs -- per-voxel, hence reproducible -- use ``threads``.
        """
        return self._run()

    def _observe(self, R, start, stop, message, max_iter):
        state = {"level": -1, "iters": 0, "total": 0}

        def on_iter():
            state["total"] += 1
            self.progress.update(min(1.0, state["total"] / max_iter), message)

        R.AddCommand(sitk.sitkIterationEvent, on_iter)
        self.progress.stage(start, stop, message)
        return state

    def _samples(self, n_voxels: int, target: int) -> float:
        return float(min(1.0, max(target / max(n_voxels, 1), 1e-4)))

    # -- the pipeline ---------------------------------------------------------------
    def _prepare(self) -> None:
        fmask = self.mask
        # ITK works in micrometers inside (see UNIT); the result is converted back to meters
        self.fixed = to_image(normalized(self.f_arr, fmask), self.fsp / UNIT, self.fo / UNIT)
        self.moving = to_image(normalized(self.m_arr, None), self.msp / UNIT, self.mo / UNIT)
        self.fixed_mask_img = _mask_image(fmask, self.fixed) if fmask is not None else None
        self.f_center = fov_center(self.fixed)
        self.m_center = fov_center(self.moving)
        # first guess of the relative blur: the moving image's resolution ~ 2 moving voxels (sigma)
        sigma_f0 = _FIXED_SIGMA_VOXELS * float(self.fsp.max())
        if self.mres is not None:
            self.sigma_rel = math.sqrt(max((self.mres / FWHM) ** 2 - sigma_f0**2, 0.0))
        else:
            self.sigma_rel = 2.0 * float(self.msp.max())

    def _initial(self):
        extra = None
        with _CpuClock() as clk:
            if isinstance(self.initial, str) and self.initial == "auto":
                self.progress.stage(0.0, 0.25, "initial alignment")
                start, info = auto_initial(
                    self.fixed, self.moving, fixed_mask=self.fixed_mask_img, fixed_sigma=self.sigma_rel / UNIT,
                    moving_sigma=0.0, seed=self.seed, threads=self.threads,
                    progress=lambda fr, msg: self.progress.update(fr, msg))
            else:
                init = self.initial
                if isinstance(init, sitk.Transform):
                    init = scale_transform(init, 1.0 / UNIT)
                elif isinstance(init, (tuple, list)) and len(init) == 2:
                    init = (np.asarray(init[0], float) / UNIT, np.asarray(init[1], float) / UNIT)
                start, extra = initial_transform(init, self.f_center, self.m_center)
                info = {"given": True}
        info.update(wall_s=clk.wall, cpu_s=clk.cpu, parameters_um=list(start.GetParameters()))
        self.metrics["initial"] = info
        self.stage_transforms = {"initial": self._compose_extra(start, extra)}
        self.extra = extra
        return start

    def _run(self) -> Registration:
        self._prepare()
        start = self._initial()
        rigid = sitk.Euler3DTransform(start)
        if "rigid" in self.stages:
            rigid = self._rigid(rigid)
            if self.mres is None:
                self._estimate_blur(rigid)
                rigid = self._rigid(rigid, refine=True)
        elif self.mres is None:
            self._estimate_blur(rigid)
        self.stage_transforms["rigid"] = self._compose(rigid)
        final = self._compose(rigid)
        stages_done = ("rigid",) if "rigid" in self.stages else ()
        if "bspline" in self.stages:
            bs = self._bspline(rigid)
            if bs is not None:
                final = bs
                stages_done += ("bspline",)
        self.progress.stage(1.0, 1.0, "done")
        self.progress.update(1.0, "done")
        params = {
            "stages_requested": list(self.stages),
            "seed": self.seed,
            "threads": self.threads,
            "moving_resolution_m": self.moving_resolution,
            "relative_blur_sigma_m": self.sigma_rel,
            "bspline_grid_m": getattr(self, "grid_used", None),
            "holdout": list(self.holdout),
            "backend": "simpleitk",
            "simpleitk": sitk.Version.VersionString(),
        }
        return Registration(
            transform=scale_transform(final, UNIT),
            fixed_shape=tuple(self.f_arr.shape),
            moving_shape=tuple(self.m_arr.shape),
            fixed_voxel_size=self.fsp,
            moving_voxel_size=self.msp,
            fixed_origin=self.fo,
            moving_origin=self.mo,
            stages=stages_done,
            metrics=jsonable(self.metrics),
            parameters=jsonable(params),
            stage_transforms={k: scale_transform(v, UNIT) for k, v in self.stage_transforms.items()},
        )

    def default_grid(self, res: float) -> float:
        """Default B-spline control-point spacing (meters) for a moving resolution ``res``."""
        fov = float(np.min(self.fsp * np.array(self.f_arr.shape)))
        return max(GRID_PER_RESOLUTION * res, GRID_PER_FOV * fov)

    def run_initial_only(self):
        """Initial alignment and the relative-blur estimate only (for the elastix backend)."""
        self._prepare()
        start = self._initial()
        if self.mres is None:
            self._estimate_blur(start)
        return start

    @property
    def moving_resolution(self) -> float:
        if self.mres is not None:
            return self.mres
        sigma_f0 = _FIXED_SIGMA_VOXELS * float(self.fsp.max())
        return FWHM * math.sqrt(self.sigma_rel**2 + sigma_f0**2)

    @staticmethod
    def _compose_extra(rigid, extra):
        if extra is None:
            return sitk.Euler3DTransform(rigid)
        return sitk.CompositeTransform([extra, rigid])

    def _compose(self, rigid, bspline=None) -> sitk.Transform:
        parts = []
        if self.extra is not None:
            parts.append(self.extra)
        parts.append(rigid)
        if bspline is not None:
            parts.append(bspline)
        if len(parts) == 1:
            return sitk.Euler3DTransform(rigid)
        return sitk.CompositeTransform(parts)

    def _fixed_smoothed(self):
        key = round(self.sigma_rel * 1e12)
        if getattr(self, "_fs_key", None) != key:
            self._fs = self._smooth(self.fixed, FIXED_SMOOTHING * self.sigma_rel / UNIT)
            self._fs_key = key
        return self._fs

    def _rigid(self, start: sitk.Euler3DTransform, *, refine: bool = False) -> sitk.Euler3DTransform:
        fixed = self._fixed_smoothed()
        R = self._method()
        res = float(self.moving_resolution)
        h = float(self.fsp.max())
        if refine:
            shrink = [max(1, int(round(res / (2 * h)))), 1]
            smooth = [res / 2 / UNIT, 0.0]
            name, a, b = "rigid (refine)", 0.45, 0.55
        else:
            shrink = [max(1, int(round(2 * res / h))), max(1, int(round(res / h))), max(1, int(round(res / (2 * h))))]
            smooth = [res / UNIT, res / 2 / UNIT, 0.0]
            name, a, b = "rigid", 0.25, 0.45
        R.SetShrinkFactorsPerLevel(shrink)
        R.SetSmoothingSigmasPerLevel(smooth)
        R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        n = np.prod(self.f_arr.shape)
        R.SetMetricSamplingStrategy(R.RANDOM)
        R.SetMetricSamplingPercentagePerLevel([self._samples(n / s**3, 40000) for s in shrink],
                                              itk_seed(self.seed, 1 + int(refine)))
        if self.fixed_mask_img is not None:
            R.SetMetricFixedMask(self.fixed_mask_img)
        R.SetOptimizerAsRegularStepGradientDescent(learningRate=res / 2 / UNIT, minStep=res * 1e-4 / UNIT,
                                                   numberOfIterations=200, relaxationFactor=0.5,
                                                   gradientMagnitudeTolerance=1e-10)
        R.SetOptimizerScales(euler_scales(fixed))
        t = sitk.Euler3DTransform(start)
        R.SetInitialTransform(t, inPlace=True)
        if self.extra is not None:
            R.SetMovingInitialTransform(self.extra)
        state = self._observe(R, a, b, name, 200 * len(shrink))
        with _CpuClock() as clk:
            R.Execute(fixed, self.moving)
        self.metrics["rigid_refine" if refine else "rigid"] = {
            "mattes": float(R.GetMetricValue()),
            "iterations": state["total"],
            "stop": R.GetOptimizerStopConditionDescription(),
            "shrink": shrink,
            "wall_s": clk.wall,
            "cpu_s": clk.cpu,
            "parameters_um": list(t.GetParameters()),
        }
        return t

    def _metric_value(self, fixed, transform, mask_arr, *, samples=None, moving=None, metric="mattes"):
        """Similarity of ``fixed`` (on its mask) and the moving image through ``transform``.

        SimpleITK's ``MetricEvaluate`` ignores the method's sampling strategy and percentage: it
        evaluates every fixed voxel inside the mask (measured at 160^3 / 125^3: the same value for
        1e3 and 2e5 random samples and for two seeds, 0.33 CPU-s each time).  With ``samples`` the
        evaluation therefore runs on a strided view of the fixed image -- every ``s``-th voxel along
        each axis, ``s`` the largest stride that keeps at least ``samples`` voxels of the mask --
        which picks the same voxels for every transform (paired comparisons) without a random seed.
        """
        if samples is not None:
            step = _subsampling_step(self.f_arr.shape if mask_arr is None else mask_arr, samples)
            if step > 1:
                fixed = fixed[::step, ::step, ::step]
                mask_arr = mask_arr[::step, ::step, ::step] if mask_arr is not None else None
        R = self._method()
        if metric == "correlation":
            R.SetMetricAsCorrelation()
        value_only(R)
        R.SetMetricSamplingStrategy(R.NONE)
        if mask_arr is not None:
            R.SetMetricFixedMask(_mask_image(mask_arr, fixed))
        R.SetInitialTransform(transform)
        return float(R.MetricEvaluate(fixed, self.moving if moving is None else moving))

    def _estimate_blur(self, rigid):
        """Relative blur sigma that maximizes the mutual information after rigid alignment."""
        with _CpuClock() as clk:
            t = self._compose(rigid)
            base = 2.0 * float(self.msp.max())
            factors = np.array([0.5, 0.71, 1.0, 1.41, 2.0])
            vals = []
            for fac in factors:
                img = self._smooth(self.fixed, fac * base / UNIT)
                vals.append(self._metric_value(img, t, self.mask, samples=100000))
            vals = np.array(vals)
            k = int(np.argmin(vals))
            logf = np.log(factors)
            best = logf[k]
            if 0 < k < len(factors) - 1:
                a, b, c = vals[k - 1], vals[k], vals[k + 1]
                den = a - 2 * b + c
                if den > 0:
                    best = logf[k] + 0.5 * (a - c) / den * (logf[1] - logf[0])
            self.sigma_rel = float(math.exp(best) * base)
        self.metrics["blur"] = {"factors": factors, "mattes": vals, "sigma_rel_m": self.sigma_rel,
                                "moving_resolution_m": self.moving_resolution, "wall_s": clk.wall, "cpu_s": clk.cpu}
        logger.info("relative blur sigma %.3g m -> moving resolution %.3g m", self.sigma_rel, self.moving_resolution)

    def _edges(self):
        """Gradient magnitudes (edge strength) of the resolution-matched fixed and of the moving image."""
        sg = float(self.msp.max()) / UNIT
        g = sitk.GradientMagnitudeRecursiveGaussianImageFilter()
        if self.threads:
            g.SetNumberOfThreads(self.threads)
        g.SetSigma(math.sqrt((self.sigma_rel / UNIT) ** 2 + sg**2))
        fe = g.Execute(self.fixed)
        g.SetSigma(sg)
        me = g.Execute(self.moving)
        return fe, me

    def _fit_bspline(self, fixed, moving, moving_initial, train, mesh, shrink, bound, salt, metric):
        """B-spline on ``fixed``'s domain fitted on the ``train`` voxels (L-BFGS-B, bounded coefficients)."""
        bs = sitk.BSplineTransformInitializer(fixed, mesh, 3)
        R = self._method()
        if metric == "correlation":
            R.SetMetricAsCorrelation()
        R.SetShrinkFactorsPerLevel(shrink)
        R.SetSmoothingSigmasPerLevel([0.0] * len(shrink))
        R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        n = int(train.sum())
        R.SetMetricSamplingStrategy(R.RANDOM)
        R.SetMetricSamplingPercentagePerLevel([self._samples(n / s**3, 30000) for s in shrink], itk_seed(self.seed, salt))
        R.SetMetricFixedMask(_mask_image(train, fixed))
        R.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=100,
                               maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=200,
                               costFunctionConvergenceFactor=1e7, lowerBound=-bound, upperBound=bound)
        R.SetInitialTransform(bs, inPlace=True)
        R.SetMovingInitialTransform(moving_initial)
        R.Execute(fixed, moving)
        return bs, {"value": float(R.GetMetricValue()), "iterations": int(R.GetOptimizerIteration()),
                    "stop": R.GetOptimizerStopConditionDescription()}

    def _bspline(self, rigid):
        """B-spline stage on Mattes MI, kept only if two unlike similarities improve, together, on held-out voxels.

        On simulated PXCT/TXTM pairs every similarity tried (Mattes MI, correlation ratio,
        correlation of gradient magnitudes) is maximized by some smooth warp that is *not*
        the true map, even without any deformation -- the modalities disagree on which
        phases differ -- and held-out voxels of the same similarity confirm that warp
        (bench/compare_registration.py).  The biases of unlike similarities differ while a
        true deformation improves both, so the B-spline fitted on Mattes MI (training half
        of a checkerboard of blocks) is kept only if the sum of the relative changes of the
        Mattes MI and of the correlation of edge strengths (gradient magnitudes) on the
        held-out half exceeds ``BSPLINE_MIN_GAIN``: a warp that MI likes a little but that breaks
        edges more is rejected, and so is one that gains too little to tell from such warps.  So
        is a warp with many interior coefficients at their bound (the moving resolution): a
        deformation that large is not what the similarity found, but its bias.
        """
        res = float(self.moving_resolution)
        grid = self._grid(res)
        self.grid_used = grid
        fixed = self._fixed_smoothed()
        h = float(self.fsp.max())
        rig = self._compose(rigid)
        with _CpuClock() as clk:
            # Only fixed voxels that the rigid result maps at least one resolution inside the moving
            # field of view take part, so that the bounded B-spline cannot push samples out of it
            # (ITK's metrics drop such samples, which could otherwise "improve" the similarity).
            inside = self._inside(self.moving, fixed, rig, margin=res)
            base = inside if self.mask is None else inside & self.mask
            if base.sum() < 4096:
                raise ValueError("the rigid result leaves too little overlap between the volumes for the B-spline stage")
            # held-out split: a 3-D checkerboard of blocks smaller than the grid
            block = max(2, int(round(grid / (4 * h))))
            train = _checkerboard_mask(self.f_arr.shape, block, 0, base)
            held = _checkerboard_mask(self.f_arr.shape, block, 1, base)
            mesh = [max(1, int(round(e / (grid / UNIT)))) for e in fov_extent(fixed)]
            shrink = [max(1, int(round(res / (2 * h))))]
            bound = res / UNIT
            self.progress.stage(0.55, 0.9, "bspline (mutual information)")
            bs, info = self._fit_bspline(fixed, self.moving, rig, train, mesh, shrink, bound, 3, "mattes")
            fe, me = self._edges()
            composed = self._compose(rigid, bs)
            self.progress.stage(0.9, 0.97, "bspline: held-out check")
            # every held-out voxel, for both maps (a paired comparison; ITK's MetricEvaluate does not
            # sample).  On a stride-2 subset (1/8 of them: -2.8 of 18 CPU-s on the 160^3 bench pair) the
            # held-out gain of one family member's warp (bench/registration_family.py m11) came out at
            # +0.0004 and a warp that raised its TRE by 0.4 nm was kept.
            mi = (self._metric_value(fixed, rig, held), self._metric_value(fixed, composed, held))
            kw = dict(moving=me, metric="correlation")
            gm = (self._metric_value(fe, rig, held, **kw), self._metric_value(fe, composed, held, **kw))
        self.stage_transforms["bspline"] = composed
        # relative improvement of each held-out similarity (both are "lower is better" in ITK)
        gains = {"mattes": (mi[0] - mi[1]) / abs(mi[0]), "edges": (gm[0] - gm[1]) / abs(gm[0])}
        total = float(sum(gains[k] for k in self.holdout))
        # the share of the interior coefficients (control points off the grid's outer layer, which
        # the data constrain) at their bound (the moving resolution)
        coef = np.abs(np.stack([sitk.GetArrayViewFromImage(im) for im in sitk.BSplineTransform(bs).GetCoefficientImages()]))
        inner = coef[:, 1:-1, 1:-1, 1:-1]
        saturation = float(np.mean(inner >= 0.98 * bound)) if inner.size and bound > 0 else 0.0
        accepted = bool(total > BSPLINE_MIN_GAIN) and saturation < BSPLINE_SATURATION
        self.metrics["bspline"] = {
            "grid_m": grid, "mesh": mesh, "shrink": shrink, "bound_m": bound * UNIT,
            "fit": info,
            "holdout_block_voxels": block,
            "holdout_mattes": {"rigid": mi[0], "bspline": mi[1]},
            "holdout_edge_correlation": {"rigid": gm[0], "bspline": gm[1]},
            "holdout_gains": gains, "holdout_used": list(self.holdout), "holdout_total_gain": total,
            "accepted": accepted, "saturated_coefficients": saturation,
            "max_displacement_m": self._max_displacement(bs, fixed),
            "wall_s": clk.wall, "cpu_s": clk.cpu,
        }
        if not accepted and saturation >= BSPLINE_SATURATION:
            warnings.warn(
                f"B-spline stage rejected: {saturation:.0%} of its interior coefficients sit at their bound (the moving "
                f"volume's resolution, {bound * UNIT * 1e9:.0f} nm) -- a warp that large fits differences between the "
                f"modalities, not a deformation (held-out change {total:+.2e}); keeping the rigid transform",
                RegistrationWarning, stacklevel=4)
            # (INFO: the RegistrationWarning above is what the user sees; WARNING here printed it twice)
            logger.info("B-spline stage rejected (%.0f%% of the interior coefficients at their bound)",
                        100 * saturation)
            return None
        if not accepted:
            warnings.warn(
                f"B-spline stage rejected: held-out similarity ({' + '.join(self.holdout)}) did not improve "
                f"by more than {BSPLINE_MIN_GAIN:g} (relative change {total:+.2e}; Mattes MI {-mi[0]:.5f} -> "
                f"{-mi[1]:.5f}, edge correlation {-gm[0]:.5f} -> {-gm[1]:.5f}); keeping the rigid transform",
                RegistrationWarning, stacklevel=4)
            logger.info("B-spline stage rejected (held-out MI %s, edges %s)", mi, gm)
            return None
        return composed

    def _inside(self, src: sitk.Image, ref: sitk.Image, transform, *, margin: float) -> np.ndarray:
        """Voxels of ``ref`` that ``transform`` maps at least ``margin`` meters inside ``src``'s field of view."""
        sp = np.asarray(src.GetSpacing()) * UNIT  # (x, y, z)
        shape = src.GetSize()[::-1]
        k = [int(math.ceil(margin / s)) for s in sp[::-1]]
        ones = np.zeros(shape, dtype=np.uint8)
        sl = tuple(slice(min(ki, n // 2 - 1), max(n - ki, n // 2 + 1)) for ki, n in zip(k, shape))
        ones[sl] = 1
        img = sitk.GetImageFromArray(ones)
        img.CopyInformation(src)
        out = sitk.Resample(img, ref, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        return sitk.GetArrayFromImage(out).astype(bool)

    def _grid(self, res: float) -> float:
        grid = self.grid if self.grid is not None else self.default_grid(res)
        if grid < MIN_GRID_PER_RESOLUTION * res:
            warnings.warn(
                f"bspline_grid {grid:.3g} m is finer than {MIN_GRID_PER_RESOLUTION:g}x the moving resolution "
                f"({res:.3g} m) and would fit noise; using {MIN_GRID_PER_RESOLUTION * res:.3g} m",
                RegistrationWarning, stacklevel=5)
            grid = MIN_GRID_PER_RESOLUTION * res
        return grid

    @staticmethod
    def _max_displacement(bs, fixed) -> float:
        p = np.asarray(bs.GetParameters()).reshape(3, -1)
        return float(np.linalg.norm(p, axis=0).max()) * UNIT if p.size else 0.0
