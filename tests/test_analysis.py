"""Acceptance of tomofuse.analysis (issue 6) against analytic phantoms with closed-form truth
(tests/analysis_phantoms.py) and against the foundation phantom's exact truth.

Resolution dependence (measured with the reference implementation of the same contract,
tests/analysis_reference.py): a face element is classified by the voxel across the face,
whose center lies 0.5 voxel along the face axis rather than along the normal, so a coverage
boundary that is not parallel to the face axis is shifted by ~0.5 |n_perp| voxel; per
particle that is ~(rim length x 0.5 voxel) / area ~ 1/r.  At r = 14-22 voxels (the paper's
~19 voxels per SiOx radius) the per-particle errors are MAE <= 0.0015, max <= 0.006; at
r = 9-14, MAE <= 0.003, max ~0.016.  On the foundation phantom the CBD web's grains (radius
60 nm, 1.5 voxels at 40 nm) dominate: coverage errors scale with the voxel size (free MAE
0.043 / 0.033 / 0.025 at 40 / 26.7 / 20 nm) and the bounds of the analytic phantoms are not
reachable at these voxel sizes.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

import analysis_phantoms as ap

analysis = pytest.importorskip("tomofuse.analysis")
from tomofuse._phase import Phase  # noqa: E402

V = 20e-9  # meters per voxel of the analytic phantoms
FRACTIONS = ["free", "cbd", "contact", "sei"]
COVERAGE_COLUMNS = ["area_m2", *FRACTIONS, "n_rays", "touches_border"]
SEI_COLUMNS = ["mean_m", "std_m", "median_m", "p95_m", "max_m", "coverage", "n_rays", "touches_border"]


def coverage(ph, **kw):
    kw.setdefault("threads", 2)
    return analysis.surface_coverage(ph.labels, ph.particles, voxel_size=ph.voxel_size, **kw)


def thickness(ph, **kw):
    kw.setdefault("threads", 2)
    return analysis.sei_thickness(ph.labels, ph.particles, voxel_size=ph.voxel_size, **kw)


def errors(cov, truth):
    """Per-particle absolute errors per category over the particles neither flags as border."""
    inner = truth.index[~truth["touches_border"]]
    inner = [p for p in inner if not cov.loc[p, "touches_border"]]
    return {c: (cov.loc[inner, c] - truth.loc[inner, c]).abs() for c in FRACTIONS}, inner


def report(err):
    return ", ".join(f"{c}: MAE {e.mean():.4f} max {e.max():.4f}" for c, e in err.items())


# -- analytic phantoms ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed():
    """Two 192^3 volumes, 12 particles each, r = 14-22 voxels: CBD caps, silicon-silicon and
    silicon-graphite contacts, SEI caps and whole shells."""
    return [ap.random_spheres((192, 192, 192), 12, seed=s, radius=(14, 22), voxel_size=V) for s in (0, 1)]


@pytest.fixture(scope="module")
def mixed_coverage(mixed):
    return [coverage(ph) for ph in mixed]


@pytest.fixture(scope="module")
def shells():
    """Eight isolated spheres with whole SEI shells, t0 = 2.5 ... 6.7 voxels, t1 = 0 ... 2."""
    return ap.sei_shell_spheres(voxel_size=V)


def test_coverage_frame(mixed, mixed_coverage):
    ph, cov = mixed[0], mixed_coverage[0]
    assert isinstance(cov, pd.DataFrame)
    for c in COVERAGE_COLUMNS:
        assert c in cov.columns, c
    assert sorted(cov.index) == sorted(ph.truth.index)
    assert cov["touches_border"].dtype == bool
    inner = cov[~cov["touches_border"]]
    np.testing.assert_allclose(inner[FRACTIONS].sum(axis=1), 1.0, atol=1e-9)
    assert np.all((cov[FRACTIONS].to_numpy() >= 0) & (cov[FRACTIONS].to_numpy() <= 1))
    assert np.all(cov["n_rays"] > 0)


def test_coverage_accuracy_at_paper_resolution(mixed, mixed_coverage):
    """Acceptance: per-particle MAE <= 0.002 and max <= 0.01 for each category."""
    err = {c: [] for c in FRACTIONS}
    for ph, cov in zip(mixed, mixed_coverage):
        e, inner = errors(cov, ph.truth)
        assert len(inner) == len(ph.truth)  # nothing of these phantoms touches the border
        for c in FRACTIONS:
            err[c].append(e[c])
    err = {c: pd.concat(v) for c, v in err.items()}
    for c, e in err.items():
        assert e.mean() <= 0.002 and e.max() <= 0.01, report(err)
    # the phantoms exercise every category
    truth = pd.concat([ph.truth for ph in mixed])
    for c in ("cbd", "contact", "sei"):
        assert (truth[c] > 0).sum() >= 3, c


def test_coverage_resolution_dependence():
    """r = 9-14 voxels: the ~1/r classification error (module docstring), MAE <= 0.004, max <= 0.025."""
    ph = ap.random_spheres((144, 144, 144), 16, seed=0, radius=(9, 14), voxel_size=V)
    err, _ = errors(coverage(ph), ph.truth)
    for c, e in err.items():
        assert e.mean() <= 0.004 and e.max() <= 0.025, report(err)


def test_area(mixed, mixed_coverage):
    for ph, cov in zip(mixed, mixed_coverage):
        rel = cov["area_m2"] / ph.truth["area_m2"] - 1
        assert rel.abs().max() <= 0.02, rel.round(4).to_dict()


def test_area_converges():
    """Acceptance: <= 2 % at r = 12 voxels, and no worse at r = 24.  At the default sigma = 2 the
    reference gives -0.67 %, 0.00 %, +0.09 % at r = 6, 12, 24; at sigma = 1 it would plateau at
    +1.1-1.2 % from r = 12 on (staircase-biased normals, test_analysis_reference.py)."""
    err = {}
    for r in (6.0, 12.0, 24.0):
        ph = ap.single_sphere(r, voxel_size=V)
        err[r] = abs(coverage(ph).loc[1, "area_m2"] / ph.truth.loc[1, "area_m2"] - 1)
    assert err[12.0] <= 0.02 and err[24.0] <= 0.02 and err[6.0] <= 0.04, err
    assert err[24.0] <= err[12.0] + 0.002, err


def test_area_scales_with_voxel_size(shells):
    a = analysis.surface_coverage(shells.labels, shells.particles, voxel_size=V)
    b = analysis.surface_coverage(shells.labels, shells.particles, voxel_size=2 * V)
    np.testing.assert_allclose(b["area_m2"], 4 * a["area_m2"], rtol=1e-12)
    pd.testing.assert_frame_equal(a[FRACTIONS], b[FRACTIONS])


def test_threads_identical(mixed):
    ph = mixed[1]
    one = coverage(ph, threads=1)
    pd.testing.assert_frame_equal(one, coverage(ph, threads=2), check_exact=True)
    pd.testing.assert_frame_equal(thickness(ph, threads=1), thickness(ph, threads=2), check_exact=True)


def test_max_distance_does_not_change_classification(mixed, mixed_coverage):
    """The first voxel a face's ray enters is the one across the face (t = 0), so a short
    max_distance (meters) changes nothing in the coverage."""
    cov = coverage(mixed[0], max_distance=2 * V)
    pd.testing.assert_frame_equal(cov[FRACTIONS], mixed_coverage[0][FRACTIONS])


def test_return_surface(shells):
    out = coverage(shells, return_surface=True)
    assert isinstance(out, tuple) and len(out) == 2
    pd.testing.assert_frame_equal(out[0], coverage(shells))
    out = thickness(shells, return_surface=True)
    assert isinstance(out, tuple) and len(out) == 2
    pd.testing.assert_frame_equal(out[0], thickness(shells))


def test_summarize(mixed_coverage):
    cov = mixed_coverage[0]
    s = analysis.summarize(cov)
    inner = cov[~cov["touches_border"]]
    want_aw = {c: float(np.average(inner[c], weights=inner["area_m2"])) for c in FRACTIONS}
    want_pm = {c: float(inner[c].mean()) for c in FRACTIONS}
    frame = s if isinstance(s, pd.DataFrame) else pd.DataFrame(s)
    if "area_weighted" not in frame.index:
        frame = frame.T
    for c in FRACTIONS:
        assert float(frame.loc["area_weighted", c]) == pytest.approx(want_aw[c], abs=1e-9)
        assert float(frame.loc["particle_mean", c]) == pytest.approx(want_pm[c], abs=1e-9)


# -- SEI thickness -----------------------------------------------------------------------------------


def test_sei_thickness_whole_shells(shells):
    """Acceptance: mean bias <= 0.2 voxel, r >= 0.99 over particles with different t0, std within
    0.5 voxel.  Whole shells: u . e is uniform on [-1, 1] over the sphere, so median = t0,
    p95 = t0 + 0.9 |t1|, max = t0 + |t1| in closed form."""
    t = thickness(shells)
    for c in SEI_COLUMNS:
        assert c in t.columns, c
    truth = shells.truth
    assert not t["touches_border"].any()
    got = t.loc[truth.index]
    bias = (got["mean_m"] - truth["sei_mean_m"]) / V
    assert abs(bias.mean()) <= 0.2 and bias.abs().max() <= 0.2, bias.round(3).to_dict()
    assert np.corrcoef(got["mean_m"], truth["sei_mean_m"])[0, 1] >= 0.99
    assert ((got["std_m"] - truth["sei_std_m"]) / V).abs().max() <= 0.5
    t0 = np.array([s.sei.t0 for s in shells.spheres])
    t1 = np.abs([s.sei.t1 for s in shells.spheres])
    assert np.abs(got["median_m"] / V - t0).max() <= 0.5
    assert np.abs(got["p95_m"] / V - (t0 + 0.9 * t1)).max() <= 0.75
    excess = got["max_m"] / V - (t0 + t1)
    assert excess.min() >= -0.5 and excess.max() <= 2.0, excess.round(2).to_dict()
    np.testing.assert_allclose(got["coverage"], 1.0, atol=1e-12)


def test_sei_thickness_caps(mixed):
    """SEI caps of the mixed phantoms: rays near a cap's rim leave the SEI sideways through its
    radial edge, which shortens runs (default sei_max_gap = 0.5: bias -0.06 mean, -0.17 worst,
    std +0.46 mean, +0.79 worst voxel at r = 14-22; without gap bridging -0.10 / -0.28 and
    +0.53 / +0.99): bounds looser than for whole shells."""
    rows = []
    for ph in mixed:
        t = thickness(ph)
        truth = ph.truth[ph.truth["sei"] > 0]
        rows.append(pd.DataFrame({"got": t.loc[truth.index, "mean_m"] / V, "true": truth["sei_mean_vox"],
                                  "std": t.loc[truth.index, "std_m"] / V, "true_std": truth["sei_std_vox"],
                                  "cov": t.loc[truth.index, "coverage"], "true_cov": truth["sei"]}))
    d = pd.concat(rows)
    assert len(d) >= 5
    bias = d["got"] - d["true"]
    assert abs(bias.mean()) <= 0.2 and bias.abs().max() <= 0.3, bias.round(3).tolist()
    assert np.corrcoef(d["got"], d["true"])[0, 1] >= 0.99
    assert (d["std"] - d["true_std"]).abs().mean() <= 0.5
    assert (d["std"] - d["true_std"]).abs().max() <= 1.0
    assert (d["cov"] - d["true_cov"]).abs().max() <= 0.01


def test_sei_coverage_matches_surface_coverage(mixed, mixed_coverage):
    t = thickness(mixed[0])
    cov = mixed_coverage[0]
    np.testing.assert_allclose(t.loc[cov.index, "coverage"], cov["sei"], atol=1e-12)
    no_sei = cov.index[cov["sei"] == 0]
    assert t.loc[no_sei, "mean_m"].isna().all()


# -- borders ---------------------------------------------------------------------------------------


def test_border_particles_flagged():
    inside = ap.Sphere((20.3, 20.2, 20.1), 10.0, [ap.Cap((0, 0, 1), 0.5)])
    cut = ap.Sphere((20.4, 20.3, 50.0), 9.0)  # x from 41 to 59 in a 56-wide box
    ph = ap.spheres_with_caps((41, 41, 56), [inside, cut], voxel_size=V)
    cov = coverage(ph)
    assert not cov.loc[1, "touches_border"]
    assert cov.loc[2, "touches_border"]
    assert cov.loc[1, "cbd"] == pytest.approx(ph.truth.loc[1, "cbd"], abs=0.01)
    # the visible part's fractions still sum to 1 (the border area is left out)
    assert cov.loc[2, FRACTIONS].sum() == pytest.approx(1.0, abs=1e-9)


def test_sei_cut_by_the_border_is_flagged():
    """The particle is inside, but its SEI reaches the grid's face: the thickness there is
    unknown, so the particle must be flagged, not measured short."""
    s = ap.Sphere((20.3, 20.2, 15.1), 12.0, sei=ap.SEIShell(6.0))
    ph = ap.spheres_with_caps((41, 41, 41), [s], voxel_size=V, check=False)
    assert np.any(ph.labels[:, :, 0] == Phase.SEI) and not np.any(ph.particles[:, :, 0])
    t = thickness(ph)
    assert t.loc[1, "touches_border"]


def _assert_same_surface(a, b):
    for name in ("particle", "position", "normal", "area", "category", "thickness"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.border_particles == b.border_particles


@pytest.mark.parametrize("case", ["spheres", "random grid", "sei cut by the border"])
def test_groups_on_crops_equal_the_whole_volume(case, monkeypatch):
    """Particles traced in groups on crops around them (how a cluster runs the coverage, and how
    memory is bounded in one process) give the whole volume's surface bit for bit: dense contacts,
    SEI runs, particles touching the volume's faces, an SEI run cut by a face; and with a first crop
    margin too narrow for the SEI runs, which must be noticed and the group traced again."""
    from tomofuse.analysis import _coverage

    if case == "spheres":
        ph = ap.random_spheres((96, 96, 96), 8, seed=4, radius=(9, 13), voxel_size=V)
        labels, particles = ph.labels, ph.particles
    elif case == "random grid":
        labels, particles = ap.random_label_grid((40, 44, 48), seed=3)
    else:
        s = ap.Sphere((20.3, 20.2, 15.1), 12.0, sei=ap.SEIShell(6.0))
        ph = ap.spheres_with_caps((41, 41, 41), [s], voxel_size=V, check=False)
        labels, particles = ph.labels, ph.particles
    whole_df, whole = analysis.surface_coverage(labels, particles, voxel_size=V, return_surface=True, threads=2)
    assert np.any(whole.category == 3)  # SEI runs are part of every case
    for per_task in (1, 3):
        df, surf = analysis.surface_coverage(labels, particles, voxel_size=V, return_surface=True, threads=2,
                                             particles_per_task=per_task)
        _assert_same_surface(surf, whole)
        pd.testing.assert_frame_equal(df, whole_df, check_exact=True)
    traced = []
    original = _coverage._trace_group
    monkeypatch.setattr(_coverage, "_GROUP_MARGIN", 3)
    monkeypatch.setattr(_coverage, "_trace_group", lambda *a: traced.append(a[0].shape) or original(*a))
    df, surf = analysis.surface_coverage(labels, particles, voxel_size=V, return_surface=True, threads=2,
                                         particles_per_task=2)
    _assert_same_surface(surf, whole)
    n_groups = -(-int(np.count_nonzero(np.bincount(particles.ravel())[1:])) // 2)
    assert len(traced) > n_groups  # some group had to be traced again with a wider crop


# -- bad input -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return ap.single_sphere(6.0, voxel_size=V)


@pytest.mark.parametrize("func", ["surface_coverage", "sei_thickness"])
def test_bad_input(small, func):
    f = getattr(analysis, func)
    lab, par = small.labels, small.particles
    with pytest.raises(ValueError, match="particles|labels|shape"):
        f(lab[:-1], par, voxel_size=V)
    with pytest.raises((TypeError, ValueError), match="labels"):
        f(lab.astype(np.float32), par, voxel_size=V)
    bad = par.copy()
    bad[0, 0, 0] = 7  # an id on a pore voxel
    with pytest.raises(ValueError, match="particles"):
        f(lab, bad, voxel_size=V)
    for vs in (0.0, -1e-9):
        with pytest.raises(ValueError, match="voxel_size"):
            f(lab, par, voxel_size=vs)
    with pytest.raises((TypeError, ValueError), match="voxel_size"):
        f(lab, par, voxel_size=float("nan"))


# -- the foundation phantom (tests/conftest.py: 64^3 at 40 nm, seed 1) -------------------------------


def compare_electrode(e):
    """Coverage errors over the particles whose surface lies inside the volume (no voxel on the
    grid's faces: every face ray then starts inside).  The border flags are not used here: both
    the truth and tomofuse.analysis also flag a particle when an SEI run leaves the box, which
    in the 64^3 cycled electrode is 5 of 6 particles, but their fractions stay comparable."""
    cov = analysis.surface_coverage(e.labels, e.particles, voxel_size=e.voxel_size, threads=2)
    faces = np.zeros(e.particles.max() + 1, bool)
    for a in range(3):
        for end in (0, -1):
            faces[np.unique(np.take(e.particles, end, axis=a))] = True
    inner = [p for p in e.truth.index if not faces[p]]
    err = {c: (cov.loc[inner, c] - e.truth.loc[inner, c]).abs() for c in FRACTIONS}
    signed = {c: cov.loc[inner, c] - e.truth.loc[inner, c] for c in FRACTIONS}
    return cov, err, signed, inner


def thickness_bias(e):
    """SEI mean-thickness bias (voxels) over the particles neither side flags."""
    t = analysis.sei_thickness(e.labels, e.particles, voxel_size=e.voxel_size, threads=2)
    ok = [p for p in e.truth.index if not t.loc[p, "touches_border"] and not e.truth.loc[p, "touches_border"]]
    bias = (t.loc[ok, "mean_m"] - e.truth.loc[ok, "sei_mean_m"]) / e.voxel_size
    return t, ok, bias


def test_foundation_pristine(pristine):
    """40 nm voxels, CBD grains of 1.5 voxels: free MAE 0.043 (max 0.061), CBD over-counted by
    +0.03 (grains cut by the surface have a larger voxel footprint just outside it), contact
    +0.011 (interfaces are not parallel to the face axes).  Bounds at this resolution: MAE <= 0.06,
    max <= 0.08; the signs are the known biases."""
    cov, err, signed, inner = compare_electrode(pristine)
    assert len(inner) >= 4
    assert not cov.loc[inner, "touches_border"].any()
    for c, e in err.items():
        assert e.mean() <= 0.06 and e.max() <= 0.08, report(err)
    assert signed["cbd"].mean() > 0 > signed["free"].mean()
    rel = cov.loc[inner, "area_m2"] / pristine.truth.loc[inner, "area_m2"] - 1
    assert rel.abs().max() <= 0.03, rel.round(4).to_dict()


def test_foundation_cycled(cycled):
    """Cycled (SEI over most of the free surface): MAE <= 0.02, max <= 0.04 per category; the SEI
    mean thickness of the particle(s) whose runs stay inside the 64^3 box within 0.5 voxel."""
    cov, err, signed, inner = compare_electrode(cycled)
    assert len(inner) >= 4
    for c, e in err.items():
        assert e.mean() <= 0.02 and e.max() <= 0.04, report(err)
    t, ok, bias = thickness_bias(cycled)
    assert len(ok) >= 1
    assert bias.abs().max() <= 0.5, bias.round(3).to_dict()
    flagged = [p for p in cycled.truth.index if cycled.truth.loc[p, "touches_border"]]
    assert t.loc[flagged, "touches_border"].all()  # runs cut by the box are flagged, as in the truth


@pytest.mark.slow
def test_foundation_cycled_thickness():
    """A larger cycled electrode (96^3 at 40 nm, seed 2: 16 particles, 10 with every SEI run inside):
    mean-thickness bias +0.03 voxel (per particle within 0.11), r = 0.9975, std error +0.20 mean
    (+0.50 worst) voxel at the default sei_max_gap = 0.5 (without gap bridging: -0.13 voxel,
    r = 0.994; the truth's runs go on through CBD grains lying on the SEI, the labels stop there)."""
    from tomofuse.phantom import electrode

    e = electrode((96, 96, 96), 40e-9, seed=2, cycled=True, truth_samples=32768)
    t, ok, bias = thickness_bias(e)
    assert len(ok) >= 8
    assert abs(bias.mean()) <= 0.2 and bias.abs().max() <= 0.4, bias.round(3).to_dict()
    assert np.corrcoef(t.loc[ok, "mean_m"], e.truth.loc[ok, "sei_mean_m"])[0, 1] >= 0.99
    std_err = (t.loc[ok, "std_m"] - e.truth.loc[ok, "sei_std_m"]) / e.voxel_size
    assert std_err.abs().max() <= 1.0, std_err.round(3).to_dict()


@pytest.mark.slow
def test_foundation_resolution_dependence(pristine):
    """The same electrode at 20 nm (128^3, same box): the coverage error shrinks with the voxel
    size (free MAE 0.043 -> 0.025, first order in the voxel size)."""
    from tomofuse.phantom import electrode

    fine = electrode((128, 128, 128), 20e-9, seed=1, truth_samples=32768)
    _, err_fine, _, inner = compare_electrode(fine)
    _, err_coarse, _, _ = compare_electrode(pristine)
    assert len(inner) >= 4
    assert err_fine["free"].mean() <= 0.75 * err_coarse["free"].mean(), (report(err_fine), report(err_coarse))
    assert err_fine["cbd"].mean() <= 0.75 * err_coarse["cbd"].mean()
    for c, e in err_fine.items():
        assert e.mean() <= 0.035 and e.max() <= 0.05, report(err_fine)


def test_sei_thickness_reuses_a_traced_surface(shells):
    cov, surface = analysis.surface_coverage(shells.labels, shells.particles, voxel_size=shells.voxel_size,
                                             return_surface=True)
    a = analysis.sei_thickness(surface=surface)
    b = analysis.sei_thickness(shells.labels, shells.particles, voxel_size=shells.voxel_size)
    assert a["n_rays"].sum() > 0
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(TypeError, match="surface"):
        analysis.sei_thickness(surface="not a surface")
    with pytest.raises(TypeError, match="labels, particles and voxel_size"):
        analysis.sei_thickness()
