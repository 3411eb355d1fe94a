"""Slow, obvious reference implementations of the surface-analysis core (issue 6).

``surface_elements`` and ``trace_rays`` here implement the contract of
``tomofuse._core.surface_elements`` / ``tomofuse._core.trace_rays`` literally, in
float64, so that the C++ core can be compared against them element by element.
They are test code: no C++ and no tomofuse import.

Conventions (the contract)
--------------------------
* Continuous voxel coordinates ``(z, y, x)``: voxel ``(i, j, k)`` spans
  ``[i, i+1) x [j, j+1) x [k, k+1)``, its center is at ``(i+.5, j+.5, k+.5)``.
* Face axis codes: ``+1/-1`` = ``+z/-z``, ``+2/-2`` = ``+y/-y``, ``+3/-3`` = ``+x/-x``.
* Element order: particles ascending, then faces in C order of the inside voxel,
  then the axes ``-z, +z, -y, +y, -x, +x``.

``trace_rays`` (Amanatides & Woo 1987) in the exact operation order
-------------------------------------------------------------------
Per ray with origin ``o`` and unit direction ``d`` (float64):

* start voxel ``v_a = floor(o_a)``, except ``v_a = o_a - 1`` if ``o_a`` is integral
  and ``d_a < 0``;
* ``step_a = sign(d_a)``; ``t_max_a = ((v_a + (1 if d_a > 0 else 0)) - o_a) / d_a``
  for ``d_a != 0`` else ``inf``; ``t_delta_a = 1 / |d_a|`` (``inf`` for ``d_a == 0``);
* the current voxel was entered at ``t_enter`` (0 for the start voxel) and is left
  at ``t_exit = min_a t_max_a``; stepping: ``a = argmin(t_max)`` (ties -> lowest
  axis: z before y before x), ``t_enter = t_max_a``, ``v_a += step_a``,
  ``t_max_a += t_delta_a`` (incremental, as in the paper);
* a voxel is *reached* if it is inside the grid and ``t_enter < max_length``
  (``max_length > 0``, so the start voxel is always reached if inside the grid);
  an unreached voxel ends the ray with ``hit_label = 255, hit_particle = 0``;
* voxels with ``particles == self_id`` are skipped when ``self_id > 0`` (``self_id
  <= 0`` skips nothing); the first other reached voxel
  gives ``hit_label = labels[v]``, ``hit_particle = particles[v]``;
* if that label is SEI (4) the walk goes on while the voxels are reached and are SEI
  or belong to a *gap*: consecutive non-SEI voxels whose path length
  ``min(t_exit, max_length) - t_enter_gap`` is ``<= max_gap`` (``max_gap > 0``; 0
  bridges nothing); the run ends at the first unreached voxel or the voxel that
  makes the gap too long; ``sei_length = min(t_exit_last_SEI, max_length) -
  t_enter_first`` (one subtraction), otherwise ``sei_length = NaN``.

Choices the contract leaves open are collected in ``OPEN_CHOICES``; each is a
keyword here so that the tests can pin whichever the core picks.

``surface_elements``
--------------------
Per particle ``p``: indicator ``I_p`` (float64 1/0), zero outside the grid,
smoothed with ``scipy.ndimage.gaussian_filter(I, sigma, mode="constant", cval=0,
truncate=4.0)`` (normalized kernel of radius ``int(4 sigma + 0.5)``); gradient by
central differences ``g_a(c) = (G[c + e_a] - G[c - e_a]) / 2`` at the two voxel
centers ``c`` on either side of the face, ``n = -(g(in) + g(out)) / 2``,
normalized; if ``|n| == 0`` or ``n . e_face <= 0`` the face axis is used; ``area =
|n . e_face|``.  ``mode="constant", cval=0`` *is* "zero outside the grid" for the
indicator.  The grid's edge (what the C++ core does, ``edge="core"``, the default):
the smoothed field ``G`` is 0 outside the grid, and a face on the grid's edge uses
the inside voxel's gradient alone.  ``edge="convolve"`` instead evaluates ``G``
outside the grid as the convolution of the zero-extended indicator (a grid padded
with zeros) and averages the two gradients everywhere.  Only faces within
``int(4 sigma + 0.5) + 2`` voxels of the grid's faces can differ.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import find_objects, gaussian_filter

__all__ = [
    "AXIS_ORDER",
    "OPEN_CHOICES",
    "PORE",
    "GRAPHITE",
    "SILICON",
    "CBD",
    "SEI",
    "BORDER",
    "surface_elements",
    "trace_rays",
    "trace_rays_vectorized",
    "classify",
    "coverage_from_elements",
]

PORE, GRAPHITE, SILICON, CBD, SEI = 0, 1, 2, 3, 4
BORDER = 255

#: face axis codes in element order: -z, +z, -y, +y, -x, +x
AXIS_ORDER = (-1, +1, -2, +2, -3, +3)

#: What the contract does not pin down, and the default taken here.
OPEN_CHOICES = {
    "max_length_boundary": "a voxel entered at t_enter == max_length is not reached (t_enter < max_length)",
    "self_id_zero": "self_id <= 0 skips nothing (particle id 0 voxels are never skipped)",
    "hit_particle_on_border": "hit_particle = 0 when hit_label == 255",
    "t_max_update": "incremental t_max += t_delta after a step (not recomputed from the voxel index)",
    "sei_length_rounding": "t_exit - t_enter in one subtraction (not a sum of per-voxel segments)",
    "smoothed_field_outside_grid": "G = 0 outside the grid; faces on the grid's edge use the inside gradient only",
    "origin_outside_grid": "a ray whose start voxel is outside the grid hits 255 at t = 0",
}


# -- ray walk ------------------------------------------------------------------------------


def _start(o: float, d: float) -> int:
    v = math.floor(o)
    if d < 0 and v == o:
        v -= 1
    return int(v)


def trace_ray(labels, particles, origin, direction, self_id, max_length=math.inf, *, max_gap=0.0,
              incremental=True):
    """One ray, a plain Python loop; returns ``(hit_label, hit_particle, sei_length)``."""
    shape = labels.shape
    o = [float(x) for x in origin]
    d = [float(x) for x in direction]
    v = [_start(o[a], d[a]) for a in range(3)]
    step = [1 if d[a] > 0 else (-1 if d[a] < 0 else 0) for a in range(3)]
    t_max = [((v[a] + (1 if d[a] > 0 else 0)) - o[a]) / d[a] if d[a] != 0 else math.inf for a in range(3)]
    t_delta = [1.0 / abs(d[a]) if d[a] != 0 else math.inf for a in range(3)]
    t_enter = 0.0

    def inside(v):
        return 0 <= v[0] < shape[0] and 0 <= v[1] < shape[1] and 0 <= v[2] < shape[2]

    def advance():
        nonlocal t_enter
        a = 0
        if t_max[1] < t_max[a]:
            a = 1
        if t_max[2] < t_max[a]:
            a = 2
        t_enter = t_max[a]
        v[a] += step[a]
        if incremental:
            t_max[a] += t_delta[a]
        else:
            t_max[a] = ((v[a] + (1 if d[a] > 0 else 0)) - o[a]) / d[a]

    while True:
        if not inside(v) or not t_enter < max_length:
            return BORDER, 0, math.nan
        if self_id <= 0 or particles[v[0], v[1], v[2]] != self_id:
            break
        advance()
    lab = int(labels[v[0], v[1], v[2]])
    pid = int(particles[v[0], v[1], v[2]])
    if lab != SEI:
        return lab, pid, math.nan
    t_first = t_enter
    run_end = min(t_max)  # exit of the last SEI voxel so far
    gap_start = None
    while True:
        advance()
        if not inside(v) or not t_enter < max_length:
            break
        t_exit = min(t_max)
        if labels[v[0], v[1], v[2]] == SEI:
            run_end, gap_start = t_exit, None
            continue
        if gap_start is None:
            gap_start = t_enter
        if not (max_gap > 0 and min(t_exit, max_length) - gap_start <= max_gap):
            break
    return lab, pid, min(run_end, max_length) - t_first


def _check_rays(labels, particles, origins, directions, self_ids):
    labels = np.asarray(labels)
    particles = np.asarray(particles)
    if labels.shape != particles.shape or labels.ndim != 3:
        raise ValueError(f"labels {labels.shape} and particles {particles.shape} must be the same 3-D shape")
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    directions = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    self_ids = np.broadcast_to(np.asarray(self_ids, dtype=np.int64), (len(origins),))
    return labels, particles, origins, directions, self_ids


def trace_rays(labels, particles, origins, directions, self_ids, *, max_length=math.inf, max_gap=0.0,
               incremental=True):
    """Reference ``trace_rays``: one plain Python loop per ray (see the module docstring).

    Returns ``(hit_label uint8 (n,), hit_particle int32 (n,), sei_length float64 (n,))``.
    """
    labels, particles, origins, directions, self_ids = _check_rays(labels, particles, origins, directions, self_ids)
    n = len(origins)
    hit = np.empty(n, np.uint8)
    hpid = np.empty(n, np.int32)
    length = np.empty(n, np.float64)
    for i in range(n):
        hit[i], hpid[i], length[i] = trace_ray(labels, particles, origins[i], directions[i], int(self_ids[i]),
                                               max_length, max_gap=max_gap, incremental=incremental)
    return hit, hpid, length


def trace_rays_vectorized(labels, particles, origins, directions, self_ids, *, max_length=math.inf, max_gap=0.0):
    """The same walk as ``trace_rays`` vectorized over the rays (same float64 operations,
    so the same bits); used where the plain loop is too slow (phantom-scale checks)."""
    labels, particles, origins, directions, self_ids = _check_rays(labels, particles, origins, directions, self_ids)
    n = len(origins)
    shape = np.array(labels.shape)
    o, d = origins, directions
    v = np.floor(o)
    v -= (d < 0) & (v == o)
    v = v.astype(np.int64)
    step = np.sign(d).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_max = np.where(d != 0, ((v + (d > 0)) - o) / d, np.inf)
        t_delta = np.where(d != 0, 1.0 / np.abs(d), np.inf)
    t_enter = np.zeros(n)
    hit = np.full(n, BORDER, np.uint8)
    hpid = np.zeros(n, np.int32)
    length = np.full(n, np.nan)
    t_first = np.zeros(n)
    run_end = np.zeros(n)  # exit of the run's last SEI voxel so far
    gap_start = np.full(n, np.nan)  # entry of the current gap, NaN outside gaps
    in_sei = np.zeros(n, bool)  # walking through the SEI run
    active = np.ones(n, bool)
    flat_l, flat_p = labels.ravel(), particles.ravel()
    strides = np.array([labels.shape[1] * labels.shape[2], labels.shape[2], 1])
    rows = np.arange(n)
    while active.any():
        idx = np.flatnonzero(active)
        vi = v[idx]
        ok = np.all((vi >= 0) & (vi < shape), axis=1) & (t_enter[idx] < max_length)
        lin = np.where(ok, vi @ strides, 0)
        lab = flat_l[lin]
        pid = flat_p[lin]
        walking = in_sei[idx]
        t_exit = t_max[idx].min(axis=1)  # exit of the current voxel
        # rays in an SEI run: SEI voxels extend it; a gap goes on while it is short enough
        extend = walking & ok & (lab == SEI)
        run_end[idx[extend]] = t_exit[extend]
        gap_start[idx[extend]] = np.nan
        in_gap = walking & ok & (lab != SEI)
        g = idx[in_gap]
        gap_start[g] = np.where(np.isnan(gap_start[g]), t_enter[g], gap_start[g])
        too_long = np.zeros(len(idx), bool)
        too_long[in_gap] = ~((max_gap > 0) & (np.minimum(t_exit[in_gap], max_length) - gap_start[g] <= max_gap))
        stop_run = walking & (~ok | too_long)
        j = idx[stop_run]
        length[j] = np.minimum(run_end[j], max_length) - t_first[j]
        active[j] = False
        # rays still looking for the first foreign voxel
        looking = ~walking
        border = looking & ~ok
        active[idx[border]] = False
        foreign = looking & ok & ((self_ids[idx] <= 0) | (pid != self_ids[idx]))
        j = idx[foreign]
        hit[j] = lab[foreign]
        hpid[j] = pid[foreign]
        sei = foreign & (lab == SEI)
        in_sei[idx[sei]] = True
        t_first[idx[sei]] = t_enter[idx[sei]]
        run_end[idx[sei]] = t_exit[sei]
        active[idx[foreign & (lab != SEI)]] = False
        # advance the rest by one voxel
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        tm = t_max[idx]
        a = np.argmin(tm, axis=1)  # first minimum: ties -> lowest axis
        r = rows[: len(idx)]
        t_enter[idx] = tm[r, a]
        v[idx, a] += step[idx, a]
        t_max[idx, a] = tm[r, a] + t_delta[idx, a]
    return hit, hpid, length


# -- surface elements -----------------------------------------------------------------------


def _kernel_radius(sigma: float) -> int:
    return int(4.0 * float(sigma) + 0.5)  # scipy.ndimage's truncate=4.0


def surface_elements(particles, *, sigma=2.0, edge="core"):
    """Reference ``surface_elements`` (see the module docstring).

    Returns ``(pid int32 (n,), center float64 (n,3), normal float64 (n,3), area float64 (n,),
    axis int8 (n,))``.
    """
    particles = np.asarray(particles)
    if particles.ndim != 3:
        raise ValueError(f"particles must be 3-D, got shape {particles.shape}")
    if edge not in ("core", "convolve"):
        raise ValueError(f"edge must be 'core' or 'convolve', got {edge!r}")
    shape = np.array(particles.shape)
    pad = _kernel_radius(sigma) + 2
    out = {k: [] for k in ("pid", "center", "normal", "area", "axis")}
    slices = find_objects(np.where(particles > 0, particles, 0))
    for p0, sl in enumerate(slices):
        if sl is None:
            continue
        p = p0 + 1
        lo = np.array([s.start for s in sl]) - pad
        hi = np.array([s.stop for s in sl]) + pad
        # the zero-extended indicator on the box [lo, hi) (which may reach outside the grid)
        ind = np.zeros(tuple(hi - lo))
        glo, ghi = np.maximum(lo, 0), np.minimum(hi, shape)
        src = tuple(slice(a, b) for a, b in zip(glo, ghi))
        dst = tuple(slice(a - l, b - l) for a, b, l in zip(glo, ghi, lo))
        ind[dst] = particles[src] == p
        g = gaussian_filter(ind, sigma, mode="constant", cval=0.0, truncate=4.0)
        in_grid = np.zeros(g.shape, bool)
        in_grid[dst] = True
        if edge == "core":
            keep = np.zeros(g.shape, bool)
            keep[dst] = True
            g[~keep] = 0.0
        mask = ind > 0
        # per face (inside voxel c, axis a, sign s): the voxel c + s e_a must not be particle p
        inside = np.argwhere(mask)  # C order (box order == grid C order)
        per_axis = []
        for code in AXIS_ORDER:
            a, s = abs(code) - 1, (1 if code > 0 else -1)
            nb = inside.copy()
            nb[:, a] += s
            face = ~mask[tuple(nb.T)]
            per_axis.append(face)
        faces = np.stack(per_axis, axis=1)  # (n_inside, 6) in element order
        vi, ki = np.nonzero(faces)  # row-major: voxel then axis order -> the contract's order
        c_in = inside[vi]
        codes = np.array(AXIS_ORDER)[ki]
        a = np.abs(codes) - 1
        s = np.sign(codes)
        c_out = c_in.copy()
        c_out[np.arange(len(a)), a] += s

        def grad(c):
            gr = np.empty((len(c), 3))
            for ax in range(3):
                e = np.zeros(3, np.int64)
                e[ax] = 1
                gr[:, ax] = (g[tuple((c + e).T)] - g[tuple((c - e).T)]) / 2.0
            return gr

        g_in, g_out = grad(c_in), grad(c_out)
        n = -(g_in + g_out) / 2.0
        if edge == "core":  # faces on the grid's edge: the inside voxel's gradient alone
            edge_face = ~in_grid[tuple(c_out.T)]
            n[edge_face] = -g_in[edge_face]
        norm = np.sqrt(np.sum(n * n, axis=1))
        along = n[np.arange(len(a)), a] * s
        bad = (norm == 0) | (along <= 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            n = n / norm[:, None]
        n[bad] = 0.0
        n[bad, a[bad]] = s[bad]
        area = np.abs(n[np.arange(len(a)), a])
        center = (c_in + lo).astype(np.float64) + 0.5
        center[np.arange(len(a)), a] = (c_in[np.arange(len(a)), a] + lo[a]) + (s > 0)
        out["pid"].append(np.full(len(a), p, np.int32))
        out["center"].append(center)
        out["normal"].append(n)
        out["area"].append(area)
        out["axis"].append(codes.astype(np.int8))
    if not out["pid"]:
        return (np.empty(0, np.int32), np.empty((0, 3)), np.empty((0, 3)), np.empty(0), np.empty(0, np.int8))
    return (np.concatenate(out["pid"]), np.concatenate(out["center"]), np.concatenate(out["normal"]),
            np.concatenate(out["area"]), np.concatenate(out["axis"]))


# -- coverage from elements and rays (the analysis the Python API is specified to do) ----------

CLASSES = ("free", "cbd", "contact", "sei")


def classify(hit_label, hit_particle, self_ids, phase=SILICON):
    """Class name per ray: 'free', 'cbd', 'contact', 'sei' or 'border'."""
    hit_label = np.asarray(hit_label)
    cls = np.full(len(hit_label), "border", dtype=object)
    cls[hit_label == PORE] = "free"
    cls[hit_label == CBD] = "cbd"
    cls[hit_label == GRAPHITE] = "contact"
    cls[(hit_label == phase) & (np.asarray(hit_particle) != np.asarray(self_ids))] = "contact"
    cls[hit_label == SEI] = "sei"
    return cls


def coverage_from_elements(labels, particles, *, sigma=2.0, max_length=math.inf, max_gap=0.0, vectorized=True):
    """Per-particle coverage and SEI statistics (voxel units) the way the API is specified.

    Returns a dict ``pid -> dict(area, free, cbd, contact, sei, n_rays, touches_border,
    sei_mean, sei_std, sei_max)``; fractions are of the non-border area.
    """
    pid, center, normal, area, axis = surface_elements(particles, sigma=sigma)
    tracer = trace_rays_vectorized if vectorized else trace_rays
    hit, hpid, length = tracer(labels, particles, center, normal, pid, max_length=max_length, max_gap=max_gap)
    cls = classify(hit, hpid, pid)
    res = {}
    for p in np.unique(pid):
        m = pid == p
        w, c = area[m], cls[m]
        valid = c != "border"
        tot = w[valid].sum()
        row = {"area": float(w.sum()), "n_rays": int(m.sum()), "touches_border": bool((~valid).any())}
        for k in CLASSES:
            row[k] = float(w[c == k].sum() / tot) if tot > 0 else math.nan
        s = c == "sei"
        if s.any():
            t, ws = length[m][s], w[s]
            mean = float(np.sum(ws * t) / ws.sum())
            row.update(sei_mean=mean, sei_std=float(np.sqrt(np.sum(ws * (t - mean) ** 2) / ws.sum())),
                       sei_max=float(t.max()))
        else:
            row.update(sei_mean=math.nan, sei_std=math.nan, sei_max=math.nan)
        res[int(p)] = row
    return res
