"""Helpers of the pipeline tests and of bench/pipeline_kill_resume.py: digests of a run's outputs,
and ``tomofuse run`` killed with SIGKILL at random moments, then rerun until it finishes.

``run_digest(run_dir)`` hashes what a run produced, per file: every HDF5 dataset's bytes, dtype and
shape and every attribute except the time of writing (``created_utc``); the reconstructed volumes
(``<stage>/volume.h5``, or ``volume.zarr`` after a distributed run) by their numbers, shape and
physical attributes under one key, so a serial and a distributed run compare; JSON files without the
keys that are timings or provenance (``*_s``, ``*_utc``, ``provenance``, ...); text files as
bytes.  Two runs with equal digests produced bit-identical data.  Not hashed: the manifests
(times, memory), ``run.log``, the hash cache and the ptychography checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import re
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typing import Optional

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


#: the attributes of a reconstructed volume that say what its numbers are
VOLUME_ATTRS = ("voxel_size", "energy_kev", "quantity", "center")


def _volume_digest(path: Path) -> str:
    from tomofuse.io import read_volume

    volume, attrs = read_volume(path)
    volume = np.ascontiguousarray(volume)
    h = hashlib.sha256(str((volume.dtype.str, volume.shape)).encode())
    h.update(volume.tobytes())
    h.update(repr({k: float(attrs[k]) if k != "quantity" else str(attrs[k]) for k in VOLUME_ATTRS
                   if k in attrs}).encode())
    return h.hexdigest()


def run_digest(run_dir: str | os.PathLike) -> dict:
    """``relative path -> digest`` of every output of a run (see the module docstring)."""
    run_dir = Path(run_dir)
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.name in ("volume.h5", "volume.zarr") and len(rel.parts) == 2:
            out[f"{rel.parts[0]}/volume"] = _volume_digest(p)
            continue
        if not p.is_file() or p.name in SKIP_NAMES or "work" in rel.parts or p.name.endswith(".part") \
                or any(part.endswith(".zarr") for part in rel.parts):
            continue
        if p.suffix in (".h5", ".hdf5"):
            out[str(rel)] = _h5_digest(p)
        elif p.suffix == ".json":
            out[str(rel)] = hashlib.sha256(json.dumps(_clean(json.loads(p.read_text())),
                                                      sort_keys=True).encode()).hexdigest()
        elif p.suffix == ".html":  # the report's provenance block holds the times of the run
            text = re.sub(r"<h2>Provenance</h2><pre>.*?</pre>", "", p.read_text(), flags=re.S)
            out[str(rel)] = hashlib.sha256(text.encode()).hexdigest()
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


# --------------------------------------------------------------------------- the stages by hand


def by_hand(config: Path, threads: int = 2, report_dir: Optional[Path] = None) -> dict:
    """The chain called stage by stage with the library's public functions and the config's values.

    With ``report_dir``, also the report a user would make by hand from the results in memory
    (the same ``tomofuse.report`` figures and page as the pipeline's report stage), so that a
    timing comparison with ``pipeline.run`` includes the same work."""
    import glob

    from tomofuse import Phase
    from tomofuse.analysis import sei_thickness, summarize, surface_coverage
    from tomofuse.echem import Particle, SiliconParameters, scenarios
    from tomofuse.io import read_cxi_header, read_dxchange
    from tomofuse.ptycho import HoldOut, focused_probe, object_pixel_size, reconstruct
    from tomofuse.register import RegistrationOptions, fuse, register
    from tomofuse.segment import label_particles, segment
    from tomofuse.tomo import (align_projections, fbp, fbp_phase_derivative, find_center, fsc, normalize, paganin,
                               remove_phase_ramp, shift_projections)

    from tomofuse import pipeline
    from tomofuse.ptycho import default_object_shape

    cfg = pipeline.load_config(config)
    base = Path(config).parent
    scans = sorted(glob.glob(str(base / "raw/ptycho/proj_*.cxi")))
    th = np.radians(np.loadtxt(base / "raw/ptycho/angles_deg.txt"))
    h = read_cxi_header(scans[0])
    n = h.pattern_shape[0]
    pitch = object_pixel_size(h.energy_kev, h.distance, h.x_pixel_size, n)
    probe = focused_probe(n, object_pixel_size=pitch, energy_kev=h.energy_kev,
                          diameter=cfg["ptycho"]["probe_diameter_m"])
    from tomofuse.io import read_cxi

    # one object shape for all projections: the union of their default shapes (a regular stack)
    positions = []
    for s in scans:
        hs = read_cxi_header(s)
        positions.append((hs.positions - hs.positions.mean(axis=0)) / pitch)
    shapes = [default_object_shape(p, n) for p in positions]
    shape = (max(s[0] for s in shapes), max(s[1] for s in shapes))
    objs, illum = [], []
    for s, pos in zip(scans, positions):
        scan = read_cxi(s)
        rec = reconstruct(scan.data, pos, probe, object_shape=shape,
                          engines=(("dm", cfg["ptycho"]["dm_iterations"]), ("ml", cfg["ptycho"]["ml_iterations"])),
                          holdout=HoldOut(share=share) if (share := cfg["ptycho"]["holdout_share"]) > 0 else False,
                          threads=threads)
        objs.append(rec.object)
        illum.append(rec.illumination)
    illum = np.stack(illum)
    peak = illum.reshape(len(illum), -1).max(axis=1)[:, None, None]
    common = np.all(illum >= 0.5 * peak, axis=0)
    r, c = np.flatnonzero(common.any(axis=1)), np.flatnonzero(common.any(axis=0))
    phase = np.angle(np.stack(objs)[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1]).astype(np.float32)
    air = np.zeros(phase.shape[1:], bool)
    air[:, :4] = air[:, -4:] = True
    phase = remove_phase_ramp(phase, mask=air, wrap=True)
    est = align_projections(phase, th, air_mask=air, threads=threads)
    phase = shift_projections(phase, -est, threads=threads)
    # the rows every projection's shift kept inside its frame (aligned[r] = measured[r + dy]): the
    # fused volume holds only their slices
    n_rows = phase.shape[1]
    seen = [r for r in range(n_rows) if np.all((r + est[:, 0] >= 0) & (r + est[:, 0] <= n_rows - 1))]
    vol_p = fbp_phase_derivative(phase, th, filter="hann", threads=threads)
    delta = (-vol_p * (12.398419843320026e-10 / h.energy_kev / (2 * math.pi * pitch))).astype(np.float32)
    out = {"pxct": delta}

    t = read_dxchange(base / "raw/txtm.h5")
    px = cfg["txtm"]["pixel_size_m"]
    mu = paganin(normalize(t.data, t.flat, t.dark), pixel_size=px, distance=5e-3, energy_kev=8.4, delta_beta=0.028,
                 threads=threads)
    mu = np.ascontiguousarray(mu, dtype=np.float32)
    center = find_center(mu, t.theta, threads=threads)
    vol_t = (fbp(mu, t.theta, center=center, filter="hann", threads=threads) * (1.0 / px)).astype(np.float32)
    out["txtm"] = vol_t

    fsc_p = fsc(fbp_phase_derivative(phase[0::2], th[0::2], filter="hann", threads=threads),
                fbp_phase_derivative(phase[1::2], th[1::2], filter="hann", threads=threads), voxel_size=pitch)
    fsc_t = fsc(fbp(mu[0::2], t.theta[0::2], center=center, filter="hann", threads=threads),
                fbp(mu[1::2], t.theta[1::2], center=center, filter="hann", threads=threads), voxel_size=px)
    res_p, res_t = fsc_p.resolution, fsc_t.resolution
    out["fsc"] = (res_p, res_t)
    reg = register(delta, vol_t, fixed_voxel_size=pitch, moving_voxel_size=px, initial="auto",
                   options=RegistrationOptions(stages=("rigid", "bspline")), seed=0, threads=threads)
    fused = fuse(delta, vol_t, reg, threads=threads).astype(np.float32)[:, seen[0]:seen[-1] + 1]
    out["fused"] = fused
    # (an FSC that did not cross its threshold: that channel's PSF fitted, as the pipeline does)
    seg = segment(fused, voxel_size=pitch, cycled=False, channels="both", threads=threads,
                  resolution=(res_p if fsc_p.crossed else None, res_t if fsc_t.crossed else None))
    out["labels"] = seg.labels
    # the particle stage's neck_ratio and mask_smoothing are label_particles' defaults
    parts = label_particles(seg.labels, voxel_size=pitch, min_volume=None, split=True, threads=threads)
    out["particles"] = parts
    table, surface = surface_coverage(seg.labels, parts, voxel_size=pitch, sigma=2.0, threads=threads, return_surface=True)
    table = table.join(sei_thickness(surface=surface).drop(columns=["coverage", "touches_border"])
                       .rename(columns={"n_rays": "n_sei_rays"}))
    row = summarize(table).loc["area_weighted"]
    out["coverage"] = {k: float(row[k]) for k in ("free", "cbd", "contact", "sei")}
    ids, counts = np.unique(parts[parts > 0], return_counts=True)
    border = np.ones(parts.shape, bool)
    border[3:-3, 3:-3, 3:-3] = False  # echem.margin_voxels
    cut = set(np.unique(parts[border]))
    inner = [(c, i) for i, c in zip(ids, counts) if i not in cut]
    out["inner_particles"] = len(inner)
    out["iqr_ratio"] = soc = None  # none simulated when every particle touches the margin (as the pipeline)
    if inner:
        pid = int(sorted(inner, key=lambda t: (-t[0], t[1]))[0][1])
        particle = Particle.from_labels(seg.labels, parts, pid, voxel_size=pitch, margin=3, threads=threads)
        soc = scenarios.soc_distribution(particle, params=SiliconParameters.paper(), threads=threads)  # parameters
        out["iqr_ratio"] = soc["iqr_ratio"]
    out["phase_fractions"] = {Phase(p).name.lower(): float(f) for p, f in seg.fractions().items()}
    if report_dir is not None:
        from tomofuse import report as rp

        figs1 = [("sections", rp.cross_sections(fused[0], fused[1], voxel_size=pitch), ""),
                 ("registration", rp.registration_check(fused[0], fused[1], voxel_size=pitch), ""),
                 ("segmentation", rp.segmentation_overlay(fused[0], seg.labels, voxel_size=pitch), ""),
                 ("rendering", rp.phase_surfaces(seg.labels, voxel_size=pitch), ""),
                 ("fsc", rp.fsc_curves({"PXCT": fsc_p, "TXTM": fsc_t}), "")]
        figs2 = [("coverage", rp.coverage_bars({"this run": out["coverage"]}), "")]
        if np.isfinite(table["mean_m"]).any():
            figs2.append(("sei_thickness", rp.sei_thickness_distributions(table), ""))
        figs3 = [("soc", rp.soc_distributions(soc), "")] if soc is not None else []
        rp.write_report(report_dir, title="by hand", sections=[rp.Section("1", figures=figs1),
                        rp.Section("2", figures=figs2, tables=[("coverage", table, "")]),
                        rp.Section("3", figures=figs3)],
                        quantities=[rp.Quantity(k, "1", v) for k, v in out["coverage"].items()])
    return out


