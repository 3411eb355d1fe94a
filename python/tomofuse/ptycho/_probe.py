"""A focused X-ray probe: a circular (zone-plate-like) pupil, brought to focus and propagated to the sample."""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np

from .. import _validate as check
from ..materials import wavelength

__all__ = ["focused_probe"]

logger = logging.getLogger(__name__)


def focused_probe(n: int, *, object_pixel_size: float, energy_kev: float, diameter: Optional[float] = None,
                  numerical_aperture: Optional[float] = None, central_stop: float = 0.0) -> np.ndarray:
    """Complex illumination of a defocused circular-aperture focus (e.g. a Fresnel zone plate), on the object grid.

    Physics: a lens of numerical aperture ``NA`` fills a disc ``|u| <= NA /
    lambda`` of spatial frequencies (optionally with a central stop, as zone
    plates have), uniformly and in phase; at the focus that is an Airy spot
    (first dark ring at ``0.61 lambda / NA``).  The sample sits ``defocus =
    diameter / (2 NA)`` downstream of the focus, reached by the paraxial
    (Fresnel) transfer function ``exp(-i pi lambda defocus |u|^2)``, so the
    beam on the sample is a disc of geometric diameter ``diameter`` with
    Fresnel fringes and a quadratic phase, as defocused probes in
    ptychography are.  Computed with NumPy FFTs in double precision.

    Parameters
    ----------
    n : int
        Probe array size (pixels), >= 8; equals the diffraction pattern size.
    object_pixel_size : float
        Object pixel size, meters (``tomofuse.ptycho.object_pixel_size``).
    energy_kev : float
        Photon energy, keV.
    diameter : float, optional
        Geometric beam diameter at the sample, meters; 0 puts the sample in
        the focus.  Default ``n * object_pixel_size / 2``.  At most ``0.75 n
        object_pixel_size`` (the beam and its fringes must fit in the array).
    numerical_aperture : float, optional
        Half-angle of the focusing cone, radians.  Default ``lambda / (4
        object_pixel_size)``, half the detector's angular half-range (pupil radius
        ``n / 4`` frequency pixels); must be below ``lambda / (2
        object_pixel_size)``, the detector's edge.
    central_stop : float
        Radius of the central stop as a fraction of the pupil radius, in
        [0, 1) (0 = none).

    Returns
    -------
    (n, n) ndarray of complex64
        The probe, centered at index ``n // 2``, normalized so that
        ``sum |P|^2 = 1``.
    """
    n = check.integer(n, "n", minimum=8, unit="probe pixels")
    dx = check.positive_length(object_pixel_size, "object_pixel_size")
    lam = wavelength(energy_kev)
    if numerical_aperture is None:
        na = lam / (4.0 * dx)
    else:
        na = check.number(numerical_aperture, "numerical_aperture", unit="radians", minimum=0.0,
                          exclusive_minimum=True)
    if na >= lam / (2.0 * dx):
        raise ValueError(f"numerical_aperture {na:.4g} reaches beyond the detector's edge "
                         f"lambda / (2 object_pixel_size) = "
                         f"{lam / (2 * dx):.4g}: the pattern would be cut")
    d = 0.5 * n * dx if diameter is None else check.number(diameter, "diameter", unit="meters", minimum=0.0)
    if d > 0.75 * n * dx:
        raise ValueError(f"diameter {d:.4g} m does not fit the probe array: at most 0.75 n object_pixel_size = "
                         f"{0.75 * n * dx:.4g} m")
    central_stop = check.number(central_stop, "central_stop (a fraction of the pupil radius)", minimum=0.0,
                                maximum=1.0, exclusive_maximum=True)
    defocus = d / (2.0 * na)
    u = np.fft.fftfreq(n, d=dx)  # cycles per meter
    u2 = u[:, None] ** 2 + u[None, :] ** 2
    u_max = na / lam
    pupil = (u2 <= u_max**2) & (u2 >= (float(central_stop) * u_max) ** 2)
    field = pupil * np.exp(-1j * math.pi * lam * defocus * u2)
    probe = np.fft.fftshift(np.fft.ifft2(field))  # zero position at index n // 2
    norm = math.sqrt(float(np.sum(np.abs(probe) ** 2)))
    if norm == 0.0:
        raise ValueError("the pupil holds no frequency sample: increase numerical_aperture")
    logger.debug("focused_probe n=%d NA=%.4g defocus=%.4g m diameter=%.4g m", n, na, defocus, d)
    return (probe / norm).astype(np.complex64)
