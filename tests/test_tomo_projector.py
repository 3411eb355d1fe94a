"""tomofuse.tomo.project / backproject: adjoint identity, exact line integrals, determinism."""

import math

import numpy as np
import pytest

from tomofuse.tomo import backproject, project


def chord_through_box(ny, nx, theta, u):
    """Length of the ray (detector coordinate u, angle theta) inside the slice [0,ny] x [0,nx].

    Independent of the core: dense midpoint quadrature along the ray."""
    cy, cx = ny / 2, nx / 2
    p = np.array([cy + u * math.sin(theta), cx + u * math.cos(theta)])
    d = np.array([math.cos(theta), -math.sin(theta)])
    half = math.hypot(ny, nx)
    n = 200000
    t = (np.arange(n) + 0.5) / n * 2 * half - half
    pts = p[None, :] + t[:, None] * d[None, :]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < ny) & (pts[:, 1] >= 0) & (pts[:, 1] < nx)
    return inside.sum() * (2 * half / n)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_adjoint_identity(dtype, rtol):
    rng = np.random.default_rng(0)
    angles = np.sort(rng.uniform(0, np.pi, 37))
    x = rng.standard_normal((3, 41, 50)).astype(dtype)
    y = rng.standard_normal((37, 3, 61)).astype(dtype)
    ax = project(x, angles, n_cols=61, center_offset=0.37)
    aty = backproject(y, angles, shape=(41, 50), center_offset=0.37)
    assert ax.dtype == dtype and aty.dtype == dtype
    lhs = np.vdot(ax.astype(np.float64), y.astype(np.float64))
    rhs = np.vdot(x.astype(np.float64), aty.astype(np.float64))
    assert abs(lhs - rhs) <= rtol * abs(lhs)


def test_constant_volume_gives_chord_lengths():
    ny, nx = 30, 44
    angles = np.array([0.0, 0.3, math.pi / 4, 1.2, math.pi / 2, 2.5])
    p = project(np.ones((1, ny, nx)), angles, n_cols=60, center_offset=-0.8)
    for a, th in enumerate(angles):
        for c in range(0, 60, 7):
            u = c + 0.5 - 30 + 0.8  # the axis projects to n_cols/2 + center_offset
            assert p[a, 0, c] == pytest.approx(chord_through_box(ny, nx, th, u), abs=2e-3)


def test_single_voxel_line_integrals_are_exact_lengths():
    # value 1 in one voxel: each projection value is the ray's length inside that unit square
    vol = np.zeros((1, 9, 9))
    vol[0, 4, 6] = 1.0
    rng = np.random.default_rng(3)
    angles = rng.uniform(0, np.pi, 11)
    p = project(vol, angles, n_cols=15)
    for a, th in enumerate(angles):
        for c in range(15):
            u = c + 0.5 - 7.5
            # length inside [4,5) x [6,7): quadrature on the unit square, via a shifted box
            cy, cx = 4.5, 4.5
            py_, px_ = cy + u * math.sin(th) - 4.0, cx + u * math.cos(th) - 6.0
            d = np.array([math.cos(th), -math.sin(th)])
            t = (np.arange(100000) + 0.5) / 100000 * 30 - 15
            pts = np.array([py_, px_])[None] + t[:, None] * d[None]
            inside = np.all((pts >= 0) & (pts < 1), axis=1)
            assert p[a, 0, c] == pytest.approx(inside.sum() * 30 / 100000, abs=1e-3)


def test_rotation_by_pi_flips_the_detector():
    rng = np.random.default_rng(5)
    vol = rng.random((2, 32, 32))
    p = project(vol, [0.4, 0.4 + math.pi])
    np.testing.assert_allclose(p[1], p[0][:, ::-1], rtol=1e-10, atol=1e-10)


def test_identical_for_any_thread_count():
    rng = np.random.default_rng(1)
    vol = rng.standard_normal((8, 40, 40))
    angles = np.linspace(0, np.pi, 25, endpoint=False)
    sino = project(vol, angles, threads=1)
    for t in (2, 4):
        np.testing.assert_array_equal(project(vol, angles, threads=t), sino)
        np.testing.assert_array_equal(backproject(sino, angles, threads=t), backproject(sino, angles, threads=1))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: project(np.zeros((4, 4)), [0.0]), ValueError, "volume must have 3 dimensions"),
        (lambda: project(np.zeros((0, 4, 4)), [0.0]), ValueError, "volume must not be empty"),
        (lambda: project(np.full((2, 4, 4), np.nan), [0.0]), ValueError, "finite"),
        (lambda: project(np.zeros((2, 4, 4)), []), ValueError, "angles must not be empty"),
        (lambda: project(np.zeros((2, 4, 4)), [np.inf]), ValueError, "angles must be finite"),
        (lambda: project(np.zeros((2, 4, 4)), [0.0], n_cols=0), ValueError, "n_cols"),
        (lambda: project(np.zeros((2, 4, 4), dtype=complex), [0.0]), TypeError, "real numbers"),
        (lambda: project([[[0.0]]], [0.0]), TypeError, "numpy.ndarray"),
        (lambda: backproject(np.zeros((3, 2, 8)), [0.0, 1.0]), ValueError, "expected 3 angles"),
        (lambda: backproject(np.zeros((1, 2, 8)), [0.0], shape=(8,)), ValueError, "shape"),
        (lambda: project(np.zeros((2, 4, 4)), [0.0], center_offset=float("nan")), ValueError, "center_offset"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
