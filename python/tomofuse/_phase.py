"""Phase labels shared by every stage (DESIGN.md, "Conventions")."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Phase"]


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
