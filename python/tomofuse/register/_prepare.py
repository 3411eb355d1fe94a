"""Preparation of a registration: intensity scaling and the rigid start from the ``initial`` argument."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

__all__ = ["initial_transform", "landmark_rigid", "normalized", "rigid_from_matrix"]


def normalized(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Intensities clipped to the 0.1-99.9 percentiles and scaled to [0, 1]."""
    vals = a[mask] if mask is not None else a
    sample = vals.ravel()[:: max(1, vals.size // 2_000_000)]
    lo, hi = np.percentile(sample, [0.1, 99.9])
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def rigid_from_matrix(matrix_xyz: np.ndarray, translation_xyz, center_xyz) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in center_xyz))
    t.SetMatrix(tuple(float(v) for v in np.asarray(matrix_xyz).ravel()))
    t.SetTranslation(tuple(float(v) for v in translation_xyz))
    return t


def landmark_rigid(fixed_pts, moving_pts, center_xyz) -> sitk.Euler3DTransform:
    """Least-squares rigid map (Kabsch, no scaling) of fixed onto moving landmarks (z, y, x meters)."""
    a = np.asarray(fixed_pts, dtype=np.float64)
    b = np.asarray(moving_pts, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or a.shape != b.shape:
        raise ValueError(f"initial landmarks must be two (n, 3) arrays of equal shape, got {a.shape} and {b.shape}")
    if len(a) < 3:
        raise ValueError(f"initial landmarks: at least 3 pairs are needed, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("initial landmarks contain non-finite values")
    a, b = a[:, ::-1], b[:, ::-1]  # to (x, y, z)
    ca, cb = a.mean(0), b.mean(0)
    h = (a - ca).T @ (b - cb)
    sv = np.linalg.svd(a - ca, compute_uv=False)
    if sv[1] < 1e-6 * max(sv[0], 1e-30):
        raise ValueError("initial landmarks are collinear; a rigid transform is not determined")
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    c = np.asarray(center_xyz)
    # x -> r (x - c) + c + t with  r ca + (cb - r ca) = cb
    t = cb - r @ ca - c + r @ c
    return rigid_from_matrix(r, t, c)


def initial_transform(initial, center_xyz, moving_center_xyz):
    """(rigid Euler3D start, fixed extra transform or None) from the ``initial`` argument."""
    if isinstance(initial, str):
        if initial == "center":
            return rigid_from_matrix(np.eye(3), moving_center_xyz - center_xyz, center_xyz), None
        raise ValueError(f"initial must be 'auto', 'center', a SimpleITK transform or landmark pairs, got {initial!r}")
    if isinstance(initial, sitk.Transform):
        if initial.GetDimension() != 3:
            raise ValueError(f"initial transform must be 3-D, got {initial.GetDimension()}-D")
        t = initial.Downcast() if hasattr(initial, "Downcast") else initial
        if hasattr(t, "GetMatrix") and hasattr(t, "GetTranslation") and hasattr(t, "GetCenter"):
            m = np.asarray(t.GetMatrix(), dtype=np.float64).reshape(3, 3)
            if np.allclose(m.T @ m, np.eye(3), atol=1e-6) and np.linalg.det(m) > 0:
                # the same map, re-centered on the fixed field of view
                c0 = np.asarray(t.GetCenter())
                t0 = np.asarray(t.GetTranslation())
                c = np.asarray(center_xyz)
                new_t = m @ (c - c0) + c0 + t0 - c
                return rigid_from_matrix(m, new_t, c), None
        # any other transform stays fixed underneath the optimized stages
        return rigid_from_matrix(np.eye(3), np.zeros(3), center_xyz), sitk.Transform(initial)
    if isinstance(initial, (tuple, list)) and len(initial) == 2:
        return landmark_rigid(initial[0], initial[1], center_xyz), None
    raise TypeError(
        f"initial must be 'auto', 'center', a SimpleITK transform or a (fixed_points, moving_points) pair, "
        f"got {type(initial).__name__}"
    )

