"""Memory guard of the pipeline stages.

Every stage that allocates in proportion to its input estimates its peak memory from the input
sizes *before* allocating, and refuses with :class:`InsufficientMemoryError` (a ``MemoryError``)
naming the estimate, the memory available and how to split the work, instead of being killed by
the operating system half-way (or swapping a shared node to a halt).

Available memory is the smallest of: ``MemAvailable`` of ``/proc/meminfo``, the control group's
limit minus its usage (containers, batch jobs), and ``TOMOFUSE_MEMORY_LIMIT`` (bytes; a budget a
user or a Dask worker gives tomofuse). Where none is known, nothing is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["InsufficientMemoryError", "available_memory", "check_memory"]

GIB = float(1 << 30)


class InsufficientMemoryError(MemoryError):
    """A stage would need more memory than is available (raised before allocating)."""


def _meminfo_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> Optional[int]:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        usage = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(limit) - usage)
    except (OSError, ValueError):
        return None


def available_memory() -> Optional[int]:
    """Bytes this process may still allocate without swapping, or None if unknown."""
    candidates = [_meminfo_available(), _cgroup_available()]
    env = os.environ.get("TOMOFUSE_MEMORY_LIMIT")
    if env:
        try:
            candidates.append(int(float(env)))
        except ValueError:
            raise ValueError(f"TOMOFUSE_MEMORY_LIMIT must be a number of bytes, got {env!r}") from None
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


def check_memory(estimate: float, *, stage: str, detail: str, remedy: str) -> None:
    """Refuse a stage whose estimated peak memory (bytes) exceeds the available memory.

    Parameters
    ----------
    estimate : float
        Peak memory of the stage, bytes, estimated from its input sizes.
    stage : str
        The function, e.g. ``"tomofuse.tomo.fbp"``.
    detail : str
        What the estimate is made of (shown in the message).
    remedy : str
        How to split the work (chunks, distribution) so that it fits.

    Raises
    ------
    InsufficientMemoryError
        If the estimate exceeds :func:`available_memory`.
    """
    available = available_memory()
    if available is not None and estimate > available:
        raise InsufficientMemoryError(
            f"{stage} needs about {estimate / GIB:.3g} GiB ({detail}) but only {available / GIB:.3g} GiB are "
            f"available; {remedy}")
