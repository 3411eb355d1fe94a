"""Real data, side by side: tomofuse and pty-chi on the APS Velociprobe Siemens-star scan (issue 15).

The scan (``../shared/realdata/velociprobe-siemens-star``, 516 patterns of 128^2; see that
folder's README) is split into its even and odd positions and each half is reconstructed on
its own, by each engine, from the file's probe guess and a flat object.  Two halves agree only
where the data determine the object, so

- the **resolution** is where the Fourier ring correlation of the two halves' objects
  (``tomofuse.ptycho.fourier_ring_correlation``, 1/2-bit threshold, on the region that both
  halves illuminate above 30 % of their maximum) crosses the threshold, in pixels
  (half-period; 2 px is Nyquist): smaller is better;
- the **unshared noise** is the power of the difference of the two halves' phase images above
  half the Nyquist frequency, relative to the mean power of their sum (the same region, cut to
  its bounding box, the common phase offset removed, a Hann window): what the engine fitted
  that is not in the sample; smaller is better.

Runs (one after the other, ``--threads`` each):

- tomofuse ``reconstruct`` with its defaults for ``--dm`` DM + ``--ml`` ML iterations;
- pty-chi (``bench/ptychi_runner.py`` in the interpreter given by ``--python``, a venv with
  ``ptychi``, CPU ``torch`` and tomofuse): DM ``--dm`` then LSQML ``--ml`` (``dm+lsqml``), and
  LSQML alone for ``--dm + --ml`` iterations (``lsqml``), pty-chi's defaults otherwise.

The data are read by ``tests/realdata.py`` (the tests' reader), from ``../shared/realdata`` next to
the repository.  Run from the repository root (the pty-chi runs are skipped without ``--python``)::

    python bench/compare_ptycho_real.py --python /path/to/ptychi-venv/bin/python [--dm 100 --ml 50]

One JSON line per run on stdout, then a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tomofuse import ptycho

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from realdata import velociprobe_scan  # noqa: E402  (the tests' reader: the file's layout in one place)


def unshared_noise(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Power of the two phase images' difference above half the Nyquist frequency / mean power of their sum."""
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    oa, ob = a[sl], b[sl]
    oa = oa * np.exp(-1j * np.angle(np.vdot(ob, oa)))
    pa, pb = np.angle(oa), np.angle(ob)
    pa, pb = pa - pa.mean(), pb - pb.mean()
    w = np.outer(np.hanning(pa.shape[0]), np.hanning(pa.shape[1]))
    fa, fb = np.fft.fft2(pa * w), np.fft.fft2(pb * w)
    q = np.hypot(np.fft.fftfreq(pa.shape[0])[:, None], np.fft.fftfreq(pa.shape[1])[None]) / 0.5
    hi = q > 0.5
    return float((np.abs(fa - fb) ** 2)[hi].sum() / (np.abs(fa + fb) ** 2).mean() / hi.size)


def run_ptychi(python: str, patterns, positions, probe, shape, algo: str, dm: int, ml: int, threads: int):
    """pty-chi on each half through ``ptychi_runner.py``: (objects, seconds per half)."""
    import ptychi_runner

    objects, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for h in (0, 1):
            case = Path(tmp) / f"half{h}.npz"
            np.savez(case, intensities=patterns[h::2], positions_px=positions[h::2], probe=probe,
                     object_shape=np.array(shape))
            prefix = str(Path(tmp) / f"obj{h}")
            iters = {"dm": dm, "ml": ml} if algo == "dm+lsqml" else {"ml": dm + ml}
            out = ptychi_runner.invoke(case, python=python, threads=threads, algos=algo, save_object=prefix, **iters)
            res = out["results"][0]
            if "error" in res:
                raise RuntimeError(f"pty-chi {algo}: {res['error']}")
            stages = [k for k in ("dm", "lsqml") if k in res]
            seconds.append(sum(res[k]["total_s"] for k in stages))
            objects.append(np.load(f"{prefix}_{algo}_{stages[-1]}.npy"))
    return objects, seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=None, help="interpreter with ptychi and CPU torch (omit: tomofuse only)")
    ap.add_argument("--dm", type=int, default=100)
    ap.add_argument("--ml", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="[{}]",
                    help='JSON list: one tomofuse run per entry, with "ml" (MLOptions fields) and "holdout" (a bool '
                         'or HoldOut fields), e.g. \'[{}, {"holdout": false}]\'')
    args = ap.parse_args(argv)
    patterns, positions, probe = velociprobe_scan()
    shape = ptycho.default_object_shape(positions, patterns.shape[1])
    runs, mask = [], None
    for variant in json.loads(args.variants):
        ho = variant.get("holdout", True)
        options = {"ml": ptycho.MLOptions(**variant.get("ml", {})),
                   "holdout": ptycho.HoldOut(**ho) if isinstance(ho, dict) else bool(ho)}
        halves, seconds = [], []
        for h in (0, 1):
            t0 = time.perf_counter()
            halves.append(ptycho.reconstruct(patterns[h::2], positions[h::2], probe, object_shape=shape,
                                             engines=(("dm", args.dm), ("ml", args.ml)), threads=args.threads,
                                             **options))
            seconds.append(time.perf_counter() - t0)
        if mask is None:  # the first run's region, the same for every run
            ill = [r.illumination / r.illumination.max() for r in halves]
            mask = (ill[0] > 0.3) & (ill[1] > 0.3)
        label = f"DM {args.dm} + ML {args.ml}" + "".join(f" {k}={json.dumps(v)}" for k, v in variant.items())
        runs.append(("tomofuse", label, [r.object for r in halves], seconds))
    if args.python:
        for algo, label in (("dm+lsqml", f"DM {args.dm} + LSQML {args.ml}"), ("lsqml", f"LSQML {args.dm + args.ml}")):
            objs, secs = run_ptychi(args.python, patterns, positions, probe, shape, algo, args.dm, args.ml,
                                       args.threads)
            runs.append(("pty-chi", label, objs, secs))
    rows = []
    for engine, label, (a, b), secs in runs:
        frc = ptycho.fourier_ring_correlation(a, b, pixel_size=1.0, mask=mask)
        row = {"engine": engine, "run": label, "frc_resolution_px": round(float(frc.resolution), 3),
               "frc_crossed": bool(frc.crossed), "nyquist_fraction": round(2.0 / float(frc.resolution), 3),
               "unshared_noise": round(unshared_noise(a, b, mask), 5), "seconds_per_half": round(float(np.mean(secs)), 1),
               "threads": args.threads}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'engine':9s} {'run':34s} {'FRC 1/2-bit (px)':>17s} {'of Nyquist':>11s} {'unshared noise':>15s} "
          f"{'s/half':>7s}")
    for r in rows:
        print(f"{r['engine']:9s} {r['run']:34s} {r['frc_resolution_px']:17.3f} {r['nyquist_fraction']:11.3f} "
              f"{r['unshared_noise']:15.5f} {r['seconds_per_half']:7.1f}")


if __name__ == "__main__":
    sys.exit(main())
