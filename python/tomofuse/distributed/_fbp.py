"""Slab-by-slab filtered back-projection into a Zarr volume, in-process or on a Dask cluster.

Parallel-beam FBP reconstructs each detector row into its own z slice, so a
stack of projections too large for memory is reconstructed in slabs of rows:
read ``projections[:, r0:r1, :]``, ``tomofuse.tomo.fbp`` (or
``fbp_phase_derivative``, whose filter also works along rows) it, write
``volume[r0:r1]``.  The output chunks are single z slices, so any slab covers
whole chunks and concurrent slab writes never touch the same chunk.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from .. import _validate as check
from .._dask import check_client, run_bounded, task_threads, worker_threads_per_host
from ..io import (array_sha256, atomic_directory, create_zarr, file_attributes, file_sha256, read_volume,
                  require_zarr, split_dataset_path, volume_format)
from ..tomo import FILTERS, fbp, fbp_phase_derivative

__all__ = ["fbp_to_zarr"]

logger = logging.getLogger(__name__)

#: fbp options that pass through (``threads`` and ``callback`` are fbp_to_zarr's own).
_FBP_OPTIONS = ("center", "filter", "padding", "shape")
#: Reconstruction algorithms: ``algorithm`` name -> function of ``tomofuse.tomo``.
ALGORITHMS = {"fbp": fbp, "phase_derivative": fbp_phase_derivative}
#: Default slab size: projection bytes read per task.
_SLAB_BYTES = 128 << 20


def _is_dask_array(obj) -> bool:
    return hasattr(obj, "__dask_graph__") and hasattr(obj, "shape") and hasattr(obj, "dtype") \
        and hasattr(obj, "rechunk")


def _read_rows(spec: str, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of every projection from a file (only that slab is read)."""
    volume, _ = read_volume(spec, lazy=True)
    try:
        return np.asarray(volume[:, r0:r1, :])
    finally:
        f = getattr(volume, "file", None)  # an open h5py dataset
        if f is not None and hasattr(f, "close"):
            f.close()


def _scaled(volume: np.ndarray, scale: float, dtype) -> np.ndarray:
    """``(volume * scale).astype(dtype)``, the expression the docstring promises (an in-memory
    reconstruction scaled the same way agrees bit for bit)."""
    return (volume * scale).astype(dtype)


def _reconstruct_slab(source, r0: int, r1: int, angles: np.ndarray, store: str, options: dict,
                      threads, algorithm: str = "fbp", scale: float = 1.0) -> tuple[int, int]:
    """One task: reconstruct rows ``r0:r1`` and write them into the Zarr array at ``store``."""
    slab = _read_rows(source, r0, r1) if isinstance(source, str) else np.asarray(source)
    volume = ALGORITHMS[algorithm](np.ascontiguousarray(slab), angles, threads=task_threads(threads), **options)
    arr = require_zarr().open_array(store=store, mode="r+")
    arr[r0:r1] = _scaled(volume, scale, arr.dtype)
    return r0, r1


def _check_options(fbp_options: dict) -> dict:
    unknown = sorted(set(fbp_options) - set(_FBP_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected fbp option(s) {unknown}; fbp_to_zarr passes {list(_FBP_OPTIONS)} to fbp")
    if "filter" in fbp_options and fbp_options["filter"] not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {fbp_options['filter']!r}")
    return dict(fbp_options)


def fbp_to_zarr(projections, angles, out_path: str | os.PathLike, *, client=None,
                rows_per_task: Optional[int] = None, threads: Optional[int] = None, overwrite: bool = False,
                attrs: Optional[Mapping[str, Any]] = None, algorithm: str = "fbp", scale: float = 1.0,
                callback=None, **fbp_options) -> Path:
    """Filtered back-projection slab by slab over detector rows, written to a Zarr volume.

    Detector rows are independent in parallel-beam geometry (row ``r`` becomes
    slice ``z = r``), so the stack is reconstructed ``rows_per_task`` rows at a
    time with ``tomofuse.tomo.fbp`` (or ``fbp_phase_derivative``) and only one
    slab per running task is in memory.  The result is bit-identical to
    ``fbp(projections, angles)`` (times ``scale``).

    Parameters
    ----------
    projections : (A, rows, cols) ndarray, dask array, or path
        Line integrals (e.g. after ``normalize`` and ``minus_log``), or for
        ``algorithm="phase_derivative"`` phase in radians, wrapped or not, or
        the complex transmission (as ptychography delivers it).  A path
        (``scan.h5:/exchange/data``, ``proj.zarr``, ``proj.npy``, ``proj.tif``)
        is opened lazily where each slab is reconstructed, so the stack never
        has to fit in memory; with a distributed cluster the path must be
        readable by every worker.
    angles : (A,) array_like
        Radians.
    out_path : str or path-like
        Output ``.zarr`` directory: a float32 (float64 for float64 input)
        array of shape ``(rows, y, x)`` in chunks of one z slice, with
        provenance attributes.  Written to a temporary directory next to it
        and renamed when complete (on a cluster it must be on a file system
        shared by the workers).
    client : distributed.Client, optional
        Run the slabs as tasks on this Dask cluster, at most two per worker
        thread in flight.  None runs them one after the other in this process
        (each with all the core's threads), which bounds memory the same way.
    rows_per_task : int, optional
        Rows per slab; default about 128 MiB of projections per slab, and at
        least as many slabs as the cluster has worker threads.
    threads : int, optional
        Core threads per slab.  Default: in-process, the core's default; on a
        cluster, a host's CPUs divided by the worker threads on that host, so
        concurrent tasks do not oversubscribe it (the result does not depend
        on it).
    overwrite : bool
        Replace an existing ``out_path``.
    attrs : mapping, optional
        Extra attributes of the output array (e.g. ``voxel_size``).
    algorithm : {"fbp", "phase_derivative"}
        ``tomofuse.tomo.fbp`` (default) or ``tomofuse.tomo.fbp_phase_derivative``
        (the PXCT reconstruction of wrapped phase).
    scale : float
        Factor applied to every reconstructed slice before it is stored, as
        ``(slice * scale).astype(dtype)`` (e.g. ``1 / voxel_size`` for an
        attenuation coefficient in 1/m); 1 stores the reconstruction as it is.
    callback : callable, optional
        ``callback(fraction, message)`` after each slab.
    **fbp_options
        ``center``, ``filter``, ``padding``, ``shape`` of ``tomofuse.tomo.fbp``
        (the same options of ``fbp_phase_derivative``).

    Returns
    -------
    Path
        The Zarr directory; read it with ``tomofuse.io.read_volume``.

    Raises
    ------
    FileExistsError
        If ``out_path`` exists and ``overwrite`` is False.
    TypeError, ValueError
        For bad projections, angles, options or output path.
    """
    options = _check_options(fbp_options)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {tuple(ALGORITHMS)}, got {algorithm!r}")
    scale = check.number(scale, "scale")
    if scale == 0.0:
        raise ValueError("scale must be nonzero, got 0")
    if volume_format(out_path, argument="out_path") != "zarr" or split_dataset_path(out_path)[1] is not None:
        raise ValueError(f"out_path must be a .zarr directory (no :/array), got {os.fspath(out_path)!r}")
    check_client(client)
    check.callback(callback)
    if threads is not None:
        check.threads(threads)  # None stays None: on a cluster, each host's share

    # ---- the source: an array, a dask array, or a file opened lazily
    inputs: dict[str, str] = {}
    if isinstance(projections, (str, os.PathLike)):
        spec = os.fspath(projections)
        lazy, _ = read_volume(spec, lazy=True)
        shape, dtype = tuple(lazy.shape), np.dtype(lazy.dtype)
        f = getattr(lazy, "file", None)
        if f is not None and hasattr(f, "close"):
            f.close()
        del lazy
        path, _ = split_dataset_path(spec)
        if path.is_file():
            inputs["projections"] = file_sha256(path)
        source_kind = "path"
    elif isinstance(projections, np.ndarray):
        shape, dtype = projections.shape, projections.dtype
        source_kind = "array"
    elif _is_dask_array(projections):
        shape, dtype = tuple(projections.shape), np.dtype(projections.dtype)
        source_kind = "dask"
    else:
        raise TypeError("projections must be a numpy array, a dask array or a path, "
                        f"got {type(projections).__name__}")
    if len(shape) != 3:
        raise ValueError(f"projections must have 3 dimensions (angle, row, col), got shape {shape}")
    if min(shape) == 0:
        raise ValueError(f"projections must not be empty, got shape {shape}")
    if dtype.kind not in ("iufc" if algorithm == "phase_derivative" else "iuf"):
        raise TypeError(f"projections must hold real numbers{' or complex transmissions' if algorithm != 'fbp' else ''}"
                        f", got dtype {dtype}")
    n_angles, rows, cols = shape
    th = np.ascontiguousarray(np.asarray(angles, dtype=np.float64).reshape(-1))
    if th.size != n_angles:
        raise ValueError(f"angles: expected {n_angles} angles (one per projection), got {th.size}")
    if not np.all(np.isfinite(th)):
        raise ValueError("angles must be finite (radians)")
    if source_kind == "array":
        inputs["projections"] = array_sha256(projections)
    inputs["angles"] = array_sha256(th)
    out_dtype = np.dtype(np.float64 if dtype in (np.float64, np.complex128) else np.float32)
    if "shape" in options:
        ny, nx = check.ints(options["shape"], "shape", length=2, minimum=1, expected="two positive ints (y, x)")
    else:
        ny = nx = cols

    # ---- slabs
    worker_threads = sum(client.nthreads().values()) if client is not None else 1
    if rows_per_task is None:
        by_memory = max(1, _SLAB_BYTES // max(1, n_angles * cols * out_dtype.itemsize))
        rows_per_task = max(1, min(by_memory, math.ceil(rows / max(1, worker_threads))))
    else:
        check.integer(rows_per_task, "rows_per_task", minimum=1)
    rows_per_task = min(int(rows_per_task), rows)
    slabs = [(r0, min(r0 + rows_per_task, rows)) for r0 in range(0, rows, rows_per_task)]

    parameters = {**options, "algorithm": algorithm, "scale": scale, "angles_count": n_angles, "projections_shape": list(shape),
                  "projections_dtype": dtype.str, "rows_per_task": rows_per_task,
                  "source": os.fspath(projections) if source_kind == "path" else source_kind}
    meta = file_attributes(attrs, parameters=parameters, inputs=inputs, program="tomofuse.distributed.fbp_to_zarr")

    def slab_source(r0, r1):
        if source_kind == "path":
            return os.fspath(projections)
        return projections[:, r0:r1, :]

    def report(done):
        if callback is not None:
            callback(done / len(slabs), f"{done}/{len(slabs)} slabs")

    logger.info("fbp_to_zarr: %d rows in %d slabs of %d, %s", rows, len(slabs), rows_per_task,
                "in-process" if client is None else f"on {worker_threads} worker threads")
    out = split_dataset_path(out_path)[0]
    with atomic_directory(out, argument="out_path", overwrite=overwrite) as tmp:
        create_zarr(tmp, None, (rows, ny, nx), out_dtype, (1, ny, nx), True, meta)
        store = str(tmp)
        report(0)
        if client is None:
            for i, (r0, r1) in enumerate(slabs):
                src = slab_source(r0, r1)
                if source_kind == "dask":
                    src = src.compute()
                _reconstruct_slab(src, r0, r1, th, store, options, threads, algorithm, scale)
                report(i + 1)
        else:
            _run_on_cluster(client, slabs, slab_source, source_kind, th, store, options, threads, report,
                            algorithm, scale)
    return out.expanduser().absolute()


def _run_on_cluster(client, slabs, slab_source, source_kind, th, store, options, threads, report, algorithm,
                    scale) -> None:
    from distributed import wait

    if threads is None:
        threads = worker_threads_per_host(client)
    th_future = client.scatter(th, broadcast=True, hash=False)
    # The futures of scattered or computed slab inputs, held until their slab has finished: a
    # scattered future dropped by the client may be released before the task that needs it runs
    # (the task is then canceled for "lost dependencies").
    sources = {}

    def submit(slab):
        r0, r1 = slab
        src = slab_source(r0, r1)
        if source_kind == "array":
            src = client.scatter(np.ascontiguousarray(src), hash=False)
        elif source_kind == "dask":
            src = client.compute(src)
        fut = client.submit(_reconstruct_slab, src, r0, r1, th_future, store, options, threads, algorithm, scale,
                            pure=False,
                            key=f"tomofuse-fbp-slab-{r0}-{r1}-{os.path.basename(store)}")
        sources[fut.key] = src
        return fut

    done = 0

    def handle(fut):
        nonlocal done
        fut.result()  # raises the task's exception
        sources.pop(fut.key, None)
        done += 1
        report(done)

    # On an error, let the slabs in flight finish before the temporary store is removed, so none
    # writes into it afterwards; their own errors are dropped in favor of the first one.
    run_bounded(client, slabs, submit, handle, on_error=wait)
