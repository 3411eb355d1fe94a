"""Ptychography: geometry of far-field scans (object pixel size, Fermat-spiral trajectories), a focused probe and
the object-error metric of reconstructions.

The reconstruction engines (difference map, maximum likelihood) are not here yet.
"""

from ._geometry import fermat_spiral, pixel_size, wavelength
from ._metrics import object_error
from ._probe import focused_probe

__all__ = ["fermat_spiral", "focused_probe", "object_error", "pixel_size", "wavelength"]
