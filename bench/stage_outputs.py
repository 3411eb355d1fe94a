"""Outputs of every stage on small fixed inputs, for bit-identity checks across refactorings.

Run it with the package before a change and after it, then compare::

    python bench/stage_outputs.py save before.npz
    ...change, reinstall...
    python bench/stage_outputs.py save after.npz
    python bench/stage_outputs.py compare before.npz after.npz

``compare`` prints ``N/M outputs bit-identical`` (byte equality of dtype, shape and data) and
names every output that differs; the exit status is non-zero if any differs or is missing.
Stages: phantom (labels, refractive volume), tomo (project, fbp, paganin), ptycho
(reconstruct, DM + ML, a few iterations), register (rigid), fuse, segment, label_particles,
analysis (surface_coverage, sei_thickness), echem (simulate, a small sphere).  Seeds and
thread counts are fixed; every output is a NumPy array.
"""

from __future__ import annotations

import sys

import numpy as np


def _outputs() -> dict[str, np.ndarray]:
    from tomofuse import acquire, analysis, echem, phantom, ptycho, register, segment, tomo

    out: dict[str, np.ndarray] = {}
    threads = 2

    # phantom
    e = phantom.electrode((40, 48, 48), 21.4e-9, cycled=True, seed=3, truth_samples=1000)
    out["phantom.labels"] = np.asarray(e.labels)
    out["phantom.particles"] = np.asarray(e.particles)
    delta, beta = phantom.refractive_volume(e, 6.2)
    out["phantom.delta"], out["phantom.beta"] = np.asarray(delta), np.asarray(beta)

    # tomo
    vol = np.asarray(delta[:6], np.float32) * 1e6
    angles = np.linspace(0, np.pi, 72, endpoint=False)
    proj = tomo.project(vol, angles, threads=threads)
    out["tomo.project"] = proj
    out["tomo.fbp"] = tomo.fbp(proj, angles, threads=threads)
    out["tomo.fbp_hann_offcenter"] = tomo.fbp(proj, angles, center=proj.shape[-1] / 2 - 0.3, filter="hann",
                                              threads=threads)
    out["tomo.paganin"] = tomo.paganin(np.exp(-proj / 50), pixel_size=27.5e-9, distance=0.01, energy_kev=8.4,
                                       delta_beta=0.028, threads=threads)
    out["tomo.normalize"] = tomo.normalize(np.exp(-proj / 50) * 900 + 100, np.full(proj.shape[1:], 1000.0),
                                           np.full(proj.shape[1:], 100.0))

    # ptycho
    # a random phase object, a Gaussian probe of 16 x 16 pixels, 20 random positions (pixels)
    rng = np.random.default_rng(1)
    phase = 0.5 * rng.uniform(size=(48, 48))
    r2 = np.sum((np.indices((16, 16)) - 8.0) ** 2, axis=0)
    probe = np.exp(-r2 / 12.0).astype(np.complex64)
    pos = rng.uniform(-12, 11, (20, 2))
    frames = acquire.ptycho_scan(np.exp(1j * phase).astype(np.complex64), probe, pos, photons=1e5, seed=2)
    r = ptycho.reconstruct(frames, pos, probe, object_shape=phase.shape, engines=(("dm", 5), ("ml", 4)),
                           probe_modes=2, threads=threads)
    out["ptycho.object"], out["ptycho.probe"] = r.object, r.probe
    out["ptycho.positions"] = np.asarray(r.positions_px)
    out["ptycho.errors"] = np.concatenate([np.asarray(e, np.float64) for _, e in r.errors])

    # register + fuse
    z, y, x = np.mgrid[:24, :24, :24]
    fixed = (np.exp(-((z - 12.0) ** 2 + (y - 11.0) ** 2 + (x - 13.0) ** 2) / 30.0)
             + 0.05 * np.random.default_rng(4).random((24, 24, 24))).astype(np.float32)
    moving = np.roll(fixed, 1, axis=2)
    reg = register.register(fixed, moving, fixed_voxel_size=1e-6, moving_voxel_size=1e-6,
                            options=register.RegistrationOptions(stages=("rigid",)), seed=0, threads=threads)
    out["register.map_points"] = np.asarray(reg.map_points(np.array([[0.0, 0.0, 0.0], [5e-6, 7e-6, 9e-6]])))
    out["register.fuse"] = register.fuse(fixed, moving, reg, threads=threads)

    # segment (forward model of the phantom, as tests/test_segment.py) and particles
    from scipy import ndimage
    d62, _ = phantom.refractive_volume(e, 6.2)
    _, b84 = phantom.refractive_volume(e, 8.4)
    noise = np.random.default_rng(0)
    p = ndimage.gaussian_filter(d62.astype(np.float64), (0.8, 1.2, 1.2), mode="nearest")
    t = ndimage.gaussian_filter(b84.astype(np.float64), 3.0, mode="nearest")
    p += noise.normal(0, 0.03 * np.ptp(d62), p.shape)
    t += noise.normal(0, 0.03 * np.ptp(b84), t.shape)
    fused = np.stack([p, t]).astype(np.float32)
    seg = segment.segment(fused, voxel_size=21.4e-9, cycled=True, threads=threads)
    out["segment.labels"], out["segment.valid"] = seg.labels, seg.valid
    out["segment.levels"] = np.asarray(seg.thresholds.levels)
    parts = segment.label_particles(seg.labels, voxel_size=21.4e-9, threads=threads)
    out["segment.particles"] = parts

    # analysis on the phantom's truth
    cov = analysis.surface_coverage(e.labels, e.particles, voxel_size=21.4e-9, threads=threads)
    out["analysis.coverage"] = cov.to_numpy(dtype=float)
    sei = analysis.sei_thickness(e.labels, e.particles, voxel_size=21.4e-9, threads=threads)
    out["analysis.sei_thickness"] = sei.to_numpy(dtype=float)

    # echem
    particle = echem.Particle.sphere(0.4e-6, 80e-9, cbd_fraction=0.3)
    res = echem.simulate(particle, c_rate=1.0, soc_start=0.9, duration=120.0, n_saved=3, threads=threads)
    out["echem.soc_field"] = res.soc_field(-1)
    out["echem.potential_field"] = res.potential_field(-1)
    out["echem.soc_nodes"] = np.asarray(res.soc_nodes)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "save":
        outputs = _outputs()
        np.savez(argv[1], **outputs)
        print(f"{len(outputs)} outputs written to {argv[1]}")
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        a, b = np.load(argv[1]), np.load(argv[2])
        names = sorted(set(a.files) | set(b.files))
        same = [n for n in names if n in a.files and n in b.files and _same(a[n], b[n])]
        for n in names:
            if n not in same:
                print(f"differs or missing: {n}")
        print(f"{len(same)}/{len(names)} outputs bit-identical")
        return 0 if len(same) == len(names) else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
