"""The report a scientist reads instead of a log: the paper's figures, measured beside the truth.

``tomofuse.report`` turns the results of the stages into the analogs of Müller et al.'s
Figs. 1-3 (one function per panel, each returning a matplotlib ``Figure``) and writes them, with
a summary table of every measured number next to the truth it should reproduce, into one
self-contained HTML page (``write_report``) and ``summary.json`` (``write_summary``).

Figure 1 (imaging): ``cross_sections`` (``volume_sections`` for one modality), ``registration_check``, ``segmentation_overlay``,
``phase_surfaces``, ``fsc_curves``.  Figure 2 (surfaces): ``coverage_bars``,
``sei_thickness_distributions``, ``sei_thickness_map``.  Figure 3 (electrochemistry):
``soc_distributions``, ``particle_fields``, ``overpotential_curves``, ``limiting_currents``.
"""

from ._figures import (coverage_bars, cross_sections, fsc_curves, limiting_currents, overpotential_curves,
                       particle_fields, phase_surfaces, registration_check, segmentation_overlay,
                       sei_thickness_distributions, sei_thickness_map, soc_distributions, volume_sections)
from ._html import Quantity, Section, write_report, write_summary

__all__ = [
    "Quantity",
    "Section",
    "coverage_bars",
    "cross_sections",
    "fsc_curves",
    "limiting_currents",
    "overpotential_curves",
    "particle_fields",
    "phase_surfaces",
    "registration_check",
    "segmentation_overlay",
    "sei_thickness_distributions",
    "sei_thickness_map",
    "soc_distributions",
    "volume_sections",
    "write_report",
    "write_summary",
]
