"""Which FFT the core should ship: the candidate libraries side by side with scipy.fft (issue 18).

Every candidate is used through the FFTW3 API by the same timing program,
``bench/fft_candidates.cpp``, compiled and statically linked once per candidate, so that the
library alone differs. The workloads are the core's: 2-D complex-to-complex transforms forward
and back, in place, one frame after the other (as the ptychography engines call them per pattern)
over batches of 1088 x 64², 419 x 128² (the real Velociprobe scan) and 64 x 400² (the paper's
patterns); and a real-to-complex pair of 1080² (a padded Paganin frame of the paper's TXTM
detector). One thread, median of --repeat runs, plans made with FFTW_ESTIMATE (what the core
uses: the same algorithm in every run) and FFTW_MEASURE (timed candidates: faster on FFTW, but
the choice, and with it the last bits, may change from run to run).

Candidates, each where it can be found:

- ``mkl``: Intel oneMKL's FFTW3 interface from the PyPI distributions mkl-static and mkl-include
  (installed into this environment, or --mkl-lib / --mkl-include);
- ``pylib-fftw3f``: FFTW 3.3.10 from PyPI's pylib-fftw3f (scalar codelets only);
- ``finufft-fftw``: the FFTW archive that finufft's wheel installs into site-packages/lib64
  (SIMD codelets; a by-product of finufft's packaging, not a distribution of its own);
- ``system-fftw``: a system FFTW (Debian's libfftw3-dev), SIMD codelets;
- ``scipy.fft`` (pocketfft, vectorized), in this process, per frame and batched;
- the installed core (``tomofuse._core.FFTPlan2D``, the path of the engines) with the backend it
  was built with.

Also printed: the size of each statically linked timing program (what the library adds to a
wheel, roughly) and the license consequence for the wheel.

Run from the repository root (a C++ compiler is needed)::

    python bench/compare_fft.py [--repeat 9] [--out bench/compare_fft_results.txt]
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata as md
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "fft_candidates.cpp"
CASES = [(64, 1088), (128, 419), (400, 64)]
REAL = (1080, 8)

LICENSES = {
    "mkl": "Intel Simplified Software License: redistributable binary, proprietary, not GPL-compatible",
    "pylib-fftw3f": "GPL-2.0-or-later: the wheel becomes GPL",
    "finufft-fftw": "GPL-2.0-or-later: the wheel becomes GPL",
    "system-fftw": "GPL-2.0-or-later: the wheel becomes GPL",
    "scipy.fft": "BSD-3-Clause (pocketfft); Python only, no C API",
}


def _dist_file(dist: str, name: str, parent: str | None = None) -> Path | None:
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        return None
    for f in d.files or []:
        if f.name == name and (parent is None or f.parent.name == parent):
            return Path(os.path.realpath(d.locate_file(f)))
    return None


def candidates(args) -> dict[str, dict]:
    """name -> {"include": dir, "link": [args], "version": str} for every candidate found."""
    found: dict[str, dict] = {}
    mkl_lib = Path(args.mkl_lib) if args.mkl_lib else (_dist_file("mkl-static", "libmkl_core.a") or Path()).parent
    mkl_inc = Path(args.mkl_include) if args.mkl_include else (
        _dist_file("mkl-include", "fftw3.h", "fftw") or Path()).parent
    if (mkl_lib / "libmkl_core.a").exists() and (mkl_inc / "fftw3.h").exists():
        libs = [str(mkl_lib / f"libmkl_{n}.a") for n in ("intel_lp64", "sequential", "core")]
        try:
            version = "mkl-static " + md.version("mkl-static")
        except md.PackageNotFoundError:
            version = str(mkl_lib)
        found["mkl"] = {"include": str(mkl_inc), "version": version,
                        "link": ["-Wl,--start-group", *libs, "-Wl,--end-group", "-lpthread", "-lm", "-ldl"]}
    try:
        import pylib_fftw3f

        root = Path(pylib_fftw3f.__file__).parent
        lib = next(iter(sorted(root.glob("lib*/libfftw3f.a"))), None)
        if lib is not None:
            found["pylib-fftw3f"] = {"include": str(root / "include"), "link": [str(lib), "-lm"],
                                     "version": "pylib-fftw3f " + md.version("pylib-fftw3f")}
    except ImportError:
        pass
    lib = _dist_file("finufft", "libfftw3f.a")
    header = _dist_file("finufft", "fftw3.h")
    if lib is not None and header is not None:
        found["finufft-fftw"] = {"include": str(header.parent), "link": [str(lib), "-lm"],
                                 "version": "finufft " + md.version("finufft")}
    for lib in sorted(glob.glob("/usr/lib/*/libfftw3f.a")) + sorted(glob.glob("/usr/lib64/libfftw3f.a")):
        if Path("/usr/include/fftw3.h").exists():
            found["system-fftw"] = {"include": "/usr/include", "link": [lib, "-lm"], "version": lib}
            break
    return found


def build(name: str, spec: dict, workdir: Path) -> Path:
    exe = workdir / f"fft_{name}"
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise SystemExit("a C++ compiler is needed (g++ or $CXX)")
    cmd = [cxx, "-O2", "-std=c++17", str(SOURCE), "-I", spec["include"], "-o", str(exe), *spec["link"]]
    subprocess.run(cmd, check=True)
    return exe


def run_program(exe: Path, repeat: int) -> dict[tuple[str, str], dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([str(exe), str(repeat)], check=True, capture_output=True, text=True, env=env).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    res = {(r["case"], r["rigor"]): r for r in rows if "case" in r}
    res["version"] = next(r["version"] for r in rows if "version" in r)
    return res


def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_scipy(repeat: int) -> dict[tuple[str, str], dict]:
    import scipy.fft as sf

    res = {}
    rng = np.random.default_rng(0)
    for n, batch in CASES:
        a = (rng.standard_normal((batch, n, n)) + 1j * rng.standard_normal((batch, n, n))).astype(np.complex64)

        def per_frame(a=a, batch=batch):
            for k in range(batch):
                sf.ifft2(sf.fft2(a[k], workers=1, overwrite_x=True), workers=1, overwrite_x=True)

        def batched(a=a):
            sf.ifft2(sf.fft2(a, workers=1), workers=1, overwrite_x=True)

        case = f"c2c {n}x{n} x {batch}"
        res[(case, "per frame")] = {"seconds": _median_time(per_frame, repeat)}
        res[(case, "batched")] = {"seconds": _median_time(batched, repeat)}
    n, batch = REAL
    r = rng.standard_normal((n, n)).astype(np.float32)

    def real(r=r):
        for _ in range(batch):
            sf.irfft2(sf.rfft2(r, workers=1), s=r.shape, workers=1)

    res[(f"r2c+c2r {n}x{n} x {batch}", "per frame")] = {"seconds": _median_time(real, max(3, repeat // 2))}
    return res


def run_core(repeat: int) -> tuple[str, dict[tuple[str, str], dict]]:
    from tomofuse import _core

    res = {}
    rng = np.random.default_rng(0)
    for n, batch in CASES:
        a = (rng.standard_normal((batch, n, n)) + 1j * rng.standard_normal((batch, n, n))).astype(np.complex64)
        plan = _core.FFTPlan2D(n, n)

        def go(a=a, plan=plan):
            plan.forward(a, out=a, threads=1)
            plan.backward(a, out=a, threads=1)

        res[(f"c2c {n}x{n} x {batch}", "estimate")] = {"seconds": _median_time(go, repeat)}
    return _core.fft_backend(), res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--mkl-lib", help="directory with libmkl_core.a (default: the mkl-static distribution)")
    p.add_argument("--mkl-include", help="directory with MKL's fftw3.h (default: mkl-include's include/fftw)")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)

    found = candidates(args)
    lines = [f"python {sys.version.split()[0]}, numpy {np.__version__}, scipy {md.version('scipy')}, "
             f"{sysconfig.get_platform()}, {os.cpu_count()} CPUs"]
    with open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    lines.append(f"CPU: {model}")
    results: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in found.items():
            exe = build(name, spec, Path(tmp))
            sizes[name] = exe.stat().st_size
            results[name] = run_program(exe, args.repeat)
            lines.append(f"{name}: {spec['version']}, fftwf_version {results[name]['version']!r}, "
                         f"timing program {sizes[name] / 1e6:.1f} MB")
    results["scipy.fft"] = run_scipy(args.repeat)
    backend, core = run_core(args.repeat)
    lines.append(f"installed core: {backend}")

    cases = [f"c2c {n}x{n} x {b}" for n, b in CASES] + [f"r2c+c2r {REAL[0]}x{REAL[0]} x {REAL[1]}"]
    ref = {c: results["scipy.fft"][(c, "per frame")]["seconds"] for c in cases}
    head = f"{'library':14s} {'plans':10s} " + " ".join(f"{c:>24s}" for c in cases)
    lines += ["", "milliseconds, 1 thread, median (x scipy.fft per frame: < 1 is faster)", head, "-" * len(head)]

    def row(name, rigor, res):
        cells = []
        for c in cases:
            r = res.get((c, rigor))
            cells.append(f"{r['seconds'] * 1e3:9.1f} ({r['seconds'] / ref[c]:4.2f}x){'':7s}" if r else f"{'-':>24s}")
        return f"{name:14s} {rigor:10s} " + " ".join(f"{x:>24s}" for x in cells)

    for name in found:
        for rigor in ("estimate", "measure"):
            lines.append(row(name, rigor, results[name]))
    lines.append(row("scipy.fft", "per frame", results["scipy.fft"]))
    lines.append(row("scipy.fft", "batched", results["scipy.fft"]))
    lines.append(row("core", "estimate", core))
    errs = {name: max(r["error"] for k, r in res.items() if k != "version") for name, res in results.items()
            if name in found}
    lines += ["", "largest round-trip error: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()), "",
              "licenses:"] + [f"  {k}: {v}" for k, v in LICENSES.items() if k in found or k == "scipy.fft"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
