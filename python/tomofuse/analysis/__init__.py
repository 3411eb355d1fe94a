"""Surface analysis of segmented particles: coverage classes and SEI thickness.

The paper's central measurement (Müller et al., Fig. 2g-h): for every silicon
particle, the share of its surface that is free (exposed to electrolyte),
covered by carbon-black/binder, touching other particles, or covered by SEI,
and the SEI thickness along the surface normals.  Rays start from an
area-correct surface of each particle and walk the label grid exactly
(Amanatides-Woo) in the compiled core.
"""

from ._coverage import CATEGORIES, Surface, sei_thickness, summarize, surface_coverage

__all__ = ["CATEGORIES", "Surface", "sei_thickness", "summarize", "surface_coverage"]
