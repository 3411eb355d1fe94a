"""Ptychography: tomofuse's DM and ML engines against the FFT floor and pty-chi, plus quality.

On the simulated "bench" case of ``bench/ptycho_case.py`` (512^2 object, 128^2 patterns,
~419 positions, 1e6 photons):

1. FFT floor (in this process): one forward and one inverse 2-D FFT of the whole
   ``(K, 128, 128)`` complex64 batch, in place, with the core (``tomofuse._core.FFTPlan2D``)
   and with ``scipy.fft.fft2`` / ``ifft2`` (``workers=t, overwrite_x=True``); median of
   ``--fft-repeat`` after one warm-up, for each thread count.
2. tomofuse: ``tomofuse.ptycho.reconstruct(..., engines=(("dm", n),))`` and ``(("ml", n),)``,
   each engine and thread count in a fresh child process (so that its peak RSS,
   ``VmHWM``, is its own; ``ru_maxrss`` is also recorded but on Linux an exec'd child inherits
   the parent's high-water mark in it, see ``_rss_mib``).  The ``callback(fraction,
   message)`` timestamps every iteration (messages ``"dm i/n"`` / ``"ml i/n"``; the stage's
   opening message starts the clock of iteration 1, so ML's iteration 1 includes its two
   start-up gradient evaluations); s/iter is the median of the per-iteration wall times
   without the first ``--warmup`` (2) -- the engine's kernels -- and, as "mean", their mean, which
   also holds the DM iterations that refine the positions (every 5th from the 10th, the defaults)
   and check the held-out patterns (every 10th): what a run costs (the paper-scale projection
   uses it).  ML's line-search backtracks per iteration are taken from the engine's DEBUG log.
   Reported: s/iter, patterns/s (K / s/iter), s/iter divided by the core and the scipy FFT
   floors at the same thread count, peak RSS.
3. pty-chi (``bench/ptychi_runner.py``, its own child processes): DM and LSQML on the same
   case, same iteration count, the JSON line it prints.
4. Quality on the "small" case (256^2 / 64^2 / ~266 positions, ``make_case("small", 0)``):
   ``tomofuse.ptycho.object_error`` against the truth over the case's ``mask`` (the same mask
   ``ptychi_runner`` uses) after 20 DM, 100 DM + 100 ML, 300 DM + 300 ML (defaults otherwise),
   and pty-chi's DM 20 rerun (cheap) next to the figures recorded in ``ptychi_runner``'s
   docstring.
5. Projection to the paper's scale (400^2 patterns, 570 positions, 800 DM + 800 ML iterations,
   1644 projections): s/iter scaled by ``K N^2 log(N^2)`` (the cost of the per-pattern FFTs and
   of the O(K N^2) pattern-sized work, assumed to dominate; the object-sized work is smaller
   and ignored), on one 2-core machine and on a Dask cluster of M such machines, one
   projection per machine at a time (total / M, rounded up to whole projections).

Prints a markdown table and a JSON dump (also written to ``--json`` if given).  Not run in CI.

Run from the repository root (one heavy process at a time on a shared machine)::

    OMP_WAIT_POLICY=passive python bench/compare_ptycho.py [--cache /tmp/h-pbench/bench_case.npz]
        [--iters 20] [--threads 1,2] [--ptychi-threads 2,1] [--skip-ptychi] [--skip-quality]

Measured 2026-11-25 23:02 UTC, this machine (2 cores, shared; load average 1.88 -> 1.68),
20 iterations, first 2 left out, K = 419 x 128^2, final defaults (shifted-probe sub-pixel
model with 1/8 px steps, at most 64 shifted probes per probe update; DM computes the model
Fourier error every iteration, one more forward FFT per pattern; ML keeps the DM probe and
has the smoothness prior):

    FFT floor fwd+inv whole batch: core 29.2 / 14.8 ms, scipy 46.8 / 23.3 ms (1 / 2 threads)
    code      engine  threads  s/iter  patterns/s  x core FFT  x scipy FFT  peak RSS MiB
    tomofuse  DM      1        0.130   3233        4.4         2.8          247
    tomofuse  DM      2        0.068   6192        4.6         2.9          248
    tomofuse  ML      1        0.188   2226        6.5         4.0          278
    tomofuse  ML      2        0.095   4395        6.4         4.1          278
    pty-chi   DM      2        0.900   465         60.8        38.7         689
    pty-chi   LSQML   2        0.708   592         47.9        30.4         909
    (earlier runs of the same day: with the bilinear sub-pixel model DM 0.056 and ML 0.089
    s/iter at 2 threads; pty-chi at 1 thread DM 1.556, LSQML 1.335 s/iter)

ML never backtracked (0 backtracks, 0 restarts in all 20 iterations); its s/iter is flat.
Small case, threads 2, object_error: tomofuse DM 20 0.265, DM 100 + ML 100 0.062, DM 300 +
ML 300 0.062 (bilinear model: 0.274, 0.088, 0.088); pty-chi DM 20 0.432 (rerun, same as the
runner's docstring).  Paper scale (x 16.4): tomofuse 0.59 h per projection, 1644 projections
41 days on one 2-core machine, 7.7 h on 128 machines, 0.6 h on 1644; pty-chi 5.9 h per
projection (402 days on one machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = "/tmp/h-pbench/bench_case.npz"
PAPER = {"n": 400, "k": 570, "dm": 800, "ml": 800, "projections": 1644}
CLUSTER_SIZES = (1, 8, 32, 128, 1644)
_ITER_RE = re.compile(r"^(dm|ml) (\d+)/(\d+)$")


def _rss_mib() -> float:
    """Peak RSS of this process, MiB.

    ``VmHWM`` from ``/proc/self/status`` where there is one, else ``getrusage(RUSAGE_SELF).ru_maxrss``:
    on Linux ``ru_maxrss`` of an exec'd child starts at the peak of the process it was forked from
    (the kernel carries the pre-exec high-water mark over), so a child of this script, which holds
    the case and the FFT arrays, would report the parent's peak.  ``VmHWM`` belongs to the new image.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _ru_maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _make_case_module():
    sys.path.insert(0, str(HERE))
    import ptycho_case  # noqa: E402

    return ptycho_case


def load_case(path: str, size: str = "bench", seed: int = 0) -> dict:
    """The case from the cache ``path``; built with ``make_case(size, seed)`` and saved there if missing."""
    p = Path(path)
    if p.exists():
        z = np.load(p)
        return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    case = _make_case_module().make_case(size, seed)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, **case)
    print(f"built {size} case (seed {seed}) in {time.perf_counter() - t0:.1f} s -> {p}", file=sys.stderr, flush=True)
    return case


# ----------------------------------------------------------------------------------------------- FFT floor
def fft_floor(k: int, n: int, threads: int, repeat: int = 7) -> dict:
    """Median seconds of one forward + one inverse in-place 2-D FFT of a (k, n, n) complex64 batch."""
    import scipy.fft

    from tomofuse import _core

    rng = np.random.default_rng(0)
    a = (rng.standard_normal((k, n, n)) + 1j * rng.standard_normal((k, n, n))).astype(np.complex64)
    plan = _core.FFTPlan2D(n, n)

    def core():
        plan.forward(a, out=a, threads=threads)
        plan.backward(a, out=a, threads=threads)

    def sp():
        b = scipy.fft.fft2(a, workers=threads, overwrite_x=True)  # may reuse a's buffer
        scipy.fft.ifft2(b, workers=threads, overwrite_x=True)

    out = {}
    for name, fn in (("core", core), ("scipy", sp)):
        fn()  # warm-up (plans, pages)
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
            a *= np.float32(1.0 / math.sqrt(2.0))  # keep the values bounded (unnormalized round trips)
        out[name] = statistics.median(ts)
    return out


# ----------------------------------------------------------------------------------------------- tomofuse
class _BacktrackLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        if record.msg.startswith("ml %d:") and record.args:
            it, nll, alpha, backtracks, restarted = record.args
            self.records.append({"it": int(it), "nll": float(nll), "alpha": float(alpha),
                                 "backtracks": int(backtracks), "restarted": bool(restarted)})


def time_engine(case: dict, engine: str, iters: int, threads: int, warmup: int = 2) -> dict:
    """Run one engine on ``case`` in this process; per-iteration wall times from the callback."""
    from tomofuse import ptycho

    stamps: list[tuple[float, str]] = []

    def cb(fraction, message):
        stamps.append((time.perf_counter(), message))

    log = logging.getLogger("tomofuse.ptycho._reconstruct")
    handler = _BacktrackLog()
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    rss_before = _rss_mib()
    t0 = time.perf_counter()
    try:
        rec = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                                 object_shape=tuple(int(v) for v in case["object_shape"]),
                                 engines=((engine, iters),), threads=threads, callback=cb)
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    total = time.perf_counter() - t0
    # the stage's opening message starts iteration 1; each "engine i/n" ends iteration i
    start = next(t for t, m in stamps if not _ITER_RE.match(m))
    ends = [t for t, m in stamps if _ITER_RE.match(m)]
    per = np.diff([start] + ends).tolist()
    rest = per[warmup:] if len(per) > warmup else per
    k = int(case["intensities"].shape[0])
    s_iter = statistics.median(rest)
    out = {"engine": engine, "threads": threads, "iters": iters, "k": k, "n": int(case["intensities"].shape[-1]),
           "s_per_iter": s_iter, "s_per_iter_min": min(rest), "s_per_iter_max": max(rest),
           "s_per_iter_mean": statistics.fmean(rest),
           "iter_times": [round(v, 4) for v in per], "patterns_per_s": k / s_iter, "total_s": total,
           "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(_rss_mib(), 1),
           "ru_maxrss_mib": round(_ru_maxrss_mib(), 1),
           "final_error": float(rec.errors[-1][1][-1]) if rec.errors and len(rec.errors[-1][1]) else None}
    if "mask" in case and "truth" in case:
        out["object_error"] = float(ptycho.object_error(rec.object, case["truth"], mask=case["mask"].astype(bool)))
    if handler.records:
        bt = [r["backtracks"] for r in handler.records]
        out["ml_backtracks"] = bt
        out["ml_restarts"] = sum(r["restarted"] for r in handler.records)
        # does the iteration time follow the backtracks?  (iteration i's time is per[i - 1])
        pairs = [(per[i], b) for i, b in enumerate(bt) if i >= warmup and i < len(per)]
        by_bt = {}
        for t, b in pairs:
            by_bt.setdefault(b, []).append(t)
        out["ml_s_by_backtracks"] = {str(b): round(statistics.median(v), 4) for b, v in sorted(by_bt.items())}
    return out


def _child_main(args) -> None:
    z = np.load(args.cache)
    case = {k: z[k] for k in z.files}
    if args.child_engines:  # quality run: a sequence of engines, object error only
        from tomofuse import ptycho

        engines = tuple((e.split(":")[0], int(e.split(":")[1])) for e in args.child_engines.split(","))
        t0 = time.perf_counter()
        rec = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                                 object_shape=tuple(int(v) for v in case["object_shape"]),
                                 engines=engines, threads=args.child_threads)
        wall = time.perf_counter() - t0
        err = ptycho.object_error(rec.object, case["truth"], mask=case["mask"].astype(bool))
        res = {"engines": args.child_engines, "threads": args.child_threads, "object_error": float(err),
               "wall_s": wall, "peak_rss_mib": round(_rss_mib(), 1)}
    else:
        res = time_engine(case, args.child_engine, args.iters, args.child_threads, args.warmup)
        res.pop("object_error", None) if args.no_error else None
    print(json.dumps(res), flush=True)


def _run_child(argv: list[str]) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve())] + argv, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_ptychi(cache: str, iters: int, threads: int, algos: str, warmup: int = 2, python: str = sys.executable) -> dict:
    import ptychi_runner

    return ptychi_runner.invoke(cache, python=python, threads=threads, dm=iters, ml=iters, algos=algos,
                                warmup=warmup)


# ----------------------------------------------------------------------------------------------- projection
def cost_units(k: int, n: int) -> float:
    """K N^2 log2(N^2): the scaling assumed for one iteration."""
    return k * n * n * math.log2(n * n)


def project(s_dm: float, s_ml: float, k: int, n: int, paper: dict = PAPER,
            machines=CLUSTER_SIZES) -> dict:
    """Paper-scale time from bench s/iter, scaled by K N^2 log(N^2)."""
    f = cost_units(paper["k"], paper["n"]) / cost_units(k, n)
    per_proj = paper["dm"] * s_dm * f + paper["ml"] * s_ml * f
    total = per_proj * paper["projections"]
    return {"scale_factor": f, "s_per_dm_iter": s_dm * f, "s_per_ml_iter": s_ml * f,
            "s_per_projection": per_proj, "hours_one_machine": total / 3600.0,
            "cluster_hours": {str(m): math.ceil(paper["projections"] / m) * per_proj / 3600.0 for m in machines}}


# ----------------------------------------------------------------------------------------------- report
def _md(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="bench case .npz (built and saved if missing)")
    ap.add_argument("--size", default="bench", choices=("bench", "paper"),
                    help="case size of bench/ptycho_case.py: 128^2 (bench) or the paper's 400^2 patterns")
    ap.add_argument("--small-cache", default=None, help="small case .npz (default: next to --cache)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--fft-repeat", type=int, default=7)
    ap.add_argument("--ptychi-threads", default="2,1")
    ap.add_argument("--skip-ptychi", action="store_true")
    ap.add_argument("--ptychi-python", default=sys.executable,
                    help="interpreter with ptychi and CPU torch (a venv of its own; tomofuse importable)")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--json", default=None, help="also write the JSON dump here")
    # internal (child processes)
    ap.add_argument("--child-engine", help=argparse.SUPPRESS)
    ap.add_argument("--child-engines", help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--no-error", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_engine or args.child_engines:
        _child_main(args)
        return

    threads = [int(t) for t in args.threads.split(",") if t]
    case = load_case(args.cache, args.size, args.seed)
    k, n = int(case["intensities"].shape[0]), int(case["intensities"].shape[-1])
    small_cache = args.small_cache or str(Path(args.cache).with_name("small_case.npz"))
    del case
    res = {"case": {"k": k, "n": n, "cache": args.cache}, "fft": {}, "tomofuse": [], "ptychi": [], "quality": {}}
    import tomofuse

    res["versions"] = {"tomofuse": getattr(tomofuse, "__version__", None), "numpy": np.__version__,
                       "python": sys.version.split()[0]}
    try:
        import subprocess as _sp
        res["versions"]["git"] = _sp.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip()
    except OSError:
        pass

    res["loadavg_start"] = os.getloadavg()
    for t in threads:
        res["fft"][str(t)] = fft_floor(k, n, t, args.fft_repeat)
        print(f"fft floor t={t}: {res['fft'][str(t)]}", file=sys.stderr, flush=True)

    for engine in ("dm", "ml"):
        for t in threads:
            r = _run_child(["--cache", args.cache, "--child-engine", engine, "--child-threads", str(t),
                            "--iters", str(args.iters), "--warmup", str(args.warmup)])
            r["x_core_fft"] = r["s_per_iter"] / res["fft"][str(t)]["core"]
            r["x_scipy_fft"] = r["s_per_iter"] / res["fft"][str(t)]["scipy"]
            res["tomofuse"].append(r)
            print(f"tomofuse {engine} t={t}: {r['s_per_iter']:.3f} s/iter", file=sys.stderr, flush=True)

    if not args.skip_ptychi:
        for t in [int(v) for v in args.ptychi_threads.split(",") if v]:
            try:
                out = _run_ptychi(args.cache, args.iters, t, "dm,lsqml", args.warmup, python=args.ptychi_python)
                res["ptychi"].extend(out["results"])
                print(f"ptychi t={t} done", file=sys.stderr, flush=True)
            except RuntimeError as err:
                res["ptychi"].append({"threads": t, "error": str(err)[-500:]})

    if not args.skip_quality:
        load_case(small_cache, "small", 0)
        for label, eng in (("dm20", "dm:20"), ("dm100+ml100", "dm:100,ml:100"), ("dm300+ml300", "dm:300,ml:300")):
            res["quality"][label] = _run_child(["--cache", small_cache, "--child-engines", eng, "--child-threads", "2"])
            print(f"quality {label}: {res['quality'][label]['object_error']:.3f}", file=sys.stderr, flush=True)
        if not args.skip_ptychi:
            try:
                out = _run_ptychi(small_cache, 20, 2, "dm", args.warmup, python=args.ptychi_python)
                res["quality"]["ptychi_dm20"] = out["results"][0]
            except RuntimeError as err:
                res["quality"]["ptychi_dm20"] = {"error": str(err)[-500:]}

    # projection (2 threads = one 2-core machine, falling back to the largest measured count)
    tmax = max(threads)
    s = {r["engine"]: r["s_per_iter_mean"] for r in res["tomofuse"] if r["threads"] == tmax}
    if "dm" in s and "ml" in s:
        res["projection_tomofuse"] = project(s["dm"], s["ml"], k, n)
    pc = {r.get("algo"): r for r in res["ptychi"] if r.get("threads") == tmax and "error" not in r}
    if "dm" in pc and "lsqml" in pc:
        res["projection_ptychi"] = project(_ptychi_s(pc["dm"]), _ptychi_s(pc["lsqml"]), k, n)
    res["loadavg_end"] = os.getloadavg()
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def _ptychi_stage(r: dict) -> dict:
    """The (last) stage dict of one ptychi_runner result: {"s_per_iter", "object_error", ...}."""
    return r.get("lsqml") or r.get("dm") or {}


def _ptychi_s(r: dict):
    return _ptychi_stage(r).get("s_per_iter")


def report(res: dict) -> None:
    k, n = res["case"]["k"], res["case"]["n"]
    print(f"\n## Ptychography bench case: K = {k} patterns of {n}^2 (load average {res.get('loadavg_start')} -> "
          f"{res.get('loadavg_end')})\n")
    print(_md([(t, f"{v['core'] * 1e3:.1f}", f"{v['scipy'] * 1e3:.1f}", f"{v['scipy'] / v['core']:.2f}")
               for t, v in res["fft"].items()],
              ["threads", "core fwd+inv ms", "scipy fwd+inv ms", "scipy / core"]))
    rows = []
    for r in res["tomofuse"]:
        rows.append(("tomofuse", r["engine"].upper(), r["threads"], f"{r['s_per_iter']:.3f}",
                     f"{r['s_per_iter_mean']:.3f}",
                     f"{r['s_per_iter_min']:.3f}-{r['s_per_iter_max']:.3f}", f"{r['patterns_per_s']:.0f}",
                     f"{r['x_core_fft']:.1f}", f"{r['x_scipy_fft']:.1f}", f"{r['peak_rss_mib']:.0f}",
                     f"{r['object_error']:.3f}" if r.get("object_error") is not None else ""))
    for r in res["ptychi"]:
        if "error" in r:
            rows.append(("pty-chi", "?", r.get("threads"), "failed", "", "", "", "", "", "", ""))
            continue
        s = _ptychi_s(r)
        t = r["threads"]
        fft = res["fft"].get(str(t))
        rows.append(("pty-chi", r["algo"].upper(), t, f"{s:.3f}" if s else "?", "", "",
                     f"{k / s:.0f}" if s else "", f"{s / fft['core']:.1f}" if s and fft else "",
                     f"{s / fft['scipy']:.1f}" if s and fft else "", f"{r.get('peak_rss_mib', 0):.0f}",
                     f"{_ptychi_stage(r)['object_error']:.3f}" if "object_error" in _ptychi_stage(r) else ""))
    print()
    print(_md(rows, ["code", "engine", "threads", "s/iter (median)", "mean", "range", "patterns/s", "x core FFT",
                     "x scipy FFT", "peak RSS MiB", "object_error (20 it)"]))
    for r in res["tomofuse"]:
        if "ml_backtracks" in r:
            print(f"\ntomofuse ML t={r['threads']}: backtracks per iteration {r['ml_backtracks']}, "
                  f"restarts {r['ml_restarts']}, median s/iter by backtracks {r['ml_s_by_backtracks']}")
    if res["quality"]:
        print("\n## Quality, small case (object_error over the case mask, threads 2)\n")
        rows = [("tomofuse", kk, f"{v['object_error']:.3f}", f"{v['wall_s']:.1f}")
                for kk, v in res["quality"].items() if kk != "ptychi_dm20"]
        pd = res["quality"].get("ptychi_dm20")
        if pd and "error" not in pd:
            rows.append(("pty-chi (rerun)", "dm20", f"{_ptychi_stage(pd)['object_error']:.3f}",
                         f"{_ptychi_stage(pd)['total_s']:.1f}"))
        rows += [("pty-chi (runner docstring)", "dm20", "0.432", ""),
                 ("pty-chi (runner docstring)", "lsqml100", "0.173", ""),
                 ("pty-chi (runner docstring)", "dm100->lsqml100", "0.915", "")]
        print(_md(rows, ["code", "iterations", "object_error", "wall s"]))
    for name in ("projection_tomofuse", "projection_ptychi"):
        p = res.get(name)
        if not p:
            continue
        print(f"\n## {name}: paper scale ({PAPER['n']}^2 patterns, {PAPER['k']} positions, {PAPER['dm']} DM + "
              f"{PAPER['ml']} ML, {PAPER['projections']} projections)\n")
        print(f"scaling: s/iter x K N^2 log(N^2) ratio = {p['scale_factor']:.2f} (per-pattern FFT and O(K N^2) "
              f"work dominate; object-sized work, cache effects and memory bandwidth at 400^2 ignored)")
        print(f"per iteration: DM {p['s_per_dm_iter']:.2f} s, ML {p['s_per_ml_iter']:.2f} s; per projection "
              f"{p['s_per_projection'] / 3600:.2f} h; 1644 projections on one 2-core machine "
              f"{p['hours_one_machine']:.0f} h = {p['hours_one_machine'] / 24:.1f} days")
        print(_md([(m, f"{h:.1f}", f"{h / 24:.2f}") for m, h in p["cluster_hours"].items()],
                  ["machines (Dask, 1 projection each at a time)", "hours", "days"]))
    print("\n```json")
    print(json.dumps(res, indent=1, default=str))
    print("```")


if __name__ == "__main__":
    main()
