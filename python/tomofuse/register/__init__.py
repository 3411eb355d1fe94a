"""Registration of the TXTM tomogram onto the PXCT tomogram, and their fusion.

``register`` finds the map from PXCT (fixed) to TXTM (moving) physical points
without a human in the loop: automatic coarse alignment (rotation search over
SO(3) with masked cross-correlation of edges, multi-start mutual information),
a rigid (Euler 3-D) stage and a B-spline stage with Mattes mutual information,
the B-spline kept only if it improves two unlike similarities (mutual information
and edge correlation) on held-out voxels.
``fuse`` resamples the TXTM volume onto the PXCT grid as a second channel
(Müller et al., Methods, "Image registration"; Fig. 1d).
"""

from ._fuse import checkerboard, fuse, overlay
from ._options import BACKENDS, STAGES, RegistrationOptions
from ._register import register
from ._result import Registration, RegistrationWarning, load

__all__ = [
    "BACKENDS",
    "STAGES",
    "Registration",
    "RegistrationOptions",
    "RegistrationWarning",
    "checkerboard",
    "fuse",
    "load",
    "overlay",
    "register",
]
