"""Command-line interface: ``tomofuse <command> ...``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from . import __version__

__all__ = ["main"]

logger = logging.getLogger("tomofuse")


class _Bar:
    """Turns ``callback(fraction, message)`` into a tqdm progress bar on a terminal, and into a
    line per tenth of the work (or per minute) when stderr is a file or a pipe (a batch job's
    log: a redrawn bar there is thousands of carriage returns)."""

    def __init__(self, enabled: bool, stream=None):
        self._stream = sys.stderr if stream is None else stream
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(enabled and isatty is not None and isatty())
        self._lines = bool(enabled and not self._tty)
        self._bar = None
        if self._tty:
            from tqdm import tqdm

            self._bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}", file=self._stream)
        self._t0 = self._last_t = time.monotonic()
        self._last_tenth = -1

    def _describe(self, message: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(message, refresh=False)

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self._bar is not None:
            self._describe(message)
            self._bar.update(int(round(fraction * 1000)) - self._bar.n)
        elif self._lines:
            now = time.monotonic()
            tenth = int(fraction * 10 + 1e-9)
            if tenth > self._last_tenth or now - self._last_t >= 60.0:
                self._write(f"{message}: {100 * fraction:3.0f} %")
                self._last_tenth, self._last_t = tenth, now

    def _write(self, text: str) -> None:
        self._stream.write(f"{text} ({time.monotonic() - self._t0:.0f} s)\n")
        self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _cmd_phantom(args: argparse.Namespace) -> int:
    from .phantom import electrode, save_preview
    from .io import check_writable

    out = check_writable(args.output, argument="--output")
    preview = None
    if not args.no_preview:
        preview = Path(args.preview) if args.preview else out.with_suffix(".png")
        check_writable(preview, argument="--preview")
    options = {}
    if args.porosity is not None:
        options["porosity"] = args.porosity
    bar = _Bar(enabled=not args.quiet)
    try:
        e = electrode(tuple(args.shape), args.voxel_size, cycled=args.cycled, seed=args.seed,
                      threads=args.threads, callback=bar, **options)
    finally:
        bar.close()
    e.save(out)
    fractions = ", ".join(f"{p.name.lower()} {f:.3f}" for p, f in e.phase_fractions().items())
    print(f"wrote {out}  ({e.shape[0]}x{e.shape[1]}x{e.shape[2]} voxels of {e.voxel_size * 1e9:.3g} nm; "
          f"{len(e.truth)} SiOx particles)")
    print(f"phase fractions: {fractions}")
    t = e.truth
    w = t["area_m2"]
    cov = ", ".join(f"{c} {(t[c] * w).sum() / w.sum():.3f}" for c in ("free", "cbd", "contact", "sei"))
    print(f"SiOx surface (area-weighted truth): {cov}")
    if preview is not None:
        title = f"tomofuse phantom, seed {e.seed}{', cycled' if e.cycled else ''}"
        save_preview(e.labels, preview, voxel_size=e.voxel_size, title=title)
        print(f"wrote {preview}")
    return 0


def _cmd_analyze_coverage(args: argparse.Namespace) -> int:
    import json

    from .analysis import sei_thickness, summarize, surface_coverage
    from .io import read_volume, split_dataset_path

    labels, attrs = read_volume(args.labels, default_dataset="labels")
    if args.particles:
        particles, _ = read_volume(args.particles, default_dataset="particles")
    else:
        path, _ = split_dataset_path(args.labels)
        particles, _ = read_volume(path, default_dataset="particles")
    voxel_size = args.voxel_size if args.voxel_size is not None else attrs.get("voxel_size")
    if voxel_size is None:
        raise ValueError("--voxel-size: the input carries no voxel_size attribute; give it in meters")
    voxel_size = float(voxel_size)
    table, surface = surface_coverage(labels, particles, voxel_size=voxel_size, threads=args.threads,
                                      return_surface=True)
    if args.thickness:
        th = sei_thickness(surface=surface)
        table = table.join(th.drop(columns=["coverage", "touches_border"]).rename(columns={"n_rays": "n_sei_rays"}))
    summary = summarize(table)
    if args.json:
        from .io import jsonable

        records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                   for r in jsonable(table.reset_index().to_dict(orient="records"))]
        doc = {"voxel_size": voxel_size, "particles": records,
               "summary": jsonable(summary.to_dict(orient="index"))}
        text = json.dumps(doc, indent=2)
    else:
        text = table.to_csv(float_format="%.6g")
    if args.output:
        from .io import atomic_path

        with atomic_path(args.output, argument="--output") as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    row = summary.loc["area_weighted"]
    print("area-weighted over %d particles (border excluded): %s" % (
        int(row["n_particles"]), ", ".join(f"{c} {row[c]:.3f}" for c in ("free", "cbd", "contact", "sei"))),
        file=sys.stderr)
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    if str(args.fused).lower().endswith(".toml"):  # a pipeline config: its segment stage, -o = run directory
        args.config = args.fused
        return _cmd_run(args, only=["segment"])
    if args.output is None:
        raise ValueError("--output: required when segmenting a fused volume file")
    from .io import check_writable, file_sha256, read_volume
    from .segment import label_particles, save_segmentation, segment

    out = check_writable(args.output, argument="--output")
    fused, attrs = read_volume(args.fused)
    voxel_size = args.voxel_size if args.voxel_size is not None else attrs.get("voxel_size")
    if voxel_size is None:
        raise ValueError("--voxel-size: the input carries no voxel_size attribute; give it in meters")
    resolution = tuple(args.resolution) if args.resolution else None
    cycled, channels, thresholds = args.cycled, args.channels, None
    if args.model:
        # the model of an earlier segmentation: this volume labeled the same way (a series of one session)
        from .segment import load_segmentation

        if resolution is not None:
            raise ValueError("--resolution: with --model the model's point-spread functions are used; give one or "
                             "the other")
        ref, _ = load_segmentation(args.model)
        if args.cycled and not ref.cycled:
            raise ValueError(f"--cycled: the --model segmentation {args.model!r} is of a pristine electrode (no SEI "
                             "level); segment without --model, or with a cycled one")
        if args.channels != "both" and args.channels != ref.channels:
            raise ValueError(f"--channels: the --model segmentation used {ref.channels!r}, not {args.channels!r}")
        cycled, channels, thresholds = ref.cycled, ref.channels, ref.thresholds
    bar = _Bar(enabled=not args.quiet)
    try:
        seg = segment(fused, voxel_size=float(voxel_size), cycled=cycled, channels=channels,
                      resolution=resolution, thresholds=thresholds, threads=args.threads, callback=bar)
    finally:
        bar.close()
    particles = None
    if not args.no_particles:
        particles = label_particles(seg.labels, voxel_size=seg.voxel_size, threads=args.threads)
    from .io import split_dataset_path

    source, _ = split_dataset_path(args.fused)
    parameters = {"cycled": cycled, "channels": channels, "resolution": resolution,
                  "voxel_size": float(voxel_size), "model": args.model}
    inputs = {str(source): file_sha256(source)} if source.is_file() else {}
    if args.model:
        inputs[str(args.model)] = file_sha256(args.model)
    save_segmentation(out, seg, particles=particles, parameters=parameters, inputs=inputs or None)
    fractions = ", ".join(f"{p.name.lower()} {f:.3f}" for p, f in seg.fractions().items())
    n = 0 if particles is None else int(particles.max())
    print(f"wrote {out}  (phase fractions: {fractions}; {n} silicon particles)")
    return 0


# ------------------------------------------------------------------------------------------- pipeline


class _StageBars:
    """One progress bar per stage, with a stage counter: ``[3/11] register``."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, index: int, count: int, stage: str) -> "_StageBar":
        return _StageBar(f"[{index + 1}/{count}] {stage}", self.enabled)


class _StageBar(_Bar):
    def __init__(self, prefix: str, enabled: bool, stream=None):
        super().__init__(enabled, stream)
        self._prefix = prefix
        self._describe(prefix)

    def __call__(self, fraction: float, message: str) -> None:
        super().__call__(fraction, f"{self._prefix}: {message}" if message else self._prefix)

    def close(self) -> None:
        if self._lines:
            self._write(f"{self._prefix}: done")
        super().close()


def _print_run(result, quiet: bool) -> None:
    if quiet:
        return
    for name, m in result.manifests.items():
        how = "skipped (up to date)" if name in result.skipped else (m.get("status") or "")
        wall = m.get("wall_s")
        print(f"  {name:<10} {how:<22} {'' if wall is None else f'{wall:8.1f} s'}")
    print(f"run directory: {result.run_dir}")
    report = result.run_dir / "report.html"
    if report.is_file():
        print(f"report: {report}")


def _cmd_run(args: argparse.Namespace, only=None) -> int:
    from . import pipeline

    result = pipeline.run(args.config, output=args.output, from_stage=getattr(args, "from_stage", None) or
                          (only[0] if only else None), only=only, cluster_size=args.workers, scheduler=args.scheduler,
                          progress=_StageBars(enabled=not args.quiet))
    _print_run(result, args.quiet)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline import demo

    result = demo(args.output, quick=args.quick, cluster_size=args.workers, seed=args.seed, threads=args.threads,
                  progress=_StageBars(enabled=not args.quiet))
    if not args.quiet:
        rows = [(q.name, q.unit, q.measured, q.truth, q.difference, q.source) for q in result.quantities]
        width = max(len(r[0]) for r in rows)

        def f(x):
            return "" if x is None else f"{x:10.4g}"

        print(f"{'quantity':<{width}}  {'unit':<4} {'measured':>10} {'truth':>10} {'difference':>10}  truth from")
        for name, unit, m, t, d, src in rows:
            print(f"{name:<{width}}  {unit:<4} {f(m)} {f(t)} {f(d)}  {src}")
        print(f"demo finished in {result.wall_s:.0f} s; rerun one sample with: tomofuse run "
              f"{result.runs['cycled'].run_dir.parent / 'config.toml'}")
        print(f"report: {result.report}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from . import pipeline

    max_memory = None if args.max_memory is None else _parse_bytes(args.max_memory)
    rep = pipeline.check(args.config, max_memory=max_memory)
    print(f"{args.config}: config and inputs OK")
    for note in rep.notes:
        print(f"  {note}")
    gib = float(1 << 30)
    avail = "unknown" if rep.available is None else f"{rep.available / gib:.3g} GiB"
    print(f"stages (estimated peak memory; available {avail}):")
    for stage, why in rep.plan.items():
        if why != "run":
            print(f"  {stage:<10} -            ({why})")
            continue
        est = rep.memory.get(stage)
        flag = "" if est is None or rep.available is None or est <= rep.available else "  TOO LARGE"
        print(f"  {stage:<10} {'' if est is None else f'{est / gib:8.3g} GiB'}{flag}")
    if not rep.fits:
        print("tomofuse check: error: some stages need more memory than available; run on a cluster "
              "(--workers/--scheduler) or a larger node", file=sys.stderr)
        return 2
    return 0


def _parse_bytes(text: str) -> float:
    units = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 1024, "mi": 1024 ** 2, "gi": 1024 ** 3,
             "ti": 1024 ** 4}
    t = text.strip().lower().rstrip("b")
    num = t.rstrip("kmgti")
    unit = t[len(num):]
    try:
        return float(num) * units[unit]
    except (ValueError, KeyError):
        raise ValueError(f"--max-memory: expected bytes such as 8e9, 16GB or 16GiB, got {text!r}") from None


def _cmd_config(args: argparse.Namespace) -> int:
    from . import pipeline

    sys.stdout.write(pipeline.template(args.template))
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline config (TOML); `tomofuse config --template demo` prints one")
    p.add_argument("-o", "--output", default=None, help="run directory (default: the config's run.output)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="start a local Dask cluster of N workers")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="join an existing Dask scheduler")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="log to the terminal too; tracebacks of errors")


def _cmd_info(args: argparse.Namespace) -> int:
    import h5py

    with h5py.File(args.file, "r") as f:
        for key, value in sorted(f.attrs.items()):
            print(f"{key}: {value}")
        f.visititems(lambda name, obj: print(f"/{name}: {obj.shape} {obj.dtype}")
                     if isinstance(obj, h5py.Dataset) else None)
    return 0


class _Version(argparse.Action):
    """``--version``: the package version, then what a bug report needs of the compiled core
    (loaded only here, so that building the parser stays cheap)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from . import _core

        threading = f"OpenMP, {_core.default_threads()} threads" if _core.openmp_enabled() else "serial"
        sys.stdout.write(f"tomofuse {__version__}\ncore: FFT {_core.fft_backend()}; {threading}\n")
        parser.exit()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tomofuse",
        description="Multimodal (PXCT + TXTM) nanotomography of battery electrodes.",
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version and the compiled core's FFT library and threading, then exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    p = sub.add_parser("phantom", help="generate a synthetic electrode with exact ground truth",
                       description="Generate a synthetic graphite/SiOx electrode (HDF5) and a PNG preview.")
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=[128, 128, 128],
                   help="volume shape in voxels (default 128 128 128)")
    p.add_argument("--voxel-size", type=float, default=21.4e-9, metavar="M",
                   help="voxel edge in meters (default 21.4e-9, the paper's PXCT voxel)")
    p.add_argument("--cycled", action="store_true", help="add the SEI of a cycled electrode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--porosity", type=float, default=None, help="pore volume fraction (default 0.35)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: the package default)")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--preview", default=None, help="preview PNG (default: output with .png)")
    p.add_argument("--no-preview", action="store_true", help="do not write the PNG preview")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_phantom)

    a = sub.add_parser("analyze", help="analyze a segmented volume (surface coverage, SEI thickness)")
    asub = a.add_subparsers(dest="analysis", metavar="<analysis>", required=True)
    c = asub.add_parser("coverage", help="per-particle surface coverage (free / CBD / contact / SEI)",
                        description="Ray-traced surface coverage of every particle; CSV (default) or JSON.")
    c.add_argument("labels", help="label volume: file.h5:/labels (a tomofuse phantom file works as is) or .npy")
    c.add_argument("--particles", default=None, help="particle ids (default: /particles of the labels file)")
    c.add_argument("--voxel-size", type=float, default=None, metavar="M",
                   help="voxel edge in meters (default: the file's voxel_size attribute)")
    c.add_argument("--thickness", action="store_true", help="add SEI thickness statistics")
    fmt = c.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV table (default)")
    fmt.add_argument("--json", action="store_true", help="JSON with the table and the summary")
    c.add_argument("-o", "--output", default=None, help="write to a file instead of stdout")
    c.add_argument("--threads", type=int, default=None)
    c.set_defaults(func=_cmd_analyze_coverage)

    sg = sub.add_parser("segment", help="segment a fused PXCT + TXTM volume into pore/graphite/silicon/CBD/SEI",
                        description="Segment a fused (2, z, y, x) volume (channel 0 PXCT, delta-like; channel 1 "
                        "TXTM, beta-like; NaN outside the TXTM field of view) and label the silicon particles. "
                        "Writes /labels, /valid, /particles and the fitted model, atomically with provenance.")
    sg.add_argument("fused", help="fused volume: file.h5[:/dataset], store.zarr or .npy; or a pipeline config "
                    "(CONFIG.toml: run the pipeline's segment stage, -o = run directory)")
    sg.add_argument("-o", "--output", default=None, help="output HDF5 file (run directory with a config)")
    sg.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    sg.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sg.add_argument("--scheduler", default=None, help=argparse.SUPPRESS)
    sg.add_argument("--cycled", action="store_true", help="the electrode was cycled: look for an SEI on silicon")
    sg.add_argument("--channels", choices=("both", "pxct", "txtm"), default="both",
                    help="which channels to use (single-modality baselines; default both)")
    sg.add_argument("--resolution", type=float, nargs=2, metavar=("PXCT", "TXTM"), default=None,
                    help="resolution (FWHM, meters) of the two volumes, e.g. from FSC (default: estimated)")
    sg.add_argument("--voxel-size", type=float, default=None, metavar="M",
                    help="voxel edge in meters (default: the file's voxel_size attribute)")
    sg.add_argument("--model", default=None, metavar="SEGMENTATION.h5",
                    help="label with the phase model of an earlier segmentation (this command's output) instead "
                         "of fitting one: the volumes of a series labeled the same way (its --cycled and "
                         "--channels too); the volume it was fitted on gets the same labels again")
    sg.add_argument("--no-particles", action="store_true", help="do not label silicon particles")
    sg.add_argument("--threads", type=int, default=None)
    sg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sg.set_defaults(func=_cmd_segment)

    r = sub.add_parser("run", help="run the pipeline of a config (resumes; skips stages that are up to date)",
                       description="Run the pipeline's stages into a run directory: one folder and manifest.json "
                       "per stage, the resolved config, run.log, report.html and summary.json. A rerun skips the "
                       "stages whose parameters and inputs are unchanged and whose outputs verify.")
    _add_run_options(r)
    r.add_argument("--from", dest="from_stage", default=None, metavar="STAGE",
                   help="rerun this stage and every later one")
    r.set_defaults(func=_cmd_run)

    dm = sub.add_parser("demo", help="the paper's whole study on a synthetic electrode: raw files to report",
                        description="Simulate a pristine and a cycled electrode imaged by PXCT and TXTM (CXI and "
                        "Data Exchange files with their config.toml), run the pipeline on each, and write "
                        "report.html and summary.json with every measured number beside the truth.")
    dm.add_argument("-o", "--output", default="tomofuse-demo", help="output directory (default: tomofuse-demo)")
    dm.add_argument("--quick", action="store_true", help="the small size (about 1.5 minutes on 2 cores)")
    dm.add_argument("--workers", type=int, default=None, help="run on a local Dask cluster of N workers")
    dm.add_argument("--seed", type=int, default=0, help="seed of the phantoms and the noise")
    dm.add_argument("--threads", type=int, default=None, help="threads per stage (default: all cores)")
    dm.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no table")
    dm.set_defaults(func=_cmd_demo)

    ck = sub.add_parser("check", help="validate a config and its inputs, estimate memory; runs nothing")
    ck.add_argument("config")
    ck.add_argument("--max-memory", default=None, metavar="BYTES",
                    help="memory budget (e.g. 64GiB; default: what this machine has available)")
    ck.set_defaults(func=_cmd_check)

    cf = sub.add_parser("config", help="print a commented config template")
    cf.add_argument("--template", required=True, choices=("pxct-txtm", "demo"),
                    help="pxct-txtm: real data (edit the paths); demo: simulated files")
    cf.set_defaults(func=_cmd_config)

    from .pipeline import STAGE_HELP

    for stage, text in STAGE_HELP.items():
        if stage == "segment":
            continue  # `tomofuse segment` takes a fused volume or a config (below)
        sp = sub.add_parser(stage, help=f"pipeline stage: {text}",
                            description=f"Run the pipeline stage {stage!r} of a config ({text}); the "
                            "stages before it must have run into the same run directory, or the config gives "
                            "its input. Same code path as `tomofuse run`.")
        _add_run_options(sp)
        sp.set_defaults(func=lambda a, n=stage: _cmd_run(a, only=[n]))

    i = sub.add_parser("info", help="print the attributes and datasets of a tomofuse HDF5 file")
    i.add_argument("file")
    i.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``tomofuse`` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the pipeline logs INFO to run.log, not to the terminal
        handler.setLevel(level)
    if args.command is None:
        parser.print_help()
        return 0
    from .pipeline import StageError

    try:
        return args.func(args)
    except StageError as exc:
        if args.verbose:
            import traceback

            traceback.print_exception(exc.cause)
        print(f"tomofuse {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, KeyError) as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"tomofuse {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tomofuse {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
