"""Thread safety: every stage may be called from several Python threads at once (Dask threaded
workers). Each test runs the same calls serially and from a pool of threads, with the GIL released
inside the core, and asserts identical results (bit for bit)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tomofuse import _core

WORKERS = 4


def _run_concurrently(fn, args_list):
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda a: fn(*a), args_list))


def _assert_same(serial, parallel):
    assert len(serial) == len(parallel)
    for s, p in zip(serial, parallel):
        for a, b in zip(s if isinstance(s, tuple) else (s,), p if isinstance(p, tuple) else (p,)):
            if isinstance(a, dict):
                assert a == b
            else:
                np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------- echem (FEM)

@pytest.mark.parametrize("preconditioner", ["multigrid", "cholesky", "jacobi"])
def test_one_sparse_operator_solves_from_several_threads(preconditioner):
    """The operator's preconditioner is built on first use; threads race to build it and then solve
    with it at the same time, each with its own thread count."""
    rng = np.random.default_rng(0)
    mask = (rng.random((15, 16, 17)) < 0.85).astype(np.uint8)
    mesh = _core.VoxelMesh(mask, voxel_size=1e-6)
    b = rng.standard_normal(mesh.num_nodes)

    def solve(op, threads):
        x, info = op.solve(b, rtol=1e-9, preconditioner=preconditioner, threads=threads)
        return x, info

    serial = [solve(mesh.operator(1e12, 1.0), 1 + i % 2) for i in range(2 * WORKERS)]
    for _ in range(3):
        shared = mesh.operator(1e12, 1.0)  # nothing built yet
        parallel = _run_concurrently(solve, [(shared, 1 + i % 2) for i in range(2 * WORKERS)])
        _assert_same(serial, parallel)


# ------------------------------------------------------------------------------------------ register

def test_register_leaves_simpleitks_process_wide_thread_count_alone():
    """Registration pins its metric to one thread on each registration method; SimpleITK's global
    default, which other threads of the process use at the same time, never changes."""
    import threading

    import SimpleITK as sitk

    from tomofuse.register import RegistrationOptions, register

    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[:24, :24, :24]
    fixed = np.exp(-((z - 12.0) ** 2 + (y - 11.0) ** 2 + (x - 13.0) ** 2) / 30.0) + 0.05 * rng.random((24, 24, 24))
    moving = np.roll(fixed, 1, axis=2).astype(np.float32)
    original = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    seen, done = set(), threading.Event()
    try:
        worker = threading.Thread(target=lambda: (register(fixed.astype(np.float32), moving, fixed_voxel_size=1e-6,
                                                            moving_voxel_size=1e-6,
                                                            options=RegistrationOptions(stages=("rigid",)), seed=0,
                                                            threads=2), done.set()))
        worker.start()
        while not done.is_set() and worker.is_alive():
            seen.add(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
        worker.join()
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(original)
    assert done.is_set()
    assert seen == {3}, f"SimpleITK's global default thread count changed while registering: {sorted(seen)}"


# ------------------------------------------------------------------- one test per remaining stage

def _same_serial_and_concurrent(fn, n=WORKERS):
    """fn(i) for i < n, serially and from n threads at once: identical results."""
    serial = [fn(i) for i in range(n)]
    parallel = _run_concurrently(fn, [(i,) for i in range(n)])
    _assert_same(serial, parallel)


def test_tomo_stage_from_several_threads():
    from tomofuse import tomo

    rng = np.random.default_rng(2)
    vol = rng.random((4, 48, 48)).astype(np.float32)
    angles = np.linspace(0, np.pi, 60, endpoint=False)

    def run(i):
        proj = tomo.project(vol, angles, threads=1 + i % 2)
        rec = tomo.fbp(proj, angles, threads=1 + i % 2)
        back = tomo.backproject(proj, angles, threads=2)
        pag = tomo.paganin(np.exp(-proj / 50), pixel_size=27.5e-9, distance=0.01, energy_kev=8.4, delta_beta=0.028,
                           threads=1)
        return proj, rec, back, pag

    _same_serial_and_concurrent(run)


def test_ptycho_stage_from_several_threads():
    from tomofuse import acquire, ptycho

    rng = np.random.default_rng(1)
    obj = np.exp(0.5j * rng.uniform(size=(48, 48))).astype(np.complex64)
    yy, xx = np.mgrid[:16, :16] - 8
    probe = np.exp(-(yy ** 2 + xx ** 2) / 12.0).astype(np.complex64)
    pos = rng.uniform(-12, 11, (20, 2))
    data = acquire.ptycho_scan(obj, probe, pos, photons=1e5, seed=2)

    def run(i):
        r = ptycho.reconstruct(data, pos, probe, object_shape=(48, 48), engines=(("dm", 4), ("ml", 3)),
                               probe_modes=1 + i % 2, threads=1 + i % 2)
        return r.object, r.probe

    _same_serial_and_concurrent(run)


def test_analysis_stage_from_several_threads():
    from tomofuse.analysis import sei_thickness, surface_coverage

    z, y, x = np.mgrid[:24, :24, :24]
    parts = np.zeros((24, 24, 24), np.int32)
    parts[(z - 8) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 25] = 1
    parts[(z - 16) ** 2 + (y - 12) ** 2 + (x - 13) ** 2 <= 16] = 2
    labels = np.zeros_like(parts, np.uint8)
    labels[parts > 0] = 2
    shell = (labels == 0) & ((z - 8) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 36)
    labels[shell] = 4
    labels[(labels == 0) & (x < 6)] = 3

    def run(i):
        cov = surface_coverage(labels, parts, voxel_size=20e-9, threads=1 + i % 2)
        sei = sei_thickness(labels, parts, voxel_size=20e-9, threads=1 + i % 2)
        return cov.to_numpy(dtype=float), sei.to_numpy(dtype=float)

    _same_serial_and_concurrent(run)


def test_echem_stage_from_several_threads():
    from tomofuse import echem

    particle = echem.Particle.sphere(0.4e-6, 80e-9, cbd_fraction=0.3)

    def run(i):
        r = echem.simulate(particle, c_rate=1.0, soc_start=0.9, duration=120.0, n_saved=3, threads=1 + i % 2)
        return r.soc_field(-1), r.potential_field(-1)

    _same_serial_and_concurrent(run)


def test_io_from_several_threads(tmp_path):
    from tomofuse import io

    vol = np.random.default_rng(3).random((6, 20, 16)).astype(np.float32)

    def run(i):
        out = []
        for suffix in (".h5", ".tif", ".npy"):
            p = tmp_path / f"v{i}{suffix}"
            io.write_volume(p, vol + i)
            out.append(io.read_volume(p)[0])
        return tuple(out)

    serial = [run(i) for i in range(WORKERS)]
    for p in tmp_path.iterdir():
        p.unlink()
    _assert_same(serial, _run_concurrently(run, [(i,) for i in range(WORKERS)]))


def test_register_stage_from_several_threads():
    from tomofuse.register import RegistrationOptions, register

    rng = np.random.default_rng(4)
    z, y, x = np.mgrid[:20, :20, :20]
    fixed = (np.exp(-((z - 10.0) ** 2 + (y - 9.0) ** 2 + (x - 11.0) ** 2) / 20.0)
             + 0.05 * rng.random((20, 20, 20))).astype(np.float32)
    moving = np.roll(fixed, 1, axis=1)

    def run(i):
        r = register(fixed, moving, fixed_voxel_size=1e-6, moving_voxel_size=1e-6,
                     options=RegistrationOptions(stages=("rigid",)), seed=0, threads=1 + i % 2)
        return np.asarray(r.transform.GetParameters()) if hasattr(r.transform, "GetParameters") else \
            np.asarray(r.map_points(np.zeros((1, 3))))

    _same_serial_and_concurrent(run, n=2)


def test_segment_stage_from_several_threads():
    """segment (the C++ blur and ICM with the GIL released, SciPy and edt around them) and
    label_particles (cc3d, edt, the watershed) on four volumes at once, mixed thread counts."""
    from scipy import ndimage

    from tomofuse.segment import label_particles, segment

    def fused(i):
        rng = np.random.default_rng(10 + i)
        phases = rng.integers(0, 5, (3, 4, 4)).repeat(8, 0).repeat(6, 1).repeat(6, 2)   # (24, 24, 24)
        delta = ndimage.gaussian_filter(np.array([0.0, 2.2, 2.3, 1.2, 1.5])[phases], 1.0)
        beta = ndimage.gaussian_filter(np.array([0.0, 0.2, 2.0, 0.3, 0.4])[phases], 2.0)
        return (np.stack([delta, beta]) + 0.05 * rng.standard_normal((2,) + phases.shape)).astype(np.float32)

    volumes = [fused(i) for i in range(WORKERS)]

    def run(i):
        s = segment(volumes[i], voxel_size=21.4e-9, cycled=i % 2 == 0, threads=1 + i % 2)
        return s.labels, s.valid, label_particles(s.labels, voxel_size=21.4e-9, threads=1 + i % 2)

    _same_serial_and_concurrent(run)
