"""Argument checks of the compiled core that once let bad input through or named the wrong thing:
outputs sharing memory with read-only inputs of the ptychography engines (intensities, mask, bound)
are refused before anything is written, and a float-only function told an int64 array the dtype it
wants, not just "float64"."""

from __future__ import annotations

import numpy as np
import pytest

from tomofuse import _core

N, M, H, W, K = 8, 1, 24, 24, 4


@pytest.fixture()
def scan():
    pos = np.array([[0.0, 0.0], [1.5, -2.0], [-3.0, 2.5], [2.0, 2.0]])
    return _core.PtychoScan(N, M, (H, W), pos)


def _arrays():
    rng = np.random.default_rng(0)
    obj = np.exp(0.3j * rng.random((H, W))).astype(np.complex64)
    probe = (rng.random((M, N, N)) + 0.5).astype(np.complex64)
    data = (rng.random((K, N, N)) * 10).astype(np.float32)
    return obj, probe, data


def test_ml_gradient_refuses_buffers_sharing_memory_with_intensities_or_mask(scan):
    obj, probe, data = _arrays()
    far = np.zeros((K, M, N, N), np.complex64)
    chi = np.zeros((K, M, N, N), np.complex64)
    # intensities living inside far (a float32 view of its first bytes)
    inside_far = far.reshape(-1).view(np.float32)[: K * N * N].reshape(K, N, N)
    inside_far[...] = data
    with pytest.raises(ValueError, match="far shares memory with intensities"):
        scan.ml_gradient(inside_far, None, obj, probe, far, chi)
    mask_in_chi = chi.reshape(-1).view(np.uint8)[: N * N].reshape(N, N)
    mask_in_chi[...] = 1
    with pytest.raises(ValueError, match="chi shares memory with mask"):
        scan.ml_gradient(data, mask_in_chi, obj, probe, far, chi)


def test_dm_iteration_refuses_outputs_sharing_memory_with_mask_or_bound(scan):
    obj, probe, data = _arrays()
    exit_ = np.ones((K, M, N, N), np.complex64)
    mask_in_exit = exit_.reshape(-1).view(np.uint8)[: N * N].reshape(N, N)
    before = exit_.copy()
    with pytest.raises(ValueError, match="exit shares memory with mask"):
        scan.dm_iteration(np.sqrt(data), mask_in_exit, obj, probe, exit_)
    np.testing.assert_array_equal(exit_, before)  # nothing written
    bound_in_object = obj.reshape(-1).view(np.float64)[:K]
    with pytest.raises(ValueError, match="object shares memory with bound"):
        scan.dm_iteration(np.sqrt(data), None, obj, probe, exit_, bound=bound_in_object)


def test_ml_iteration_refuses_state_sharing_memory_with_the_mask(scan):
    obj, probe, data = _arrays()

    class State:
        pass

    st = State()
    for name, shape, dtype in (("grad_object", (H, W), np.complex64), ("grad_probe", (M, N, N), np.complex64),
                               ("precond_object", (H, W), np.float32), ("precond_probe", (N, N), np.float32),
                               ("dir_object", (H, W), np.complex64), ("dir_probe", (M, N, N), np.complex64),
                               ("prev_grad_object", (H, W), np.complex64),
                               ("prev_grad_probe", (M, N, N), np.complex64)):
        setattr(st, name, np.zeros(shape, dtype))
    st.prev_zg = st.nll = st.alpha = 0.0
    far = np.zeros((K, M, N, N), np.complex64)
    chi = np.zeros((K, M, N, N), np.complex64)
    mask = st.dir_object.reshape(-1).view(np.uint8)[: N * N].reshape(N, N)
    with pytest.raises(ValueError, match="state.dir_object shares memory with mask"):
        scan.ml_iteration(data, mask, obj, probe, st, far, chi, start=True)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.complex64, np.bool_])
def test_float_only_functions_name_both_float_dtypes(dtype):
    vol = np.ones((2, 3, 3), dtype)
    angles = np.linspace(0, np.pi, 4)
    with pytest.raises(TypeError, match=r"volume must have dtype float32 or float64, got"):
        _core.project(vol, angles, n_cols=4)
    proj = np.ones((4, 2, 4), dtype)
    for fn in (_core.backproject, _core.backproject_linear):
        with pytest.raises(TypeError, match=r"projections must have dtype float32 or float64, got"):
            fn(proj, angles, ny=3, nx=3)
    with pytest.raises(TypeError, match=r"points must have dtype float32 or float64, got"):
        _core.points_in_spheres(np.zeros((2, 3), dtype), np.zeros((1, 3)), np.ones(1))
    with pytest.raises(TypeError, match=r"volume must be a numpy.ndarray of dtype float32 or float64"):
        _core.project([[[1.0]]], angles, n_cols=4)
