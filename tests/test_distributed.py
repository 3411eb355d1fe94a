"""fbp_to_zarr: slab-by-slab FBP on a Dask cluster equals the in-memory fbp bit for bit."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("zarr", minversion="3", reason="fbp_to_zarr writes Zarr 3 stores (Python >= 3.11)")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from tomofuse.distributed import fbp_to_zarr  # noqa: E402
from tomofuse.io import array_sha256, file_sha256, read_volume, write_volume  # noqa: E402
from tomofuse.tomo import fbp, project  # noqa: E402

A, ROWS, COLS = 48, 11, 40
OPTIONS = dict(center=19.7, filter="hann", shape=(36, 44))


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def scan():
    """Projections of a random volume by the exact projector, plus noise (any stack would do)."""
    rng = np.random.default_rng(0)
    volume = rng.random((ROWS, COLS, COLS), dtype=np.float32)
    angles = np.linspace(0.0, np.pi, A, endpoint=False)
    projections = project(volume, angles) + rng.normal(0, 0.1, (A, ROWS, COLS)).astype(np.float32)
    return np.ascontiguousarray(projections, dtype=np.float32), angles


@pytest.fixture(scope="module")
def reference(scan):
    projections, angles = scan
    return fbp(projections, angles, **OPTIONS)


def check_output(path, reference, rows_per_task):
    volume, attrs = read_volume(path)
    assert volume.dtype == reference.dtype
    np.testing.assert_array_equal(volume, reference)  # bit for bit
    import zarr

    arr = zarr.open_array(str(path), mode="r")
    assert arr.chunks == (1, *reference.shape[1:])  # one z slice per chunk: slab writes never share a chunk
    assert attrs["program"] == "tomofuse.distributed.fbp_to_zarr"
    parameters = json.loads(attrs["parameters"])
    assert parameters["rows_per_task"] == rows_per_task
    assert parameters["center"] == OPTIONS["center"] and parameters["filter"] == "hann"
    assert [n for n in os.listdir(path.parent) if n.startswith(".")] == []  # no temporary stores left
    return attrs


def test_array_on_cluster(tmp_path, client, scan, reference):
    projections, angles = scan
    progress = []
    out = fbp_to_zarr(projections, angles, tmp_path / "v.zarr", client=client, rows_per_task=3,
                      callback=lambda f, m: progress.append(f), attrs={"voxel_size": 2e-8}, **OPTIONS)
    assert out == tmp_path / "v.zarr"
    attrs = check_output(out, reference, 3)
    assert attrs["voxel_size"] == 2e-8
    assert json.loads(attrs["inputs"]) == {"projections": array_sha256(projections),
                                           "angles": array_sha256(angles)}
    assert progress[0] == 0.0 and progress[-1] == 1.0 and len(progress) == 1 + 4  # slabs 3+3+3+2
    assert progress == sorted(progress)
    assert os.listdir(tmp_path) == ["v.zarr"]


def test_dask_array_on_cluster(tmp_path, client, scan, reference):
    projections, angles = scan
    stack = da.from_array(projections, chunks=(16, ROWS, COLS))  # chunked by angle, as acquired
    out = fbp_to_zarr(stack, angles, tmp_path / "v.zarr", client=client, rows_per_task=4, **OPTIONS)
    check_output(out, reference, 4)


@pytest.mark.parametrize("name", ["p.h5:/exchange/data", "p.zarr", "p.npy", "p.tif"])
def test_path_on_cluster(tmp_path, client, scan, reference, name):
    projections, angles = scan
    write_volume(f"{tmp_path}/{name}", projections)
    out = fbp_to_zarr(f"{tmp_path}/{name}", angles, tmp_path / "v.zarr", client=client, rows_per_task=5,
                      **OPTIONS)
    attrs = check_output(out, reference, 5)
    inputs = json.loads(attrs["inputs"])
    if name != "p.zarr":
        assert inputs["projections"] == file_sha256(tmp_path / name.split(":")[0])


def test_in_process_default_slabs(tmp_path, scan, reference):
    projections, angles = scan
    out = fbp_to_zarr(projections, angles, tmp_path / "v.zarr", **OPTIONS)
    check_output(out, reference, ROWS)  # small stack: one slab
    out = fbp_to_zarr(da.from_array(projections, chunks=(7, 4, COLS)), angles, tmp_path / "w.zarr",
                      rows_per_task=2, threads=1, **OPTIONS)
    check_output(out, reference, 2)


def test_float64_and_default_options(tmp_path, client, scan):
    projections, angles = scan
    p64 = projections.astype(np.float64)
    out = fbp_to_zarr(p64, angles, tmp_path / "v.zarr", client=client, rows_per_task=6)
    volume, _ = read_volume(out)
    assert volume.dtype == np.float64
    np.testing.assert_array_equal(volume, fbp(p64, angles))


def test_worker_processes(tmp_path, scan, reference):
    """Separate worker processes read their slabs from the file themselves."""
    projections, angles = scan
    write_volume(tmp_path / "p.zarr", projections)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        out = fbp_to_zarr(str(tmp_path / "p.zarr"), angles, tmp_path / "v.zarr", client=c, rows_per_task=6,
                          **OPTIONS)
    check_output(out, reference, 6)


@pytest.mark.parametrize("on_cluster", [False, True])
def test_failure_leaves_nothing(tmp_path, client, scan, on_cluster):
    projections, angles = scan
    with pytest.raises(ValueError, match="center must lie on the detector"):
        fbp_to_zarr(projections, angles, tmp_path / "v.zarr", client=client if on_cluster else None,
                    rows_per_task=2, center=COLS + 1.0)
    assert os.listdir(tmp_path) == []


def test_overwrite(tmp_path, client, scan, reference):
    projections, angles = scan
    out = tmp_path / "v.zarr"
    write_volume(out, np.zeros(3))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fbp_to_zarr(projections, angles, out, client=client, **OPTIONS)
    np.testing.assert_array_equal(read_volume(out)[0], np.zeros(3))
    fbp_to_zarr(projections, angles, out, client=client, rows_per_task=4, overwrite=True, **OPTIONS)
    check_output(out, reference, 4)
    assert os.listdir(tmp_path) == ["v.zarr"]


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((np.zeros((A, ROWS)),), {}, ValueError, "3 dimensions"),
    ((np.zeros((0, ROWS, COLS), np.float32),), {}, ValueError, "must not be empty"),
    ((np.zeros((A, ROWS, COLS), complex),), {}, TypeError, "real numbers"),
    (([[[0.0]]],), {}, TypeError, "numpy array, a dask array or a path"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(angles=np.zeros(A - 1)), ValueError, f"expected {A} angles"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(angles=np.full(A, np.inf)), ValueError, "finite"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(rows_per_task=0), ValueError, "rows_per_task"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(threads=-1), ValueError, "threads"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(method="fourier"), TypeError, "unexpected fbp option"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(filter="lanczos"), ValueError, "filter must be one of"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(shape=(3,)), ValueError, "shape must be two"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(out="v.h5"), ValueError, "must be a .zarr directory"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(out="v.zarr:/a"), ValueError, "must be a .zarr directory"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(callback=3), TypeError, "callback"),
    ((np.zeros((A, ROWS, COLS), np.float32),), dict(client="tcp://127.0.0.1:8786"), TypeError, "client must be"),
    (("missing.h5:/exchange/data",), {}, FileNotFoundError, "no such file"),
])
def test_bad_input(tmp_path, monkeypatch, args, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    kwargs = dict(kwargs)
    angles = kwargs.pop("angles", np.linspace(0, np.pi, A, endpoint=False))
    out = kwargs.pop("out", "v.zarr")
    with pytest.raises(error, match=message):
        fbp_to_zarr(args[0], angles, out, **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("on_cluster", [False, True])
def test_phase_derivative_and_scale(tmp_path, client, scan, on_cluster):
    """The PXCT reconstruction of wrapped complex transmissions, slab by slab and scaled, equals the
    in-memory fbp_phase_derivative times the scale bit for bit."""
    from tomofuse.tomo import fbp_phase_derivative

    projections, angles = scan
    transmission = np.exp(1j * (3.0 * projections)).astype(np.complex64)  # wraps many times
    scale = -7.3e-3
    reference = (fbp_phase_derivative(transmission, angles, **OPTIONS) * scale).astype(np.float32)
    out = fbp_to_zarr(transmission, angles, tmp_path / "p.zarr", client=client if on_cluster else None,
                      rows_per_task=3, algorithm="phase_derivative", scale=scale, **OPTIONS)
    volume, attrs = read_volume(out)
    assert volume.dtype == np.float32
    np.testing.assert_array_equal(volume, reference)
    parameters = json.loads(attrs["parameters"])
    assert parameters["algorithm"] == "phase_derivative" and parameters["scale"] == scale
    with pytest.raises(TypeError, match="real numbers"):
        fbp_to_zarr(transmission, angles, tmp_path / "q.zarr", **OPTIONS)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        fbp_to_zarr(projections, angles, tmp_path / "q.zarr", algorithm="sirt")


def test_surface_coverage_on_cluster(client):
    """Groups of particles traced as tasks on crops equal the whole volume traced in one call."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import analysis_phantoms as ap
    from tomofuse.analysis import surface_coverage

    labels, particles = ap.random_label_grid((40, 44, 48), seed=5)
    whole, ws = surface_coverage(labels, particles, voxel_size=20e-9, return_surface=True)
    df, s = surface_coverage(labels, particles, voxel_size=20e-9, return_surface=True, client=client)
    import pandas as pd

    pd.testing.assert_frame_equal(df, whole, check_exact=True)
    for name in ("particle", "position", "normal", "area", "category", "thickness"):
        np.testing.assert_array_equal(getattr(s, name), getattr(ws, name), err_msg=name)
    assert s.border_particles == ws.border_particles
