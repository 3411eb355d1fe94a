"""Batched 2-D FFT: tomofuse core vs numpy.fft and scipy.fft.

The workload is a ptychography-sized batch, 272 frames of 64 x 64 complex64,
transformed forward and back (one DM iteration's worth of propagations).

Run with::

    pytest bench/bench_fft.py --benchmark-only

Each benchmark is timed for one round after one warm-up round (plans made,
pages touched), so the whole file runs in seconds on two cores.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from tomofuse import _core  # noqa: E402

BATCH, NY, NX = 272, 64, 64
THREADS = 2


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    shape = (BATCH, NY, NX)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _run(benchmark, fn, *args):
    return benchmark.pedantic(fn, args=args, rounds=30, iterations=1, warmup_rounds=2)


@pytest.mark.benchmark(group="fft2 272x64x64 forward+inverse")
def test_tomofuse_fft2(benchmark, frames):
    out = np.empty_like(frames)

    def forward_inverse(a):
        _core.fft2(a, out=out, threads=THREADS)
        return _core.fft2(out, out=out, inverse=True, threads=THREADS)

    res = _run(benchmark, forward_inverse, frames)
    np.testing.assert_allclose(res, frames, atol=1e-4)


@pytest.mark.benchmark(group="fft2 272x64x64 forward+inverse")
def test_tomofuse_plan_in_place(benchmark, frames):
    plan = _core.FFTPlan2D(NY, NX)
    work = frames.copy()

    def forward_inverse(a):
        plan.forward(a, out=a, threads=THREADS)
        return plan.backward(a, out=a, threads=THREADS)

    _run(benchmark, forward_inverse, work)


@pytest.mark.benchmark(group="fft2 272x64x64 forward+inverse")
def test_numpy_fft2(benchmark, frames):
    def forward_inverse(a):
        return np.fft.ifft2(np.fft.fft2(a))

    res = _run(benchmark, forward_inverse, frames)
    np.testing.assert_allclose(res, frames, atol=1e-4)


@pytest.mark.benchmark(group="fft2 272x64x64 forward+inverse")
def test_scipy_fft2_workers2(benchmark, frames):
    scipy_fft = pytest.importorskip("scipy.fft")

    def forward_inverse(a):
        return scipy_fft.ifft2(scipy_fft.fft2(a, workers=THREADS), workers=THREADS)

    res = _run(benchmark, forward_inverse, frames)
    np.testing.assert_allclose(res, frames, atol=1e-4)
