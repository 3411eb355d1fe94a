"""tomofuse.ptycho.reconstruct_series: a stack equal to per-projection reconstruct, restart after a kill, Dask."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomofuse import ptycho
from tomofuse.acquire import ptycho_scan
from tomofuse.io import write_cxi
from tomofuse.ptycho import _series

N = 32
DX = 20e-9
ENGINES = (("dm", 5), ("ml", 3))
OPTIONS = dict(engines=ENGINES, checkpoint_every=2, threads=1)
ANGLES = np.array([0.0, 0.6, 1.2])


class Killed(Exception):
    """Stands for the process being killed in the middle of a projection."""


@pytest.fixture(scope="module")
def probe():
    return ptycho.focused_probe(N, object_pixel_size=DX, energy_kev=6.2)


@pytest.fixture(scope="module")
def scans(probe):
    """Three tiny scans of different objects, positions slightly shifted per projection (~40 each)."""
    rng = np.random.default_rng(0)
    base = ptycho.fermat_spiral(4.5, (30.0, 30.0))  # "meters" = object pixels here
    out = []
    for i in range(3):
        phase = rng.uniform(-0.5, 0.5, (96, 96))
        obj = (np.exp(1j * phase) * rng.uniform(0.8, 1.0, (96, 96))).astype(np.complex64)
        pos = base + np.array([0.3 * i, -0.7 * i])
        out.append((ptycho_scan(obj, probe, pos, photons=1e5, seed=i), pos))
    return out


@pytest.fixture(scope="module")
def shape(scans):
    shapes = [ptycho.default_object_shape(pos, N) for _, pos in scans]
    return max(s[0] for s in shapes), max(s[1] for s in shapes)


@pytest.fixture(scope="module")
def reference(scans, probe, shape):
    """Each projection reconstructed on its own by reconstruct (no checkpoint)."""
    return [ptycho.reconstruct(data, pos, probe, object_shape=shape, engines=ENGINES, threads=1)
            for data, pos in scans]


def check_stack(path, reference, angles=ANGLES):
    with h5py.File(path, "r") as f:
        assert f["done"][()].all()
        np.testing.assert_array_equal(f["angles"][()], angles)
        assert f["object"].dtype == np.complex64 and f["probe"].dtype == np.complex64
        for i, rec in enumerate(reference):
            assert np.array_equal(f["object"][i], rec.object)
            assert np.array_equal(f["probe"][i], rec.probe)
            assert np.array_equal(f["illumination"][i], rec.illumination)
            assert np.array_equal(f["positions"][f"{i:05d}"][()], rec.positions_px)
            for s, (engine, errs) in enumerate(rec.errors):
                d = f["errors"][f"{i:05d}"][str(s)]
                assert d.attrs["engine"] == engine and np.array_equal(d[()], errs, equal_nan=True)
        assert f.attrs["program"] == "tomofuse.ptycho.reconstruct_series"
        return json.loads(f.attrs["parameters"])


def counting(monkeypatch, kill_projection=None):
    """Wrap reconstruct: record which projections run; optionally 'kill' one half-way through."""
    real = ptycho.reconstruct  # the original, also when wrapped before
    calls = []

    def wrapper(*args, checkpoint, callback=None, **kwargs):
        i = int(Path(checkpoint).stem.split("_")[1])
        calls.append(i)
        if i == kill_projection:
            def callback(fraction, message):
                if fraction >= 0.5:
                    raise Killed(message)
        return real(*args, checkpoint=checkpoint, callback=callback, **kwargs)

    monkeypatch.setattr(_series, "reconstruct", wrapper)
    return calls


def test_local_stack_equals_reconstruct(tmp_path, scans, probe, shape, reference):
    progress = []
    out = ptycho.reconstruct_series(scans, probe, out=tmp_path / "s.h5", angles=ANGLES,
                                    callback=lambda f, m: progress.append(f), **OPTIONS)
    assert out == tmp_path / "s.h5"
    parameters = check_stack(out, reference)
    assert parameters["object_shape"] == list(shape) and parameters["projections"] == 3
    with h5py.File(out, "r") as f:
        assert f["object"].shape == (3, *shape) and f["probe"].shape == (3, 1, N, N)
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]  # checkpoints and work dir removed


def test_killed_run_resumes_without_recomputing(tmp_path, monkeypatch, scans, probe, reference):
    out, work = tmp_path / "s.h5", tmp_path / "work"
    calls = counting(monkeypatch, kill_projection=1)
    with pytest.raises(Killed):
        ptycho.reconstruct_series(scans, probe, out=out, angles=ANGLES, work_dir=work, **OPTIONS)
    assert calls == [0, 1]
    with h5py.File(out, "r") as f:
        assert f["done"][()].tolist() == [True, False, False]
    assert sorted(p.name for p in work.iterdir()) == ["proj_00001.h5"]  # projection 1's partial checkpoint
    with h5py.File(work / "proj_00001.h5", "r") as f:
        assert not f.attrs["done"] and f.attrs["iteration"] == 2

    calls = counting(monkeypatch)
    ptycho.reconstruct_series(scans, probe, out=out, angles=ANGLES, work_dir=work, **OPTIONS)
    assert calls == [1, 2]  # projection 0 is not recomputed
    check_stack(out, reference)  # projection 1 resumed from its checkpoint, bit for bit
    assert not work.exists()

    calls = counting(monkeypatch)
    ptycho.reconstruct_series(scans, probe, out=out, angles=ANGLES, work_dir=work, **OPTIONS)
    assert calls == []  # a finished stack returns at once


def test_dask_cluster_equals_local(tmp_path, scans, probe, reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        progress = []
        out = ptycho.reconstruct_series(scans, probe, out=tmp_path / "s.h5", angles=ANGLES, client=client,
                                        callback=lambda f, m: progress.append(f), engines=ENGINES,
                                        checkpoint_every=2)  # threads: the per-host share
    check_stack(out, reference)
    assert progress == [0.0, 1 / 3, 2 / 3, 1.0]


def test_cxi_scans_and_zarr(tmp_path, scans, probe):
    zarr = pytest.importorskip("zarr", minversion="3")
    paths = []
    for i, (data, pos) in enumerate(scans[:2]):
        paths.append(write_cxi(tmp_path / f"p{i}.cxi", data, positions=(pos + 100.0) * DX, energy_kev=6.2,
                               distance=7.0, pixel_size=172e-6))
    shape = (80, 80)
    out = ptycho.reconstruct_series(paths, probe, out=tmp_path / "s.zarr", angles=ANGLES[:2], object_pixel_size=DX,
                                    object_shape=shape, **OPTIONS)
    root = zarr.open_group(str(out), mode="r")
    assert root["done"][...].tolist() == [True, True]
    np.testing.assert_array_equal(root["angles"][...], ANGLES[:2])
    for i, (data, pos) in enumerate(scans[:2]):
        meters = (pos + 100.0) * DX
        centered = (meters - meters.mean(axis=0)) / DX  # documented: relative to the scan's mean position
        np.testing.assert_allclose(centered, pos - pos.mean(axis=0), atol=1e-9)
        rec = ptycho.reconstruct(data, centered, probe, object_shape=shape, engines=ENGINES, threads=1)
        assert np.array_equal(root["object"][i], rec.object)
        assert np.array_equal(root["probe"][i], rec.probe)
        positions = root["positions"][f"{i:05d}"]
        assert np.array_equal(positions[...], rec.positions_px)
        np.testing.assert_allclose(positions.attrs["offset_m"], meters.mean(axis=0), rtol=1e-12)
    assert root.attrs["program"] == "tomofuse.ptycho.reconstruct_series"


def test_bad_input(tmp_path, scans, probe):
    run = ptycho.reconstruct_series
    one = dict(engines=(("dm", 1),), threads=1, object_shape=(72, 72))
    with pytest.raises(ValueError, match="scans is empty"):
        run([], probe, out=tmp_path / "s.h5", angles=[])
    with pytest.raises(ValueError, match="expected 3 angles"):
        run(scans, probe, out=tmp_path / "s.h5", angles=[0.0, 1.0])
    with pytest.raises(ValueError, match="must end in"):
        run(scans, probe, out=tmp_path / "s.tif", angles=ANGLES)
    with pytest.raises(TypeError, match="unexpected option"):
        run(scans, probe, out=tmp_path / "s.h5", angles=ANGLES, checkpoint="x.h5")
    with pytest.raises(TypeError, match="unexpected option"):
        run(scans, probe, out=tmp_path / "s.h5", angles=ANGLES, iterations=3)
    with pytest.raises(ValueError, match="engines"):
        run(scans, probe, out=tmp_path / "s.h5", angles=ANGLES, engines=(("xx", 3),))
    with pytest.raises(TypeError, match="scans\\[1\\]"):
        run([scans[0], scans[1][0]], probe, out=tmp_path / "s.h5", angles=ANGLES[:2])
    with pytest.raises(ValueError, match="every pattern must be"):
        run([scans[0], (scans[1][0][:, :16, :16], scans[1][1])], probe, out=tmp_path / "s.h5", angles=ANGLES[:2])
    write_cxi(tmp_path / "p.cxi", scans[0][0], positions=scans[0][1] * DX, energy_kev=6.2, distance=7.0,
              pixel_size=172e-6)
    with pytest.raises(ValueError, match="object_pixel_size"):
        run([tmp_path / "p.cxi"], probe, out=tmp_path / "s.h5", angles=[0.0])
    with pytest.raises(FileNotFoundError):
        run([tmp_path / "missing.cxi"], probe, out=tmp_path / "s.h5", angles=[0.0], object_pixel_size=DX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.cxi"]  # nothing written

    # an existing stack of another series
    out = run(scans[:2], probe, out=tmp_path / "s.h5", angles=ANGLES[:2], **one)
    with pytest.raises(ValueError, match="another series"):
        run(scans, probe, out=out, angles=ANGLES, **one)  # three projections, not two
    with pytest.raises(ValueError, match="holds objects"):
        run(scans[:2], probe, out=out, angles=ANGLES[:2], **{**one, "object_shape": (80, 72)})
    with pytest.raises(ValueError, match="angles differ"):
        run(scans[:2], probe, out=out, angles=[0.0, 0.5], **one)
    with pytest.raises(ValueError, match="parameters differ"):
        run(scans[:2], probe, out=out, angles=ANGLES[:2], engines=(("dm", 2),), threads=1, object_shape=(72, 72))
    with pytest.raises(ValueError, match="projections \\[1\\] differ"):
        run([scans[0], scans[2]], probe, out=out, angles=ANGLES[:2], **one)


def test_the_defocus_search_runs_once_per_series(tmp_path, monkeypatch, scans, probe, shape):
    # the probe is shared by the projections: the series searches its focus on the first projection only
    # and starts every projection from the probe it chose
    from dataclasses import replace

    from tomofuse.ptycho import _reconstruct

    guess = ptycho.refocus_probe(probe, 0.75)  # a beam ~75 % wider than the one that made the data
    dm = ptycho.DMOptions(defocus_search=4)
    searches = []
    real = _reconstruct._Run._search_defocus

    def spy(self):
        searches.append(1)
        return real(self)

    monkeypatch.setattr(_reconstruct._Run, "_search_defocus", spy)
    out = ptycho.reconstruct_series(scans, guess, out=tmp_path / "s.h5", angles=ANGLES, dm=dm, **OPTIONS)
    assert len(searches) == 1  # reconstruct on each projection would search three times
    with h5py.File(out, "r") as f:
        fraction = float(f.attrs["defocus_fraction"])
    assert fraction < 0  # the wider guess is narrowed
    assert fraction == ptycho.defocus_search(scans[0][0], scans[0][1], guess, object_shape=shape,
                                             engines=ENGINES, dm=dm, threads=1)
    start = ptycho.refocus_probe(guess, fraction)
    reference = [ptycho.reconstruct(data, pos, start, object_shape=shape, engines=ENGINES,
                                    dm=replace(dm, defocus_search=0), threads=1) for data, pos in scans]
    check_stack(out, reference)
    # resuming reads the stored choice: no new search
    ptycho.reconstruct_series(scans, guess, out=out, angles=ANGLES, dm=dm, **OPTIONS)
    assert len(searches) == 2  # the defocus_search call above; the resumed series searched nothing
