"""`tomofuse demo --quick`: raw files of two electrodes to one report, numbers beside the phantom's truth.

The truth numbers are checked against the phantom files the demo wrote (``phantom.h5``, read here
with ``tomofuse.phantom.load``, not by the demo's code path), and the page's images against the
figure files next to it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import chromium, open_page  # noqa: E402


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "tomofuse.cli", "demo", "--quick", "-o", str(out), "--threads", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_demo_writes_report_and_summary(demo_dir):
    out, stdout = demo_dir
    for sample in ("pristine", "cycled"):
        assert (out / sample / "config.toml").is_file() and (out / sample / "run" / "manifest.json").is_file()
        manifest = json.loads((out / sample / "run" / "manifest.json").read_text())
        assert manifest  # the run's top-level manifest
    html = (out / "report.html").read_text()
    uris = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(uris) == len(pngs) >= 8  # Figs. 1 (5), 2 (coverage, thickness, map), 3 (SOC)
    on_disk = {p.read_bytes() for p in pngs}
    assert all(base64.b64decode(u) in on_disk for u in uris)
    for fig in ("fig1_cross_sections", "fig1_registration", "fig1_segmentation", "fig1_rendering", "fig1_fsc",
                "fig2_coverage"):
        assert (out / "figures" / f"{fig}.svg").is_file(), fig
    assert "report:" in stdout and "measured" in stdout and "truth" in stdout
    if chromium() is not None:  # in a real browser: every image decoded, no script error
        got = open_page(out / "report.html", out / "screenshot.png")
        assert got == {"loaded": len(pngs), "total": len(pngs), "errors": 0}, got


def test_demo_truth_is_the_phantoms(demo_dir):
    from tomofuse.phantom import load

    out, _ = demo_dir
    doc = json.loads((out / "summary.json").read_text())
    q = {x["name"]: x for x in doc["quantities"]}
    # the pristine phantom has no SEI, exactly; fractions of one particle set sum to one
    assert q["coverage sei (pristine)"]["truth"] == 0.0 and q["coverage sei (pristine)"]["measured"] == 0.0
    for sample in ("pristine", "cycled"):
        truth = [q[f"coverage {c} ({sample})"]["truth"] for c in ("free", "cbd", "contact", "sei")]
        meas = [q[f"coverage {c} ({sample})"]["measured"] for c in ("free", "cbd", "contact", "sei")]
        assert math.isclose(sum(truth), 1.0, abs_tol=1e-9) and math.isclose(sum(meas), 1.0, abs_tol=1e-9)
        # the truth of the compared particles is a weighted mean of the phantom's own per-particle truth
        table = load(out / sample / "phantom.h5").truth
        for c in ("free", "cbd", "contact", "sei"):
            assert table[c].min() - 1e-12 <= q[f"coverage {c} ({sample})"]["truth"] <= table[c].max() + 1e-12
        n = q[f"particles compared ({sample})"]
        assert 1 <= n["measured"] <= n["truth"] <= len(table)
        for phase in ("pore", "graphite", "silicon", "cbd"):
            assert 0.0 <= q[f"Dice {phase} ({sample})"]["measured"] <= 1.0
        # the report's confusion table (rows: the phantom's phases) holds the same voxels as the Dice
        import pandas as pd

        conf = pd.read_csv(out / "tables" / f"confusion_{sample}.csv", index_col=0)
        cols = [c for c in conf.columns if c.startswith("as ")]
        np.testing.assert_allclose(conf[cols].sum(axis=1), 1.0, atol=1e-9)
        counts = conf[cols].to_numpy() * conf["voxels"].to_numpy()[:, None]
        assert ("true sei" in conf.index) == (sample == "cycled")
        for phase in ("pore", "graphite", "silicon", "cbd"):
            i, j = list(conf.index).index(f"true {phase}"), cols.index(f"as {phase}")
            dice = 2 * counts[i, j] / (counts[i].sum() + counts[:, j].sum())
            assert math.isclose(dice, q[f"Dice {phase} ({sample})"]["measured"], rel_tol=1e-6), (sample, phase)
        # regression guards of the whole raw-data chain at the quick size (measured: pore 0.87 / 0.70,
        # silicon 0.91 / 0.90 pristine / cycled; the segmentation issue's goals are not met here)
        assert q[f"Dice pore ({sample})"]["measured"] > 0.55
        assert q[f"Dice silicon ({sample})"]["measured"] > 0.75
        # the registration against the phantom's geometry (measured 11 / 10 nm mean, 21 / 16 nm p95 at the
        # quick size; 7-10 nm at the default size; 36-40 nm when a B-spline fitted the modalities' differences)
        tre = q[f"registration TRE mean ({sample})"]
        assert tre["unit"] == "nm" and 0 < tre["measured"] < 30
        assert tre["measured"] <= q[f"registration TRE p95 ({sample})"]["measured"] < 45
    sei = q["mean SEI thickness (cycled)"]
    assert sei["unit"] == "nm" and 20 < sei["truth"] < 400 and np.isfinite(sei["measured"])
    assert q["SOC IQR ratio 1.2 C / 0.4 C (cycled)"]["truth"] == 3.0  # the paper's
    assert set(doc["stages"]) == {"pristine", "cycled"}
