"""PNG preview of a label volume: three orthogonal slices colored by phase."""

from __future__ import annotations

import os

import numpy as np

from .._phase import PHASE_COLORS, Phase
from ..io import atomic_path

__all__ = ["PHASE_COLORS", "save_preview"]


def save_preview(labels: np.ndarray, path: str | os.PathLike, *, voxel_size: float, title: str = "") -> None:
    """Write a PNG with the central z, y and x slices of ``labels`` and a legend.

    Parameters
    ----------
    labels : (z, y, x) ndarray of uint8
        ``Phase`` codes.
    path : path-like
        Output PNG (written atomically).
    voxel_size : float
        Meters; sets the axes in micrometers.
    title : str
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3-D (z, y, x) volume, got shape {labels.shape}")
    cmap = ListedColormap([PHASE_COLORS[p] for p in Phase])
    nz, ny, nx = labels.shape
    um = voxel_size * 1e6
    views = [
        (labels[nz // 2], f"z = {nz // 2}", (0, nx * um, ny * um, 0), ("x (um)", "y (um)")),
        (labels[:, ny // 2], f"y = {ny // 2}", (0, nx * um, nz * um, 0), ("x (um)", "z (um)")),
        (labels[:, :, nx // 2], f"x = {nx // 2}", (0, ny * um, nz * um, 0), ("y (um)", "z (um)")),
    ]
    fig = Figure(figsize=(12, 4.6), dpi=100)
    axes = fig.subplots(1, 3)
    for ax, (img, name, extent, (xl, yl)) in zip(axes, views):
        ax.imshow(img, cmap=cmap, vmin=-0.5, vmax=len(Phase) - 0.5, interpolation="nearest", extent=extent)
        ax.set_title(name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    fig.legend(
        handles=[Patch(color=PHASE_COLORS[p], label=p.name.lower()) for p in Phase],
        loc="lower center",
        ncol=len(Phase),
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(bottom=0.2, top=0.88, wspace=0.3)
    with atomic_path(path, argument="preview") as tmp:
        fig.savefig(tmp, format="png")
