"""Tomography scans in the Data Exchange HDF5 layout (APS; De Carlo et al., J. Synchrotron Rad. 21, 1224 (2014)).

``/exchange/data`` (projections), ``/exchange/data_white`` (flat fields),
``/exchange/data_dark`` (dark fields), ``/exchange/theta`` (rotation angles,
stored in degrees, attribute ``units = "deg"``), and a root ``implements``
string dataset.  No science here: the arrays are stored and returned as they are.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .._validate import ints
from ._errors import reading
from ._atomic import atomic_path
from ._h5 import GZIP_LEVEL, file_attributes, plain_attrs, set_h5_attrs

__all__ = ["DataExchange", "read_dxchange", "write_dxchange"]

logger = logging.getLogger(__name__)

_DEGREE_UNITS = ("deg", "degree", "degrees")
_RADIAN_UNITS = ("rad", "radian", "radians")


@dataclass
class DataExchange:
    """A tomography scan as read from (or to be written to) a Data Exchange file.

    Attributes
    ----------
    data : (A, rows, cols) ndarray
        Projections (raw counts or any derived quantity), dtype as stored.
    flat : (F, rows, cols) ndarray or None
        White (flat) fields, ``/exchange/data_white``.
    dark : (D, rows, cols) ndarray or None
        Dark fields, ``/exchange/data_dark``.
    theta : (A,) ndarray of float64 or None
        Rotation angles in **radians** (the file stores degrees).  None when the
        file has no ``/exchange/theta``; the Data Exchange convention then
        assumes equally spaced angles over 0-180 degrees, which the caller can
        build with ``numpy.linspace(0, numpy.pi, A, endpoint=False)``.
    attrs : dict
        The file's root attributes (tomofuse provenance) merged with those of
        ``/exchange/data``, as plain Python values.
    """

    data: np.ndarray
    flat: Optional[np.ndarray] = None
    dark: Optional[np.ndarray] = None
    theta: Optional[np.ndarray] = None
    attrs: dict[str, Any] = field(default_factory=dict)


def _check_stack(a, name: str, ndim_options=(3,), image_shape=None) -> Optional[np.ndarray]:
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.ndim not in ndim_options:
        raise ValueError(f"{name} must be (n, rows, cols){' or (rows, cols)' if 2 in ndim_options else ''}, "
                         f"got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if a.dtype.kind not in "buif" or a.dtype.fields is not None:
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[np.newaxis]
    if image_shape is not None and a.shape[1:] != image_shape:
        raise ValueError(f"{name}: images must be {image_shape} (rows, cols) like data's, got {a.shape[1:]}")
    return a


def write_dxchange(path: str | os.PathLike, data: np.ndarray, *, flat: Optional[np.ndarray] = None,
                   dark: Optional[np.ndarray] = None, theta=None, chunks: Optional[Sequence[int]] = None,
                   compress: bool = False, attrs: Optional[Mapping[str, Any]] = None,
                   parameters: Optional[Mapping[str, Any]] = None, inputs: Optional[Mapping[str, str]] = None,
                   program: str = "tomofuse.io.write_dxchange", overwrite: bool = False) -> Path:
    """Write a tomography scan as a Data Exchange HDF5 file, atomically and with provenance.

    Parameters
    ----------
    path : str or path-like
        Output ``.h5``/``.hdf5`` file (replaced only with ``overwrite=True``).
    data : (A, rows, cols) ndarray
        Projections, stored as ``/exchange/data`` in their dtype (e.g. uint16 counts).
    flat, dark : (n, rows, cols) or (rows, cols) ndarray, optional
        White and dark fields (``/exchange/data_white``, ``/exchange/data_dark``).
    theta : (A,) array_like, optional
        Rotation angles in **radians**; stored in degrees (float64, attribute
        ``units = "deg"``) as the Data Exchange convention requires.
    chunks : sequence of 3 int, optional
        Chunk shape of the image stacks; default one image per chunk, ``(1, rows, cols)``.
    compress : bool
        gzip (level 1) + shuffle on the stacks.  Off by default: detector
        stacks are large and usually read back at once.
    attrs : mapping, optional
        Extra root attributes (str, bool, int, float or 1-D sequences of them).
    parameters, inputs, program
        Provenance (``tomofuse.io.provenance``), stored as root attributes.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    import h5py

    data = _check_stack(data, "data")
    image = data.shape[1:]
    flat = _check_stack(flat, "flat", (2, 3), image)
    dark = _check_stack(dark, "dark", (2, 3), image)
    theta_deg = None
    if theta is not None:
        th = np.asarray(theta)
        if th.dtype.kind not in "iuf" or th.ndim != 1:
            raise TypeError(f"theta must be a 1-D array of angles in radians, got {th.dtype} shape {th.shape}")
        if th.size != data.shape[0]:
            raise ValueError(f"theta: expected {data.shape[0]} angles (one per projection), got {th.size}")
        if not np.all(np.isfinite(th)):
            raise ValueError("theta must be finite (radians)")
        theta_deg = np.rad2deg(th.astype(np.float64))
    if chunks is None:
        chunk_shape = (1, *image)
    else:
        chunk_shape = ints(chunks, "chunks", length=3, minimum=1, expected="3 positive ints")
    if not isinstance(compress, bool):
        raise TypeError(f"compress must be True or False, got {compress!r}")
    meta = file_attributes(attrs, parameters=parameters, inputs=inputs, program=program)
    options = dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True) if compress else {}

    def stack(group, name, a, axes):
        c = tuple(min(c, s) for c, s in zip(chunk_shape, a.shape))
        ds = group.create_dataset(name, data=a, chunks=c, **options)
        ds.attrs["axes"] = axes
        return ds

    with atomic_path(path, argument="path", overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("implements", data="exchange", dtype=h5py.string_dtype())
            set_h5_attrs(f, meta)
            ex = f.create_group("exchange")
            stack(ex, "data", data, "theta:y:x")
            if flat is not None:
                stack(ex, "data_white", flat, "theta_white:y:x")
            if dark is not None:
                stack(ex, "data_dark", dark, "theta_dark:y:x")
            if theta_deg is not None:
                ds = ex.create_dataset("theta", data=theta_deg)
                ds.attrs["units"] = "deg"
    return Path(path).expanduser().absolute()


def _axes_order(axes: str, name: str, path) -> tuple[int, int, int]:
    """Permutation taking a stored stack with ``axes`` (e.g. ``"y:theta:x"``) to (theta, y, x)."""
    parts = [p.strip().lower() for p in axes.split(":")]
    roles = ["theta" if p.startswith("theta") else p for p in parts]
    if sorted(roles) != ["theta", "x", "y"]:
        raise ValueError(f"{str(path)!r}: {name} has axes {axes!r}; expected a permutation of theta:y:x")
    return tuple(roles.index(r) for r in ("theta", "y", "x"))


def _read_stack(group, name: str, path, rows) -> Optional[np.ndarray]:
    if name not in group:
        return None
    ds = group[name]
    if ds.ndim != 3:
        raise ValueError(f"{str(path)!r}: /exchange/{name} must be 3-D, got shape {ds.shape}")
    axes = plain_attrs(ds.attrs.get("axes", "theta:y:x"))
    order = _axes_order(axes, f"/exchange/{name}", path)
    if order == (0, 1, 2):
        return ds[:, rows, :]
    return np.ascontiguousarray(np.transpose(ds[()], order)[:, rows, :])


@reading("the Data Exchange scan")
def read_dxchange(path: str | os.PathLike, *, rows: Optional[slice] = None) -> DataExchange:
    """Read a tomography scan from a Data Exchange HDF5 file.

    Parameters
    ----------
    path : str or path-like
        The file.
    rows : slice, optional
        Detector rows to read (e.g. ``slice(100, 164)`` for a slab of
        sinograms); default all.  Only these rows are read from disk when the
        stacks are stored in the default ``theta:y:x`` order.

    Returns
    -------
    DataExchange
        ``data``, ``flat``, ``dark`` as stored (axes reordered to
        (theta, y, x) if the ``axes`` attribute says otherwise), ``theta`` in
        **radians** (converted from the file's degrees; a ``units`` attribute of
        ``rad``/``radians`` is honored), ``attrs``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    KeyError
        If it has no ``/exchange/data``.
    ValueError
        For malformed stacks, angles or units.
    """
    import h5py

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"path: no such file {str(p)!r}")
    if rows is None:
        rows = slice(None)
    if not isinstance(rows, slice):
        raise TypeError(f"rows must be a slice, got {type(rows).__name__}")
    with h5py.File(p, "r") as f:
        if "exchange/data" not in f or not isinstance(f["exchange/data"], h5py.Dataset):
            raise KeyError(f"{str(p)!r}: no /exchange/data (not a Data Exchange file)")
        ex = f["exchange"]
        data = _read_stack(ex, "data", p, rows)
        flat = _read_stack(ex, "data_white", p, rows)
        dark = _read_stack(ex, "data_dark", p, rows)
        attrs = plain_attrs({**dict(f.attrs), **dict(ex["data"].attrs)})
        theta = None
        if "theta" in ex:
            ds = ex["theta"]
            values = np.asarray(ds[()], dtype=np.float64).reshape(-1)
            units = str(plain_attrs(ds.attrs.get("units", "deg"))).strip().lower()
            if units in _DEGREE_UNITS:
                theta = np.deg2rad(values)
            elif units in _RADIAN_UNITS:
                theta = values
            else:
                raise ValueError(f"{str(p)!r}: /exchange/theta has units {units!r}; expected deg or rad")
            if not np.all(np.isfinite(theta)):
                raise ValueError(f"{str(p)!r}: /exchange/theta holds non-finite angles")
            if theta.size != data.shape[0]:
                raise ValueError(f"{str(p)!r}: /exchange/theta has {theta.size} angles for {data.shape[0]} "
                                 "projections")
        else:
            logger.info("%s has no /exchange/theta; theta is None", p)
    return DataExchange(data=data, flat=flat, dark=dark, theta=theta, attrs=attrs)
