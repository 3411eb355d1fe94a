"""Ptychography: geometry of far-field scans (object pixel size, Fermat-spiral trajectories), a focused probe and
the quality metrics of reconstructions (the object error against a known truth, the half-scan Fourier ring
correlation without one).

Reconstruction (:func:`reconstruct`) runs the difference-map and maximum-likelihood engines of the
compiled core (options in :class:`DMOptions`, :class:`MLOptions`, :class:`PositionRefinement`,
:class:`HoldOut`), with mixed-state probes, position refinement and resumable checkpoints (:func:`defocus_search` and
:func:`refocus_probe`: its search of the initial probe's focus alone);
:func:`reconstruct_series` runs it over a tomographic series of scans (in-process or on a Dask cluster)
into one resumable output stack.
"""

from ._geometry import fermat_spiral, object_pixel_size
from ._metrics import fourier_ring_correlation, object_error
from ._options import DMOptions, HoldOut, MLOptions, PositionRefinement
from ._probe import focused_probe
from ._reconstruct import (Reconstruction, default_object_shape, defocus_search, orthogonalize_modes, reconstruct,
                           refocus_probe)
from ._series import reconstruct_series

__all__ = ["DMOptions", "HoldOut", "MLOptions", "PositionRefinement", "Reconstruction", "default_object_shape",
           "defocus_search", "fermat_spiral", "focused_probe", "fourier_ring_correlation", "object_error",
           "object_pixel_size", "orthogonalize_modes", "reconstruct", "reconstruct_series", "refocus_probe"]
