"""``register``: registration of a TXTM volume (moving) onto a PXCT volume (fixed).

Checks the arguments and runs one of two backends: the SimpleITK pipeline
(``_stages.py``) or elastix (``_elastix.py``, optional).  The result type and its files
are in ``_result.py``, the intensity scaling and the rigid start from ``initial`` in
``_prepare.py``, the automatic coarse alignment in ``_initial.py``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .._memory import check_memory
from .._progress import ProgressCallback
from ._convert import check_mask, check_origin, check_seed, check_spacing, check_threads, check_volume
from ._prepare import initial_transform
from ._result import Registration
from ._stages import SitkRegistration

__all__ = ["register", "STAGES", "BACKENDS"]

STAGES = ("rigid", "bspline")
BACKENDS = ("simpleitk", "elastix")


def _check_stages(stages) -> tuple[str, ...]:
    if isinstance(stages, str):
        stages = (stages,)
    try:
        st = tuple(stages)
    except TypeError:
        raise TypeError(f"stages must be a sequence of {STAGES}, got {stages!r}") from None
    if not st or any(s not in STAGES for s in st) or len(set(st)) != len(st) or list(st) != sorted(st, key=STAGES.index):
        raise ValueError(f"stages must be a non-empty ordered subset of {STAGES}, got {stages!r}")
    return st



# --------------------------------------------------------------------------- main entry
def register(
    fixed,
    moving,
    *,
    fixed_spacing,
    moving_spacing,
    initial: Any = "auto",
    stages: Sequence[str] = STAGES,
    bspline_grid: Optional[float] = None,
    fixed_mask=None,
    fixed_origin=None,
    moving_origin=None,
    backend: str = "simpleitk",
    seed: int = 0,
    threads: Optional[int] = None,
    callback: Optional[ProgressCallback] = None,
    moving_resolution: Optional[float] = None,
    holdout: Sequence[str] = ("mattes", "edges"),
) -> Registration:
    """Register a TXTM volume (moving) onto a PXCT volume (fixed).

    The paper aligned the two tomograms by hand, then ran elastix (rigid, then
    B-spline, advanced Mattes mutual information; Müller et al., Methods,
    "Image registration").  Here the coarse alignment is automatic (rotation
    search over SO(3) with masked normalised cross-correlation of gradient
    magnitudes, then multi-start mutual information), the fixed image is
    smoothed to the moving image's resolution (estimated from the pair) so that
    the two see the same structures, and the B-spline stage (Mattes MI, one
    control-point cell per field of view by default) is kept only if it raises
    the mutual information *and* the correlation of edge strengths on voxels it
    was not fitted to (``holdout``); otherwise the rigid map is returned with a
    ``RegistrationWarning``.  Mutual-information optimisation runs on one thread
    so that results are reproducible (see ``SitkRegistration.run`` in ``_stages.py``).

    Parameters
    ----------
    fixed : (z, y, x) ndarray
        PXCT volume (any real dtype; used as float32).
    moving : (z, y, x) ndarray
        TXTM volume.
    fixed_spacing, moving_spacing : float or (3,) floats
        Voxel sizes in metres, per-axis values in (z, y, x) order.
    initial : "auto", "center", SimpleITK.Transform or (fixed_points, moving_points)
        ``"auto"`` finds the coarse alignment itself (rotations up to ~10 degrees
        about each axis, shifts up to ~15 % of the field of view); ``"center"``
        matches the field-of-view centres; a rigid transform (fixed -> moving,
        ITK (x, y, z) convention) starts the rigid stage, any other transform is
        kept underneath; two (n, 3) arrays of corresponding (z, y, x) points in
        metres (n >= 3) give a least-squares rigid start.
    stages : sequence of {"rigid", "bspline"}
        Stages to run, in this order.
    bspline_grid : float, optional
        B-spline control-point spacing in metres.  Default: the larger of 5x the
        moving resolution (FWHM) and the smallest edge of the fixed field of view
        (one cell: finer grids let mutual information fit the structures only one
        modality shows, see bench/compare_registration.py); never finer than 4x
        the moving resolution (a finer request is raised to it with a warning).
    fixed_mask : (z, y, x) bool ndarray, optional
        Fixed voxels the similarity is measured on.
    fixed_origin, moving_origin : float or (3,) floats, optional
        Physical position (z, y, x, metres) of the centre of voxel 0 (default 0).
    backend : {"simpleitk", "elastix"}
        ``"elastix"`` needs the optional ``itk-elastix`` package.
    seed : int
        Seed of the metric's random sampling.
    threads : int, optional
        Threads for ITK and the FFTs (default: ITK's default).  Results are
        reproducible for a fixed ``seed`` and ``threads``.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.
    moving_resolution : float, optional
        Moving (TXTM) resolution as a Gaussian FWHM in metres.  Default:
        estimated from the blur that best matches the fixed image to the moving
        one after the rigid stage (assuming a PXCT FWHM of ~2 fixed voxels).
    holdout : sequence of {"mattes", "edges"}
        Held-out similarities whose relative changes, summed, must be positive for
        the B-spline stage to be kept: Mattes MI of the intensities and the
        correlation of edge strengths (gradient magnitudes).  Both by default: on
        simulated pairs a B-spline fitted on MI also raises the held-out MI when
        there is no deformation at all (moving points by ~5 nm), while it lowers
        the edge correlation more; ``("mattes",)`` is the looser rule of the issue.

    Returns
    -------
    Registration
        ``transform`` maps fixed (x, y, z) physical points to moving ones.

    Raises
    ------
    ValueError, TypeError
        Non-3-D, non-finite or constant volumes, bad spacings/origins, an empty
        mask, unknown stages or backend.
    """
    f = check_volume(fixed, "fixed")
    m = check_volume(moving, "moving")
    fsp = check_spacing(fixed_spacing, "fixed_spacing")
    msp = check_spacing(moving_spacing, "moving_spacing")
    fo = check_origin(fixed_origin, "fixed_origin")
    mo = check_origin(moving_origin, "moving_origin")
    mask = check_mask(fixed_mask, f.shape, "fixed_mask")
    st = _check_stages(stages)
    seed = check_seed(seed)
    threads = check_threads(threads)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    # Peak memory: SimpleITK holds both volumes in float64 plus smoothed, gradient and resampled
    # copies at full resolution (about 12 per voxel of the larger grid, measured on the test pairs).
    check_memory(8.0 * 12 * max(f.size, m.size) + 8.0 * (f.size + m.size), stage="tomofuse.register.register",
                 detail=f"fixed {f.shape}, moving {m.shape} voxels",
                 remedy="register a sub-volume (crop both volumes to the overlap) or downsampled volumes, then "
                        "apply the transform to the full volumes (Registration.resample)")
    if bspline_grid is not None:
        from .._validate import positive_length

        bspline_grid = positive_length(bspline_grid, "bspline_grid")
    if moving_resolution is not None:
        from .._validate import positive_length

        moving_resolution = positive_length(moving_resolution, "moving_resolution")
    if not (isinstance(initial, str) and initial == "auto"):
        initial_transform(initial, np.zeros(3), np.zeros(3))  # validate early
    if isinstance(holdout, str):
        holdout = (holdout,)
    try:
        holdout = tuple(holdout)
    except TypeError:
        raise TypeError(f"holdout must be a sequence of 'mattes'/'edges', got {holdout!r}") from None
    if not holdout or any(h not in ("mattes", "edges") for h in holdout):
        raise ValueError(f"holdout must be a non-empty subset of ('mattes', 'edges'), got {holdout!r}")
    if backend == "elastix":
        from ._elastix import register_elastix

        return register_elastix(f, m, fixed_spacing=fsp, moving_spacing=msp, initial=initial, stages=st,
                                bspline_grid=bspline_grid, fixed_mask=mask, fixed_origin=fo, moving_origin=mo,
                                seed=seed, threads=threads, callback=callback, moving_resolution=moving_resolution)
    return SitkRegistration(f, m, fsp, msp, fo, mo, mask, st, initial, bspline_grid, moving_resolution,
                             seed, threads, callback, holdout).run()

