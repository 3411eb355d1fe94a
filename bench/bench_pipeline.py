"""The pipeline's cost: its overhead over calling the stages directly, per-stage cost on scaled inputs,
and an extrapolation to the paper's scale on 1, 16 and 128 Dask workers.

``overhead``: raw files of the demo config (``tomofuse.pipeline.simulate_raw``), then, alternating,
``pipeline.run`` into a fresh run directory and the same chain called function by function
(``tests/pipeline_tools.by_hand``: the public functions, no files between stages, no hashing, no
manifests; the report with the same figures, as the pipeline's report stage makes it); one warm-up of each, then ``--repeats`` of each; medians and the overhead in percent.

``scaling``: ``pipeline.run`` on phantoms of several sizes; per stage the wall time and its size
measure (ptycho: patterns x iterations; pxct, txtm, fsc: projections x rows x columns^2, the
back-projection's work; the others: voxels), a power law fitted over the sizes, and the
extrapolation to the paper: 1644 projections of 400^2 patterns (a Fermat spiral of 1.3 um steps
over 20 x 48 um, DM 800 + ML 800 iterations), a 2240^2 x 935 PXCT volume, a 1024-projection TXTM
scan of 1744 x 728 pixels (the same field at 27.5 nm).  The ptychography's cost per pattern and
iteration is measured separately at N = 16, 32, 64 and 128 (one projection, 10 DM iterations) and
extrapolated to N = 400 as N^2 log N.  Workers: the stages the pipeline distributes whole (ptycho
per projection, fsc in FBP slabs, coverage per particle group, echem per particle) divide by the
workers; the others are counted in the client process (pxct and txtm too, although their FBP runs in
slabs on the workers: the projection alignment and the center search, which stay in the client,
dominate them; segment unless ``segment.block_voxels`` is set).

Run from the repository root::

    python bench/bench_pipeline.py overhead /tmp/bp --repeats 3
    python bench/bench_pipeline.py scaling /tmp/bs
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tomofuse import pipeline  # noqa: E402

STAGES = pipeline.STAGES
#: stages whose whole work the pipeline spreads over the Dask workers besides ptycho
DIVIDED = ("fsc", "coverage", "echem")


def overhead(out: Path, repeats: int, threads: int) -> dict:
    from pipeline_tools import by_hand

    sim = pipeline.simulate_raw(out / "raw", threads=threads)
    t_run, t_hand, c_run, c_hand, book = [], [], [], [], []
    for k in range(repeats + 1):  # the first of each is a warm-up (imports, FFT plans)
        d = out / f"run{k}"
        shutil.rmtree(d, ignore_errors=True)
        t, c = time.perf_counter(), _cpu()
        res = pipeline.run(sim.config, output=d)
        a, ca = time.perf_counter() - t, _cpu() - c
        t, c = time.perf_counter(), _cpu()
        by_hand(sim.config, threads=threads, report_dir=out / f"hand{k}")
        b, cb = time.perf_counter() - t, _cpu() - c
        bk = sum(m.get("bookkeeping_s", 0.0) for m in res.manifests.values())
        print(f"round {k}{' (warm-up)' if k == 0 else ''}: pipeline {a:.2f} s ({ca:.2f} CPU-s, bookkeeping "
              f"{bk:.2f} s), by hand {b:.2f} s ({cb:.2f} CPU-s)", flush=True)
        if k:
            t_run.append(a)
            t_hand.append(b)
            c_run.append(ca)
            c_hand.append(cb)
            book.append(bk)
    r, h = statistics.median(t_run), statistics.median(t_hand)
    cr, ch = statistics.median(c_run), statistics.median(c_hand)
    doc = {"pipeline_s": t_run, "by_hand_s": t_hand, "median_pipeline_s": r, "median_by_hand_s": h,
           "overhead_percent": 100 * (r - h) / h, "pipeline_cpu_s": c_run, "by_hand_cpu_s": c_hand,
           "cpu_overhead_percent": 100 * (cr - ch) / ch, "bookkeeping_s": book,
           "bookkeeping_percent": 100 * statistics.median(book) / h}
    print(json.dumps(doc, indent=1))
    return doc


def _cpu() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _measures(run_dir: Path) -> dict:
    """Size measure of each stage of a finished run."""
    import h5py

    def res(s):
        p = run_dir / s / "results.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    cfg = pipeline.load_config(run_dir / "config.resolved.toml")
    with h5py.File(run_dir / "ptycho" / "projections.h5") as f:
        patterns = sum(f["positions"][k].shape[0] for k in f["positions"])
    iters = cfg["ptycho"]["dm_iterations"] + cfg["ptycho"]["ml_iterations"]
    with h5py.File(run_dir / "pxct" / "projections.h5") as f:
        a, r, c = f["phase"].shape
    with h5py.File(run_dir / "txtm" / "projections.h5") as f:
        ta, tr, tc = f["mu"].shape
    vox = float(np.prod(res("pxct")["shape"]))
    return {"ptycho": patterns * iters, "pxct": a * r * c * c, "txtm": ta * tr * tc * tc,
            "fsc": a * r * c * c + ta * tr * tc * tc, "register": vox, "fuse": vox, "segment": vox,
            "particles": vox, "coverage": vox, "echem": max(1, len(res("echem").get("particles", []))),
            "report": 1.0}


def _ptycho_cost_per_pattern_iteration(threads: int) -> dict:
    """Seconds per (pattern x iteration) of one DM projection at several N."""
    from tomofuse.acquire import ptycho_scan
    from tomofuse.ptycho import fermat_spiral, focused_probe, reconstruct

    out = {}
    for n in (16, 32, 64, 128):
        probe = focused_probe(n, object_pixel_size=20e-9, energy_kev=6.2, diameter=0.5 * n * 20e-9)
        pos = fermat_spiral(0.35 * 0.5 * n, (3 * n, 3 * n))
        side = 4 * n + 8
        rng = np.random.default_rng(0)
        obj = np.exp(1j * rng.uniform(-0.3, 0.3, (side, side)))
        data = ptycho_scan(obj, probe, pos, photons=1e6, seed=0)
        reconstruct(data, pos, probe, engines=(("dm", 2),), threads=threads)  # warm-up
        t = time.perf_counter()
        reconstruct(data, pos, probe, engines=(("dm", 10), ("ml", 10)), threads=threads)
        out[n] = (time.perf_counter() - t) / (len(pos) * 20)
        print(f"ptycho N={n}: {len(pos)} patterns, {out[n] * 1e6:.1f} us per pattern-iteration", flush=True)
    return out


def paper_scale() -> dict:
    from tomofuse.ptycho import fermat_spiral

    k = len(fermat_spiral(1.3e-6, (20e-6, 48e-6)))
    return {"ptycho": 1644 * k * 1600, "patterns_per_projection": k, "pxct": 1644 * 935 * 2240 ** 2,
            "txtm": 1024 * 728 * 1744 ** 2, "fsc": 1644 * 935 * 2240 ** 2 + 1024 * 728 * 1744 ** 2,
            "register": 2240 ** 2 * 935, "fuse": 2240 ** 2 * 935, "segment": 2240 ** 2 * 935,
            "particles": 2240 ** 2 * 935, "coverage": 2240 ** 2 * 935, "echem": 1, "report": 1}


def scaling(out: Path, sizes, threads: int, dm: int, ml: int) -> dict:
    rows = []
    for shape in sizes:
        d = out / "x".join(map(str, shape))
        sim = pipeline.simulate_raw(d, shape=shape, threads=threads, dm_iterations=dm, ml_iterations=ml)
        r = pipeline.run(sim.config, output=d / "run")
        m = _measures(d / "run")
        walls = {s: r.manifests[s]["wall_s"] for s in STAGES}
        mem = {s: r.manifests[s]["peak_memory_bytes"] for s in STAGES}
        cpu = {s: r.manifests[s]["cpu_s"] for s in STAGES}
        rows.append({"shape": shape, "wall_s": walls, "cpu_s": cpu, "peak_memory_bytes": mem, "measure": m})
        print(f"{shape}: total {sum(walls.values()):.1f} s; " +
              ", ".join(f"{s} {walls[s]:.2f}" for s in STAGES), flush=True)
    per_n = _ptycho_cost_per_pattern_iteration(threads)
    paper = paper_scale()
    fits = {}
    for s in STAGES:
        x = np.array([row["measure"][s] for row in rows], float)
        y = np.array([max(row["wall_s"][s], 1e-4) for row in rows])
        if s in ("ptycho", "pxct", "txtm", "fsc") or np.ptp(np.log(x)) == 0:
            expo = 1.0  # work measures that are linear by construction
        else:
            expo = float(np.polyfit(np.log(x), np.log(y), 1)[0])
            expo = min(max(expo, 1.0), 1.5)  # the fits on three small sizes are noisy: bound them
        fits[s] = {"exponent": expo, "seconds_per_unit_at_largest": y[-1] / x[-1] ** expo}
    # ptychography at N = 400 from the per-(pattern x iteration) cost measured at N <= 128, ~ N^2 log N
    n0 = max(per_n)
    c400 = per_n[n0] * (400 ** 2 * math.log(400)) / (n0 ** 2 * math.log(n0))
    est = {}
    for s in STAGES:
        if s == "ptycho":
            est[s] = paper["ptycho"] * c400
        else:
            est[s] = fits[s]["seconds_per_unit_at_largest"] * paper[s] ** fits[s]["exponent"]
    workers = {}
    for w in (1, 16, 128):
        t = {s: (est[s] / min(w, 1644) if s == "ptycho" else est[s] / w if s in DIVIDED else est[s])
             for s in STAGES}
        workers[w] = {"total_h": sum(t.values()) / 3600, "ptycho_h": t["ptycho"] / 3600,
                      "rest_h": (sum(t.values()) - t["ptycho"]) / 3600}
    doc = {"sizes": rows, "ptycho_seconds_per_pattern_iteration": per_n, "ptycho_c400": c400, "fits": fits,
           "paper": paper, "paper_estimate_s": est, "workers": workers}
    print(json.dumps({"paper_estimate_h": {s: v / 3600 for s, v in est.items()}, "workers": workers}, indent=1))
    return doc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("overhead", "scaling"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="32x48x48,48x64x64,64x80x80")
    ap.add_argument("--dm", type=int, default=30)
    ap.add_argument("--ml", type=int, default=20)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "overhead":
        doc = overhead(args.out, args.repeats, args.threads)
    else:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        doc = scaling(args.out, sizes, args.threads, args.dm, args.ml)
    from tomofuse.io import jsonable

    (args.out / f"{args.what}.json").write_text(json.dumps(jsonable(doc), indent=1))


if __name__ == "__main__":
    main()
