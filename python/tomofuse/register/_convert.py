"""Argument checks and the (z, y, x) array <-> ITK (x, y, z) image boundary."""

from __future__ import annotations

import numbers

import numpy as np
import SimpleITK as sitk

__all__ = [
    "check_volume",
    "check_voxel_size",
    "check_origin",
    "check_mask",
    "to_image",
    "zyx_to_xyz",
    "itk_seed",
]


def check_volume(volume, name: str) -> np.ndarray:
    """``volume`` as a C-contiguous float32 3-D array of finite, non-constant values."""
    if isinstance(volume, sitk.Image):
        raise TypeError(f"{name} must be a NumPy (z, y, x) array, got a SimpleITK image")
    try:
        a = np.asarray(volume)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be an array, got {type(volume).__name__}") from exc
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise TypeError(f"{name} must be real, got dtype {a.dtype}")
    if a.ndim != 3:
        raise ValueError(f"{name} must be a 3-D (z, y, x) volume, got {a.ndim} dimensions (shape {a.shape})")
    if min(a.shape) < 8:
        raise ValueError(f"{name} must be at least 8 voxels along every axis, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf)")
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        raise ValueError(f"{name} is constant (all voxels {lo!r}); nothing to register")
    return a


def _per_axis(value, name: str, what: str) -> np.ndarray:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or 3 numbers in meters, got {value!r}")
    if isinstance(value, numbers.Real):
        return np.full(3, float(value))
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or 3 numbers in meters, got {value!r}") from None
    if v.shape != (3,):
        raise ValueError(f"{name} must be a scalar or 3 values (z, y, x) {what}, got shape {v.shape}")
    return v


def check_voxel_size(value, name: str) -> np.ndarray:
    """Per-axis (z, y, x) voxel size in meters (positive, finite, < 1 mm)."""
    if value is None:
        raise TypeError(f"{name} is required (voxel size in meters)")
    v = _per_axis(value, name, "voxel sizes")
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError(f"{name} must be positive and finite (meters), got {value!r}")
    if (v > 1e-3).any():
        raise ValueError(f"{name} is in meters; {value!r} m is not a nanotomography voxel")
    return v


def check_origin(value, name: str) -> np.ndarray:
    """Per-axis (z, y, x) physical position of voxel 0's center in meters (default 0)."""
    if value is None:
        return np.zeros(3)
    v = _per_axis(value, name, "coordinates")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must be finite (meters), got {value!r}")
    return v


def check_mask(mask, shape, name: str) -> np.ndarray | None:
    """Boolean mask of ``shape`` with at least one voxel set (or None)."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"{name} must have the fixed volume's shape {tuple(shape)}, got {m.shape}")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number):
            raise TypeError(f"{name} must be boolean (or 0/1), got dtype {m.dtype}")
        m = m != 0
    n = int(np.count_nonzero(m))
    if n == 0:
        raise ValueError(f"{name} is empty (no voxel set)")
    if n < 512:
        raise ValueError(f"{name} selects only {n} voxels; at least 512 are needed for mutual information")
    return np.ascontiguousarray(m)


def itk_seed(seed: int, salt: int = 0) -> int:
    """A non-zero 31-bit ITK sampling seed (ITK treats 0 as "use the wall clock")."""
    return int((seed * 1_000_003 + salt * 7919) % 2_147_483_629) + 1


def zyx_to_xyz(v) -> tuple[float, float, float]:
    v = np.asarray(v, dtype=np.float64)
    return tuple(float(x) for x in v[::-1])


def to_image(array: np.ndarray, spacing_zyx: np.ndarray, origin_zyx: np.ndarray) -> sitk.Image:
    """An ITK image of a (z, y, x) array with identity direction (physical axes x, y, z)."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(zyx_to_xyz(spacing_zyx))
    img.SetOrigin(zyx_to_xyz(origin_zyx))
    return img


def fov_center(image: sitk.Image) -> np.ndarray:
    """Physical (x, y, z) center of an image's voxel-center box."""
    size = np.array(image.GetSize(), dtype=np.float64)
    return np.asarray(image.GetOrigin()) + (size - 1) / 2 * np.asarray(image.GetSpacing())


def fov_extent(image: sitk.Image) -> np.ndarray:
    return np.array(image.GetSize(), dtype=np.float64) * np.asarray(image.GetSpacing())


#: Internal length unit of the ITK images (micrometers): keeps transform parameters O(1)
#: for optimizers without parameter scales (L-BFGS-B).
UNIT = 1e-6


def scale_transform(t: sitk.Transform, s: float) -> sitk.Transform:
    """The same map with every length multiplied by ``s`` (Euler 3-D, B-spline, composite, translation)."""
    t = t.Downcast() if hasattr(t, "Downcast") else t
    if isinstance(t, sitk.CompositeTransform):
        return sitk.CompositeTransform([scale_transform(t.GetNthTransform(i), s) for i in range(t.GetNumberOfTransforms())])
    if isinstance(t, sitk.BSplineTransform):
        out = sitk.BSplineTransform(3, t.GetOrder())
        out.SetTransformDomainOrigin(tuple(s * v for v in t.GetTransformDomainOrigin()))
        out.SetTransformDomainPhysicalDimensions(tuple(s * v for v in t.GetTransformDomainPhysicalDimensions()))
        out.SetTransformDomainMeshSize(t.GetTransformDomainMeshSize())
        out.SetTransformDomainDirection(t.GetTransformDomainDirection())
        out.SetParameters(tuple(s * v for v in t.GetParameters()))
        return out
    if isinstance(t, sitk.Euler3DTransform):
        out = sitk.Euler3DTransform()
        out.SetComputeZYX(t.GetComputeZYX())
        out.SetCenter(tuple(s * v for v in t.GetCenter()))
        out.SetRotation(t.GetAngleX(), t.GetAngleY(), t.GetAngleZ())
        out.SetTranslation(tuple(s * v for v in t.GetTranslation()))
        return out
    if isinstance(t, sitk.TranslationTransform):
        return sitk.TranslationTransform(3, tuple(s * v for v in t.GetOffset()))
    if hasattr(t, "GetMatrix") and hasattr(t, "GetCenter") and hasattr(t, "GetTranslation"):
        out = sitk.AffineTransform(3)
        out.SetMatrix(t.GetMatrix())
        out.SetCenter(tuple(s * v for v in t.GetCenter()))
        out.SetTranslation(tuple(s * v for v in t.GetTranslation()))
        return out
    if isinstance(t, sitk.DisplacementFieldTransform):
        field = t.GetDisplacementField()
        arr = sitk.GetArrayFromImage(field) * s
        img = sitk.GetImageFromArray(arr, isVector=True)
        img.SetSpacing(tuple(s * v for v in field.GetSpacing()))
        img.SetOrigin(tuple(s * v for v in field.GetOrigin()))
        img.SetDirection(field.GetDirection())
        return sitk.DisplacementFieldTransform(sitk.Cast(img, sitk.sitkVectorFloat64))
    if type(t) is sitk.Transform and t.GetName() == "IdentityTransform":
        return sitk.Transform(t)
    raise TypeError(f"cannot change the length unit of a {t.GetName()}")
