"""`tomofuse demo --quick`: raw files of two electrodes to one report, numbers beside the phantom's truth.

The truth numbers are checked against the phantom files the demo wrote (``phantom.h5``, read here
with ``tomofuse.phantom.load``, not by the demo's code path), and the page's images against the
figure files next to it.
"""

from __future__ import annotations

import base64
import dataclasses
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
        assert got == {"loaded": len(pngs), "total": len(pngs), "errors": 0, "wider": 0}, got


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
        # an FSC that never fell to its threshold is reported as the bound it is, not as a resolution
        fsc = json.loads((out / sample / "run" / "fsc" / "manifest.json").read_text())["results"]
        for mod in ("pxct", "txtm"):
            [name] = [k for k in q if k.startswith(f"FSC resolution {mod.upper()} ({sample}")]
            assert ("not crossed: Nyquist" in name) == (not fsc[mod]["crossed"]), name
            assert math.isclose(q[name]["measured"], fsc[mod]["resolution_m"] * 1e9)
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
        # regression guards of the whole raw-data chain at the quick size (measured: pore 0.88 / 0.74,
        # silicon 0.90 / 0.91 pristine / cycled; the segmentation issue's goals are not met here)
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


@pytest.fixture(scope="module")
def small_electrode():
    from tomofuse.phantom import electrode

    return electrode((16, 32, 32), 21.4e-9, cycled=True, seed=3, truth_samples=1000)


@pytest.mark.parametrize("offset", [(0.0, 0.0, 0.0), (2.0, -3.0, 5.0), (0.25, 3.25, -1.75), (-0.75, 1.25, 2.75)])
def test_truth_on_grid_samples_the_phantom_at_the_reconstructions_voxel_centers(small_electrode, offset):
    """The demo's Dice compares with the phantom's phases at the reconstruction's voxel centers.
    Whole-voxel translations give the phantom's own voxels (the integer placement); a grid
    translated by quarter voxels must read what a rendering of the same geometry twice finer holds
    at those points."""
    from tomofuse._phase import Phase
    from tomofuse.pipeline._demo import _truth_on_grid

    e = small_electrode
    shape = (18, 36, 34)
    s = np.asarray(offset)
    shift = tuple(int(np.floor(o)) for o in offset)
    labels, parts, inside = _truth_on_grid(e, shape, shift, s)
    assert len(np.unique(labels[inside])) == 5  # the check sees every phase
    if np.all(s == np.round(s)):
        ref, ref_p, ref_in = _truth_on_grid(dataclasses.replace(e, geometry=None), shape, shift, None)
        assert np.array_equal(inside, ref_in)
        assert np.array_equal(labels, ref) and np.array_equal(parts[inside], ref_p[inside])
        return
    # reconstruction voxel i sits at phantom point (i - s + 0.5) v: the center of fine voxel
    # k = 2 (i - s) + 0.5 of a grid of v / 2
    fine_l, fine_p = e.geometry.render(tuple(2 * n for n in e.shape), e.voxel_size / 2)
    idx = np.indices(shape).reshape(3, -1).T
    k = 2 * (idx - s) + 0.5
    assert np.allclose(k, np.round(k))
    k = np.round(k).astype(int)
    ok = np.all((k >= 0) & (k < np.array(fine_l.shape)), axis=1)
    kk = tuple(k[ok].T)
    flat_l, flat_p, flat_in = labels.reshape(-1), parts.reshape(-1), inside.reshape(-1)
    assert np.all(flat_l[~ok] == 255) and not flat_in[~ok].any()
    # the pillar: the cylinder of _pillar (inscribed in the (y, x) square less one voxel) at any point
    x = (idx - s + 0.5) * e.voxel_size
    c = np.asarray(e.shape[1:]) * e.voxel_size / 2
    in_pillar = np.hypot(x[:, 1] - c[0], x[:, 2] - c[1]) < (0.5 * min(e.shape[1:]) - 1) * e.voxel_size
    assert np.array_equal(flat_in, ok & in_pillar)
    want = np.full(len(k), 255, np.uint8)
    want[ok] = np.where(in_pillar[ok], fine_l[kk], np.uint8(Phase.PORE))
    assert np.array_equal(flat_l, want)
    assert np.array_equal(flat_p[flat_in], fine_p[tuple(k[flat_in].T)])
    # and it is not the integer placement's answer (which is what the demo measured before)
    ref, _, _ = _truth_on_grid(dataclasses.replace(e, geometry=None), shape, shift, None)
    assert np.mean(ref[inside] != labels[inside]) > 0.05
