"""Tomography: parallel-beam projection, back-projection, filtered back-projection, FSC.

``project`` and ``backproject`` are an exact adjoint pair of exact-length
(Siddon) line integrals computed by the core's voxel walker.
"""

from ._align import align_projections, shift_projections
from ._fbp import FILTERS, fbp, ramp_filter, reconstruct_halves
from ._fsc import FSCResult, fsc, fsc_threshold
from ._phase import remove_phase_ramp
from ._projector import backproject, project
from ._txtm import minus_log, normalize, paganin

__all__ = ["FILTERS", "FSCResult", "align_projections", "backproject", "fbp", "fsc", "fsc_threshold", "minus_log", "normalize",
           "paganin", "project", "ramp_filter", "reconstruct_halves", "remove_phase_ramp",
           "shift_projections"]
