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
