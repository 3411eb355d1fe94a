"""The core's pixel-driven back-projector (the FBP kernel) against a slow, obvious NumPy version.

The kernel works on blocks of 32, 16, 4 and 1 detector rows (one interpolation weight serves a
block, vectorized, compiled for several instruction sets); the reference is one voxel column
and one angle at a time with explicit zero taps beyond the detector.
"""

import numpy as np
import pytest

from tomofuse import _core


def reference(proj, angles, ny, nx, offset):
    """Contract of tomofuse::tomo::backproject_linear, written out: voxel center (y, x) hits
    column u - 0.5 + cols/2 + offset, u = (x - nx/2) cos + (y - ny/2) sin; linear taps, zero
    outside the detector, summed over the angles."""
    n_angles, nz, cols = proj.shape
    yy, xx = np.meshgrid(np.arange(ny) + 0.5 - ny / 2, np.arange(nx) + 0.5 - nx / 2, indexing="ij")
    out = np.zeros((nz, ny, nx))
    for a, th in enumerate(angles):
        pos = xx * np.cos(th) + yy * np.sin(th) + cols / 2 - 0.5 + offset
        i = np.floor(pos).astype(np.int64)
        w = pos - i
        for z in range(nz):
            row = proj[a, z].astype(np.float64)

            def tap(k):
                ok = (k >= 0) & (k < cols)
                return np.where(ok, row[np.clip(k, 0, cols - 1)], 0.0)

            out[z] += (1 - w) * tap(i) + w * tap(i + 1)
    return out


@pytest.mark.parametrize("nz", [1, 3, 4, 7, 16, 21, 37])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_matches_reference(nz, dtype, tol):
    rng = np.random.default_rng(nz)
    n_angles, cols, ny, nx = 23, 29, 27, 34
    angles = rng.uniform(-np.pi, 2 * np.pi, n_angles)
    angles[:4] = [0.0, np.pi / 2, np.pi, -np.pi / 2]  # axis-aligned rays: cos or sin exactly 0 (or nearly)
    proj = rng.normal(size=(n_angles, nz, cols))
    for offset in (0.0, 2.7, -5.1):
        got = _core.backproject_linear(proj.astype(dtype), angles, ny=ny, nx=nx, center_offset=offset, threads=2)
        want = reference(proj.astype(dtype), angles, ny, nx, offset)
        assert got.dtype == dtype and got.shape == (nz, ny, nx)
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


def test_detector_smaller_and_larger_than_the_slice():
    """Voxels that project beyond the detector see zeros; a detector wider than the slice is clipped."""
    rng = np.random.default_rng(5)
    angles = np.linspace(0, np.pi, 17, endpoint=False)
    for cols, n in ((9, 40), (61, 12)):
        proj = rng.normal(size=(17, 18, cols))
        got = _core.backproject_linear(proj, angles, ny=n, nx=n + 3, center_offset=0.4, threads=2)
        np.testing.assert_allclose(got, reference(proj, angles, n, n + 3, 0.4), rtol=0, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_for_any_thread_count(dtype):
    rng = np.random.default_rng(1)
    proj = rng.normal(size=(64, 21, 48)).astype(dtype)
    angles = np.linspace(0, np.pi, 64, endpoint=False)
    runs = [_core.backproject_linear(proj, angles, ny=50, nx=45, center_offset=1.5, threads=t) for t in (1, 2, 4)]
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])


def test_slices_are_independent_of_their_block():
    """A slice's values do not depend on the block (32, 16, 4 or 1 rows) it was computed in: same bits."""
    rng = np.random.default_rng(2)
    proj = rng.normal(size=(31, 57, 40)).astype(np.float32)  # blocks of 32, 16, 4, 4, 1
    angles = rng.uniform(0, np.pi, 31)
    full = _core.backproject_linear(proj, angles, ny=40, nx=40, center_offset=0.0, threads=2)
    for z in (0, 31, 32, 47, 48, 55, 56):
        one = _core.backproject_linear(np.ascontiguousarray(proj[:, z:z + 1]), angles, ny=40, nx=40,
                                       center_offset=0.0, threads=2)
        assert np.array_equal(one[0], full[z])
