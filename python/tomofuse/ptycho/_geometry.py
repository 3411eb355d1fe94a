"""Far-field ptychography geometry: object pixel size and Fermat-spiral scan trajectories."""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _validate as check
from ..materials import wavelength

__all__ = ["fermat_spiral", "object_pixel_size"]

#: Golden angle, radians: pi (3 - sqrt 5).
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def object_pixel_size(energy_kev: float, distance: float, detector_pixel_size: float, n: int) -> float:
    """Object-plane pixel size of far-field ptychography, ``lambda z / (n p)``, meters.

    An ``n``-pixel detector of pitch ``p`` at distance ``z`` samples the far
    field up to the angle ``n p / (2 z)``, so the reconstructed exit wave has
    pixels of ``lambda z / (n p)``.  The paper's 6.2 keV, 7.362 m, 400 pixels
    of 172 um give 21.4 nm.

    Parameters
    ----------
    energy_kev : float
        Photon energy, keV.
    distance : float
        Sample-detector distance, meters.
    detector_pixel_size : float
        Detector pixel pitch, meters.
    n : int
        Pixels across the (square) diffraction pattern used for reconstruction.

    Returns
    -------
    float
        Object pixel size, meters.
    """
    lam = wavelength(energy_kev)
    z = check.positive_length(distance, "distance")
    p = check.positive_length(detector_pixel_size, "detector_pixel_size")
    n = check.integer(n, "n", minimum=1, unit="pattern pixels")
    return lam * z / (n * p)


@functools.lru_cache(maxsize=1)
def _unit_nn_distance() -> float:
    """Mean nearest-neighbor distance of the Fermat spiral ``r = sqrt(k)``, away from its center.

    The spiral's point density is uniform (``1 / pi`` per unit area for
    ``c = 1``), so its nearest-neighbor distance is the same everywhere up to
    small fluctuations; it is measured once on 4000 points, ignoring the first
    100 (the center) and the outer rim (no neighbors outside).
    """
    from scipy.spatial import cKDTree

    k = np.arange(4000)
    r = np.sqrt(k)
    t = k * GOLDEN_ANGLE
    pts = np.column_stack([r * np.sin(t), r * np.cos(t)])
    d, _ = cKDTree(pts).query(pts, k=2)
    inner = (k >= 100) & (r < r[-1] - 3.0)
    return float(np.mean(d[inner, 1]))


def fermat_spiral(step: float, extent) -> np.ndarray:
    """Scan positions on a Fermat spiral filling a rectangle, meters.

    Point ``k`` sits at radius ``c sqrt(k)`` and angle ``k * golden angle``
    (Huang et al., Opt. Express 22, 12634 (2014)); that gives a uniform point
    density with no preferred direction (no raster grid artifacts).  ``c`` is
    chosen so that the mean nearest-neighbor distance equals ``step``
    (``c = step / 1.70``, measured on the unit spiral).  The spiral is
    centered on the rectangle's center and every point inside the rectangle is
    kept.

    Parameters
    ----------
    step : float
        Mean nearest-neighbor distance, meters (paper: 1.3 um).
    extent : (2,) sequence of float
        ``(height, width)`` of the scanned field, meters (paper: 20 x 48 um).

    Returns
    -------
    (K, 2) ndarray of float64
        ``(y, x)`` positions, meters, relative to the field's center, in
        spiral order (point 0 at the center).
    """
    s = check.positive_length(step, "step")
    try:
        ext = np.asarray(extent, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"extent must be (height, width) in meters, got {extent!r}") from None
    if ext.shape != (2,):
        raise ValueError(f"extent must be (height, width) in meters, got shape {ext.shape}")
    if not np.all(np.isfinite(ext)) or np.any(ext <= 0):
        raise ValueError(f"extent must be two positive lengths in meters, got {tuple(ext)}")
    h, w = (float(v) for v in ext)
    c = s / _unit_nn_distance()
    r_max = 0.5 * math.hypot(h, w)
    k_max = int(math.ceil((r_max / c) ** 2)) + 1
    if k_max > 50_000_000:
        raise ValueError(f"step {s:g} m is too small for extent {(h, w)}: more than 5e7 spiral points")
    k = np.arange(k_max, dtype=np.float64)
    r = c * np.sqrt(k)
    t = k * GOLDEN_ANGLE
    y = r * np.sin(t)
    x = r * np.cos(t)
    inside = (np.abs(y) <= 0.5 * h) & (np.abs(x) <= 0.5 * w)
    return np.ascontiguousarray(np.column_stack([y[inside], x[inside]]))
