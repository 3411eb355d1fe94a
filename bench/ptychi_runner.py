"""pty-chi (AdvancedPhotonSource) on CPU on a simulated ptychography case: time per iteration, peak RSS, object error.

Input: an .npz from ``bench/ptycho_case.py`` (keys ``intensities`` (K, N, N) float32 with the
zero frequency at the pattern center, ``positions_px`` (K, 2) (y, x) in object pixels relative to
the object's center index (H // 2, W // 2), ``probe`` (N, N) complex initial probe centered at
N // 2, ``object_shape``, ``truth`` (H, W) complex and ``mask`` (H, W) bool), or a member of
``bench/ptycho_family.py`` (the same keys; the object shape is the truth's and the number of
incoherent probe modes is the member's ``params["modes"]`` unless ``--modes`` says otherwise).

Runs, each in a fresh child process (so that its peak RSS is its own), with torch on the CPU
and ``torch.set_num_threads(--threads)``:

- ``dm``: difference map (``ptychi.api.DMOptions``) for ``--dm`` iterations (epochs);
- ``lsqml``: LSQML (``ptychi.api.LSQMLOptions``, pty-chi's defaults: Gaussian noise model,
  ``--ml-batch`` points per minibatch, random batching) for ``--ml`` iterations;
- ``dm+lsqml``: ``--dm`` DM iterations, then ``--ml`` LSQML iterations started from DM's object
  and probe (a new LSQML task with them as initial guesses).

Object and probe are both refined, positions are fixed.  The initial object is 1 everywhere;
the initial probe is the case's ``probe`` rescaled to the data (pty-chi's forward FFT is
unnormalized, so ``N^2 sum |P|^2`` is set to the mean counts per pattern).

Conventions mapped (checked against pty-chi 2.2.0's source): the data are passed as measured
with ``fft_shift=True`` (pty-chi's forward model leaves the zero frequency at index 0 and
shifts the data once); positions go in as ``probe_position_y_px`` / ``probe_position_x_px`` with
``position_origin_coords`` = ``(H // 2 - N // 2 + (N - 1) / 2, ...)``, because pty-chi adds
the origin and then takes the patch starting at ``pos - (N - 1) / 2`` while ``ptycho_scan``
starts it at ``H // 2 + pos - N // 2``.

Timing: each iteration is one ``task.run(1)`` call timed with ``time.perf_counter``; the
figure is the median over the iterations after the first ``--warmup`` (setup, i.e. building
the task, is not included).  Peak RSS: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the
child at its end (import of torch and the loaded case included; ``rss_before_mib`` is the
value just before the task is built).  Object error: ``tomofuse.ptycho.object_error`` of the
final object against ``truth`` over ``mask``.

pty-chi imports ``torchvision.transforms.GaussianBlur`` at import time (used only for random
initial objects); PyPI's torchvision wheels are CUDA builds that do not load against the CPU
torch, so when torchvision cannot be imported a small stand-in module is installed first.

Run (one JSON line on stdout; pty-chi's log goes to stderr)::

    python bench/ptychi_runner.py case.npz --dm 20 --ml 100 --threads 2 [--algos dm,lsqml,dm+lsqml]

Measured on 2026-11-25, this machine (2 shared cores; the other developer's work kept the load
average at 2-6 during these runs, so the times are upper bounds), ptychi 2.2.0, torch 2.13.0+cpu,
one run each, DM chunk_length 32, LSQML batch 100, probe refined unless said:

    case   threads  algorithm (iterations)     s/iter  peak RSS MiB  object_error
    bench  2        DM (20)                    1.63    698           0.784
    bench  2        LSQML (20)                 1.77    924           0.775
    bench  1        DM (20)                    2.51    698           0.784
    bench  1        LSQML (20)                 1.89    924           0.772
    small  2        DM (20)                    0.22    517           0.432
    small  2        LSQML (100)                0.34    586           0.173
    small  2        DM (100) -> LSQML (100)    0.26 / 0.23  605      0.801 -> 0.915
    small  2        same, probe fixed          0.16 / 0.23  612      1.122 -> 0.181

(RSS includes ~390-440 MiB of torch, pty-chi and the loaded case: ``rss_before_mib``.)  DM's
object error is not monotone: with the exact probe fixed it falls to 0.28 at iteration 25 and
then drifts up again (0.53 at 60, 1.12 at 100); with the probe refined DM also corrupts the
probe, so LSQML started from DM's result ends worse (0.92) than LSQML from a flat start (0.17).
The error that remains is mostly the low-frequency phase (the phantom's particles, larger than
the beam), which far-field data transfer weakly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types


def _ensure_torchvision_blur() -> None:
    """Make ``from torchvision.transforms import GaussianBlur`` work without a usable torchvision."""
    try:
        import torchvision.transforms  # noqa: F401
        return
    except Exception:  # noqa: BLE001 - ImportError, or RuntimeError from a CUDA-built wheel
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    import torch

    class GaussianBlur:  # a separable Gaussian blur of (..., H, W) tensors, reflect-padded
        def __init__(self, kernel_size, sigma=(0.1, 2.0)):
            ks = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
            sg = sigma if isinstance(sigma, (tuple, list)) else (sigma, sigma)
            self.ks, self.sigma = tuple(int(k) for k in ks), tuple(float(s) for s in sg)

        def __call__(self, img):
            out = img
            for axis, (k, s) in enumerate(zip(self.ks, self.sigma)):
                x = torch.arange(k, dtype=img.dtype, device=img.device) - (k - 1) / 2
                w = torch.exp(-0.5 * (x / s) ** 2)
                w = w / w.sum()
                shape = [1, 1, k, 1] if axis == 0 else [1, 1, 1, k]
                pad = [0, 0, k // 2, k // 2] if axis == 0 else [k // 2, k // 2, 0, 0]
                lead = out.shape[:-2]
                flat = out.reshape(-1, 1, *out.shape[-2:])
                flat = torch.nn.functional.pad(flat, pad, mode="reflect")
                out = torch.nn.functional.conv2d(flat, w.reshape(shape)).reshape(*lead, *out.shape[-2:])
            return out

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    tr.GaussianBlur = GaussianBlur
    tv.transforms = tr
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr


def _object_shape(case) -> tuple[int, int]:
    shape = case["object_shape"] if "object_shape" in case else case["truth"].shape
    return int(shape[0]), int(shape[1])


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _options(api, algo: str, case: dict, epochs: int, args):
    import numpy as np

    h, w = _object_shape(case)
    n = case["intensities"].shape[-1]
    if algo == "dm":
        opts = api.DMOptions()
        opts.reconstructor_options.chunk_length = args.dm_chunk
    else:
        opts = api.LSQMLOptions()
        opts.reconstructor_options.batch_size = args.ml_batch
    opts.data_options.fft_shift = True
    opts.data_options.wavelength_m = 1.23984198e-9 / float(case.get("energy_kev", 6.2))
    opts.object_options.pixel_size_m = float(case.get("pixel_size_m", 1e-8))
    opts.object_options.optimizable = True
    opts.object_options.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    opts.object_options.position_origin_coords = np.array([h // 2 - n // 2 + (n - 1) / 2.0,
                                                           w // 2 - n // 2 + (n - 1) / 2.0])
    opts.probe_options.optimizable = not args.fix_probe
    opts.probe_position_options.optimizable = False
    opts.reconstructor_options.num_epochs = epochs
    opts.reconstructor_options.default_device = api.Devices.CPU
    opts.reconstructor_options.random_seed = 0
    return opts


def _run_stage(api, task_cls, algo, case, obj0, probe0, epochs, args):
    """Build a task (untimed), run ``epochs`` single-epoch calls; return (task, per-iteration seconds)."""
    import numpy as np

    pos = case["positions_px"]
    task = task_cls(_options(api, algo, case, epochs, args), diffraction_data=case["intensities"],
                    object_data=obj0, probe_data=probe0, probe_position_y_px=pos[:, 0].astype(np.float32),
                    probe_position_x_px=pos[:, 1].astype(np.float32))
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        task.run(1)
        times.append(time.perf_counter() - t0)
    return task, times


def _median_after(times, warmup):
    rest = times[warmup:] if len(times) > warmup else times
    return statistics.median(rest) if rest else float("nan")


def child(args) -> dict:
    """One algorithm in this process; returns the result dict."""
    import numpy as np

    _ensure_torchvision_blur()
    import torch

    torch.set_num_threads(args.threads)
    import ptychi
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask

    from tomofuse.ptycho import object_error

    z = np.load(args.case)
    case = {k: z[k] for k in z.files}
    truth = case.get("truth")  # absent for real data: no object error
    mask = case["mask"].astype(bool) if "mask" in case else None
    h, w = _object_shape(case)
    inten = case["intensities"].astype(np.float32)
    case["intensities"] = inten
    n = inten.shape[-1]
    probe = case["probe"].astype(np.complex64)
    mean_counts = float(inten.sum(axis=(1, 2)).mean())
    probe = probe * np.float32(np.sqrt(mean_counts / (n * n * float(np.sum(np.abs(probe) ** 2)))))
    obj0 = np.ones((1, h, w), dtype=np.complex64)
    modes = args.modes or (json.loads(str(case["params"]))["modes"] if "params" in case else 1)
    probe0 = np.repeat(probe[None, None], modes, axis=1)
    if modes > 1:  # pty-chi's own initialization of the incoherent modes (Hermite modes, 2 % of the power each)
        from ptychi.utils import orthogonalize_initial_probe
        probe0 = orthogonalize_initial_probe(torch.from_numpy(probe0)).numpy().astype(np.complex64)
    rss_before = _rss_mib()
    out = {"algo": args.algo, "threads": args.threads, "case": os.path.basename(args.case),
           "object_shape": [h, w], "probe_n": n, "probe_modes": int(modes), "positions": int(inten.shape[0]),
           "ptychi": getattr(ptychi, "__version__", None) or _dist_version("ptychi"),
           "torch": torch.__version__, "probe_refined": not args.fix_probe, "rss_before_mib": round(rss_before, 1)}
    stages = [("dm", args.dm)] if args.algo == "dm" else [("lsqml", args.ml)] if args.algo == "lsqml" \
        else [("dm", args.dm), ("lsqml", args.ml)]
    for name, epochs in stages:
        task, times = _run_stage(api, PtychographyTask, name, case, obj0, probe0, epochs, args)
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
        err = object_error(obj, truth, mask=mask) if truth is not None else float("nan")
        out[name] = {"iterations": epochs, "s_per_iter": round(_median_after(times, args.warmup), 4),
                     "first_iters_s": [round(t, 3) for t in times[:args.warmup]],
                     "total_s": round(sum(times), 2), "object_error": round(float(err), 5)}
        if name == "dm":
            out[name]["chunk_length"] = args.dm_chunk
        else:
            out[name]["batch_size"] = args.ml_batch
        if args.save_object:
            np.save(f"{args.save_object}_{args.algo}_{name}.npy", obj)
        obj0 = task.get_data_to_cpu("object", as_numpy=True).astype(np.complex64)
        probe0 = task.get_data_to_cpu("probe", as_numpy=True).astype(np.complex64)
        del task
    out["peak_rss_mib"] = round(_rss_mib(), 1)
    return out


def _dist_version(name):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def invoke(case: str, *, python: str = sys.executable, threads: int = 1, **options) -> dict:
    """Run this script on ``case`` in ``python`` (an interpreter with ptychi and CPU torch) and return its JSON
    result; ``options`` are its command-line options by name (``dm=100``, ``algos="dm,lsqml"``,
    ``save_object=prefix``, ...).  RuntimeError with the end of its stderr when it fails."""
    cmd = [python, os.path.abspath(__file__), str(case), "--threads", str(threads)]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ptychi_runner failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", help=".npz from bench/ptycho_case.py")
    ap.add_argument("--dm", type=int, default=20, help="DM iterations")
    ap.add_argument("--ml", type=int, default=100, help="LSQML iterations")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--algos", default="dm,lsqml,dm+lsqml", help="comma-separated: dm, lsqml, dm+lsqml")
    ap.add_argument("--warmup", type=int, default=3, help="iterations left out of the median")
    ap.add_argument("--dm-chunk", type=int, default=32, help="DM chunk_length (memory/speed only)")
    ap.add_argument("--ml-batch", type=int, default=100, help="LSQML batch_size (pty-chi default 100)")
    ap.add_argument("--modes", type=int, default=0, help="incoherent probe modes (0: the case's, else 1)")
    ap.add_argument("--fix-probe", action="store_true", help="keep the initial probe (default: refine it)")
    ap.add_argument("--save-object", default=None, help="prefix: save final objects as PREFIX_ALGO_STAGE.npy")
    ap.add_argument("--algo", help=argparse.SUPPRESS)  # internal: run one algorithm in this process
    args = ap.parse_args(argv)
    if args.algo:
        print(json.dumps(child(args)), flush=True)
        return
    results = []
    for algo in [a.strip() for a in args.algos.split(",") if a.strip()]:
        if algo not in ("dm", "lsqml", "dm+lsqml"):
            raise SystemExit(f"unknown algorithm {algo!r}")
        cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--algo", algo] if argv is None \
            else [sys.executable, os.path.abspath(__file__), *argv, "--algo", algo]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
        if proc.returncode != 0:
            results.append({"algo": algo, "error": f"child exited with {proc.returncode}"})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps({"runner": "ptychi", "threads": args.threads, "results": results}), flush=True)


if __name__ == "__main__":
    main()
