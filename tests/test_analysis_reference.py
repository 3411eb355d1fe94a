"""The surface-analysis reference (tests/analysis_reference.py) and the analytic phantoms
(tests/analysis_phantoms.py) against hand-computed answers and closed forms, and the C++
core (``tomofuse._core.surface_elements`` / ``trace_rays``) against the reference (issue 6).

(a) the reference ray walker on tiny hand-made grids;
(b) the reference surface elements on planes and spheres, the analytic phantoms against
    their closed forms, and the reference pipeline against the acceptance bounds;
(c) the core against the reference: exact for the walk, 1e-9 for normals/areas, and
    bit-identical for 1, 2, 4 threads (skipped until the core has the functions).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import analysis_phantoms as ap
import analysis_reference as ar
import tomofuse._core as core

SQ2 = math.sqrt(2.0)
S = 1.0 / SQ2


def grid(shape):
    return np.zeros(shape, np.uint8), np.zeros(shape, np.int32)


def walk(labels, particles, origin, direction, self_id=0, max_length=math.inf, max_gap=0.0):
    """Loop and vectorized reference on one ray; both must agree bit for bit."""
    args = (labels, particles, [origin], [direction], [self_id])
    one = ar.trace_rays(*args, max_length=max_length, max_gap=max_gap)
    vec = ar.trace_rays_vectorized(*args, max_length=max_length, max_gap=max_gap)
    for a, b in zip(one, vec):
        np.testing.assert_array_equal(a, b)
    return int(one[0][0]), int(one[1][0]), float(one[2][0])


# -- (a) the reference walker by hand --------------------------------------------------------


@pytest.fixture
def sei_row():
    """(3, 3, 10): particle 1 at x = 0, 1; SEI at x = 2, 3, 4; pore beyond; row y = z = 1."""
    labels, particles = grid((3, 3, 10))
    labels[1, 1, 0:2] = ar.SILICON
    particles[1, 1, 0:2] = 1
    labels[1, 1, 2:5] = ar.SEI
    return labels, particles


def test_walker_sei_run_along_x(sei_row):
    labels, particles = sei_row
    # from the +x face of voxel x=1: three SEI voxels
    assert walk(labels, particles, (1.5, 1.5, 2.0), (0, 0, 1), 1) == (ar.SEI, 0, 3.0)
    # from inside the particle: its own voxels are skipped, the run is still 3
    assert walk(labels, particles, (1.5, 1.5, 0.5), (0, 0, 1), 1) == (ar.SEI, 0, 3.0)
    # from the middle of the first SEI voxel: the run is counted from the ray's start
    assert walk(labels, particles, (1.5, 1.5, 2.5), (0, 0, 1), 1) == (ar.SEI, 0, 2.5)
    # the particle is not skipped for another self id: the first voxel decides
    assert walk(labels, particles, (1.5, 1.5, 0.5), (0, 0, 1), 7)[:2] == (ar.SILICON, 1)


def test_walker_bridges_short_gaps(sei_row):
    """SEI at x = 2-4, pore at 5, SEI at 6-7, pore at 8-9: a gap of 1 voxel is bridged when
    max_gap >= 1 (the run then ends at x = 8), never when max_gap = 0 or < 1; a gap that
    reaches the grid's edge ends the run at the last SEI voxel."""
    labels, particles = sei_row
    labels[1, 1, 6:8] = ar.SEI
    o, d = (1.5, 1.5, 2.0), (0, 0, 1)
    assert walk(labels, particles, o, d, 1) == (ar.SEI, 0, 3.0)
    assert walk(labels, particles, o, d, 1, max_gap=0.99) == (ar.SEI, 0, 3.0)
    assert walk(labels, particles, o, d, 1, max_gap=1.0) == (ar.SEI, 0, 6.0)
    assert walk(labels, particles, o, d, 1, max_gap=5.0) == (ar.SEI, 0, 6.0)  # nothing more follows
    # a gap of two voxels needs max_gap >= 2
    labels[1, 1, 6] = ar.PORE
    assert walk(labels, particles, o, d, 1, max_gap=1.9) == (ar.SEI, 0, 3.0)
    assert walk(labels, particles, o, d, 1, max_gap=2.0) == (ar.SEI, 0, 6.0)
    # max_length inside the gap: the run ends at the last SEI voxel; beyond it: cut there
    assert walk(labels, particles, o, d, 1, max_gap=2.0, max_length=4.5) == (ar.SEI, 0, 3.0)
    assert walk(labels, particles, o, d, 1, max_gap=2.0, max_length=5.5) == (ar.SEI, 0, 5.5)


def test_walker_integral_origin_negative_direction():
    labels, particles = grid((1, 1, 10))
    labels[0, 0, 2:5] = ar.SEI
    labels[0, 0, 5:7] = ar.SILICON
    particles[0, 0, 5:7] = 2
    # on the boundary x = 5 going -x: starts in voxel 4 (SEI), runs 4, 3, 2
    assert walk(labels, particles, (0.5, 0.5, 5.0), (0, 0, -1), 2) == (ar.SEI, 0, 3.0)
    # the same point going +x starts in voxel 5 (its own particle, skipped): pore at 7
    hit, pid, length = walk(labels, particles, (0.5, 0.5, 5.0), (0, 0, 1), 2)
    assert (hit, pid) == (ar.PORE, 0) and math.isnan(length)
    # going +x with another self id (0: skips nothing): voxel 5 decides
    assert walk(labels, particles, (0.5, 0.5, 5.0), (0, 0, 1), 0)[:2] == (ar.SILICON, 2)
    assert walk(labels, particles, (0.5, 0.5, 5.0), (0, 0, 1), 1)[:2] == (ar.SILICON, 2)
    # going -x from x = 2.0: starts in voxel 1 (pore)
    hit, pid, length = walk(labels, particles, (0.5, 0.5, 2.0), (0, 0, -1), 99)
    assert (hit, pid) == (ar.PORE, 0) and math.isnan(length)
    # self id 0 does not make the pore (particle id 0) "self"
    hit, pid, length = walk(labels, particles, (0.5, 0.5, 2.0), (0, 0, -1), 0)
    assert (hit, pid) == (ar.PORE, 0) and math.isnan(length)


def test_walker_diagonal_tie_goes_y_before_x():
    """A diagonal ray in (y, x) from a lattice point: every step is a tie, resolved y first,
    so the ray visits (k+1, k) for a zero length between (k, k) and (k+1, k+1)."""
    labels, particles = grid((1, 6, 6))
    for k in range(4):
        labels[0, k, k] = ar.SEI
    # (1, 0) is pore and is visited (zero length) right after (0, 0): the run ends at sqrt(2)
    hit, _, length = walk(labels, particles, (0.5, 0.0, 0.0), (0, S, S), 99)
    assert hit == ar.SEI and length == pytest.approx(SQ2, rel=1e-12)
    # with the y-side neighbors (k+1, k) also SEI the run covers four diagonal voxels
    for k in range(4):
        labels[0, k + 1, k] = ar.SEI
    hit, _, length = walk(labels, particles, (0.5, 0.0, 0.0), (0, S, S), 99)
    assert hit == ar.SEI and length == pytest.approx(4 * SQ2, rel=1e-12)
    # with the x-side neighbors (k, k+1) instead, the tie still goes to y: back to sqrt(2)
    labels[:] = 0
    for k in range(4):
        labels[0, k, k] = labels[0, k, k + 1] = ar.SEI
    hit, _, length = walk(labels, particles, (0.5, 0.0, 0.0), (0, S, S), 99)
    assert length == pytest.approx(SQ2, rel=1e-12)
    # a z-y tie goes to z: the same in the (z, y) plane
    labels, particles = grid((6, 6, 1))
    for k in range(4):
        labels[k, k, 0] = labels[k + 1, k, 0] = ar.SEI
    hit, _, length = walk(labels, particles, (0.0, 0.0, 0.5), (S, S, 0), 99)
    assert length == pytest.approx(4 * SQ2, rel=1e-12)


def test_walker_diagonal_segment_lengths():
    """Off-lattice diagonal through an all-SEI block: length = distance to the block's far side."""
    labels, particles = grid((1, 8, 8))
    labels[0, 2:6, 2:6] = ar.SEI
    d = np.array([0.0, 0.6, 0.8])
    o = np.array([0.5, 2.0, 1.3])  # enters the block at x=2 (t=0.875), leaves at x=6 (t=5.875)
    labels[0, 2, 1], particles[0, 2, 1] = ar.SILICON, 1  # the start voxel, skipped as self
    hit, _, length = walk(labels, particles, o, d, 1)
    assert hit == ar.SEI
    t_exit = min((6 - o[1]) / d[1], (6 - o[2]) / d[2])
    t_enter = max((2 - o[1]) / d[1], (2 - o[2]) / d[2], 0.0)
    assert length == pytest.approx(t_exit - t_enter, rel=1e-12)


def test_walker_first_foreign_phase():
    labels, particles = grid((1, 1, 8))
    labels[0, 0, :3] = ar.SILICON
    particles[0, 0, :3] = 1
    labels[0, 0, 3:5] = ar.SILICON
    particles[0, 0, 3:5] = 2
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1)[:2] == (ar.SILICON, 2)
    for phase in (ar.PORE, ar.GRAPHITE, ar.CBD):
        labels[0, 0, 3:5] = phase
        particles[0, 0, 3:5] = 0
        hit, pid, length = walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1)
        assert (hit, pid) == (phase, 0) and math.isnan(length)


def test_walker_max_length():
    labels, particles = grid((1, 1, 12))
    labels[0, 0, :6] = ar.SILICON
    particles[0, 0, :6] = 1
    labels[0, 0, 6] = ar.PORE
    # voxel 6 is entered at t = 5.5: beyond max_length 3 -> 255
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1, 3.0)[:2] == (ar.BORDER, 0)
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1, 6.0)[:2] == (ar.PORE, 0)
    # entered exactly at max_length: not reached
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1, 5.5)[:2] == (ar.BORDER, 0)
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1, 5.5 + 1e-12)[:2] == (ar.PORE, 0)
    # an SEI run is cut at max_length and stays SEI
    labels[0, 0, 6:11] = ar.SEI
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1, 8.0) == (ar.SEI, 0, 2.5)
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 1) == (ar.SEI, 0, 5.0)


def test_walker_border():
    labels, particles = grid((2, 2, 2))
    labels[:] = ar.SEI
    # an SEI run that reaches the grid outside ends there (not flagged by the walker)
    assert walk(labels, particles, (0.5, 0.5, 0.5), (0, 0, 1), 99) == (ar.SEI, 0, 1.5)
    # starting outside the grid: 255 at once
    hit, pid, length = walk(labels, particles, (0.5, 0.5, -0.5), (0, 0, 1), 99)
    assert (hit, pid) == (ar.BORDER, 0) and math.isnan(length)
    # leaving the grid through the self particle
    particles[:] = 3
    assert walk(labels, particles, (1.0, 1.0, 1.0), (S, 0, -S), 3)[0] == ar.BORDER


def test_walker_vectorized_matches_loop_on_random_rays():
    labels, particles = ap.random_label_grid((16, 16, 16), seed=3)
    origins, directions, self_ids = random_rays(labels, particles, 600, seed=3)
    for max_length, max_gap in ((math.inf, 0.0), (4.7, 0.0), (math.inf, 1.75), (4.7, 2.5)):
        a = ar.trace_rays(labels, particles, origins, directions, self_ids, max_length=max_length, max_gap=max_gap)
        b = ar.trace_rays_vectorized(labels, particles, origins, directions, self_ids, max_length=max_length,
                                     max_gap=max_gap)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert np.any(a[0] == ar.SEI) and np.any(a[0] == ar.BORDER)


# -- (b) reference surface elements ------------------------------------------------------------


def test_elements_single_voxel():
    particles = np.zeros((5, 5, 5), np.int32)
    particles[2, 2, 2] = 4
    pid, center, normal, area, axis = ar.surface_elements(particles)
    assert list(axis) == [-1, 1, -2, 2, -3, 3] and np.all(pid == 4)
    np.testing.assert_array_equal(center, [[2, 2.5, 2.5], [3, 2.5, 2.5], [2.5, 2, 2.5], [2.5, 3, 2.5],
                                           [2.5, 2.5, 2], [2.5, 2.5, 3]])
    expected = np.zeros((6, 3))
    for i, code in enumerate(axis):
        expected[i, abs(code) - 1] = np.sign(code)
    np.testing.assert_allclose(normal, expected, atol=1e-15)
    np.testing.assert_allclose(area, 1.0, atol=1e-15)


def test_elements_order_and_count():
    labels, particles = ap.random_label_grid((12, 12, 12), seed=5)
    pid, center, normal, area, axis = ar.surface_elements(particles)
    # one element per face between p > 0 and anything else (the grid outside included)
    padded = np.pad(particles, 1)
    n_faces = 0
    for a in range(3):
        lo, hi = np.take(padded, range(0, padded.shape[a] - 1), axis=a), np.take(padded, range(1, padded.shape[a]), axis=a)
        n_faces += np.sum((lo != hi) & (lo > 0)) + np.sum((lo != hi) & (hi > 0))
    assert len(pid) == n_faces
    # order: particles ascending, inside voxel in C order, then -z +z -y +y -x +x
    k = np.abs(axis) - 1
    inside = np.floor(center).astype(int)
    inside[np.arange(len(k)), k] -= (axis > 0)
    assert np.all(particles[tuple(inside.T)] == pid)
    rank = {code: i for i, code in enumerate(ar.AXIS_ORDER)}
    key = np.lexsort((np.array([rank[c] for c in axis]),
                      np.ravel_multi_index(inside.T, particles.shape), pid))
    np.testing.assert_array_equal(key, np.arange(len(pid)))
    # outward unit normals, area = |n . e_axis| in (0, 1]
    np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1.0, rtol=0, atol=1e-12)
    along = normal[np.arange(len(k)), k] * np.sign(axis)
    assert np.all(along > 0)
    np.testing.assert_array_equal(area, np.abs(normal[np.arange(len(k)), k]))


def plane_window(shape, tilt_deg, azimuth_deg, sigma, margin=14):
    t, p = math.radians(tilt_deg), math.radians(azimuth_deg)
    n = np.array([math.cos(t), math.sin(t) * math.cos(p), math.sin(t) * math.sin(p)])
    _, particles, n, _ = ap.half_space(shape, n)
    pid, center, normal, area, axis = ar.surface_elements(particles, sigma=sigma)
    lo, hi = margin, shape[1] - margin
    w = ((center[:, 1] >= lo) & (center[:, 1] < hi) & (center[:, 2] >= lo) & (center[:, 2] < hi)
         & (center[:, 0] > 6) & (center[:, 0] < shape[0] - 6))
    true_area = (hi - lo) ** 2 / abs(n[0])
    angle = np.degrees(np.arccos(np.clip(normal[w] @ n, -1, 1)))
    return area[w].sum() / true_area - 1, angle


@pytest.mark.parametrize("tilt, azimuth", [(0, 0), (54.7356103172, 45)])
def test_elements_plane_exact_orientations(tilt, azimuth):
    """Axis-aligned and (1,1,1) planes: the staircase is periodic and symmetric, normals exact."""
    err, angle = plane_window((64, 48, 48), tilt, azimuth, 1.0)
    assert abs(err) < 1e-9 and angle.max() < 1e-5


@pytest.mark.parametrize("tilt, azimuth", [(15, 60), (25, 40), (35, 10), (45, 45)])
def test_elements_plane_sigma2(tilt, azimuth):
    """At sigma = 2 voxels: plane area within 1 %, normals within 2 degrees, away from the borders."""
    err, angle = plane_window((96, 64, 64), tilt, azimuth, 2.0)
    assert abs(err) <= 0.01, err
    assert angle.max() <= 2.0, angle.max()


@pytest.mark.parametrize("tilt, azimuth", [(10, 20), (25, 40), (45, 45)])
def test_elements_plane_sigma1_staircase_bias(tilt, azimuth):
    """At sigma = 1 (the first draft of the contract) the smoothed staircase still tilts normals toward the
    face axis (mean 2-7 degrees, max up to 14 near 10 degree tilts) and overestimates the area
    by 1-3 %.  Characterization, so that a change of the estimator shows up here."""
    err, angle = plane_window((96, 64, 64), tilt, azimuth, 1.0)
    assert 0.0 < err <= 0.03, err
    assert angle.mean() <= 8.0, angle.mean()


@pytest.mark.parametrize("sigma, tol", [(1.0, 0.02), (2.0, 0.005)])
def test_elements_sphere_area_r12(sigma, tol):
    ph = ap.single_sphere(12.0)
    _, _, _, area, _ = ar.surface_elements(ph.particles, sigma=sigma)
    assert area.sum() == pytest.approx(4 * math.pi * 144, rel=tol)


def test_elements_sphere_area_plateau_at_sigma1():
    """sigma = 1: the area error does not shrink with the radius (staircase bias of the normals,
    +1.1-1.2 % at r = 12...36); sigma = 2 converges to < 0.2 %.  Characterization."""
    err = {}
    for sigma in (1.0, 2.0):
        for r in (12.0, 24.0):
            area = ar.surface_elements(ap.single_sphere(r).particles, sigma=sigma)[3].sum()
            err[sigma, r] = area / (4 * math.pi * r * r) - 1
    assert 0.008 <= err[1.0, 12.0] <= 0.015 and 0.008 <= err[1.0, 24.0] <= 0.015, err
    assert abs(err[2.0, 24.0]) <= 0.002, err


def test_elements_border_convention():
    """The grid's edge: 'core' (G = 0 outside the grid, edge faces use the inside gradient)
    vs 'convolve' (G of the zero-extended indicator outside the grid).  Only faces within a
    kernel radius + 2 of the border differ."""
    labels, particles = ap.random_label_grid((14, 14, 14), seed=2)
    a = ar.surface_elements(particles, edge="convolve")
    b = ar.surface_elements(particles, edge="core")
    for x, y in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[4], b[4])
    near = np.any((a[1] < 7) | (a[1] > 14 - 7), axis=1)
    np.testing.assert_array_equal(a[2][~near], b[2][~near])
    assert not np.array_equal(a[2][near], b[2][near])


# -- (b) analytic phantoms against their closed forms -------------------------------------------


@pytest.mark.parametrize("r", [6.0, 12.0, 24.0])
def test_phantom_sphere_volume(r):
    ph = ap.single_sphere(r)
    assert np.sum(ph.particles == 1) == pytest.approx(4 / 3 * math.pi * r**3, rel=0.01)
    assert ph.truth.loc[1, "area_vox2"] == pytest.approx(4 * math.pi * r * r, rel=1e-12)
    assert ph.truth.loc[1, "free"] == 1.0


@pytest.mark.parametrize("split", ["priority", "plane"])
def test_phantom_pair_volumes_and_contact(split):
    a, b = ap.Sphere((30.2, 30.1, 24.3), 12.0), ap.Sphere((30.2, 30.1, 43.3), 10.0)
    ph = ap.spheres_with_caps((62, 62, 68), [a, b], split=split)
    t = ph.truth
    for p in (1, 2):
        assert np.sum(ph.particles == p) == pytest.approx(t.loc[p, "volume_vox"], rel=0.015)
    assert t["volume_vox"].sum() == pytest.approx(np.sum(ph.particles > 0), rel=0.01)
    d, xa = 19.0, (19.0**2 + 144 - 100) / 38
    if split == "priority":
        s = 2 * math.pi * 12 * (12 - xa)
        assert t.loc[1, "contact"] * t.loc[1, "area_vox2"] == pytest.approx(s)
        assert t.loc[2, "contact"] * t.loc[2, "area_vox2"] == pytest.approx(s)
    else:
        disc = math.pi * (144 - xa * xa)
        for p in (1, 2):
            assert t.loc[p, "contact"] * t.loc[p, "area_vox2"] == pytest.approx(disc)
    np.testing.assert_allclose(t[["free", "cbd", "contact", "sei"]].sum(axis=1), 1.0, atol=1e-12)
    assert d == pytest.approx(np.linalg.norm(b.center - a.center))


def test_phantom_cap_volume():
    theta, h, r = 0.7, 3.0, 14.0
    ph = ap.single_sphere(r, caps=[ap.Cap((0.3, -0.5, 0.8), theta, h)])
    shell = 2 * math.pi / 3 * (1 - math.cos(theta)) * ((r + h) ** 3 - r**3)
    assert np.sum(ph.labels == ar.CBD) == pytest.approx(shell, rel=0.03)
    assert ph.truth.loc[1, "cbd"] == pytest.approx((1 - math.cos(theta)) / 2, rel=1e-12)


@pytest.mark.parametrize("theta, e", [(math.pi, (0.2, 0.4, 0.9)), (1.1, None), (1.3, (1.0, 0.0, 0.0))])
def test_phantom_sei_stats_closed_form(theta, e):
    axis = ap._unit((0.3, -0.5, 0.8))
    sei = ap.SEIShell(4.0, 1.5, axis if e is None else e, axis, theta)
    mean, std = ap.sei_shell_stats(sei)
    u = ap._sample_cone(np.random.default_rng(0), sei.axis, math.cos(theta), 400_000)
    t = sei.t0 + sei.t1 * (u @ sei.e)
    assert mean == pytest.approx(t.mean(), abs=3e-3)
    assert std == pytest.approx(t.std(), abs=3e-3)
    if theta == math.pi:
        assert (mean, std) == pytest.approx((4.0, 1.5 / math.sqrt(3)))
    # the rendered SEI volume is the integral of the shell over the cap
    ph = ap.single_sphere(13.0, sei=sei)
    vol = np.mean(((13.0 + t) ** 3 - 13.0**3) / 3) * 2 * math.pi * (1 - math.cos(theta))
    assert np.sum(ph.labels == ar.SEI) == pytest.approx(vol, rel=0.03)


def test_phantom_validation_rejects_overlaps():
    cap1, cap2 = ap.Cap((0, 0, 1), 0.5), ap.Cap((0, 0.3, 1), 0.5)
    with pytest.raises(ValueError, match="overlap"):
        ap.spheres_with_caps((40, 40, 40), [ap.Sphere((20, 20, 20), 10, [cap1, cap2])])
    # a cap pointing at the partner of a contact pair
    with pytest.raises(ValueError):
        ap.spheres_with_caps((40, 40, 60), [ap.Sphere((20, 20, 20), 10, [ap.Cap((0, 0, 1), 0.4)]),
                                             ap.Sphere((20, 20, 37), 10)])


def test_random_phantom_truth_is_consistent():
    ph = ap.random_spheres((160, 160, 160), 16, seed=4, radius=(10, 16))
    t = ph.truth
    f = t[["free", "cbd", "contact", "sei"]].to_numpy()
    assert np.all((f >= 0) & (f <= 1))
    np.testing.assert_allclose(f.sum(axis=1), 1.0, atol=1e-12)
    assert len(t) == 16 and not t["touches_border"].any()
    assert (t["contact"] > 0).sum() >= 2 and (t["cbd"] > 0).sum() >= 6 and (t["sei"] > 0).sum() >= 3
    # every particle's rendered volume matches its closed form
    counts = np.bincount(ph.particles.ravel(), minlength=17)[1:]
    np.testing.assert_allclose(counts, t["volume_vox"], rtol=0.03)
    again = ap.random_spheres((160, 160, 160), 16, seed=4, radius=(10, 16))
    np.testing.assert_array_equal(again.labels, ph.labels)


# -- (b) the specified algorithm (reference pipeline) against the acceptance bounds ------------


def reference_errors(ph, sigma=2.0):
    res = ar.coverage_from_elements(ph.labels, ph.particles, sigma=sigma)
    err = {k: [] for k in ar.CLASSES}
    for p, row in ph.inner().iterrows():
        for k in ar.CLASSES:
            err[k].append(res[p][k] - row[k])
    return {k: np.abs(v) for k, v in err.items()}, res


def test_reference_pipeline_meets_acceptance_at_paper_resolution():
    """Radii 14-22 voxels (the paper: SiOx d50 ~0.8 um at 21.4 nm, r ~ 19 voxels): the contract's
    algorithm reaches per-particle MAE <= 0.002 and max <= 0.01 per category."""
    for seed in (0, 1):
        ph = ap.random_spheres((192, 192, 192), 12, seed=seed, radius=(14, 22))
        err, _ = reference_errors(ph)
        for k, e in err.items():
            assert e.mean() <= 0.002 and e.max() <= 0.01, (seed, k, e.mean(), e.max())


def test_reference_pipeline_resolution_dependence():
    """At radii 9-14 voxels the face-neighbor classification errs by up to ~0.016 (the probe
    sits 0.5 voxel along the face axis, not the normal; the error is ~0.5 |n_perp| x rim length
    / area ~ 1/r).  Documented bound at that resolution: MAE <= 0.004, max <= 0.025."""
    ph = ap.random_spheres((144, 144, 144), 16, seed=0, radius=(9, 14))
    err, _ = reference_errors(ph)
    for k, e in err.items():
        assert e.mean() <= 0.004 and e.max() <= 0.025, (k, e.mean(), e.max())


def test_reference_pipeline_sei_thickness_whole_shells():
    """Whole-sphere SEI shells (no rims): mean bias <= 0.2 voxel, r >= 0.99, std within 0.5."""
    ph = ap.sei_shell_spheres()
    res = ar.coverage_from_elements(ph.labels, ph.particles)
    t = ph.inner()
    assert len(t) == 8
    meas = np.array([res[p]["sei_mean"] for p in t.index])
    std = np.array([res[p]["sei_std"] for p in t.index])
    assert abs(np.mean(meas - t["sei_mean_vox"])) <= 0.2
    assert np.max(np.abs(meas - t["sei_mean_vox"])) <= 0.2
    assert np.corrcoef(meas, t["sei_mean_vox"])[0, 1] >= 0.99
    assert np.max(np.abs(std - t["sei_std_vox"])) <= 0.5
    assert all(res[p]["sei"] == 1.0 for p in t.index)


# -- (c) the C++ core against the reference ------------------------------------------------------


def random_rays(labels, particles, n, seed=0):
    """Rays of every kind: face-center rays along smoothed normals, random origins (some outside
    the grid), lattice-point origins with axis-aligned and diagonal directions (ties)."""
    rng = np.random.default_rng(seed)
    shape = np.array(labels.shape, dtype=np.float64)
    pid, center, normal, _, _ = ar.surface_elements(particles)
    k = min(n // 2, len(pid))
    pick = rng.choice(len(pid), k, replace=False)
    o = [center[pick]]
    d = [normal[pick]]
    s = [pid[pick]]
    m = (n - k) // 2
    o.append(rng.uniform(-1.0, shape + 1.0, (m, 3)))
    dd = rng.normal(size=(m, 3))
    d.append(dd / np.linalg.norm(dd, axis=1)[:, None])
    s.append(rng.integers(0, particles.max() + 1, m))
    m = n - k - m
    o.append(rng.integers(0, labels.shape, (m, 3)).astype(np.float64) + rng.choice([0.0, 0.5], (m, 3)))
    dirs = np.array([[1, 0, 0], [0, -1, 0], [0, 0, 1], [S, S, 0], [0, -S, S], [S, 0, -S],
                     [1 / math.sqrt(3)] * 3, [-1 / math.sqrt(3), 1 / math.sqrt(3), -1 / math.sqrt(3)]])
    d.append(dirs[rng.integers(0, len(dirs), m)])
    s.append(rng.integers(0, particles.max() + 1, m))
    return (np.ascontiguousarray(np.concatenate(o)), np.ascontiguousarray(np.concatenate(d)),
            np.concatenate(s).astype(np.int32))


needs_core = pytest.mark.skipif(not (hasattr(core, "trace_rays") and hasattr(core, "surface_elements")),
                                reason="tomofuse._core has no trace_rays/surface_elements yet")


@pytest.fixture(scope="module")
def rays_case():
    labels, particles = ap.random_label_grid((24, 24, 24), seed=11)
    origins, directions, self_ids = random_rays(labels, particles, 2000, seed=11)
    return labels, particles, origins, directions, self_ids


def assert_same_trace(got, want):
    hit, pid, length = got
    assert hit.dtype == np.uint8 and pid.dtype == np.int32 and length.dtype == np.float64
    np.testing.assert_array_equal(hit, want[0])
    np.testing.assert_array_equal(pid, want[1])
    np.testing.assert_array_equal(np.isnan(length), np.isnan(want[2]))
    ok = ~np.isnan(want[2])
    np.testing.assert_allclose(length[ok], want[2][ok], rtol=0, atol=1e-12)


@needs_core
@pytest.mark.parametrize("max_length, max_gap", [(math.inf, 0.0), (5.3, 0.0), (math.inf, 1.75), (5.3, 3.0)])
def test_core_trace_rays_matches_reference(rays_case, max_length, max_gap):
    labels, particles, origins, directions, self_ids = rays_case
    want = ar.trace_rays(labels, particles, origins, directions, self_ids, max_length=max_length, max_gap=max_gap)
    assert np.count_nonzero(want[0] == ar.SEI) > 50  # the case exercises SEI runs
    got = core.trace_rays(labels, particles, origins, directions, self_ids, max_length=max_length,
                          max_gap=max_gap, threads=1)
    assert_same_trace(got, want)


@needs_core
def test_core_trace_rays_threads_bit_identical(rays_case):
    labels, particles, origins, directions, self_ids = rays_case
    runs = [core.trace_rays(labels, particles, origins, directions, self_ids, max_gap=1.75, threads=t)
            for t in (1, 2, 4)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.tobytes() == b.tobytes()


@needs_core
@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_core_surface_elements_matches_reference(sigma):
    _, particles = ap.random_label_grid((24, 24, 24), seed=12)
    want = ar.surface_elements(particles, sigma=sigma)
    got = core.surface_elements(particles, sigma=sigma, threads=1)
    dtypes = (np.int32, np.float64, np.float64, np.float64, np.int8)
    for g, dt in zip(got, dtypes):
        assert g.dtype == dt and g.flags.c_contiguous
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[4], want[4])
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got[3], want[3], rtol=0, atol=1e-9)


@needs_core
def test_core_surface_elements_interior_particles():
    """Particles away from the border: no dependence on the outside-the-grid convention."""
    _, particles = ap.random_label_grid((24, 24, 24), seed=13, border_particles=False)
    particles = np.pad(particles, 6)
    want = ar.surface_elements(particles)
    got = core.surface_elements(particles)
    for i in (0, 1, 4):
        np.testing.assert_array_equal(got[i], want[i])
    for i in (2, 3):
        np.testing.assert_allclose(got[i], want[i], rtol=0, atol=1e-9)


@needs_core
def test_core_surface_elements_threads_bit_identical():
    _, particles = ap.random_label_grid((24, 24, 24), seed=14)
    runs = [core.surface_elements(particles, threads=t) for t in (1, 2, 4)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.tobytes() == b.tobytes()


@needs_core
def test_core_sphere_pipeline_matches_reference():
    """The whole chain on an analytic sphere with caps and SEI: elements, then rays from them."""
    ph = ap.single_sphere(11.0, caps=[ap.Cap((0, 0, 1), 0.6, 3.0)],
                          sei=ap.SEIShell(3.0, 1.0, (0, 1, 0), (0, -1, 0), 0.8))
    pid, center, normal, area, axis = core.surface_elements(ph.particles)
    want = ar.trace_rays(ph.labels, ph.particles, center, normal, pid)
    assert_same_trace(core.trace_rays(ph.labels, ph.particles, center, normal, pid), want)


@needs_core
def test_core_bad_arguments():
    labels, particles = ap.random_label_grid((8, 8, 8), seed=1)
    o = np.full((3, 3), 4.5)
    d = np.tile([0.0, 0.0, 1.0], (3, 1))
    s = np.zeros(3, np.int32)
    with pytest.raises(ValueError):
        core.trace_rays(labels[:-1], particles, o, d, s)
    with pytest.raises(TypeError):
        core.trace_rays(labels.astype(np.float32), particles, o, d, s)
    with pytest.raises(ValueError):
        core.trace_rays(labels, particles, o[:, :2].copy(), d, s)
    with pytest.raises(ValueError):
        core.trace_rays(labels, particles, o, d, s[:2].copy())
    with pytest.raises(ValueError):
        core.surface_elements(particles, sigma=0.0)
    with pytest.raises(TypeError):
        core.surface_elements(particles.astype(np.float64))
