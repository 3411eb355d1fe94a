"""Synthetic battery electrodes with exact ground truth.

``electrode`` builds a graphite/SiOx composite electrode (the paper's
material) from an implicit geometry in meters, renders its phase labels and
computes per-particle surface truth on the exact surfaces.  It is the ground
truth every later stage is measured against; stage packages never import it.
"""

from ..materials import optical_constants
from ._composition import Composition, Morphology
from ._electrode import Electrode, electrode, load, refractive_volume
from ._geometry import Geometry
from ._preview import save_preview

__all__ = [
    "Composition",
    "Electrode",
    "Geometry",
    "Morphology",
    "electrode",
    "load",
    "optical_constants",
    "refractive_volume",
    "save_preview",
]
