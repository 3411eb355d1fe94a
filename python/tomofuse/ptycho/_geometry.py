"""Far-field ptychography geometry: object pixel size and Fermat-spiral scan trajectories."""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from .. import materials
from .._validate import positive_length

__all__ = ["fermat_spiral", "pixel_size", "wavelength"]

#: Golden angle, radians: pi (3 - sqrt 5).
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def wavelength(energy_kev: float) -> float:
    """Photon wavelength ``h c / E`` in metres for a photon energy in keV (6.2 keV -> 0.19998 nm)."""
    return materials.wavelength(energy_kev)


def pixel_size(energy_kev: float, distance: float, detector_pixel: float, n: int) -> float:
    """Object-plane pixel size of far-field ptychography, ``lambda z / (n p)``, metres.

    An ``n``-pixel detector of pitch ``p`` at distance ``z`` samples the far
    field up to the angle ``n p / (2 z)``, so the reconstructed exit wave has
    pixels of ``lambda z / (n p)``.  The paper's 6.2 keV, 7.362 m, 400 pixels
    of 172 um give 21.4 nm.

    Parameters
    ----------
    energy_kev : float
        Photon energy, keV.
    distance : float
        Sample-detector distance, metres.
    detector_pixel : float
        Detector pixel pitch, metres.
    n : int
        Pixels across the (square) diffraction pattern used for reconstruction.

    Returns
    -------
    float
        Object pixel size, metres.
    """
    lam = wavelength(energy_kev)
    z = positive_length(distance, "distance")
    p = positive_length(detector_pixel, "detector_pixel")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive int (pattern pixels), got {n!r}")
    return lam * z / (int(n) * p)


@functools.lru_cache(maxsize=1)
def _unit_nn_distance() -> float:
    """Mean nearest-neighbour distance of the Fermat spiral ``r = sqrt(k)``, away from its centre.

    The spiral's point density is uniform (``1 / pi`` per unit area for
    ``c = 1``), so its nearest-neighbour distance is the same everywhere up to
    small fluctuations; it is measured once on 4000 points, ignoring the first
    100 (the centre) and the outer rim (no neighbours outside).
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
    """Scan positions on a Fermat spiral filling a rectangle, metres.

    Point ``k`` sits at radius ``c sqrt(k)`` and angle ``k * golden angle``
    (Huang et al., Opt. Express 22, 12634 (2014)); that gives a uniform point
    density with no preferred direction (no raster grid artefacts).  ``c`` is
    chosen so that the mean nearest-neighbour distance equals ``step``
    (``c = step / 1.70``, measured on the unit spiral).  The spiral is
    centred on the rectangle's centre and every point inside the rectangle is
    kept.

    Parameters
    ----------
    step : float
        Mean nearest-neighbour distance, metres (paper: 1.3 um).
    extent : (2,) sequence of float
        ``(height, width)`` of the scanned field, metres (paper: 20 x 48 um).

    Returns
    -------
    (K, 2) ndarray of float64
        ``(y, x)`` positions, metres, relative to the field's centre, in
        spiral order (point 0 at the centre).
    """
    s = positive_length(step, "step")
    try:
        ext = np.asarray(extent, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"extent must be (height, width) in metres, got {extent!r}") from None
    if ext.shape != (2,):
        raise ValueError(f"extent must be (height, width) in metres, got shape {ext.shape}")
    if not np.all(np.isfinite(ext)) or np.any(ext <= 0):
        raise ValueError(f"extent must be two positive lengths in metres, got {tuple(ext)}")
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
