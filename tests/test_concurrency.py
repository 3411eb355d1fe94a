"""Thread safety: every stage may be called from several Python threads at once (Dask threaded
workers). Each test runs the same calls serially and from a pool of threads, with the GIL released
inside the core, and asserts identical results (bit for bit)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tomofuse import _core

WORKERS = 4


def _run_concurrently(fn, args_list):
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda a: fn(*a), args_list))


def _assert_same(serial, parallel):
    assert len(serial) == len(parallel)
    for s, p in zip(serial, parallel):
        for a, b in zip(s if isinstance(s, tuple) else (s,), p if isinstance(p, tuple) else (p,)):
            if isinstance(a, dict):
                assert a == b
            else:
                np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------- echem (FEM)

@pytest.mark.parametrize("preconditioner", ["multigrid", "cholesky", "jacobi"])
def test_one_sparse_operator_solves_from_several_threads(preconditioner):
    """The operator's preconditioner is built on first use; threads race to build it and then solve
    with it at the same time, each with its own thread count."""
    rng = np.random.default_rng(0)
    mask = (rng.random((15, 16, 17)) < 0.85).astype(np.uint8)
    mesh = _core.VoxelMesh(mask, voxel_size=1e-6)
    b = rng.standard_normal(mesh.num_nodes)

    def solve(op, threads):
        x, info = op.solve(b, rtol=1e-9, preconditioner=preconditioner, threads=threads)
        return x, info

    serial = [solve(mesh.operator(1e12, 1.0), 1 + i % 2) for i in range(2 * WORKERS)]
    for _ in range(3):
        shared = mesh.operator(1e12, 1.0)  # nothing built yet
        parallel = _run_concurrently(solve, [(shared, 1 + i % 2) for i in range(2 * WORKERS)])
        _assert_same(serial, parallel)


# ------------------------------------------------------------------------------------------ register

def test_register_leaves_simpleitks_process_wide_thread_count_alone():
    """Registration pins its metric to one thread on each registration method; SimpleITK's global
    default, which other threads of the process use at the same time, never changes."""
    import threading

    import SimpleITK as sitk

    from tomofuse.register import register

    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[:24, :24, :24]
    fixed = np.exp(-((z - 12.0) ** 2 + (y - 11.0) ** 2 + (x - 13.0) ** 2) / 30.0) + 0.05 * rng.random((24, 24, 24))
    moving = np.roll(fixed, 1, axis=2).astype(np.float32)
    original = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    seen, done = set(), threading.Event()
    try:
        worker = threading.Thread(target=lambda: (register(fixed.astype(np.float32), moving, fixed_spacing=1e-6,
                                                            moving_spacing=1e-6, stages=("rigid",), seed=0,
                                                            threads=2), done.set()))
        worker.start()
        while not done.is_set() and worker.is_alive():
            seen.add(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
        worker.join()
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(original)
    assert done.is_set()
    assert seen == {3}, f"SimpleITK's global default thread count changed while registering: {sorted(seen)}"
