"""Volumes in HDF5 (``file.h5:/dataset``), Zarr, TIFF stacks and NumPy files (no science here).

The format follows the suffix.  Every writer is atomic (``atomic_path`` /
``atomic_directory``) and stores the ``provenance`` attributes next to the
data: HDF5 and Zarr attributes of the array, JSON in the first page's
ImageDescription of a TIFF, a ``<file>.npy.json`` sidecar of a NumPy file.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .._validate import ints
from ._errors import reading
from ._atomic import atomic_directory, atomic_path, jsonable
from ._h5 import GZIP_LEVEL, file_attributes, plain_attrs, set_h5_attrs
from ._zarr import create_zarr, open_zarr, require_zarr

__all__ = ["split_dataset_path", "read_volume", "write_volume", "volume_format"]

logger = logging.getLogger(__name__)

_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".cxi")
_ZARR_SUFFIXES = (".zarr",)
#: Zarr array attribute written by write_volume: how many chunks the store holds.
_STORED_CHUNKS = "tomofuse_stored_chunks"
_TIFF_SUFFIXES = (".tif", ".tiff")
_NPY_SUFFIXES = (".npy",)
_NAMED = _H5_SUFFIXES + _ZARR_SUFFIXES  # formats whose files hold named datasets

#: Default chunk size in bytes (chunks are z slabs of whole slices while a slice fits).
_CHUNK_BYTES = 4 << 20
#: Key of tomofuse's JSON document in a TIFF ImageDescription.
_TIFF_KEY = "tomofuse"


def split_dataset_path(spec: str | os.PathLike) -> tuple[Path, Optional[str]]:
    """Split ``"file.h5:/group/data"`` (or ``"store.zarr:/array"``) into the file and the dataset name.

    Returns
    -------
    path : Path
    dataset : str or None
        None when ``spec`` names no dataset (nothing, or nothing but ``/``, after the colon).
    """
    text = os.fspath(spec)
    for suffix in _NAMED:
        marker = suffix + ":"
        i = text.lower().find(marker)
        if i >= 0:
            return Path(text[: i + len(suffix)]), text[i + len(marker):] or None
    return Path(text), None


def volume_format(spec: str | os.PathLike, *, argument: str = "spec") -> str:
    """The format a path names by its suffix: ``"hdf5"``, ``"zarr"``, ``"tiff"`` or ``"npy"``.

    Raises
    ------
    ValueError
        For another suffix, or a dataset name after a format that holds one array.
    """
    path, _ = _parse(spec, argument)
    return _format_of(path)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    for name, suffixes in (("hdf5", _H5_SUFFIXES), ("zarr", _ZARR_SUFFIXES), ("tiff", _TIFF_SUFFIXES),
                           ("npy", _NPY_SUFFIXES)):
        if suffix in suffixes:
            return name
    raise ValueError(f"{str(path)!r}: unsupported file type {path.suffix!r} (use .h5/.hdf5 [:/dataset], "
                     ".zarr [:/array], .tif/.tiff or .npy)")


def _parse(spec, argument: str) -> tuple[Path, Optional[str]]:
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a path (str or os.PathLike), got {type(spec).__name__}")
    text = os.fspath(spec)
    if not isinstance(text, str):
        raise TypeError(f"{argument} must be a text path, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{argument} must name a file, got {text!r}")
    path, dataset = split_dataset_path(text)
    if dataset is None:
        head, sep, _ = text.rpartition(":")
        if sep and Path(head).suffix.lower() in _TIFF_SUFFIXES + _NPY_SUFFIXES:
            raise ValueError(f"{argument}: {text!r} names a dataset in a {Path(head).suffix} file, which holds "
                             "one array (only HDF5 and Zarr files take file:/dataset)")
    else:
        parts = dataset.strip("/").split("/")
        if dataset.strip("/") == "":
            raise ValueError(f"{argument}: {text!r} names the root group, not a dataset")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{argument}: dataset name {dataset!r} in {text!r} has an empty, '.' or '..' part")
    _format_of(path)
    return path, dataset


# --------------------------------------------------------------------------------------------- checks

def _check_volume(volume, fmt: str) -> np.ndarray:
    if not isinstance(volume, np.ndarray):
        raise TypeError(f"volume must be a numpy.ndarray, got {type(volume).__name__}")
    if volume.ndim < 1:
        raise ValueError(f"volume must have at least 1 dimension, got shape {volume.shape}")
    if volume.size == 0:
        raise ValueError(f"volume must not be empty, got shape {volume.shape}")
    if volume.dtype.kind not in "biufc" or volume.dtype.fields is not None:
        raise TypeError(f"volume must hold bool, integer, float or complex numbers, got dtype {volume.dtype}")
    if fmt == "tiff" and volume.ndim not in (2, 3):
        raise ValueError(f"volume: a TIFF stack holds 2-D or 3-D (z pages of y, x) arrays, got shape {volume.shape}")
    return volume


def _default_chunks(shape: Sequence[int], itemsize: int, target: int = _CHUNK_BYTES) -> tuple[int, ...]:
    """Chunks of about ``target`` bytes: halve the leading axis first (z slabs of whole slices)."""
    chunks = list(shape)
    axis = 0
    while math.prod(chunks) * itemsize > target and axis < len(chunks):
        if chunks[axis] == 1:
            axis += 1
            continue
        chunks[axis] = (chunks[axis] + 1) // 2
    return tuple(chunks)


def _check_chunks(chunks, shape: tuple[int, ...], itemsize: int, fmt: str) -> Optional[tuple[int, ...]]:
    if fmt in ("tiff", "npy"):
        if chunks is not None:
            raise ValueError(f"chunks: a {fmt} file is not chunked (TIFF stores one page per z slice); "
                             "use .h5 or .zarr for chunks")
        return None
    if chunks is None:
        return _default_chunks(shape, itemsize)
    return check_chunks(chunks, shape)


def check_chunks(chunks, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A chunk shape of positive ints, one per axis of ``shape``, clipped to it."""
    if isinstance(chunks, numbers.Integral):
        raise TypeError(f"chunks must be a sequence of ints, one per axis of shape {shape}, got {chunks!r}")
    dims = ints(chunks, "chunks", length=len(shape), minimum=1,
                expected=f"{len(shape)} positive ints (one per axis of shape {shape})")
    return tuple(min(c, s) for c, s in zip(dims, shape))


def _check_compress(compress, fmt: str, dtype: np.dtype) -> bool:
    if compress is None:
        # gzip on float data runs at ~20 MB/s for a ~1.2x gain; on labels it is fast and gains ~50x.
        return fmt == "zarr" or (fmt == "hdf5" and dtype.kind in "biu")
    if not isinstance(compress, bool):
        raise TypeError(f"compress must be None, True or False, got {compress!r}")
    if compress and fmt == "npy":
        raise ValueError("compress: .npy files are not compressed; use .h5, .zarr or .tif")
    return compress


# --------------------------------------------------------------------------------------------- write

def write_volume(spec: str | os.PathLike, volume: np.ndarray, *, chunks: Optional[Sequence[int]] = None,
                 compress: Optional[bool] = None, attrs: Optional[Mapping[str, Any]] = None,
                 parameters: Optional[Mapping[str, Any]] = None, inputs: Optional[Mapping[str, str]] = None,
                 program: str = "tomofuse.io.write_volume", overwrite: bool = False) -> Path:
    """Write an array atomically, with provenance, in the format its suffix names.

    ===================  ==============================================================
    suffix               stored as
    ===================  ==============================================================
    ``.h5``, ``.hdf5``   HDF5 dataset (``file.h5:/group/name``; default ``/volume``),
                         chunked, gzip + shuffle for labels; attributes on the dataset
    ``.zarr``            Zarr format-3 directory store (an array at the root, or
                         ``store.zarr:/name`` in a group), chunked, zstd; array attributes
    ``.tif``, ``.tiff``  one multi-page TIFF (tifffile): z = pages; tifffile's JSON
                         ImageDescription of the first page (``{"shape": ...,
                         "tomofuse": {"attrs": ...}}``); optionally zlib per page
    ``.npy``             NumPy file; attributes in the sidecar ``<file>.npy.json``
    ===================  ==============================================================

    The output is written to a temporary name next to ``spec`` and renamed when
    complete (a Zarr directory too), so an interrupted or failed write leaves
    nothing under the final name.  A file (the whole HDF5 file) is replaced
    only with ``overwrite=True``.

    Parameters
    ----------
    spec : str or path-like
        Output path, optionally with ``:/dataset`` after an HDF5 or Zarr suffix.
    volume : ndarray
        Any shape (2-D or 3-D for TIFF; volumes are (z, y, x)) and dtype bool,
        integer, float or complex; stored as it is.
    chunks : sequence of int, optional
        HDF5/Zarr chunk shape (clipped to the array).  Default: about 4 MiB,
        z slabs of whole (y, x) slices while a slice fits.  TIFF and NumPy
        files are not chunked (passing chunks raises).
    compress : bool, optional
        None = the format's default: zstd for Zarr; gzip (level 1, shuffle)
        for HDF5 bool and integer arrays (labels shrink ~50x) but not for
        float or complex ones (reconstructions gain ~1.2x at ~20 MB/s); none
        for TIFF (stacks stay memory-mappable and readable everywhere) and
        NumPy.  True = gzip for HDF5, zlib per page for TIFF.
    attrs : mapping, optional
        Extra attributes: str, bool, int, float, or 1-D sequences of one of them
        (encode mappings with ``json.dumps``).  Keys of ``provenance`` are set
        by this call.
    parameters, inputs, program
        Passed to ``tomofuse.io.provenance``: what produced the array, the
        SHA-256 of its inputs (``array_sha256``/``file_sha256``), and by whom.
    overwrite : bool
        Replace an existing file or store.

    Returns
    -------
    Path
        The file (or Zarr directory) written.

    Raises
    ------
    FileExistsError
        If the output exists and ``overwrite`` is False.
    TypeError, ValueError
        For a bad volume, chunk shape, attribute, or path.
    """
    path, dataset = _parse(spec, "spec")
    fmt = _format_of(path)
    vol = _check_volume(volume, fmt)
    chunk_shape = _check_chunks(chunks, vol.shape, vol.dtype.itemsize, fmt)
    packed = _check_compress(compress, fmt, vol.dtype)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    meta = file_attributes(attrs, parameters=parameters, inputs=inputs, program=program)
    if fmt == "hdf5":
        import h5py

        name = dataset or "volume"
        with atomic_path(path, argument="spec", overwrite=overwrite) as tmp:
            with h5py.File(tmp, "w") as f:
                options = dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True) if packed else {}
                ds = f.create_dataset(name, data=vol, chunks=chunk_shape, **options)
                set_h5_attrs(ds, meta)
    elif fmt == "zarr":
        with atomic_directory(path, argument="spec", overwrite=overwrite) as tmp:
            arr = create_zarr(tmp, dataset, vol.shape, vol.dtype, chunk_shape, packed, meta)
            arr[...] = vol
            # All-fill-value chunks are not stored; the number that is lets a reader tell a chunk
            # lost from the store (Zarr would return zeros for it) from one never written.
            arr.attrs[_STORED_CHUNKS] = int(arr.nchunks_initialized)
    elif fmt == "tiff":
        import tifffile

        # tifffile's own JSON description ({"shape": [...], ...}) keeps the exact shape (z = 1 too).
        with atomic_path(path, argument="spec", overwrite=overwrite) as tmp:
            tifffile.imwrite(tmp, vol, photometric="minisblack", metadata={_TIFF_KEY: {"attrs": jsonable(meta)}},
                             compression="zlib" if packed else None)
    else:  # npy
        sidecar = _sidecar(path)
        document = json.dumps({"shape": list(vol.shape), "dtype": vol.dtype.str, "attrs": jsonable(meta)},
                              indent=1, sort_keys=True)
        # The sidecar lands first: the data file's name appearing marks the pair complete.
        with atomic_path(path, argument="spec", overwrite=overwrite) as tmp_npy:
            with atomic_path(sidecar, argument="spec", overwrite=True) as tmp_json:
                with open(tmp_npy, "wb") as f:
                    np.save(f, vol, allow_pickle=False)
                tmp_json.write_text(document)
    logger.debug("wrote %s %s %s to %s", fmt, vol.shape, vol.dtype, path)
    return path.expanduser().absolute()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


# --------------------------------------------------------------------------------------------- read

@reading("the volume")
def read_volume(spec: str | os.PathLike, *, default_dataset: Optional[str] = None,
                lazy: bool = False) -> tuple[Any, dict[str, Any]]:
    """Read an array and its attributes; the format follows the suffix (see ``write_volume``).

    Parameters
    ----------
    spec : str or path-like
        ``file.h5:/dataset``, ``file.h5`` (then ``default_dataset``, or the
        file's only dataset), ``store.zarr`` or ``store.zarr:/array``,
        ``stack.tif``, ``file.npy``.
    default_dataset : str, optional
        Dataset (HDF5) or array (Zarr group) read when ``spec`` names none; a
        Zarr store that is one array is read as it is.
    lazy : bool
        Return an array-like that reads on slicing instead of an ndarray:
        an open ``h5py.Dataset`` (close with ``volume.file.close()``), a
        ``zarr.Array``, a read-only ``numpy.memmap`` (NumPy, uncompressed TIFF)
        or a ``zarr.Array`` over a compressed TIFF.  ``volume[a:b]`` then reads
        only that slab.

    Returns
    -------
    volume : ndarray or array-like
    attrs : dict
        Plain Python values (str, bool, int, float, lists): the HDF5 file's root
        attributes merged with the dataset's, the Zarr array's attributes, the
        TIFF's or ``.npy.json`` sidecar's attributes; empty for files written by
        other programs (a TIFF's foreign ImageDescription is not parsed).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    KeyError
        If the named dataset does not exist.
    ValueError
        For an unsupported suffix, a malformed ``file:/dataset`` or an HDF5
        file whose dataset is ambiguous.
    """
    path, dataset = _parse(spec, "spec")
    text = os.fspath(spec)
    fmt = _format_of(path)
    if not isinstance(lazy, bool):
        raise TypeError(f"lazy must be True or False, got {lazy!r}")
    if not path.exists():
        raise FileNotFoundError(f"{text!r}: no such file {str(path)!r}")
    if fmt == "npy":
        volume = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
        return volume, _read_sidecar(path, volume)
    if fmt == "hdf5":
        return _read_h5(path, dataset or default_dataset, text, lazy)
    if fmt == "zarr":
        arr = open_zarr(path, dataset, text, default=default_dataset)
        stored = arr.attrs.get(_STORED_CHUNKS)
        attrs = plain_attrs({k: v for k, v in arr.attrs.items() if k != _STORED_CHUNKS})
        if lazy:
            return arr, attrs
        if stored is not None and arr.nchunks_initialized < int(stored):
            raise ValueError(f"{text}: {int(stored) - arr.nchunks_initialized} of its {int(stored)} stored chunks are "
                             f"missing (an incomplete or damaged store); Zarr would fill them with zeros")
        return arr[...], attrs
    return _read_tiff(path, lazy)


def _read_h5(path: Path, name: Optional[str], text: str, lazy: bool):
    import h5py

    f = h5py.File(path, "r")
    try:
        if name is None:
            found: list[str] = []
            f.visititems(lambda n, obj: found.append(n) if isinstance(obj, h5py.Dataset) else None)
            if len(found) != 1:
                raise ValueError(f"{text!r}: name the dataset as file.h5:/dataset (datasets: {sorted(found)[:10]})")
            name = found[0]
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise KeyError(f"{text!r}: no dataset {name!r} in {str(path)!r}")
        ds = f[name]
        attrs = plain_attrs({**dict(f.attrs), **dict(ds.attrs)})
        volume = ds if lazy else ds[()]
    except BaseException:
        f.close()
        raise
    if not lazy:
        f.close()
    return volume, attrs


def _read_sidecar(path: Path, volume) -> dict[str, Any]:
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return {}
    try:
        doc = json.loads(sidecar.read_text())
        shape, dtype, attrs = tuple(doc["shape"]), np.dtype(doc["dtype"]), doc["attrs"]
    except (ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"{str(sidecar)!r} is not a tomofuse sidecar ({exc}); attributes ignored", stacklevel=3)
        return {}
    if shape != volume.shape or dtype != volume.dtype:
        warnings.warn(f"{str(sidecar)!r} describes a {shape} {dtype} array, {str(path)!r} holds {volume.shape} "
                      f"{volume.dtype}; attributes ignored", stacklevel=3)
        return {}
    return plain_attrs(attrs)


def _tiff_document(tf) -> Optional[dict]:
    for doc in tf.shaped_metadata or ():
        if isinstance(doc, dict) and isinstance(doc.get(_TIFF_KEY), dict):
            return doc[_TIFF_KEY]
    return None


def _read_tiff(path: Path, lazy: bool):
    import tifffile

    with tifffile.TiffFile(path) as tf:
        doc = _tiff_document(tf)
        volume = None if lazy else tf.asarray()
    if lazy:
        try:
            volume = tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or scattered pages: read them through tifffile's Zarr store
            zarr = require_zarr()
            try:
                volume = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")
            except Exception as exc:
                raise ValueError(f"{str(path)!r}: lazy reading of a compressed TIFF needs tifffile>=2025.5.21 "
                                 f"with zarr>=3 ({exc}); read it with lazy=False") from exc
    return volume, ({} if doc is None else plain_attrs(doc.get("attrs", {})))
