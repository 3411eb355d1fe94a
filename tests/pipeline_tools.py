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
#: times of writing, and SHA-256 of whole files (which hold such times) inside JSON documents
VOLATILE_KEYS = {"created_utc", "provenance", "start_utc", "end_utc", "pid", "host", "versions", "transform_sha256"}


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
                if isinstance(a, np.ndarray) and a.dtype.kind != "O":
                    h.update(np.ascontiguousarray(a).tobytes())
                else:  # scalars and strings (object arrays would hash their pointers)
                    h.update(repr(a.tolist() if isinstance(a, np.ndarray) else a).encode())

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


def kill_and_resume(config, run_dir, *, targets, stage_seconds: dict, seed: int, env=None, log=print) -> dict:
    """Run ``tomofuse run config -o run_dir``, SIGKILL it at each target, rerun until it finishes.

    Parameters
    ----------
    targets : sequence of (stage, mode)
        In stage order.  ``mode="time"``: once the stage runs (its manifest names the new
        process), wait a random fraction (uniform 0.05-0.9) of ``stage_seconds[stage]`` and kill;
        ``mode="write"``: once the stage runs, kill the moment a temporary file of an atomic
        write appears in the run directory (a kill during a file write).  A target whose stage
        finished before it could be hit is dropped (recorded as missed).
    stage_seconds : dict
        Wall time of each stage in an uninterrupted run.

    Returns
    -------
    dict
        ``kills``: one record per kill (stage running, stages done, files being written, projections
        of the series done); ``missed``; ``finished_stage_reruns``: stages whose ``start_utc``
        changed after they were seen done (must be empty); ``attempts``.
    """
    from tomofuse.io import file_sha256

    rng = np.random.default_rng(seed)
    run_dir = Path(run_dir)
    cmd = [sys.executable, "-m", "tomofuse.cli", "run", str(config), "-o", str(run_dir), "-q"]
    env = {**os.environ, **(env or {})}
    pending = list(targets)
    seen_done: dict = {}
    records, missed, reruns = [], [], []
    attempts = 0
    while True:
        attempts += 1
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        killed = False
        while pending and not killed and proc.poll() is None:
            stage, mode = pending[0]
            m = _manifests(run_dir).get(stage, {})
            if m.get("status") == "done" and m.get("pid") != proc.pid:
                missed.append(pending.pop(0))
                continue
            if not (m.get("status") == "running" and m.get("pid") == proc.pid):
                later = [s for s, mm in _manifests(run_dir).items() if mm.get("pid") == proc.pid
                         and STAGE_INDEX.get(s, -1) > STAGE_INDEX[stage]]
                if later:  # the stage ran (and finished) between two polls
                    missed.append(pending.pop(0))
                time.sleep(0.003)
                continue
            t0 = time.monotonic()
            if mode == "write":
                while proc.poll() is None and not _partials(run_dir):
                    time.sleep(0.001)
            else:
                end = t0 + float(rng.uniform(0.05, 0.9)) * stage_seconds.get(stage, 1.0)
                while proc.poll() is None and time.monotonic() < end:
                    time.sleep(0.002)
            if proc.poll() is not None:
                break
            writing = [str(p.relative_to(run_dir)) for p in _partials(run_dir)]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
            pending.pop(0)
            ms = _manifests(run_dir)
            running = sorted(s for s, mm in ms.items() if mm.get("status") == "running")
            done = [s for s in STAGE_INDEX if ms.get(s, {}).get("status") == "done"]
            records.append({"target": [stage, mode], "after_s": round(time.monotonic() - t0, 3),
                            "running": running, "done": done, "writing": writing,
                            "ptycho_projections_done": _ptycho_done(run_dir) if "ptycho" in running else None})
            log(f"kill {len(records)}: {mode} in {stage} after {records[-1]['after_s']} s; running {running}, "
                f"writing {writing}, series projections done {records[-1]['ptycho_projections_done']}")
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
                for label, o in m["outputs"].items():  # a finished stage's outputs verify
                    p = run_dir / o["path"]
                    assert p.exists() and file_sha256(p) == o["sha256"], \
                        f"stage {s} is marked done but its output {p} does not verify"
        if not killed:
            break
    return {"kills": records, "missed": missed, "finished_stage_reruns": reruns, "attempts": attempts}


STAGE_INDEX = {s: i for i, s in enumerate(("ptycho", "pxct", "txtm", "fsc", "register", "fuse", "segment",
                                          "particles", "coverage", "echem", "report"))}


def _ptycho_done(run_dir: Path):
    import h5py

    p = run_dir / "ptycho" / "projections.h5"
    try:
        with h5py.File(p, "r") as f:
            return int(np.count_nonzero(f["done"][()]))
    except (OSError, KeyError):
        return None
