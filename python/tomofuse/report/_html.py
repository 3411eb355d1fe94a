"""The report: one self-contained HTML page, its figures as SVG and PNG, its tables as CSV, summary.json."""

from __future__ import annotations

import base64
import csv
import html
import io as _stdio
import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import _validate as check
from ..io import atomic_path, check_writable, jsonable

__all__ = ["Quantity", "Section", "write_report", "write_summary"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Quantity:
    """One measured number, its unit and (where known) the truth it should reproduce.

    Attributes
    ----------
    name : str
        E.g. ``"coverage cbd (cycled)"``.
    unit : str
        E.g. ``"nm"``, ``"1"`` for a fraction.
    measured : float
    truth : float or None
        The exact value (phantom) or the paper's, None where there is none.
    source : str
        Where ``truth`` comes from (``"phantom"``, ``"paper"``), empty without truth.
    """

    name: str
    unit: str
    measured: float
    truth: Optional[float] = None
    source: str = ""

    def __post_init__(self):
        for name in ("name", "unit", "source"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Quantity.{name} must be a str, got {type(getattr(self, name)).__name__}")
        # NaN is allowed (a number that could not be measured is reported as such, not dropped)
        object.__setattr__(self, "measured", _real(self.measured, "measured"))
        if self.truth is not None:
            object.__setattr__(self, "truth", _real(self.truth, "truth"))

    @property
    def difference(self) -> Optional[float]:
        """``measured - truth`` (None without truth)."""
        return None if self.truth is None else self.measured - self.truth

    def as_dict(self) -> dict:
        """Plain dict for JSON (NaN becomes None)."""
        return _finite({"name": self.name, "unit": self.unit, "measured": self.measured, "truth": self.truth,
                        "difference": self.difference, "source": self.source})


@dataclass
class Section:
    """A part of the report: a title, an optional paragraph, figures and tables.

    Attributes
    ----------
    title : str
    text : str
        Plain text under the title (HTML-escaped).
    figures : list of (name, matplotlib.figure.Figure, caption)
        ``name`` becomes the file name of the SVG and PNG (letters, digits, ``_ . -``).
    tables : list of (name, pandas.DataFrame, caption)
        Shown in the page and written as ``tables/<name>.csv``.
    """

    title: str
    text: str = ""
    figures: list = field(default_factory=list)
    tables: list = field(default_factory=list)


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"Quantity.{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _fmt(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4g}"


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} name must be letters, digits, '_', '.', '-' (a file name), got {name!r}")
    return name


def _png_bytes(fig, dpi: int) -> bytes:
    buf = _stdio.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _quantity_table(quantities: Sequence[Quantity]) -> str:
    rows = []
    for q in quantities:
        d = q.difference
        rows.append(f"<tr><td>{html.escape(q.name)}</td><td>{html.escape(q.unit)}</td>"
                    f"<td class=num>{_fmt(q.measured)}</td><td class=num>{_fmt(q.truth)}</td>"
                    f"<td class=num>{_fmt(d)}</td><td>{html.escape(q.source)}</td></tr>")
    return ("<table class=quantities><thead><tr><th>quantity</th><th>unit</th><th>measured</th><th>truth</th>"
            "<th>difference</th><th>truth from</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _frame_table(frame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    body = []
    # itertuples keeps each column's type (iterrows makes a row of ints and floats all floats)
    for idx, row in zip(frame.index, frame.itertuples(index=False)):
        cells = [f"<td>{html.escape(str(idx))}</td>"]
        for v in row:
            if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                cells.append(f"<td class=num>{int(v)}</td>")
            elif isinstance(v, (float, np.floating)):
                cells.append(f"<td class=num>{_fmt(float(v))}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    # (in a box that scrolls sideways: a wide table does not widen the page)
    return f"<div class=wide><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#111;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333}.warn{background:#fff4e0;border-left:4px solid #e0701a;padding:.4em .8em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}div.wide{overflow-x:auto;max-width:100%}
"""

# Records in the page itself whether every image decoded and whether a script error happened
# (data-images-loaded / data-images-total / data-errors on <body>), and the page's width against the
# window's (data-page-width / data-view-width: a table wider than the window scrolls in its own box), for
# a browser check.
_CHECK = """
<script>
window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message))});
window.addEventListener('load',function(){var im=document.images,ok=0;for(var i=0;i<im.length;i++)
{if(im[i].complete&&im[i].naturalWidth>0)ok++}var b=document.body;b.setAttribute('data-images-loaded',ok);
b.setAttribute('data-images-total',im.length);b.setAttribute('data-errors',window.__errors.length);
b.setAttribute('data-page-width',document.documentElement.scrollWidth);b.setAttribute('data-view-width',
document.documentElement.clientWidth)});
</script>
"""


def write_report(directory, *, title: str, sections: Sequence[Section] = (), quantities: Sequence[Quantity] = (),
                 provenance: Optional[Mapping[str, Any]] = None, warnings: Sequence[str] = (), dpi: int = 110):
    """Write ``report.html`` (one self-contained page), ``figures/*.svg|png`` and ``tables/*.csv``.

    The page embeds every figure as a PNG data URI (it opens offline, sent as one file); the SVG
    and PNG files beside it are for papers and slides.  Every file is written atomically.

    Parameters
    ----------
    directory : path-like
        Output folder (created).
    title : str
        Page title.
    sections : sequence of Section
        In order.
    quantities : sequence of Quantity
        The summary table at the top (measured | truth | difference).
    provenance : mapping, optional
        Version, command, configuration, per-stage times...: shown as JSON at the end.
    warnings : sequence of str
        Shown in a box below the summary.
    dpi : int
        Resolution of the PNGs, dots per inch.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    import matplotlib

    check.integer(dpi, "dpi", minimum=30, maximum=600)
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "report.html", argument="directory")
    for s in sections:
        if not isinstance(s, Section):
            raise TypeError(f"sections must hold tomofuse.report.Section, got {type(s).__name__}")
    for q in quantities:
        if not isinstance(q, Quantity):
            raise TypeError(f"quantities must hold tomofuse.report.Quantity, got {type(q).__name__}")
    for kind, names in (("figure", [n for s in sections for n, *_ in s.figures]),
                        ("table", [n for s in sections for n, *_ in s.tables])):
        for n in names:
            _check_name(n, kind)
        dup = {n for n in names if names.count(n) > 1}
        if dup:  # figures/<name>.png and tables/<name>.csv: unique within each kind
            raise ValueError(f"{kind} names must be unique, repeated: {sorted(dup)}")

    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if quantities:
        parts.append("<h2>Summary</h2>" + _quantity_table(quantities))
    if warnings:
        parts.append("<div class=warn><b>Warnings</b><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
                     + "</ul></div>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        for name, fig, caption in s.figures:
            png = _png_bytes(fig, dpi)
            (out / "figures").mkdir(exist_ok=True)
            _write_bytes(out / "figures" / f"{name}.png", png)
            svg = _stdio.BytesIO()
            with matplotlib.rc_context({"svg.hashsalt": name}):  # reproducible element ids, no date
                fig.savefig(svg, format="svg", metadata={"Date": None})
            _write_bytes(out / "figures" / f"{name}.svg", svg.getvalue())
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            parts.append(f"<figure id='{name}'><img src='{uri}' alt='{html.escape(caption or name)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        for name, frame, caption in s.tables:
            (out / "tables").mkdir(exist_ok=True)
            buf = _stdio.StringIO()
            frame.to_csv(buf, quoting=csv.QUOTE_MINIMAL)
            _write_text(out / "tables" / f"{name}.csv", buf.getvalue())
            parts.append(f"<p><b>{html.escape(caption)}</b> (tables/{name}.csv)</p>" + _frame_table(frame))
    if provenance:
        text = json.dumps(jsonable(dict(provenance)), indent=2, sort_keys=True, default=str)
        parts.append("<h2>Provenance</h2><pre>" + html.escape(text) + "</pre>")
    parts.append(_CHECK + "</body></html>")
    path = out / "report.html"
    _write_text(path, "\n".join(parts))
    return path


def _finite(value):
    """JSON value with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_summary(path, *, quantities: Sequence[Quantity], stages: Optional[Mapping[str, Any]] = None):
    """Write ``summary.json``: ``{"quantities": [{name, unit, measured, truth, difference, source}], "stages": {...}}``.

    Parameters
    ----------
    path : path-like
        Output file (written atomically).
    quantities : sequence of Quantity
    stages : mapping, optional
        Per-stage information (times, memory, status).

    Returns
    -------
    pathlib.Path
    """
    for q in quantities:
        if not isinstance(q, Quantity):
            raise TypeError(f"quantities must hold tomofuse.report.Quantity, got {type(q).__name__}")
    doc = {"quantities": [q.as_dict() for q in quantities], "stages": _finite(jsonable(dict(stages or {})))}
    path = Path(path)
    _write_text(path, json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return path
