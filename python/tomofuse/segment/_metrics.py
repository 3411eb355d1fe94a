"""Measured evaluation of a segmentation against a reference: confusion, Dice, particle matching."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .._phase import Phase

__all__ = ["confusion_matrix", "dice", "match_particles"]

_N = len(Phase)


def _pair(labels, truth, mask, name_a="labels", name_b="truth"):
    a = np.asarray(labels)
    b = np.asarray(truth)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")
    for arr, name in ((a, name_a), (b, name_b)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integer Phase codes, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= _N):
            raise ValueError(f"{name} holds codes outside tomofuse.Phase (0..{_N - 1}): "
                             f"{sorted(set(np.unique(arr).tolist()) - set(range(_N)))}")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != a.shape or m.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape {a.shape}, got {m.dtype} {m.shape}")
        a, b = a[m], b[m]
    return a.reshape(-1), b.reshape(-1)


def confusion_matrix(labels, truth, *, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """``(5, 5)`` voxel counts: row = true phase, column = assigned phase.

    Parameters
    ----------
    labels, truth : (z, y, x) integer arrays of ``Phase`` codes
    mask : (z, y, x) bool array, optional
        Voxels to count (True = counted).
    """
    a, b = _pair(labels, truth, mask)
    return np.bincount(b.astype(np.int64) * _N + a.astype(np.int64), minlength=_N * _N).reshape(_N, _N)


def dice(labels, truth, *, mask: Optional[np.ndarray] = None) -> dict[Phase, float]:
    """Dice coefficient ``2 |A & B| / (|A| + |B|)`` of every phase (NaN where both are empty)."""
    cm = confusion_matrix(labels, truth, mask=mask)
    out = {}
    for p in Phase:
        k = int(p)
        denom = cm[k, :].sum() + cm[:, k].sum()
        out[p] = float(2 * cm[k, k] / denom) if denom else float("nan")
    return out


def match_particles(particles, truth, *, min_iou: float = 0.5, mask: Optional[np.ndarray] = None) -> dict:
    """Match particle ids of a labeling to a reference by intersection over union.

    Two particles match when their IoU is at least ``min_iou`` (> 0.5 makes the matching
    one-to-one).

    Parameters
    ----------
    particles, truth : (z, y, x) integer arrays
        Particle ids (0 = none).
    min_iou : float
    mask : (z, y, x) bool array, optional

    Returns
    -------
    dict
        ``n_found``, ``n_true``, ``matched`` (true particles with a match),
        ``matched_fraction`` (of the true), ``precision`` (matched / found),
        ``pairs`` ((n, 2) matched (found, true) ids), ``iou`` (their IoU).
    """
    a = np.asarray(particles)
    b = np.asarray(truth)
    if a.shape != b.shape:
        raise ValueError(f"particles and truth must have the same shape, got {a.shape} and {b.shape}")
    if not (np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer)):
        raise TypeError("particles and truth must be integer id arrays")
    if not (0 < min_iou <= 1):
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a.reshape(-1).astype(np.int64)
    b = b.reshape(-1).astype(np.int64)
    ids_a, inv_a = np.unique(a, return_inverse=True)
    ids_b, inv_b = np.unique(b, return_inverse=True)
    size_a = np.bincount(inv_a)
    size_b = np.bincount(inv_b)
    both = (a > 0) & (b > 0)
    pair_codes, inter = np.unique(inv_a[both] * len(ids_b) + inv_b[both], return_counts=True)
    ia, ib = np.divmod(pair_codes, len(ids_b))
    iou = inter / (size_a[ia] + size_b[ib] - inter)
    ok = iou >= min_iou
    # with min_iou <= 0.5 a particle can pass with two partners: keep the best per true particle
    order = np.argsort(-iou[ok], kind="stable")
    used_a, used_b, pairs, ious = set(), set(), [], []
    for j in order:
        x, y = int(ia[ok][j]), int(ib[ok][j])
        if x in used_a or y in used_b:
            continue
        used_a.add(x)
        used_b.add(y)
        pairs.append((int(ids_a[x]), int(ids_b[y])))
        ious.append(float(iou[ok][j]))
    n_found = int(np.count_nonzero(ids_a > 0))
    n_true = int(np.count_nonzero(ids_b > 0))
    return {"n_found": n_found, "n_true": n_true, "matched": len(pairs),
            "matched_fraction": len(pairs) / n_true if n_true else float("nan"),
            "precision": len(pairs) / n_found if n_found else float("nan"),
            "pairs": np.array(pairs, dtype=np.int64).reshape(-1, 2), "iou": np.array(ious)}
