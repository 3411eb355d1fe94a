"""Reading volumes named as ``file.h5:/dataset`` or ``file.npy`` (no science here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["split_dataset_path", "read_volume"]

_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".cxi")


def split_dataset_path(spec: str | os.PathLike) -> tuple[Path, Optional[str]]:
    """Split ``"file.h5:/group/data"`` into the file and the dataset name.

    Returns
    -------
    path : Path
    dataset : str or None
        None when ``spec`` names no dataset.
    """
    text = os.fspath(spec)
    for suffix in _H5_SUFFIXES:
        marker = suffix + ":"
        i = text.lower().find(marker)
        if i >= 0:
            return Path(text[: i + len(suffix)]), text[i + len(marker):] or None
    return Path(text), None


def read_volume(spec: str | os.PathLike, *, default_dataset: Optional[str] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a volume from HDF5 (``file.h5:/dataset``) or NumPy (``.npy``).

    Parameters
    ----------
    spec : str or path-like
        ``file.h5:/dataset``, ``file.h5`` (then ``default_dataset``) or ``file.npy``.
    default_dataset : str, optional
        Dataset read when ``spec`` names none.

    Returns
    -------
    volume : ndarray
    attrs : dict
        The HDF5 file's root attributes merged with the dataset's (empty for .npy).
    """
    path, dataset = split_dataset_path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{os.fspath(spec)!r}: no such file {str(path)!r}")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False), {}
    if path.suffix.lower() in _H5_SUFFIXES:
        import h5py

        name = dataset or default_dataset
        if name is None:
            raise ValueError(f"{os.fspath(spec)!r}: name the dataset as file.h5:/dataset")
        with h5py.File(path, "r") as f:
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise KeyError(f"{os.fspath(spec)!r}: no dataset {name!r} in {str(path)!r}")
            attrs = {**dict(f.attrs), **dict(f[name].attrs)}
            return f[name][()], attrs
    raise ValueError(f"{os.fspath(spec)!r}: unsupported file type {path.suffix!r} (use .h5:/dataset or .npy)")
