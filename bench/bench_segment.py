"""Segmentation speed and memory on a 512^3 fused volume; particle labeling beside PoreSpy's snow2.

Run::

    python bench/bench_segment.py [--member bench/.segment_family/m01.npz] [--size 512] [--threads 2]

The 512^3 fused volume is a simulated-chain member of ``bench/segment_family.py`` (the whole
chain: phantom -> PXCT + TXTM simulation -> reconstructions -> registration -> fusion)
mirror-tiled to the requested size (a real 512^3 chain does not fit this machine's time budget;
mirroring keeps every seam continuous, so the statistics of the volume are those of the
member). Each measurement runs in a fresh process: wall time and peak resident memory above
the process's baseline after the input is loaded (``ru_maxrss``), as a multiple of the fused
input's bytes.

Goals: ``segment`` + ``label_particles`` <= 60 s wall and peak memory <= 6x the fused input on
2 cores. PoreSpy's ``snow2`` (the peer for splitting touching particles) runs on the same
silicon labels (``porespy.filters.snow_partitioning``, the partitioning step of ``snow2``,
with its defaults); counts and the IoU >= 0.5 match against the phantom's true particles are
measured at the member's own size (where the truth is exact), times and memory at both sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
V = 21.4e-9


def mirror_tile(a: np.ndarray, size: int, axes=(-3, -2, -1)) -> np.ndarray:
    """Tile ``a`` along ``axes`` with alternate copies mirrored, cropped to ``size``."""
    for ax in axes:
        n = a.shape[ax]
        reps = -(-size // n)
        parts = [a if i % 2 == 0 else np.flip(a, axis=ax) for i in range(reps)]
        a = np.concatenate(parts, axis=ax)
        a = np.take(a, np.arange(size), axis=ax)
    return np.ascontiguousarray(a)


def _load(member: Path, size: int):
    d = np.load(member)
    fused = d["fused"].astype(np.float32)
    fused[0] = -fused[0]  # the chain's PXCT is phase (-k delta): make it delta-like
    meta = json.loads(str(d["member"]))
    if size and size != fused.shape[1]:
        fused = mirror_tile(fused, size)
    return fused, meta, d


def _rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> dict:
    """One measurement in this process (called through a subprocess by ``main``)."""
    fused, meta, d = _load(Path(args.member), args.size)
    cycled = bool(meta["cycled"])
    out = {"what": args.what, "shape": list(fused.shape), "fused_bytes": int(fused.nbytes)}
    labels = None
    cache = Path(args.labels_cache) if args.labels_cache else None
    if args.what in ("snow2", "label_particles"):
        # the labels come from a file the segment measurement wrote (ru_maxrss is the
        # process's peak ever: segmenting here would count the segmentation's peak)
        del fused
        fused = None
        labels = np.load(cache)
    base = _current_rss()
    t = time.perf_counter()
    if args.what == "segment+particles":
        from tomofuse.segment import label_particles, segment

        s = segment(fused, voxel_size=V, cycled=cycled, threads=args.threads)
        t_seg = time.perf_counter() - t
        parts = label_particles(s.labels, voxel_size=V, threads=args.threads)
        out["segment_s"] = t_seg
        labels = s.labels
        if cache is not None:
            np.save(cache, labels)
    elif args.what == "label_particles":
        from tomofuse.segment import label_particles

        parts = label_particles(labels, voxel_size=V, threads=args.threads)
    elif args.what == "snow2":
        import porespy as ps

        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        ps.settings.tqdm["disable"] = True
        ps.settings.ncores = args.threads
        # snow2's partitioning step (its network extraction is not needed to split particles)
        snow = ps.filters.snow_partitioning((labels == 2), r_max=4, sigma=0.4)
        parts = np.asarray(snow.regions, dtype=np.int32) * (labels == 2)
    else:
        raise SystemExit(f"unknown measurement {args.what}")
    out["seconds"] = time.perf_counter() - t
    out["peak_above_baseline_bytes"] = max(_rss_bytes() - base, 0)
    out["peak_over_fused"] = out["peak_above_baseline_bytes"] / out["fused_bytes"]
    out["n_particles"] = int(len(np.unique(parts[parts > 0])))
    if args.size in (0, d["fused"].shape[1]):
        from tomofuse.segment import match_particles

        inside = d["inside"]
        mp = match_particles(np.where(inside, parts, 0).astype(np.int32), d["particles"])
        out.update(n_true=mp["n_true"], matched_fraction=mp["matched_fraction"], precision=mp["precision"])
    return out


def _run(member: Path, what: str, size: int, threads: int, cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", what, "--member", str(member), "--size", str(size),
           "--threads", str(threads), "--labels-cache", str(cache / f"labels_{size}.npy")]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"what": what, "size": size, "error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", type=Path, default=HERE / ".segment_family" / "m01.npz")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-peer", action="store_true", help="skip PoreSpy")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--labels-cache", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.what = a.worker
        print(json.dumps(worker(a), default=float))
        return
    rows = []
    plan = [(0, "segment+particles"), (0, "label_particles"), (0, "snow2"), (a.size, "segment+particles"),
            (a.size, "label_particles"), (a.size, "snow2")]
    plan = list(dict.fromkeys(plan))  # --size 0: the member's own size only
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bench_segment_"))
    for size, what in plan:
        if what == "snow2" and a.no_peer:
            continue
        for _ in range(a.repeats):
            r = _run(a.member, what, size, a.threads, tmp)
            r["size"] = size
            rows.append(r)
            print(json.dumps(r, default=float), flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, default=float))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
