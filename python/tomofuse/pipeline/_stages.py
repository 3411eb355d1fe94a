"""The pipeline's stages: what each reads, what it calls, what it writes.

Every stage is a function ``run(ctx) -> results`` that reads its inputs (the outputs of the
stages before it, or a file the config gives to enter there), calls the library's public
functions, and writes its outputs atomically into ``ctx.folder`` (``RUN/<stage>/``).  The
``results`` dict holds the stage's small numbers (they go into its manifest and the report).
"""

from __future__ import annotations

import glob
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ._config import Config, ConfigError
from ._layout import stage_volume

logger = logging.getLogger("tomofuse.pipeline")

#: Planck constant times c, keV m (wavelength = HC / energy).
HC_KEV_M = 12.398419843320026e-10


@dataclass
class Context:
    """What a stage sees: the config, the run directory, threads, the Dask client, progress."""

    config: Config
    run_dir: Path
    threads: Optional[int]
    client: Any = None
    callback: Optional[Callable[[float, str], None]] = None
    folder: Optional[Path] = None

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    def progress(self, fraction: float, message: str = "") -> None:
        if self.callback is not None:
            self.callback(fraction, message)


@dataclass(frozen=True)
class Stage:
    """A stage: its function, the stages it reads from, the config sections its parameters live in,
    and the function listing its input files."""

    name: str
    run: Callable[[Context], dict]
    upstream: tuple
    sections: tuple
    inputs: Callable[[Context], dict]
    help: str


# ------------------------------------------------------------------------------------------ helpers


def _results_json(ctx: Context, stage: str) -> dict:
    p = ctx.stage_dir(stage) / "results.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _write_json(path: Path, doc: Any) -> None:
    from ..io import atomic_path, jsonable

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(doc), indent=2, sort_keys=True, allow_nan=True) + "\n")


def _write_h5(path: Path, datasets: dict, attrs: dict, *, program: str, parameters: Optional[dict] = None) -> None:
    """An HDF5 file of several datasets, atomically, with provenance."""
    import h5py

    from ..io import atomic_path, file_attributes, set_h5_attrs

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            set_h5_attrs(f, file_attributes(attrs, parameters=parameters or {}, program=program))
            for name, data in datasets.items():
                f.create_dataset(name, data=data)


def _read_h5(path: Path, names) -> tuple[dict, dict]:
    import h5py

    with h5py.File(path, "r") as f:
        return {n: f[n][()] for n in names}, dict(f.attrs)


def scan_files(config: Config) -> list[Path]:
    """The sorted CXI files of ``ptycho.scans`` (empty list when not given)."""
    pattern = config["ptycho"]["scans"]
    if not pattern:
        return []
    return [Path(p) for p in sorted(glob.glob(pattern))]


def _angles_deg(config: Config, scans: list[Path]) -> np.ndarray:
    path = config.path("ptycho", "angles_file")
    if path is not None:
        try:
            a = np.loadtxt(path, ndmin=1, dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"ptycho.angles_file: cannot read {str(path)!r}: {exc}") from None
    else:
        from ..io import read_cxi_header

        try:
            a = np.array([float(read_cxi_header(s).attrs["rotation_angle_deg"]) for s in scans])
        except KeyError:
            raise ConfigError("ptycho.angles_file: not given and the CXI files carry no rotation_angle_deg "
                              "attribute") from None
    if a.shape != (len(scans),):
        raise ConfigError(f"ptycho.angles_file: {a.size} angles for {len(scans)} scans in ptycho.scans")
    return a


def ptycho_geometry(config: Config) -> dict:
    """Object pixel (m), pattern side N, energy (keV) of the first scan."""
    from ..io import read_cxi_header
    from ..ptycho import object_pixel_size

    h = read_cxi_header(scan_files(config)[0])
    n = h.pattern_shape[0]
    pitch = object_pixel_size(h.energy_kev, h.distance, h.x_pixel_size, n)
    return {"pixel_m": pitch, "n": n, "energy_kev": h.energy_kev}


# --------------------------------------------------------------------------------------------- stages


def run_ptycho(ctx: Context) -> dict:
    from ..ptycho import HoldOut, focused_probe, reconstruct_series

    c = ctx.config["ptycho"]
    scans = scan_files(ctx.config)
    angles = np.radians(_angles_deg(ctx.config, scans))
    geo = ptycho_geometry(ctx.config)
    probe = focused_probe(geo["n"], object_pixel_size=geo["pixel_m"], energy_kev=geo["energy_kev"],
                          diameter=c["probe_diameter_m"])
    engines = tuple((e, n) for e, n in (("dm", c["dm_iterations"]), ("ml", c["ml_iterations"])) if n > 0)
    if not engines:
        raise ConfigError("ptycho.dm_iterations, ptycho.ml_iterations: at least one must be > 0")
    out = ctx.folder / "projections.h5"
    work = ctx.folder / "work"

    def series():
        # the per-projection checkpoints are kept until the stack is complete: a stack left unreadable by a
        # kill in the middle of an in-place write is then rebuilt from them without recomputing anything
        reconstruct_series([str(s) for s in scans], probe, out=out, angles=angles, client=ctx.client, work_dir=work,
                           engines=engines, checkpoint_every=c["checkpoint_every"], probe_modes=c["probe_modes"],
                           callback=ctx.progress, threads=ctx.threads, object_pixel_size=geo["pixel_m"],
                           keep_checkpoints=True,
                           holdout=HoldOut(share=c["holdout_share"]) if c["holdout_share"] > 0 else False)

    try:
        series()
    except OSError as exc:
        if not out.exists():
            raise
        logger.warning("ptycho: the stack %s is unreadable (%s); rebuilding it from the checkpoints", out, exc)
        out.unlink()
        series()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return {"outputs": {"projections": out},
            "results": {"projections": len(scans), "object_pixel_m": geo["pixel_m"], "pattern_px": geo["n"],
                        "energy_kev": geo["energy_kev"]}}


def _crop_box(illumination: np.ndarray, threshold: float) -> tuple[slice, slice]:
    """The bounding box of the region every projection illuminates above ``threshold`` of its maximum."""
    peak = illumination.reshape(len(illumination), -1).max(axis=1)[:, None, None]
    common = np.all(illumination >= threshold * np.maximum(peak, 1e-30), axis=0)
    rows, cols = np.flatnonzero(common.any(axis=1)), np.flatnonzero(common.any(axis=0))
    if rows.size < 4 or cols.size < 4:
        raise ValueError("pxct.illumination_threshold: the region all projections illuminate is too small "
                         f"({rows.size} x {cols.size} pixels); lower the threshold")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def run_pxct(ctx: Context) -> dict:
    from ..tomo import align_projections, remove_phase_ramp, shift_projections

    c = ctx.config["pxct"]
    given = ctx.config.path("pxct", "projections")
    if given is not None:
        d, attrs = _read_h5(given, ("phase", "angles"))
        phase, angles = d["phase"].astype(np.float32), d["angles"].astype(np.float64)
        voxel = c["voxel_size_m"] or float(attrs.get("voxel_size", 0.0))
        energy = float(attrs.get("energy_kev", 6.2))
        if not voxel:
            raise ConfigError(f"pxct.voxel_size_m: {str(given)!r} carries no voxel_size attribute; give it")
    else:
        import h5py

        src = ctx.stage_dir("ptycho") / "projections.h5"
        with h5py.File(src, "r") as f:
            illumination = f["illumination"][()]
            rows, cols = _crop_box(illumination, c["illumination_threshold"])
            obj = f["object"][:, rows, cols]
            angles = f["angles"][()].astype(np.float64)
        phase = np.angle(obj).astype(np.float32)
        res = _results_json(ctx, "ptycho")
        voxel = c["voxel_size_m"] or res["object_pixel_m"]
        energy = res["energy_kev"]
    ctx.progress(0.1, "phase ramps")
    air = np.zeros(phase.shape[1:], bool)
    air[:, :c["air_columns"]] = True
    air[:, -c["air_columns"]:] = True
    phase = remove_phase_ramp(phase, mask=air, wrap=True)
    shifts = np.zeros((len(phase), 2))
    made_up = (0, 0)
    if c["align"]:
        ctx.progress(0.2, "alignment")
        shifts = align_projections(phase, angles, air_mask=air, threads=ctx.threads)
        phase = shift_projections(phase, -shifts, threads=ctx.threads)
        made_up = _made_up_rows(shifts, phase.shape[1])
    _write_h5(ctx.folder / "projections.h5", {"phase": phase, "angles": angles, "shifts": shifts},
              {"voxel_size": voxel, "energy_kev": energy}, program="tomofuse.pipeline.pxct")
    ctx.progress(0.7, "FBP (phase derivative)")
    wavelength = HC_KEV_M / energy
    # phi = -2 pi / lambda int delta, and the reconstruction is in rad per voxel
    out, shape = _reconstruct(ctx, phase, angles, algorithm="phase_derivative",
                              scale=-(wavelength / (2 * math.pi * voxel)), options={"filter": c["filter"]},
                              attrs={"voxel_size": voxel, "energy_kev": energy, "quantity": "delta",
                                     "made_up_slices": list(made_up)},
                              program="tomofuse.pipeline.pxct", progress=(0.7, 1.0))
    return {"outputs": {"volume": out, "projections": ctx.folder / "projections.h5"},
            "results": {"voxel_size_m": voxel, "shape": shape, "energy_kev": energy,
                        "max_alignment_shift_px": float(np.abs(shifts).max()) if len(shifts) else 0.0,
                        "made_up_slices": list(made_up)}}


def _made_up_rows(shifts: np.ndarray, rows: int) -> tuple[int, int]:
    """Rows ``(top, bottom)`` at the two ends of the aligned projections into which some projection's
    vertical shift brought content from beyond its frame (``shift_projections`` makes that up).  Each row
    is a slice of the parallel-beam volume, so these slices show partly invented data: on the demo's
    scans (shifts up to 1.5 px) the two end slices at each end left a residual against the true labels
    3-5x that of the middle slices, and their CBD Dice was 0.31-0.68.  The fuse stage leaves them out."""
    dy = np.asarray(shifts, dtype=np.float64)[:, 0]
    # aligned[r] = measured[r + dy]: made up where r + dy < 0 or r + dy > rows - 1
    top = int(math.ceil(max(0.0, float(np.max(-dy)))))
    bottom = int(math.ceil(max(0.0, float(np.max(dy)))))
    if top + bottom >= rows:
        raise ValueError(f"pxct.align: the projections' vertical alignment shifts (up to {np.abs(dy).max():.1f} "
                         f"px) leave none of their {rows} rows seen by every projection")
    return top, bottom


def _reconstruct(ctx: Context, projections: np.ndarray, angles: np.ndarray, *, algorithm: str, scale: float,
                 options: dict, attrs: dict, program: str, progress: tuple) -> tuple[Path, list]:
    """The stage's volume ``(reconstruction * scale)`` as float32: in this process into ``volume.h5``, or,
    with a Dask client, slab by slab on the workers into ``volume.zarr`` (the workers write their slabs; the
    volume never passes through this process).  Both hold the same numbers bit for bit."""
    h5, zarr_dir = ctx.folder / "volume.h5", ctx.folder / "volume.zarr"
    lo, hi = progress
    if ctx.client is not None:
        from ..distributed import fbp_to_zarr

        h5.unlink(missing_ok=True)  # one volume per stage folder: the format of the latest run
        out = fbp_to_zarr(projections, angles, zarr_dir, client=ctx.client, algorithm=algorithm, scale=scale,
                          attrs=attrs, overwrite=True, callback=lambda f, m: ctx.progress(lo + (hi - lo) * f, m),
                          **options)
        return out, [projections.shape[1], *_slice_shape(projections, options)]
    import shutil

    from ..io import write_volume

    shutil.rmtree(zarr_dir, ignore_errors=True)
    vol = (_fbp_function(algorithm)(projections, angles, threads=ctx.threads, **options) * scale).astype(np.float32)
    ctx.progress(lo + 0.9 * (hi - lo), "writing")
    return write_volume(h5, vol, attrs=attrs, program=program, overwrite=True), list(vol.shape)


def _fbp_function(algorithm: str):
    """``tomofuse.tomo.fbp`` or ``fbp_phase_derivative`` by ``fbp_to_zarr``'s ``algorithm`` name."""
    from ..tomo import fbp, fbp_phase_derivative

    return {"fbp": fbp, "phase_derivative": fbp_phase_derivative}[algorithm]


def _slice_shape(projections: np.ndarray, options: dict) -> list:
    return list(options.get("shape", (projections.shape[2], projections.shape[2])))


def txtm_pixel_size(config: Config) -> float:
    """The TXTM pixel (m): the config's or the Data Exchange file's ``pixel_size_m`` attribute."""
    c = config["txtm"]
    if c["pixel_size_m"]:
        return c["pixel_size_m"]
    import h5py

    with h5py.File(config.path("txtm", "scan"), "r") as f:
        v = f.attrs.get("pixel_size_m")
    if v is None:
        raise ConfigError(f"txtm.pixel_size_m: {c['scan']!r} carries no pixel_size_m attribute; give it")
    return float(v)


def run_txtm(ctx: Context) -> dict:
    from ..io import read_dxchange
    from ..tomo import find_center, minus_log, normalize, paganin, remove_rings

    c = ctx.config["txtm"]
    scan = read_dxchange(ctx.config.path("txtm", "scan"))
    if scan.flat is None or scan.dark is None:
        raise ConfigError(f"txtm.scan: {c['scan']!r} has no flat (data_white) or dark (data_dark) fields")
    theta = scan.theta if scan.theta is not None else np.linspace(0, np.pi, len(scan.data), endpoint=False)
    pixel = txtm_pixel_size(ctx.config)
    ctx.progress(0.05, "flat/dark")
    tr = normalize(scan.data, scan.flat, scan.dark)
    if c["rings"] != "none":
        ctx.progress(0.15, "rings")
        # rings are stripes in the transmission's sinograms
        tr = remove_rings(tr, method=c["rings"])
    ctx.progress(0.3, "Paganin")
    if c["delta_beta"] > 0:
        mu = paganin(tr, pixel_size=pixel, distance=c["distance_m"], energy_kev=c["energy_kev"],
                     delta_beta=c["delta_beta"], threads=ctx.threads)
    else:
        mu = minus_log(tr)
    mu = np.ascontiguousarray(mu, dtype=np.float32)
    ctx.progress(0.5, "rotation axis")
    center = c["center_px"] if c["center_px"] >= 0 else float(find_center(mu, theta, threads=ctx.threads))
    _write_h5(ctx.folder / "projections.h5", {"mu": mu, "angles": theta}, {"voxel_size": pixel, "center": center},
              program="tomofuse.pipeline.txtm")
    ctx.progress(0.7, "FBP")
    out, shape = _reconstruct(ctx, mu, theta, algorithm="fbp", scale=1.0 / pixel,  # mu per meter
                              options={"center": center, "filter": c["filter"]},
                              attrs={"voxel_size": pixel, "energy_kev": c["energy_kev"], "quantity": "mu_per_m",
                                     "center": center}, program="tomofuse.pipeline.txtm", progress=(0.7, 1.0))
    return {"outputs": {"volume": out, "projections": ctx.folder / "projections.h5"},
            "results": {"voxel_size_m": pixel, "shape": shape, "center_px": center}}


def _half(ctx: Context, projections, angles, algorithm: str, options: dict, name: str) -> np.ndarray:
    """A half data set's reconstruction: in this process, or in slabs on the Dask workers (the same numbers)."""
    if ctx.client is None:
        return _fbp_function(algorithm)(projections, angles, threads=ctx.threads, **options)
    import shutil

    from ..distributed import fbp_to_zarr
    from ..io import read_volume

    work = ctx.folder / "work"
    work.mkdir(exist_ok=True)
    path = fbp_to_zarr(np.ascontiguousarray(projections), angles, work / f"{name}.zarr",
                       client=ctx.client, algorithm=algorithm, overwrite=True, **options)
    try:
        return np.asarray(read_volume(path)[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_fsc(ctx: Context) -> dict:
    from ..tomo import fsc

    c = ctx.config["fsc"]
    results: dict = {}
    curves: dict = {}
    for k, modality in enumerate(("pxct", "txtm")):
        p = ctx.stage_dir(modality) / "projections.h5"
        if modality not in ctx_stages(ctx) or not p.is_file():
            continue
        ctx.progress(k / 2, f"{modality} halves")
        key = "phase" if modality == "pxct" else "mu"
        d, attrs = _read_h5(p, (key, "angles"))
        proj, th = d[key], d["angles"]
        voxel = float(attrs["voxel_size"])
        if modality == "pxct":
            algorithm, options = "phase_derivative", {"filter": ctx.config["pxct"]["filter"]}
        else:
            algorithm, options = "fbp", {"center": float(attrs["center"]), "filter": ctx.config["txtm"]["filter"]}
        a, b = (_half(ctx, proj[k::2], th[k::2], algorithm, options, f"{modality}_{k}") for k in (0, 1))
        r = fsc(a, b, voxel_size=voxel, threshold=c["threshold"], threads=ctx.threads)
        results[modality] = {"resolution_m": float(r.resolution), "crossed": bool(r.crossed), "voxel_size_m": voxel}
        curves[modality] = {"frequency_per_m": r.frequency, "fsc": r.fsc, "threshold": r.threshold_curve}
    _write_json(ctx.folder / "fsc.json", {"threshold": c["threshold"], "results": results, "curves": curves})
    return {"outputs": {"fsc": ctx.folder / "fsc.json"}, "results": results}


def _volume(spec, default="volume"):
    from ..io import read_volume

    v, attrs = read_volume(spec, default_dataset=default)
    return np.asarray(v), attrs


def _pxct_volume_spec(ctx: Context):
    return ctx.config["pxct"]["volume"] or stage_volume(ctx.run_dir, "pxct")


def _txtm_volume_spec(ctx: Context):
    return ctx.config["txtm"]["volume"] or stage_volume(ctx.run_dir, "txtm")


def _voxel(attrs: dict, override: float, what: str) -> float:
    v = override or attrs.get("voxel_size")
    if not v:
        raise ConfigError(f"{what}: the volume carries no voxel_size attribute; give it in the config")
    return float(v)


def run_register(ctx: Context) -> dict:
    from ..register import RegistrationOptions, register

    c = ctx.config["register"]
    fixed, fa = _volume(_pxct_volume_spec(ctx))
    moving, ma = _volume(_txtm_volume_spec(ctx))
    reg = register(fixed, moving, fixed_voxel_size=_voxel(fa, ctx.config["pxct"]["voxel_size_m"], "pxct.volume"),
                   moving_voxel_size=_voxel(ma, ctx.config["txtm"]["pixel_size_m"], "txtm.volume"),
                   initial=c["initial"], options=RegistrationOptions(stages=tuple(c["stages"])), seed=c["seed"],
                   threads=ctx.threads, callback=ctx.progress)
    path = ctx.folder / "registration.json"
    reg.save(path)
    metrics = {}  # the numbers of each registration stage (timings left out: they change from run to run)
    for st, d in reg.metrics.items():
        for k, v in (d.items() if isinstance(d, dict) else [("value", d)]):
            if isinstance(v, (int, float, bool)) and not k.endswith("_s"):
                metrics[f"{st}.{k}"] = v
    return {"outputs": {"registration": path, "transform": path.with_suffix(".h5")},
            "results": {"stages": list(reg.stages), "metrics": metrics}}


def run_fuse(ctx: Context) -> dict:
    from ..io import write_volume
    from ..register import fuse, load

    fixed, fa = _volume(_pxct_volume_spec(ctx))
    moving, _ = _volume(_txtm_volume_spec(ctx))
    reg_path = ctx.config["register"]["registration"] or ctx.stage_dir("register") / "registration.json"
    reg = load(reg_path)
    ctx.progress(0.2, "resampling TXTM onto the PXCT grid")
    fused = fuse(fixed, moving, reg, threads=ctx.threads)
    voxel = _voxel(fa, ctx.config["pxct"]["voxel_size_m"], "pxct.volume")
    # the PXCT slices that its projections' alignment partly made up (_made_up_rows) are left out: the
    # registration saw them (their errors are noise to its similarity), the analysis does not
    top, bottom = (int(x) for x in fa.get("made_up_slices", (0, 0)))
    if top or bottom:
        fused = fused[:, top:fused.shape[1] - bottom]
        logger.info("fuse: PXCT slices %d..%d kept; %d + %d at the ends were partly made up by the alignment",
                    top, top + fused.shape[1] - 1, top, bottom)
    out = write_volume(ctx.folder / "fused.h5", fused.astype(np.float32),
                       attrs={"voxel_size": voxel, "channels": "pxct_delta,txtm_mu_per_m", "pxct_first_slice": top},
                       program="tomofuse.pipeline.fuse", overwrite=True)
    inside = np.isfinite(fused[1])
    return {"outputs": {"fused": out}, "results": {"shape": list(fused.shape), "voxel_size_m": voxel,
                                                   "txtm_coverage": float(inside.mean()),
                                                   "pxct_slices_left_out": [top, bottom]}}


def _fused_spec(ctx: Context):
    return ctx.config["fuse"]["fused"] or ctx.stage_dir("fuse") / "fused.h5"


def run_segment(ctx: Context) -> dict:
    from .. import Phase
    from ..segment import save_segmentation, segment

    c = ctx.config["segment"]
    fused, attrs = _volume(_fused_spec(ctx))
    voxel = _voxel(attrs, ctx.config["pxct"]["voxel_size_m"], "fuse.fused")
    resolution = None
    if c["use_fsc_resolution"]:
        r = _results_json(ctx, "fsc")
        if "pxct" in r and "txtm" in r:
            # an FSC that never crossed its threshold only bounds the resolution (by Nyquist): that
            # channel's PSF is fitted to the data instead
            resolution = tuple(r[m]["resolution_m"] if r[m].get("crossed", True) else None for m in ("pxct", "txtm"))
            for m, value in zip(("PXCT", "TXTM"), resolution):
                if value is None:
                    logger.info("segment: the %s FSC did not cross its threshold; its PSF is fitted to the data", m)
    if c["block_voxels"]:
        from ..segment import segment_blocks

        seg = segment_blocks(fused, voxel_size=voxel, cycled=c["cycled"], channels=c["channels"],
                             resolution=resolution, block=(c["block_voxels"],) * 3, client=ctx.client,
                             threads=ctx.threads, callback=ctx.progress)
    else:
        seg = segment(fused, voxel_size=voxel, cycled=c["cycled"], channels=c["channels"], resolution=resolution,
                      threads=ctx.threads, callback=ctx.progress)
    out = ctx.folder / "segmentation.h5"
    save_segmentation(out, seg, parameters={"cycled": c["cycled"], "channels": c["channels"],
                                            "resolution": resolution, "voxel_size": voxel})
    fractions = {Phase(p).name.lower(): float(f) for p, f in seg.fractions().items()}
    return {"outputs": {"segmentation": out}, "results": {"phase_fractions": fractions, "voxel_size_m": voxel,
                                                         "resolution_m": resolution}}


def _labels_spec(ctx: Context):
    return ctx.config["segment"]["labels"] or ctx.stage_dir("segment") / "segmentation.h5"


def _labels(ctx: Context):
    from ..io import read_volume, split_dataset_path

    spec = _labels_spec(ctx)
    path, name = split_dataset_path(spec)
    labels, attrs = read_volume(f"{path}:{name or '/labels'}")
    voxel = _voxel(attrs, 0.0, "segment.labels")
    if not attrs.get("voxel_size"):
        import h5py

        with h5py.File(path, "r") as f:
            voxel = _voxel(dict(f.attrs), ctx.config["pxct"]["voxel_size_m"], "segment.labels")
    return np.asarray(labels), voxel


def run_particles(ctx: Context) -> dict:
    from ..segment import label_particles

    c = ctx.config["particles"]
    labels, voxel = _labels(ctx)
    ctx.progress(0.1, "labeling silicon particles")
    parts = label_particles(labels, voxel_size=voxel, min_volume=c["min_volume_m3"] or None, split=c["split"],
                            neck_ratio=c["neck_ratio"], mask_smoothing=c["mask_smoothing"], threads=ctx.threads)
    out = ctx.folder / "particles.h5"
    _write_h5(out, {"particles": parts.astype(np.int32)}, {"voxel_size": voxel}, program="tomofuse.pipeline.particles")
    return {"outputs": {"particles": out}, "results": {"count": int(parts.max())}}


def _particles(ctx: Context) -> np.ndarray:
    from ..io import read_volume

    spec = ctx.config["particles"]["particles"] or ctx.stage_dir("particles") / "particles.h5"
    return np.asarray(read_volume(spec, default_dataset="particles")[0])


def run_coverage(ctx: Context) -> dict:
    from ..analysis import sei_thickness, summarize, surface_coverage

    c = ctx.config["coverage"]
    labels, voxel = _labels(ctx)
    parts = _particles(ctx)
    ctx.progress(0.1, "ray-traced surface coverage")
    # on a cluster, groups of particles are traced as tasks on crops around them (the same numbers)
    table, surface = surface_coverage(labels, parts, voxel_size=voxel, sigma=c["sigma"], threads=ctx.threads,
                                      return_surface=True, client=ctx.client)
    if c["thickness"]:
        ctx.progress(0.7, "SEI thickness")
        th = sei_thickness(surface=surface)
        table = table.join(th.drop(columns=["coverage", "touches_border"]).rename(columns={"n_rays": "n_sei_rays"}))
    summary = summarize(table)
    from ..io import atomic_path

    out = ctx.folder / "coverage.csv"
    with atomic_path(out) as tmp:
        tmp.write_text(table.to_csv(float_format="%.9g"))
    row = summary.loc["area_weighted"]
    results = {"area_weighted": {k: float(row[k]) for k in ("free", "cbd", "contact", "sei")},
               "n_particles": int(row["n_particles"])}
    inner = table[~table["touches_border"]] if "touches_border" in table else table
    if c["thickness"] and "mean" in table.columns:
        m = inner["mean"].dropna()
        results["sei_thickness_mean_m"] = float(m.mean()) if len(m) else None
    _write_json(ctx.folder / "summary.json", {"summary": summary.to_dict(orient="index"), **results})
    return {"outputs": {"table": out, "summary": ctx.folder / "summary.json"}, "results": results}


def _select_particles(ctx: Context, parts: np.ndarray) -> list[int]:
    c = ctx.config["echem"]
    ids, counts = np.unique(parts[parts > 0], return_counts=True)
    if c["select"] == "ids":
        missing = sorted(set(c["ids"]) - set(int(i) for i in ids))
        if missing:
            raise ConfigError(f"echem.ids: no particle {missing} in the particle labels (there are {len(ids)})")
        return [int(i) for i in c["ids"]]
    # particles closer than the margin to the volume's faces have unknown surroundings: never simulated
    m = c["margin_voxels"]
    border = np.ones(parts.shape, bool)
    border[m:-m, m:-m, m:-m] = False
    cut = set(int(i) for i in np.unique(parts[border]))
    order = [int(i) for i, _ in sorted(zip(ids, counts), key=lambda t: (-t[1], t[0])) if int(i) not in cut]
    if not order:
        logger.warning("echem: every particle lies within echem.margin_voxels = %d of the volume's faces; "
                       "none simulated", m)
    return order if c["select"] == "all" else order[:c["count"]]


def _echem_particle(labels, parts, pid, voxel, margin, experiments, parameters, limits, threads):
    """One particle's experiments (in-process or on a Dask worker): a JSON-able dict."""
    from .._dask import task_threads
    from ..echem import Particle, SiliconParameters, scenarios

    threads = task_threads(threads)
    particle = Particle.from_labels(labels, parts, pid, voxel_size=voxel, margin=margin, threads=threads)
    params = SiliconParameters.paper() if parameters == "paper" else SiliconParameters()
    out: dict = {"particle": pid, "parameters": parameters,
                 "equivalent_diameter_m": particle.equivalent_diameter}
    for name in experiments:
        extra = {"paths": limits} if name == "electronic_vs_ionic" else {}
        r = getattr(scenarios, name)(particle, params=params, threads=threads, **extra)
        doc = {"table": r["table"].reset_index().to_dict(orient="list")}
        for k in ("iqr_ratio", "paper"):
            if k in r:
                doc[k] = r[k]
        if "histograms" in r:  # the SOC distributions the report draws
            doc["histograms"] = {"edges": r["histograms"]["edges"].tolist(),
                                 "density": {str(rate): d.tolist() for rate, d in r["histograms"]["density"].items()}}
        if "curve" in r:  # overpotentials vs C-rate of the limiting-current search
            doc["curve"] = r["curve"].to_dict(orient="list")
        out[name] = doc
    return out


def run_echem(ctx: Context) -> dict:
    from ..io import jsonable

    c = ctx.config["echem"]
    labels, voxel = _labels(ctx)
    parts = _particles(ctx)
    chosen = _select_particles(ctx, parts)
    stamp = json.dumps({"echem": ctx.config.section_for_hash("echem"), "voxel": voxel}, sort_keys=True)
    done: dict = {}
    todo = []
    for pid in chosen:  # per-particle checkpoints: a finished particle is not simulated again
        p = ctx.folder / f"particle_{pid:05d}.json"
        if p.is_file():
            try:
                doc = json.loads(p.read_text())
                if doc.get("stamp") == stamp:
                    done[pid] = doc
                    continue
            except ValueError:
                pass
        todo.append(pid)
    args = (c["margin_voxels"], tuple(c["experiments"]), c["parameters"], c["limits"])
    if ctx.client is not None and todo:
        from .._dask import worker_threads_per_host

        per_host = worker_threads_per_host(ctx.client)
        lab_f = ctx.client.scatter(labels, broadcast=True, hash=False)
        par_f = ctx.client.scatter(parts, broadcast=True, hash=False)
        futures = [ctx.client.submit(_echem_particle, lab_f, par_f, pid, voxel, *args, per_host, pure=False)
                   for pid in todo]
        results = zip(todo, (f.result() for f in futures))
    else:
        results = ((pid, _echem_particle(labels, parts, pid, voxel, *args, ctx.threads)) for pid in todo)
    for k, (pid, doc) in enumerate(results):
        doc["stamp"] = stamp
        _write_json(ctx.folder / f"particle_{pid:05d}.json", doc)
        done[pid] = jsonable(doc)
        ctx.progress((k + 1) / max(1, len(todo)), f"particle {pid}")
    summary: dict = {"particles": chosen}
    if "soc_distribution" in c["experiments"] and chosen:
        summary["soc_iqr_ratio"] = [done[p]["soc_distribution"]["iqr_ratio"] for p in chosen]
    if "sei_effect" in c["experiments"] and chosen:
        summary["sei_effect"] = {p: done[p]["sei_effect"]["table"] for p in chosen}
    if "electronic_vs_ionic" in c["experiments"] and chosen:
        summary["electronic_vs_ionic"] = {p: done[p]["electronic_vs_ionic"]["table"] for p in chosen}
    out = ctx.folder / "echem.json"
    _write_json(out, {"summary": summary, "particles": {str(p): done[p] for p in chosen}})
    return {"outputs": {"echem": out, **{f"particle_{p}": ctx.folder / f"particle_{p:05d}.json" for p in chosen}},
            "results": summary}


def run_report(ctx: Context) -> dict:
    from ._report import write_report

    paths = write_report(ctx.run_dir, title=ctx.config["report"]["title"], stages_order=STAGE_ORDER[:-1],
                         threads=ctx.threads, config_source=getattr(ctx.config, "source", None))
    return {"outputs": paths, "results": {}}


# ------------------------------------------------------------------------------------------- inputs


def _files(*items) -> dict:
    return {k: v for k, v in items if v is not None}


def _upstream_outputs(ctx: Context, stage: str) -> dict:
    m = ctx.stage_dir(stage) / "manifest.json"
    if not m.is_file():
        return {}
    doc = json.loads(m.read_text())
    return {f"{stage}.{k}": ctx.run_dir / v["path"] for k, v in doc.get("outputs", {}).items()}


def _in_ptycho(ctx: Context) -> dict:
    scans = scan_files(ctx.config)
    d = {f"scan_{i:05d}": s for i, s in enumerate(scans)}
    if ctx.config.path("ptycho", "angles_file") is not None:
        d["angles_file"] = ctx.config.path("ptycho", "angles_file")
    return d


def _entry_or(ctx: Context, section: str, key: str, stage: str) -> dict:
    p = ctx.config.path(section, key)
    if p is not None:
        from ..io import split_dataset_path

        return {f"{section}.{key}": split_dataset_path(p)[0]}
    return _upstream_outputs(ctx, stage)


def _in_pxct(ctx):
    return _entry_or(ctx, "pxct", "projections", "ptycho")


def _in_txtm(ctx):
    return {"txtm.scan": ctx.config.path("txtm", "scan")}


def _in_fsc(ctx):
    return {**_upstream_outputs(ctx, "pxct"), **_upstream_outputs(ctx, "txtm")}


def _in_register(ctx):
    return {**_entry_or(ctx, "pxct", "volume", "pxct"), **_entry_or(ctx, "txtm", "volume", "txtm")}


def _in_fuse(ctx):
    return {**_in_register(ctx), **_entry_or(ctx, "register", "registration", "register")}


def _in_segment(ctx):
    return {**_entry_or(ctx, "fuse", "fused", "fuse"), **_upstream_outputs(ctx, "fsc")}


def _in_particles(ctx):
    return _entry_or(ctx, "segment", "labels", "segment")


def _in_coverage(ctx):
    return {**_in_particles(ctx), **_entry_or(ctx, "particles", "particles", "particles")}


def _in_report(ctx):
    d = {}
    for s in STAGE_ORDER[:-1]:
        d.update(_upstream_outputs(ctx, s))
    return d


STAGE_LIST = (
    Stage("ptycho", run_ptycho, (), ("ptycho",), _in_ptycho,
          "CXI series -> phase projections (reconstruct_series; per-projection checkpoints)"),
    Stage("pxct", run_pxct, ("ptycho",), ("pxct",), _in_pxct,
          "phase ramps, alignment, phase-derivative FBP -> PXCT volume (delta)"),
    Stage("txtm", run_txtm, (), ("txtm",), _in_txtm,
          "Data Exchange -> flat/dark, rings, Paganin, center, FBP -> TXTM volume (mu, 1/m)"),
    Stage("fsc", run_fsc, ("pxct", "txtm"), ("fsc", "pxct", "txtm"), _in_fsc,
          "Fourier shell correlation of odd/even half reconstructions (1/2-bit resolution)"),
    Stage("register", run_register, ("pxct", "txtm"), ("register",), _in_register,
          "TXTM onto PXCT: automatic coarse alignment, rigid, B-spline"),
    Stage("fuse", run_fuse, ("register",), (), _in_fuse, "two-channel volume on the PXCT grid"),
    Stage("segment", run_segment, ("fuse", "fsc"), ("segment",), _in_segment,
          "pore / graphite / silicon / CBD / SEI labels"),
    Stage("particles", run_particles, ("segment",), ("particles",), _in_particles,
          "silicon particle ids (touching particles split)"),
    Stage("coverage", run_coverage, ("particles",), ("coverage",), _in_coverage,
          "per-particle surface coverage and SEI thickness"),
    Stage("echem", run_echem, ("particles",), ("echem",), _in_coverage,
          "the paper's electrochemical experiments on selected particles (per-particle checkpoints)"),
    Stage("report", run_report, ("fsc", "register", "fuse", "segment", "particles", "coverage", "echem", "pxct",
                                 "txtm", "ptycho"), ("report",), _in_report, "report.html and summary.json"),
)
STAGES_BY_NAME = {s.name: s for s in STAGE_LIST}
#: stage -> one line on what it does.
STAGE_HELP = {s.name: s.help for s in STAGE_LIST}
STAGE_ORDER = tuple(s.name for s in STAGE_LIST)


def plan(config: Config) -> dict[str, str]:
    """``stage -> "run"`` for the stages this config runs, or the reason a stage is not part of it."""
    c = config
    pxct_entry = bool(c["pxct"]["volume"])
    has_pxct = bool(c["ptycho"]["scans"] or c["pxct"]["projections"] or pxct_entry)
    has_txtm = bool(c["txtm"]["scan"] or c["txtm"]["volume"])
    mod = c["run"]["modality"]
    if mod == "pxct":
        has_txtm = False
    elif mod == "txtm":
        has_pxct = False
    fused_entry = bool(c["fuse"]["fused"])
    labels_entry = bool(c["segment"]["labels"])
    both = (has_pxct and has_txtm) or fused_entry or labels_entry
    if mod == "both" and not (has_pxct and has_txtm) and not (fused_entry or labels_entry):
        raise ConfigError("run.modality: 'both' needs PXCT input (ptycho.scans, pxct.projections or pxct.volume) "
                          "and TXTM input (txtm.scan or txtm.volume)")
    if not (has_pxct or has_txtm or fused_entry or labels_entry):
        raise ConfigError("ptycho.scans, txtm.scan: the config gives no input (set at least one of ptycho.scans, "
                          "pxct.projections, pxct.volume, txtm.scan, txtm.volume, fuse.fused, segment.labels)")
    p: dict[str, str] = {}
    late = labels_entry or fused_entry
    p["ptycho"] = "run" if has_pxct and c["ptycho"]["scans"] and not c["pxct"]["projections"] and not pxct_entry \
        and not late else "no CXI scans (or entered later)"
    p["pxct"] = "run" if has_pxct and not pxct_entry and not late else "no PXCT projections (or entered later)"
    p["txtm"] = "run" if has_txtm and c["txtm"]["scan"] and not c["txtm"]["volume"] and not late \
        else "no TXTM scan (or entered later)"
    p["fsc"] = "run" if c["fsc"]["enabled"] and (p["pxct"] == "run" or p["txtm"] == "run") \
        else "disabled or no projections"
    two = has_pxct and has_txtm
    p["register"] = "run" if two and not c["register"]["registration"] and not late \
        else "one modality only, or entered later"
    p["fuse"] = "run" if two and not late else "one modality only, or entered later"
    p["segment"] = "run" if both and not labels_entry else ("labels given" if labels_entry else "one modality only")
    p["particles"] = "run" if both and not c["particles"]["particles"] else "one modality only, or particles given"
    p["coverage"] = "run" if both else "one modality only"
    p["echem"] = "run" if both and c["echem"]["enabled"] else "disabled or one modality only"
    p["report"] = "run"
    return p


def ctx_stages(ctx: Context) -> list[str]:
    return [s for s, why in plan(ctx.config).items() if why == "run"]
