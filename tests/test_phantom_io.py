"""Electrode.save / load: exact round trip, provenance, atomic writes (acceptance 8)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import h5py
import numpy as np
import pandas as pd
import pytest

import tomofuse
from tomofuse.phantom import load, refractive_volume


def json_normalized(obj):
    return json.loads(json.dumps(obj))


@pytest.fixture(params=["pristine", "cycled"])
def saved(request, tmp_path):
    e = request.getfixturevalue(request.param)
    path = tmp_path / f"{request.param}.h5"
    e.save(path)
    return e, path


def test_round_trip_exact(saved):
    e, path = saved
    back = load(path)
    np.testing.assert_array_equal(back.labels, e.labels)
    np.testing.assert_array_equal(back.particles, e.particles)
    assert back.labels.dtype == e.labels.dtype == np.uint8
    assert back.particles.dtype == e.particles.dtype == np.int32
    pd.testing.assert_frame_equal(back.truth, e.truth, check_exact=True)
    assert back.truth.index.name == "particle"
    assert back.truth.index.dtype == np.int32
    assert back.voxel_size == e.voxel_size
    assert back.seed == e.seed
    assert back.cycled is e.cycled
    assert back.parameters == json_normalized(e.parameters)
    assert back.geometry is None
    assert back.phase_fractions() == e.phase_fractions()
    # a loaded electrode is as usable as a built one
    for a, b in zip(refractive_volume(back, 6.2), refractive_volume(e, 6.2)):
        np.testing.assert_array_equal(a, b)


def test_round_trip_parameters_identical(saved):
    """``load(path).parameters`` equals the saved ``parameters`` as they were (not only up to JSON)."""
    e, path = saved
    assert load(path).parameters == e.parameters


def test_provenance_attributes(saved):
    e, path = saved
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        assert set(f) >= {"labels", "particles", "truth"}
        assert f["labels"].compression == "gzip"
    assert attrs["tomofuse_version"] == tomofuse.__version__
    assert attrs["program"] == "tomofuse.phantom.electrode"
    created = dt.datetime.fromisoformat(attrs["created_utc"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 600
    assert json.loads(attrs["parameters"]) == json_normalized(e.parameters)
    inputs = json.loads(attrs["inputs"])
    assert set(inputs) == {"labels", "particles"}
    assert all(re.fullmatch("[0-9a-f]{64}", v) for v in inputs.values())
    assert inputs["labels"] != inputs["particles"]
    assert attrs["voxel_size"] == e.voxel_size
    assert attrs["voxel_size_unit"] == "m"


def test_missing_directory(pristine, tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(OSError, match=re.escape(str(missing))) as info:
        pristine.save(missing / "out.h5")
    assert "path" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_directory_as_path(pristine, tmp_path):
    with pytest.raises(OSError, match=re.escape(str(tmp_path))) as info:
        pristine.save(tmp_path)
    assert "path" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing(pristine, tmp_path, monkeypatch, exc):
    calls = []
    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:  # labels written, particles not
            raise exc("simulated interruption")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    path = tmp_path / "out.h5"
    with pytest.raises(exc, match="simulated interruption"):
        pristine.save(path)
    assert calls == ["labels", "particles"]
    assert not path.exists()
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_interrupted_overwrite_keeps_old_file(pristine, tmp_path, monkeypatch):
    path = tmp_path / "out.h5"
    pristine.save(path)
    before = path.read_bytes()

    def failing(self, name, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        pristine.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.h5"]


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)
    with pytest.raises(OSError):
        load(tmp_path / "missing.h5")


def test_saved_file_permissions_follow_the_umask(saved, tmp_path):
    """The temporary file is created by the writer, not mkstemp (which would force 0600)."""
    e, _ = saved
    old = os.umask(0o022)
    try:
        path = tmp_path / "perm.h5"
        e.save(path)
    finally:
        os.umask(old)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
