"""Filtered back-projection: tomofuse (direct and fourier) vs astra-toolbox's CPU FBP and
scikit-image's iradon, on closed-form sinograms (issue 3).

The object is a set of ellipses whose parallel-beam line integrals are computed in closed
form (not with any projector under test): an ellipse of semi-axes (a, b), rotated by phi,
centered at (x0, y0), density rho, gives

    p(theta, u) = 2 rho a b sqrt(s^2 - (u - u0)^2) / s^2,   s^2 = a^2 cos^2(theta - phi) + b^2 sin^2(theta - phi),
    u0 = x0 cos(theta) + y0 sin(theta),

with u the detector coordinate in tomofuse's convention (pixel-driven: voxel center (x, y)
projects to u = x cos(theta) + y sin(theta)).  The truth image is the ellipses' pixel-averaged
indicator (4 x 4 supersampling).  PSNR = 20 log10(range / RMSE) inside the disc of radius
0.45 N.  Each method reconstructs a slab of --rows slices (tomofuse processes 16 slices per
pass; astra and iradon are 2-D, one slice at a time); the figures are CPU-seconds per slice
(process time: all threads counted) and wall seconds per slice, median of --repeat runs.

astra's CPU FBP uses its 'linear' projector (Joseph-type interpolation) and the ram-lak
filter; its image orientation differs from ours by a fixed flip, found once by matching
against the truth (printed).

Run from the repository root::

    python bench/compare_fbp.py [--sizes 1024:1024 2048:1644] [--rows 16] [--repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import numpy as np

ELLIPSES = [  # x0, y0, a, b (fractions of N/2), phi (deg), rho
    (0.0, 0.0, 0.69, 0.92, 0.0, 1.0),
    (0.0, -0.0184, 0.6624, 0.874, 0.0, -0.8),
    (0.22, 0.0, 0.11, 0.31, -18.0, -0.2),
    (-0.22, 0.0, 0.16, 0.41, 18.0, -0.2),
    (0.0, 0.35, 0.21, 0.25, 0.0, 0.1),
    (0.0, 0.1, 0.046, 0.046, 0.0, 0.1),
    (0.0, -0.1, 0.046, 0.046, 0.0, 0.1),
    (-0.08, -0.605, 0.046, 0.023, 0.0, 0.1),
    (0.0, -0.605, 0.023, 0.023, 0.0, 0.1),
    (0.06, -0.605, 0.023, 0.046, 0.0, 0.1),
]


def sinogram(n, n_angles):
    theta = np.linspace(0, np.pi, n_angles, endpoint=False)
    u = np.arange(n) + 0.5 - n / 2
    p = np.zeros((n_angles, n))
    half = n / 2
    for x0, y0, a, b, phi, rho in ELLIPSES:
        x0, y0, a, b, phi = x0 * half, y0 * half, a * half, b * half, math.radians(phi)
        s2 = (a * np.cos(theta - phi)) ** 2 + (b * np.sin(theta - phi)) ** 2
        u0 = x0 * np.cos(theta) + y0 * np.sin(theta)
        d = u[None, :] - u0[:, None]
        p += 2 * rho * a * b * np.sqrt(np.clip(s2[:, None] - d * d, 0, None)) / s2[:, None]
    return theta, p


def truth(n, sub=4):
    img = np.zeros((n, n))
    half = n / 2
    offs = (np.arange(sub) + 0.5) / sub
    for oy in offs:
        for ox in offs:
            yy, xx = np.meshgrid(np.arange(n) + oy - half, np.arange(n) + ox - half, indexing="ij")
            for x0, y0, a, b, phi, rho in ELLIPSES:
                x0, y0, a, b, phi = x0 * half, y0 * half, a * half, b * half, math.radians(phi)
                c, s = math.cos(phi), math.sin(phi)
                xr = (xx - x0) * c + (yy - y0) * s
                yr = -(xx - x0) * s + (yy - y0) * c
                img += rho * ((xr / a) ** 2 + (yr / b) ** 2 <= 1)
    return img / sub**2


def psnr(rec, ref, mask):
    rmse = math.sqrt(float(np.mean((rec[mask] - ref[mask]) ** 2)))
    return 20 * math.log10((ref[mask].max() - ref[mask].min()) / rmse)


def timed(fn, repeat):
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), out


def run_tomofuse(theta, sino, rows, method, threads):
    from tomofuse.tomo import fbp

    proj = np.ascontiguousarray(np.repeat(sino[:, None, :], rows, axis=1), dtype=np.float32)
    return lambda: fbp(proj, theta, method=method, filter="ramp", threads=threads)[rows // 2]


def run_astra(theta, sino, rows):
    import astra

    n = sino.shape[1]
    vg = astra.create_vol_geom(n, n)
    pg = astra.create_proj_geom("parallel", 1.0, n, theta)
    pid = astra.create_projector("linear", pg, vg)

    def go():
        out = None
        for _ in range(rows):
            sid = astra.data2d.create("-sino", pg, sino.astype(np.float32))
            rid = astra.data2d.create("-vol", vg)
            cfg = astra.astra_dict("FBP")
            cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=pid)
            cfg["FilterType"] = "ram-lak"
            alg = astra.algorithm.create(cfg)
            astra.algorithm.run(alg)
            out = astra.data2d.get(rid)
            astra.algorithm.delete(alg)
            astra.data2d.delete([sid, rid])
        return out

    return go


def run_iradon(theta, sino):
    from skimage.transform import iradon

    return lambda: iradon(sino.T, theta=np.degrees(theta), filter_name="ramp", circle=False,
                          interpolation="linear", output_size=sino.shape[1])


ORIENTATIONS = {"identity": lambda a: a, "flipud": np.flipud, "fliplr": np.fliplr, "rot180": lambda a: a[::-1, ::-1],
                "transpose": lambda a: a.T, "rot90": np.rot90, "rot270": lambda a: np.rot90(a, 3),
                "antitranspose": lambda a: a[::-1, ::-1].T}


def orient(rec, ref, mask):
    best = max(ORIENTATIONS, key=lambda k: np.corrcoef(ORIENTATIONS[k](rec)[mask], ref[mask])[0, 1])
    return best, ORIENTATIONS[best](rec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1024:1024", "2048:1644"], help="N:angles")
    ap.add_argument("--rows", type=int, default=16, help="slices per tomofuse run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args(argv)
    for spec in args.sizes:
        n, n_angles = (int(v) for v in spec.split(":"))
        theta, sino = sinogram(n, n_angles)
        ref = truth(n)
        yy, xx = np.meshgrid(np.arange(n) + 0.5 - n / 2, np.arange(n) + 0.5 - n / 2, indexing="ij")
        mask = xx**2 + yy**2 <= (0.45 * n) ** 2
        samples = n * n * n_angles
        print(f"\n{n} px x {n_angles} angles ({samples / 1e9:.2f} G samples per slice)", flush=True)
        methods = {
            "tomofuse direct": (run_tomofuse(theta, sino, args.rows, "direct", args.threads), args.rows),
            "tomofuse fourier": (run_tomofuse(theta, sino, args.rows, "fourier", args.threads), args.rows),
            # a lone slice (previews, center finding): goal <= 1.5x the per-slice cost of a block
            "tomofuse direct 1 slice": (run_tomofuse(theta, sino, 1, "direct", args.threads), 1),
            "tomofuse fourier 1 slice": (run_tomofuse(theta, sino, 1, "fourier", args.threads), 1),
        }
        try:
            import astra  # noqa: F401

            methods["astra CPU FBP"] = (run_astra(theta, sino, 1), 1)
        except ImportError:
            print("astra-toolbox not installed (pip install astra-toolbox): skipped", file=sys.stderr)
        if n <= 1024:
            methods["skimage iradon"] = (run_iradon(theta, sino), 1)
        rows = []
        for name, (fn, per_run) in methods.items():
            if args.only and not any(o in name for o in args.only):
                continue
            repeat = 1 if name.startswith(("astra", "skimage")) and n > 1024 else args.repeat
            wall, cpu, rec = timed(fn, repeat)
            how = "identity"
            if not name.startswith("tomofuse"):
                how, rec = orient(rec, ref, mask)
            rows.append((name, wall / per_run, cpu / per_run, samples * per_run / cpu / 1e9, psnr(rec, ref, mask), how))
            print(f"  {name:24s} wall {wall / per_run:8.3f} s/slice  CPU {cpu / per_run:8.3f} s/slice  "
                  f"{rows[-1][3]:6.2f} G samples/CPU-s  PSNR {rows[-1][4]:6.2f} dB  ({how})", flush=True)
        for r in rows:
            if r[0].endswith(" 1 slice"):
                block = next((b for b in rows if b[0] == r[0][: -len(" 1 slice")]), None)
                if block:
                    print(f"  {r[0]}: {r[2] / block[2]:.2f}x the per-slice CPU of {args.rows}-slice blocks")
        astra_row = next((r for r in rows if r[0].startswith("astra")), None)
        if astra_row:
            for r in rows:
                if r[0].startswith("tomofuse"):
                    print(f"  {r[0]}: {astra_row[2] / r[2]:.1f}x astra per core, PSNR {r[4] - astra_row[4]:+.2f} dB")


if __name__ == "__main__":
    main()
