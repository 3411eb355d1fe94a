"""Slow, obvious references for the segmentation kernels of the core.

Dense matrices, plain loops, float64: the Gaussian operator ``H`` of
``_core.gaussian_blur`` (per-axis sampled Gaussians of radius ``ceil(3.5 sigma)``,
normalized, samples beyond the ends folded onto the end voxels) as a Kronecker
product, and ICM (``_core.icm``) as written in ``tomofuse/segment.hpp``: the energy
``w |y - H m[L]|^2 + beta #unlike + unary``, one voxel at a time, in cubic cells of
``cell`` voxels on the lattice of a larger volume the given one starts at ``origin`` of
(default edge ``max(4 r + 1, 8)`` per axis), the cells visited color by color (8 colors:
the parities of the cell indices), the best strictly lower energy accepted, a cell's
candidates visited in order of their energy change (highest confidence first, ties in
raster order).  Only for volumes of a few hundred voxels.
"""

from __future__ import annotations

import math

import numpy as np


def radius(sigma: float) -> int:
    return 0 if sigma <= 0 else math.ceil(3.5 * sigma)


def axis_matrix(n: int, sigma: float) -> np.ndarray:
    r = radius(sigma)
    t = np.arange(-r, r + 1)
    k = np.ones(1) if r == 0 else np.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    H = np.zeros((n, n))
    for j in range(n):
        for tt, w in zip(t, k):
            H[j, min(max(j + tt, 0), n - 1)] += w
    return H


def operator(shape, sigma) -> np.ndarray:
    Hz, Hy, Hx = (axis_matrix(n, s) for n, s in zip(shape, sigma))
    return np.kron(Hz, np.kron(Hy, Hx))


def blur(volume: np.ndarray, sigma, adjoint: bool = False) -> np.ndarray:
    A = operator(volume.shape, sigma)
    if adjoint:
        A = A.T
    return (A @ volume.ravel().astype(np.float64)).reshape(volume.shape)


def _unary(label, i, pairs, unary):
    u = 0.0
    for p, (a, b) in enumerate(pairs):
        d = float(unary[p].ravel()[i])
        if label == b:
            u += max(d, 0.0)
        elif label == a:
            u += max(-d, 0.0)
    return u


def energy(data, labels, levels, sigma, *, pairs=(), unary=None, data_weight=1.0, smoothness=0.0) -> float:
    A = operator(data.shape, sigma)
    lab = labels.ravel()
    r = data.ravel().astype(np.float64) - A @ np.asarray(levels, np.float64)[lab]
    e = data_weight * float(r @ r)
    for ax in range(3):
        a = np.moveaxis(labels, ax, 0)
        e += smoothness * float((a[1:] != a[:-1]).sum())
    for i in range(lab.size):
        e += _unary(lab[i], i, pairs, unary)
    return e


def icm(data, labels, levels, sigma, *, allowed=None, pairs=(), unary=None, data_weight=1.0, smoothness=0.0,
        max_sweeps=10, min_changes=0, cell=0, origin=(0, 0, 0)):
    """Labels after ICM and the changes per sweep."""
    nz, ny, nx = data.shape
    A = operator(data.shape, sigma)
    G = A.T @ A
    lev = np.asarray(levels, np.float64)
    lab = labels.ravel().copy()
    K = len(lev)
    changes = []
    edges = [cell if cell > 0 else max(4 * radius(s) + 1, 8) for s in sigma]
    # every voxel's cell on the larger volume's lattice, and the cell's color
    zz, yy, xx = np.meshgrid(*[np.arange(n) + o for n, o in zip(data.shape, origin)], indexing="ij")
    key = np.stack([zz // edges[0], yy // edges[1], xx // edges[2]], axis=-1).reshape(-1, 3)
    color = (key[:, 0] % 2) * 4 + (key[:, 1] % 2) * 2 + key[:, 2] % 2
    cells = []
    for c in range(8):
        ids = np.flatnonzero(color == c)
        for k in sorted({tuple(t) for t in key[ids]}):
            cells.append([int(i) for i in ids if tuple(key[i]) == k])

    def best_move(i, g):
        z, rem = divmod(i, ny * nx)
        y, x = divmod(rem, nx)
        cur = lab[i]
        mask = 0xFF if allowed is None else int(allowed.ravel()[i])
        same = np.zeros(8, int)
        for dz, dy, dx in ((0, 0, -1), (0, 0, 1), (0, -1, 0), (0, 1, 0), (-1, 0, 0), (1, 0, 0)):
            zz, yy, xx = z + dz, y + dy, x + dx
            if 0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx:
                same[lab[(zz * ny + yy) * nx + xx]] += 1
        best, best_de = cur, 0.0
        ucur = _unary(cur, i, pairs, unary)
        for k in range(K):
            if k == cur or not (mask >> k) & 1:
                continue
            dm = lev[k] - lev[cur]
            de = data_weight * (-2 * dm * g[i] + dm * dm * G[i, i]) + smoothness * (same[cur] - same[k])
            de += _unary(k, i, pairs, unary) - ucur
            if de < best_de:
                best, best_de = k, de
        return best, best_de

    for _ in range(max_sweeps):
        g = A.T @ (data.ravel().astype(np.float64) - A @ lev[lab])
        count = 0
        for voxels in cells:
            # highest confidence first: candidates sorted by their energy change, then index
            cand = []
            for i in voxels:
                best, de = best_move(i, g)
                if best != lab[i]:
                    cand.append((de, i))
            for _, i in sorted(cand):
                best, _ = best_move(i, g)
                if best != lab[i]:
                    g -= (lev[best] - lev[lab[i]]) * G[:, i]
                    lab[i] = best
                    count += 1
        changes.append(count)
        if count <= min_changes:
            break
    return lab.reshape(labels.shape), changes


def shell_moves(data, labels, levels, sigma, components, target, *, pairs=None, unary=None, data_weight=1.0,
                smoothness=0.0):
    """``_core.shell_moves`` by whole-crop energies: for each component in increasing id order,
    ``_core.icm_energy`` on a crop around it before and after turning it to ``target`` (the crop
    holds every voxel whose model value the change touches and their blur support, twice), kept
    when the energy falls. Labels updated in place; returns the voxels changed."""
    from scipy import ndimage

    from tomofuse import _core

    r = int(math.ceil(4.0 * max(sigma))) + 2
    boxes = ndimage.find_objects(components)
    flipped = 0
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        crop = tuple(slice(max(0, b.start - 2 * r), min(n, b.stop + 2 * r)) for b, n in zip(box, labels.shape))
        lab = np.array(labels[crop], order="C")  # a copy even when the crop is the whole volume
        d = np.ascontiguousarray(data[crop])
        u = None if unary is None else np.ascontiguousarray(unary[(slice(None),) + crop])
        kw = dict(pairs=pairs, unary=u, data_weight=data_weight, smoothness=smoothness)
        e0 = _core.icm_energy(d, lab, levels, tuple(sigma), **kw)
        mask = components[crop] == k
        lab[mask] = target
        e1 = _core.icm_energy(d, lab, levels, tuple(sigma), **kw)
        if e1 < e0:
            labels[crop] = lab
            flipped += int(mask.sum())
    return flipped


def upsample_linear(coarse, f, shape, origin=(0, 0, 0)):
    """``_core.upsample_linear``: fine voxel i along an axis at coarse coordinate
    ``c = (2 (i + origin % f) + 1 - f) / (2 f)``, the value ``(1 - w) a[floor(c)] + w a[floor(c) + 1]``
    with ``w = c - floor(c)`` (float32), the end values outside the first and last coarse centers;
    axes z, y, x in turn, each step in float32 as ``a0 * (1 - w) + a1 * w``."""
    out = np.asarray(coarse, np.float32)
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        moved = np.moveaxis(out, axis, 0)
        res = np.empty((n,) + moved.shape[1:], np.float32)
        for i in range(n):
            num = 2 * (i + origin[axis] % f) + 1 - f
            i0 = num // (2 * f)
            w = np.float32((num - 2 * f * i0) / (2.0 * f))
            if num < 0:
                i0, w = 0, np.float32(0.0)
            elif num > 2 * f * (m - 1):
                i0, w = m - 1, np.float32(0.0)
            i1 = min(i0 + 1, m - 1)
            res[i] = moved[i0] * (np.float32(1.0) - w) + moved[i1] * w
        out = np.moveaxis(res, 0, axis)
    return np.ascontiguousarray(out)
