"""Ptychography: geometry of far-field scans (object pixel size, Fermat-spiral trajectories), a focused probe and
the object-error metric of reconstructions.

Reconstruction (:func:`reconstruct`) runs the difference-map and maximum-likelihood engines of the
compiled core, with mixed-state probes, position refinement and resumable checkpoints.
"""

from ._geometry import fermat_spiral, pixel_size, wavelength
from ._metrics import object_error
from ._probe import focused_probe
from ._reconstruct import Reconstruction, default_object_shape, orthogonalize_modes, reconstruct

__all__ = ["Reconstruction", "default_object_shape", "fermat_spiral", "focused_probe", "object_error",
           "orthogonalize_modes", "pixel_size", "reconstruct", "wavelength"]
