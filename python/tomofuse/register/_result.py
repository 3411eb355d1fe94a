"""The result of a registration (``Registration``) and its files (``save`` / ``load``).

Coordinates
-----------
Arrays are (z, y, x); voxel sizes and origins are per-axis (z, y, x) in meters, the
origin being the physical position of the center of voxel ``[0, 0, 0]``.  Points passed
to ``Registration.map_points`` are (n, 3) (z, y, x) meters.  ``Registration.transform`` is
a SimpleITK transform in ITK's own convention: it acts on (x, y, z) physical points
(meters) and maps a point of the *fixed* (PXCT) volume to the corresponding point of the
*moving* (TXTM) volume -- the direction a resampler needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io import atomic_path, file_sha256, jsonable, provenance
from .. import _validate as check
from ._convert import to_image, zyx_to_xyz

__all__ = ["Registration", "RegistrationWarning", "load"]

_FORMAT = "tomofuse.register/2"
#: Earlier formats ``load`` still reads (1: voxel sizes stored as ``spacing_zyx_m``).
_READABLE = {"tomofuse.register/1": "spacing_zyx_m", _FORMAT: "voxel_size_zyx_m"}


class RegistrationWarning(UserWarning):
    """A stage's result was not accepted (the previous stage's result is kept)."""



@dataclass(eq=False)
class Registration:
    """A fixed (PXCT) -> moving (TXTM) map and how it was obtained.

    Attributes
    ----------
    transform : SimpleITK.Transform
        Maps fixed physical points to moving physical points, in ITK's (x, y, z)
        physical convention (meters).  A ``CompositeTransform`` (rigid, then
        B-spline applied first) when the B-spline stage was accepted, else an
        ``Euler3DTransform``.
    fixed_shape, moving_shape : tuple of int
        (z, y, x) shapes of the two volumes.
    fixed_voxel_size, moving_voxel_size, fixed_origin, moving_origin : (3,) ndarray
        (z, y, x) meters.
    stages : tuple of str
        The stages whose result is in ``transform``.
    stage_transforms : dict of str to SimpleITK.Transform
        The result after ``"initial"``, ``"rigid"`` and ``"bspline"`` (also when
        the B-spline was rejected), same convention as ``transform``; not saved.
    metrics : dict
        Per stage: final Mattes metric (negative mutual information, lower is
        better), iterations, stop condition, wall and CPU seconds, and, for the
        B-spline stage, the held-out similarity of rigid and B-spline results and
        whether it was accepted.
    """

    transform: sitk.Transform
    fixed_shape: tuple
    moving_shape: tuple
    fixed_voxel_size: np.ndarray
    moving_voxel_size: np.ndarray
    fixed_origin: np.ndarray
    moving_origin: np.ndarray
    stages: tuple = ()
    metrics: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    stage_transforms: dict = field(default_factory=dict, repr=False)

    # -- mapping ----------------------------------------------------------------
    def map_points(self, points) -> np.ndarray:
        """Moving-volume positions of fixed-volume points.

        Parameters
        ----------
        points : (n, 3) or (3,) array_like
            Fixed physical points, (z, y, x) meters.

        Returns
        -------
        (n, 3) or (3,) ndarray of float64
            The corresponding moving physical points, (z, y, x) meters.
        """
        p = np.asarray(points, dtype=np.float64)
        single = p.ndim == 1
        p2 = p.reshape(-1, 3) if p.size else p.reshape(0, 3)
        if p2.shape[-1] != 3 or (not single and p.ndim != 2):
            raise ValueError(f"points must have shape (n, 3) or (3,) in (z, y, x) meters, got {p.shape}")
        if not np.isfinite(p2).all():
            raise ValueError("points contains non-finite values")
        t = self.transform
        out = np.array([t.TransformPoint(tuple(q[::-1])) for q in p2.tolist()], dtype=np.float64).reshape(-1, 3)
        out = out[:, ::-1]
        return out[0] if single else out

    def resample(self, moving, *, interpolator: str = "linear", default: float = 0.0, threads: int | None = None):
        """``moving`` resampled onto the fixed grid.

        Parameters
        ----------
        moving : (z, y, x) ndarray
            A volume on the moving grid (``moving_shape``): the TXTM intensities
            or labels derived from them.
        interpolator : {"linear", "nearest"}
            ``"nearest"`` for labels (keeps the dtype), ``"linear"`` for
            intensities (float32).
        default : float
            Value outside the moving field of view.
        threads : int, optional
            Threads for the resampler.

        Returns
        -------
        (z, y, x) ndarray of ``fixed_shape``
        """
        if interpolator not in ("linear", "nearest"):
            raise ValueError(f"interpolator must be 'linear' or 'nearest', got {interpolator!r}")
        a = np.asarray(moving)
        if a.shape != tuple(self.moving_shape):
            raise ValueError(f"moving must have the registered moving shape {tuple(self.moving_shape)}, got {a.shape}")
        threads = check.threads(threads)
        if interpolator == "linear":
            a = np.ascontiguousarray(a, dtype=np.float32)
            interp, out_type = sitk.sitkLinear, sitk.sitkFloat32
        else:
            if a.dtype == bool:
                a = a.astype(np.uint8)
            a = np.ascontiguousarray(a)
            interp, out_type = sitk.sitkNearestNeighbor, None
        img = to_image(a, self.moving_voxel_size, self.moving_origin)
        f = sitk.ResampleImageFilter()
        f.SetSize([int(s) for s in self.fixed_shape[::-1]])
        f.SetOutputSpacing(zyx_to_xyz(self.fixed_voxel_size))
        f.SetOutputOrigin(zyx_to_xyz(self.fixed_origin))
        f.SetTransform(self.transform)
        f.SetInterpolator(interp)
        f.SetDefaultPixelValue(float(default))
        if out_type is not None:
            f.SetOutputPixelType(out_type)
        if threads:
            f.SetNumberOfThreads(threads)
        out = sitk.GetArrayFromImage(f.Execute(img))
        return out.astype(a.dtype, copy=False) if interpolator == "nearest" else out

    # -- files --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``path`` (JSON metadata) and ``<path without .json>.h5`` (ITK HDF5 transform).

        Both are written atomically; the JSON carries the transform file's name
        and SHA-256, the grids, stages, metrics and provenance.
        """
        p = Path(path)
        if p.suffix.lower() != ".json":
            raise ValueError(f"path must end in .json (metadata; the transform goes next to it), got {str(path)!r}")
        tfm = p.with_suffix(".h5")
        with atomic_path(tfm, argument="path") as tmp:
            # ITK picks the format from the extension: write under *.h5, then move.
            tmp_tfm = str(tmp) + ".h5"
            try:
                sitk.WriteTransform(self.transform, tmp_tfm)
                os.replace(tmp_tfm, tmp)
            finally:
                if os.path.exists(tmp_tfm):
                    os.remove(tmp_tfm)
        meta = {
            "format": _FORMAT,
            "transform_file": tfm.name,
            "transform_sha256": file_sha256(tfm),
            "convention": "ITK physical (x, y, z) meters; maps fixed (PXCT) points to moving (TXTM) points",
            "fixed": {"shape": list(self.fixed_shape), "voxel_size_zyx_m": self.fixed_voxel_size,
                      "origin_zyx_m": self.fixed_origin},
            "moving": {"shape": list(self.moving_shape), "voxel_size_zyx_m": self.moving_voxel_size,
                       "origin_zyx_m": self.moving_origin},
            "stages": list(self.stages),
            "metrics": self.metrics,
            "parameters": self.parameters,
            "provenance": provenance(parameters=self.parameters, program="tomofuse.register.register"),
        }
        with atomic_path(p, argument="path") as tmp:
            with open(tmp, "w") as fh:
                json.dump(jsonable(meta), fh, indent=1, sort_keys=True)


def load(path: str | os.PathLike) -> Registration:
    """Read a ``Registration`` written by ``Registration.save``.

    Parameters
    ----------
    path : path-like
        The ``.json`` metadata file (the ``.h5`` transform is found next to it).

    Returns
    -------
    Registration
    """
    p = Path(path)
    with open(p) as fh:
        try:
            meta = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"path: {str(path)!r} is not a tomofuse registration file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") not in _READABLE:
        raise ValueError(f"path: {str(path)!r} is not a tomofuse registration file")
    tfm = p.with_name(meta["transform_file"])
    if file_sha256(tfm) != meta["transform_sha256"]:
        raise ValueError(f"{str(tfm)!r} does not match the checksum recorded in {str(path)!r}")
    t = sitk.ReadTransform(str(tfm))
    if isinstance(t, sitk.CompositeTransform) and t.GetNumberOfTransforms() == 1:
        t = t.GetNthTransform(0)
    t = t.Downcast() if hasattr(t, "Downcast") else t
    f, m = meta["fixed"], meta["moving"]
    size_key = _READABLE[meta["format"]]
    return Registration(
        transform=t,
        fixed_shape=tuple(f["shape"]),
        moving_shape=tuple(m["shape"]),
        fixed_voxel_size=np.asarray(f[size_key], float),
        moving_voxel_size=np.asarray(m[size_key], float),
        fixed_origin=np.asarray(f["origin_zyx_m"], float),
        moving_origin=np.asarray(m["origin_zyx_m"], float),
        stages=tuple(meta["stages"]),
        metrics=meta["metrics"],
        parameters=meta["parameters"],
    )

