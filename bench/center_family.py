"""``find_center`` and ``remove_rings`` defaults measured on a family of simulated scans with rings.

The family (``tests/center_cases.py``, seeds fixed) covers what the issue asks for: angular
ranges 179, 179.5 (the half-turn without its end point), 180 (with it), 181 and 360 degrees;
the axis anywhere within +-40 % of the detector half-width off the detector center; detector
widths 512-2048; 200-5000 photons per pixel; narrow, wide, partial and unresponsive stripes
of two strengths; a soft container with 15-60 hard particles per slice, 3 slices.

For every member the script prints the error of ``find_center(projections, angles,
threads=...)`` against the true axis, its wall time and its CPU time (all threads; on a
machine shared with other jobs the wall time grows, the CPU time does not), then the
distribution (median, worst).
``--rings`` adds the ring error of every ``remove_rings`` method: the RMSE, inside the field
of view, of the reconstruction (at the true axis, one slice) against that of the same photons
without detector defects, relative to the range of the noise-free reconstruction.

Run the "before" column with an older tomofuse first on the path, e.g. a worktree of the
previous commit with its compiled core copied in::

    python bench/center_family.py --pythonpath /tmp/old/python --label before --max-seconds 300
    python bench/center_family.py --label after --rings
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def ring_errors(c: dict, methods, threads: int) -> dict:
    from tomofuse.tomo import fbp, remove_rings

    th, n = c["angles"], c["cols"]
    kw = dict(center=c["center"], filter="hann", method="fourier", threads=threads)
    row = slice(1, 2)
    ref = fbp(c["clean"][:, row], th, **kw)[0]
    truth = fbp(c["ideal"][:, row], th, **kw)[0]
    yy, xx = np.mgrid[:n, :n] + 0.5 - n / 2
    fov = np.hypot(xx, yy) < min(c["center"], n - c["center"]) - 2  # the slice is centered on the axis
    scale = float(truth[fov].max() - truth[fov].min())
    out = {}
    for m in methods:
        sino = c["projections"][:, row]
        t0 = time.perf_counter()
        if m != "none":
            sino = remove_rings(sino, method=m)
        dt = time.perf_counter() - t0
        rec = fbp(sino, th, **kw)[0]
        out[m] = (math.sqrt(float(np.mean((rec - ref)[fov] ** 2))) / scale, dt)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="members (default 40)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--only", type=str, default="", help="comma-separated member indices")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pythonpath", type=str, default="", help="put this tomofuse first on sys.path")
    ap.add_argument("--label", type=str, default="after")
    ap.add_argument("--max-seconds", type=int, default=0, help="give up on a member after this long (0: never)")
    ap.add_argument("--rings", action="store_true", help="also the ring-error table of remove_rings")
    ap.add_argument("--json", type=str, default="", help="write the per-member results here")
    ap.add_argument("--like-report", action="store_true",
                    help="members shaped like the scan of issue 15 (1260 px, 360 angles over 179.5 degrees), "
                         "seeds 11, 12, ...")
    args = ap.parse_args(argv)
    if args.pythonpath:
        sys.path.insert(0, args.pythonpath)
    import center_cases as cc
    from tomofuse.tomo import RING_METHODS, find_center

    seeds = cc.family(args.n, args.seed) if not args.like_report else list(range(11, 11 + args.n))
    draw = (lambda s: cc.case(s, cols=1260, range_deg=179.5, n_angles=360)) if args.like_report else cc.case
    if args.only:
        seeds = [seeds[int(i)] for i in args.only.split(",")]
    methods = ["none"] + list(RING_METHODS)
    signal.signal(signal.SIGALRM, _alarm)
    rows = []
    head = f"{'seed':>8} {'cols':>5} {'range':>6} {'A':>5} {'offset':>7} {'photons':>7} {'rings':>6} | " \
           f"{'axis':>8} {'error':>7} {'wall':>6} {'cpu':>6}"
    if args.rings:
        head += " | " + " ".join(f"{m:>9}" for m in methods)
    print(f"# find_center defaults ({args.label}), threads={args.threads}")
    print(head)
    for seed in seeds:
        c = draw(seed)
        t0, cpu0 = time.perf_counter(), time.process_time()
        signal.alarm(args.max_seconds)
        try:
            est = float(find_center(c["projections"], c["angles"], threads=args.threads))
        except _Timeout:
            est = float("nan")
        finally:
            signal.alarm(0)
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        r = dict(seed=seed, cols=c["cols"], range_deg=c["range_deg"], n_angles=c["n_angles"],
                 offset=(c["center"] - c["cols"] / 2) / (c["cols"] / 2), photons=c["photons"],
                 strong=c["strong"], center=c["center"], estimate=est, error=est - c["center"], seconds=dt, cpu_seconds=cpu)
        line = (f"{seed:>8} {c['cols']:>5} {c['range_deg']:>6.1f} {c['n_angles']:>5} {r['offset']:>+7.2f} "
                f"{c['photons']:>7.0f} {'strong' if c['strong'] else 'weak':>6} | {c['center']:>8.2f} "
                f"{r['error']:>+7.3f} {dt:>5.1f}s {cpu:>5.1f}s")
        if args.rings:
            rings = ring_errors(c, methods, args.threads)
            r["rings"] = {m: e for m, (e, _) in rings.items()}
            line += " | " + " ".join(f"{100 * e:>8.2f}%" for e, _ in rings.values())
        print(line, flush=True)
        rows.append(r)
    err = np.array([abs(r["error"]) if math.isfinite(r["error"]) else np.inf for r in rows])
    sec = np.array([r["seconds"] for r in rows])
    cpu = np.array([r["cpu_seconds"] for r in rows])
    wide = np.array([r["cols"] == 2048 for r in rows])
    print(f"# |error| px: median {np.median(err):.3f}, worst {err.max():.3f}, "
          f"> 0.5 px: {int((err > 0.5).sum())} of {err.size} (timeouts count as failures)")
    print(f"# wall time s: median {np.median(sec):.1f}, worst {sec.max():.1f}"
          + (f"; 2048-px members: worst {sec[wide].max():.1f}" if wide.any() else ""))
    print(f"# CPU time s (all threads): median {np.median(cpu):.1f}, worst {cpu.max():.1f}"
          + (f"; 2048-px members: worst {cpu[wide].max():.1f}" if wide.any() else ""))
    if args.rings:
        for m in methods:
            e = np.array([r["rings"][m] for r in rows]) * 100
            print(f"# ring RMSE {m:>9}: median {np.median(e):.2f} %, worst {e.max():.2f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
