"""Surface coverage + SEI thickness time on the 256^3 analytic phantom (pytest-benchmark; not a test).

Run::

    pytest bench/bench_coverage.py --benchmark-only

Goal (issue 6): coverage + thickness <= 1 s on 2 cores, >= 2x faster than marching cubes +
NumPy rays (``mc_rays`` here).  ``python bench/compare_coverage.py`` prints the errors too.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_coverage as cc  # noqa: E402


@pytest.fixture(scope="module")
def volume():
    ph = cc.build(256, 90, seed=0)
    return ph.labels, ph.particles


def _analysis():
    return pytest.importorskip("tomofuse.analysis")


def test_tomofuse_coverage(benchmark, volume):
    analysis = _analysis()
    labels, particles = volume
    cov = benchmark.pedantic(analysis.surface_coverage, args=(labels, particles),
                             kwargs=dict(voxel_size=cc.VOXEL, threads=2), rounds=3, iterations=1)
    benchmark.extra_info["n_particles"] = len(cov)


def test_tomofuse_thickness(benchmark, volume):
    analysis = _analysis()
    labels, particles = volume
    benchmark.pedantic(analysis.sei_thickness, args=(labels, particles),
                       kwargs=dict(voxel_size=cc.VOXEL, threads=2), rounds=3, iterations=1)


def test_tomofuse_coverage_and_thickness(benchmark, volume):
    _analysis()
    labels, particles = volume
    benchmark.pedantic(cc.method_tomofuse, args=(labels, particles), rounds=3, iterations=1)


def test_baseline_faces(benchmark, volume):
    benchmark.pedantic(cc.method_faces, args=volume, rounds=3, iterations=1)


def test_baseline_mc_rays(benchmark, volume):
    benchmark.pedantic(cc.method_mc_rays, args=volume, rounds=3, iterations=1)
