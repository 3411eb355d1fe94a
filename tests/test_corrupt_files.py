"""Corrupt and inconsistent inputs: truncated and bit-flipped HDF5 / CXI / Data Exchange / TIFF /
Zarr / NumPy files, wrong dataset paths, metadata that contradicts the data. Every reader must raise
a clear error naming the file and the problem (OSError -- CorruptFileError for damaged bytes --,
ValueError for contradicting metadata, KeyError for a wrong dataset path; the file's name in the
message) and never return a partial result.

The table of cases and messages in docs/reliability.md is written from this test's report
(TOMOFUSE_CORRUPT_REPORT=path).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomofuse import io

REPORT: list[dict] = []


def teardown_module(module):
    path = os.environ.get("TOMOFUSE_CORRUPT_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(REPORT, f, indent=1)


def _truncate(path: Path, fraction=0.5):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))


def _flip_bits(path: Path, seed=0, count=64, start=0.1, stop=0.9):
    """Flip `count` random bytes in the middle part of a file (headers and B-tree nodes included)."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(int(len(data) * start), int(len(data) * stop), count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _header_flip(path: Path):
    data = bytearray(path.read_bytes())
    for i in range(0, min(len(data), 64)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _expect_clear_error(case, fn, path, *words):
    try:
        result = fn()
    except (OSError, ValueError, KeyError) as e:  # noqa: PERF203
        msg = str(e)
        REPORT.append({"case": case, "error": type(e).__name__, "message": msg[:300]})
        assert Path(path).name in msg, f"{case}: the message does not name the file: {msg}"
        for w in words:
            assert w.lower() in msg.lower(), f"{case}: the message does not say {w!r}: {msg}"
        return
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"{case}: {type(e).__name__} instead of a clear OSError/ValueError/KeyError: {e}")
    pytest.fail(f"{case}: returned {type(result).__name__} from a corrupt file instead of raising")


# ------------------------------------------------------------------------------------ fixtures

def _cxi(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "scan.cxi"
    io.write_cxi(p, rng.poisson(5.0, (6, 16, 16)).astype(np.float32), positions=rng.uniform(-1e-6, 1e-6, (6, 2)),
                 energy_kev=6.2, distance=7.362, pixel_size=172e-6)
    return p


def _dx(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "scan.h5"
    io.write_dxchange(p, rng.integers(100, 1000, (8, 12, 16)).astype(np.uint16),
                      flat=np.full((2, 12, 16), 1000, np.uint16), dark=np.zeros((1, 12, 16), np.uint16),
                      theta=np.linspace(0, 180, 8, endpoint=False))
    return p


def _volume(tmp_path, suffix):
    p = tmp_path / f"vol{suffix}"
    io.write_volume(p, np.random.default_rng(2).random((8, 24, 20)).astype(np.float32))
    return p


CORRUPTIONS = {"truncated": _truncate, "bit-flipped": _flip_bits, "header": _header_flip}


# --------------------------------------------------------------------------------- corrupt bytes

@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_cxi(tmp_path, kind):
    p = _cxi(tmp_path)
    CORRUPTIONS[kind](p)
    _expect_clear_error(f"CXI {kind}", lambda: io.read_cxi(p), p)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_data_exchange(tmp_path, kind):
    p = _dx(tmp_path)
    CORRUPTIONS[kind](p)
    _expect_clear_error(f"Data Exchange {kind}", lambda: io.read_dxchange(p), p)


@pytest.mark.parametrize("suffix", [".h5", ".tif", ".npy"])
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_volume(tmp_path, suffix, kind):
    p = _volume(tmp_path, suffix)
    CORRUPTIONS[kind](p)
    if kind == "bit-flipped" and suffix in (".npy", ".tif"):
        # raw uncompressed payload: flipped data bytes are valid numbers -- only headers can be
        # checked; flip the header region instead
        _header_flip(p)
    _expect_clear_error(f"volume {suffix} {kind}", lambda: io.read_volume(p), p)


@pytest.mark.parametrize("kind", ["truncated-chunk", "deleted-chunk", "bad-metadata"])
def test_corrupt_zarr(tmp_path, kind):
    pytest.importorskip("zarr")
    p = _volume(tmp_path, ".zarr")
    chunks = sorted(f for f in p.rglob("*") if f.is_file() and "zarr.json" not in f.name and not f.name.startswith("."))
    meta = sorted(p.rglob("zarr.json"))
    if kind == "truncated-chunk":
        _truncate(chunks[0], 0.3)
    elif kind == "deleted-chunk":
        chunks[0].unlink()
    else:
        meta[-1].write_text(meta[-1].read_text()[: len(meta[-1].read_text()) // 2])
    _expect_clear_error(f"Zarr {kind}", lambda: np.asarray(io.read_volume(p)[0]), p)


# ----------------------------------------------------------------------- wrong paths and metadata

def test_wrong_dataset_paths(tmp_path):
    p = _volume(tmp_path, ".h5")
    _expect_clear_error("HDF5 missing dataset", lambda: io.read_volume(f"{p}:/no/such"), p, "no/such")
    with h5py.File(p, "a") as f:
        f.create_group("grp")
    _expect_clear_error("HDF5 path is a group", lambda: io.read_volume(f"{p}:/grp"), p, "grp")
    _expect_clear_error("missing file", lambda: io.read_volume(tmp_path / "none.h5"), tmp_path / "none.h5")
    d = _dx(tmp_path)
    with h5py.File(d, "a") as f:
        del f["exchange/data"]
    _expect_clear_error("Data Exchange without /exchange/data", lambda: io.read_dxchange(d), d, "exchange/data")
    c = _cxi(tmp_path)
    with h5py.File(c, "a") as f:
        name = [k for k in f["entry_1"].keys() if k.startswith("instrument")][0]
        del f[f"entry_1/{name}"]
    _expect_clear_error("CXI without instrument", lambda: io.read_cxi(c), c)


def test_metadata_contradicting_the_data(tmp_path):
    d = _dx(tmp_path)
    with h5py.File(d, "a") as f:           # 5 angles for 8 projections
        del f["exchange/theta"]
        f["exchange/theta"] = np.linspace(0, 180, 5)
    _expect_clear_error("Data Exchange angle count", lambda: io.read_dxchange(d), d, "theta")
    c = _cxi(tmp_path)
    with h5py.File(c, "a") as f:           # 3 positions for 6 patterns
        for t in ("entry_1/data_1/translation", "entry_1/sample_1/geometry_1/translation"):  # hard links
            if t in f:
                del f[t]
                f[t] = np.zeros((3, 3))
    _expect_clear_error("CXI position count", lambda: io.read_cxi(c), c, "translation")
    (tmp_path / "sub").mkdir()
    c = tmp_path / "energy.cxi"
    shutil.copy(_cxi(tmp_path / "sub"), c)
    with h5py.File(c, "a") as f:           # energy stored in eV instead of joules: 6200 "J"
        e = [k for k in _walk(f) if k.endswith("energy")][0]
        f[e][()] = 6200.0
    _expect_clear_error("CXI energy units", lambda: io.read_cxi(c), c, "energy")
    c = tmp_path / "pixel.cxi"
    shutil.copy(tmp_path / "sub" / "scan.cxi", c)
    with h5py.File(c, "a") as f:           # a negative detector pixel size
        k = [k for k in _walk(f) if k.endswith("x_pixel_size")][0]
        f[k][()] = -172e-6
    _expect_clear_error("CXI pixel size", lambda: io.read_cxi(c), c, "pixel")


def _walk(f):
    names = []
    f.visit(names.append)
    return names
