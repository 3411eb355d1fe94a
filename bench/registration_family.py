"""Registration on a family of independent PXCT/TXTM pairs: tomofuse's default vs rigid vs elastix (issue 15).

Each member is a pair of tests/register_pairs.py (one phantom electrode rendered PXCT-like and
TXTM-like through a known rotation + shift + smooth deformation) with its parameters drawn from
fixed seeds within the ranges the issue names:

  field of view       2-8 um (PXCT voxels 21.4 nm, coarser where needed to keep <= 160^3)
  TXTM voxel          1.15-1.45x the PXCT voxel; TXTM resolution 4-5.5 TXTM voxels (FWHM),
                      PXCT resolution 1.87 PXCT voxels (40 nm at 21.4 nm)
  rotation            random axis, 0-10 degrees; shift +-10 % of the field of view per axis
  deformation         3 sine waves per component, wavelengths in a band within 0.5-4 um,
                      maximum 10-60 nm (and three members with none)
  noise               2-10 % of each modality's contrast range, drawn per modality

Per member: TRE (mean, p95 over solid voxels against the known map) of tomofuse's rigid stage and
of its final (default) map, of elastix's rigid + multi-resolution B-spline (the paper's recipe,
after tomofuse's automatic start) at each of --elastix-grids (best one reported), CPU seconds.

Results of each run are kept per member and label in --store (JSON), so that a later run (e.g.
``--label after --methods tomofuse``) is tabulated next to earlier ones (``--label before``,
elastix).  The table is written to bench/registration_family_results.txt.

    nice python bench/registration_family.py --label before --methods tomofuse elastix
    nice python bench/registration_family.py --label after --methods tomofuse
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import register_pairs as rp  # noqa: E402

from tomofuse.register import RegistrationOptions, RegistrationWarning, register  # noqa: E402
from tomofuse.register._elastix import available as elastix_available  # noqa: E402

def member(i: int) -> dict:
    return rp.family_member(i)


def build(p: dict, cache: str | None):
    path = os.path.join(cache, f"member{p['index']:02d}.pkl") if cache else None
    if path and os.path.exists(path):
        with open(path, "rb") as fh:
            return pickle.load(fh)
    pair = rp.make_family_pair(p)
    if path:
        os.makedirs(cache, exist_ok=True)
        with open(path + ".tmp", "wb") as fh:
            pickle.dump(pair, fh)
        os.replace(path + ".tmp", path)
    return pair


def tre(pair, transform, pts):
    mapped = np.array([transform.TransformPoint(tuple(q[::-1])) for q in pts])[:, ::-1]
    e = pair.tre(mapped, pts) * 1e9
    return {"mean_nm": float(e.mean()), "p95_nm": float(np.percentile(e, 95))}


def run(pair, pts, threads, **kw):
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", RegistrationWarning)
        reg = register(pair.fixed, pair.moving, fixed_voxel_size=pair.fixed_voxel_size,
                       moving_voxel_size=pair.moving_voxel_size, seed=0, threads=threads, **kw)
    row = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "stages": list(reg.stages),
           "final": tre(pair, reg.transform, pts), "warnings": [str(x.message)[:200] for x in w],
           "moving_resolution_nm": (reg.parameters.get("moving_resolution_m") or 0) * 1e9}
    for k, t in reg.stage_transforms.items():
        row[k] = tre(pair, t, pts)
    row["stage_cpu_s"] = {k: v["cpu_s"] for k, v in reg.metrics.items() if isinstance(v, dict) and "cpu_s" in v}
    bm = reg.metrics.get("bspline", {})
    if "levels" in bm:
        row["levels"] = [{k: lv.get(k) for k in ("grid_m", "accepted", "holdout_total_gain", "saturated_coefficients")}
                         | {"tre": tre(pair, lv["_transform"], pts) if "_transform" in lv else None}
                         for lv in bm["levels"]]
    elif "grid_m" in bm:
        row["levels"] = [{"grid_m": bm["grid_m"], "accepted": bm.get("accepted"),
                          "holdout_total_gain": bm.get("holdout_total_gain"),
                          "saturated_coefficients": bm.get("saturated_coefficients")}]
    return row


def explore(pair, pts, threads, grid=None):
    """Every B-spline level fitted (each on top of the previous fit, accepted or not): TRE and held-out gains."""
    from tomofuse.register import _stages
    from tomofuse.register._convert import UNIT, check_origin, check_voxel_size, scale_transform

    fsp = check_voxel_size(pair.fixed_voxel_size, "fixed_voxel_size")
    msp = check_voxel_size(pair.moving_voxel_size, "moving_voxel_size")
    o = check_origin(None, "fixed_origin")
    c0 = time.process_time()
    sr = _stages.SitkRegistration(pair.fixed.astype(np.float32), pair.moving.astype(np.float32), fsp, msp, o, o, None,
                                  ("rigid", "bspline"), "auto", grid, None, 0, threads, None)
    sr._explore = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)
        reg = sr.run()
    if "levels" not in reg.metrics["bspline"]:
        raise SystemExit("--methods explore needs the coarse-to-fine B-spline levels of the branch `reg` "
                         "(d417751), which main did not adopt (see bench/registration_family_results.txt)")
    out = {"cpu_s": time.process_time() - c0, "rigid": tre(pair, reg.stage_transforms["rigid"], pts), "levels": []}
    for lv, (_, t) in zip(reg.metrics["bspline"]["levels"], sr._explore):
        out["levels"].append({"grid_m": lv["grid_m"], "gains": lv["holdout_gains"], "ok": lv["accepted"],
                              "saturation": lv["saturated_coefficients"], "cpu_s": lv["cpu_s"],
                              "tre": tre(pair, scale_transform(t, UNIT), pts)})
    return out


def load_store(path):
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return {}


def save_store(path, store):
    with open(path + ".tmp", "w") as fh:
        json.dump(store, fh, indent=1)
    os.replace(path + ".tmp", path)


def table(store, labels, members):
    def cell(s):
        return f"{s['mean_nm']:5.1f}/{s['p95_nm']:5.1f}" if s else "    -/    -"

    lines = []
    hdr = (f"{'#':>2} {'FOV um':>6} {'N':>4} {'vox nm':>6} {'res nm':>6} {'rot':>5} {'warp':>5} {'wl um':>9} "
           f"{'noise %':>7} | {'rigid':>11}")
    for lab in labels:
        hdr += f" | {lab:>11} {'CPU-s':>5}"
    hdr += f" | {'elastix best':>12} {'grid':>5} {'CPU-s':>5}"
    lines.append(hdr)
    lines.append("-" * len(hdr))
    agg = {lab: [] for lab in labels}
    agg["rigid"], agg["elastix"] = [], []
    for p in members:
        key = str(p["index"])
        rec = store.get(key, {})
        rigid = next((rec[lab]["rigid"] for lab in labels[::-1] if lab in rec), None)
        el = rec.get("elastix", {})
        best = min(el.values(), key=lambda r: r["final"]["mean_nm"]) if el else None
        bgrid = min(el, key=lambda g: el[g]["final"]["mean_nm"]) if el else None
        line = (f"{p['index']:2d} {p['fov'] * 1e6:6.2f} {p['fixed_shape']:4d} {p['fixed_voxel_size'] * 1e9:6.1f} "
                f"{p['moving_resolution'] * 1e9:6.0f} {p['angle_deg']:5.1f} {p['max_deformation'] * 1e9:5.1f} "
                f"{p['wavelength'][0] * 1e6:4.2f}-{p['wavelength'][1] * 1e6:4.2f} "
                f"{p['fixed_noise'] * 100:3.0f}/{p['moving_noise'] * 100:3.0f} | {cell(rigid)}")
        if rigid:
            agg["rigid"].append(rigid)
        for lab in labels:
            r = rec.get(lab)
            line += f" | {cell(r['final'] if r else None)} {r['cpu_s'] if r else float('nan'):5.1f}"
            if r:
                agg[lab].append(r["final"])
        if best:
            agg["elastix"].append(best["final"])
            cpu = best["cpu_s"]
            line += f" | {cell(best['final']):>12} {float(bgrid) * 1e9:5.0f} {cpu:5.1f}"
        lines.append(line)
    lines.append("-" * len(hdr))
    for name in ["rigid"] + list(labels) + ["elastix"]:
        v = agg[name]
        if not v:
            continue
        m = np.array([s["mean_nm"] for s in v])
        q = np.array([s["p95_nm"] for s in v])
        lines.append(f"{name:>12}: TRE mean median {np.median(m):5.2f} worst {m.max():5.2f} nm | "
                     f"p95 median {np.median(q):5.2f} worst {q.max():5.2f} nm  ({len(v)} members)")
    for lab in labels:
        diffs_r, diffs_e = [], []
        for p in members:
            rec = store.get(str(p["index"]), {})
            if lab not in rec:
                continue
            f = rec[lab]["final"]["mean_nm"]
            diffs_r.append(f - rec[lab]["rigid"]["mean_nm"])
            el = rec.get("elastix", {})
            if el:
                diffs_e.append(f - min(r["final"]["mean_nm"] for r in el.values()))
        if diffs_r:
            lines.append(f"{lab:>12}: final - rigid (mean TRE) worst {max(diffs_r):+5.2f} nm; final - elastix best "
                         f"worst {max(diffs_e) if diffs_e else float('nan'):+5.2f} nm, members above elastix: "
                         f"{sum(d > 0 for d in diffs_e)}/{len(diffs_e)}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, nargs="*", default=None)
    ap.add_argument("--methods", nargs="*", default=["tomofuse", "elastix"], choices=["tomofuse", "elastix", "explore"])
    ap.add_argument("--label", default="default")
    ap.add_argument("--labels", nargs="*", default=None, help="labels to tabulate (default: all stored)")
    ap.add_argument("--elastix-grids", type=float, nargs="*", default=[640e-9, 1280e-9])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=os.environ.get("TOMOFUSE_FAMILY_CACHE", "/tmp/registration_family"))
    ap.add_argument("--store", default=os.path.join(HERE, "registration_family_results.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "registration_family_results.txt"))
    a = ap.parse_args(argv)
    members = [member(i) for i in range(rp.FAMILY_MEMBERS)]
    todo = members if a.members is None else [members[i] for i in a.members]
    store = load_store(a.store)
    for p in todo:
        if not a.methods:
            break
        t0 = time.perf_counter()
        pair = build(p, a.cache)
        pts = pair.foreground_points(border=60e-9, max_points=20000)
        print(f"member {p['index']}: {p['fixed_shape']}^3 / {pair.moving.shape[0]}^3, FOV {p['fov'] * 1e6:.2f} um, "
              f"rot {p['angle_deg']:.1f} deg, warp {p['max_deformation'] * 1e9:.0f} nm "
              f"({p['wavelength'][0] * 1e6:.2f}-{p['wavelength'][1] * 1e6:.2f} um) [{time.perf_counter() - t0:.0f} s]",
              flush=True)
        rec = store.setdefault(str(p["index"]), {})
        rec["params"] = p
        if "tomofuse" in a.methods:
            row = run(pair, pts, a.threads)
            rec[a.label] = row
            print(f"  {a.label}: rigid {row['rigid']['mean_nm']:.2f}/{row['rigid']['p95_nm']:.2f}, final "
                  f"{row['final']['mean_nm']:.2f}/{row['final']['p95_nm']:.2f} nm, kept {row['stages']}, "
                  f"{row['cpu_s']:.1f} CPU-s", flush=True)
            for lv in row.get("levels", []):
                print("     level", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in lv.items()})
        if "explore" in a.methods:
            ex = explore(pair, pts, a.threads)
            rec.setdefault("explore", {})[a.label] = ex
            print(f"  explore[{a.label}]: rigid {ex['rigid']['mean_nm']:.2f}/{ex['rigid']['p95_nm']:.2f} nm, "
                  f"{ex['cpu_s']:.1f} CPU-s", flush=True)
            for lv in ex["levels"]:
                print(f"     {lv['grid_m'] * 1e9:5.0f} nm: TRE {lv['tre']['mean_nm']:6.2f}/{lv['tre']['p95_nm']:6.2f} "
                      f"gains MI {lv['gains']['mattes']:+.2e} edges {lv['gains']['edges']:+.2e} ok {lv['ok']} "
                      f"sat {lv['saturation']:.2f} {lv['cpu_s']:.1f} CPU-s", flush=True)
        if "elastix" in a.methods and elastix_available():
            el = rec.setdefault("elastix", {})
            for g in a.elastix_grids:
                row = run(pair, pts, a.threads, options=RegistrationOptions(backend="elastix", bspline_grid=g))
                el[repr(g)] = row
                print(f"  elastix {g * 1e9:.0f} nm: {row['final']['mean_nm']:.2f}/{row['final']['p95_nm']:.2f} nm, "
                      f"{row['cpu_s']:.1f} CPU-s", flush=True)
        save_store(a.store, store)
    labels = a.labels if a.labels is not None else sorted(
        {k for r in store.values() for k in r if k not in ("params", "elastix", "explore")},
        key=lambda s: (s != "before", s))
    text = table(store, labels, members)
    head = ("Registration family (bench/registration_family.py): TRE mean/p95 in nm over solid voxels; "
            "rigid = tomofuse's rigid stage;\n"
            f"elastix best = the better of rigid + multi-resolution B-spline at grids "
            f"{', '.join(f'{g * 1e9:.0f}' for g in a.elastix_grids)} nm (after tomofuse's start); CPU-s per run.\n")
    print(head + text)
    with open(a.out + ".tmp", "w") as fh:
        fh.write(head + text + "\n")
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
