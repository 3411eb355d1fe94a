"""Paganin filtering: tomofuse vs nabu's CPU Paganin, side by side in one run (issue 3).

Physics (TXTM numbers of the paper): 8.4 keV, delta/beta = 0.028, pixel 27.5 nm, and a
propagation distance of 5 mm (chosen: the filter ``1 / (1 + pi lambda z (delta/beta) |u|^2)``
halves at a period of ~9 px and falls to 1/22.5 at Nyquist, so it is far from identity).

Both sides compute ``-ln( F^-1[ F[T] / (1 + pi lambda z (delta/beta) |u|^2) ] )`` on each
1024 x 1024 float32 transmission frame, edge-padded to 2048 x 2048 with the frame centered
(nabu pads to the next 2,3,5,7-smooth size >= 2n, which is exactly 2048 here, and centers
the frame as tomofuse does), real-to-complex FFT, filter, inverse, crop, -log clipped at 1e-6:

- tomofuse: ``tomofuse.tomo.paganin`` (FFTW in the C++ core, OpenMP over frames), with
  ``fft_rigor`` "measure" and "estimate", ``threads`` 1 and 2.
- nabu: ``nabu.preproc.phase.PaganinPhaseRetrieval(padding="edge", use_rfft=True)`` applied
  frame by frame in place, as nabu's CPU pipeline does
  (``retrieve_phase(radios[i], output=radios[i])``), then ``nabu.preproc.ccd.Log``
  (clip_min 1e-6). Its FFT is ``scipy.fft`` (pocketfft) with ``fft_num_threads`` workers
  (nabu's pipeline passes None = all cores, here 2); 1 worker is measured too.

Input: a stack of N transmission frames (spheres of random size and absorption, some cut by
the frame edge so the padding matters, shifted per frame, with 1 % Gaussian noise), values
in ~[0.2, 1.05].  Each method runs once untimed (FFTW plans, scipy caches; the first
"measure" call's planning time is printed separately) and then --repeat times; the figures
are medians of CPU seconds (time.process_time, all threads of the process) and wall seconds,
extrapolated linearly to 1024 projections (x 1024 / N; the one-off FFTW planning not included).

Agreement: the filtered transmissions ``exp(-out)`` of each method and of a float64 NumPy
reference (numpy.pad edge, numpy.fft.rfft2, same filter, on --check frames) are compared
pointwise as max |a - b| / |b|; the -log outputs as max |a - b| / max |b|.

Run from the repository root (nabu from PyPI)::

    nice python bench/compare_paganin.py [--n 64] [--repeat 3] [--check 4]

Measured on 2026-11-25, this machine (2 shared cores, loaded by other work; load average
~9 during the run), ``nice python bench/compare_paganin.py`` (N = 64, repeat 3), tomofuse
0.1.0 (FFTW 3.3.10 from pylib-fftw3f, statically linked), nabu 2026.1.2, scipy 1.17.1::

    64 projections 1024 x 1024 float32, T in [0.191, 1.059]; 8.4 keV, delta/beta 0.028, pixel 27.5 nm, distance 5 mm; median of 3; per 1024 projections = x 16
    nabu pads 1024 x 1024 to 2048 x 2048 (edge)
      tomofuse measure t=1   wall   208.8 s  CPU    92.2 s  per 1024 proj (  90.0 ms CPU/proj; first call wall  12.1 s CPU   6.9 s)
      tomofuse measure t=2   wall   216.6 s  CPU    94.1 s  per 1024 proj (  91.9 ms CPU/proj; first call wall  10.8 s CPU   5.6 s)
      tomofuse estimate t=1  wall   202.2 s  CPU    82.7 s  per 1024 proj (  80.8 ms CPU/proj; first call wall  14.1 s CPU   5.5 s)
      tomofuse estimate t=2  wall   176.1 s  CPU    85.5 s  per 1024 proj (  83.5 ms CPU/proj; first call wall  10.6 s CPU   4.8 s)
      nabu scipy.fft w=2     wall    95.9 s  CPU    57.5 s  per 1024 proj (  56.1 ms CPU/proj; first call wall   6.1 s CPU   3.6 s)
      nabu scipy.fft w=1     wall    92.3 s  CPU    60.7 s  per 1024 proj (  59.3 ms CPU/proj; first call wall   5.3 s CPU   3.7 s)
    ratio CPU-s tomofuse / nabu scipy.fft w=2:
      tomofuse measure t=1    1.605  (wall  2.177)
      tomofuse measure t=2    1.638  (wall  2.259)
      tomofuse estimate t=1   1.439  (wall  2.109)
      tomofuse estimate t=2   1.488  (wall  1.836)
    agreement on 4 frames (filtered T = exp(-out): max |a-b|/|b|; -log out: max |a-b| / max |b|):
      tomofuse vs float64 ref: T 2.52e-06   -log 1.57e-06
      nabu     vs float64 ref: T 2.66e-06   -log 1.66e-06
      tomofuse vs nabu:        T 2.15e-06   -log 1.33e-06
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import numpy as np

ENERGY_KEV = 8.4
DELTA_BETA = 0.028
PIXEL = 27.5e-9  # m
DISTANCE = 5e-3  # m
HC_KEV_M = 12.398419843320026e-10


def transmission_stack(n, size=1024, seed=0):
    """(n, size, size) float32 transmission frames: rolled sphere projections + 1 % noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    mut = np.zeros((size, size), np.float32)
    for _ in range(40):
        r = rng.uniform(0.02, 0.12) * size
        cy, cx = rng.uniform(-0.05, 1.05, 2) * size  # some spheres cut by the frame edge
        mu = rng.uniform(0.1, 1.5) / r  # line integral through the center 2 mu r in [0.2, 3]
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mut += 2 * mu * np.sqrt(np.clip(r * r - d2, 0, None))
    base = np.exp(-np.clip(mut, 0, 1.6)).astype(np.float32)  # transmission down to ~0.2
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        dy, dx = rng.integers(-size // 16, size // 16 + 1, 2)
        frame = np.roll(base, (int(dy), int(dx)), axis=(0, 1))
        out[i] = frame * (1 + 0.01 * rng.standard_normal((size, size), dtype=np.float32))
    np.clip(out, 1e-3, None, out=out)
    return out


def reference(frame):
    """Float64 NumPy reference of the filtered transmission (edge padding to 2x, centered)."""
    rows, cols = frame.shape
    pr, pc = 2 * rows, 2 * cols
    top, left = (pr - rows) // 2, (pc - cols) // 2
    padded = np.pad(frame.astype(np.float64), ((top, pr - rows - top), (left, pc - cols - left)), mode="edge")
    uy = np.fft.fftfreq(pr, d=PIXEL)[:, None]
    ux = np.fft.rfftfreq(pc, d=PIXEL)[None, :]
    wavelength = HC_KEV_M / ENERGY_KEV
    resp = 1.0 / (1.0 + math.pi * wavelength * DISTANCE * DELTA_BETA * (uy**2 + ux**2))
    filtered = np.fft.irfft2(np.fft.rfft2(padded) * resp, s=(pr, pc))
    return filtered[top:top + rows, left:left + cols]


def timed(fn, repeat):
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        out = None  # let the previous output go before the next run allocates
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def tomofuse_runner(stack, rigor, threads, pad=True):
    import tomofuse.tomo as tt

    def go():
        return tt.paganin(stack, pixel_size=PIXEL, distance=DISTANCE, energy_kev=ENERGY_KEV,
                          delta_beta=DELTA_BETA, pad=pad, fft_rigor=rigor, threads=threads)
    return go


def nabu_runner(stack, threads):
    from nabu.preproc.ccd import Log
    from nabu.preproc.phase import PaganinPhaseRetrieval

    pag = PaganinPhaseRetrieval(stack.shape[1:], distance=DISTANCE, energy=ENERGY_KEV, delta_beta=DELTA_BETA,
                                pixel_size=PIXEL, padding="edge", use_rfft=True, fft_num_threads=threads)
    log = Log(stack.shape, clip_min=1e-6, clip_max=None)

    def go():
        radios = stack.copy()  # nabu works in place on its chunk; the copy is part of its cost here
        for i in range(radios.shape[0]):
            pag.retrieve_phase(radios[i], output=radios[i])
        return log.take_logarithm(radios)
    return go, pag.shape_padded


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="projections of 1024 x 1024 (default 64)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", type=int, default=4, help="frames compared with the float64 reference")
    args = ap.parse_args(argv)
    n = args.n
    scale = 1024 / n

    stack = transmission_stack(n)
    print(f"{n} projections 1024 x 1024 float32, T in [{stack.min():.3f}, {stack.max():.3f}]; "
          f"{ENERGY_KEV} keV, delta/beta {DELTA_BETA}, pixel {PIXEL * 1e9:.1f} nm, distance {DISTANCE * 1e3:g} mm; "
          f"median of {args.repeat}; per 1024 projections = x {scale:g}", flush=True)

    methods = []
    for th in (1, 2):  # the default: margin from the filter's decay length (1080^2 here)
        methods.append((f"tomofuse auto t={th}", tomofuse_runner(stack, "estimate", th, pad="auto"),
                        "tomofuse auto"))
    for rigor in ("estimate", "measure"):  # 2x padding, as nabu
        for th in (1, 2):
            methods.append((f"tomofuse 2x {rigor[:4]} t={th}", tomofuse_runner(stack, rigor, th), "tomofuse"))
    try:
        for th in (2, 1):
            go, padded = nabu_runner(stack, th)
            methods.append((f"nabu scipy.fft w={th}", go, "nabu"))
        print(f"nabu pads 1024 x 1024 to {padded[0]} x {padded[1]} (edge)", flush=True)
    except ImportError as exc:
        print(f"nabu not installed (pip install nabu): skipped ({exc})", file=sys.stderr)

    rows, outputs = [], {}
    for name, go, kind in methods:
        w, c = time.perf_counter(), time.process_time()
        go()  # warm-up: FFTW plans (measure: timed candidates), page faults, scipy plan cache
        w, c = time.perf_counter() - w, time.process_time() - c
        wall, cpu, out = timed(go, args.repeat)
        if name.endswith(("t=2", "w=2")):  # keep the multithreaded outputs for the agreement check
            outputs.setdefault(kind, out[: args.check].copy())
        rows.append((name, wall * scale, cpu * scale, w, c))
        print(f"  {name:24s} wall {wall * scale:7.1f} s  CPU {cpu * scale:7.1f} s  per 1024 proj "
              f"({cpu / n * 1e3:6.1f} ms CPU/proj; first call wall {w:5.1f} s CPU {c:5.1f} s)", flush=True)
        out = None

    nabu_rows = [r for r in rows if r[0].startswith("nabu") and r[0].endswith("w=2")]
    if nabu_rows:
        nb = nabu_rows[0]
        print(f"ratio CPU-s tomofuse / {nb[0]}:")
        for r in rows:
            if r[0].startswith("tomofuse"):
                print(f"  {r[0]:24s} {r[2] / nb[2]:6.3f}  (wall {r[1] / nb[1]:6.3f})")

    k = min(args.check, n)
    ref = np.stack([reference(stack[i]) for i in range(k)])
    print(f"agreement on {k} frames (filtered T = exp(-out): max |a-b|/|b|; -log out: max |a-b| / max |b|):")
    ref_log = -np.log(np.clip(ref, 1e-6, None))
    for kind, out in outputs.items():
        t = np.exp(-out[:k].astype(np.float64))
        print(f"  {kind:13s} vs float64 2x ref: T {np.max(np.abs(t - ref) / np.abs(ref)):.2e}   "
              f"-log {np.max(np.abs(out[:k] - ref_log)) / np.max(np.abs(ref_log)):.2e}")
    if "nabu" in outputs and "tomofuse" in outputs:
        a, b = outputs["tomofuse"][:k].astype(np.float64), outputs["nabu"][:k].astype(np.float64)
        ta, tb = np.exp(-a), np.exp(-b)
        print(f"  tomofuse vs nabu:        T {np.max(np.abs(ta - tb) / np.abs(tb)):.2e}   "
              f"-log {np.max(np.abs(a - b)) / np.max(np.abs(b)):.2e}")


if __name__ == "__main__":
    main()
