"""Phase labels shared by every stage (DESIGN.md, "Conventions")."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["PHASE_COLORS", "Phase"]


class Phase(IntEnum):
    """Material phase codes used in every label volume.

    The values are the contract between stages and files: a ``uint8`` label
    volume stores these integers.  Silicon particle ids live in a separate
    ``int32`` volume (0 = not silicon).
    """

    PORE = 0
    GRAPHITE = 1
    SILICON = 2
    CBD = 3
    SEI = 4


#: Display colors of the phases (the paper's Figure 1e: graphite gray, silicon blue, CBD orange),
#: with grayscale luminances 0.07 / 0.71 / 0.29 / 0.53 / 0.84 (pore / graphite / silicon / CBD /
#: SEI; ITU-R 601 weights) so the five phases stay apart when a figure is printed in gray.
PHASE_COLORS = {
    Phase.PORE: "#111111",
    Phase.GRAPHITE: "#b4b4b4",
    Phase.SILICON: "#1f4fa8",
    Phase.CBD: "#e0701a",
    Phase.SEI: "#a8eedc",
}
