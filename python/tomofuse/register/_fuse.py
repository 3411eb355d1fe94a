"""Fusion of the registered pair on the PXCT grid, and report images of it."""

from __future__ import annotations

import numpy as np

from .. import _validate as check
from ._convert import check_volume
from ._result import Registration

__all__ = ["fuse", "checkerboard", "overlay"]


def fuse(pxct, txtm, registration: Registration, *, outside: float = np.nan, threads: int | None = None) -> np.ndarray:
    """Two-channel volume on the PXCT grid: PXCT resolution, TXTM contrast.

    Channel 0 is the PXCT volume itself, channel 1 the TXTM volume resampled
    (trilinear) through ``registration`` onto the PXCT voxel centers (Müller et
    al., Fig. 1d: "the combined images contain the resolution of PXCT and the
    contrast of TXTM").

    Parameters
    ----------
    pxct : (z, y, x) ndarray
        The fixed volume of ``registration``.
    txtm : (z, y, x) ndarray
        The moving volume of ``registration``.
    registration : Registration
    outside : float
        Channel-1 value where the PXCT voxel maps outside the TXTM field of view
        (default NaN, so that no fake contrast enters a segmentation).
    threads : int, optional
        Threads for the resampler.

    Returns
    -------
    (2, z, y, x) ndarray of float32
    """
    if not isinstance(registration, Registration):
        raise TypeError(f"registration must be a Registration, got {type(registration).__name__}")
    p = check_volume(pxct, "pxct")
    t = np.asarray(txtm)
    if p.shape != tuple(registration.fixed_shape):
        raise ValueError(f"pxct must have the registered fixed shape {tuple(registration.fixed_shape)}, got {p.shape}")
    t = check_volume(t, "txtm")
    out = np.empty((2,) + p.shape, dtype=np.float32)
    out[0] = p
    out[1] = registration.resample(t, interpolator="linear", default=float(outside), threads=threads)
    return out


def _scaled(img: np.ndarray) -> np.ndarray:
    v = img[np.isfinite(img)]
    if v.size == 0:
        return np.zeros_like(img, dtype=np.float32)
    lo, hi = np.percentile(v, [1, 99])
    if not hi > lo:
        hi = lo + 1.0
    out = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


def _slice(fused: np.ndarray, axis: int, index: int | None) -> np.ndarray:
    f = np.asarray(fused)
    if f.ndim != 4 or f.shape[0] != 2:
        raise ValueError(f"fused must be a (2, z, y, x) volume from fuse(), got shape {f.shape}")
    check.integer(axis, "axis (0 = z, 1 = y, 2 = x)", minimum=0, maximum=2)
    n = f.shape[1 + axis]
    i = n // 2 if index is None else check.integer(index, "index", minimum=0, maximum=n - 1)
    return np.take(f, i, axis=1 + axis)


def checkerboard(fused, *, axis: int = 0, index: int | None = None, tiles: int = 8) -> np.ndarray:
    """A slice of the fused volume with the two channels in alternating tiles.

    Each channel is scaled to [0, 1] between its 1st and 99th percentile; NaN
    (outside the TXTM field of view) shows as 0.  Continuous edges across tile
    borders show a good registration.

    Parameters
    ----------
    fused : (2, z, y, x) ndarray
        Output of ``fuse``.
    axis : {0, 1, 2}
        Slicing axis (z, y or x).
    index : int, optional
        Slice index (default: the middle).
    tiles : int
        Tiles along each image axis.

    Returns
    -------
    (a, b) ndarray of float32
    """
    s = _slice(fused, axis, index)
    check.integer(tiles, "tiles", minimum=1)
    a, b = _scaled(s[0]), _scaled(s[1])
    ia = (np.arange(a.shape[0]) * tiles // a.shape[0])[:, None]
    ib = (np.arange(a.shape[1]) * tiles // a.shape[1])[None, :]
    return np.where((ia + ib) % 2 == 0, a, b).astype(np.float32)


def overlay(fused, *, axis: int = 0, index: int | None = None) -> np.ndarray:
    """A slice of the fused volume as RGB: PXCT in gray, TXTM in magenta.

    Returns
    -------
    (a, b, 3) ndarray of float32 in [0, 1]
        ``R = B = (pxct + txtm) / 2``, ``G = pxct``: gray where the channels agree,
        green where only PXCT is bright, magenta where only TXTM is.
    """
    s = _slice(fused, axis, index)
    a, b = _scaled(s[0]), _scaled(s[1])
    return np.stack([(a + b) / 2, a, (a + b) / 2], axis=-1).astype(np.float32)
