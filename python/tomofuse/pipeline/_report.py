"""The ``report`` stage: ``summary.json`` (every number of the run) and a self-contained ``report.html``."""

from __future__ import annotations

import html
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


def _table(rows, header) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_report(run_dir: Path, *, title: str, stages_order) -> dict:
    """Write ``run_dir/summary.json`` and ``run_dir/report.html``; return their paths."""
    from ..io import atomic_path, jsonable

    quantities = summary_quantities(run_dir)
    stages = {}
    for s in stages_order:
        m = run_dir / s / "manifest.json"
        if m.is_file():
            doc = json.loads(m.read_text())
            stages[s] = {"status": doc.get("status"), "results": doc.get("results", {}),
                         "warnings": doc.get("warnings", [])}
    from ..report import Quantity, write_summary

    out_json = write_summary(run_dir / "summary.json",
                             quantities=[Quantity(q["name"], q["unit"], float(q["measured"]), source=q["source"])
                                         for q in quantities],
                             stages=stages)
    title = html.escape(title)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #999;padding:.2em .6em;text-align:left}</style></head><body>",
             f"<h1>{title}</h1><h2>Results</h2>",
             _table([(q["name"], q["unit"], q["measured"]) for q in quantities], ("quantity", "unit", "measured")),
             "<h2>Stages</h2>",
             _table([(s, d["status"], json.dumps(jsonable(d["results"]), sort_keys=True)[:300])
                     for s, d in stages.items()], ("stage", "status", "results")),
             *(["<h2>Warnings</h2><ul>"] + [f"<li>{html.escape(s)}: {html.escape(w)}</li>"
                                             for s, d in stages.items() for w in d["warnings"]] + ["</ul>"]
               if any(d["warnings"] for d in stages.values()) else []),
             "<p>Timing, memory and provenance of every stage: <code>manifest.json</code> and "
             "<code>&lt;stage&gt;/manifest.json</code>; the values used: <code>config.resolved.toml</code>.</p>",
             "</body></html>\n"]
    out_html = run_dir / "report.html"
    with atomic_path(out_html) as tmp:
        tmp.write_text("".join(parts))
    return {"summary": out_json, "html": out_html}
