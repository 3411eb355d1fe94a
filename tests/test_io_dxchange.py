"""Data Exchange files: round trip, the convention's layout (theta in degrees), files written by hand."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import tomofuse
from tomofuse.io import DataExchange, array_sha256, read_dxchange, write_dxchange

A, ROWS, COLS = 12, 5, 8


@pytest.fixture
def scan():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4096, size=(A, ROWS, COLS), dtype=np.uint16)
    flat = rng.integers(3000, 4096, size=(3, ROWS, COLS), dtype=np.uint16)
    dark = rng.integers(90, 110, size=(2, ROWS, COLS), dtype=np.uint16)
    theta = np.linspace(0.0, np.pi, A, endpoint=False)
    return data, flat, dark, theta


def test_round_trip(tmp_path, scan):
    data, flat, dark, theta = scan
    path = tmp_path / "scan.h5"
    written = write_dxchange(path, data, flat=flat, dark=dark, theta=theta, attrs={"energy_kev": 8.4},
                             parameters={"photons": 1e4}, inputs={"phantom": array_sha256(data)})
    assert written == path
    back = read_dxchange(path)
    assert isinstance(back, DataExchange)
    for got, want in ((back.data, data), (back.flat, flat), (back.dark, dark)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert back.theta.dtype == np.float64
    np.testing.assert_allclose(back.theta, theta, rtol=1e-15, atol=1e-15)
    assert back.attrs["energy_kev"] == 8.4
    assert back.attrs["program"] == "tomofuse.io.write_dxchange"
    assert back.attrs["tomofuse_version"] == tomofuse.__version__
    assert json.loads(back.attrs["parameters"]) == {"photons": 1e4}
    assert json.loads(back.attrs["inputs"]) == {"phantom": array_sha256(data)}


def test_layout_follows_the_convention(tmp_path, scan):
    """Checked with h5py alone: /exchange/{data,data_white,data_dark,theta}, theta in degrees."""
    data, flat, dark, theta = scan
    path = tmp_path / "scan.h5"
    write_dxchange(path, data, flat=flat, dark=dark, theta=theta)
    with h5py.File(path, "r") as f:
        assert f["implements"][()].decode() == "exchange"
        assert set(f["exchange"]) == {"data", "data_white", "data_dark", "theta"}
        np.testing.assert_array_equal(f["exchange/data"][()], data)
        np.testing.assert_array_equal(f["exchange/data_white"][()], flat)
        np.testing.assert_array_equal(f["exchange/data_dark"][()], dark)
        deg = f["exchange/theta"][()]
        assert f["exchange/theta"].attrs["units"] == "deg"
        np.testing.assert_allclose(deg, np.arange(A) * 180.0 / A, rtol=0, atol=1e-12)
        assert f["exchange/data"].chunks == (1, ROWS, COLS)  # one projection per chunk
        assert f["exchange/data"].attrs["axes"] == "theta:y:x"
        assert f["exchange/data"].compression is None
        assert f.attrs["program"] == "tomofuse.io.write_dxchange"


def test_reads_hand_written_files(tmp_path, scan):
    data, flat, dark, _ = scan
    degrees = np.linspace(0.0, 180.0, A, endpoint=False)
    path = tmp_path / "beamline.h5"
    with h5py.File(path, "w") as f:  # as a beamline writes it: no units, no axes
        f["exchange/data"] = data
        f["exchange/data_white"] = flat
        f["exchange/theta"] = degrees.astype(np.float32)
    back = read_dxchange(path)
    np.testing.assert_allclose(back.theta, np.deg2rad(degrees.astype(np.float32).astype(np.float64)), rtol=1e-15)
    assert back.dark is None
    np.testing.assert_array_equal(back.flat, flat)
    assert back.attrs == {}
    with h5py.File(path, "a") as f:
        f["exchange/theta"].attrs["units"] = b"radians"
    np.testing.assert_allclose(read_dxchange(path).theta, degrees.astype(np.float32), rtol=1e-7)
    with h5py.File(path, "a") as f:
        f["exchange/theta"].attrs["units"] = "gradians"
    with pytest.raises(ValueError, match="units 'gradians'"):
        read_dxchange(path)
    with h5py.File(path, "a") as f:
        del f["exchange/theta"]
    assert read_dxchange(path).theta is None


def test_sinogram_ordered_axes_and_row_slabs(tmp_path, scan):
    data, flat, dark, theta = scan
    path = tmp_path / "sino.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("exchange/data", data=np.transpose(data, (1, 0, 2)))  # y:theta:x
        ds.attrs["axes"] = "y:theta:x"
        f.create_dataset("exchange/data_dark", data=dark).attrs["axes"] = "theta_dark:y:x"
        f["exchange/theta"] = np.rad2deg(theta)
    back = read_dxchange(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.data.flags.c_contiguous
    np.testing.assert_array_equal(back.dark, dark)
    slab = read_dxchange(path, rows=slice(1, 4))
    np.testing.assert_array_equal(slab.data, data[:, 1:4])
    np.testing.assert_array_equal(slab.dark, dark[:, 1:4])
    write_dxchange(tmp_path / "plain.h5", data, flat=flat, dark=dark, theta=theta)
    slab = read_dxchange(tmp_path / "plain.h5", rows=slice(2, None, 2))
    np.testing.assert_array_equal(slab.data, data[:, 2::2])
    np.testing.assert_array_equal(slab.flat, flat[:, 2::2])
    with h5py.File(path, "a") as f:
        f["exchange/data"].attrs["axes"] = "y:angle:x"
    with pytest.raises(ValueError, match="axes 'y:angle:x'"):
        read_dxchange(path)


def test_single_flat_and_dark_images(tmp_path, scan):
    data, flat, dark, theta = scan
    write_dxchange(tmp_path / "s.h5", data, flat=flat[0], dark=dark[0].astype(np.float32))
    back = read_dxchange(tmp_path / "s.h5")
    assert back.flat.shape == (1, ROWS, COLS) and back.dark.dtype == np.float32
    np.testing.assert_array_equal(back.flat[0], flat[0])
    assert back.theta is None


def test_compression_and_chunks(tmp_path, scan):
    data, *_ = scan
    write_dxchange(tmp_path / "c.h5", data, compress=True, chunks=(4, ROWS, COLS))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["exchange/data"].compression == "gzip"
        assert f["exchange/data"].chunks == (4, ROWS, COLS)
    np.testing.assert_array_equal(read_dxchange(tmp_path / "c.h5").data, data)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(theta=np.zeros(A - 1)), ValueError, f"theta: expected {A} angles"),
    (dict(theta=np.full(A, np.nan)), ValueError, "theta must be finite"),
    (dict(theta=np.zeros((A, 1))), TypeError, "theta must be a 1-D array"),
    (dict(flat=np.zeros((2, ROWS, COLS + 1))), ValueError, r"flat: images must be \(5, 8\)"),
    (dict(dark=np.zeros((2, 2, ROWS, COLS))), ValueError, "dark must be"),
    (dict(dark=[[0.0]]), TypeError, "dark must be a numpy.ndarray"),
    (dict(flat=np.zeros((1, ROWS, COLS), complex)), TypeError, "flat must hold real numbers"),
    (dict(chunks=(1, 2)), ValueError, "chunks must be 3 positive ints"),
    (dict(compress="gzip"), TypeError, "compress must be"),
    (dict(attrs={"a": {"b": 1}}), TypeError, r"attrs\['a'\]"),
])
def test_bad_input(tmp_path, scan, kwargs, error, message):
    with pytest.raises(error, match=message):
        write_dxchange(tmp_path / "bad.h5", scan[0], **kwargs)
    assert os.listdir(tmp_path) == []


def test_bad_data_and_files(tmp_path, scan):
    with pytest.raises(ValueError, match=r"data must be \(n, rows, cols\)"):
        write_dxchange(tmp_path / "bad.h5", scan[0][0])
    with pytest.raises(ValueError, match="data must not be empty"):
        write_dxchange(tmp_path / "bad.h5", np.zeros((0, ROWS, COLS)))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_dxchange(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros((2, 2, 2))
    with pytest.raises(KeyError, match="not a Data Exchange file"):
        read_dxchange(tmp_path / "other.h5")
    with h5py.File(tmp_path / "short.h5", "w") as f:
        f["exchange/data"] = np.zeros((3, 2, 2))
        f["exchange/theta"] = np.zeros(2)
    with pytest.raises(ValueError, match="2 angles for 3 projections"):
        read_dxchange(tmp_path / "short.h5")
    with pytest.raises(TypeError, match="rows must be a slice"):
        read_dxchange(tmp_path / "short.h5", rows=1)


def test_overwrite_and_atomicity(tmp_path, scan, monkeypatch):
    data, flat, dark, theta = scan
    path = tmp_path / "scan.h5"
    write_dxchange(path, data, theta=theta)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_dxchange(path, data[:2], theta=theta[:2])
    assert path.read_bytes() == before
    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "data_dark":
            raise KeyboardInterrupt("interrupted")
        return original(self, name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(h5py.Group, "create_dataset", failing)
        with pytest.raises(KeyboardInterrupt):
            write_dxchange(path, data, flat=flat, dark=dark, overwrite=True)
        with pytest.raises(KeyboardInterrupt):
            write_dxchange(tmp_path / "new.h5", data, flat=flat, dark=dark)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["scan.h5"]
    write_dxchange(path, data[:2], theta=theta[:2], overwrite=True)
    assert read_dxchange(path).data.shape == (2, ROWS, COLS)
