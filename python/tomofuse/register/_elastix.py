"""``backend="elastix"``: the paper's tool (elastix via the optional ``itk-elastix``) behind the same interface.

The coarse alignment is tomofuse's own (``initial="auto"``, elastix has none); then
elastix runs the paper's recipe: an Euler rigid stage and a B-spline stage, both with
Advanced Mattes mutual information, multi-resolution.  The result is returned as a
dense displacement-field transform on the fixed grid (computed by transformix), so it
maps fixed to moving points exactly as elastix does, whatever its internal chaining.
"""

from __future__ import annotations

import logging
import tempfile
import time

import numpy as np
import SimpleITK as sitk

from .._progress import Progress
from ._convert import UNIT, scale_transform, zyx_to_xyz
from ._result import Registration
from ._stages import MIN_GRID_PER_RESOLUTION, SitkRegistration

__all__ = ["register_elastix", "available"]

logger = logging.getLogger(__name__)


def available() -> bool:
    """Whether ``itk-elastix`` can be imported."""
    try:
        import itk  # noqa: F401

        return hasattr(itk, "ElastixRegistrationMethod")
    except ImportError:
        return False


def _itk_image(array: np.ndarray, spacing_zyx, origin_zyx):
    import itk

    img = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
    img.SetSpacing(tuple(float(v) for v in spacing_zyx[::-1]))
    img.SetOrigin(tuple(float(v) for v in origin_zyx[::-1]))
    return img


def register_elastix(f, m, *, fixed_voxel_size, moving_voxel_size, initial, stages, bspline_grid, fixed_mask,
                     fixed_origin, moving_origin, seed, threads, callback, moving_resolution):
    """See ``register``; arguments already validated (voxel sizes and origins (z, y, x) meters)."""
    try:
        import itk
    except ImportError:
        raise ImportError("backend='elastix' needs the optional package itk-elastix (pip install itk-elastix)") from None
    if not hasattr(itk, "ElastixRegistrationMethod"):
        raise ImportError("backend='elastix' needs itk-elastix; the installed itk has no elastix module")
    progress = Progress(callback, logger)
    # tomofuse's own initial alignment and resolution estimate (rigid stage of the SimpleITK path)
    pre = SitkRegistration(f, m, fixed_voxel_size, moving_voxel_size, fixed_origin, moving_origin, fixed_mask,
                            ("rigid",) if "rigid" in stages else ("bspline",), initial, bspline_grid, moving_resolution,
                            seed, threads, None)
    pre.run_initial_only()
    init_um = pre.stage_transforms["initial"]
    res = pre.moving_resolution
    grid = bspline_grid if bspline_grid is not None else pre.default_grid(res)
    grid = max(grid, MIN_GRID_PER_RESOLUTION * res)

    fimg = _itk_image(pre.f_arr, fixed_voxel_size / UNIT, fixed_origin / UNIT)
    mimg = _itk_image(pre.m_arr, moving_voxel_size / UNIT, moving_origin / UNIT)
    po = itk.ParameterObject.New()
    common = {
        "Metric": ["AdvancedMattesMutualInformation"],
        "NumberOfHistogramBins": ["32"],
        "RandomSeed": [str(int(seed) + 1)],
        "AutomaticTransformInitialization": ["false"],
        "WriteResultImage": ["false"],
        "ResultImageFormat": ["nii"],
    }
    if "rigid" in stages:
        pm = po.GetDefaultParameterMap("rigid", 3)
        for k, v in common.items():
            pm[k] = v
        pm["AutomaticScalesEstimation"] = ["true"]
        po.AddParameterMap(pm)
    if "bspline" in stages:
        pm = po.GetDefaultParameterMap("bspline", 3, float(grid / UNIT))
        for k, v in common.items():
            pm[k] = v
        pm["FinalGridSpacingInPhysicalUnits"] = [str(float(grid / UNIT))]
        po.AddParameterMap(pm)

    # external initial transform: tomofuse's Euler result, as an ITK (itk-python) transform
    ext = itk.Euler3DTransform[itk.D].New()
    ext.SetCenter([float(v) for v in init_um.GetCenter()])
    ext.SetRotation(*[float(v) for v in (init_um.GetAngleX(), init_um.GetAngleY(), init_um.GetAngleZ())])
    ext.SetTranslation([float(v) for v in init_um.GetTranslation()])

    E = itk.ElastixRegistrationMethod[type(fimg), type(mimg)].New(fixed_image=fimg, moving_image=mimg)
    E.SetParameterObject(po)
    E.SetExternalInitialTransform(ext)
    E.SetLogToConsole(False)
    if threads == 1:
        # itk-elastix 0.25 (ITK 5.4.7) crashes in the B-spline stage after SetNumberOfThreads(n > 1);
        # more threads = ITK's default
        E.SetNumberOfThreads(1)
    if fixed_mask is not None:
        mk = itk.image_from_array(fixed_mask.astype(np.uint8))
        mk.CopyInformation(fimg)
        E.SetFixedMask(mk)
    progress.stage(0.3, 0.9, "elastix")
    t0, c0 = time.perf_counter(), time.process_time()
    E.Update()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tpo = E.GetTransformParameterObject()

    progress.stage(0.9, 1.0, "transformix deformation field")
    T = itk.TransformixFilter[type(fimg)].New(moving_image=fimg)
    T.SetTransformParameterObject(tpo)
    T.SetComputeDeformationField(True)
    T.SetLogToConsole(False)
    # transformix writes deformationField.nii into its output directory (default: the cwd)
    with tempfile.TemporaryDirectory(prefix="tomofuse-transformix-") as scratch:
        T.SetOutputDirectory(scratch)
        T.Update()
        field = T.GetOutputDeformationField()
        arr = itk.array_from_image(field).astype(np.float64)  # (z, y, x, 3) displacement (x, y, z), micrometers
    disp = sitk.GetImageFromArray(arr * UNIT, isVector=True)
    disp.SetSpacing(zyx_to_xyz(fixed_voxel_size))
    disp.SetOrigin(zyx_to_xyz(fixed_origin))
    transform = sitk.DisplacementFieldTransform(sitk.Cast(disp, sitk.sitkVectorFloat64))
    metrics = dict(pre.metrics)
    metrics["elastix"] = {"wall_s": wall, "cpu_s": cpu, "grid_m": grid if "bspline" in stages else None,
                          "itk_elastix": getattr(itk, "__version__", "?")}
    progress.update(1.0, "done")
    return Registration(
        transform=transform,
        fixed_shape=tuple(f.shape),
        moving_shape=tuple(m.shape),
        fixed_voxel_size=fixed_voxel_size,
        moving_voxel_size=moving_voxel_size,
        fixed_origin=fixed_origin,
        moving_origin=moving_origin,
        stages=tuple(stages),
        metrics=metrics,
        parameters={"backend": "elastix", "bspline_grid_m": grid, "moving_resolution_m": res, "seed": seed,
                    "threads": threads},
        stage_transforms={"initial": scale_transform(init_um, UNIT), "elastix": transform},
    )
