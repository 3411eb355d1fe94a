"""The ``report`` stage: ``summary.json`` (every number of the run) and a self-contained ``report.html``."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["summary_quantities", "write_report"]


def _results(run_dir: Path, stage: str) -> dict:
    p = run_dir / stage / "results.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def summary_quantities(run_dir: Path) -> list[dict]:
    """The run's measured numbers as ``{"name", "unit", "measured", "truth", "source"}`` (truth None: the
    pipeline does not know it; the demo adds it)."""
    q: list[dict] = []

    stage = {"fsc": "fsc", "registration": "register", "volume": "segment", "particle": "particles",
             "coverage": "coverage", "sei": "coverage", "soc": "echem"}

    def add(name, unit, value):
        if value is not None and not isinstance(value, bool) and math.isfinite(value):
            q.append({"name": name, "unit": unit, "measured": value, "truth": None,
                      "source": stage.get(name.split("_")[0], "")})

    fsc = _results(run_dir, "fsc")
    for m in ("pxct", "txtm"):
        if m in fsc:
            add(f"fsc_resolution_{m}", "m", fsc[m]["resolution_m"])
    reg = _results(run_dir, "register").get("metrics", {})
    for k, v in sorted(reg.items()):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            add(f"registration_{k}", "", v)
    seg = _results(run_dir, "segment")
    for ph, f in sorted(seg.get("phase_fractions", {}).items()):
        add(f"volume_fraction_{ph}", "1", f)
    add("particle_count", "1", _results(run_dir, "particles").get("count"))
    cov = _results(run_dir, "coverage")
    for k, v in sorted(cov.get("area_weighted", {}).items()):
        add(f"coverage_{k}_area_weighted", "1", v)
    add("sei_thickness_mean", "m", cov.get("sei_thickness_mean_m"))
    ec = _results(run_dir, "echem")
    if ec.get("soc_iqr_ratio"):
        add("soc_iqr_ratio_1.2C_over_0.4C", "1", ec["soc_iqr_ratio"][0])
    return q


def write_report(run_dir: Path, *, title: str, stages_order, threads=None, config_source=None) -> dict:
    """Write ``run_dir/summary.json`` and ``run_dir/report.html`` (figures in ``run_dir/figures``); return their paths."""
    from .. import report as rp
    from ..io import jsonable
    from ._figures import run_figures

    quantities = [rp.Quantity(q["name"], q["unit"], float(q["measured"]) if q["measured"] is not None else math.nan)
                  for q in summary_quantities(run_dir)]
    stages = {}
    for s in stages_order:
        m = run_dir / s / "manifest.json"
        if m.is_file():
            doc = json.loads(m.read_text())
            stages[s] = {k: doc.get(k) for k in ("status", "wall_s", "cpu_s", "peak_memory_bytes", "results")}
            stages[s]["warnings"] = doc.get("warnings", [])
    # summary.json holds results only (a rerun gives the same file); times and memory are provenance
    out_json = rp.write_summary(run_dir / "summary.json", quantities=quantities,
                                stages={s: {k: d[k] for k in ("status", "results", "warnings")}
                                        for s, d in stages.items()})
    sections = run_figures(run_dir, threads=threads)
    provenance = {"config": None if config_source is None else str(config_source),
                  "stages": {s: {k: d[k] for k in ("status", "wall_s", "cpu_s", "peak_memory_bytes")}
                             for s, d in stages.items()}}
    out_html = rp.write_report(run_dir, title=title, sections=sections, quantities=quantities,
                               provenance=jsonable(provenance),
                               warnings=[f"{s}: {w}" for s, d in stages.items() for w in d["warnings"]])
    return {"summary": out_json, "html": out_html}
