"""tomofuse._core.points_in_spheres against a brute-force NumPy oracle."""

import numpy as np
import pytest

from tomofuse._core import points_in_spheres


def brute_force(points, centers, radii):
    """Slow, obvious reference: every point against every sphere."""
    out = np.zeros(len(points), dtype=bool)
    for c, r in zip(centers.astype(np.float64), radii.astype(np.float64)):
        d = points.astype(np.float64) - c
        out |= np.einsum("ij,ij->i", d, d) <= r * r
    return out


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    points = rng.uniform(-0.1, 1.1, (40000, 3))
    centers = rng.uniform(0, 1, (500, 3))
    radii = rng.lognormal(np.log(0.05), 0.5, 500)  # mixed sizes: cells follow the largest
    return points, centers, radii


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_brute_force(scene, dtype):
    points, centers, radii = (a.astype(dtype) for a in scene)
    got = points_in_spheres(points, centers, radii)
    assert got.dtype == bool and got.shape == (len(points),)
    ref = brute_force(points, centers, radii)
    assert 0.05 < ref.mean() < 0.95  # a meaningful mix of inside and outside
    np.testing.assert_array_equal(got, ref)


def test_points_on_the_sphere_count_as_inside():
    centers = np.array([[0.0, 0.0, 0.0]])
    radii = np.array([1.0])
    points = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0000001], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(points_in_spheres(points, centers, radii), [True, True, False, True])


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_identical_for_any_thread_count(scene, threads):
    points, centers, radii = scene
    np.testing.assert_array_equal(points_in_spheres(points, centers, radii, threads=threads),
                                  points_in_spheres(points, centers, radii, threads=1))


def test_empty_inputs():
    p = np.zeros((0, 3))
    assert points_in_spheres(p, np.zeros((2, 3)), np.ones(2)).shape == (0,)
    assert not points_in_spheres(np.ones((3, 3)), np.zeros((0, 3)), np.zeros(0)).any()


def test_zero_radius_sphere_contains_only_its_center():
    c = np.array([[0.5, 0.5, 0.5]])
    got = points_in_spheres(np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5 + 1e-12]]), c, np.zeros(1))
    np.testing.assert_array_equal(got, [True, False])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(points=np.zeros((4, 2))), ValueError, "points must have shape"),
        (dict(points=np.zeros(12)), ValueError, "points must have 2 dimensions"),
        (dict(points=np.zeros((4, 3), dtype=np.int64)), TypeError, "points must have dtype"),
        (dict(points=np.zeros((3, 4))[:, :3]), ValueError, "points must be C-contiguous"),
        (dict(centers=np.zeros((2, 3), dtype=np.float32)), TypeError, "centers must have dtype"),
        (dict(radii=np.ones(3)), ValueError, "radii must have shape"),
        (dict(radii=np.array([1.0, -1.0])), ValueError, "radii must be finite and >= 0"),
        (dict(radii=np.array([1.0, np.nan])), ValueError, "radii must be finite"),
        (dict(centers=np.array([[0.0, 0, 0], [np.inf, 0, 0]])), ValueError, "centers must be finite"),
        (dict(points=[[0.0, 0.0, 0.0]]), TypeError, "points must be a numpy.ndarray"),
        (dict(threads=-1), ValueError, "threads"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, exc, match):
    args = dict(points=np.zeros((4, 3)), centers=np.zeros((2, 3)), radii=np.ones(2), threads=0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        points_in_spheres(args["points"], args["centers"], args["radii"], threads=args["threads"])
