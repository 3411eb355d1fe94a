"""Morphology after classification: SEI only as a layer on silicon, no specks."""

from __future__ import annotations

import numpy as np

from .._phase import Phase
from ._fit import farther_than
from ._morphology import component_sizes, lookup

__all__ = ["clean_labels", "fill_from_neighbors"]

_SI, _CBD, _SEI = int(Phase.SILICON), int(Phase.CBD), int(Phase.SEI)
_UNKNOWN = 255


def fill_from_neighbors(labels: np.ndarray, unknown: np.ndarray) -> None:
    """Give every ``unknown`` voxel the most common label of its known 6-neighbors,
    growing inwards until none is left (in place; ties go to the lower label)."""
    flat = labels.reshape(-1)
    idx = np.flatnonzero(unknown)
    flat[idx] = _UNKNOWN
    nz, ny, nx = labels.shape
    steps = (1, -1, nx, -nx, nx * ny, -nx * ny)
    while idx.size:
        z, rem = np.divmod(idx, ny * nx)
        y, x = np.divmod(rem, nx)
        inside = [x < nx - 1, x > 0, y < ny - 1, y > 0, z < nz - 1, z > 0]
        votes = np.zeros((idx.size, 9), np.int8)  # labels 0..7, column 8 = unknown
        rows = np.arange(idx.size)
        for step, ok in zip(steps, inside):
            nb = np.where(ok, flat[np.where(ok, idx + step, idx)], _UNKNOWN)
            votes[rows, np.minimum(nb, 8)] += 1
        votes[:, 8] = 0
        known = votes.max(axis=1) > 0
        if not known.any():
            flat[idx] = 0
            break
        flat[idx[known]] = np.argmax(votes[known], axis=1).astype(labels.dtype)
        idx = idx[~known]


def _sei_far_to_cbd(labels: np.ndarray, max_distance: float, threads: int) -> int:
    """SEI voxels farther than ``max_distance`` (voxels) from silicon become CBD; the count."""
    sei = labels == _SEI
    if not sei.any():
        return 0
    far = sei & farther_than(labels != _SI, max_distance, threads=threads)
    labels[far] = _CBD
    return int(far.sum())


def _fill_enclosed(labels: np.ndarray, phase: int, max_voxels: float) -> int:
    """Components of other phases wholly enclosed by ``phase`` (6-connected, off the array's
    faces), of at most ``max_voxels`` voxels, become ``phase`` (in place); the count."""
    import cc3d

    other = labels != phase
    comp = cc3d.connected_components(other, connectivity=6)
    sizes = component_sizes(comp)
    inner = sizes <= max_voxels
    inner[0] = False
    for face in (comp[0], comp[-1], comp[:, 0], comp[:, -1], comp[:, :, 0], comp[:, :, -1]):
        inner[np.unique(face)] = False
    if not inner.any():
        return 0
    fill = lookup(inner, comp)
    labels[fill] = phase
    return int(fill.sum())


def clean_labels(labels: np.ndarray, *, cycled: bool, min_voxels: int, min_silicon_voxels: float = 0.0,
                 sei_max_distance: float = np.inf, threads: int = 1) -> dict:
    """In place: inclusions of other phases wholly inside silicon, up to ``min_silicon_voxels``
    (dense SiOx holds none; at that size the TXTM, which sees silicon around them, does not
    resolve them), become silicon; silicon components smaller than ``min_silicon_voxels``
    (below the resolution of the modality that tells silicon from graphite) take their
    neighbors' labels; SEI farther than ``sei_max_distance`` voxels from silicon, and SEI components that
    touch no silicon, become CBD (cycled); every 6-connected component of a phase smaller than
    ``min_voxels`` takes its neighbors' labels (and the SEI rules are applied once more).
    Returns counts of the voxels changed."""
    import cc3d

    out = {"sei_detached_voxels": 0, "small_component_voxels": 0, "small_silicon_voxels": 0,
           "silicon_inclusion_voxels": 0}
    if min_silicon_voxels > 1 and np.any(labels == _SI):
        out["silicon_inclusion_voxels"] = _fill_enclosed(labels, _SI, min_silicon_voxels)
        comp = cc3d.connected_components(labels == _SI, connectivity=26)
        sizes = component_sizes(comp)
        sizes[0] = np.iinfo(sizes.dtype).max
        small = lookup(sizes < min_silicon_voxels, comp)  # a bool per voxel, not a size
        out["small_silicon_voxels"] = int(small.sum())
        if small.any():
            fill_from_neighbors(labels, small)
    if cycled and np.isfinite(sei_max_distance):
        out["sei_detached_voxels"] += _sei_far_to_cbd(labels, sei_max_distance, threads)
    if cycled and np.any(labels == _SEI):
        comp = cc3d.connected_components(labels == _SEI, connectivity=26)
        si = labels == _SI
        touch = np.zeros_like(si)
        touch[1:] |= si[:-1]
        touch[:-1] |= si[1:]
        touch[:, 1:] |= si[:, :-1]
        touch[:, :-1] |= si[:, 1:]
        touch[:, :, 1:] |= si[:, :, :-1]
        touch[:, :, :-1] |= si[:, :, 1:]
        keep = np.zeros(int(comp.max()) + 1, bool)
        keep[np.unique(comp[touch & (comp > 0)])] = True
        keep[0] = True
        detached = lookup(~keep, comp)
        out["sei_detached_voxels"] += int(detached.sum())
        labels[detached] = _CBD
    if min_voxels > 1:
        comp = cc3d.connected_components(labels + np.uint8(1), connectivity=6)  # pore (0) is a phase too
        sizes = component_sizes(comp)
        small = lookup(sizes < min_voxels, comp)
        out["small_component_voxels"] = int(small.sum())
        if small.any():
            lost_si = bool(np.any(labels[small] == _SI))
            fill_from_neighbors(labels, small)
            # distances to silicon change only if silicon was filled over, and only new SEI can be far
            if cycled and np.isfinite(sei_max_distance) and (lost_si or np.any(labels[small] == _SEI)):
                out["sei_detached_voxels"] += _sei_far_to_cbd(labels, sei_max_distance, threads)
    return out
