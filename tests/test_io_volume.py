"""tomofuse.io.write_volume / read_volume: every format round-trips, peers read the files, writes are atomic."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import h5py
import numpy as np
import pytest
import tifffile

import tomofuse
from tomofuse.io import array_sha256, read_volume, split_dataset_path, volume_format, write_volume

try:
    import zarr

    HAVE_ZARR = int(zarr.__version__.split(".")[0]) >= 3
except ImportError:  # zarr 3 needs Python >= 3.11
    HAVE_ZARR = False
needs_zarr = pytest.mark.skipif(not HAVE_ZARR, reason="Zarr volumes need zarr>=3 (Python >= 3.11)")

FORMATS = ("h5", "zarr", "tif", "npy") if HAVE_ZARR else ("h5", "tif", "npy")
DTYPES = (np.float32, np.float64, np.uint8, np.uint16, np.int32, np.complex64, np.bool_)
USER_ATTRS = {"voxel_size": 21.4e-9, "voxel_size_unit": "m", "energy_kev": 6, "cycled": False,
              "angles_deg": [0.0, 0.5, 1.25], "labels": ["pore", "graphite"], "flags": [True, False]}
PROVENANCE_KEYS = {"tomofuse_version", "program", "created_utc", "parameters", "inputs", "python", "numpy", "fft"}


def sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.3
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return (rng.standard_normal(shape) * 1e3).astype(dtype)


def assert_same_array(back, original):
    assert back.dtype == original.dtype
    assert back.shape == original.shape
    np.testing.assert_array_equal(back, original)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_dtype(tmp_path, fmt, dtype):
    volume = sample((5, 6, 7), dtype)
    path = tmp_path / f"v.{fmt}"
    written = write_volume(path, volume, attrs=USER_ATTRS, parameters={"filter": "ramp", "rows": 5},
                           inputs={"projections": "ab" * 32}, program="tests.round_trip")
    assert written == path
    back, attrs = read_volume(path)
    assert isinstance(back, np.ndarray)
    assert_same_array(back, volume)
    assert {k: attrs[k] for k in USER_ATTRS} == USER_ATTRS
    assert set(attrs) == set(USER_ATTRS) | PROVENANCE_KEYS
    assert attrs["tomofuse_version"] == tomofuse.__version__
    assert attrs["program"] == "tests.round_trip"
    assert json.loads(attrs["parameters"]) == {"filter": "ramp", "rows": 5}
    assert json.loads(attrs["inputs"]) == {"projections": "ab" * 32}
    created = dt.datetime.fromisoformat(attrs["created_utc"])
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 600


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", [(1, 4, 3), (4, 3), (2, 1, 9)])
def test_round_trip_shapes(tmp_path, fmt, shape):
    volume = sample(shape, np.float32, seed=1)
    path = tmp_path / f"v.{fmt}"
    write_volume(path, volume)
    assert_same_array(read_volume(path)[0], volume)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "tif"])
def test_round_trip_other_ranks(tmp_path, fmt):
    for volume in (sample((11,), np.int16), sample((2, 3, 4, 5), np.float32)):
        path = tmp_path / f"v{volume.ndim}.{fmt}"
        write_volume(path, volume)
        assert_same_array(read_volume(path)[0], volume)


@needs_zarr
def test_peers_read_the_files(tmp_path):
    """h5py, zarr, tifffile and numpy read what write_volume wrote, without tomofuse."""
    volume = sample((4, 5, 6), np.uint16, seed=2)
    write_volume(tmp_path / "v.h5:/recon/volume", volume, attrs={"voxel_size": 2e-8})
    with h5py.File(tmp_path / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["recon/volume"][()], volume)
        assert f["recon/volume"].attrs["voxel_size"] == 2e-8
        assert f["recon/volume"].attrs["program"] == "tomofuse.io.write_volume"
    write_volume(tmp_path / "v.zarr", volume, attrs={"voxel_size": 2e-8})
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="r")
    np.testing.assert_array_equal(z[...], volume)
    assert z.metadata.zarr_format == 3
    assert z.attrs["voxel_size"] == 2e-8
    write_volume(tmp_path / "v.tif", volume, attrs={"voxel_size": 2e-8})
    with tifffile.TiffFile(tmp_path / "v.tif") as tf:
        assert len(tf.pages) == 4  # one page per z slice
        for k, page in enumerate(tf.pages):
            np.testing.assert_array_equal(page.asarray(), volume[k])
        description = json.loads(tf.pages[0].description)
        assert description["shape"] == [4, 5, 6]
        assert description["tomofuse"]["attrs"]["voxel_size"] == 2e-8
    write_volume(tmp_path / "v.npy", volume, attrs={"voxel_size": 2e-8})
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), volume)
    sidecar = json.loads((tmp_path / "v.npy.json").read_text())
    assert sidecar["attrs"]["voxel_size"] == 2e-8
    assert sidecar["shape"] == [4, 5, 6]


@needs_zarr
def test_files_written_by_peers(tmp_path):
    """Files from other programs read back as arrays with empty (or their own) attributes."""
    volume = sample((3, 4, 5), np.float32, seed=3)
    np.save(tmp_path / "a.npy", volume)
    tifffile.imwrite(tmp_path / "a.tif", volume, photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", volume, imagej=True)
    for name in ("a.npy", "a.tif", "b.tif"):
        back, attrs = read_volume(tmp_path / name)
        assert_same_array(back, volume)
        assert attrs == {}
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.attrs["root_note"] = "root"
        ds = f.create_dataset("entry/data", data=volume)
        ds.attrs["units"] = b"counts"
        ds.attrs["axes"] = np.array([1, 2, 3], dtype=np.int64)
    back, attrs = read_volume(tmp_path / "a.h5")  # the only dataset
    assert_same_array(back, volume)
    assert attrs == {"root_note": "root", "units": "counts", "axes": [1, 2, 3]}
    z = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    z.create_array("scan/data", data=volume)
    z.create_array("other", data=np.zeros(3))
    assert_same_array(read_volume(f"{tmp_path}/g.zarr:/scan/data")[0], volume)
    assert_same_array(read_volume(tmp_path / "g.zarr", default_dataset="scan/data")[0], volume)
    with pytest.raises(ValueError, match="name the array"):
        read_volume(tmp_path / "g.zarr")
    with pytest.raises(KeyError, match="nothere"):
        read_volume(f"{tmp_path}/g.zarr:/nothere")
    with pytest.raises(KeyError, match="is a group"):
        read_volume(f"{tmp_path}/g.zarr:/scan")


@needs_zarr
def test_zarr_and_hdf5_named_datasets(tmp_path):
    volume = sample((3, 4, 5), np.float32, seed=4)
    write_volume(f"{tmp_path}/v.zarr:/recon/fbp", volume)
    assert_same_array(read_volume(f"{tmp_path}/v.zarr:/recon/fbp")[0], volume)
    write_volume(tmp_path / "v.h5", volume)  # default dataset name
    with h5py.File(tmp_path / "v.h5", "r") as f:
        assert list(f) == ["volume"]
    assert_same_array(read_volume(tmp_path / "v.h5")[0], volume)
    assert_same_array(read_volume(f"{tmp_path}/v.h5:volume")[0], volume)
    with pytest.raises(KeyError, match="'/missing'"):
        read_volume(f"{tmp_path}/v.h5:/missing")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros(2)
        f["b"] = np.ones(2)
    with pytest.raises(ValueError, match=r"name the dataset.*\['a', 'b'\]"):
        read_volume(tmp_path / "two.h5")
    np.testing.assert_array_equal(read_volume(tmp_path / "two.h5", default_dataset="b")[0], np.ones(2))


@needs_zarr
def test_chunks_and_compression(tmp_path):
    volume = np.zeros((64, 128, 256), np.float32)  # 8 MiB, mostly zeros so that compressing it is quick
    volume[::9] = sample((8, 128, 256), np.float32, seed=5)
    write_volume(tmp_path / "d.h5", volume)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        ds = f["volume"]
        assert ds.chunks == (32, 128, 256)  # z slabs of whole slices, 4 MiB
        assert ds.compression is None  # float data: not worth gzip by default
    write_volume(tmp_path / "c.h5", volume, chunks=(8, 50, 300), compress=True)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f["volume"].chunks == (8, 50, 256)  # clipped to the shape
        assert f["volume"].compression == "gzip" and f["volume"].shuffle
    labels = (volume > 0).astype(np.uint8)
    write_volume(tmp_path / "l.h5", labels)
    with h5py.File(tmp_path / "l.h5", "r") as f:
        assert f["volume"].compression == "gzip"  # integer labels are by default
        assert f["volume"].chunks == (64, 128, 256)  # 2 MiB of uint8 in one chunk
    assert_same_array(read_volume(tmp_path / "l.h5")[0], labels)
    write_volume(tmp_path / "d.zarr", volume)
    write_volume(tmp_path / "c.zarr", volume, chunks=(1, 128, 256), compress=False)
    d = zarr.open_array(str(tmp_path / "d.zarr"), mode="r")
    c = zarr.open_array(str(tmp_path / "c.zarr"), mode="r")
    assert d.chunks == (32, 128, 256) and len(d.compressors) == 1
    assert c.chunks == (1, 128, 256) and c.compressors == ()
    # one chunk per slice (c/<z>/0/0); all-zero chunks equal the fill value and are not stored
    assert sorted(int(z) for z in os.listdir(tmp_path / "c.zarr" / "c")) == list(range(0, 64, 9))
    # big slices: the leading axis goes to 1, then y is halved
    wide = np.zeros((3, 2048, 1024), np.float32)  # 8 MiB per slice
    write_volume(tmp_path / "w.h5", wide)
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert f["volume"].chunks == (1, 1024, 1024)
    write_volume(tmp_path / "z.tif", volume[:10], compress=True)
    with tifffile.TiffFile(tmp_path / "z.tif") as tf:
        assert tf.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert_same_array(read_volume(tmp_path / "z.tif")[0], volume[:10])
    for name in ("d.h5", "c.h5", "d.zarr", "c.zarr"):
        assert_same_array(read_volume(tmp_path / name)[0], volume)


@pytest.mark.parametrize("name", ["v.h5", pytest.param("v.zarr", marks=needs_zarr), "v.tif", "v.npy",
                                  pytest.param("z.tif", marks=needs_zarr)])
def test_lazy_reading(tmp_path, name):
    volume = sample((6, 5, 4), np.float32, seed=6)
    write_volume(tmp_path / name, volume, compress=True if name == "z.tif" else None, attrs={"k": 1})
    lazy, attrs = read_volume(tmp_path / name, lazy=True)
    assert not isinstance(lazy, np.ndarray) or isinstance(lazy, np.memmap)
    assert lazy.shape == volume.shape and lazy.dtype == volume.dtype
    np.testing.assert_array_equal(lazy[2:4], volume[2:4])
    np.testing.assert_array_equal(lazy[:, 1, :], volume[:, 1, :])
    assert attrs["k"] == 1
    if name == "v.h5":
        assert isinstance(lazy, h5py.Dataset)
        lazy.file.close()
    if name == "z.tif":
        assert isinstance(lazy, zarr.Array)


# ------------------------------------------------------------------------------------ paths and parsing

def test_split_dataset_path():
    path, name = split_dataset_path("a/b.h5:/exchange/data")
    assert str(path) == "a/b.h5" and name == "/exchange/data"
    path, name = split_dataset_path("dir.v1/scan.HDF5:/entry")
    assert str(path) == "dir.v1/scan.HDF5" and name == "/entry"
    path, name = split_dataset_path("out.zarr:/recon")
    assert str(path) == "out.zarr" and name == "/recon"
    assert split_dataset_path("scan.h5:") == (split_dataset_path("scan.h5")[0], None)
    assert split_dataset_path("vol.npy")[1] is None
    assert volume_format("x.TIFF") == "tiff"
    assert volume_format("x.hdf5:/a") == "hdf5"
    assert volume_format("x.zarr") == "zarr"
    assert volume_format("x.npy") == "npy"


@pytest.mark.parametrize("spec, error, message", [
    ("vol.tif:/a", ValueError, "holds one array"),
    ("vol.npy:/a", ValueError, "holds one array"),
    ("vol.h5:/", ValueError, "root group"),
    ("vol.h5:/a//b", ValueError, "empty"),
    ("vol.h5:/a/../b", ValueError, r"'\.\.'"),
    ("vol.txt", ValueError, "unsupported file type '.txt'"),
    ("vol", ValueError, "unsupported file type ''"),
    ("", ValueError, "must name a file"),
    (42, TypeError, "must be a path"),
    (b"vol.h5", TypeError, "must be a path"),
])
def test_bad_specs(tmp_path, spec, error, message):
    with pytest.raises(error, match=message):
        write_volume(spec, np.zeros((2, 2, 2), np.float32))
    with pytest.raises(error, match=message):
        read_volume(spec)
    assert os.listdir(tmp_path) == []


def test_missing_files(tmp_path):
    for name in ("no.h5:/a", "no.zarr", "no.tif", "no.npy"):
        with pytest.raises(FileNotFoundError, match="no such file"):
            read_volume(tmp_path / name if ":" not in name else f"{tmp_path}/{name}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_volume(tmp_path / "no" / "dir.h5", np.zeros(3))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_volume(tmp_path / "no" / "dir.zarr", np.zeros(3))


# ----------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("volume, error, message", [
    ([[1.0, 2.0]], TypeError, "numpy.ndarray"),
    (np.zeros((0, 3, 3), np.float32), ValueError, "empty"),
    (np.float32(3.0), TypeError, "numpy.ndarray"),
    (np.array(3.0), ValueError, "at least 1 dimension"),
    (np.array([["a", "b"]]), TypeError, "dtype <U1"),
    (np.array([{}, None], dtype=object), TypeError, "dtype object"),
    (np.zeros(3, dtype=[("a", "f4")]), TypeError, "dtype"),
])
@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_volume(tmp_path, fmt, volume, error, message):
    with pytest.raises(error, match=message):
        write_volume(tmp_path / f"v.{fmt}", volume)
    assert os.listdir(tmp_path) == []


def test_bad_options(tmp_path):
    v = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"TIFF stack holds 2-D or 3-D.*\(2, 3, 4, 1\)"):
        write_volume(tmp_path / "v.tif", v[..., None])
    with pytest.raises(ValueError, match="TIFF stack"):
        write_volume(tmp_path / "v.tif", v[0, 0])
    with pytest.raises(ValueError, match=r"chunks must be 3 positive ints.*\(2, 3, 4\)"):
        write_volume(tmp_path / "v.h5", v, chunks=(1, 2))
    with pytest.raises(ValueError, match="chunks must be 3 positive ints"):
        write_volume(tmp_path / "v.zarr", v, chunks=(1, 0, 4))
    with pytest.raises(TypeError, match="chunks must be a sequence"):
        write_volume(tmp_path / "v.h5", v, chunks=4)
    for fmt in ("tif", "npy"):
        with pytest.raises(ValueError, match="not chunked"):
            write_volume(tmp_path / f"v.{fmt}", v, chunks=(1, 3, 4))
    with pytest.raises(ValueError, match="not compressed"):
        write_volume(tmp_path / "v.npy", v, compress=True)
    with pytest.raises(TypeError, match="compress must be"):
        write_volume(tmp_path / "v.h5", v, compress="gzip")
    with pytest.raises(TypeError, match="overwrite must be"):
        write_volume(tmp_path / "v.h5", v, overwrite=1)
    with pytest.raises(TypeError, match="lazy must be"):
        read_volume(tmp_path / "v.h5", lazy="yes")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("attrs, message", [
    ({"a": {"b": 1}}, r"attrs\['a'\].*json.dumps"),
    ({"a": None}, r"attrs\['a'\]"),
    ({"a": [1, "x"]}, r"attrs\['a'\]: a sequence must hold only"),
    ({"a": [[1, 2]]}, r"attrs\['a'\]: sequence items"),
    ({"a": np.zeros((2, 2))}, r"attrs\['a'\]: arrays must be 1-D"),
    ({1: "x"}, "keys must be non-empty str"),
    ({"": "x"}, "keys must be non-empty str"),
    (["a"], "attrs must be a mapping"),
])
def test_bad_attrs(tmp_path, attrs, message):
    with pytest.raises(TypeError, match=message):
        write_volume(tmp_path / "v.h5", np.zeros(3), attrs=attrs)
    assert os.listdir(tmp_path) == []


def test_attrs_numpy_values_and_provenance_keys(tmp_path):
    attrs = {"n": np.int64(3), "x": np.float32(0.5), "v": np.array([1.5, 2.5]), "program": "user's",
             "b": np.bool_(True)}
    for fmt in FORMATS:
        write_volume(tmp_path / f"v.{fmt}", np.zeros(3) if fmt != "tif" else np.zeros((2, 2)), attrs=attrs)
        _, back = read_volume(tmp_path / f"v.{fmt}")
        assert back["n"] == 3 and type(back["n"]) is int
        assert back["x"] == 0.5 and type(back["x"]) is float
        assert back["v"] == [1.5, 2.5]
        assert back["b"] is True
        assert back["program"] == "tomofuse.io.write_volume"  # the file's provenance wins


# ---------------------------------------------------------------------------- overwrite and atomicity

@pytest.mark.parametrize("fmt", FORMATS)
def test_overwrite_refused_then_allowed(tmp_path, fmt):
    old, new = sample((3, 4, 5), np.float32, 7), sample((2, 4, 5), np.int16, 8)
    path = tmp_path / f"v.{fmt}"
    write_volume(path, old, attrs={"generation": 1})
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(FileExistsError, match=re.escape(str(path)) + ".*overwrite=True"):
        write_volume(path, new, attrs={"generation": 2})
    back, attrs = read_volume(path)
    assert_same_array(back, old)
    assert attrs["generation"] == 1
    write_volume(path, new, attrs={"generation": 2}, overwrite=True)
    back, attrs = read_volume(path)
    assert_same_array(back, new)
    assert attrs["generation"] == 2
    assert sorted(os.listdir(tmp_path)) == listing  # no temporary or old copies left


def _fail_h5(monkeypatch, exc):
    original = h5py.Group.create_dataset

    def failing(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise exc("simulated failure")
    monkeypatch.setattr(h5py.Group, "create_dataset", failing)


def _fail_zarr(monkeypatch, exc):
    original = zarr.Array.__setitem__
    calls = []

    def failing(self, key, value):
        calls.append(key)
        original(self, np.s_[:1], value[:1])  # a partial write, then the failure
        raise exc("simulated failure")
    monkeypatch.setattr(zarr.Array, "__setitem__", failing)


def _fail_tiff(monkeypatch, exc):
    original = tifffile.imwrite

    def failing(file, data, **kwargs):
        original(file, data[:1], **kwargs)
        raise exc("simulated failure")
    monkeypatch.setattr(tifffile, "imwrite", failing)


def _fail_npy(monkeypatch, exc):
    def failing(file, arr, **kwargs):
        file.write(b"\x93NUMPY partial")
        raise exc("simulated failure")
    monkeypatch.setattr(np, "save", failing)


FAILERS = {"h5": _fail_h5, "zarr": _fail_zarr, "tif": _fail_tiff, "npy": _fail_npy}


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, fmt, exc):
    path = tmp_path / f"v.{fmt}"
    with monkeypatch.context() as m:
        FAILERS[fmt](m, exc)
        with pytest.raises(exc, match="simulated failure"):
            write_volume(path, sample((3, 4, 5), np.float32))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_overwrite_keeps_old_file(tmp_path, monkeypatch, fmt):
    old = sample((3, 4, 5), np.float32, 9)
    path = tmp_path / f"v.{fmt}"
    write_volume(path, old, attrs={"generation": 1})
    listing = sorted(os.listdir(tmp_path))
    with monkeypatch.context() as m:
        FAILERS[fmt](m, RuntimeError)
        with pytest.raises(RuntimeError, match="simulated failure"):
            write_volume(path, sample((3, 4, 5), np.float32, 10), overwrite=True)
    back, attrs = read_volume(path)
    assert_same_array(back, old)
    assert attrs["generation"] == 1
    assert sorted(os.listdir(tmp_path)) == listing


def test_npy_sidecar_mismatch_warns(tmp_path):
    write_volume(tmp_path / "v.npy", np.zeros((2, 3), np.float32), attrs={"k": 1})
    np.save(tmp_path / "v.npy", np.zeros((4, 3), np.float32))  # replaced by another program
    with pytest.warns(UserWarning, match=r"describes a \(2, 3\) float32 array.*attributes ignored"):
        back, attrs = read_volume(tmp_path / "v.npy")
    assert back.shape == (4, 3) and attrs == {}
    (tmp_path / "v.npy.json").write_text("not json")
    with pytest.warns(UserWarning, match="not a tomofuse sidecar"):
        assert read_volume(tmp_path / "v.npy")[1] == {}


@needs_zarr
def test_inputs_hash_identifies_the_array(tmp_path):
    volume = sample((3, 4, 5), np.float32, 11)
    write_volume(tmp_path / "v.zarr", volume, inputs={"source": array_sha256(volume)})
    back, attrs = read_volume(tmp_path / "v.zarr")
    assert json.loads(attrs["inputs"])["source"] == array_sha256(back)


@needs_zarr
def test_zarr_directory_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_volume(tmp_path / "v.zarr", np.zeros(3))
        write_volume(tmp_path / "v.h5", np.zeros(3))
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "v.zarr").st_mode & 0o777) == oct(0o755)
    assert oct(os.stat(tmp_path / "v.h5").st_mode & 0o777) == oct(0o644)


@needs_zarr
def test_default_dataset_of_a_one_array_zarr_store(tmp_path):
    """A store that is one array (as fbp_to_zarr writes) is read as it is when the caller names a
    default dataset for HDF5 files and Zarr groups; naming an array inside it stays an error."""
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_volume(tmp_path / "v.zarr", volume)
    got, _ = read_volume(tmp_path / "v.zarr", default_dataset="volume")
    np.testing.assert_array_equal(got, volume)
    with pytest.raises(KeyError, match="holds one array"):
        read_volume(f"{tmp_path / 'v.zarr'}:/volume")
    write_volume(f"{tmp_path / 'g.zarr'}:/volume", volume)
    np.testing.assert_array_equal(read_volume(tmp_path / "g.zarr", default_dataset="volume")[0], volume)
