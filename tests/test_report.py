"""tomofuse.report: the figures show the numbers they are given, and the page holds every figure.

The inputs are analytic (two silicon spheres with an SEI cap and a CBD patch; a sphere particle
for the electrochemistry), traced and simulated by the stages themselves; the checks read the
drawn artists back (bar heights, truth marks, scatter colors) and compare them with those inputs,
and open the written page in a real browser where one is installed.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tomofuse import Phase
from tomofuse.analysis import CATEGORIES, sei_thickness, summarize, surface_coverage
from tomofuse.report import (Quantity, Section, coverage_bars, cross_sections, fsc_curves, limiting_currents,
                             overpotential_curves, particle_fields, phase_surfaces, registration_check,
                             segmentation_overlay, sei_thickness_distributions, sei_thickness_map,
                             soc_distributions, volume_sections, write_report, write_summary)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import chromium, open_page  # noqa: E402

V = 40e-9
UNIT = re.compile(r"\(.+\)")


@pytest.fixture(scope="module")
def scene():
    """Two silicon spheres in pore: one with an SEI cap (z > center), one touching a CBD slab."""
    n = 40
    z, y, x = np.indices((n, n, n))
    labels = np.zeros((n, n, n), np.uint8)
    particles = np.zeros((n, n, n), np.int32)
    for pid, (cz, cy, cx) in ((1, (20, 12, 12)), (2, (20, 27, 27))):
        r2 = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2
        shell = (r2 <= 9 ** 2) & (r2 > 7 ** 2)
        if pid == 1:
            labels[shell & (z > cz)] = Phase.SEI
        else:
            labels[shell & (x > cx + 3)] = Phase.CBD
        labels[r2 <= 7 ** 2] = Phase.SILICON
        particles[r2 <= 7 ** 2] = pid
    labels[:, :, :3] = Phase.GRAPHITE
    cov, surface = surface_coverage(labels, particles, voxel_size=V, return_surface=True, threads=1)
    thick = sei_thickness(surface=surface)
    rng = np.random.default_rng(0)
    image = labels.astype(np.float32) + rng.normal(0, 0.2, labels.shape).astype(np.float32)
    return dict(labels=labels, particles=particles, coverage=cov, surface=surface, thickness=thick, image=image)


@pytest.fixture(scope="module")
def echem_runs():
    from tomofuse.echem import Particle, scenarios

    p = Particle.sphere(0.15e-6, 30e-9, cbd_fraction=0.4, sei_thickness=60e-9, threads=1)
    return dict(soc=scenarios.soc_distribution(p, threads=1),
                limits=scenarios.electronic_vs_ionic(p, threads=1),
                sei=scenarios.sei_effect(p, c_rates=(1.1, 2.1), threads=1))


def _labeled(fig):
    """Every 2-D axes (colorbars aside) has x and y labels carrying a unit in parentheses."""
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert UNIT.search(ax.get_xlabel()), ax.get_xlabel()
        assert ax.get_ylabel(), "y axis without label"
        assert ax.title.get_size() >= 8 and ax.xaxis.label.get_size() >= 8


def test_image_figures(scene):
    lab, img = scene["labels"], scene["image"]
    for fig in (cross_sections(img, img * 2, voxel_size=V), registration_check(img, img, voxel_size=V, tiles=4),
                segmentation_overlay(img, lab, voxel_size=V, axis=1)):
        _labeled(fig)
        extent = fig.axes[0].images[0].get_extent()
        assert extent[1] == pytest.approx(40 * V * 1e6)  # micrometers
    with pytest.raises(ValueError, match="one grid"):
        cross_sections(img, img[:-1], voxel_size=V)
    with pytest.raises(ValueError, match="positive length"):
        segmentation_overlay(img, lab, voxel_size=-1.0)
    with pytest.raises(ValueError, match="outside axis"):
        cross_sections(img, img, voxel_size=V, index=40)


def test_volume_sections_show_the_central_slices(scene):
    img = scene["image"].copy()
    img[0] = np.nan  # outside a field of view
    fig = volume_sections(img, voxel_size=V, name="TXTM")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 3
    _labeled(fig)
    for axis, ax in enumerate(axes):
        shown = np.ma.getdata(ax.images[0].get_array())
        np.testing.assert_array_equal(np.ma.getmaskarray(ax.images[0].get_array()), np.isnan(np.take(img, 20, axis)))
        np.testing.assert_array_equal(shown[np.isfinite(shown)], np.take(img, 20, axis)[np.isfinite(np.take(img, 20, axis))])
        assert ax.get_title() == f"TXTM, {'zyx'[axis]} = 20"


def test_registration_checkerboard_takes_tiles_from_each(scene):
    img = scene["image"]
    fig = registration_check(img, np.zeros_like(img), voxel_size=V, tiles=4)
    board = fig.axes[0].images[0].get_array()
    board = np.asarray(board)  # 40 x 40 section, tiles of 10: fixed (noisy) and moving (constant) alternate
    assert board[:10, :10].std() > 0.05 and np.all(board[:10, 10:20] == board[0, 10])
    assert np.all(board[10:20, :10] == board[0, 10]) and board[10:20, 10:20].std() > 0.05


def test_segmentation_overlay_colors_are_the_labels(scene):
    lab, img = scene["labels"], scene["image"]
    fig = segmentation_overlay(img, lab, voxel_size=V)
    overlay = np.asarray(fig.axes[1].images[1].get_array())
    np.testing.assert_array_equal(overlay, lab[20])
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [p.name.lower() for p in Phase]


def test_phase_surfaces(scene):
    fig = phase_surfaces(scene["labels"], voxel_size=V, phases=(Phase.SILICON, Phase.SEI))
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # one surface per phase present
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["silicon", "sei"]
    assert ax.get_zlabel() == "z (µm)" and ax.get_xlim()[1] == pytest.approx(40 * V * 1e6)
    fig = phase_surfaces(scene["labels"], voxel_size=V, phases=(Phase.SILICON,), max_size=8)
    assert fig.axes[0].get_xlim()[1] == pytest.approx(8 * V * 1e6)  # cropped to the central 8^3


def test_fsc_marks_both_resolutions():
    from tomofuse.tomo import fsc

    rng = np.random.default_rng(1)
    base = rng.normal(size=(32, 32, 32))
    from scipy.ndimage import gaussian_filter

    sharp, blurred = gaussian_filter(base, 0.8), gaussian_filter(base, 2.0)
    res = {name: fsc(v + rng.normal(0, 0.05, v.shape), v + rng.normal(0, 0.05, v.shape), voxel_size=V, threads=1)
           for name, v in (("PXCT", sharp), ("TXTM", blurred))}
    fig = fsc_curves(res)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    got = sorted(float(ln.get_xdata()[0]) for ln in lines)
    want = sorted(1e-6 / r.resolution for r in res.values() if r.crossed)
    np.testing.assert_allclose(got, want)
    assert any(f"{res['PXCT'].resolution * 1e9:.0f} nm" in t.get_text() for t in ax.get_legend().get_texts())


def test_coverage_bars_heights_and_truth(scene):
    measured = {"cycled": summarize(scene["coverage"]).loc["area_weighted"],
                "pristine": dict(free=0.5, cbd=0.45, contact=0.05, sei=0.0)}
    truth = {"cycled": dict(free=0.3, cbd=0.2, contact=0.1, sei=0.4)}
    fig = coverage_bars(measured, truth=truth)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    want = [float(measured[n][c]) for n in measured for c in CATEGORIES]
    np.testing.assert_allclose(heights, want)
    marks = [seg[0][1] for coll in ax.collections for seg in coll.get_segments()]
    np.testing.assert_allclose(marks, [truth["cycled"][c] for c in CATEGORIES])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cycled", "pristine", "truth"]
    # every value label sits above its bar and above its truth mark (the cycled labels are the first four)
    ys = [t.get_position()[1] for t in ax.texts]
    assert all(y > h for y, h in zip(ys, want))
    assert all(y > truth["cycled"][c] for y, c in zip(ys[:4], CATEGORIES))


def test_sei_figures(scene):
    thick, surface = scene["thickness"], scene["surface"]
    fig = sei_thickness_distributions(thick, truth=thick)
    _labeled(fig)
    for ax in fig.axes:
        assert sum(p.get_height() for p in ax.patches[:-1]) >= 1
    fig = sei_thickness_map(surface, 1)
    sc = [c for c in fig.axes[0].collections if c.get_array() is not None][0]
    sel = (surface.particle == 1) & (surface.category == 3)
    np.testing.assert_allclose(np.sort(np.asarray(sc.get_array())), np.sort(surface.thickness[sel] * 1e9))
    # the SEI cap covers z > center: polar angles of the SEI points below 90 degrees (+z up)
    assert np.median(np.asarray(sc.get_offsets())[:, 1]) < 90
    # the key lies outside the axes, where it cannot cover surface points
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1
    assert not fig.legends[0].get_window_extent(renderer).overlaps(fig.axes[0].get_window_extent(renderer))
    with pytest.raises(ValueError, match="no surface elements"):
        sei_thickness_map(surface, 99)


def test_echem_figures(echem_runs):
    soc, lim, sei = echem_runs["soc"], echem_runs["limits"], echem_runs["sei"]
    fig = soc_distributions(soc)
    assert f"{soc['iqr_ratio']:.2f}" in fig.axes[0].get_title()
    fig = particle_fields(lim["snapshot"])
    _labeled(fig)
    fig = overpotential_curves(sei)
    ys = fig.axes[0].get_lines()[1].get_ydata()
    np.testing.assert_allclose(ys, sei["table"]["overpotential_with_sei_V"] * 1e3)
    fig = limiting_currents(lim)
    title = fig.axes[0].get_title()
    ionic = float(lim["table"].loc["ionic_limit_c_rate", "tomofuse"])
    assert f"ionic {ionic:.2f} C" in title or "ionic ≥" in title


def test_report_page_holds_every_figure(tmp_path, scene):
    img, lab = scene["image"], scene["labels"]
    figs = [("sections", cross_sections(img, img, voxel_size=V), "both modalities"),
            ("overlay", segmentation_overlay(img, lab, voxel_size=V), "labels <b>")]
    table = scene["coverage"]
    q = [Quantity("coverage sei", "1", 0.25, 0.2, "phantom"), Quantity("particles", "1", 2),
         Quantity("failed", "nm", float("nan"), 1.0, "phantom")]
    path = write_report(tmp_path / "r", title="test report", sections=[
        Section("Figure 1", "x < y", figs, [("coverage", table, "per particle")])], quantities=q,
        provenance={"version": "0", "path": tmp_path}, warnings=["w & w"])
    text = path.read_text()
    uris = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(uris) == 2
    for (name, *_), uri in zip(figs, uris):
        assert base64.b64decode(uri) == (tmp_path / "r" / "figures" / f"{name}.png").read_bytes()
        ET.parse(tmp_path / "r" / "figures" / f"{name}.svg")  # well-formed SVG
    back = pd.read_csv(tmp_path / "r" / "tables" / "coverage.csv", index_col=0)
    np.testing.assert_allclose(back[list(CATEGORIES)].to_numpy(), table[list(CATEGORIES)].to_numpy())
    assert "labels &lt;b&gt;" in text and "x &lt; y" in text and "w &amp; w" in text
    assert "<td class=num>0.05</td>" in text  # the difference 0.25 - 0.2
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["figures", "report.html", "tables"]
    # the same figures written again give the same bytes (no dates, fixed SVG ids)
    fresh = [("sections", cross_sections(img, img, voxel_size=V), ""),
             ("overlay", segmentation_overlay(img, lab, voxel_size=V), "")]
    again = write_report(tmp_path / "s", title="test report", sections=[Section("Figure 1", "x < y", fresh)])
    for name, *_ in figs:
        for ext in ("png", "svg"):
            assert (again.parent / "figures" / f"{name}.{ext}").read_bytes() == \
                (tmp_path / "r" / "figures" / f"{name}.{ext}").read_bytes()
    out = write_summary(tmp_path / "r" / "summary.json", quantities=q, stages={"segment": {"wall_s": 1.5, "fractions": [0.5, float("nan")]}})
    doc = json.loads(out.read_text())
    assert doc["quantities"][0] == {"name": "coverage sei", "unit": "1", "measured": 0.25, "truth": 0.2,
                                    "difference": pytest.approx(0.05), "source": "phantom"}
    assert doc["quantities"][2]["measured"] is None and doc["stages"]["segment"]["wall_s"] == 1.5
    assert doc["stages"]["segment"]["fractions"] == [0.5, None]  # strict JSON: NaN -> null


def test_report_arguments(tmp_path, scene):
    fig = cross_sections(scene["image"], scene["image"], voxel_size=V)
    with pytest.raises(ValueError, match="file name"):
        write_report(tmp_path, title="t", sections=[Section("s", figures=[("../x", fig, "")])])
    with pytest.raises(ValueError, match="unique"):
        write_report(tmp_path, title="t", sections=[Section("s", figures=[("a", fig, ""), ("a", fig, "")])])
    with pytest.raises(TypeError, match="Section"):
        write_report(tmp_path, title="t", sections=["s"])
    with pytest.raises(TypeError, match="real number"):
        Quantity("a", "1", "0.3")
    with pytest.raises(TypeError, match="Quantity"):
        write_summary(tmp_path / "s.json", quantities=[{"name": "a"}])
    assert not (tmp_path / "report.html").exists()


@pytest.mark.skipif(chromium() is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_report_in_a_browser(tmp_path, scene):
    img, lab = scene["image"], scene["labels"]
    figs = [("a", cross_sections(img, img, voxel_size=V), ""), ("b", coverage_bars(
        {"x": summarize(scene["coverage"]).loc["area_weighted"]}), ""),
        ("c", phase_surfaces(lab, voxel_size=V), "")]
    # a table of 30 columns: it scrolls in its own box, the page stays as wide as the window
    wide = pd.DataFrame(np.arange(60.0).reshape(2, 30) * 1.234567e-13, columns=[f"column_{i}" for i in range(30)])
    path = write_report(tmp_path, title="browser check", sections=[Section("s", figures=figs,
                                                                           tables=[("wide", wide, "a wide table")])],
                        quantities=[Quantity("q", "1", 1.0, 1.0)])
    got = open_page(path, tmp_path / "shot.png")
    assert got == {"loaded": 3, "total": 3, "errors": 0, "wider": 0}, got
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
