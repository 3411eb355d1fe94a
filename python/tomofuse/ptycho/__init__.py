"""Ptychography: geometry of far-field scans (object pixel size, Fermat-spiral trajectories) and a focused probe.

The reconstruction engines (difference map, maximum likelihood) are not here yet.
"""

from ._geometry import fermat_spiral, pixel_size, wavelength
from ._probe import focused_probe

__all__ = ["fermat_spiral", "focused_probe", "pixel_size", "wavelength"]
