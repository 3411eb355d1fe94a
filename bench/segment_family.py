"""A family of independent simulated chains for choosing and checking ``tomofuse.segment``'s defaults.

Each member runs the whole simulated chain of ``tests/segment_chain.py`` (phantom ->
PXCT phase projections and TXTM scan -> reconstructions -> automatic registration ->
fusion) with its parameters drawn, with a fixed seed, from ranges that cover what the
paper's instruments and other samples produce:

- electrode: pristine or cycled, phantom seed, optionally rendered on a grid twice finer
  than the PXCT voxel (the detectors then integrate sub-voxel detail);
- PXCT: PSF FWHM 30-50 nm, phase noise 0.004-0.02 rad per pixel, FBP window hann /
  shepp-logan / ramp;
- TXTM: PSF FWHM 100-170 nm, 3e4-3e5 photons per pixel, the sample turned by up to 6
  degrees relative to the PXCT scan.

Members are cached (``--cache``, default ``bench/.segment_family``) because a chain takes
minutes.  ``python bench/segment_family.py --generate`` builds the cache; without it the
script evaluates ``segment`` + ``label_particles`` on every cached member and prints the
table (Dice per phase inside the sample, particle matching, coverage errors).
``--noise R`` first adds correlated noise to every member's PXCT channel until its noise is
``R`` of the pore-to-silicon span (the members themselves span 0.015-0.07): the same family
at the noise of low-dose or fast scans.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: PXCT voxel of every member's chain (the grid of its fused volume), meters
VOXEL_M = 21.4e-9
sys.path.insert(0, str(HERE.parent / "tests"))


def members(n: int = 10, seed: int = 2026):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(dict(
            name=f"m{i:02d}",
            shape=int(rng.choice([96, 112, 128])),
            cycled=bool(i % 2),
            seed=int(100 + i),
            oversample=2 if i in (3, 6) else 1,
            pxct_noise=float(math.exp(rng.uniform(math.log(0.004), math.log(0.02)))),
            pxct_resolution=float(rng.uniform(30e-9, 50e-9)),
            pxct_filter=str(rng.choice(["hann", "shepp-logan", "ramp"], p=[0.5, 0.3, 0.2])),
            txtm_resolution=float(rng.uniform(100e-9, 170e-9)),
            txtm_photons=float(math.exp(rng.uniform(math.log(3e4), math.log(3e5)))),
            txtm_turn_deg=float(rng.uniform(-6, 6)),
        ))
    return out


def generate(member: dict, cache: Path) -> Path:
    from segment_chain import simulate_chain

    path = cache / f"{member['name']}.npz"
    if path.exists():
        return path
    kw = {k: v for k, v in member.items() if k not in ("name", "shape")}
    n = member["shape"]
    t = time.perf_counter()
    c = simulate_chain((n, n, n), **kw)
    truth = c.electrode.truth
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(tmp, fused=c.fused, truth=c.truth, particles=c.truth_particles, inside=c.inside,
                        tre_m=c.tre_m, truth_table=json.dumps(truth.reset_index().to_dict(orient="list")),
                        member=json.dumps(member), info=json.dumps(c.info, default=float))
    tmp.rename(path)
    print(f"{member['name']}: generated in {time.perf_counter() - t:.0f} s, TRE mean {c.tre_m.mean() * 1e9:.1f} nm",
          flush=True)
    return path


def _interior_particles(particles: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Ids of particles lying wholly inside ``usable`` and not touching the grid's faces."""
    from scipy import ndimage

    bad = ~ndimage.binary_erosion(usable, iterations=1, border_value=0)
    ids = np.unique(particles[bad & (particles > 0)])
    return np.setdiff1d(np.unique(particles[particles > 0]), ids)


def coverage_errors(seg_labels, seg_particles, truth_particles, truth_table: dict, usable, *, cycled: bool,
                    truth_labels=None, voxel_size: float = VOXEL_M) -> dict:
    """Coverage of the segmented particles against the phantom's exact per-particle truth.

    Only true particles wholly inside ``usable`` (pillar and TXTM field of view, off the grid
    faces) that are matched (IoU >= 0.5) by a segmented particle count. Returns the area-weighted
    free / CBD / contact / SEI fractions of the segmented and true particles, their differences,
    and for cycled electrodes the per-particle mean SEI thickness error (median and 90th
    percentile of the relative error, and the relative error of the area-weighted mean).
    With ``truth_labels`` also the free / CBD fractions of the true labels as voxels
    (``*_vox``) and with their CBD grown by one voxel into the pore (``*_vox_g1``).
    """
    import pandas as pd

    from tomofuse.analysis import surface_coverage, sei_thickness
    from tomofuse.segment import match_particles

    interior = _interior_particles(truth_particles, usable)
    mp = match_particles(seg_particles, truth_particles)
    pairs = {int(t): int(f) for f, t in mp["pairs"] if t in set(interior.tolist())}
    if not pairs:
        return {"n_compared": 0}
    table, surface = surface_coverage(seg_labels, seg_particles, voxel_size=voxel_size, return_surface=True)
    truth = pd.DataFrame(truth_table).set_index("particle")
    found = table.loc[[pairs[t] for t in pairs]]
    true = truth.loc[list(pairs)]
    out = {"n_compared": len(pairs), "n_interior": int(interior.size)}
    for c in ("free", "cbd", "contact", "sei"):
        f = float((found[c] * found["area_m2"]).sum() / found["area_m2"].sum())
        t = float((true[c] * true["area_m2"]).sum() / true["area_m2"].sum())
        out[f"{c}_seg"], out[f"{c}_true"], out[f"{c}_err"] = f, t, f - t
    out["area_ratio"] = float(found["area_m2"].sum() / true["area_m2"].sum())
    # The same particles' coverage from the TRUE labels, as voxels (what any voxel labeling can reach at
    # best) and with the CBD grown by one voxel into the pore (what a labeling that cannot resolve a
    # one-voxel pore gap between CBD and silicon sees): where the segmented coverage falls between the
    # two, its error is the imaging's resolution, not the classification.
    if truth_labels is not None:
        import edt

        ids = np.array(list(pairs), dtype=truth_particles.dtype)
        own = np.where(np.isin(truth_particles, ids), truth_particles, 0)
        exact = np.asarray(truth_labels).astype(np.uint8)
        grown = exact.copy()
        grown[(exact == 0) & (edt.edt(exact != 3) <= 1.0)] = 3
        for tag, lab in (("vox", exact), ("vox_g1", grown)):
            tab = surface_coverage(lab, own, voxel_size=voxel_size).loc[list(pairs)]
            for c in ("free", "cbd"):
                out[f"{c}_{tag}"] = float((tab[c] * tab["area_m2"]).sum() / tab["area_m2"].sum())
    if cycled:
        th = sei_thickness(surface=surface).loc[[pairs[t] for t in pairs]]
        tm = true["sei_mean_m"].to_numpy()
        fm = th["mean_m"].to_numpy()
        ok = np.isfinite(tm) & np.isfinite(fm) & (tm > 0)
        rel = np.abs(fm[ok] / tm[ok] - 1)
        out["sei_thickness_rel_median"] = float(np.median(rel)) if rel.size else float("nan")
        out["sei_thickness_rel_p90"] = float(np.percentile(rel, 90)) if rel.size else float("nan")
        w = true["area_m2"].to_numpy()[ok] * true["sei"].to_numpy()[ok]
        out["sei_thickness_mean_rel"] = float(np.sum(w * fm[ok]) / np.sum(w * tm[ok]) - 1) if rel.size else float("nan")
    return out


def _load(path: Path):
    """A cached member: the arrays, its parameters, the fused volume with channel 0 as delta, and the
    voxels the truth is compared on (inside the sample and the TXTM field of view)."""
    d = np.load(path)
    fused = d["fused"].copy()
    fused[0] = -fused[0]  # phase (-k delta) -> delta-like
    return d, json.loads(str(d["member"])), fused, d["inside"] & np.isfinite(fused[1])


def _pairs(cycled: bool) -> list[list[int]]:
    """The label pairs that the TXTM evidence decides, in segment's order."""
    from tomofuse.segment._classify import txtm_pairs

    return txtm_pairs(cycled).tolist()


def noise_to_span(fused: np.ndarray, truth: np.ndarray, usable: np.ndarray) -> tuple[float, float]:
    """The PXCT channel's noise (std in the pore three voxels from any other phase) and its
    pore-to-silicon level span (medians there), in the channel's units."""
    from scipy import ndimage

    def deep(k):
        return ndimage.binary_erosion(truth == k, iterations=3) & usable

    pore, silicon = deep(0), deep(2)
    return float(np.std(fused[0][pore])), float(np.median(fused[0][silicon]) - np.median(fused[0][pore]))


def add_pxct_noise(fused: np.ndarray, truth: np.ndarray, usable: np.ndarray, ratio: float, seed: int = 1) -> float:
    """Add correlated Gaussian noise (white noise blurred by 0.8 voxel, like a filtered back-projection's)
    to the PXCT channel of ``fused`` in place until its noise is ``ratio`` of the pore-to-silicon span;
    returns the ratio reached (the member's own where that is already higher)."""
    from scipy import ndimage

    n0, span = noise_to_span(fused, truth, usable)
    add = (ratio * span) ** 2 - n0 ** 2
    if add > 0:
        z = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(fused.shape[1:]), 0.8)
        fused[0] += (z * (math.sqrt(add) / z.std())).astype(fused.dtype)
    return max(ratio, n0 / span)


def evaluate(path: Path, channels=("both",), coverage: bool = True, noise: float = 0.0) -> list[dict]:
    from tomofuse import Phase
    from tomofuse.segment import label_particles, match_particles, segment

    d, member, fused, usable = _load(path)
    inside = d["inside"]
    noise = add_pxct_noise(fused, d["truth"], usable, noise)  # the member's own ratio when noise <= its own
    rows = []
    for ch in channels:
        t = time.perf_counter()
        s = segment(fused, voxel_size=VOXEL_M, cycled=member["cycled"], channels=ch, threads=2)
        sec = time.perf_counter() - t
        dice = s.dice(d["truth"], mask=usable)
        parts = label_particles(s.labels, voxel_size=VOXEL_M)
        mp = match_particles(np.where(inside, parts, 0), d["particles"])
        row = dict(member=member["name"], cycled=member["cycled"], channels=ch, seconds=sec, pxct_noise_to_span=noise,
                   **{p.name.lower(): dice[p] for p in Phase},
                   particles_found=mp["n_found"], particles_true=mp["n_true"],
                   matched=mp["matched_fraction"], confusion=s.confusion(d["truth"], mask=usable).tolist())
        if coverage and ch == "both":
            row.update(coverage_errors(s.labels, np.where(inside, parts, 0), d["particles"],
                                       json.loads(str(d["truth_table"])), usable, cycled=member["cycled"],
                                       truth_labels=d["truth"]))
        rows.append(row)
    return rows


def _model_arrays(fused: np.ndarray, seg, *, voxel_size: float, cycled: bool) -> dict:
    """The model ``seg`` was labeled with, in the standardized units its ICM works in: the two channels,
    TXTM validity, levels, noise, correlation volumes, PSF sigmas (voxels) and the data weight ``w``."""
    from tomofuse.segment import _classify as C

    model = seg.thresholds
    units = C._model_units(model, [0, 1, 2, 3] + ([4] if cycled else []))
    txtm = ((fused[1] - units[1, 0]) / units[1, 1]).astype(np.float32)
    noise = np.asarray(model.noise) / units[:, 1]
    corr = np.asarray(model.correlation_volume)
    return {"pxct": ((fused[0] - units[0, 0]) / units[0, 1]).astype(np.float32), "txtm": txtm,
            "valid": np.isfinite(txtm), "levels": (np.asarray(model.levels) - units[:, :1]) / units[:, 1:],
            "noise": noise, "corr": corr, "w": 1.0 / (2.0 * noise[0] ** 2 * corr[0]),
            "sig": {c: tuple(float(x) for x in np.asarray(model.psf_sigma[c]) / voxel_size) for c in (0, 1)}}


def energy_check(path: Path) -> dict:
    """Is a segmentation error the optimizer's or the model's?  The energy ``segment``'s ICM minimizes
    (data term + pair unaries of the TXTM evidence, and the smoothness term), under the model
    ``segment`` fitted, for its own labels and for the phantom's true labels (the segmentation's
    labels outside the sample), each with the TXTM evidence computed from those labels.  If the true
    labels have the higher energy, a better optimizer would not find them: the model (forward model +
    prior) prefers the segmentation.  Also the residual of the true labels' forward model in noise
    units by distance to a phase boundary (1.0 = the model explains the data down to the noise).
    Reads the segmentation's internals (a diagnostic of the estimator, not an API)."""
    from scipy import ndimage

    from tomofuse import _core
    from tomofuse.segment import _classify as C
    from tomofuse.segment import segment

    d, member, fused, usable = _load(path)
    cycled = member["cycled"]
    v = VOXEL_M
    s = segment(fused, voxel_size=v, cycled=cycled, threads=2)
    truth = np.where(usable, d["truth"], s.labels).astype(np.uint8)
    model = s.thresholds
    a = _model_arrays(fused, s, voxel_size=v, cycled=cycled)
    pxct, txtm, valid, levels, noise, corr, sig, w = (a[k] for k in ("pxct", "txtm", "valid", "levels", "noise",
                                                                      "corr", "sig", "w"))
    lev32 = np.nan_to_num(levels[0], nan=0.0).astype(np.float32)
    pairs = np.array(_pairs(cycled), np.uint8)
    out = {"member": member["name"], "cycled": cycled, "voxels_differing": int(np.count_nonzero(s.labels != truth))}
    for name, lab in (("segmentation", s.labels), ("truth", truth)):
        unary = C._txtm_evidence(txtm, valid, lab, levels[1], sig[1], noise[1], corr[1], cycled, 2)
        total = _core.icm_energy(pxct, lab, lev32, sig[0], pairs=pairs, unary=unary, data_weight=w,
                                 smoothness=model.smoothness, threads=2)
        data = _core.icm_energy(pxct, lab, lev32, sig[0], pairs=pairs, unary=unary, data_weight=w, smoothness=0.0,
                                threads=2)
        out[name] = {"data_and_unary": data, "smoothness": total - data, "total": total}
    pred = C.blur(lev32[truth], sig[0], threads=2)
    r = (pxct - pred) / noise[0]
    # voxels with an unlike 6-neighbor (the border replicates, so it adds none)
    face = ndimage.generate_binary_structure(3, 1)
    edge = ndimage.maximum_filter(truth, footprint=face, mode="nearest") != ndimage.minimum_filter(
        truth, footprint=face, mode="nearest")
    dist = ndimage.distance_transform_edt(~edge)
    inner = usable & ndimage.binary_erosion(usable, iterations=4)
    out["truth_residual_rms_over_noise"] = {
        f"{a}-{b}": float(np.sqrt(np.mean(r[inner & (dist >= a) & (dist < b)] ** 2)))
        for a, b in ((0, 0.5), (0.5, 1.5), (1.5, 2.5), (2.5, 99))}
    return out


def mean_field_mpm(fused: np.ndarray, seg, *, voxel_size: float, cycled: bool, iterations: int = 150,
                   damping: float = 0.1) -> np.ndarray:
    """Labels of the marginal posterior mode of ``segment``'s energy, by mean field, started from ``seg``.

    The energy ``seg`` minimized (data term of the blurred PXCT model, TXTM pair unaries,
    ``smoothness`` per unlike 6-neighbor pair, SEI only within ``sei_max_distance`` of silicon), read
    as a posterior ``exp(-E)``; each voxel carries a distribution ``q`` over the labels, updated
    ``q <- (1 - damping) q + damping softmax(-e)`` with, for label ``k`` at voxel ``i``,
    ``e = w (-2 (m_k - mbar_i) g_i + (m_k - mbar_i)^2 h_ii) - smoothness * sum_6-neighbors q_j(k) + u_k``
    (``mbar`` the expected level, ``g = H^T (data - H mbar)``, ``h_ii`` the PSF's sum of squares); all
    voxels at once, so the damping keeps it stable (0.5 oscillated into whole wrong phases on a
    pristine member).  The labels are ``argmax q``: per voxel the most probable label, which is what
    Dice counts, where ICM's MAP labels are the most probable labeling as a whole.  Reads the
    segmentation's internals (an experiment of the estimator, not an API).
    """
    from tomofuse.segment import _classify as C
    from tomofuse.segment._fit import psf_sum_of_squares

    v = voxel_size
    model = seg.thresholds
    ks = [0, 1, 2, 3] + ([4] if cycled else [])
    a = _model_arrays(fused, seg, voxel_size=v, cycled=cycled)
    pxct, txtm, valid, levels, noise, corr, sig, w = (a[k] for k in ("pxct", "txtm", "valid", "levels", "noise",
                                                                      "corr", "sig", "w"))
    beta = model.smoothness
    labels = seg.labels
    n_labels = 5
    lev = np.nan_to_num(levels[0], nan=0.0).astype(np.float32)
    # the pair unaries as the core applies them: pair (a, b) with value d costs b max(d, 0), a max(-d, 0)
    pair_u = C._txtm_evidence(txtm, valid, labels, levels[1], sig[1], noise[1], corr[1], cycled, 2)
    unary = np.zeros((n_labels,) + labels.shape, np.float32)
    for p, (lo, hi) in enumerate(_pairs(cycled)):
        unary[hi] += np.maximum(pair_u[p], 0)
        unary[lo] += np.maximum(-pair_u[p], 0)
    allowed = np.ones((n_labels,) + labels.shape, bool)
    allowed[[k for k in range(n_labels) if k not in ks]] = False
    if cycled:
        allowed[4] &= C.distance_transform(labels != 2, threads=2) <= model.sei_max_distance / v
    h_ii = psf_sum_of_squares(sig[0])
    q = np.stack([(labels == k).astype(np.float32) for k in range(n_labels)])
    q = (0.9 * q + 0.1 * allowed / allowed.sum(0)) * allowed
    q /= q.sum(0)
    e = np.empty_like(q)
    for _ in range(iterations):
        mbar = np.tensordot(lev, q, axes=(0, 0)).astype(np.float32)
        g = C.blur(pxct - C.blur(mbar, sig[0], threads=2), sig[0], adjoint=True, threads=2)
        for k in range(n_labels):
            dm = lev[k] - mbar
            nb = np.zeros(labels.shape, np.float32)
            qk = q[k]
            nb[1:] += qk[:-1]
            nb[:-1] += qk[1:]
            nb[:, 1:] += qk[:, :-1]
            nb[:, :-1] += qk[:, 1:]
            nb[:, :, 1:] += qk[:, :, :-1]
            nb[:, :, :-1] += qk[:, :, 1:]
            e[k] = w * (-2.0 * dm * g + dm * dm * h_ii) - beta * nb + unary[k]
        e = np.where(allowed, e, np.inf)
        e -= e.min(0)
        new = np.exp(-e)
        new /= new.sum(0)
        q = (1.0 - damping) * q + damping * new
    return np.argmax(q, axis=0).astype(np.uint8)


def mpm_check(path: Path, iterations: int = 150, damping: float = 0.1) -> dict:
    """Dice and coverage errors of ``segment``'s labels and of ``mean_field_mpm`` started from them."""
    from tomofuse import Phase
    from tomofuse.segment import dice, label_particles, segment

    d, member, fused, usable = _load(path)
    v = VOXEL_M
    s = segment(fused, voxel_size=v, cycled=member["cycled"], threads=2)
    t = time.perf_counter()
    mpm = mean_field_mpm(fused, s, voxel_size=v, cycled=member["cycled"], iterations=iterations, damping=damping)
    out = {"member": member["name"], "cycled": member["cycled"], "mpm_seconds": time.perf_counter() - t,
           "changed": float(np.mean(mpm != s.labels))}
    for name, lab in (("map", s.labels), ("mpm", mpm)):
        dc = dice(lab, d["truth"], mask=usable)
        parts = label_particles(lab, voxel_size=v)
        cov = coverage_errors(lab, np.where(d["inside"], parts, 0), d["particles"], json.loads(str(d["truth_table"])),
                              usable, cycled=member["cycled"])
        out[name] = {**{p.name.lower(): dc[p] for p in Phase}, **{k: cov[k] for k in ("free_err", "cbd_err", "sei_err")}}
    return out


def _mpm_line(e: dict) -> str:
    return (f"{e['member']} {'cyc' if e['cycled'] else 'pri'} changed {e['changed']:.3f} ({e['mpm_seconds']:.0f} s) | "
            + " | ".join(name.upper() + " " + " ".join(f"{k} {e[name][k]:.3f}" for k in
                                                       ("pore", "graphite", "silicon", "cbd", "sei"))
                         + " coverage error free {:+.3f} cbd {:+.3f} sei {:+.3f}".format(
                             e[name]["free_err"], e[name]["cbd_err"], e[name]["sei_err"]) for name in ("map", "mpm")))


def _energy_line(e: dict) -> str:
    seg, tru = e["segmentation"], e["truth"]
    return (f"{e['member']} {'cyc' if e['cycled'] else 'pri'} energy seg {seg['total']:.0f} "
            f"(data+unary {seg['data_and_unary']:.0f}, smoothness {seg['smoothness']:.0f}) | truth "
            f"{tru['total']:.0f} ({tru['data_and_unary']:.0f}, {tru['smoothness']:.0f}) | "
            f"{e['voxels_differing']} voxels differ | true labels' residual / noise by distance to a boundary: "
            + " ".join(f"{k} {v:.2f}" for k, v in e["truth_residual_rms_over_noise"].items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=HERE / ".segment_family")
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--channels", nargs="*", default=["both"])
    ap.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    ap.add_argument("--energy", action="store_true", help="energy of the segmentation vs the true labels (energy_check)")
    ap.add_argument("--mpm", action="store_true", help="segment's MAP labels vs their mean-field MPM (mpm_check)")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="add PXCT noise up to this fraction of the pore-to-silicon span (add_pxct_noise)")
    a = ap.parse_args(argv)
    fam = [mm for mm in members(a.members) if not a.only or mm["name"] in a.only]
    if a.generate:
        for mm in fam:
            generate(mm, a.cache)
        return
    if a.mpm or a.energy:
        check, line = (mpm_check, _mpm_line) if a.mpm else (energy_check, _energy_line)
        for mm in fam:
            p = a.cache / f"{mm['name']}.npz"
            if p.exists():
                print(line(check(p)), flush=True)
        return
    rows = []
    for mm in fam:
        p = a.cache / f"{mm['name']}.npz"
        if p.exists():
            rows.extend(evaluate(p, a.channels, noise=a.noise))
            r = rows[-1]
            print(f"{r['member']} {'cyc' if r['cycled'] else 'pri'} {r['channels']:5s} noise {r['pxct_noise_to_span']:.3f} "
                  + " ".join(f"{k}={r[k]:.3f}" for k in ("pore", "graphite", "silicon", "cbd", "sei"))
                  + f" particles {r['particles_found']}/{r['particles_true']} matched {r['matched']:.2f}"
                  + f" {r['seconds']:.0f}s", flush=True)
            if "free_err" in r:
                print("    coverage (%d interior particles): " % r["n_compared"]
                      + " ".join(f"{c} {r[c + '_seg']:.3f}/{r[c + '_true']:.3f}" for c in ("free", "cbd", "contact", "sei"))
                      + (f" SEI thickness rel. err median {r['sei_thickness_rel_median']:.3f}"
                         f" mean {r['sei_thickness_mean_rel']:+.3f}" if r["cycled"] else "")
                      + f"; true labels: free {r['free_vox']:.3f} as voxels, {r['free_vox_g1']:.3f} with the CBD"
                        f" grown by a voxel", flush=True)
    if rows:
        import pandas as pd

        df = pd.DataFrame(rows)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1, default=float))
        print(df.groupby("channels")[["pore", "graphite", "silicon", "cbd", "sei", "matched"]].agg(["median", "min"]))


if __name__ == "__main__":
    main()
