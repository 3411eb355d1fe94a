"""Where a run directory's files are (shared by the stages, the figures and the report)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["stage_volume"]


def stage_volume(run_dir: Path, stage: str) -> Path:
    """The volume a reconstruction stage wrote: ``RUN/<stage>/volume.zarr`` after a distributed run,
    else ``volume.h5``."""
    z = Path(run_dir) / stage / "volume.zarr"
    return z if z.is_dir() else Path(run_dir) / stage / "volume.h5"
