"""Tomography: parallel-beam projection and back-projection (more of the stage to come).

``project`` and ``backproject`` are an exact adjoint pair of exact-length
(Siddon) line integrals computed by the core's voxel walker.
"""

from ._projector import backproject, project

__all__ = ["backproject", "project"]
