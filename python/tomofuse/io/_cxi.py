"""Ptychographic scans in the CXI layout (Coherent X-ray Imaging format, cxidb.org; Maia, Nat. Methods 9, 854 (2012)).

Layout written (SI units throughout, as CXI requires)::

    /cxi_version                                   int 150
    /entry_1/instrument_1/detector_1/data          (K, N, N) diffraction patterns
    /entry_1/instrument_1/detector_1/distance      sample-detector distance, m
    /entry_1/instrument_1/detector_1/x_pixel_size  detector pixel pitch, m
    /entry_1/instrument_1/detector_1/y_pixel_size
    /entry_1/instrument_1/detector_1/mask          (N, N) uint32, 0 = good pixel, bit 0x1 = invalid (optional)
    /entry_1/instrument_1/source_1/energy          photon energy, J
    /entry_1/instrument_1/source_1/probe           (N, N) complex probe on the object grid (optional)
    /entry_1/sample_1/geometry_1/translation       (K, 3) sample translation (x, y, z), m
    /entry_1/data_1/data, /entry_1/data_1/translation   hard links to the two above

tomofuse's positions are ``(y, x)``; they are stored as the CXI translation
columns ``(x, y, 0)`` without a change of sign.  No science here.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ._errors import reading
from .._validate import positive_number
from ._atomic import atomic_path
from ._h5 import file_attributes, plain_attrs, set_h5_attrs

__all__ = ["CXIHeader", "CXIScan", "read_cxi", "read_cxi_header", "write_cxi"]

logger = logging.getLogger(__name__)

#: Joules per keV (exact SI elementary charge).
_J_PER_KEV = 1.602176634e-19 * 1e3
_CXI_VERSION = 150
_DET = "entry_1/instrument_1/detector_1"
_SRC = "entry_1/instrument_1/source_1"
_TRANSLATION = "entry_1/sample_1/geometry_1/translation"


@dataclass
class CXIScan:
    """A ptychographic scan as read from (or to be written to) a CXI file.

    Attributes
    ----------
    data : (K, N, N) ndarray
        Diffraction patterns, dtype as stored, zero frequency at the center.
    positions : (K, 2) ndarray of float64
        Scan positions ``(y, x)``, meters (CXI translation columns y and x).
    energy_kev : float
        Photon energy, keV (the file stores joules).
    distance : float
        Sample-detector distance, meters.
    x_pixel_size, y_pixel_size : float
        Detector pixel pitch, meters.
    probe : (N, N) complex ndarray or None
        Probe, if the file holds one.
    mask : (N, N) ndarray of bool or None
        True where a detector pixel is valid (used); the file's CXI mask is
        nonzero on the invalid ones.
    attrs : dict
        Root attributes (tomofuse provenance) as plain Python values.
    """

    data: np.ndarray
    positions: np.ndarray
    energy_kev: float
    distance: float
    x_pixel_size: float
    y_pixel_size: float
    probe: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    attrs: dict[str, Any] = field(default_factory=dict)


def write_cxi(path: str | os.PathLike, data: np.ndarray, *, positions, energy_kev: float, distance: float,
              pixel_size, probe: Optional[np.ndarray] = None, mask: Optional[np.ndarray] = None,
              attrs: Optional[Mapping[str, Any]] = None, parameters: Optional[Mapping[str, Any]] = None,
              inputs: Optional[Mapping[str, str]] = None, program: str = "tomofuse.io.write_cxi",
              overwrite: bool = False) -> Path:
    """Write a ptychographic scan as a CXI file, atomically and with provenance.

    Parameters
    ----------
    path : str or path-like
        Output ``.cxi`` file (replaced only with ``overwrite=True``).
    data : (K, N, N) ndarray
        Diffraction patterns (counts or intensities, real, finite, >= 0), stored in their dtype.
    positions : (K, 2) array_like
        Scan positions ``(y, x)``, meters; stored as translation ``(x, y, 0)``.
    energy_kev : float
        Photon energy, keV; stored in joules.
    distance : float
        Sample-detector distance, meters.
    pixel_size : float or (2,) sequence
        Detector pixel pitch, meters: one value, or ``(y, x)``.
    probe : (N, N) complex ndarray, optional
        Probe on the object grid.
    mask : (N, N) array_like of bool, optional
        True where a detector pixel is valid (used); the invalid (False) ones
        are stored as CXI mask bit 0x1 (uint32, 0 = good pixel).
    attrs : mapping, optional
        Extra root attributes.
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

    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy.ndarray, got {type(data).__name__}")
    if data.ndim != 3 or data.shape[0] == 0 or data.shape[1] == 0 or data.shape[2] == 0:
        raise ValueError(f"data must be a non-empty (K, N, N) stack of patterns, got shape {data.shape}")
    if data.dtype.kind not in "buif" or data.dtype.fields is not None:
        raise TypeError(f"data must hold real numbers, got dtype {data.dtype}")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ValueError("data must be finite (no NaN/inf intensities)")
    if data.dtype.kind in "if" and np.any(data < 0):
        raise ValueError("data must not hold negative intensities")
    k, ny, nx = data.shape
    try:
        pos = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"positions must be a (K, 2) array of (y, x) meters, got {type(positions).__name__}") from None
    if pos.shape != (k, 2):
        raise ValueError(f"positions must be ({k}, 2) (y, x) meters, one per pattern, got shape {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions must be finite (meters)")
    e_kev = positive_number(energy_kev, "energy_kev", "keV")
    z = positive_number(distance, "distance", "meters")
    try:
        ps = np.atleast_1d(np.asarray(pixel_size, dtype=np.float64)) if not isinstance(pixel_size, bool) else None
    except (TypeError, ValueError):
        ps = None
    if ps is None or ps.ndim != 1 or ps.size not in (1, 2):
        raise ValueError(f"pixel_size must be one pitch or (y, x) pitches in meters, got {pixel_size!r}")
    py, px = (positive_number(float(v), "pixel_size", "meters") for v in (ps if ps.size == 2 else (ps[0], ps[0])))
    if probe is not None:
        if not isinstance(probe, np.ndarray) or probe.shape != (ny, nx) or probe.dtype.kind not in "fc":
            raise ValueError(f"probe must be a ({ny}, {nx}) complex array like the patterns, got "
                             f"{getattr(probe, 'shape', type(probe).__name__)}")
        if not np.all(np.isfinite(probe)):
            raise ValueError("probe must be finite")
    mask_u32 = None
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (ny, nx):
            raise ValueError(f"mask must be ({ny}, {nx}) like the patterns, got shape {m.shape}")
        if m.dtype != bool:
            raise TypeError(f"mask must be a bool array (True = valid pixel), got dtype {m.dtype}")
        mask_u32 = (~m).astype(np.uint32)
    meta = file_attributes(attrs, parameters=parameters, inputs=inputs, program=program)
    translation = np.column_stack([pos[:, 1], pos[:, 0], np.zeros(k)])

    with atomic_path(path, argument="path", overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("cxi_version", data=np.int64(_CXI_VERSION))
            set_h5_attrs(f, meta)
            det = f.create_group(_DET)
            ds = det.create_dataset("data", data=data, chunks=(1, ny, nx))
            ds.attrs["axes"] = "translation:y:x"
            det.create_dataset("distance", data=z).attrs["units"] = "m"
            det.create_dataset("x_pixel_size", data=px).attrs["units"] = "m"
            det.create_dataset("y_pixel_size", data=py).attrs["units"] = "m"
            if mask_u32 is not None:
                det.create_dataset("mask", data=mask_u32)
            src = f.create_group(_SRC)
            en = src.create_dataset("energy", data=e_kev * _J_PER_KEV)
            en.attrs["units"] = "J"
            en.attrs["energy_kev"] = e_kev  # exact round trip of the caller's number
            if probe is not None:
                src.create_dataset("probe", data=probe)
            tr = f.create_dataset(_TRANSLATION, data=translation)
            tr.attrs["units"] = "m"
            d1 = f.create_group("entry_1/data_1")
            d1["data"] = ds
            d1["translation"] = tr
    return Path(path).expanduser().absolute()


def _scalar(f, name: str, p) -> float:
    if name not in f:
        raise KeyError(f"{str(p)!r}: no /{name}")
    return float(np.asarray(f[name][()]).reshape(-1)[0])


def _physical(value: float, name: str, p, unit: str, lo: float, hi: float, hint: str = "") -> float:
    """A stored quantity within the range any X-ray experiment has, else an error naming the file."""
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{str(p)!r}: /{name} = {value!r} {unit} is not in [{lo:g}, {hi:g}] {unit}{hint}")
    return value


@dataclass
class CXIHeader:
    """Everything of a CXI scan but its patterns (``read_cxi_header``).

    Attributes
    ----------
    path : Path
        The file.
    n_patterns : int
        ``K``, the number of diffraction patterns.
    pattern_shape : (int, int)
        ``(N, N)``, pixels of one pattern.
    dataset : str
        HDF5 path of the patterns (``entry_1/data_1/data`` or the detector's).
    positions : (K, 2) ndarray of float64
        Scan positions ``(y, x)``, meters.
    energy_kev : float
        Photon energy, keV.
    distance : float
        Sample-detector distance, meters.
    x_pixel_size, y_pixel_size : float
        Detector pixel pitch, meters.
    has_probe, has_mask : bool
        Whether the file holds a probe and a detector mask.
    attrs : dict
        Root attributes as plain Python values.
    """

    path: Path
    n_patterns: int
    pattern_shape: tuple
    dataset: str
    positions: np.ndarray
    energy_kev: float
    distance: float
    x_pixel_size: float
    y_pixel_size: float
    has_probe: bool = False
    has_mask: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


def _header(f, p: Path) -> CXIHeader:
    import h5py

    for name in ("entry_1/data_1/data", f"{_DET}/data"):
        if name in f and isinstance(f[name], h5py.Dataset):
            dataset = name
            shape = f[name].shape
            break
    else:
        raise KeyError(f"{str(p)!r}: no /entry_1/data_1/data (not a CXI scan)")
    if len(shape) != 3:
        raise ValueError(f"{str(p)!r}: the patterns must be 3-D (K, N, N), got shape {shape}")
    if _TRANSLATION not in f:
        raise KeyError(f"{str(p)!r}: no /{_TRANSLATION}")
    tr = np.asarray(f[_TRANSLATION][()], dtype=np.float64)
    if tr.ndim != 2 or tr.shape[0] != shape[0] or tr.shape[1] not in (2, 3):
        raise ValueError(f"{str(p)!r}: translation must be ({shape[0]}, 3), got shape {tr.shape}")
    if not np.all(np.isfinite(tr)):
        raise ValueError(f"{str(p)!r}: /{_TRANSLATION} holds non-finite positions")
    positions = np.ascontiguousarray(tr[:, [1, 0]])
    # CXI stores the photon energy in joules: 0.1-1000 keV; a value in eV or keV stored as is
    # would claim a photon of a planet's kinetic energy.
    energy_j = _physical(_scalar(f, f"{_SRC}/energy", p), f"{_SRC}/energy", p, "J", 0.1 * _J_PER_KEV,
                         1000 * _J_PER_KEV, " (CXI stores the energy in joules; eV or keV stored as is?)")
    stored_kev = f[f"{_SRC}/energy"].attrs.get("energy_kev")
    energy_kev = energy_j / _J_PER_KEV
    if stored_kev is not None and math.isclose(float(stored_kev), energy_kev, rel_tol=1e-12):
        energy_kev = float(stored_kev)
    return CXIHeader(path=p, n_patterns=int(shape[0]), pattern_shape=(int(shape[1]), int(shape[2])),
                     dataset=dataset, positions=positions, energy_kev=energy_kev,
                     distance=_physical(_scalar(f, f"{_DET}/distance", p), f"{_DET}/distance", p, "m", 1e-6, 1e3),
                     x_pixel_size=_physical(_scalar(f, f"{_DET}/x_pixel_size", p), f"{_DET}/x_pixel_size", p,
                                            "m", 1e-9, 1e-1, " (detector pixel size)"),
                     y_pixel_size=_physical(_scalar(f, f"{_DET}/y_pixel_size", p), f"{_DET}/y_pixel_size", p,
                                            "m", 1e-9, 1e-1, " (detector pixel size)"),
                     has_probe=f"{_SRC}/probe" in f,
                     has_mask=f"{_DET}/mask" in f, attrs=plain_attrs(dict(f.attrs)))


def _existing(path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"path: no such file {str(p)!r}")
    return p


@reading("the CXI header")
def read_cxi_header(path: str | os.PathLike) -> CXIHeader:
    """Read the geometry of a CXI scan without its patterns.

    What ``read_cxi`` returns except the patterns, probe and mask (only
    whether the file holds the last two), for deciding what to do with a scan
    before loading it (e.g. where a task on a cluster runs).

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    CXIHeader

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    KeyError
        If a required dataset is missing.
    ValueError
        For inconsistent shapes.
    """
    import h5py

    p = _existing(path)
    with h5py.File(p, "r") as f:
        return _header(f, p)


@reading("the CXI scan")
def read_cxi(path: str | os.PathLike) -> CXIScan:
    """Read a ptychographic scan from a CXI file.

    Reads ``/entry_1/data_1/data`` (else ``/entry_1/instrument_1/detector_1/data``),
    the translations, energy (J -> keV), distance, pixel sizes, and the optional
    probe (``source_1/probe``) and mask (``detector_1/mask``).

    Parameters
    ----------
    path : str or path-like
        The ``.cxi`` file.

    Returns
    -------
    CXIScan
        The patterns with the scan's geometry (``read_cxi_header``), probe and mask.

    Raises
    ------
    FileNotFoundError, KeyError, ValueError
        As ``read_cxi_header``.
    """
    import h5py

    p = _existing(path)
    with h5py.File(p, "r") as f:
        h = _header(f, p)
        data = f[h.dataset][()]
        probe = f[f"{_SRC}/probe"][()] if h.has_probe else None
        mask = (f[f"{_DET}/mask"][()] == 0) if h.has_mask else None  # CXI: nonzero = invalid
    return CXIScan(data=data, positions=h.positions, energy_kev=h.energy_kev, distance=h.distance,
                   x_pixel_size=h.x_pixel_size, y_pixel_size=h.y_pixel_size, probe=probe, mask=mask,
                   attrs=h.attrs)
