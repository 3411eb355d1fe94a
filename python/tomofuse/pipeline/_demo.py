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

__all__ = ["DemoResult", "demo"]

logger = logging.getLogger(__name__)

#: Phantom shapes (z, y, x) in PXCT voxels of 21.4 nm and ptychography iterations of the two demo sizes.
SIZES = {"quick": dict(shape=(32, 64, 64), dm_iterations=20, ml_iterations=10),
         "default": dict(shape=(48, 96, 96), dm_iterations=30, ml_iterations=20)}
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


def _truth_coverage(truth_table) -> tuple:
    """Area-weighted coverage and per-particle SEI statistics of the phantom's inner particles (exact)."""
    import pandas as pd

    t = truth_table[~truth_table["touches_border"].astype(bool)]
    t = t[t["area_m2"] > 0]
    w = t["area_m2"].to_numpy()
    cov = {c: float(np.sum(t[c].to_numpy() * w) / w.sum()) if len(t) else math.nan for c in _CATEGORIES}
    sei = pd.DataFrame({"mean_m": t["sei_mean_m"], "std_m": t["sei_std_m"]})
    sei_area = t["sei"].to_numpy() * w
    ok = np.isfinite(t["sei_mean_m"].to_numpy()) & (sei_area > 0)
    mean = float(np.sum(t["sei_mean_m"].to_numpy()[ok] * sei_area[ok]) / sei_area[ok].sum()) if ok.any() else math.nan
    return cov, sei, mean, int(len(t))


def _measured(run_dir: Path) -> dict:
    import json

    import pandas as pd

    def js(p):
        return json.loads(p.read_text()) if p.is_file() else {}

    out: dict = {}
    cov = js(run_dir / "coverage" / "summary.json")
    out["coverage"] = cov.get("area_weighted", {})
    out["n_inner"] = cov.get("n_particles")
    table = run_dir / "coverage" / "coverage.csv"
    if table.is_file():
        t = pd.read_csv(table, index_col=0)
        t = t[~t["touches_border"].astype(bool)] if "touches_border" in t else t
        if "mean_m" in t:
            w = (t["sei"] * t["area_m2"]).to_numpy()
            ok = np.isfinite(t["mean_m"].to_numpy()) & (w > 0)
            out["sei_mean_m"] = float(np.sum(t["mean_m"].to_numpy()[ok] * w[ok]) / w[ok].sum()) if ok.any() else None
    fsc = js(run_dir / "fsc" / "results.json") or js(run_dir / "fsc" / "manifest.json").get("results", {})
    out["fsc"] = {m: fsc[m]["resolution_m"] for m in ("pxct", "txtm") if m in fsc}
    out["particles"] = js(run_dir / "particles" / "manifest.json").get("results", {}).get("count")
    echem = js(run_dir / "echem" / "manifest.json").get("results", {})
    out["iqr_ratio"] = (echem.get("soc_iqr_ratio") or [None])[0]
    out["stages"] = {}
    for stage in ("ptycho", "pxct", "txtm", "fsc", "register", "fuse", "segment", "particles", "coverage", "echem",
                  "report"):
        m = js(run_dir / stage / "manifest.json")
        if m:
            out["stages"][stage] = {k: m.get(k) for k in ("status", "wall_s", "cpu_s", "peak_memory_bytes")}
    return out


def demo(directory, *, quick: bool = False, workers: Optional[int] = None, seed: int = 0,
         threads: Optional[int] = None, progress: Optional[Callable[[int, int, str], Any]] = None) -> DemoResult:
    """Simulate, reconstruct, register, fuse, segment, analyse and simulate a pristine and a cycled electrode.

    Parameters
    ----------
    directory : path-like
        Output: ``pristine/`` and ``cycled/`` (each ``config.toml``, ``phantom.h5``, ``raw/``,
        ``run/``), ``report.html`` (figures in ``figures/``, tables in ``tables/``) and
        ``summary.json``.  Rerunning resumes: finished stages are not run again.
    quick : bool
        The small size (about a minute and a half on two cores) instead of the default.
    workers : int, optional
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
    if workers is not None:
        check.integer(workers, "workers", minimum=1)
    size = SIZES["quick" if quick else "default"]
    root = Path(directory).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs, truths, measured, sims = {}, {}, {}, {}
    for name, cycled in SAMPLES:
        logger.info("demo: simulating the %s electrode", name)
        sim = simulate_raw(root / name, shape=size["shape"], cycled=cycled, seed=seed, threads=threads,
                           dm_iterations=size["dm_iterations"], ml_iterations=size["ml_iterations"])
        sims[name] = sim
        experiments = ["soc_distribution", "electronic_vs_ionic", "sei_effect"] if cycled and not quick \
            else ["soc_distribution"]
        _set_experiments(sim.config, experiments)
        logger.info("demo: tomofuse run %s", sim.config)
        runs[name] = run(sim.config, workers=workers, progress=progress)
        truths[name] = _truth_coverage(sim.electrode.truth)
        measured[name] = _measured(runs[name].run_dir)

    quantities = []
    for name, _ in SAMPLES:
        cov_t, _, sei_t, n_t = truths[name]
        m = measured[name]
        for c in _CATEGORIES:
            quantities.append(rp.Quantity(f"coverage {c} ({name}, area-weighted)", "1",
                                          _nan(m["coverage"].get(c)), cov_t[c], "phantom"))
        if name == "cycled":
            quantities.append(rp.Quantity("mean SEI thickness (cycled)", "nm", _nan(m.get("sei_mean_m")) * 1e9,
                                          sei_t * 1e9, "phantom"))
        quantities.append(rp.Quantity(f"inner particles analysed ({name})", "1", _nan(m.get("n_inner")), n_t,
                                      "phantom (particles inside its box)"))
        for mod, res in m["fsc"].items():
            quantities.append(rp.Quantity(f"FSC resolution {mod.upper()} ({name})", "nm", res * 1e9))
        if m.get("iqr_ratio") is not None:
            quantities.append(rp.Quantity(f"SOC IQR ratio 1.2 C / 0.4 C ({name})", "1", m["iqr_ratio"], 3.0, "paper"))

    # the report: Figs. 1 and 3 of the cycled run, Fig. 2 with both samples
    cyc = runs["cycled"].run_dir
    sections = run_figures(cyc, truth={"coverage": truths["cycled"][0], "sei_thickness": truths["cycled"][1]},
                           threads=threads)
    measured_cov = {n: measured[n]["coverage"] for n, _ in SAMPLES if _finite(measured[n]["coverage"])}
    if measured_cov:
        fig = rp.coverage_bars(measured_cov, truth={n: truths[n][0] for n, _ in SAMPLES})
        for s in sections:
            s.figures = [f for f in s.figures if f[0] != "fig2_coverage"]
        fig2 = [s for s in sections if s.title.startswith("Figure 2")]
        entry = ("fig2_coverage", fig, "area-weighted coverage of the inner silicon particles, pristine vs "
                 "cycled (black: the phantom's exact values)")
        if fig2:
            fig2[0].figures.insert(0, entry)
        else:
            sections.append(rp.Section("Figure 2 — surfaces of the silicon particles", figures=[entry]))
    wall = time.perf_counter() - t0
    provenance = {"command": f"tomofuse demo{' --quick' if quick else ''} --seed {seed}"
                  + (f" --workers {workers}" if workers else ""),
                  "configs": {n: str(sims[n].config) for n in sims}, "wall_s": wall,
                  "stages": {n: measured[n]["stages"] for n in measured}}
    warnings = [f"{q.name}: {q.measured:.3g} vs truth {q.truth:.3g}" for q in quantities
                if q.truth is not None and q.unit == "1" and q.name.startswith("coverage")
                and math.isfinite(q.measured) and abs(q.measured - q.truth) > 0.03]
    if warnings:
        warnings = ["coverage fractions differing from the truth by more than 0.03 (the segmentation's "
                    "partial-volume boundary of silicon is read as CBD):"] + warnings
    html = rp.write_report(root, title="tomofuse demo: the paper's study on a synthetic electrode",
                           sections=sections, quantities=quantities, provenance=jsonable(provenance),
                           warnings=warnings)
    summary = rp.write_summary(root / "summary.json", quantities=quantities,
                               stages={n: measured[n]["stages"] for n in measured})
    return DemoResult(directory=root, report=html, summary=summary, quantities=quantities, runs=runs, wall_s=wall)


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _finite(cov: dict) -> bool:
    return bool(cov) and all(isinstance(cov.get(c), (int, float)) and math.isfinite(cov[c]) for c in _CATEGORIES)


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
