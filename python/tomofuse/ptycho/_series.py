"""A tomographic series of ptychographic scans: one independent, checkpointed reconstruction per projection.

Every projection is reconstructed by :func:`tomofuse.ptycho.reconstruct` with
its own checkpoint in a work directory, in-process or as tasks on a Dask
cluster; the caller's process is the only writer of the output stack and
writes each projection as it finishes, setting its ``done`` flag only after
its data are on disk.  Calling again with the same output skips finished
projections and resumes the others from their checkpoints.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .._dask import check_client, run_bounded, task_threads, worker_threads_per_host
from .._progress import Progress, ProgressCallback
from .. import _validate as check
from ._options import DMOptions
from ._reconstruct import _engines, default_object_shape, defocus_search, reconstruct, refocus_probe

__all__ = ["reconstruct_series"]

logger = logging.getLogger(__name__)

_SERIES_FORMAT = 1
_PROGRAM = "tomofuse.ptycho.reconstruct_series"
#: reconstruct's options that reconstruct_series sets itself (or that belong to one projection).
_OWN = ("object_shape", "engines", "checkpoint", "checkpoint_every", "callback", "threads")
_OPTIONS = tuple(n for n, p in inspect.signature(reconstruct).parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _OWN)


# ---------------------------------------------------------------------------------------- sources


def _pixel_pitch(object_pixel_size) -> np.ndarray:
    """``object_pixel_size`` (one value or ``(y, x)``, meters) as a (2,) float64 array."""
    try:
        ps = None if isinstance(object_pixel_size, bool) else np.atleast_1d(np.asarray(object_pixel_size,
                                                                                        dtype=np.float64))
    except (TypeError, ValueError):
        ps = None
    if ps is None or ps.ndim != 1 or ps.size not in (1, 2) or not np.all(np.isfinite(ps)) or np.any(ps <= 0):
        raise ValueError(f"object_pixel_size must be one positive size or (y, x) sizes in meters, "
                         f"got {object_pixel_size!r}")
    return np.array([ps[0], ps[-1]], dtype=np.float64)


def _cxi_positions_px(positions_m: np.ndarray, pitch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object pixels relative to the scan's mean position, and that mean (meters)."""
    offset = positions_m.mean(axis=0)
    return (positions_m - offset) / pitch, offset


def _cxi_header(path: Path, pitch: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """``(K, N, positions_px, offset_m)`` of a CXI scan without reading its patterns."""
    from ..io import read_cxi_header

    try:
        h = read_cxi_header(path)
    except (KeyError, ValueError) as exc:
        raise type(exc)(f"scans: {exc.args[0] if exc.args else exc}") from None
    if h.pattern_shape[0] != h.pattern_shape[1]:
        raise ValueError(f"scans: the patterns in {str(path)!r} must be (K, N, N), got shape "
                         f"{(h.n_patterns, *h.pattern_shape)}")
    pos, offset = _cxi_positions_px(h.positions, pitch)
    return h.n_patterns, h.pattern_shape[0], pos, offset


class _Source:
    """One projection's scan as the client sees it (a CXI path or arrays in memory)."""

    def __init__(self, index: int, scan, pitch: Optional[np.ndarray]):
        from ..io import array_sha256

        self.offset_m = np.zeros(2)
        if isinstance(scan, (str, os.PathLike)):
            path = Path(scan).expanduser().absolute()
            if not path.is_file():
                raise FileNotFoundError(f"scans[{index}]: no such CXI file {str(path)!r}")
            if pitch is None:
                raise ValueError("scans given as CXI files need object_pixel_size= (meters) to "
                                 "convert their positions to object pixels")
            self.kind, self.path, self.data = "cxi", str(path), None
            self.k, self.n, self.positions, self.offset_m = _cxi_header(path, pitch)
            self.fingerprint = f"cxi:{self.path}:{path.stat().st_size}"
            return
        if isinstance(scan, np.ndarray) or not isinstance(scan, Sequence) or len(scan) != 2:
            raise TypeError(f"scans[{index}] must be a CXI file path or an (intensities, positions_px) pair, "
                            f"got {type(scan).__name__}")
        data, positions = scan
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "fiu" or data.ndim != 3 \
                or data.shape[1] != data.shape[2] or 0 in data.shape:
            raise ValueError(f"scans[{index}]: intensities must be a non-empty real (K, N, N) ndarray, got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
        try:
            pos = np.array(positions, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"scans[{index}]: positions_px must be a (K, 2) array of (y, x) pixels") from None
        if pos.shape != (data.shape[0], 2) or not np.all(np.isfinite(pos)):
            raise ValueError(f"scans[{index}]: positions_px must be finite with shape ({data.shape[0]}, 2) to "
                             f"match the intensities, got {pos.shape}")
        self.kind, self.path, self.data, self.positions = "array", None, data, pos
        self.k, self.n = data.shape[0], data.shape[1]
        self.fingerprint = f"array:{array_sha256(data)}:{array_sha256(pos)}"


def _load(kind: str, data, positions, pitch, options: dict):
    """``(intensities, positions_px, options)`` of one projection, where the task runs."""
    if kind == "array":
        return data, positions, options
    from ..io import read_cxi

    scan = read_cxi(data)
    pos, _ = _cxi_positions_px(scan.positions, pitch)
    if scan.mask is not None and "mask" not in options:
        options = {**options, "mask": scan.mask}
    return scan.data, pos, options


def _task(index: int, kind: str, data, positions, pitch, probe, options: dict, checkpoint: str, threads,
          callback=None):
    """One projection (in-process or on a worker): reconstruct it with its own checkpoint."""
    intensities, pos, opts = _load(kind, data, positions, pitch, options)
    rec = reconstruct(intensities, pos, probe, checkpoint=checkpoint, callback=callback,
                      threads=task_threads(threads), **opts)
    return index, rec


# ----------------------------------------------------------------------------------------- output


class _Stack:
    """The output stack, HDF5 or Zarr (one writer: the calling process)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt

    # -- creation (atomic) and checks of an existing stack
    def create(self, p: int, shape, probe_shape, angles: np.ndarray, sources: list[str], meta: dict) -> None:
        from ..io import atomic_directory, atomic_path

        if self.fmt == "hdf5":
            import h5py

            from ..io import set_h5_attrs

            with atomic_path(self.path, argument="out") as tmp:
                with h5py.File(tmp, "w") as f:
                    set_h5_attrs(f, meta)
                    f.create_dataset("object", shape=(p, *shape), dtype=np.complex64, chunks=(1, *shape),
                                     fillvalue=np.complex64(0))
                    f.create_dataset("probe", shape=(p, *probe_shape), dtype=np.complex64,
                                     chunks=(1, *probe_shape), fillvalue=np.complex64(0))
                    f.create_dataset("illumination", shape=(p, *shape), dtype=np.float32, chunks=(1, *shape),
                                     fillvalue=np.float32(0))
                    f.create_dataset("angles", data=angles).attrs["units"] = "rad"
                    f.create_dataset("done", data=np.zeros(p, bool))
                    f.create_dataset("sources", data=np.array(sources, dtype=h5py.string_dtype()))
                    f.create_group("positions").attrs["units"] = "object pixels from the object center (y, x)"
                    f.create_group("errors")
        else:
            from ..io import jsonable, require_zarr

            zarr = require_zarr()
            with atomic_directory(self.path, argument="out") as tmp:
                root = zarr.open_group(store=str(tmp), mode="w-", zarr_format=3)
                root.attrs.update(jsonable(meta))
                for name, dims, dtype in (("object", shape, np.complex64), ("probe", probe_shape, np.complex64),
                                          ("illumination", shape, np.float32)):
                    root.create_array(name, shape=(p, *dims), dtype=dtype, chunks=(1, *dims), fill_value=0,
                                      compressors=None)
                a = root.create_array("angles", shape=(p,), dtype=np.float64, chunks=(p,))
                a[...] = angles
                a.attrs["units"] = "rad"
                root.create_array("done", shape=(p,), dtype=bool, chunks=(1,), fill_value=False)
                root.attrs["sources"] = list(sources)
                root.create_group("positions").attrs["units"] = "object pixels from the object center (y, x)"
                root.create_group("errors")

    def read_state(self) -> dict[str, Any]:
        if self.fmt == "hdf5":
            import h5py

            from ..io import plain_attrs

            with h5py.File(self.path, "r") as f:
                return {"attrs": plain_attrs(dict(f.attrs)), "object": f["object"].shape, "probe": f["probe"].shape,
                        "angles": f["angles"][()], "done": f["done"][()].astype(bool),
                        "sources": [s.decode() if isinstance(s, bytes) else str(s) for s in f["sources"][()]]}
        from ..io import require_zarr

        root = require_zarr().open_group(store=str(self.path), mode="r")
        attrs = dict(root.attrs)
        return {"attrs": attrs, "object": root["object"].shape, "probe": root["probe"].shape,
                "angles": root["angles"][...], "done": np.asarray(root["done"][...], bool),
                "sources": list(attrs.get("sources", []))}

    # -- one projection, then its flag
    def write(self, i: int, rec, offset_m: np.ndarray) -> None:
        name = f"{i:05d}"
        if self.fmt == "hdf5":
            import h5py

            with h5py.File(self.path, "r+") as f:
                f["object"][i] = rec.object
                f["probe"][i] = rec.probe
                f["illumination"][i] = rec.illumination
                for group in ("positions", "errors"):
                    if name in f[group]:  # a write interrupted before its flag was set
                        del f[group][name]
                d = f["positions"].create_dataset(name, data=rec.positions_px)
                d.attrs["offset_m"] = offset_m
                g = f["errors"].create_group(name)
                for s, (engine, errs) in enumerate(rec.errors):
                    g.create_dataset(str(s), data=np.asarray(errs, np.float64)).attrs["engine"] = engine
                f.flush()
                f["done"][i] = True
                f.flush()
            return
        from ..io import require_zarr

        root = require_zarr().open_group(store=str(self.path), mode="r+")
        root["object"][i] = rec.object
        root["probe"][i] = rec.probe
        root["illumination"][i] = rec.illumination
        pos = root["positions"].create_array(name, shape=rec.positions_px.shape, dtype=np.float64,
                                             chunks=rec.positions_px.shape, overwrite=True)
        pos[...] = rec.positions_px
        pos.attrs["offset_m"] = [float(v) for v in offset_m]
        g = root["errors"].require_group(name)
        for s, (engine, errs) in enumerate(rec.errors):
            e = np.asarray(errs, np.float64)
            a = g.create_array(str(s), shape=e.shape, dtype=np.float64, chunks=(max(1, e.size),), overwrite=True)
            a[...] = e
            a.attrs["engine"] = engine
        root["done"][i] = True  # its own chunk: written after the data above


# ------------------------------------------------------------------------------------ the series


def _parameters_key(parameters: dict) -> str:
    from ..io import jsonable

    return json.dumps(jsonable(parameters), sort_keys=True)


def reconstruct_series(scans, probe: np.ndarray, *, out: str | os.PathLike, angles, client=None,
                       work_dir: Optional[str | os.PathLike] = None,
                       object_shape: Optional[Sequence[int]] = None,
                       engines=(("dm", 800), ("ml", 800)), checkpoint_every: int = 50,
                       callback: Optional[ProgressCallback] = None, threads: Optional[int] = None,
                       object_pixel_size=None, keep_checkpoints: bool = False, **reconstruct_options) -> Path:
    """Reconstruct every projection of a ptychographic tomography series into one stack, resumably.

    Each projection is an independent :func:`reconstruct` with its own
    checkpoint ``work_dir / f"proj_{i:05d}.h5"``, run in this process one after
    the other, or as tasks on a Dask cluster. This process is the only writer
    of ``out``: it writes each projection as soon as it finishes (object,
    probe, illumination, positions, errors), flushes, and only then sets the
    projection's ``done`` flag. Calling again with the same ``out`` skips the
    projections whose flag is set (they are not recomputed) and resumes the
    others from their checkpoints, so a killed run loses at most
    ``checkpoint_every`` iterations per running projection. Every projection
    equals, bit for bit, ``reconstruct`` called on it alone with the same
    options (and ``object_shape``) -- but for the defocus search of the
    initial probe (``DMOptions.defocus_search``): the probe is shared, so the
    series searches once, on the first projection, when it creates ``out``
    (stored as its attribute ``defocus_fraction``), and every projection is
    ``reconstruct(..., probe=refocus_probe(probe, defocus_fraction),
    dm=replace(dm, defocus_search=0))``. That saves the search's DM
    iterations (7 x 20 with the defaults) on every other projection.

    Parameters
    ----------
    scans : sequence
        One element per projection, each either

        - a CXI file path (``tomofuse.io.write_cxi`` layout); its positions
          (meters) are converted to object pixels with ``object_pixel_size`` and
          taken relative to the scan's mean position (CXI translations are
          often absolute stage coordinates, which would put the scan far
          from the object's center; the subtracted mean, meters ``(y, x)``,
          is stored as attribute ``offset_m`` of the projection's
          positions). The file's mask is used unless ``mask`` is passed.
          Only the path travels to a cluster task: the file must be
          readable where the task runs.
        - an ``(intensities, positions_px)`` pair: ``(K, N, N)`` counts and
          ``(K, 2)`` positions ``(y, x)`` in object pixels relative to the
          object center, as :func:`reconstruct` takes them (used as given).

        ``N`` must be the same for all projections; ``K`` may differ.
    probe : (N, N) or (M, N, N) complex ndarray
        Initial probe for every projection (see :func:`reconstruct`).
    out : str or path-like
        Output stack, HDF5 (``.h5``, ``.hdf5``) or Zarr 3 (``.zarr``, needs
        ``zarr>=3``), created atomically on the first call and updated in
        place afterwards. ``P`` projections, object ``(H, W)``, ``modes``
        probe modes::

            object        (P, H, W) complex64       zeros until done
            probe         (P, modes, N, N) complex64
            illumination  (P, H, W) float32         sum_k |P|^2 (see Reconstruction)
            angles        (P,) float64              radians
            done          (P,) bool
            positions/ii  (K_i, 2) float64          final (y, x), object pixels; attr offset_m
            errors/ii/s   per engine stage s, attr engine (see Reconstruction.errors)
            sources       (P,) str (HDF5) / attr (Zarr): what each projection was made from

        with ``ii = f"{i:05d}"`` and provenance attributes
        (``tomofuse.io.provenance``) on the file / root group. On a cluster
        only this process writes it; it need not be visible to the workers.
    angles : (P,) array_like
        Rotation angle of each projection, radians (stored).
    client : distributed.Client, optional
        Run the projections as tasks on this Dask cluster (at most two per
        worker thread in flight; results gathered with
        ``distributed.as_completed``). None runs them in this process.
    work_dir : str or path-like, optional
        Directory of the per-projection checkpoints; default ``out + ".work"``.
        Created if missing; on a cluster it must be on a file system shared
        by the workers.
    object_shape : (int, int), optional
        ``(H, W)`` of every projection's object; default the union of
        :func:`default_object_shape` over all scans, so the stack is regular.
    engines : sequence of (str, int)
        Engine stages of :func:`reconstruct`.
    checkpoint_every : int
        Iterations between checkpoints of a projection.
    callback : callable, optional
        ``callback(fraction, message)``: in-process, during each projection;
        on a cluster, when each projection is written.
    threads : int, optional
        Core threads per projection. Default: in-process the core's default;
        on a cluster a host's CPUs divided by the worker threads on it. The
        results do not depend on it.
    object_pixel_size : float or (float, float), optional
        Object pixel size, meters (``tomofuse.ptycho.object_pixel_size``), one value
        or ``(y, x)``; required when ``scans`` holds CXI paths.
    keep_checkpoints : bool
        Keep a projection's checkpoint after it is written to ``out``
        (default: remove it, and ``work_dir`` once empty).
    **reconstruct_options
        Further keyword options of :func:`reconstruct` (``probe_modes``,
        ``subpixel_steps``, ``mask``, ``dm``, ``ml``, ``refine_positions``, ``holdout``,
        ``seed``), the same for every projection.

    Returns
    -------
    Path
        ``out`` (absolute).

    Raises
    ------
    TypeError, ValueError
        For bad arguments; ValueError also if ``out`` exists but was made
        from a different series (number of projections, shapes, angles,
        scans or options): remove it or choose another ``out``.
    FileNotFoundError
        For a missing CXI file or output directory.
    """
    from ..io import array_sha256, provenance

    # ---- arguments
    unknown = sorted(set(reconstruct_options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected option(s) {unknown}; reconstruct_series passes {list(_OPTIONS)} to reconstruct"
                        " (checkpoints and callbacks are its own)")
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise TypeError(f"out must be a path ending in .h5, .hdf5 or .zarr, got {out!r}")
    out_path = Path(out).expanduser().absolute()
    suffix = out_path.suffix.lower()
    if suffix not in (".h5", ".hdf5", ".zarr"):
        raise ValueError(f"out must end in .h5, .hdf5 (HDF5) or .zarr (Zarr), got {os.fspath(out)!r}")
    fmt = "zarr" if suffix == ".zarr" else "hdf5"
    if fmt == "zarr":
        from ..io import require_zarr

        require_zarr()  # a clear ImportError before any work
    if isinstance(scans, (str, os.PathLike, np.ndarray)) or not isinstance(scans, Sequence):
        raise TypeError("scans must be a sequence with one CXI path or (intensities, positions_px) pair per "
                        f"projection, got {type(scans).__name__}")
    if len(scans) == 0:
        raise ValueError("scans is empty: give at least one projection")
    p = len(scans)
    try:
        th = np.array(angles, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"angles must be a (P,) array of radians, got {type(angles).__name__}") from None
    if th.size != p:
        raise ValueError(f"angles: expected {p} angles (one per scan), got {th.size}")
    if not np.all(np.isfinite(th)):
        raise ValueError("angles must be finite (radians)")
    if not isinstance(probe, np.ndarray) or probe.dtype.kind not in "fc" or probe.ndim not in (2, 3) \
            or probe.shape[-1] != probe.shape[-2]:
        raise TypeError("probe must be a complex (N, N) or (M, N, N) numpy.ndarray")
    stages = _engines(engines)
    check.integer(checkpoint_every, "checkpoint_every", minimum=1)
    if threads is not None:
        check.threads(threads)
    modes = check.integer(reconstruct_options.get("probe_modes", 1), "probe_modes", minimum=1)
    check_client(client)
    progress = Progress(callback, logger)
    pitch = None if object_pixel_size is None else _pixel_pitch(object_pixel_size)

    sources = [_Source(i, s, pitch) for i, s in enumerate(scans)]
    n = probe.shape[-1]
    bad = [i for i, s in enumerate(sources) if s.n != n]
    if bad:
        raise ValueError(f"scans: every pattern must be {n} x {n} like the probe; scans {bad[:10]} are not")
    if object_shape is None:
        shapes = np.array([default_object_shape(s.positions, n) for s in sources])
        shape = (int(shapes[:, 0].max()), int(shapes[:, 1].max()))
    else:
        shape = tuple(int(v) for v in object_shape)
        if len(shape) != 2 or min(shape) < n:
            raise ValueError(f"object_shape must be (H, W) with H, W >= N = {n}, got {object_shape!r}")
    probe_shape = (modes, n, n)

    # ---- parameters (what makes two runs the same series) and the output
    def key_value(v):
        return f"sha256:{array_sha256(v)}" if isinstance(v, np.ndarray) else v

    parameters = {"engines": stages, "object_shape": list(shape), "projections": p,
                  "object_pixel_size": None if pitch is None else pitch.tolist(),
                  "options": {k: key_value(v) for k, v in sorted(reconstruct_options.items())}}
    inputs = {"probe": array_sha256(probe), "angles": array_sha256(th)}
    fingerprints = [s.fingerprint for s in sources]
    stack = _Stack(out_path, fmt)
    options = {**reconstruct_options, "object_shape": shape, "engines": stages,
               "checkpoint_every": int(checkpoint_every)}
    fraction = None  # the series' defocus search: None = each projection its own (stacks of older versions)
    if os.path.lexists(out_path):
        state = stack.read_state()
        problems = []
        if state["attrs"].get("program") != _PROGRAM:
            problems.append(f"it was not written by {_PROGRAM}")
        elif tuple(state["object"]) != (p, *shape) or tuple(state["probe"]) != (p, *probe_shape):
            problems.append(f"it holds objects {tuple(state['object'])} and probes {tuple(state['probe'])}, "
                            f"this series {(p, *shape)} and {(p, *probe_shape)}")
        elif not np.array_equal(state["angles"], th):
            problems.append("its angles differ")
        elif state["attrs"].get("parameters") != _parameters_key(parameters):
            problems.append(f"its parameters differ ({state['attrs'].get('parameters')} vs "
                            f"{_parameters_key(parameters)})")
        elif json.loads(state["attrs"].get("inputs", "{}")) != inputs:
            problems.append("its probe differs")
        elif state["sources"] != fingerprints:
            differ = [i for i, (a, b) in enumerate(zip(state["sources"], fingerprints)) if a != b]
            problems.append(f"the scans of projections {differ[:10]} differ")
        if problems:
            raise ValueError(f"out: {str(out_path)!r} exists but belongs to another series: {problems[0]}; "
                             "remove it or choose another out")
        done = state["done"]
        if "defocus_fraction" in state["attrs"]:
            fraction = float(state["attrs"]["defocus_fraction"])
        logger.info("reconstruct_series: %s has %d of %d projections done", out_path, int(done.sum()), p)
    else:
        meta = provenance(parameters=parameters, inputs=inputs, program=_PROGRAM)
        meta["format"] = _SERIES_FORMAT
        s0 = sources[0]
        intensities, pos, opts = _load(s0.kind, s0.data if s0.kind == "array" else s0.path, s0.positions, pitch,
                                       options)
        fraction = defocus_search(intensities, pos, probe, threads=task_threads(threads), **opts)
        del intensities
        meta["defocus_fraction"] = fraction
        stack.create(p, shape, probe_shape, th, fingerprints, meta)
        done = np.zeros(p, bool)
    if fraction is not None:
        from dataclasses import replace

        if fraction != 0.0:
            logger.info("reconstruct_series: every projection starts from the probe refocused by %+.2f of its beam "
                        "diameter (defocus search on projection 0)", fraction)
            probe = refocus_probe(probe, fraction)
        options["dm"] = replace(options.get("dm", DMOptions()), defocus_search=0)
    work = Path(work_dir).expanduser().absolute() if work_dir is not None else Path(str(out_path) + ".work")
    todo = [i for i in range(p) if not done[i]]
    if not keep_checkpoints and work.is_dir():  # left by a run stopped between a write and its removal
        for i in np.flatnonzero(done):
            (work / f"proj_{i:05d}.h5").unlink(missing_ok=True)
    finished = p - len(todo)
    if todo:
        work.mkdir(parents=True, exist_ok=True)

    def checkpoint(i: int) -> str:
        return str(work / f"proj_{i:05d}.h5")

    def store(i: int, rec) -> None:
        nonlocal finished
        stack.write(i, rec, sources[i].offset_m)
        finished += 1
        logger.info("reconstruct_series: projection %d written (%d/%d)", i, finished, p)
        if not keep_checkpoints:
            Path(checkpoint(i)).unlink(missing_ok=True)

    logger.info("reconstruct_series: %d projections to reconstruct, %s", len(todo),
                "in-process" if client is None else f"on {sum(client.nthreads().values())} worker threads")
    progress.update(finished / p, f"{finished}/{p} projections")
    if client is None:
        for i in todo:
            s = sources[i]
            base = finished

            def inner(f, m, i=i, base=base):
                progress.update((base + f) / p, f"projection {i}: {m}")

            _, rec = _task(i, s.kind, s.data if s.kind == "array" else s.path, s.positions, pitch, probe, options,
                           checkpoint(i), threads, callback=inner if callback is not None else None)
            store(i, rec)
            progress.update(finished / p, f"{finished}/{p} projections")
    else:
        _run_on_cluster(client, todo, sources, pitch, probe, options, checkpoint, threads, store,
                        lambda: progress.update(finished / p, f"{finished}/{p} projections"))
    if not keep_checkpoints and work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    return out_path


def _run_on_cluster(client, todo, sources, pitch, probe, options, checkpoint, threads, store, report) -> None:
    if threads is None:
        threads = worker_threads_per_host(client)
    probe_future = client.scatter(probe, broadcast=True, hash=False)
    tag = os.urandom(4).hex()
    scattered = {}  # held until the projection is done (a dropped scatter future can be released early)

    def submit(i):
        s = sources[i]
        if s.kind == "array":
            data, positions = client.scatter(s.data, hash=False), s.positions
        else:
            data, positions = s.path, None  # read where the task runs
        fut = client.submit(_task, i, s.kind, data, positions, pitch, probe_future, options, checkpoint(i),
                            threads, pure=False, key=f"tomofuse-ptycho-series-{tag}-{i}")
        scattered[fut.key] = data
        return fut

    def handle(fut):
        i, rec = fut.result()  # raises the task's exception
        scattered.pop(fut.key, None)
        fut.release()
        store(i, rec)
        report()

    # Projections in flight keep their (atomic) checkpoints for the next call; do not wait for them.
    run_bounded(client, todo, submit, handle, on_error=client.cancel, catch=BaseException)
