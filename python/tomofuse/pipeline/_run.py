"""Running the stages: the run directory, per-stage manifests, resume, the Dask cluster.

A run directory holds one folder per stage (its outputs and ``manifest.json``), the resolved
config (``config.resolved.toml``), ``manifest.json`` (all stages) and ``run.log``.  A stage's
manifest is written ``running`` before it starts and ``done`` (with the hashes of its
outputs) only after every output is on disk, so a killed stage is never taken as finished;
every file is written to a temporary name and renamed.  A rerun skips a stage whose
parameters and inputs hash as before and whose outputs still hash as recorded; a stage that
runs makes every stage downstream of it run too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import resource
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ._config import Config, ConfigError, load_config
from ._stages import STAGE_ORDER, STAGES_BY_NAME, Context, plan

__all__ = ["RunResult", "StageError", "run", "run_stage"]

logger = logging.getLogger("tomofuse.pipeline")


class StageError(RuntimeError):
    """A stage failed while running (the CLI exits with code 1); names the stage and the log file."""

    def __init__(self, stage: str, log: Path, cause: BaseException):
        super().__init__(f"stage {stage!r} failed: {type(cause).__name__}: {cause} (see {log})")
        self.stage, self.log, self.cause = stage, log, cause


@dataclass
class RunResult:
    """What a run did.

    Attributes
    ----------
    run_dir : Path
    ran : list of str
        Stages that ran in this call.
    skipped : list of str
        Stages that were up to date (not run again).
    not_applicable : dict
        Stages outside this config, with the reason.
    manifests : dict
        ``stage -> manifest`` of every stage of the run.
    """

    run_dir: Path
    ran: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    not_applicable: dict = field(default_factory=dict)
    manifests: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------- hashing


def _sha256(path: Path, cache: dict) -> str:
    """SHA-256 of a file (or of a directory's files in order), cached by (size, mtime)."""
    from ..io import file_sha256

    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            h.update(_sha256(p, cache).encode())
        return h.hexdigest()
    st = path.stat()
    key = str(path)
    stamp = [st.st_size, st.st_mtime_ns]
    hit = cache.get(key)
    if hit and hit[0] == stamp:
        return hit[1]
    digest = file_sha256(path)
    cache[key] = [stamp, digest]
    return digest


def parameter_hash(config: Config, stage: str) -> str:
    """Hash of the config values that change ``stage``'s result."""
    s = STAGES_BY_NAME[stage]
    doc = {sec: config.section_for_hash(sec) for sec in s.sections}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, doc: Any) -> None:
    from ..io import atomic_path, jsonable

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(doc), indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _versions() -> dict:
    import numpy

    from .. import __version__, _core

    from importlib import metadata

    out = {"tomofuse": __version__, "fft": _core.fft_backend(), "python": platform.python_version(),
           "numpy": numpy.__version__}
    for dist in ("h5py", "scipy", "SimpleITK", "scikit-image", "dask", "distributed"):
        try:  # from the installed metadata: importing dask only to read its version costs 0.3 s
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class _PeakMemory:
    """Peak resident memory of this process while a stage runs (sampled every 20 ms)."""

    def __init__(self):
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def _loop(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _cpu_seconds() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _clear(folder: Path) -> None:
    """Remove everything in a stage's folder (outputs and inner checkpoints of other parameters)."""
    import shutil

    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _clean_partials(folder: Path) -> None:
    """Remove the temporary files an interrupted atomic write left (``.name.<hex>.part``)."""
    for p in folder.rglob(".*.part"):
        try:
            if p.is_dir():
                import shutil

                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
        except OSError:
            pass


# ------------------------------------------------------------------------------------------- run


def _check_output_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run.output / --output: cannot write to {str(run_dir)!r}: {exc.strerror or exc}") from None


def _log_handler(run_dir: Path) -> logging.Handler:
    h = logging.FileHandler(run_dir / "run.log")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    h.setLevel(logging.INFO)
    return h


def _client(cluster_size: Optional[int], scheduler: Optional[str], threads: Optional[int]):
    """A dask.distributed client (and the cluster it started), or (None, None)."""
    if not cluster_size and not scheduler:
        return None, None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--workers/--scheduler need dask.distributed (pip install 'tomofuse[dask]')") from None
    if scheduler:
        return Client(scheduler), None
    # one thread per worker: every task then uses its host's CPUs / worker threads (no oversubscription)
    cluster = LocalCluster(n_workers=int(cluster_size), threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def resolve_run_dir(config: Config, output: Optional[str | os.PathLike]) -> Path:
    if output is not None:
        return Path(output).expanduser().absolute()
    return Path(config["run"]["output"]).expanduser().absolute()


def run(config: str | os.PathLike | Config, *, output: Optional[str | os.PathLike] = None,
        from_stage: Optional[str] = None, only: Optional[Sequence[str]] = None, cluster_size: Optional[int] = None,
        scheduler: Optional[str] = None, client=None, progress: Optional[Callable[[int, int, str], Any]] = None,
        check_inputs: bool = True) -> RunResult:
    """Run the pipeline of a config, resuming where an earlier run stopped.

    Parameters
    ----------
    config : str, path-like or Config
        The TOML config (or one loaded by :func:`load_config`).
    output : str or path-like, optional
        Run directory (default: the config's ``run.output``).
    from_stage : str, optional
        Run this stage and every later one even if they are up to date.
    only : sequence of str, optional
        Run only these stages (their inputs must exist: from an earlier run or the config).
    cluster_size : int, optional
        Start a local Dask cluster of this many single-threaded worker processes (``--workers``).
    scheduler : str, optional
        Address of an existing Dask scheduler to join instead.
    client : distributed.Client, optional
        Use this client (overrides ``cluster_size`` and ``scheduler``).
    progress : callable, optional
        ``progress(index, count, stage)`` returns a ``callback(fraction, message)`` for that stage
        (with a ``close()`` method if it needs one); default: log messages.
    check_inputs : bool
        Validate the inputs first (:func:`tomofuse.pipeline.check`).

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError
        Bad config or inputs (nothing has run).
    StageError
        A stage failed; its manifest says ``failed``, the traceback is in ``run.log``.
    """
    from ._check import check as check_config

    cfg = config if isinstance(config, Config) else load_config(config)
    run_dir = resolve_run_dir(cfg, output)
    stages_plan = plan(cfg)
    for name, value in (("--from", from_stage), *((f"--only {s}", s) for s in (only or ()))):
        if value is not None and value not in STAGE_ORDER:
            import difflib

            close = difflib.get_close_matches(value, STAGE_ORDER, n=1)
            raise ConfigError(f"{name}: no stage {value!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        if value is not None and stages_plan[value] != "run":
            raise ConfigError(f"{name}: stage {value!r} is not part of this run ({stages_plan[value]})")
    if check_inputs:
        check_config(cfg, output=output)
    _check_output_dir(run_dir)
    handler = _log_handler(run_dir)
    pkg_logger = logging.getLogger("tomofuse")
    pkg_logger.addHandler(handler)
    old_level = pkg_logger.level
    if pkg_logger.getEffectiveLevel() > logging.INFO:
        pkg_logger.setLevel(logging.INFO)
    own = None
    cluster = None
    try:
        if client is None:
            own, cluster = _client(cluster_size, scheduler, None)
            client = own
        return _run(cfg, run_dir, stages_plan, from_stage, only, client, progress)
    finally:
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()
        pkg_logger.removeHandler(handler)
        pkg_logger.setLevel(old_level)
        handler.close()


def _run(cfg: Config, run_dir: Path, stages_plan: dict, from_stage, only, client, progress) -> RunResult:
    from ..io import atomic_path

    for p in run_dir.glob(".*.part"):  # left by a run killed while writing a top-level file
        if p.is_dir():
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    with atomic_path(run_dir / "config.resolved.toml") as tmp:
        tmp.write_text(cfg.to_toml())
    threads = cfg["run"]["threads"] or None
    cache_file = run_dir / ".hash-cache.json"
    cache = _read_json(cache_file) or {}
    result = RunResult(run_dir=run_dir, not_applicable={s: w for s, w in stages_plan.items() if w != "run"})
    todo = [s for s in STAGE_ORDER if stages_plan[s] == "run"]
    selected = [s for s in todo if only is None or s in only]
    forced = set(todo[todo.index(from_stage):]) if from_stage else set()
    ran: set = set()
    logger.info("run %s: stages %s", run_dir, ", ".join(selected))
    for k, name in enumerate(selected):
        stage = STAGES_BY_NAME[name]
        folder = run_dir / name
        folder.mkdir(exist_ok=True)
        ctx = Context(config=cfg, run_dir=run_dir, threads=threads, client=client, folder=folder)
        t_book = time.perf_counter()  # the pipeline's own work on this stage: hashing, manifests
        inputs = stage.inputs(ctx)
        missing = [f"{label} ({p})" for label, p in inputs.items() if not Path(p).exists()]
        if missing:
            raise ConfigError(f"stage {name}: missing input {missing[0]}; run the stages before it first")
        in_hashes = {label: {"path": str(p), "sha256": _sha256(Path(p), cache)} for label, p in inputs.items()}
        phash = parameter_hash(cfg, name)
        old = _read_json(folder / "manifest.json")
        upstream_ran = bool(ran.intersection(_ancestors(name)))
        if (name not in forced and not upstream_ran and old is not None and old.get("status") == "done"
                and old.get("parameter_hash") == phash
                and {k2: v["sha256"] for k2, v in old.get("inputs", {}).items()}
                == {k2: v["sha256"] for k2, v in in_hashes.items()}
                and _outputs_verify(run_dir, old, cache)):
            logger.info("[%d/%d] %s: up to date, skipped", k + 1, len(selected), name)
            result.skipped.append(name)
            result.manifests[name] = old
            if progress is not None:
                bar = progress(k, len(selected), name)
                bar(1.0, "up to date")
                getattr(bar, "close", lambda: None)()
            continue
        same_work = (old is not None and old.get("parameter_hash") == phash
                     and {k2: v["sha256"] for k2, v in old.get("inputs", {}).items()}
                     == {k2: v["sha256"] for k2, v in in_hashes.items()})
        if old is not None and old.get("status") in ("running", "failed") and same_work and name not in forced:
            logger.info("%s: resuming (inner checkpoints kept)", name)
            _clean_partials(folder)
        else:  # new parameters or inputs, a forced rerun or outputs that no longer verify: start afresh
            _clear(folder)
        manifest = {"stage": name, "status": "running", "parameter_hash": phash,
                    "parameters": {sec: cfg.section_for_hash(sec) for sec in stage.sections},
                    "inputs": in_hashes, "outputs": {}, "versions": _versions(), "start_utc": _now(),
                    "host": platform.node(), "pid": os.getpid(), "threads": threads,
                    "dask_workers": None if client is None else len(client.nthreads())}
        _write_json(folder / "manifest.json", manifest)
        book = time.perf_counter() - t_book
        logger.info("[%d/%d] %s: running", k + 1, len(selected), name)
        bar = progress(k, len(selected), name) if progress is not None else None
        ctx.callback = bar if bar is not None else (lambda f, m, n=name: logger.debug("%s %.0f%% %s", n, 100 * f, m))
        t0, c0 = time.perf_counter(), _cpu_seconds()
        try:
            with _PeakMemory() as mem, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                out = stage.run(ctx)
            for w in caught:  # into run.log and the manifest (and the terminal: WARNING level)
                logger.warning("%s: %s: %s", name, w.category.__name__, w.message)
            manifest["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        except ConfigError:
            manifest.update(status="failed", end_utc=_now())
            _write_json(folder / "manifest.json", manifest)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure inside a stage
            logger.exception("stage %s failed", name)
            manifest.update(status="failed", end_utc=_now(), error=f"{type(exc).__name__}: {exc}")
            _write_json(folder / "manifest.json", manifest)
            raise StageError(name, run_dir / "run.log", exc) from exc
        finally:
            if bar is not None:
                getattr(bar, "close", lambda: None)()
        t_book = time.perf_counter()
        outputs = {}
        for label, p in out["outputs"].items():
            p = Path(p)
            outputs[label] = {"path": str(p.relative_to(run_dir)), "sha256": _sha256(p, cache)}
        results = out.get("results", {})
        _write_json(folder / "results.json", results)
        outputs["results"] = {"path": str((folder / "results.json").relative_to(run_dir)),
                              "sha256": _sha256(folder / "results.json", cache)}
        manifest.update(status="done", outputs=outputs, results=results, end_utc=_now(),
                        wall_s=time.perf_counter() - t0, cpu_s=_cpu_seconds() - c0, peak_memory_bytes=mem.peak,
                        peak_memory_process_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        _write_json(cache_file, cache)
        manifest["bookkeeping_s"] = book + time.perf_counter() - t_book
        _write_json(folder / "manifest.json", manifest)
        ran.add(name)
        result.ran.append(name)
        result.manifests[name] = manifest
        logger.info("[%d/%d] %s: done in %.1f s", k + 1, len(selected), name, manifest["wall_s"])
        _write_top_manifest(run_dir, cfg, result)
    _write_json(cache_file, cache)
    for name in todo:
        if name not in result.manifests:
            m = _read_json(run_dir / name / "manifest.json")
            if m is not None:
                result.manifests[name] = m
    _write_top_manifest(run_dir, cfg, result)
    return result


def _ancestors(name: str) -> set:
    out: set = set()
    stack = list(STAGES_BY_NAME[name].upstream)
    while stack:
        s = stack.pop()
        if s not in out:
            out.add(s)
            stack.extend(STAGES_BY_NAME[s].upstream)
    return out


def _outputs_verify(run_dir: Path, manifest: dict, cache: dict) -> bool:
    for label, o in manifest.get("outputs", {}).items():
        p = run_dir / o["path"]
        if not p.exists():
            logger.info("%s: output %s is missing", manifest.get("stage"), p)
            return False
        cache.pop(str(p), None)  # verify: hash again
        if _sha256(p, cache) != o["sha256"]:
            logger.info("%s: output %s changed since the stage finished", manifest.get("stage"), p)
            return False
    return True


def _write_top_manifest(run_dir: Path, cfg: Config, result: RunResult) -> None:
    stages = {}
    for name in STAGE_ORDER:
        m = _read_json(run_dir / name / "manifest.json")
        if m is not None:
            stages[name] = {k: m.get(k) for k in ("status", "parameter_hash", "start_utc", "end_utc", "wall_s",
                                                  "cpu_s", "peak_memory_bytes")}
            stages[name]["manifest"] = f"{name}/manifest.json"
    _write_json(run_dir / "manifest.json", {"config": str(cfg.source), "resolved_config": "config.resolved.toml",
                                            "stages": stages, "not_applicable": result.not_applicable,
                                            "versions": _versions()})


def run_stage(config: str | os.PathLike | Config, stage: str, **kwargs) -> RunResult:
    """Run one stage of a config (the stages before it must have run, or their outputs be given).

    The same code path as :func:`run` with ``only=[stage]`` and ``from_stage=stage``.
    """
    return run(config, only=[stage], from_stage=stage, **kwargs)
