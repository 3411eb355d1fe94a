"""``register``: registration of a TXTM volume (moving) onto a PXCT volume (fixed).

Checks the arguments and runs one of two backends: the SimpleITK pipeline
(``_stages.py``) or elastix (``_elastix.py``, optional).  The result type and its files
are in ``_result.py``, the intensity scaling and the rigid start from ``initial`` in
``_prepare.py``, the automatic coarse alignment in ``_initial.py``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _validate as check
from .._memory import check_memory
from .._progress import ProgressCallback
from ._convert import check_mask, check_origin, check_volume, check_voxel_size
from ._options import RegistrationOptions
from ._prepare import initial_transform
from ._result import Registration
from ._stages import SitkRegistration

__all__ = ["register"]


def register(
    fixed,
    moving,
    *,
    fixed_voxel_size,
    moving_voxel_size,
    fixed_origin=None,
    moving_origin=None,
    fixed_mask=None,
    initial: Any = "auto",
    options: RegistrationOptions = RegistrationOptions(),
    seed: int = 0,
    threads: Optional[int] = None,
    callback: Optional[ProgressCallback] = None,
) -> Registration:
    """Register a TXTM volume (moving) onto a PXCT volume (fixed).

    The paper aligned the two tomograms by hand, then ran elastix (rigid, then
    B-spline, advanced Mattes mutual information; Müller et al., Methods,
    "Image registration").  Here the coarse alignment is automatic (rotation
    search over SO(3) with masked normalized cross-correlation of gradient
    magnitudes, then multi-start mutual information), the fixed image is
    smoothed to the moving image's resolution (estimated from the pair) so that
    the two see the same structures, and the B-spline stage (Mattes MI, one
    control-point cell per field of view by default) is kept only if it raises
    the mutual information *and* the correlation of edge strengths on voxels it
    was not fitted to (``options.holdout``); otherwise the rigid map is returned with a
    ``RegistrationWarning``.  Mutual-information optimization runs on one thread
    so that results are reproducible (see ``SitkRegistration.run`` in ``_stages.py``).

    Parameters
    ----------
    fixed : (z, y, x) ndarray
        PXCT volume (any real dtype; used as float32).
    moving : (z, y, x) ndarray
        TXTM volume.
    fixed_voxel_size, moving_voxel_size : float or (3,) floats
        Voxel sizes in meters, per-axis values in (z, y, x) order.
    fixed_origin, moving_origin : float or (3,) floats, optional
        Physical position (z, y, x, meters) of the center of voxel 0 (default 0).
    fixed_mask : (z, y, x) bool ndarray, optional
        True on the fixed voxels the similarity is measured on.
    initial : "auto", "center", SimpleITK.Transform or (fixed_points, moving_points)
        ``"auto"`` finds the coarse alignment itself (rotations up to ~10 degrees
        about each axis, shifts up to ~15 % of the field of view); ``"center"``
        matches the field-of-view centers; a rigid transform (fixed -> moving,
        ITK (x, y, z) convention) starts the rigid stage, any other transform is
        kept underneath; two (n, 3) arrays of corresponding (z, y, x) points in
        meters (n >= 3) give a least-squares rigid start.
    options : RegistrationOptions
        Stages, B-spline grid, moving resolution, the held-out acceptance rule of
        the B-spline stage and the backend (``"simpleitk"`` or ``"elastix"``).
    seed : int
        Seed of the metric's random sampling.
    threads : int, optional
        Threads for ITK filters, resampling and the FFTs (None = the package
        default).  Results are reproducible for a fixed ``seed`` and ``threads``.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    Registration
        ``transform`` maps fixed (x, y, z) physical points to moving ones.

    Raises
    ------
    ValueError, TypeError
        Non-3-D, non-finite or constant volumes, bad voxel sizes/origins, an empty
        mask, options that are not a ``RegistrationOptions``.
    """
    f = check_volume(fixed, "fixed")
    m = check_volume(moving, "moving")
    fsp = check_voxel_size(fixed_voxel_size, "fixed_voxel_size")
    msp = check_voxel_size(moving_voxel_size, "moving_voxel_size")
    fo = check_origin(fixed_origin, "fixed_origin")
    mo = check_origin(moving_origin, "moving_origin")
    mask = check_mask(fixed_mask, f.shape, "fixed_mask")
    if not isinstance(options, RegistrationOptions):
        raise TypeError(f"options must be a tomofuse.register.RegistrationOptions, got {type(options).__name__}")
    seed = check.seed(seed)
    threads = check.threads(threads)
    check.callback(callback)
    st, bspline_grid, moving_resolution = options.stages, options.bspline_grid, options.moving_resolution
    # Peak memory: SimpleITK holds both volumes in float64 plus smoothed, gradient and resampled
    # copies at full resolution (about 12 per voxel of the larger grid).
    check_memory(8.0 * 12 * max(f.size, m.size) + 8.0 * (f.size + m.size), stage="tomofuse.register.register",
                 detail=f"fixed {f.shape}, moving {m.shape} voxels",
                 remedy="register a sub-volume (crop both volumes to the overlap) or downsampled volumes, then "
                        "apply the transform to the full volumes (Registration.resample)")
    if not (isinstance(initial, str) and initial == "auto"):
        initial_transform(initial, np.zeros(3), np.zeros(3))  # validate early
    if options.backend == "elastix":
        from ._elastix import register_elastix

        return register_elastix(f, m, fixed_voxel_size=fsp, moving_voxel_size=msp, initial=initial, stages=st,
                                bspline_grid=bspline_grid, fixed_mask=mask, fixed_origin=fo, moving_origin=mo,
                                seed=seed, threads=threads, callback=callback, moving_resolution=moving_resolution)
    return SitkRegistration(f, m, fsp, msp, fo, mo, mask, st, initial, bspline_grid, moving_resolution,
                            seed, threads, callback, options.holdout).run()

