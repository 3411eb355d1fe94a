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
from ._initial import _smooth, auto_initial, euler_scales, single_threaded_metric
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
#: First B-spline level: control-point spacing at least this many moving resolutions (FWHM) ...
GRID_PER_RESOLUTION = 5.0
#: ... and this fraction of the smallest fixed field-of-view edge (2 cells).  The levels then halve
#: the spacing (refining the previous map exactly) down to ``FINEST_GRID_PER_RESOLUTION``.  On
#: bench/registration_family.py a first level of one cell (the former default) was accepted on
#: member 4 (TRE 17.5 -> 12.4 nm) but could not represent 1-2 um waves (member 0: 17.8 -> 17.4 nm);
#: starting at 2 cells reaches 10.0 / 14.2-15.8 nm on them directly, one level cheaper.  With one
#: cell first (and a 0.01 gain threshold) members 0 / 4 ended at 16.5 / 11.8 nm (15.8 / 10.5 nm
#: here) at 23 / 55 CPU-s, and bench/compare_registration.py's pair (3.4-6.8 um waves, which one cell
#: represents) at 7.8 nm in 52 CPU-s -- here its 2-cell level is rejected: rigid, 12.5 nm.
GRID_PER_FOV = 0.5
#: A B-spline level with at least this share of its interior coefficients (control points off the
#: grid's outer layer) at their bound (98 % of ``BSPLINE_BOUND`` moving resolutions) is rejected.  On
#: the demo's scans (no deformation between them; 48x96x96 and 40x64x64) the held-out check accepted
#: one-cell warps with 35-52 % of them at a bound of one resolution (240 nm displacement) that took
#: the TRE from 7 nm (rigid) to 36-40 nm.  Counting all coefficients separated the cases less well
#: (edge coefficients saturate in both: 0.5-4.7 % vs 6.7-33 %).
BSPLINE_SATURATION = 0.20
#: A B-spline level is kept only if the summed relative held-out gains exceed this.  On
#: bench/registration_family.py the levels that lowered the TRE gained 0.026-0.050 (first levels;
#: 0.014 for a second level on top of a one-cell one), a 2-cell level that raised it from 11.4 to
#: 12.8 nm (member 1: 0.6-0.9 um waves, which 1.25-um cells cannot represent) 0.009, and the levels
#: rejected by the sign alone -0.02 to -0.001.
BSPLINE_MIN_GAIN = 0.02
#: Never finer than this many moving resolutions, even when asked.
MIN_GRID_PER_RESOLUTION = 4.0
#: Default finest B-spline level (control-point spacing in moving resolutions).  On the family, every
#: level at 4.8-6.1 resolutions made the TRE worse (member 0: 15.0 -> 19.3 nm, member 4: 10.6 ->
#: 18.6 nm) and was rejected by the held-out check, at the largest CPU cost of all levels.
FINEST_GRID_PER_RESOLUTION = 8.0
#: At most this many B-spline levels.
MAX_BSPLINE_LEVELS = 6
#: Random samples of the B-spline fit's metric: at least this many, and this many per coefficient
#: (None: every training voxel, which did not change the TRE on member 0: 14.6 vs 14.2 nm).
BSPLINE_SAMPLES = 30000
BSPLINE_SAMPLES_PER_PARAMETER = 20
#: Gaussian smoothing (sigma) of both images in each level's fit, as a fraction of the level's grid
#: (1/8 took member 0's 2-cell TRE from 15 to 53-78 nm: MI of blurred unlike contrasts is biased).
BSPLINE_SMOOTHING = 0.0
#: L-BFGS-B iterations per level.  100 took 31-36 CPU-s in all on four 160^3 members of
#: bench/registration_family.py (member 4's 2-cell level used all 100: TRE 10.5 nm); 50 took 21-28
#: CPU-s on them with the same acceptances (member 4: 10.4 nm, member 0: 15.7 vs 15.8 nm).
BSPLINE_ITERATIONS = 50
#: Bound of the coefficients (each level's total map) in moving resolutions.  A cubic B-spline whose
#: wave spans two cells needs coefficients ~3x its displacement: with a bound of one resolution the
#: 2-cell level of member 0 (40-nm warp of 1-1.9 um waves) had 21-26 % of its interior coefficients
#: at the bound and was rejected; with 2, 4 %.
BSPLINE_BOUND = 2.0
#: Fraction of the estimated relative blur applied to the fixed image in the B-spline levels.
BSPLINE_FIXED_SMOOTHING = FIXED_SMOOTHING
#: Sample spacing of the B-spline fit (shrink factor of the fixed image) in moving resolutions.
BSPLINE_SHRINK = 0.5


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


def _subdivide(coefficients: np.ndarray, axis: int) -> np.ndarray:
    """Control points of the same uniform cubic B-spline on a grid of half the spacing along ``axis``.

    ``m + 3`` control points of a mesh of ``m`` cells become ``2 m + 3`` (exact refinement:
    the cubic B-spline is (1, 4, 6, 4, 1) / 8 times B-splines of half the width).
    """
    c = np.moveaxis(coefficients, axis, 0)
    out = np.empty((2 * c.shape[0] - 3,) + c.shape[1:])
    out[0::2] = (c[:-1] + c[1:]) / 2.0
    out[1::2] = (c[:-2] + 6.0 * c[1:-1] + c[2:]) / 8.0
    return np.moveaxis(out, 0, axis)


def refine_bspline(bs: sitk.Transform, reference: sitk.Image) -> sitk.BSplineTransform:
    """``bs`` (cubic, on ``reference``'s domain) on a mesh of twice as many cells per axis: the same map."""
    bs = sitk.BSplineTransform(bs)
    mesh = [2 * m for m in bs.GetTransformDomainMeshSize()]
    out = sitk.BSplineTransformInitializer(reference, mesh, 3)
    coef = []
    for im in bs.GetCoefficientImages():  # x, y, z components; arrays (z, y, x)
        c = sitk.GetArrayFromImage(im).astype(np.float64)
        for axis in range(3):
            c = _subdivide(c, axis)
        coef.append(c.ravel())
    out.SetParameters(tuple(np.concatenate(coef)))
    return out


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
        #: bench/registration_family.py --methods explore: a list to fit every B-spline level (each on
        #: top of the previous fit, kept or not) and collect the (level B-spline, composed map) pairs
        self._explore: list | None = None

    # -- building blocks ----------------------------------------------------------
    def _method(self, *, bins: int = 32) -> sitk.ImageRegistrationMethod:
        R = sitk.ImageRegistrationMethod()
        single_threaded_metric(R)  # see run(): reproducible metric sums
        R.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
        R.SetInterpolator(sitk.sitkLinear)
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

    def _compose(self, rigid, bsplines=()) -> sitk.Transform:
        """``extra o rigid o bsplines[0] o bsplines[1] ...`` (the last B-spline acts first on fixed points)."""
        parts = []
        if self.extra is not None:
            parts.append(self.extra)
        parts.append(rigid)
        parts.extend(bsplines)
        if len(parts) == 1:
            return sitk.Euler3DTransform(rigid)
        return sitk.CompositeTransform(parts)

    def _fixed_smoothed(self, fraction: float = None):
        """The fixed image smoothed by ``fraction`` (default ``FIXED_SMOOTHING``) of the relative blur."""
        fraction = FIXED_SMOOTHING if fraction is None else fraction
        key = (round(self.sigma_rel * 1e12), fraction)
        cache = self.__dict__.setdefault("_fs_cache", {})
        if key not in cache:
            cache[key] = self._smooth(self.fixed, fraction * self.sigma_rel / UNIT)
        return cache[key]

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

    def _metric_value(self, fixed, transform, mask_arr, *, percentage=None, seed_salt=0, moving=None,
                      metric="mattes"):
        R = self._method()
        if metric == "correlation":
            R.SetMetricAsCorrelation()
        if percentage is None:
            R.SetMetricSamplingStrategy(R.NONE)
        else:
            R.SetMetricSamplingStrategy(R.RANDOM)
            R.SetMetricSamplingPercentage(percentage, itk_seed(self.seed, seed_salt))
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
            n = np.prod(self.f_arr.shape)
            pct = self._samples(n, 100000)
            vals = []
            for fac in factors:
                img = self._smooth(self.fixed, fac * base / UNIT)
                vals.append(self._metric_value(img, t, self.mask, percentage=pct, seed_salt=5))
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

    def _fit_bspline(self, fixed, moving, moving_initial, train, mesh, shrink, bound, salt, metric, *,
                     samples=30000, smoothing=0.0, iterations=100, start=None):
        """B-spline on ``fixed``'s domain fitted on the ``train`` voxels (L-BFGS-B, bounded coefficients).

        ``start``: a B-spline on the same domain and ``mesh`` to start from (default: zero).
        """
        bs = sitk.BSplineTransformInitializer(fixed, mesh, 3)
        if start is not None:
            bs.SetParameters(start.GetParameters())
        R = self._method()
        if metric == "correlation":
            R.SetMetricAsCorrelation()
        R.SetShrinkFactorsPerLevel(shrink)
        R.SetSmoothingSigmasPerLevel([smoothing] * len(shrink))
        R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        n = int(train.sum())
        if samples is None:
            R.SetMetricSamplingStrategy(R.NONE)
        else:
            R.SetMetricSamplingStrategy(R.RANDOM)
            R.SetMetricSamplingPercentagePerLevel([self._samples(n / s**3, samples) for s in shrink],
                                                  itk_seed(self.seed, salt))
        R.SetMetricFixedMask(_mask_image(train, fixed))
        R.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations,
                               maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=2 * iterations,
                               costFunctionConvergenceFactor=1e7, lowerBound=-bound, upperBound=bound)
        R.SetInitialTransform(bs, inPlace=True)
        R.SetMovingInitialTransform(moving_initial)
        R.Execute(fixed, moving)
        return bs, {"value": float(R.GetMetricValue()), "iterations": int(R.GetOptimizerIteration()),
                    "stop": R.GetOptimizerStopConditionDescription()}

    def _levels(self, res: float) -> list[float]:
        """Control-point spacings (meters) of the coarse-to-fine B-spline levels for a moving resolution ``res``.

        By default the field of view (smallest edge) over 2, 4, 8, ... cells down to
        ``FINEST_GRID_PER_RESOLUTION`` moving resolutions; with ``bspline_grid`` the finest level is
        that spacing and the coarser ones double it up to the first level's spacing.
        """
        first = self.default_grid(res)
        finest = self._grid(res)
        if finest >= first:
            return [finest]
        if self.grid is None:
            grids = [first]
            while grids[-1] / 2.0 >= finest * (1.0 - 1e-9):
                grids.append(grids[-1] / 2.0)
        else:
            grids = [finest]
            while grids[-1] * 2.0 <= first * (1.0 + 1e-9):
                grids.append(grids[-1] * 2.0)
            grids = grids[::-1]
        return grids[:MAX_BSPLINE_LEVELS]

    def _bspline(self, rigid):
        """Coarse-to-fine B-spline levels on Mattes MI, each kept only if it improves held-out similarities.

        On simulated PXCT/TXTM pairs every similarity tried (Mattes MI, correlation ratio,
        correlation of gradient magnitudes) is maximized by some smooth warp that is *not*
        the true map, even without any deformation -- the modalities disagree on which
        phases differ -- and held-out voxels of the same similarity confirm that warp
        (bench/compare_registration.py).  The biases of unlike similarities differ while a
        true deformation improves both, so each level's B-spline, fitted on Mattes MI
        (training half of a checkerboard of blocks smaller than the finest grid) on top of
        the previous accepted map, is kept only if the sum of the relative changes of the
        Mattes MI and of the correlation of edge strengths (gradient magnitudes) on the
        held-out half, against the previous accepted map, is positive: a warp that MI likes a
        little but that breaks edges more is rejected, and the levels stop there.  So is a
        level with many interior coefficients at their bound (``BSPLINE_BOUND`` moving resolutions): a
        deformation that large is not what the similarity found, but its bias.
        """
        res = float(self.moving_resolution)
        grids = self._levels(res)
        fixed = self._fixed_smoothed(BSPLINE_FIXED_SMOOTHING)
        h = float(self.fsp.max())
        rig = self._compose(rigid)
        levels = []
        candidate = None
        with _CpuClock() as clk:
            # Only fixed voxels that the rigid result maps at least one resolution inside the moving
            # field of view take part, so that the bounded B-spline cannot push samples out of it
            # (ITK's metrics drop such samples, which could otherwise "improve" the similarity).
            inside = self._inside(self.moving, fixed, rig, margin=res)
            base = inside if self.mask is None else inside & self.mask
            if base.sum() < 4096:
                raise ValueError("the rigid result leaves too little overlap between the volumes for the B-spline stage")
            # held-out split: one 3-D checkerboard of blocks smaller than the finest grid for all levels
            block = max(2, int(round(grids[-1] / (4 * h))))
            train = _checkerboard_mask(self.f_arr.shape, block, 0, base)
            held = _checkerboard_mask(self.f_arr.shape, block, 1, base)
            shrink = [max(1, int(round(BSPLINE_SHRINK * res / h)))]
            bound = BSPLINE_BOUND * res / UNIT
            fe, me = self._edges()
            # the same 200 000 random held-out points for every map (paired comparisons)
            kw = dict(percentage=self._samples(int(held.sum()), 200000), seed_salt=7)
            kw_e = dict(kw, moving=me, metric="correlation")
            ref = (self._metric_value(fixed, rig, held, **kw), self._metric_value(fe, rig, held, **kw_e))
            previous = None  # the B-spline of the last accepted level (explore: of the last level)
            for k, grid in enumerate(grids):
                lv_clk = _CpuClock().__enter__()
                if previous is None:
                    # whole cells of at least ``grid`` (a rounded count could make them finer than the floor)
                    mesh = [max(1, int(math.floor(e / (grid / UNIT) + 1e-6))) for e in fov_extent(fixed)]
                    start = None
                else:  # the previous map, exactly, on a mesh of twice as many cells (half the spacing)
                    start = refine_bspline(previous, fixed)
                    mesh = list(start.GetTransformDomainMeshSize())
                n_par = 3 * int(np.prod([m + 3 for m in mesh]))
                self.progress.stage(0.55 + 0.4 * k / len(grids), 0.55 + 0.4 * (k + 1) / len(grids),
                                    f"bspline level {k + 1}/{len(grids)} ({grid * 1e9:.0f} nm grid)")
                samples = (None if BSPLINE_SAMPLES is None
                           else max(BSPLINE_SAMPLES, BSPLINE_SAMPLES_PER_PARAMETER * n_par))
                bs, info = self._fit_bspline(fixed, self.moving, rig, train, mesh, shrink, bound, 3 + 10 * k,
                                             "mattes", samples=samples, smoothing=BSPLINE_SMOOTHING * grid / UNIT,
                                             iterations=BSPLINE_ITERATIONS, start=start)
                composed = self._compose(rigid, [bs])
                new = (self._metric_value(fixed, composed, held, **kw), self._metric_value(fe, composed, held, **kw_e))
                # relative improvement of each held-out similarity (both are "lower is better" in ITK)
                gains = {"mattes": (ref[0] - new[0]) / abs(ref[0]), "edges": (ref[1] - new[1]) / abs(ref[1])}
                total = float(sum(gains[n] for n in self.holdout))
                # the share of the interior coefficients (control points off the grid's outer layer, which
                # the data constrain) at their bound
                coef = np.abs(np.stack([sitk.GetArrayViewFromImage(im) for im in sitk.BSplineTransform(bs).GetCoefficientImages()]))
                inner = coef[:, 1:-1, 1:-1, 1:-1]
                saturation = float(np.mean(inner >= 0.98 * bound)) if inner.size and bound > 0 else 0.0
                ok = bool(total > BSPLINE_MIN_GAIN) and saturation < BSPLINE_SATURATION
                lv_clk.__exit__()
                levels.append({
                    "grid_m": grid, "mesh": mesh, "fit": info,
                    "holdout_mattes": {"previous": ref[0], "level": new[0]},
                    "holdout_edge_correlation": {"previous": ref[1], "level": new[1]},
                    "holdout_gains": gains, "holdout_total_gain": total, "accepted": ok,
                    "saturated_coefficients": saturation, "max_displacement_m": self._max_displacement(bs, fixed),
                    "cpu_s": lv_clk.cpu, "wall_s": lv_clk.wall,
                })
                if candidate is None:
                    candidate = composed
                if self._explore is not None:
                    self._explore.append((bs, composed))
                    previous, ref = bs, new
                    continue
                if not ok:
                    break
                previous, candidate, ref = bs, composed, new
        n_ok = sum(1 for lv in levels if lv["accepted"]) if self._explore is None else 0
        self.grid_used = levels[n_ok - 1]["grid_m"] if n_ok else None
        self.stage_transforms["bspline"] = candidate
        first = levels[0]
        self.metrics["bspline"] = {
            "grids_m": grids, "levels": levels, "levels_accepted": n_ok, "accepted": n_ok > 0,
            "grid_m": self.grid_used, "shrink": shrink, "bound_m": bound * UNIT, "holdout_block_voxels": block,
            "holdout_used": list(self.holdout), "holdout_gains": first["holdout_gains"],
            "holdout_total_gain": first["holdout_total_gain"], "saturated_coefficients": first["saturated_coefficients"],
            "wall_s": clk.wall, "cpu_s": clk.cpu,
        }
        if n_ok:
            if n_ok < len(levels):
                logger.info("B-spline: %d of %d levels kept (level %d: held-out change %+.2e, %.0f%% of the interior "
                            "coefficients at their bound)", n_ok, len(grids), n_ok + 1,
                            levels[n_ok]["holdout_total_gain"], 100 * levels[n_ok]["saturated_coefficients"])
            return candidate
        saturation, total = first["saturated_coefficients"], first["holdout_total_gain"]
        mi, gm = first["holdout_mattes"], first["holdout_edge_correlation"]
        if saturation >= BSPLINE_SATURATION and total > BSPLINE_MIN_GAIN:
            warnings.warn(
                f"B-spline stage rejected: {saturation:.0%} of its interior coefficients sit at their bound "
                f"({bound * UNIT * 1e9:.0f} nm, {BSPLINE_BOUND:g}x the moving volume's resolution) -- a warp that large fits differences between the "
                f"modalities, not a deformation (held-out change {total:+.2e}); keeping the rigid transform",
                RegistrationWarning, stacklevel=4)
            logger.warning("B-spline stage rejected (%.0f%% of the interior coefficients at their bound)", 100 * saturation)
            return None
        warnings.warn(
            f"B-spline stage rejected: held-out similarity ({' + '.join(self.holdout)}) did not improve "
            f"by more than {BSPLINE_MIN_GAIN:g} (relative change {total:+.2e}; Mattes MI {-mi['previous']:.5f} -> {-mi['level']:.5f}, edge correlation "
            f"{-gm['previous']:.5f} -> {-gm['level']:.5f}); keeping the rigid transform", RegistrationWarning, stacklevel=4)
        logger.warning("B-spline stage rejected (held-out MI %s, edges %s)", mi, gm)
        return None

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
        """The finest B-spline level's control-point spacing (meters)."""
        grid = self.grid if self.grid is not None else FINEST_GRID_PER_RESOLUTION * res
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
