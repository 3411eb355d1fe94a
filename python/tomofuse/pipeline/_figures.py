"""The report's figures made from a run directory (whatever stages ran), with the truth where it is known.

Each figure is drawn by ``tomofuse.report`` from the files the stages wrote: the volumes
(``pxct/volume.h5`` or ``.zarr``, ``fuse/fused.h5``), the labels and particles, ``fsc/fsc.json``,
``coverage/coverage.csv`` and ``echem/particle_*.json``.  A stage that did not run (a
one-modality run, a run entered at a later stage) leaves its figures out.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ._layout import stage_volume

__all__ = ["run_figures", "scenario_from_json"]

logger = logging.getLogger(__name__)


def _display_units(table):
    """The per-particle table with areas in um^2 and lengths in nm (columns renamed ``*_um2`` / ``*_nm``): the
    page's columns then fit its width instead of carrying ``e-13`` and ``e-08`` on every number."""
    out = table.copy()
    rename = {}
    for c in out.columns:
        if c.endswith("_m2"):
            out[c] = out[c] * 1e12
            rename[c] = c[:-3] + "_um2"
        elif c.endswith("_m"):
            out[c] = out[c] * 1e9
            rename[c] = c[:-2] + "_nm"
    return out.rename(columns=rename)


def _h5(path: Path, name: str):
    import h5py

    if not path.is_file():
        return None
    with h5py.File(path, "r") as f:
        if name not in f:
            return None
        return f[name][()]


def _resolved_config(run_dir: Path) -> dict:
    """The run's ``config.resolved.toml`` (absolute paths), or {} without one."""
    from ._config import tomllib

    p = run_dir / "config.resolved.toml"
    try:
        return tomllib.loads(p.read_text()) if p.is_file() else {}
    except tomllib.TOMLDecodeError:
        return {}


def _stage_array(run_dir: Path, config: dict, section: str, key: str, stage_file: str, name: str):
    """What the later stages read: the file ``config`` entered (``[section] key``), else the stage's
    own output ``run_dir/stage_file`` (dataset ``name``); None when there is neither."""
    entered = config.get(section, {})
    spec = str(entered.get(key) or "") if isinstance(entered, dict) else ""
    if not spec:
        return _h5(run_dir / stage_file, name)
    from ..io import read_volume

    try:
        return np.asarray(read_volume(spec, default_dataset=name)[0])
    except (OSError, KeyError, ValueError):
        logger.warning("report: cannot read %s.%s = %r; its figures are left out", section, key, spec)
        return None


def _volume(path: Path):
    """A stage's volume (HDF5 or, after a distributed run, Zarr), or None when it is not there."""
    from ..io import read_volume

    if not path.exists():
        return None
    return np.asarray(read_volume(path)[0])


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _voxel(run_dir: Path) -> Optional[float]:
    for stage in ("fuse", "segment", "pxct", "particles"):
        r = _json(run_dir / stage / "manifest.json").get("results", {})
        if r.get("voxel_size_m"):
            return float(r["voxel_size_m"])
    import h5py

    p = run_dir / "segment" / "segmentation.h5"
    if p.is_file():
        with h5py.File(p, "r") as f:
            if "voxel_size" in f.attrs:
                return float(f.attrs["voxel_size"])
    return None


def _fsc_results(run_dir: Path) -> dict:
    from ..tomo import FSCResult

    doc = _json(run_dir / "fsc" / "fsc.json")
    out = {}
    for m, curve in doc.get("curves", {}).items():
        r = doc["results"][m]
        f = np.asarray(curve["frequency_per_m"], float)
        out[m.upper()] = FSCResult(frequency=f, fsc=np.asarray(curve["fsc"], float),
                                   threshold_curve=np.asarray(curve["threshold"], float),
                                   n_voxels=np.zeros(len(f), np.int64), resolution=float(r["resolution_m"]),
                                   crossed=bool(r["crossed"]))
    return out


def scenario_from_json(doc: dict) -> dict:
    """An ``echem.scenarios`` result as the echem stage stores it (JSON) -> the dict the figures take.

    Parameters
    ----------
    doc : dict
        One experiment of ``echem/particle_#####.json`` (``table`` as lists, ``histograms``,
        ``curve``).

    Returns
    -------
    dict
        ``table`` (pandas.DataFrame indexed by ``c_rate`` or ``quantity``), and ``histograms``
        (density keyed by float C-rate), ``curve`` (DataFrame), ``iqr_ratio``, ``paper`` where stored.
    """
    import pandas as pd

    out = dict(doc)
    table = pd.DataFrame(doc["table"])
    for key in ("c_rate", "quantity"):
        if key in table:
            table = table.set_index(key)
            break
    out["table"] = table
    if "histograms" in doc:
        h = doc["histograms"]
        out["histograms"] = {"edges": np.asarray(h["edges"], float),
                             "density": {float(k): np.asarray(v, float) for k, v in h["density"].items()}}
    if "curve" in doc:
        out["curve"] = pd.DataFrame(doc["curve"])
    return out


def run_figures(run_dir, *, truth: Optional[dict] = None, threads: Optional[int] = None):
    """The report's sections for one run: Fig. 1-3 analogs from the run's files.

    Parameters
    ----------
    run_dir : path-like
        A run directory of ``tomofuse run``.
    truth : dict, optional
        Known truth to mark: ``coverage`` (fractions ``free``/``cbd``/``contact``/``sei``),
        ``sei_thickness`` (pandas.DataFrame with ``mean_m``, ``std_m`` per particle).
    threads : int, optional
        Threads of the ray tracing re-done for the SEI map (None = package default).

    Returns
    -------
    list of tomofuse.report.Section
    """
    import pandas as pd

    from .. import report as rp
    from ..analysis import surface_coverage

    run_dir = Path(run_dir)
    truth = truth or {}
    v = _voxel(run_dir)
    sections = []

    # ---- Figure 1: imaging
    figs = []
    # the arrays the stages read: a file entered in the config (a segmentation of one's own) wins over a
    # stage folder's output, which may be left from an earlier run
    config = _resolved_config(run_dir)
    fused = _stage_array(run_dir, config, "fuse", "fused", "fuse/fused.h5", "volume")
    labels = _stage_array(run_dir, config, "segment", "labels", "segment/segmentation.h5", "labels")
    if fused is not None and v:
        pxct, txtm = fused[0], fused[1]
        figs.append(("fig1_cross_sections", rp.cross_sections(pxct, txtm, voxel_size=v),
                     "PXCT (phase contrast) and TXTM (absorption, resampled onto the PXCT grid) on one section"))
        figs.append(("fig1_registration", rp.registration_check(pxct, txtm, voxel_size=v),
                     "registration check: edges continue across the tiles; the overlay is gray where the two agree"))
        if labels is not None and labels.shape == pxct.shape:
            figs.append(("fig1_segmentation", rp.segmentation_overlay(pxct, labels, voxel_size=v),
                         "the five phases over the PXCT channel of the fused volume"))
    else:  # one modality, or not fused yet: the reconstructed volumes themselves
        for modality in ("pxct", "txtm"):
            vol = _volume(stage_volume(run_dir, modality))
            mv = _json(run_dir / modality / "manifest.json").get("results", {}).get("voxel_size_m")
            if vol is not None and mv:
                figs.append((f"fig1_{modality}", rp.volume_sections(vol, voxel_size=float(mv), name=modality.upper()),
                             f"central sections of the reconstructed {modality.upper()} volume"))
    if labels is not None and v:
        figs.append(("fig1_rendering", rp.phase_surfaces(labels, voxel_size=v),
                     "silicon particles and their SEI in the central sub-volume (marching cubes)"))
    fsc = _fsc_results(run_dir)
    if fsc:
        figs.append(("fig1_fsc", rp.fsc_curves(fsc),
                     "Fourier shell correlation of two half data sets per modality, ½-bit threshold dashed"))
    if figs:
        sections.append(rp.Section("Figure 1 — the two modalities, registered, fused and segmented", figures=figs))

    # ---- Figure 2: surfaces
    figs, tables = [], []
    cov_csv = run_dir / "coverage" / "coverage.csv"
    if cov_csv.is_file():
        table = pd.read_csv(cov_csv, index_col=0)
        summary = _json(run_dir / "coverage" / "summary.json").get("area_weighted", {})
        if summary and all(isinstance(summary.get(c), (int, float)) and math.isfinite(summary[c])
                           for c in ("free", "cbd", "contact", "sei")):
            measured = {"this run": summary}
            t = {"this run": truth["coverage"]} if "coverage" in truth else None
            figs.append(("fig2_coverage", rp.coverage_bars(measured, truth=t),
                         "area-weighted coverage of the inner silicon particles (black: truth)"))
        inner = table[~table["touches_border"].astype(bool)] if "touches_border" in table else table
        if "mean_m" in inner and np.isfinite(inner["mean_m"]).any():
            figs.append(("fig2_sei_thickness", rp.sei_thickness_distributions(inner, truth=truth.get("sei_thickness")),
                         "per-particle SEI thickness (inner particles)"))
            parts = _stage_array(run_dir, config, "particles", "particles", "particles/particles.h5", "particles")
            if labels is not None and parts is not None and v:
                pid = int(inner["sei"].idxmax())  # the particle with the largest SEI share
                _, surface = surface_coverage(labels, np.where(parts == pid, parts, 0), voxel_size=v,
                                              return_surface=True, threads=threads)
                figs.append(("fig2_sei_map", rp.sei_thickness_map(surface, pid),
                             f"SEI thickness over the surface of particle {pid}"))
        tables.append(("coverage", _display_units(table),
                       "per-particle coverage (shares of the surface) and SEI thickness; the stage's own "
                       "coverage/coverage.csv has the same values in SI units"))
    if figs or tables:
        sections.append(rp.Section("Figure 2 — surfaces of the silicon particles", figures=figs, tables=tables))

    # ---- Figure 3: electrochemistry
    from ..echem.scenarios import PAPER_PARTICLE_DIAMETER

    figs = []
    for p in sorted((run_dir / "echem").glob("particle_*.json")):
        doc = _json(p)
        pid = doc.get("particle")
        # runs before the echem.parameters key used the literature defaults
        setting = {"paper": "parameters fitted to the paper's Fig. 3 (SiliconParameters.paper())"}.get(
            doc.get("parameters"), "literature parameters (SiliconParameters())")
        d = doc.get("equivalent_diameter_m")
        if d:
            # the paper's markers are for its ~4.5 um particles: say how far this one is from them
            setting += (f"; equivalent diameter {d * 1e6:.2g} µm (the paper's particles: about "
                        f"{PAPER_PARTICLE_DIAMETER * 1e6:.2g} µm; at one C-rate the concentration overpotential "
                        "grows about as the diameter squared)")
        if "soc_distribution" in doc and "histograms" in doc["soc_distribution"]:
            figs.append((f"fig3_soc_particle{pid}", rp.soc_distributions(scenario_from_json(doc["soc_distribution"])),
                         f"SOC distribution of particle {pid} at 70 % mean SOC after delithiation from 80 %; "
                         f"{setting}"))
        if "electronic_vs_ionic" in doc and "curve" in doc["electronic_vs_ionic"]:
            figs.append((f"fig3_limits_particle{pid}", rp.limiting_currents(
                scenario_from_json(doc["electronic_vs_ionic"])),
                f"electronic vs ionic limitation of particle {pid} from 6 % SOC; {setting}"))
        if "sei_effect" in doc:
            figs.append((f"fig3_sei_effect_particle{pid}", rp.overpotential_curves(scenario_from_json(doc["sei_effect"])),
                         f"overpotential of particle {pid} with and without its SEI; {setting}"))
    if figs:
        sections.append(rp.Section("Figure 3 — electrochemistry of single particles in their embedding", figures=figs))
    return sections

