"""Memory guard: every stage estimates its peak memory from the input sizes before allocating and
refuses with a clear message (the estimate, the memory available, how to chunk or distribute) when
it would not fit; the bindings refuse huge outputs before allocating them.

TOMOFUSE_MEMORY_LIMIT (bytes) stands in for a small machine here.
"""

from __future__ import annotations

import re
import resource

import numpy as np
import pytest

from tomofuse import _core
from tomofuse._memory import InsufficientMemoryError, available_memory, check_memory

LIMIT = 1 << 20  # 1 MiB


def _expect_refusal(fn, stage, remedy_words):
    with pytest.raises(InsufficientMemoryError) as info:
        fn()
    msg = str(info.value)
    assert stage in msg
    assert re.search(r"needs about [0-9.e+]+ GiB .* but only [0-9.e+-]+ GiB are available", msg), msg
    for word in remedy_words:
        assert word in msg, msg
    return msg


def _ptycho_case():
    from tomofuse import acquire
    rng = np.random.default_rng(0)
    obj = np.exp(0.3j * rng.random((96, 96))).astype(np.complex64)
    yy, xx = np.mgrid[:32, :32] - 16
    probe = np.exp(-(yy ** 2 + xx ** 2) / 40.0).astype(np.complex64)
    pos = rng.uniform(-25, 25, (40, 2))
    return acquire.ptycho_scan(obj, probe, pos, photons=1e4, seed=1), pos, probe


def _fbp():
    from tomofuse import tomo
    proj = np.ones((90, 16, 128), np.float32)
    angles = np.linspace(0, np.pi, 90, endpoint=False)
    return lambda: tomo.fbp(proj, angles)


def _ptycho():
    from tomofuse import ptycho
    data, pos, probe = _ptycho_case()
    return lambda: ptycho.reconstruct(data, pos, probe, engines=(("dm", 1),))


def _register():
    from tomofuse.register import register
    f = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    m = np.random.default_rng(1).random((32, 32, 32)).astype(np.float32)
    return lambda: register(f, m, fixed_voxel_size=1e-6, moving_voxel_size=1e-6)


def _coverage():
    from tomofuse.analysis import surface_coverage
    labels, parts = np.full((40, 40, 40), 2, np.uint8), np.ones((40, 40, 40), np.int32)
    return lambda: surface_coverage(labels, parts, voxel_size=20e-9)


def _echem():
    from tomofuse import echem
    particle = echem.Particle.sphere(1e-6, 50e-9)
    return lambda: echem.simulate(particle, c_rate=1.0, soc_start=0.9, duration=10.0)


def _segment():
    from tomofuse.segment import segment
    rng = np.random.default_rng(2)
    phases = rng.integers(0, 5, (4, 4, 4)).repeat(8, 0).repeat(8, 1).repeat(8, 2)   # (32, 32, 32) blocks
    fused = np.stack([np.array([0.0, 2.2, 2.3, 1.2, 1.5])[phases], np.array([0.0, 0.2, 2.0, 0.3, 0.4])[phases]])
    fused = (fused + 0.05 * rng.standard_normal(fused.shape)).astype(np.float32)
    return lambda: segment(fused, voxel_size=21.4e-9, cycled=True)


# stage -> (setup returning the call, words of the remedy); the setup runs without the limit
CASES = {
    "tomofuse.tomo.fbp": (_fbp, ["fewer slices", "fbp_to_zarr"]),
    "tomofuse.ptycho.reconstruct": (_ptycho, ["fewer patterns", "reconstruct_series"]),
    "tomofuse.register.register": (_register, ["sub-volume", "downsampled"]),
    "tomofuse.analysis.surface_coverage": (_coverage, ["sub-volumes"]),
    "tomofuse.echem.simulate": (_echem, ["coarser grid"]),
    "tomofuse.segment.segment": (_segment, ["segment_blocks", "block="]),
}


@pytest.mark.parametrize("stage", sorted(CASES))
def test_stage_refuses_before_allocating_with_a_clear_message(stage, monkeypatch):
    setup, words = CASES[stage]
    call = setup()
    monkeypatch.setenv("TOMOFUSE_MEMORY_LIMIT", str(LIMIT))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _expect_refusal(call, stage, words)
    # refused before the big allocations: the peak resident size grew by far less than the estimate
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_available_memory_takes_the_smallest_budget(monkeypatch):
    monkeypatch.delenv("TOMOFUSE_MEMORY_LIMIT", raising=False)
    system = available_memory()
    assert system is None or system > 0
    monkeypatch.setenv("TOMOFUSE_MEMORY_LIMIT", "12345")
    assert available_memory() == 12345
    check_memory(12000, stage="s", detail="d", remedy="r")
    with pytest.raises(InsufficientMemoryError, match="s needs about"):
        check_memory(12346, stage="s", detail="d", remedy="r")
    monkeypatch.setenv("TOMOFUSE_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="TOMOFUSE_MEMORY_LIMIT"):
        available_memory()


@pytest.mark.parametrize("call", [
    lambda: _core.project(np.ones((2, 2, 2), np.float32), np.zeros(3), n_cols=2 ** 40),
    lambda: _core.backproject(np.ones((3, 2, 2), np.float32), np.zeros(3), ny=2 ** 24, nx=2 ** 24),
    lambda: _core.backproject_linear(np.ones((3, 2, 2), np.float64), np.zeros(3), ny=2 ** 20, nx=2 ** 20),
    lambda: _core.PtychoScan(2 ** 20, 1, (2 ** 20, 2 ** 20), np.zeros((1, 2))),
    lambda: _core.PtychoScan(16, 1, (2 ** 18, 2 ** 18), np.zeros((1, 2))),
], ids=["project", "backproject", "backproject_linear", "ptycho_frames", "ptycho_object"])
def test_bindings_refuse_huge_outputs_before_allocating(call):
    with pytest.raises(MemoryError, match=r"needs [0-9.e+]+ GiB but only [0-9.e+]+ GiB are available; use smaller "
                                          r"chunks .* or distribute the work"):
        call()
