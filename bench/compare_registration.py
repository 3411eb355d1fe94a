"""Registration: tomofuse vs elastix on simulated PXCT/TXTM pairs with a known transform (issue 5).

Pairs (tests/register_pairs.py): one phantom electrode rendered as a PXCT-like volume
(delta at 6.2 keV, 40 nm FWHM, 21.4 nm voxels, 5 % noise) and a TXTM-like one (beta at
8.4 keV -- another phase ordering --, 130 nm FWHM, 27.5 nm voxels, 5 % noise) through a
known rotation + shift + smooth deformation.  Reported per method: TRE (mean, p95, max)
over solid voxels against the known map, for every stage; the TRE of the best possible
rigid map (least-squares fit of the truth); Dice per phase of the TXTM labels warped onto
the PXCT grid; CPU and wall seconds per stage.

  main pair     --size 160 (125^3 TXTM), 3.5 deg about a skew axis, ~6 TXTM voxels shift,
                smooth deformation of --deformation (32 nm) at most
  zero pair     the same without deformation: is the final map ever worse than rigid?
  trials        --trials N random misalignments (each rotation-vector component uniform in
                +-10 deg, each shift component in +-15 % of the field of view) on a
                --trial-size pair (no deformation), rigid stage only: success = rigid TRE
                mean < 20 nm (the right basin: a wrong one is >= 100 nm off)
  elastix       itk-elastix (optional): tomofuse's initial alignment, then the paper's
                recipe (Euler + B-spline, Advanced Mattes MI) with a --elastix-grid grid

Run from the repository root, once, niced::

    nice python bench/compare_registration.py [--size 160] [--trials 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import register_pairs as rp  # noqa: E402

from tomofuse import Phase  # noqa: E402
from tomofuse.register import Registration, RegistrationOptions, RegistrationWarning, register  # noqa: E402
from tomofuse.register._elastix import available as elastix_available  # noqa: E402


#: Initial-alignment trials: the rigid result is in the right basin (a wrong one is >= 100 nm off).
SUCCESS_NM = 20.0


def tre_stats(pair, transform, pts):
    mapped = np.array([transform.TransformPoint(tuple(q[::-1])) for q in pts])[:, ::-1]
    e = pair.tre(mapped, pts) * 1e9
    return {"mean_nm": float(e.mean()), "p95_nm": float(np.percentile(e, 95)), "max_nm": float(e.max())}


def best_rigid(pair, pts):
    y = pair.truth(pts)
    ca, cb = pts.mean(0), y.mean(0)
    u, _, vt = np.linalg.svd((pts - ca).T @ (y - cb))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    e = np.linalg.norm((pts - ca) @ r.T + cb - y, axis=1) * 1e9
    return {"mean_nm": float(e.mean()), "p95_nm": float(np.percentile(e, 95)), "max_nm": float(e.max())}


def dice(reg: Registration, pair):
    warped = reg.resample(pair.moving_labels, interpolator="nearest", default=255)
    inside = warped != 255
    out = {}
    for p in Phase:
        a = (warped == p) & inside
        b = (pair.fixed_labels == p) & inside
        s = a.sum() + b.sum()
        if s:
            out[p.name.lower()] = float(2 * (a & b).sum() / s)
    return out


def run(pair, label, pts, **kw):
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", RegistrationWarning)
        reg = register(pair.fixed, pair.moving, fixed_voxel_size=pair.fixed_voxel_size,
                       moving_voxel_size=pair.moving_voxel_size, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"method": label, "wall_s": wall, "cpu_s": cpu, "stages_kept": list(reg.stages),
           "warnings": [str(x.message) for x in w], "final": tre_stats(pair, reg.transform, pts)}
    for k, t in reg.stage_transforms.items():
        row[k] = tre_stats(pair, t, pts)
    row["stage_cpu_s"] = {k: v.get("cpu_s") for k, v in reg.metrics.items() if isinstance(v, dict) and "cpu_s" in v}
    row["moving_resolution_nm"] = (reg.parameters.get("moving_resolution_m") or 0) * 1e9
    row["bspline_grid_nm"] = (reg.parameters.get("bspline_grid_m") or 0) * 1e9
    row["dice"] = dice(reg, pair)
    bm = reg.metrics.get("bspline", {})
    if "holdout_gains" in bm and "bspline" in reg.stage_transforms:
        # the looser rule (held-out Mattes MI alone, RegistrationOptions(holdout=("mattes",))) on the same run
        keep = bm["holdout_gains"]["mattes"] > 0
        row["holdout_gains"] = bm["holdout_gains"]
        row["final_if_mattes_rule"] = row["bspline"] if keep else row["rigid"]
        row["mattes_rule_keeps_bspline"] = bool(keep)
    return row, reg


def show(row):
    f = row["final"]
    print(f"  {row['method']:<34} final TRE {f['mean_nm']:6.2f} mean {f['p95_nm']:6.2f} p95 {f['max_nm']:6.2f} max nm"
          f" | CPU {row['cpu_s']:6.1f} s wall {row['wall_s']:6.1f} s | kept {row['stages_kept']}")
    for k in ("initial", "rigid", "bspline", "elastix"):
        if k in row:
            s = row[k]
            print(f"      {k:<8} TRE {s['mean_nm']:6.2f} mean {s['p95_nm']:6.2f} p95 {s['max_nm']:6.2f} max nm")
    print("      stage CPU s:", {k: round(v, 1) for k, v in row["stage_cpu_s"].items() if v is not None})
    print("      Dice:", {k: round(v, 3) for k, v in row["dice"].items()},
          f"| resolution {row['moving_resolution_nm']:.0f} nm, grid {row['bspline_grid_nm']:.0f} nm")
    if "final_if_mattes_rule" in row:
        f = row["final_if_mattes_rule"]
        g = row["holdout_gains"]
        print(f"      held-out relative gains: Mattes MI {g['mattes']:+.2e}, edge correlation {g['edges']:+.2e}")
        print(f"      with holdout=('mattes',) (keeps B-spline: {row['mattes_rule_keeps_bspline']}): final TRE "
              f"{f['mean_nm']:.2f} mean {f['p95_nm']:.2f} p95 nm")
    for w in row["warnings"]:
        print("      warning:", w[:140])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--deformation", type=float, default=32e-9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--trial-size", type=int, default=96)
    ap.add_argument("--elastix-grid", type=float, default=640e-9)
    ap.add_argument("--no-elastix", action="store_true")
    ap.add_argument("--no-zero", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    results = {"args": vars(a)}
    axis = np.array([2.0, -2.5, 1.2]) / np.linalg.norm([2.0, -2.5, 1.2])
    mis = dict(rotation_deg=axis * 3.5, shift=np.array([6.0, -4.0, 3.0]) * 27.5e-9)

    t0 = time.perf_counter()
    pair = rp.make_pair(fixed_shape=a.size, max_deformation=a.deformation, margin=0.15, seed=0, **mis)
    print(f"pair {a.size}^3 / {pair.moving.shape[0]}^3 built in {time.perf_counter() - t0:.1f} s")
    pts = pair.foreground_points(border=60e-9, max_points=20000)
    results["best_rigid"] = best_rigid(pair, pts)
    print(f"best rigid map: TRE {results['best_rigid']['mean_nm']:.2f} mean {results['best_rigid']['p95_nm']:.2f} p95 nm")
    rows = []
    row, _ = run(pair, "tomofuse (simpleitk)", pts, seed=0, threads=a.threads)
    rows.append(row)
    show(row)
    if not a.no_elastix and elastix_available():
        for grid, name in ((a.elastix_grid, f"elastix rigid+bspline {a.elastix_grid * 1e9:.0f} nm"),):
            row, _ = run(pair, name, pts, seed=0, threads=a.threads,
                         options=RegistrationOptions(backend="elastix", bspline_grid=grid))
            rows.append(row)
            show(row)
        row, _ = run(pair, "elastix rigid only", pts, seed=0, threads=a.threads,
                     options=RegistrationOptions(backend="elastix", stages=("rigid",)))
        rows.append(row)
        show(row)
    elif not a.no_elastix:
        print("  elastix: itk-elastix not installed (pip install itk-elastix), skipped")
    results["main"] = rows

    if not a.no_zero:
        zero = rp.make_pair(fixed_shape=a.size, max_deformation=0.0, margin=0.15, seed=0, **mis)
        zpts = zero.foreground_points(border=60e-9, max_points=20000)
        print("zero-deformation pair:")
        row, _ = run(zero, "tomofuse (simpleitk)", zpts, seed=0, threads=a.threads)
        show(row)
        results["zero"] = [row]

    if a.trials:
        print(f"initial alignment: {a.trials} random misalignments on a {a.trial_size}^3 pair (rigid stage)")
        rng = np.random.default_rng(2024)
        fov = a.trial_size * 21.4e-9
        trials = []
        t_all = time.perf_counter()
        for i in range(a.trials):
            rot = rng.uniform(-10.0, 10.0, 3)
            shift = rng.uniform(-0.15, 0.15, 3) * fov
            tp = rp.make_pair(fixed_shape=a.trial_size, rotation_deg=rot, shift=shift, margin=0.35, seed=100 + i)
            tpts = tp.foreground_points(border=60e-9, max_points=5000)
            best = best_rigid(tp, tpts)
            t0, c0 = time.perf_counter(), time.process_time()
            reg = register(tp.fixed, tp.moving, fixed_voxel_size=tp.fixed_voxel_size,
                           moving_voxel_size=tp.moving_voxel_size,
                           options=RegistrationOptions(stages=("rigid",)), seed=0, threads=a.threads)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            s = tre_stats(tp, reg.transform, tpts)
            init = tre_stats(tp, reg.stage_transforms["initial"], tpts)
            ok = s["mean_nm"] < SUCCESS_NM
            trials.append({"rotation_deg": rot.tolist(), "shift_fov": (shift / fov).tolist(),
                           "angle_deg": float(np.linalg.norm(rot)), "initial": init, "rigid": s, "best": best,
                           "success": bool(ok), "wall_s": wall, "cpu_s": cpu})
            print(f"  {i:2d}: angle {np.linalg.norm(rot):5.1f} deg shift {np.abs(shift / fov).max() * 100:4.1f} % FOV"
                  f" -> initial {init['mean_nm']:7.1f} nm, rigid {s['mean_nm']:6.2f} nm (best {best['mean_nm']:.2f})"
                  f" {'ok' if ok else 'FAIL'}  {cpu:.1f} CPU-s")
        n_ok = sum(t["success"] for t in trials)
        print(f"  success {n_ok}/{a.trials}; {time.perf_counter() - t_all:.0f} s in all")
        results["trials"] = trials
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
