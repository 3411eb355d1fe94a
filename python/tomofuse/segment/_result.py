"""The result of ``segment`` and its file."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import numpy as np

from .._phase import Phase
from ._metrics import confusion_matrix, dice
from ._model import PhaseModel

__all__ = ["Segmentation", "load_segmentation", "save_segmentation"]


@dataclasses.dataclass
class Segmentation:
    """Phase labels of a fused volume and the model they were fitted with.

    Attributes
    ----------
    labels : (z, y, x) ndarray of uint8
        ``tomofuse.Phase`` codes on the fused (PXCT) grid.
    valid : (z, y, x) ndarray of bool
        Voxels inside the TXTM field of view (graphite and silicon told apart by
        absorption there; outside, by PXCT alone).
    thresholds : PhaseModel
        The fitted levels, point-spread functions, noise and smoothness, and the fit's path;
        pass it back as ``segment(..., thresholds=...)`` to segment another volume the same
        way (this volume: the same labels).
    channels : str
        ``"both"``, ``"pxct"`` or ``"txtm"``.
    voxel_size : float
        Meters.
    cycled : bool
    info : dict
        Diagnostics (PSF in voxels, ICM sweeps and energies, morphology counts, seconds).
    """

    labels: np.ndarray
    valid: np.ndarray
    thresholds: PhaseModel
    channels: str
    voxel_size: float
    cycled: bool
    info: dict = dataclasses.field(default_factory=dict)

    def confusion(self, truth, *, mask: Optional[np.ndarray] = None) -> np.ndarray:
        """``(5, 5)`` counts, row = true phase, column = this segmentation's (see ``confusion_matrix``)."""
        return confusion_matrix(self.labels, truth, mask=mask)

    def dice(self, truth, *, mask: Optional[np.ndarray] = None) -> dict[Phase, float]:
        """Dice coefficient of every phase against ``truth`` (see ``tomofuse.segment.dice``)."""
        return dice(self.labels, truth, mask=mask)

    def fractions(self) -> dict[Phase, float]:
        """Volume fraction of every phase over the whole volume."""
        counts = np.bincount(self.labels.reshape(-1), minlength=len(Phase))
        return {p: float(counts[int(p)] / self.labels.size) for p in Phase}


def save_segmentation(path: str | os.PathLike, segmentation: Segmentation, *, particles: Optional[np.ndarray] = None,
                      parameters: Optional[dict] = None, inputs=None) -> None:
    """Write labels, validity, particles and the model to one HDF5 file, atomically, with provenance.

    Layout: ``/labels`` (uint8 ``Phase`` codes), ``/valid`` (bool), ``/particles`` (int32, if
    given; 0 = no particle) -- the layout of a phantom file, so ``tomofuse analyze coverage``
    reads either; file attributes ``voxel_size`` (m), ``cycled``, ``channels``, ``phases``
    (JSON name -> code), ``thresholds`` (JSON of ``PhaseModel.to_dict()``) and provenance.
    """
    import h5py

    from ..io import GZIP_LEVEL, atomic_path, file_attributes, set_h5_attrs

    if not isinstance(segmentation, Segmentation):
        raise TypeError(f"segmentation must be a Segmentation, got {type(segmentation).__name__}")
    if particles is not None:
        particles = np.asarray(particles)
        if particles.shape != segmentation.labels.shape or not np.issubdtype(particles.dtype, np.integer):
            raise ValueError(f"particles must be an integer array of shape {segmentation.labels.shape}")
    with atomic_path(path, argument="path") as tmp:
        with h5py.File(tmp, "w") as f:
            set_h5_attrs(f, file_attributes({}, parameters=parameters or {}, inputs=inputs,
                                            program="tomofuse.segment.save_segmentation"))
            g = f
            g.attrs["tomofuse_kind"] = "segmentation"
            kw = dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)
            g.create_dataset("labels", data=segmentation.labels, **kw)
            g.create_dataset("valid", data=segmentation.valid, **kw)
            if particles is not None:
                g.create_dataset("particles", data=particles.astype(np.int32), **kw)
            g.attrs["voxel_size"] = float(segmentation.voxel_size)
            g.attrs["cycled"] = bool(segmentation.cycled)
            g.attrs["channels"] = segmentation.channels
            g.attrs["phases"] = json.dumps({p.name.lower(): int(p) for p in Phase})
            g.attrs["thresholds"] = json.dumps(_jsonable(segmentation.thresholds.to_dict()))


def _jsonable(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, float) and d != d:
        return None
    return d


def _nan(d: Any) -> Any:
    if isinstance(d, list):
        return [_nan(v) for v in d]
    return float("nan") if d is None else d


def load_segmentation(path: str | os.PathLike) -> tuple[Segmentation, Optional[np.ndarray]]:
    """Read a file of ``save_segmentation``: the segmentation and the particles (or None)."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f
        if g.attrs.get("tomofuse_kind") != "segmentation" or "labels" not in g or "thresholds" not in g.attrs:
            raise ValueError(f"{os.fspath(path)}: not a tomofuse segmentation file (no /labels with "
                             "segmentation attributes)")
        th = {k: _nan(v) for k, v in json.loads(g.attrs["thresholds"]).items()}
        seg = Segmentation(labels=g["labels"][()], valid=g["valid"][()].astype(bool),
                           thresholds=PhaseModel.from_dict(th), channels=str(g.attrs["channels"]),
                           voxel_size=float(g.attrs["voxel_size"]), cycled=bool(g.attrs["cycled"]))
        particles = g["particles"][()] if "particles" in g else None
    return seg, particles
