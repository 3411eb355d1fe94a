"""The core's pixel-driven back-projector (the FBP kernel) against a slow, obvious NumPy version.

The kernel works on blocks of 32, 16 and 4 detector rows (one interpolation weight serves a
block, vectorized, compiled for several instruction sets) and on lone rows (vectorized along x,
with hand-written AVX-512 and AVX2 paths that replace gathers by permutations); the reference is
one voxel column and one angle at a time with explicit zero taps beyond the detector.
"""

import json
import os
import subprocess
import sys

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


ROW_CASES = [  # (n_angles, cols, ny, nx, offset): slices wider and narrower than the detector,
    (45, 29, 27, 34, 0.0),      # widths that are and are not multiples of the 8 / 16 lanes
    (64, 130, 33, 128, 2.7),
    (37, 61, 12, 15, -5.1),
    (50, 9, 40, 97, 0.4),
    (71, 200, 19, 203, -31.25),
]


def _row_kernel_check():
    """Run in a subprocess: every case, one row at a time, against the reference and the blocked path."""
    out = {"kernel": _core.backproject_linear_row_kernel(), "worst": 0.0, "identical": True}
    for k, (n_angles, cols, ny, nx, offset) in enumerate(ROW_CASES):
        rng = np.random.default_rng(100 + k)
        angles = rng.uniform(-np.pi, 2 * np.pi, n_angles)
        angles[:6] = [0.0, np.pi / 2, np.pi, -np.pi / 2, np.pi / 4, 3 * np.pi / 4]  # |cos| 1, 0 and equal steps
        proj = rng.normal(size=(n_angles, 5, cols)).astype(np.float32)
        blocked = _core.backproject_linear(proj, angles, ny=ny, nx=nx, center_offset=offset, threads=2)  # B = 4
        want = reference(proj, angles, ny, nx, offset)
        for z in range(5):
            one = _core.backproject_linear(np.ascontiguousarray(proj[:, z:z + 1]), angles, ny=ny, nx=nx,
                                           center_offset=offset, threads=2)[0]
            out["identical"] &= bool(np.array_equal(one, blocked[z]))
            out["worst"] = max(out["worst"], float(np.abs(one - want[z]).max() / np.abs(want[z]).max()))
    return out


@pytest.mark.parametrize("disable", ["", "avx512f", "avx512f,avx2"])
def test_lone_rows_on_every_kernel(disable):
    """Each single-row kernel (chosen with TOMOFUSE_DISABLE_INTRINSICS, in a fresh process) matches the
    reference and gives the blocked kernels' bits, at lane-count edges and detector ends."""
    env = dict(os.environ, TOMOFUSE_DISABLE_INTRINSICS=disable)
    code = ("import json, sys; sys.path.insert(0, %r); import test_tomo_backproject as t; "
            "print(json.dumps(t._row_kernel_check()))" % os.path.dirname(__file__))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    expected = {"": None, "avx512f": {"avx2", "portable"}, "avx512f,avx2": {"portable"}}[disable]
    assert expected is None or got["kernel"] in expected, got
    assert got["identical"], got
    assert got["worst"] < 2e-5, got
