"""Phantom generation time (pytest-benchmark; not a test).

Run::

    pytest bench/bench_phantom.py --benchmark-only

Goal (the foundation's acceptance): a 256^3 pristine electrode at 20 nm in <= 20 s on
2 cores.  Reports placement/render/truth stage times via logging at INFO.
"""

import pytest

from tomofuse.phantom import electrode


@pytest.mark.parametrize("cycled", [False, True], ids=["pristine", "cycled"])
def test_phantom_256(benchmark, cycled):
    e = benchmark.pedantic(
        electrode, args=((256, 256, 256), 20e-9), kwargs=dict(seed=0, cycled=cycled, threads=2),
        rounds=1, iterations=1,
    )
    benchmark.extra_info["n_particles"] = len(e.truth)
    benchmark.extra_info["fractions"] = {p.name: round(f, 4) for p, f in e.phase_fractions().items()}


def test_phantom_128(benchmark):
    benchmark.pedantic(electrode, args=((128, 128, 128), 21.4e-9), kwargs=dict(seed=0, threads=2),
                       rounds=3, iterations=1)
