"""Tomography: parallel-beam projection, back-projection and filtered back-projection.

``project`` and ``backproject`` are an exact adjoint pair of exact-length
(Siddon) line integrals computed by the core's voxel walker.
"""

from ._fbp import FILTERS, fbp, ramp_filter
from ._projector import backproject, project

__all__ = ["FILTERS", "backproject", "fbp", "project", "ramp_filter"]
