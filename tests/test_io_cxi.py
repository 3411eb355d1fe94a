"""tomofuse.io.read_cxi / write_cxi: CXI layout, SI units, round trip, plain-h5py files, atomic writes."""

import json

import h5py
import numpy as np
import pytest

from tomofuse.io import CXIScan, read_cxi, write_cxi

J_PER_EV = 1.602176634e-19


def _scan(k=5, n=16, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.poisson(50.0, (k, n, n)).astype(np.float32)
    pos = rng.uniform(-2e-6, 2e-6, (k, 2))
    probe = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))).astype(np.complex64)
    mask = rng.random((n, n)) < 0.1
    return data, pos, probe, mask


def test_round_trip_is_exact_and_layout_follows_cxi(tmp_path):
    data, pos, probe, mask = _scan()
    path = tmp_path / "scan.cxi"
    out = write_cxi(path, data, positions=pos, energy_kev=6.2, distance=7.362, pixel_size=172e-6, probe=probe,
                    mask=mask, parameters={"photons": 1e6}, program="test")
    assert out == path.absolute()
    scan = read_cxi(path)
    assert isinstance(scan, CXIScan)
    np.testing.assert_array_equal(scan.data, data)
    assert scan.data.dtype == np.float32
    np.testing.assert_array_equal(scan.positions, pos)
    np.testing.assert_array_equal(scan.probe, probe)
    np.testing.assert_array_equal(scan.mask, mask)
    assert scan.energy_kev == 6.2 and scan.distance == 7.362
    assert scan.x_pixel_size == 172e-6 and scan.y_pixel_size == 172e-6
    assert scan.attrs["program"] == "test" and json.loads(scan.attrs["parameters"]) == {"photons": 1e6}
    # the file itself, read with plain h5py: CXI names, SI units (energy in joules), translation (x, y, z)
    with h5py.File(path, "r") as f:
        assert int(f["cxi_version"][()]) >= 140
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], data)
        assert f["entry_1/data_1/data"].id == f["entry_1/instrument_1/detector_1/data"].id  # linked, not copied
        tr = f["entry_1/sample_1/geometry_1/translation"][()]
        assert tr.shape == (5, 3)
        np.testing.assert_array_equal(tr[:, 0], pos[:, 1])
        np.testing.assert_array_equal(tr[:, 1], pos[:, 0])
        np.testing.assert_array_equal(tr[:, 2], 0.0)
        assert f["entry_1/instrument_1/source_1/energy"][()] == pytest.approx(6200 * J_PER_EV, rel=1e-15)
        assert f["entry_1/instrument_1/detector_1/distance"][()] == 7.362
        m = f["entry_1/instrument_1/detector_1/mask"][()]
        assert m.dtype == np.uint32 and np.array_equal(m != 0, ~mask)  # file: nonzero = invalid; API: True = valid


def test_reads_a_file_written_by_plain_h5py(tmp_path):
    # a minimal CXI file as another program writes it: no provenance, no probe/mask, data only in data_1,
    # integer counts, rectangular detector pixels, energy from the SI constants
    path = tmp_path / "other.cxi"
    counts = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    translation = np.array([[1e-6, 2e-6, 0.0], [-1e-6, 0.5e-6, 0.0], [0.0, 0.0, 0.0]])
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 140
        f["entry_1/data_1/data"] = counts
        f["entry_1/sample_1/geometry_1/translation"] = translation
        f["entry_1/instrument_1/source_1/energy"] = 8000 * J_PER_EV
        f["entry_1/instrument_1/detector_1/distance"] = 5.0
        f["entry_1/instrument_1/detector_1/x_pixel_size"] = 75e-6
        f["entry_1/instrument_1/detector_1/y_pixel_size"] = 55e-6
    scan = read_cxi(path)
    np.testing.assert_array_equal(scan.data, counts)
    assert scan.data.dtype == np.uint16
    np.testing.assert_array_equal(scan.positions, translation[:, [1, 0]])
    assert scan.energy_kev == pytest.approx(8.0, rel=1e-14)
    assert (scan.distance, scan.x_pixel_size, scan.y_pixel_size) == (5.0, 75e-6, 55e-6)
    assert scan.probe is None and scan.mask is None


def test_rectangular_pixels_and_overwrite(tmp_path):
    data, pos, _, _ = _scan(k=2, n=8)
    path = tmp_path / "s.cxi"
    write_cxi(path, data, positions=pos, energy_kev=10.0, distance=2.0, pixel_size=(55e-6, 75e-6))
    scan = read_cxi(path)
    assert (scan.y_pixel_size, scan.x_pixel_size) == (55e-6, 75e-6) and scan.energy_kev == 10.0
    with pytest.raises(FileExistsError):
        write_cxi(path, data, positions=pos, energy_kev=10.0, distance=2.0, pixel_size=55e-6)
    write_cxi(path, data * 2, positions=pos, energy_kev=10.0, distance=2.0, pixel_size=55e-6, overwrite=True)
    np.testing.assert_array_equal(read_cxi(path).data, data * 2)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    data, pos, _, _ = _scan(k=2, n=8)
    path = tmp_path / "s.cxi"
    import tomofuse.io._cxi as cxi

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cxi, "set_h5_attrs", boom)
    with pytest.raises(RuntimeError):
        write_cxi(path, data, positions=pos, energy_kev=6.2, distance=7.0, pixel_size=1e-4)
    assert list(tmp_path.iterdir()) == []


def test_bad_input(tmp_path):
    data, pos, probe, mask = _scan(k=3, n=8)
    path = tmp_path / "s.cxi"
    good = dict(positions=pos, energy_kev=6.2, distance=7.0, pixel_size=172e-6)

    def bad(exc, match, d=data, **kw):
        with pytest.raises(exc, match=match):
            write_cxi(path, d, **{**good, **kw})

    bad(ValueError, "empty", d=np.zeros((0, 8, 8), np.float32))
    bad(ValueError, "shape", d=data[0])
    nan = data.copy()
    nan[0, 0, 0] = np.nan
    bad(ValueError, "finite", d=nan)
    bad(ValueError, "negative", d=-data)
    bad(TypeError, "data", d=list(data))
    bad(ValueError, "positions", positions=pos[:2])
    bad(ValueError, "positions", positions=np.full((3, 2), np.inf))
    bad(ValueError, "energy_kev", energy_kev=0.0)
    bad(ValueError, "distance", distance=-1.0)
    bad(ValueError, "pixel_size", pixel_size=(1e-4, 1e-4, 1e-4))
    bad(ValueError, "pixel_size", pixel_size=0.0)
    bad(ValueError, "pixel_size", pixel_size="wide")
    bad(ValueError, "probe", probe=probe[:4])
    bad(ValueError, "mask", mask=mask[:4])
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        read_cxi(tmp_path / "missing.cxi")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(KeyError, match="CXI"):
        read_cxi(other)
