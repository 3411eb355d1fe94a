"""Surface coverage and SEI thickness: tomofuse vs off-the-shelf approaches (issue 6).

Builds a 256^3 analytic volume with ~90 silicon spheres (CBD caps, silicon-silicon and
silicon-graphite contacts, SEI caps and whole SEI shells of varying thickness; truth in
closed form, tests/analysis_phantoms.py) and compares, on time and error vs the truth:

  tomofuse   tomofuse.analysis.surface_coverage + sei_thickness, threads=2
  reference  the same contract in NumPy (tests/analysis_reference.py; --reference)
  faces      voxel-face counting in NumPy: unweighted faces, class = the neighbor's
             label; thickness = SEI voxels counted along the face axis
  mc+rays    scikit-image marching cubes per particle (Gaussian-smoothed mask, level 0.5),
             class = label 0.75 voxel outside each triangle centroid along its normal,
             thickness = SEI run marched along the normal in 0.25-voxel steps
  porespy    porespy.networks.region_interface_areas (optional; skipped if not installed)

Run from the repository root::

    python bench/compare_coverage.py [--n 90] [--size 256] [--repeat 3] [--reference]

Errors are per particle over the particles inside the volume: MAE and max of each
category's area fraction, the relative area error, and the SEI mean-thickness bias
(voxels) with its correlation to the truth.  Times are the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import analysis_phantoms as ap  # noqa: E402

PORE, GRAPHITE, SILICON, CBD, SEI = 0, 1, 2, 3, 4
FRACTIONS = ["free", "cbd", "contact", "sei"]
VOXEL = 20e-9


def build(size=256, n=90, seed=0, radius=(10.0, 16.0)):
    """~n particles (radius range in voxels) in a size^3 box; about half carry SEI."""
    return ap.random_spheres((size, size, size), n, seed=seed, radius=tuple(radius), voxel_size=VOXEL,
                             sei_fraction=0.6, full_sei_fraction=0.3, margin=1.5)


# -- methods: each returns a DataFrame indexed by particle id with area_vox2, the four
#    fractions, sei_mean_vox (NaN without SEI) and touches_border --------------------------------


def method_tomofuse(labels, particles):
    from tomofuse import analysis

    cov, surface = analysis.surface_coverage(labels, particles, voxel_size=VOXEL, threads=2, return_surface=True)
    th = analysis.sei_thickness(surface=surface)  # one trace serves both measurements
    out = cov[FRACTIONS].copy()
    out["area_vox2"] = cov["area_m2"] / VOXEL**2
    out["sei_mean_vox"] = th.loc[cov.index, "mean_m"] / VOXEL
    out["sei_std_vox"] = th.loc[cov.index, "std_m"] / VOXEL
    out["touches_border"] = cov["touches_border"] | th.loc[cov.index, "touches_border"]
    return out


def method_reference(labels, particles):
    import analysis_reference as ar

    res = ar.coverage_from_elements(labels, particles)
    out = pd.DataFrame.from_dict(res, orient="index")
    return out.rename(columns={"area": "area_vox2", "sei_mean": "sei_mean_vox"})


def _class_of(nb_label, nb_particle, pid):
    cls = np.full(len(nb_label), -1, np.int8)  # -1: border
    cls[nb_label == PORE] = 0
    cls[nb_label == CBD] = 1
    cls[(nb_label == GRAPHITE) | ((nb_label == SILICON) & (nb_particle != pid))] = 2
    cls[nb_label == SEI] = 3
    return cls


def method_faces(labels, particles):
    """Unweighted voxel faces, classified by the neighbor; SEI thickness along the face axis."""
    n = int(particles.max())
    counts = np.zeros((n + 1, 5))  # free cbd contact sei border
    sei_sum = np.zeros(n + 1)
    sei_cnt = np.zeros(n + 1)
    lab = np.pad(labels, 1, constant_values=255)
    par = np.pad(particles, 1, constant_values=0)
    shape = np.array(lab.shape)
    for a in range(3):
        for s in (-1, 1):
            inside = [slice(1, -1)] * 3
            nb = [slice(1, -1)] * 3
            nb[a] = slice(1 + s, shape[a] - 1 + s)
            p_in = par[tuple(inside)]
            p_nb = par[tuple(nb)]
            m = (p_in > 0) & (p_nb != p_in)
            idx = np.argwhere(m)
            pid = p_in[m]
            l_nb = lab[tuple(nb)][m]
            cls = _class_of(l_nb, p_nb[m], pid)
            cls = np.where(l_nb == 255, 4, np.where(cls < 0, 4, cls))
            np.add.at(counts, (pid, cls), 1)
            # SEI run along the axis
            sei = cls == 3
            pos = idx[sei] + 1  # padded coordinates of the inside voxel
            p_sei = pid[sei]
            run = np.zeros(len(pos))
            active = np.ones(len(pos), bool)
            k = 1
            while active.any():
                q = pos[active].copy()
                q[:, a] += s * k
                inb = (q[:, a] >= 0) & (q[:, a] < shape[a])
                q[~inb, a] = 0
                still = inb & (lab[tuple(q.T)] == SEI)
                ids = np.flatnonzero(active)
                run[ids[still]] += 1
                active[ids[~still]] = False
                k += 1
            np.add.at(sei_sum, p_sei, run)
            np.add.at(sei_cnt, p_sei, 1)
    ids = np.flatnonzero(counts.sum(axis=1) > 0)
    c = counts[ids]
    valid = c[:, :4].sum(axis=1)
    out = pd.DataFrame({k: c[:, i] / valid for i, k in enumerate(FRACTIONS)}, index=ids)
    out["area_vox2"] = c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["sei_mean_vox"] = sei_sum[ids] / sei_cnt[ids]
    out["touches_border"] = c[:, 4] > 0
    return out


def method_mc_rays(labels, particles, sigma=1.0, probe=0.75, step=0.25):
    """Marching cubes of each particle's smoothed mask + label probes along triangle normals."""
    from scipy.ndimage import find_objects, gaussian_filter
    from skimage.measure import marching_cubes

    shape = np.array(labels.shape)
    rows = {}
    pad = int(4 * sigma + 0.5) + 2
    for p0, sl in enumerate(find_objects(particles)):
        if sl is None:
            continue
        p = p0 + 1
        lo = np.array([s.start for s in sl]) - pad
        hi = np.array([s.stop for s in sl]) + pad
        glo, ghi = np.maximum(lo, 0), np.minimum(hi, shape)
        box = np.zeros(tuple(hi - lo), np.float32)
        src = tuple(slice(a, b) for a, b in zip(glo, ghi))
        dst = tuple(slice(a - l, b - l) for a, b, l in zip(glo, ghi, lo))
        box[dst] = particles[src] == p
        verts, faces, vnormals, _ = marching_cubes(gaussian_filter(box, sigma), 0.5)
        verts = verts + lo + 0.5  # array index i is the center of voxel i
        tri = verts[faces]
        centroid = tri.mean(axis=1)
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(cross, axis=1)
        area = 0.5 * norm
        normal = cross / np.where(norm > 0, norm, 1)[:, None]
        outward = np.einsum("ij,ij->i", vnormals[faces].sum(axis=1), normal) >= 0
        normal[~outward] *= -1

        def look(points):
            v = np.floor(points).astype(np.int64)
            inb = np.all((v >= 0) & (v < shape), axis=1)
            v[~inb] = 0
            lab = np.where(inb, labels[tuple(v.T)], 255)
            par = np.where(inb, particles[tuple(v.T)], 0)
            return lab, par

        lab, par = look(centroid + probe * normal)
        cls = np.full(len(lab), -1)
        cls[lab == PORE] = 0
        cls[lab == CBD] = 1
        cls[(lab == GRAPHITE) | ((lab == SILICON) & (par != p))] = 2
        cls[lab == SEI] = 3
        cls[(lab == SILICON) & (par == p)] = -2  # probe still inside: count as free? excluded
        ok = cls >= 0
        tot = area[ok].sum()
        row = {k: area[cls == i].sum() / tot for i, k in enumerate(FRACTIONS)}
        row["area_vox2"] = area.sum()
        row["touches_border"] = bool(np.any(lab == 255))
        sei = np.flatnonzero(cls == 3)
        if len(sei):
            s = np.full(len(sei), probe)
            active = np.ones(len(sei), bool)
            while active.any() and s.max() < 100:
                ids = np.flatnonzero(active)
                s[ids] += step
                lab_s, _ = look(centroid[sei[ids]] + s[ids, None] * normal[sei[ids]])
                active[ids[lab_s != SEI]] = False
            t = s - 0.5 * step
            w = area[sei]
            row["sei_mean_vox"] = float(np.sum(w * t) / w.sum())
            row["sei_std_vox"] = float(np.sqrt(np.sum(w * (t - row["sei_mean_vox"]) ** 2) / w.sum()))
        else:
            row["sei_mean_vox"] = row["sei_std_vox"] = math.nan
        rows[p] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def method_porespy(labels, particles):
    """PoreSpy's interface areas between each particle and each phase region (coverage only)."""
    import porespy as ps

    n = int(particles.max())
    regions = particles.astype(np.int64).copy()
    phase_region = {PORE: n + 1, GRAPHITE: n + 2, CBD: n + 3, SEI: n + 4}
    for ph, r in phase_region.items():
        regions[(particles == 0) & (labels == ph)] = r
    mesh_areas = ps.metrics.region_surface_areas(regions=regions)
    ia = ps.metrics.region_interface_areas(regions=regions, areas=mesh_areas)
    rows = {p: dict.fromkeys(FRACTIONS, 0.0) for p in range(1, n + 1)}
    for (i, j), a in zip(np.asarray(ia.conns) + 1, ia.area):
        for p, q in ((i, j), (j, i)):
            if 1 <= p <= n:
                key = ("free" if q == phase_region[PORE] else "cbd" if q == phase_region[CBD]
                       else "sei" if q == phase_region[SEI] else "contact")
                rows[p][key] += a
    out = pd.DataFrame.from_dict(rows, orient="index")
    tot = out[FRACTIONS].sum(axis=1)
    area = np.asarray(mesh_areas)[:n]
    out = out[FRACTIONS].div(tot, axis=0)
    out["area_vox2"] = area
    out["sei_mean_vox"] = math.nan
    out["touches_border"] = False
    return out


# -- comparison -------------------------------------------------------------------------------------


def score(res, truth):
    inner = [p for p in truth.index[~truth["touches_border"]]
             if p in res.index and not bool(res.loc[p, "touches_border"])]
    row = {"n": len(inner)}
    for c in FRACTIONS:
        e = (res.loc[inner, c] - truth.loc[inner, c]).abs()
        row[f"{c} MAE"], row[f"{c} max"] = e.mean(), e.max()
    rel = (res.loc[inner, "area_vox2"] / truth.loc[inner, "area_vox2"] - 1)
    row["area bias %"], row["area max %"] = 100 * rel.mean(), 100 * rel.abs().max()
    s = [p for p in inner if truth.loc[p, "sei"] > 0]
    got = res.loc[s, "sei_mean_vox"].astype(float)
    if len(s) and got.notna().all():
        row["SEI bias vox"] = float((got - truth.loc[s, "sei_mean_vox"]).mean())
        row["SEI MAE vox"] = float((got - truth.loc[s, "sei_mean_vox"]).abs().mean())
        row["SEI r"] = float(np.corrcoef(got, truth.loc[s, "sei_mean_vox"])[0, 1])
    else:
        row["SEI bias vox"] = row["SEI MAE vox"] = row["SEI r"] = math.nan
    if len(s) and "sei_std_vox" in res and res.loc[s, "sei_std_vox"].notna().all():
        row["SEI std MAE vox"] = float((res.loc[s, "sei_std_vox"] - truth.loc[s, "sei_std_vox"]).abs().mean())
    else:
        row["SEI std MAE vox"] = math.nan
    return row


def timed(fn, labels, particles, repeat):
    times, res = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn(labels, particles)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), res


def available_methods(reference=False):
    methods = {}
    try:
        import tomofuse.analysis  # noqa: F401

        methods["tomofuse"] = method_tomofuse
    except ImportError as exc:
        print(f"tomofuse.analysis not importable ({exc}); skipping it", file=sys.stderr)
    if reference or "tomofuse" not in methods:
        methods["reference"] = method_reference
    methods["faces"] = method_faces
    methods["mc+rays"] = method_mc_rays
    try:
        import porespy  # noqa: F401

        methods["porespy"] = method_porespy
    except ImportError:
        print("porespy not installed (optional, pip install porespy): skipping it", file=sys.stderr)
    return methods


def main(argv=None):
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap_.add_argument("--size", type=int, default=256)
    ap_.add_argument("--n", type=int, default=90)
    ap_.add_argument("--seed", type=int, default=0)
    ap_.add_argument("--radius", type=float, nargs=2, default=(10.0, 16.0), metavar=("MIN", "MAX"),
                     help="particle radius range in voxels (the paper's PXCT resolution: ~14-22)")
    ap_.add_argument("--repeat", type=int, default=3)
    ap_.add_argument("--reference", action="store_true", help="also run the NumPy reference of the contract")
    ap_.add_argument("--only", nargs="*", help="methods to run")
    args = ap_.parse_args(argv)
    t0 = time.perf_counter()
    ph = build(args.size, args.n, args.seed, args.radius)
    t = ph.truth
    print(f"phantom {args.size}^3: {len(t)} particles (r {t['radius_vox'].min():.1f}-{t['radius_vox'].max():.1f} vox), "
          f"{int((t['cbd'] > 0).sum())} with CBD, {int((t['contact'] > 0).sum())} with contacts, "
          f"{int((t['sei'] > 0).sum())} with SEI, built in {time.perf_counter() - t0:.1f} s")
    rows = {}
    for name, fn in available_methods(args.reference).items():
        if args.only and name not in args.only:
            continue
        repeat = 1 if name in ("porespy", "reference") else args.repeat
        try:
            sec, res = timed(fn, ph.labels, ph.particles, repeat)
        except Exception as exc:  # an optional peer failing must not hide the others
            print(f"{name}: failed: {exc!r}", file=sys.stderr)
            continue
        rows[name] = {"seconds": sec, **score(res, t)}
        print(f"  {name}: {sec:.2f} s", file=sys.stderr)
    table = pd.DataFrame.from_dict(rows, orient="index")
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.4f}".format):
        print(table)
    return table


if __name__ == "__main__":
    main()
