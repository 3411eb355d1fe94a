"""Helpers of the pipeline tests and of bench/pipeline_kill_resume.py: digests of a run's outputs,
and ``tomofuse run`` killed with SIGKILL at random moments, then rerun until it finishes.

``run_digest(run_dir)`` hashes what a run produced, per file: every HDF5 dataset's bytes, dtype and
shape and every attribute except the time of writing (``created_utc``); JSON files without the
keys that are timings or provenance (``*_s``, ``*_utc``, ``provenance``, ...); text files as
bytes.  Two runs with equal digests produced bit-identical data.  Not hashed: the manifests
(times, memory), ``run.log``, the hash cache and the ptychography checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SKIP_NAMES = {"manifest.json", "run.log", ".hash-cache.json", "config.resolved.toml"}
VOLATILE_KEYS = {"created_utc", "provenance", "start_utc", "end_utc", "pid", "host", "versions"}


def _clean(doc):
    if isinstance(doc, dict):
        return {k: _clean(v) for k, v in doc.items() if k not in VOLATILE_KEYS and not k.endswith("_s")}
    if isinstance(doc, list):
        return [_clean(v) for v in doc]
    return doc


def _h5_digest(path: Path) -> str:
    import h5py

    h = hashlib.sha256()

    def attrs(obj):
        for k in sorted(obj.attrs):
            if k in VOLATILE_KEYS:
                continue
            h.update(k.encode())
            h.update(repr(obj.attrs[k]).encode())

    with h5py.File(path, "r") as f:
        attrs(f)

        def visit(name, obj):
            h.update(name.encode())
            attrs(obj)
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                h.update(str((a.dtype, getattr(a, "shape", ()))).encode())
                h.update(np.ascontiguousarray(a).tobytes() if isinstance(a, np.ndarray) else repr(a).encode())

        f.visititems(visit)
    return h.hexdigest()


def run_digest(run_dir: str | os.PathLike) -> dict:
    """``relative path -> digest`` of every output of a run (see the module docstring)."""
    run_dir = Path(run_dir)
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if not p.is_file() or p.name in SKIP_NAMES or "work" in rel.parts or p.name.endswith(".part"):
            continue
        if p.suffix in (".h5", ".hdf5"):
            out[str(rel)] = _h5_digest(p)
        elif p.suffix == ".json":
            out[str(rel)] = hashlib.sha256(json.dumps(_clean(json.loads(p.read_text())),
                                                      sort_keys=True).encode()).hexdigest()
        else:
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _manifests(run_dir: Path) -> dict:
    out = {}
    for m in run_dir.glob("*/manifest.json"):
        try:
            out[m.parent.name] = json.loads(m.read_text())
        except ValueError:
            out[m.parent.name] = {"status": "unreadable"}
    return out


def _partials(run_dir: Path) -> list:
    return [p for p in run_dir.rglob(".*.part")] if run_dir.exists() else []


def kill_and_resume(config, run_dir, *, kills: int, seed: int, expected_s: float, env=None,
                    on_write_every: int = 3, log=print) -> dict:
    """Run ``tomofuse run config -o run_dir``, SIGKILL it ``kills`` times, rerun until it finishes.

    Kill moments: every ``on_write_every``-th kill waits for a temporary file of an atomic write
    to appear in the run directory and kills at once (a kill during a file write); the others
    wait a random time, uniform in ``[0.2, 1] * expected_s`` of the remaining work.

    Returns
    -------
    dict
        ``kills``: one record per kill (time, stages done and running at the kill, whether a
        write was in progress); ``finished_stage_reruns``: stages whose ``start_utc`` changed
        after they were seen done (must be empty); ``attempts``.
    """
    rng = np.random.default_rng(seed)
    run_dir = Path(run_dir)
    cmd = [sys.executable, "-m", "tomofuse.cli", "run", str(config), "-o", str(run_dir), "-q"]
    env = {**os.environ, **(env or {})}
    seen_done: dict = {}
    records = []
    reruns = []
    attempts = 0
    remaining = expected_s
    while True:
        attempts += 1
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        killed = False
        if len(records) < kills:
            on_write = (len(records) + 1) % on_write_every == 0
            deadline = time.monotonic() + (remaining * float(rng.uniform(0.2, 1.0)) if not on_write else 600)
            t0 = time.monotonic()
            while proc.poll() is None and time.monotonic() < deadline:
                if on_write and _partials(run_dir):
                    break
                time.sleep(0.002 if on_write else 0.02)
            if proc.poll() is None:
                writing = [str(p.relative_to(run_dir)) for p in _partials(run_dir)]
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = True
                ms = _manifests(run_dir)
                running = sorted(s for s, m in ms.items() if m.get("status") == "running")
                done = sorted(s for s, m in ms.items() if m.get("status") == "done")
                ptycho_done = None
                if "ptycho" in running:
                    ptycho_done = _ptycho_done(run_dir)
                records.append({"after_s": round(time.monotonic() - t0, 2), "running": running, "done": done,
                                "writing": writing, "on_write": on_write, "ptycho_projections_done": ptycho_done})
                log(f"kill {len(records)}: after {records[-1]['after_s']} s, running {running}, "
                    f"writing {writing}, ptycho done {ptycho_done}")
        if not killed:
            err = proc.communicate()[1].decode()
            if proc.returncode != 0:
                raise RuntimeError(f"tomofuse run exited with {proc.returncode}: {err[-2000:]}")
        ms = _manifests(run_dir)
        for s, m in ms.items():
            if m.get("status") == "done":
                if s in seen_done and seen_done[s] != m.get("start_utc"):
                    reruns.append(s)
                seen_done.setdefault(s, m.get("start_utc"))
        # a finished stage must verify: its outputs hash as its manifest says
        from tomofuse.io import file_sha256

        for s, m in ms.items():
            if m.get("status") == "done":
                for label, o in m["outputs"].items():
                    p = run_dir / o["path"]
                    assert p.exists() and (p.is_dir() or file_sha256(p) == o["sha256"]), \
                        f"stage {s} is marked done but its output {p} does not verify"
        if not killed:
            break
        done_wall = sum(m.get("wall_s") or 0 for m in ms.values() if m.get("status") == "done")
        remaining = max(2.0, expected_s - done_wall)
    return {"kills": records, "finished_stage_reruns": reruns, "attempts": attempts}


def _ptycho_done(run_dir: Path):
    import h5py

    p = run_dir / "ptycho" / "projections.h5"
    try:
        with h5py.File(p, "r") as f:
            return int(np.count_nonzero(f["done"][()]))
    except (OSError, KeyError):
        return None
