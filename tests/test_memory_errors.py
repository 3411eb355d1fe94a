"""An allocation that fails inside the core's parallel regions raises MemoryError instead of killing
the process (an exception escaping an OpenMP region calls std::terminate).

Each case runs in a subprocess whose address space is capped (RLIMIT_AS) just above what the
inputs and outputs need once FFT plans and thread pools exist, so that the per-thread work buffers
inside the parallel region cannot be allocated. glibc is told to serve every block above 64 KiB by
mmap (MALLOC_MMAP_THRESHOLD_), so that freed buffers of the warm-up call are returned to the system
and the cap applies to the call under test, and to keep one arena (MALLOC_ARENA_MAX=1: a thread's
own arena would fall back to the address space it reserved in advance when mmap fails). A crash
shows as a negative return code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")

PRELUDE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from tomofuse import _core

    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    def capped(margin, fn):
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + margin, hard))
        try:
            fn()
        except MemoryError as e:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            print("MemoryError:", e)
            sys.exit(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        print("no error")
        sys.exit(3)
""")

# An ML case with 1024 x 1024 patterns: per-thread frames of 8 MiB inside the parallel regions.
ML_SETUP = """
        n, k = 1024, 2
        pos = np.array([[0.0, 0.0], [0.5, 0.25]])
        scan = _core.PtychoScan(n, 1, (n + 8, n + 8), pos)
        data = np.ones((k, n, n), np.float32)
        obj = np.ones((n + 8, n + 8), np.complex64)
        probe = np.ones((1, n, n), np.complex64)
        far = np.zeros((k, 1, n, n), np.complex64)
        chi = np.zeros((k, 1, n, n), np.complex64)
"""

CASES = {
    # Difference map without overlap update: the first allocations are the per-thread frames
    # (8 MiB each at n = 1024) inside the parallel region.
    "ptycho_dm_iteration": """
        n, k = 1024, 2
        pos = np.array([[0.0, 0.0], [0.5, 0.25]])
        scan = _core.PtychoScan(n, 1, (n + 8, n + 8), pos)
        amp = np.ones((k, n, n), np.float32)
        obj = np.ones((n + 8, n + 8), np.complex64)
        probe = np.ones((1, n, n), np.complex64)
        exit_ = np.ones((k, 1, n, n), np.complex64)
        run = lambda: scan.dm_iteration(amp, None, obj, probe, exit_, update_object=False, update_probe=False,
                                        threads=2)
        run()  # warm up: FFT plans, OpenMP threads
        capped(6 << 20, run)
    """,
    "ptycho_ml_gradient": ML_SETUP + """
        run = lambda: scan.ml_gradient(data, None, obj, probe, far, chi, threads=2)
        run()
        capped(30 << 20, run)  # the gradients and preconditioners (25 MiB), not the per-thread frames
    """,
    "ptycho_ml_line_coefficients": ML_SETUP + """
        hdir = np.ones_like(obj)
        run = lambda: scan.ml_line_coefficients(data, None, obj, probe, hdir, probe, far, threads=2)
        run()
        capped(6 << 20, run)
    """,
    # Linear back-projection of long rows: one accumulator tile per thread (8 MiB) inside the region.
    "tomo_backproject_linear": """
        nx = 65536
        proj = np.ones((2, 32, 64), np.float32)
        angles = np.array([0.0, 1.0])
        run = lambda: _core.backproject_linear(proj, angles, ny=1, nx=nx, threads=2)
        run()
        capped(12 << 20, run)
    """,
    "fft_filter_real_2d": """
        frames = np.ones((4, 1024, 1024), np.float32)
        response = np.ones((1024, 1024 // 2 + 1), np.float32)
        run = lambda: _core.filter_real_2d(frames, response, pad_ny=1024, pad_nx=1024, threads=2)
        run()
        capped(25 << 20, run)  # output 16 MiB + the plans' 8.4 MiB (freed), not 2 x 8.2 MiB
    """,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_out_of_memory_inside_a_parallel_region_raises_memory_error(case):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(CASES[case])], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, (
        f"{case}: return code {proc.returncode} (negative = killed by a signal, e.g. -6 = abort)\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr[-2000:]}")
    assert "MemoryError: tomofuse core: out of memory" in proc.stdout, proc.stdout
