"""Tomography: projection, back-projection, FBP (also of wrapped phase), alignment,
center, rings, FSC.

``project`` and ``backproject`` are an exact adjoint pair of exact-length
(Siddon) line integrals computed by the core's voxel walker.
"""

from ._align import AlignmentOptions, align_projections, shift_projections
from ._center import CENTER_METHODS, CENTER_METRICS, find_center
from ._fbp import FILTERS, METHODS, fbp, ramp_filter, reconstruct_halves
from ._fsc import FSCResult, fsc, fsc_threshold
from ._phase import remove_phase_ramp
from ._phase_fbp import derivative_filter, fbp_phase_derivative, phase_derivative
from ._projector import backproject, project
from ._rings import RING_METHODS, remove_rings
from ._txtm import minus_log, normalize, paganin

__all__ = ["AlignmentOptions", "CENTER_METHODS", "CENTER_METRICS", "FILTERS", "METHODS", "RING_METHODS", "FSCResult",
           "align_projections", "backproject", "derivative_filter", "fbp", "fbp_phase_derivative", "find_center",
           "fsc", "fsc_threshold", "minus_log", "normalize", "paganin", "phase_derivative", "project",
           "ramp_filter", "reconstruct_halves", "remove_phase_ramp", "remove_rings", "shift_projections"]
