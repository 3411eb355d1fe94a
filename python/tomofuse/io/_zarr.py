"""Zarr (format 3) stores: the optional import and array creation (no science here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ._atomic import jsonable

__all__ = ["create_zarr", "open_zarr", "require_zarr"]


def require_zarr():
    """The ``zarr`` module (version 3 or later), or an ``ImportError`` saying how to install it.

    Returns
    -------
    module
    """
    try:
        import zarr
    except ImportError:
        raise ImportError("Zarr volumes need zarr>=3: pip install 'tomofuse[dask]' (or 'zarr>=3')") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(f"Zarr volumes need zarr>=3, found zarr {zarr.__version__}: pip install -U 'zarr>=3'")
    return zarr


def create_zarr(store: str | Path, dataset: Optional[str], shape: Sequence[int], dtype, chunks: Sequence[int],
                compress: bool, attrs: Mapping[str, Any]):
    """A new zero-filled Zarr (format 3) array in directory ``store``.

    Parameters
    ----------
    store : str or Path
        Directory of the store (must not exist yet when ``dataset`` is named).
    dataset : str or None
        None: the array is the store's root; else its name inside a new root group.
    shape, dtype, chunks
        Of the array.
    compress : bool
        Zarr's default compressor (zstd) or none.
    attrs : mapping
        Array attributes (made JSON-compatible).

    Returns
    -------
    zarr.Array
    """
    zarr = require_zarr()
    options = dict(shape=tuple(shape), dtype=np.dtype(dtype), chunks=tuple(chunks), attributes=jsonable(attrs),
                   compressors="auto" if compress else None, fill_value=0)
    if dataset is None:
        return zarr.create_array(store=str(store), zarr_format=3, **options)
    root = zarr.open_group(store=str(store), mode="w-", zarr_format=3)
    return root.create_array(name=dataset.strip("/"), **options)


def open_zarr(path: Path, name: Optional[str], spec_text: str, default: Optional[str] = None):
    """The array ``name`` (or ``default``, or the only array) of the Zarr store at ``path``, read-only.
    A store that is one array is that array unless ``name`` asks for one inside a group."""
    zarr = require_zarr()
    node = zarr.open(store=str(path), mode="r")
    if isinstance(node, zarr.Array):
        if name is not None:
            raise KeyError(f"{spec_text!r}: {str(path)!r} holds one array, not a group with {name!r}")
        return node
    name = name or default
    if name is None:
        arrays = sorted(k for k, v in node.members(max_depth=None) if isinstance(v, zarr.Array))
        if len(arrays) != 1:
            raise ValueError(f"{spec_text!r}: name the array as store.zarr:/array (arrays: {arrays[:10]})")
        name = arrays[0]
    try:
        arr = node[name.strip("/")]
    except KeyError:
        raise KeyError(f"{spec_text!r}: no array {name!r} in {str(path)!r}") from None
    if not isinstance(arr, zarr.Array):
        raise KeyError(f"{spec_text!r}: {name!r} in {str(path)!r} is a group, not an array")
    return arr
