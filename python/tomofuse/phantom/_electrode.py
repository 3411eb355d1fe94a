"""The synthetic electrode: labels, particle ids and exact truth."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import h5py
import numpy as np
import pandas as pd

from .. import _validate as check
from .._phase import Phase
from .._progress import Progress, ProgressCallback
from ..io import array_sha256, atomic_path, jsonable, provenance
from ..materials import phase_optical_constants
from ._build import _size_scale, build_geometry
from ._composition import Composition, split_options
from ._geometry import Geometry
from ._truth import compute_truth

__all__ = ["Electrode", "electrode", "load", "refractive_volume"]

logger = logging.getLogger(__name__)

_FORMAT = "tomofuse.phantom.electrode/1"


@dataclass(eq=False)
class Electrode:
    """A synthetic graphite/SiOx electrode with exact ground truth.

    Attributes
    ----------
    labels : (z, y, x) ndarray of uint8
        ``Phase`` code of every voxel (evaluated at voxel centers).
    particles : (z, y, x) ndarray of int32
        SiOx particle id of every voxel, 0 outside silicon.
    voxel_size : float
        Edge of a voxel in meters.
    seed : int
        Seed the geometry was drawn from.
    cycled : bool
        Whether the electrode carries SEI.
    parameters : dict
        Composition, morphology, derived sizes and targets (JSON-serializable).
    truth : pandas.DataFrame
        Indexed by particle id: ``volume_m3``, ``area_m2``, area fractions
        ``free``, ``cbd``, ``contact``, ``sei`` (sum to 1), ``sei_mean_m``,
        ``sei_std_m`` and ``touches_border``; computed on the exact surfaces.
    geometry : Geometry or None
        The continuous geometry (not stored in files).
    """

    labels: np.ndarray
    particles: np.ndarray
    voxel_size: float
    seed: int
    cycled: bool
    parameters: dict
    truth: pd.DataFrame
    geometry: Optional[Geometry] = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)

    def phase_fractions(self) -> dict[Phase, float]:
        """Volume fraction of each phase in the label volume."""
        counts = np.bincount(self.labels.ravel(), minlength=len(Phase))
        return {p: float(counts[p]) / self.labels.size for p in Phase}

    def save(self, path: str | os.PathLike) -> None:
        """Write to HDF5 (compressed), atomically, with provenance attributes.

        Layout: ``/labels`` (uint8), ``/particles`` (int32), ``/truth/<column>``
        plus ``/truth/particle``; root attributes ``voxel_size``, ``seed``,
        ``cycled``, ``format`` and the provenance of ``tomofuse.io.provenance``.
        """
        with atomic_path(path, argument="path") as tmp:
            with h5py.File(tmp, "w") as f:
                opts = dict(compression="gzip", compression_opts=4, shuffle=True,
                            chunks=tuple(min(64, s) for s in self.labels.shape))
                f.create_dataset("labels", data=self.labels, **opts)
                f.create_dataset("particles", data=self.particles, **opts)
                g = f.create_group("truth")
                g.create_dataset("particle", data=self.truth.index.to_numpy(dtype=np.int32))
                for col in self.truth.columns:
                    g.create_dataset(col, data=self.truth[col].to_numpy())
                g.attrs["columns"] = json.dumps(list(self.truth.columns))
                f["labels"].attrs["phases"] = json.dumps({p.name: int(p) for p in Phase})
                f.attrs["format"] = _FORMAT
                f.attrs["voxel_size"] = float(self.voxel_size)
                f.attrs["voxel_size_unit"] = "m"
                f.attrs["seed"] = int(self.seed)
                f.attrs["cycled"] = bool(self.cycled)
                attrs = provenance(
                    parameters=self.parameters,
                    inputs={"labels": array_sha256(self.labels), "particles": array_sha256(self.particles)},
                    program="tomofuse.phantom.electrode",
                )
                for k, v in attrs.items():
                    f.attrs[k] = v


def load(path: str | os.PathLike) -> Electrode:
    """Read an ``Electrode`` written by ``Electrode.save``.

    Parameters
    ----------
    path : path-like
        HDF5 file.

    Returns
    -------
    Electrode
        ``geometry`` is None (the continuous geometry can be rebuilt with
        ``electrode(shape, voxel_size, seed=..., **parameters["options"])``).
    """
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format", "")
        if fmt != _FORMAT:
            raise ValueError(f"path: {str(path)!r} is not a tomofuse phantom file (format {fmt!r})")
        g = f["truth"]
        columns = json.loads(g.attrs["columns"])
        truth = pd.DataFrame({c: g[c][()] for c in columns}, index=pd.Index(g["particle"][()], name="particle"))
        if "touches_border" in truth:
            truth["touches_border"] = truth["touches_border"].astype(bool)
        return Electrode(
            labels=f["labels"][()],
            particles=f["particles"][()],
            voxel_size=float(f.attrs["voxel_size"]),
            seed=int(f.attrs["seed"]),
            cycled=bool(f.attrs["cycled"]),
            parameters=json.loads(f.attrs["parameters"]),
            truth=truth,
        )


def _check_shape(shape) -> tuple[int, int, int]:
    return check.ints(shape, "shape", length=3, minimum=8, expected="3 ints >= 8 voxels (z, y, x)")


def _check_voxel_size(voxel_size) -> float:
    v = check.positive_length(voxel_size, "voxel_size")
    if v > 1e-3:
        raise ValueError(f"voxel_size is in meters; {voxel_size!r} m is not a nanotomography voxel")
    return v


def electrode(
    shape: Sequence[int],
    voxel_size: float,
    *,
    cycled: bool = False,
    seed: int = 0,
    truth_samples: int = 131072,
    threads: Optional[int] = None,
    callback: Optional[ProgressCallback] = None,
    **composition: Any,
) -> Electrode:
    """Synthetic graphite/SiOx composite electrode with exact ground truth.

    The geometry is defined in meters: rounded, polydisperse SiOx particles
    (star-shaped, ``r(u) = R exp(a g(u))``), graphite flakes (oblate
    ellipsoids lying in the electrode plane, normal ~ z), a carbon-black/binder
    domain made of a nanoporous web of grains concentrated at necks between
    particles plus coating patches on the SiOx, pores, and, if ``cycled``, an
    SEI grown on the SiOx (mostly over the previously free surface, pushing
    part of the CBD away).  Labels are the geometry evaluated at voxel
    centers; ``truth`` comes from the exact surfaces (Müller et al., Fig. 2g-h).

    Parameters
    ----------
    shape : (3,) ints
        Volume shape (z, y, x) in voxels.
    voxel_size : float
        Voxel edge in meters.  The same ``seed`` and physical extent
        (``shape * voxel_size``) give the same electrode at any voxel size.
    cycled : bool
        Add the SEI of a cycled electrode.
    seed : int
        Seed of every random choice.
    truth_samples : int
        Surface samples per particle for the truth (>= 1e5 recommended).
    threads : int, optional
        Threads for rendering and the truth (None = the package default); the
        electrode does not depend on it.
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.
    **composition
        Fields of ``Composition`` (recipe, porosity) and ``Morphology``
        (sizes, coverages, SEI statistics), e.g. ``porosity=0.3``,
        ``cbd_coverage=0.45``, ``size_scale="auto"``.

    Returns
    -------
    Electrode

    Examples
    --------
    >>> from tomofuse.phantom import electrode
    >>> e = electrode((64, 64, 64), 40e-9, seed=1)          # doctest: +SKIP
    >>> e.truth[["free", "cbd", "contact"]].mean()           # doctest: +SKIP
    """
    dims = _check_shape(shape)
    v = _check_voxel_size(voxel_size)
    seed = check.seed(seed)
    truth_samples = check.integer(truth_samples, "truth_samples", minimum=1000)
    threads = check.threads(threads)
    check.flag(cycled, "cycled")
    comp, morph = split_options(composition)
    progress = Progress(callback, logger)
    extent = np.array(dims, dtype=np.float64) * v
    d_si = morph.siox_d50 * _size_scale(extent, morph)
    if d_si < 4 * v:
        raise ValueError(
            f"shape * voxel_size: SiOx particles would be {d_si / v:.1f} voxels across (median diameter "
            f"{d_si * 1e9:.0f} nm at {v * 1e9:.3g} nm voxels); use more voxels, smaller voxels or a larger "
            "size_scale (>= 4 voxels needed)"
        )
    t0 = time.perf_counter()

    progress.stage(0.0, 0.25, "placing particles")
    geo, info = build_geometry(extent, comp, morph, seed=int(seed), cycled=bool(cycled),
                               progress=lambda f, m: progress.update(f, m))
    t1 = time.perf_counter()
    progress.stage(0.25, 0.75, "rendering voxels")
    labels, particles = geo.render(dims, v, threads=int(threads), progress=lambda f: progress.update(f, "rendering voxels"))
    t2 = time.perf_counter()
    progress.stage(0.75, 1.0, "computing exact surface truth")
    truth = compute_truth(geo, samples=int(truth_samples), seed=int(seed), threads=int(threads),
                          progress=lambda f: progress.update(f, "computing exact surface truth"))
    t3 = time.perf_counter()
    progress.update(1.0, "done")
    logger.info("phantom %s at %.3g m: placement %.2fs, render %.2fs, truth %.2fs", dims, v, t1 - t0, t2 - t1, t3 - t2)

    parameters = jsonable({
        "shape": list(dims),
        "voxel_size": v,
        "seed": int(seed),
        "cycled": bool(cycled),
        "composition": dataclasses.asdict(comp),
        "morphology": dataclasses.asdict(morph),
        "options": dict(composition),
        "derived": info,
        "volume_fractions": {p.name.lower(): f for p, f in comp.volume_fractions().items()},
    })
    return Electrode(labels=labels, particles=particles, voxel_size=v, seed=int(seed), cycled=bool(cycled),
                     parameters=parameters, truth=truth, geometry=geo)


def refractive_volume(electrode: Electrode, energy_kev: float) -> tuple[np.ndarray, np.ndarray]:
    """``delta`` and ``beta`` volumes of an electrode at a photon energy.

    Each voxel takes the optical constants of its phase's material
    (``tomofuse.materials.PHASE_MATERIALS``), with the CBD mixed from the
    electrode's own recipe (PVDF, carbon black, Cu nanoparticles, nanoporosity).

    Parameters
    ----------
    electrode : Electrode
    energy_kev : float
        Photon energy in keV.

    Returns
    -------
    delta, beta : (z, y, x) ndarray of float32
    """
    if not isinstance(electrode, Electrode):
        raise TypeError(f"electrode must be an Electrode, got {type(electrode).__name__}")
    comp_kw = electrode.parameters.get("composition", {})
    comp = Composition(**comp_kw) if comp_kw else Composition()
    table = phase_optical_constants(energy_kev, {Phase.CBD: comp.cbd_material()})
    lut = np.zeros((256, 2), dtype=np.float64)
    for p, (d, b) in table.items():
        lut[int(p)] = (d, b)
    delta = lut[electrode.labels, 0].astype(np.float32)
    beta = lut[electrode.labels, 1].astype(np.float32)
    return delta, beta

