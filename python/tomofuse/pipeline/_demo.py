"""``tomofuse demo``: the paper's study on a synthetic electrode, raw files to report, in one command.

A pristine and a cycled electrode (``tomofuse.phantom``) are imaged as a beamline would image them
(``simulate_raw``: a ptychographic series as CXI files and a TXTM scan as Data Exchange, each with
its ``config.toml``), each config is run by ``tomofuse run`` (the same code path as real data;
``tomofuse run DIR/cycled/config.toml`` reproduces it), and one report puts the two samples side by
side with every measured number next to the phantom's exact truth or the paper's value.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .. import _validate as check
from ._config import STAGES
from ._figures import _h5, _json
from ._report import _results
from ._simulate import PXCT_ENERGY_KEV

__all__ = ["DemoResult", "demo"]

logger = logging.getLogger(__name__)

#: Phantom shapes (z, y, x) in PXCT voxels of 21.4 nm and ptychography iterations of the two demo sizes.
#: The iterations decide the PXCT's sharpness and so the segmentation: at the quick size, seed 0,
#: DM 20 + ML 10 -> DM 40-50 + ML 20-25 raised Dice silicon 0.76 -> 0.84 (pristine) and
#: 0.59 -> 0.85 (cycled), SEI 0.27 -> 0.69; DM 100 + ML 50 gained nothing more (0.85 / 0.70).
SIZES = {"quick": dict(shape=(40, 64, 64), dm_iterations=40, ml_iterations=20),
         "default": dict(shape=(48, 96, 96), dm_iterations=60, ml_iterations=30)}
SAMPLES = (("pristine", False), ("cycled", True))
_CATEGORIES = ("free", "cbd", "contact", "sei")


@dataclass
class DemoResult:
    """What ``demo`` wrote.

    Attributes
    ----------
    directory : Path
    report : Path
        ``DIR/report.html``.
    summary : Path
        ``DIR/summary.json``.
    quantities : list of tomofuse.report.Quantity
        The summary table (measured, truth, source).
    runs : dict
        Per sample (``pristine``, ``cycled``) the ``RunResult`` of its pipeline run.
    wall_s : float
        Wall time of the whole demo, seconds.
    """

    directory: Path
    report: Path
    summary: Path
    quantities: list = field(default_factory=list)
    runs: dict = field(default_factory=dict)
    wall_s: float = 0.0


def _shift(moving: np.ndarray, fixed: np.ndarray) -> tuple:
    """Integer (z, y, x) shift that best lays the binary ``moving`` onto ``fixed`` (FFT cross-correlation)."""
    shape = [a + b for a, b in zip(moving.shape, fixed.shape)]
    fm = np.fft.rfftn(moving.astype(np.float32), shape)
    ff = np.fft.rfftn(fixed.astype(np.float32), shape)
    cc = np.fft.irfftn(ff * np.conj(fm), shape)
    k = np.unravel_index(int(np.argmax(cc)), cc.shape)
    return tuple(int(i if i <= n // 2 else i - n) for i, n in zip(k, shape))


def _place(volume: np.ndarray, shift, shape, fill) -> np.ndarray:
    """``volume`` translated by ``shift`` voxels onto a grid of ``shape`` (outside: ``fill``)."""
    out = np.full(shape, fill, dtype=volume.dtype)
    src, dst = [], []
    for d, n_in, n_out in zip(shift, volume.shape, shape):
        lo, hi = max(0, d), min(n_out, n_in + d)
        if hi <= lo:
            return out
        dst.append(slice(lo, hi))
        src.append(slice(lo - d, hi - d))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def _translation(run_dir: Path, electrode, seg: np.ndarray) -> tuple:
    """Where the phantom lies in the reconstruction's frame: ``(shift, s)``, reconstruction index =
    phantom index + ``s``.

    The projection alignment fixes the frame only up to a common translation, which need not be a
    whole number of voxels (an odd detector about an even phantom puts it half a voxel off).  The
    integer ``shift`` best overlays the phantom's silicon on the segmented silicon; the rest, to
    1/20 voxel, comes from phase correlation of the reconstructed ``delta`` with the phantom's
    (``s`` is None without a PXCT volume on the segmentation's grid).
    """
    from skimage.registration import phase_cross_correlation

    from .._phase import Phase
    from ..io import read_volume
    from ..phantom import refractive_volume

    labels = np.asarray(electrode.labels)
    pillar = _pillar(labels.shape)
    shift = _shift(np.where(pillar, labels, np.uint8(Phase.PORE)) == Phase.SILICON, seg == Phase.SILICON)
    try:  # the PXCT channel of the fused volume: the reconstruction on the segmentation's grid
        rec = np.asarray(read_volume(Path(run_dir) / "fuse" / "fused.h5")[0][0], dtype=np.float64)
    except (OSError, KeyError, ValueError, IndexError):
        return shift, None
    if rec.shape != seg.shape:
        return shift, None
    delta, _ = refractive_volume(electrode, PXCT_ENERGY_KEV)
    placed = _place(np.where(pillar, delta, 0.0), shift, rec.shape, 0.0)
    residual, _, _ = phase_cross_correlation(rec, placed, upsample_factor=20, normalization=None)
    return shift, np.asarray(shift, dtype=np.float64) + residual


def _truth_on_grid(electrode, shape, shift, s) -> tuple:
    """The phantom's phases and particle ids at the reconstruction's voxel centers, and where the
    phantom was imaged there: ``(labels, particles, inside)``; labels 255 outside the phantom's box.

    With the continuous geometry and the sub-voxel translation ``s``, every voxel center is
    classified exactly (``Geometry.classify``); otherwise the phantom's own voxels are placed by
    the integer ``shift`` (up to half a voxel off, which costs thin phases several points of Dice).
    """
    from .._phase import Phase

    lab = np.asarray(electrode.labels)
    pillar = _pillar(lab.shape)
    geometry = getattr(electrode, "geometry", None)
    if geometry is None or s is None:
        truth = _place(np.where(pillar, lab, np.uint8(Phase.PORE)), shift, shape, np.uint8(255))
        parts = _place(np.asarray(electrode.particles), shift, shape, np.int32(0))
        inside = _place(pillar.astype(np.uint8), shift, shape, np.uint8(0)).astype(bool)
        return truth, parts, inside
    v = float(electrode.voxel_size)
    n = np.asarray(lab.shape)
    idx = np.indices(shape).reshape(3, -1).T
    x = (idx - np.asarray(s) + 0.5) * v  # the phantom's frame (its voxel k centered at (k + 0.5) v)
    in_box = np.all((x >= 0.0) & (x < n * v), axis=1)
    ny, nx = lab.shape[1:]
    # _pillar's cylinder, at any point
    in_pillar = np.hypot(x[:, 1] - ny * v / 2, x[:, 2] - nx * v / 2) < (0.5 * min(ny, nx) - 1) * v
    truth = np.full(len(x), 255, np.uint8)
    parts = np.zeros(len(x), np.int32)
    take = in_box & in_pillar
    truth[in_box & ~in_pillar] = Phase.PORE
    if take.any():
        truth[take], parts[take] = geometry.classify(x[take])
    return truth.reshape(shape), parts.reshape(shape), (in_box & in_pillar).reshape(shape)


def _compare_with_truth(run_dir: Path, electrode) -> dict:
    """Dice per phase and per-particle truth of the same particles, on the reconstruction's grid.

    The reconstruction's frame is the phantom's up to a translation (``_translation``); the
    phantom's phases and particles are evaluated at the reconstruction's voxel centers
    (``_truth_on_grid``), in the pillar the simulators image.  Only particles wholly inside the
    pillar and the phantom's box, and wholly inside the analyzed field, are compared (the exact
    truth table knows nothing of the pillar's cut).
    """
    from .._phase import Phase
    from ..segment import confusion_matrix
    from ..segment import dice as dice_of

    seg = _h5(run_dir / "segment" / "segmentation.h5", "labels")
    parts = _h5(run_dir / "particles" / "particles.h5", "particles")
    valid = _h5(run_dir / "segment" / "segmentation.h5", "valid")
    if seg is None:
        return {}
    lab_t = np.asarray(electrode.labels)
    par_t = np.asarray(electrode.particles)
    in_pillar = _pillar(lab_t.shape)
    lab_t = np.where(in_pillar, lab_t, np.uint8(Phase.PORE))
    shift, s = _translation(run_dir, electrode, seg)
    truth, par_on, inside = _truth_on_grid(electrode, seg.shape, shift, s)
    usable = inside & (truth != 255) & (True if valid is None else valid.astype(bool))
    # rows the phantom's phase, columns the segmented one, voxels inside `usable` (the fill of
    # `truth` outside the phantom is never counted)
    known = np.where(truth == 255, np.uint8(Phase.PORE), truth)
    confusion = confusion_matrix(seg, known, mask=usable)
    dice = {p.name.lower(): d for p, d in dice_of(seg, known, mask=usable).items()}
    out = {"shift_voxels": shift, "translation_voxels": None if s is None else s.tolist(), "grid_shape": seg.shape,
           "dice": dice, "confusion": confusion}
    # particles: truth ids wholly inside the pillar and off the faces of the phantom's box (the
    # truth table's touches_border also flags SEI thickness rays leaving the box, which in a thin
    # cycled box is nearly every particle; their coverage fractions are exact all the same)
    table = electrode.truth
    cut = set(np.unique(par_t[(~in_pillar | _faces(lab_t.shape)) & (par_t > 0)]).tolist())
    eligible = [int(i) for i in table.index if int(i) not in cut]
    out["n_truth_inner"] = len(eligible)
    out["eligible"] = eligible
    if parts is not None:
        # measured particles on the faces of the reconstructed field or of the segmentation's valid
        # region are cut by them: left out (their SEI thickness rays may leave it; that is all right)
        edge = _faces(seg.shape)
        if valid is not None:
            from scipy.ndimage import binary_dilation

            edge |= binary_dilation(~valid.astype(bool))
        out["edge_ids"] = set(np.unique(parts[edge & (parts > 0)]).tolist())
        matched = {}
        for pid in np.unique(parts[parts > 0]):
            ids, counts = np.unique(par_on[parts == pid], return_counts=True)
            keep = ids > 0
            if keep.any():
                j = int(ids[keep][np.argmax(counts[keep])])
                if counts[keep].max() >= 0.5 * (parts == pid).sum():
                    matched[int(pid)] = j
        out["matched"] = matched
    return out


def _registration_tre(run_dir: Path, electrode, truth: dict, cmp: dict) -> Optional[dict]:
    """Target registration error of the run's registration against the phantom's known geometry.

    The true map from a PXCT voxel to the TXTM volume: the PXCT reconstruction (of ``cmp["grid_shape"]``)
    is the phantom up to the translation ``cmp["translation_voxels"]`` (reconstruction index = phantom
    index + it; ``_translation``: integer part ``cmp["shift_voxels"]`` from the silicon overlay, the
    rest to 1/20 voxel by phase correlation; ``cmp`` is ``_compare_with_truth``'s result);
    the TXTM scan saw the phantom turned by ``txtm_turn_deg`` about the pillar axis on the detector
    grid of ``txtm_origin_m`` (``simulate_raw``'s truth), and its reconstruction is taken at that
    grid (the center finding's error is part of the measured TRE).  Points: the solid voxels inside
    the pillar (20000 at most).

    Returns
    -------
    dict or None
        ``mean_m``, ``p95_m``, ``translation_voxels`` (the PXCT frame's measured translation); None
        without a registration, the TXTM grid or the translation.
    """
    from .._phase import Phase
    from ..register import load

    reg_path = run_dir / "register" / "registration.json"
    translation = cmp.get("translation_voxels")
    if not reg_path.is_file() or truth.get("txtm_origin_m") is None or translation is None:
        return None
    shift, seg_shape = cmp["shift_voxels"], cmp["grid_shape"]
    v, px = float(truth["voxel_size_m"]), float(truth["txtm_pixel_size_m"])
    labels = np.asarray(electrode.labels)
    ny, nx = labels.shape[1:]
    pillar = _pillar(labels.shape)
    s = np.asarray(translation, dtype=np.float64)
    solid = (_place(labels, shift, seg_shape, np.uint8(Phase.PORE)) != Phase.PORE) \
        & _place(pillar.astype(np.uint8), shift, seg_shape, np.uint8(0)).astype(bool)
    idx = np.argwhere(solid)
    if len(idx) == 0:
        return None
    if len(idx) > 20000:
        idx = idx[np.random.default_rng(0).choice(len(idx), 20000, replace=False)]
    x = (idx - s + 0.5) * v  # phantom frame (voxel k centered at (k + 0.5) v)
    turn = math.radians(float(truth["txtm_turn_deg"]))
    c, sn = math.cos(turn), math.sin(turn)
    center = np.array([ny * v / 2, nx * v / 2])
    rel = x[:, 1:] - center
    rot = np.stack([c * rel[:, 0] - sn * rel[:, 1], sn * rel[:, 0] + c * rel[:, 1]], axis=1) + center
    turned = np.concatenate([x[:, :1], rot], axis=1)
    expected = turned - np.asarray(truth["txtm_origin_m"]) - 0.5 * px  # TXTM physical point (index * pixel)
    # the registration maps the PXCT volume's points; the fused grid leaves out its first slices (the fuse
    # stage's results say how many)
    first = int(_results(run_dir, "fuse").get("pxct_slices_left_out", [0])[0])
    mapped = load(reg_path).map_points((idx + np.array([first, 0, 0])) * v)
    err = np.linalg.norm(mapped - expected, axis=1)
    logger.debug("TRE: mean error vector %s m", (mapped - expected).mean(axis=0))
    return {"mean_m": float(err.mean()), "p95_m": float(np.percentile(err, 95)), "translation_voxels": s.tolist()}


def _pillar(shape) -> np.ndarray:
    """Boolean volume of ``shape``: the cylinder inscribed in its (y, x) square (less one voxel), the part
    of the phantom the simulators image."""
    ny, nx = shape[1:]
    yy, xx = np.indices((ny, nx))
    return np.broadcast_to(np.hypot(yy + 0.5 - ny / 2, xx + 0.5 - nx / 2) < 0.5 * min(ny, nx) - 1, shape)


def _faces(shape) -> np.ndarray:
    """Boolean volume of ``shape``, True on its six faces."""
    faces = np.zeros(shape, bool)
    for axis in range(3):
        index = [slice(None)] * 3
        for end in (0, -1):
            index[axis] = end
            faces[tuple(index)] = True
    return faces


def _measured(run_dir: Path) -> dict:
    """The run's own numbers that need no truth: FSC resolutions, particle count, SOC IQR ratio, stage records."""
    fsc = _results(run_dir, "fsc")
    out: dict = {"fsc": {m: (fsc[m]["resolution_m"], bool(fsc[m].get("crossed", True)))
                         for m in ("pxct", "txtm") if m in fsc},
                 "particles": _results(run_dir, "particles").get("count"),
                 "iqr_ratio": (_results(run_dir, "echem").get("soc_iqr_ratio") or [None])[0]}
    out["stages"] = {}
    for stage in STAGES:
        m = _json(run_dir / stage / "manifest.json")
        if m:
            out["stages"][stage] = {k: m.get(k) for k in ("status", "wall_s", "cpu_s", "peak_memory_bytes")}
    return out


def demo(directory, *, quick: bool = False, cluster_size: Optional[int] = None, seed: int = 0,
         threads: Optional[int] = None, progress: Optional[Callable[[int, int, str], Any]] = None) -> DemoResult:
    """Simulate, reconstruct, register, fuse, segment, analyze and simulate a pristine and a cycled electrode.

    Parameters
    ----------
    directory : path-like
        Output: ``pristine/`` and ``cycled/`` (each ``config.toml``, ``phantom.h5``, ``raw/``,
        ``run/``), ``report.html`` (figures in ``figures/``, tables in ``tables/``) and
        ``summary.json``.  Rerunning resumes: finished stages are not run again.
    quick : bool
        The small size (about a minute and a half on two cores) instead of the default.
    cluster_size : int, optional
        Run the pipelines on a local Dask cluster of this many workers.
    seed : int
        Seed of the phantoms and of every noise draw.
    threads : int, optional
        Threads per stage (None = package default).
    progress : callable, optional
        As in ``tomofuse.pipeline.run``.

    Returns
    -------
    DemoResult
    """
    from .. import report as rp
    from ..io import jsonable
    from ._figures import run_figures
    from ._run import run
    from ._simulate import simulate_raw

    quick = check.flag(quick, "quick")
    seed = check.seed(seed)
    threads = check.threads(threads)
    if cluster_size is not None:
        check.integer(cluster_size, "cluster_size", minimum=1)
    size = SIZES["quick" if quick else "default"]
    root = Path(directory).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs, measured, sims = {}, {}, {}
    for name, cycled in SAMPLES:
        logger.info("demo: simulating the %s electrode", name)
        sim = simulate_raw(root / name, shape=size["shape"], cycled=cycled, seed=seed, threads=threads,
                           dm_iterations=size["dm_iterations"], ml_iterations=size["ml_iterations"])
        sims[name] = sim
        experiments = ["soc_distribution", "electronic_vs_ionic", "sei_effect"] if cycled and not quick \
            else ["soc_distribution"]
        _set_experiments(sim.config, experiments)
        logger.info("demo: tomofuse run %s", sim.config)
        runs[name] = run(sim.config, cluster_size=cluster_size, progress=progress)
        measured[name] = _measured(runs[name].run_dir)

    quantities, fig2_truth, sei_pairs, confusions = [], {}, None, {}
    for name, _ in SAMPLES:
        rd = runs[name].run_dir
        m = measured[name]
        cmp = _compare_with_truth(rd, sims[name].electrode)
        if "confusion" in cmp:
            confusions[name] = cmp["confusion"]
        pairs = _matched_pairs(rd, cmp, sims[name].electrode)
        if pairs is not None:
            meas_t, true_t = pairs
            mc, tc = _area_weighted(meas_t), _area_weighted(true_t)
            fig2_truth[name] = (mc, tc)
            for c in _CATEGORIES:
                quantities.append(rp.Quantity(f"coverage {c} ({name})", "1", mc[c], tc[c], "phantom"))
            if name == "cycled":
                quantities.append(rp.Quantity("mean SEI thickness (cycled)", "nm", _sei_mean(meas_t, "mean_m") * 1e9,
                                              _sei_mean(true_t, "sei_mean_m") * 1e9, "phantom"))
                sei_pairs = (meas_t, true_t.rename(columns={"sei_mean_m": "mean_m", "sei_std_m": "std_m"}))
            quantities.append(rp.Quantity(f"particles compared ({name})", "1", len(meas_t),
                                          cmp.get("n_truth_inner", math.nan),
                                          "phantom (inner particles in the pillar)"))
        if "shift_voxels" in cmp:
            tre = _registration_tre(rd, sims[name].electrode, sims[name].truth, cmp)
            if tre is not None:
                quantities.append(rp.Quantity(f"registration TRE mean ({name})", "nm", tre["mean_m"] * 1e9))
                quantities.append(rp.Quantity(f"registration TRE p95 ({name})", "nm", tre["p95_m"] * 1e9))
        for phase, d in cmp.get("dice", {}).items():
            if phase != "sei" or name == "cycled":
                quantities.append(rp.Quantity(f"Dice {phase} ({name})", "1", d))
        quantities.append(rp.Quantity(f"particles labeled ({name})", "1", _nan(m.get("particles"))))
        for mod, (res, crossed) in m["fsc"].items():
            # a curve that never fell to the threshold only bounds the resolution (by Nyquist)
            label = name if crossed else f"{name}; not crossed: Nyquist"
            quantities.append(rp.Quantity(f"FSC resolution {mod.upper()} ({label})", "nm", res * 1e9))
        if m.get("iqr_ratio") is not None:
            quantities.append(rp.Quantity(f"SOC IQR ratio 1.2 C / 0.4 C ({name})", "1", m["iqr_ratio"], 3.0, "paper"))

    # the report: Figs. 1 and 3 of the cycled run, Fig. 2 with both samples
    cyc = runs["cycled"].run_dir
    # the same particles as the summary's numbers, measured beside the phantom's truth
    sections = run_figures(cyc, threads=threads)
    tables = [(f"confusion_{name}", _confusion_frame(c),
               f"{name}: share of each phase of the phantom (rows; its geometry at the reconstruction's voxel "
               "centers) that the segmentation gave each label (columns), "
               "voxels inside the pillar and the TXTM field of view; 'voxels' is the row's count")
              for name, c in confusions.items()]
    if tables:
        fig1 = [s for s in sections if s.title.startswith("Figure 1")]
        if fig1:
            fig1[0].tables.extend(tables)
        else:
            sections.insert(0, rp.Section("Segmentation against the phantom", tables=tables))
    if fig2_truth:
        _put_figure(sections, ("fig2_coverage", rp.coverage_bars(
            {n: v[0] for n, v in fig2_truth.items()}, truth={n: v[1] for n, v in fig2_truth.items()}),
            "area-weighted coverage of the particles compared with the phantom, pristine vs cycled (black: the "
            "phantom's exact values for the same particles)"))
    if sei_pairs is not None:
        _put_figure(sections, ("fig2_sei_thickness", rp.sei_thickness_distributions(sei_pairs[0], truth=sei_pairs[1]),
                               "per-particle SEI thickness of the particles compared with the phantom"))
    wall = time.perf_counter() - t0
    provenance = {"command": f"tomofuse demo{' --quick' if quick else ''} --seed {seed}"
                  + (f" --workers {cluster_size}" if cluster_size else ""),
                  "configs": {n: str(sims[n].config) for n in sims}, "wall_s": wall,
                  "stages": {n: measured[n]["stages"] for n in measured}}
    warnings = [f"{q.name}: {q.measured:.3g} vs truth {q.truth:.3g}" for q in quantities
                if q.truth is not None and q.unit == "1" and q.name.startswith("coverage")
                and math.isfinite(q.measured) and abs(q.measured - q.truth) > 0.03]
    if warnings:
        warnings = ["coverage fractions differing from the truth by more than 0.03 (the accuracy the "
                    "method is meant to reach):"] + warnings
    html = rp.write_report(root, title="tomofuse demo: the paper's study on a synthetic electrode",
                           sections=sections, quantities=quantities, provenance=jsonable(provenance),
                           warnings=warnings)
    summary = rp.write_summary(root / "summary.json", quantities=quantities,
                               stages={n: measured[n]["stages"] for n in measured})
    return DemoResult(directory=root, report=html, summary=summary, quantities=quantities, runs=runs, wall_s=wall)


def _matched_pairs(run_dir: Path, cmp: dict, electrode):
    """Measured rows (coverage.csv, inner particles) and the phantom's truth rows of the same particles."""
    import pandas as pd

    table = run_dir / "coverage" / "coverage.csv"
    if not table.is_file() or "matched" not in cmp:
        return None
    t = pd.read_csv(table, index_col=0)
    t = t[~t.index.isin(cmp.get("edge_ids", set()))]
    truth = electrode.truth
    eligible = set(cmp.get("eligible", ()))
    pairs, used = [], set()
    for pid in t.index:
        j = cmp["matched"].get(int(pid))
        if j is None or j in used or j not in eligible:
            continue
        used.add(j)
        pairs.append((int(pid), j))
    if not pairs:
        return None
    meas = t.loc[[p for p, _ in pairs]]
    true = truth.loc[[j for _, j in pairs]]
    return meas, true


def _area_weighted(t) -> dict:
    w = t["area_m2"].to_numpy(float)
    return {c: float(np.sum(t[c].to_numpy(float) * w) / w.sum()) for c in _CATEGORIES}


def _sei_mean(t, column: str) -> float:
    w = (t["sei"] * t["area_m2"]).to_numpy(float)
    v = t[column].to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    return float(np.sum(v[ok] * w[ok]) / w[ok].sum()) if ok.any() else math.nan


def _confusion_frame(counts: np.ndarray):
    """The confusion counts as a table of row shares (phases absent from the phantom left out)."""
    import pandas as pd

    from .._phase import Phase

    names = [p.name.lower() for p in Phase]
    rows = counts.sum(axis=1)
    keep = rows > 0
    share = counts[keep] / rows[keep, None]
    frame = pd.DataFrame(share, columns=[f"as {n}" for n in names], index=[f"true {n}" for n in np.array(names)[keep]])
    frame["voxels"] = rows[keep].astype(np.int64)
    frame.index.name = "phantom"
    return frame


def _put_figure(sections: list, entry: tuple) -> None:
    """Put ``entry`` (name, figure, caption) into Figure 2's section, replacing a figure of that name."""
    from .. import report as rp

    for s in sections:
        s.figures = [f for f in s.figures if f[0] != entry[0]]
    fig2 = [s for s in sections if s.title.startswith("Figure 2")]
    if fig2:
        fig2[0].figures.insert(0 if entry[0] == "fig2_coverage" else 1, entry)
    else:
        sections.append(rp.Section("Figure 2 — surfaces of the silicon particles", figures=[entry]))


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _set_experiments(config: Path, experiments) -> None:
    """Write the echem experiments into a simulated config (the template leaves them commented)."""
    from ..io import atomic_path

    text = Path(config).read_text()
    line = "experiments = [" + ", ".join(f'"{e}"' for e in experiments) + "]"
    lines = text.splitlines()
    section = None
    for i, ln in enumerate(lines):
        s = ln.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
        elif section == "echem" and (s.startswith("experiments =") or s.startswith("# experiments =")):
            lines[i] = line
            break
    else:
        raise RuntimeError(f"{config}: no [echem] experiments line to set")
    with atomic_path(config) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
