"""Voxel finite elements: tomofuse's core vs scikit-fem (issue 7), and sphere accuracy.

Parts (each run in its own process, so that its peak memory is its own):

  accuracy   sphere, uniform flux, full coverage, vs Crank's analytic series at
             radius 10, 20, 40 voxels (area-correct faces and, for contrast, the
             naive per-face flux); error = max over nodes / center-to-surface span
  skfem      scikit-fem (optional [bench] extra) on the same voxel mesh of a ~1e5-voxel
             ball: mesh + basis + mass + stiffness assembly, and one implicit
             (Crank-Nicolson) step with SciPy's Jacobi-preconditioned CG
  tomofuse   tomofuse._core.VoxelMesh on the same ball (~1e5) and on a ~1e6-voxel
             ball: mesh, assembly (mass + stiffness), implicit steps (matvec + CG
             from the extrapolated previous steps) with the geometric-multigrid and
             with the Jacobi preconditioner; the first multigrid step includes
             building the hierarchy (once per mesh)

The time step is ``simulate``'s default, 0.05 R^2 / D (D dt / h^2 = 0.05 R_vox^2),
CG tolerance 1e-9 relative (as in simulate).  Assembly rate = nodes / (time to assemble M and K).

Run from the repository root::

    nice python bench/compare_fem.py [--threads 2] [--parts accuracy skfem tomofuse]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

D = 1.67e-14
H = 50e-9


def ball_mask(radius):
    n = 2 * (int(math.ceil(radius)) + 1)
    c = np.arange(n) + 0.5 - n / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return (x * x + y * y + z * z < radius * radius).astype(np.uint8)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def part_accuracy(args):
    from echem_reference import crank_sphere
    from tomofuse.echem import Particle, SiliconParameters, simulate

    params = SiliconParameters()
    rows = []
    for r_vox in (10, 20, 40):
        for naive in (False, True):
            radius = r_vox * H
            p = Particle.sphere(radius, H, threads=args.threads)
            if naive:
                p = dataclasses.replace(p, face_area=np.full_like(p.face_area, H * H))
            tau = radius ** 2 / params.diffusivity
            t0 = time.perf_counter()
            res = simulate(p, c_rate=1.0, soc_start=0.8, duration=0.2 * tau, kinetics="uniform", electronic=False,
                           time_step=tau / 50, n_saved=2, threads=args.threads)
            elapsed = time.perf_counter() - t0
            d = res.discretization
            rr = np.linalg.norm((d.node_positions() - np.array(p.center)) * H, axis=1)
            a = (3.0 * d.volume / (4.0 * math.pi)) ** (1.0 / 3.0)
            flux = a / (3.0 * 3600.0)
            t = res.saved_times[-1]
            exact = crank_sphere(rr, t, radius=a, flux=flux, diffusivity=params.diffusivity, c0=0.8, terms=100)
            ends = crank_sphere(np.array([0.0, a]), t, radius=a, flux=flux, diffusivity=params.diffusivity, c0=0.8,
                                terms=100)
            span = abs(ends[1] - ends[0])
            err = np.abs(res.soc_nodes[-1] - exact)
            li = np.max(np.abs(res.lithium - (res.lithium[0] - res.current * res.time / 96485.33212))) / res.lithium[0]
            rows.append(dict(radius_voxels=r_vox, faces="per-face h^2" if naive else "area-correct", nodes=d.n,
                             max_error_of_span=float(err.max() / span), rms_error_of_span=float(np.sqrt(np.mean(err ** 2)) / span),
                             lithium_error=float(li), seconds=elapsed))
    return rows


def skfem_mesh(mask):
    from skfem import MeshHex

    n = mask.shape
    ax = [np.arange(s + 1) * H for s in n]
    # skfem's init_tensor takes (x, y, z); our volume is (z, y, x)
    m = MeshHex.init_tensor(ax[2], ax[1], ax[0])
    centers = m.p[:, m.t].mean(axis=1) / H  # (3, nel) as (x, y, z)
    idx = np.floor(centers).astype(int)
    inside = mask[idx[2], idx[1], idx[0]].astype(bool)
    return m.remove_elements(np.flatnonzero(~inside))


def part_skfem(args):
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla
    from skfem import Basis, BilinearForm, ElementHex1
    from skfem.helpers import dot, grad

    @BilinearForm
    def mass(u, v, w):
        return u * v

    @BilinearForm
    def laplace(u, v, w):
        return dot(grad(u), grad(v))

    mask = ball_mask(args.r_small)
    t0 = time.perf_counter()
    m = skfem_mesh(mask)
    t1 = time.perf_counter()
    basis = Basis(m, ElementHex1())
    t2 = time.perf_counter()
    M = mass.assemble(basis)
    K = laplace.assemble(basis)
    t3 = time.perf_counter()
    n = M.shape[0]
    dt = 0.05 * (args.r_small * H) ** 2 / D
    A = (M / dt + 0.5 * D * K).tocsr()
    B = (M / dt - 0.5 * D * K).tocsr()
    rng = np.random.default_rng(0)
    x = 0.8 + 1e-3 * rng.random(n)
    f = np.zeros(n)
    b = B @ x + f
    dinv = 1.0 / A.diagonal()
    P = sp.diags(dinv)
    t4 = time.perf_counter()
    xs, info = spla.cg(A, b, x0=x, rtol=1e-10, M=P, maxiter=10000)
    t5 = time.perf_counter()
    return dict(tool="scikit-fem", voxels=int(mask.sum()), nodes=n, mesh_s=t1 - t0, basis_s=t2 - t1,
                assembly_s=t3 - t2, assembly_dof_per_s=n / (t3 - t2), step_s=t5 - t4, cg_info=int(info),
                peak_rss_mb=peak_rss_mb())


def part_tomofuse(args, radius):
    from tomofuse import _core

    mask = ball_mask(radius)
    th = args.threads
    t0 = time.perf_counter()
    mesh = _core.VoxelMesh(mask, voxel_size=H, threads=th)
    t1 = time.perf_counter()
    mesh.assemble(1.0, 0.0, threads=th)
    mesh.assemble(0.0, 1.0, threads=th)
    t2 = time.perf_counter()
    n = mesh.num_nodes
    dt = 0.05 * (radius * H) ** 2 / D
    A = mesh.operator(1.0 / dt, 0.5 * D, threads=th)
    B = mesh.operator(1.0 / dt, -0.5 * D, threads=th)
    t3 = time.perf_counter()
    # the sphere validation's step: uniform SOC, a uniform outward flux at the
    # boundary nodes (lumped mass < h^3 marks them), 1 C; Crank-Nicolson from
    # the extrapolated previous steps, as in tomofuse.echem.simulate
    lumped = mesh.lumped_mass()
    boundary = lumped < H ** 3 * (1 - 1e-9)
    volume = lumped.sum()
    f = np.where(boundary, -(volume / 3600.0) / boundary.sum(), 0.0)  # SOC m^3/s, sum = -V / 3600 s
    out = {}
    for pc in ("multigrid", "jacobi"):
        x = np.full(n, 0.8)
        x_prev = None
        steps = []
        A = mesh.operator(1.0 / dt, 0.5 * D, threads=th)  # fresh: the first solve sets the preconditioner up
        for _ in range(4):
            s0 = time.perf_counter()
            b = B.matvec(x, threads=th) + f
            guess = x if x_prev is None else 2 * x - x_prev
            new, info = A.solve(b, guess, rtol=1e-9, preconditioner=pc, threads=th)
            steps.append((time.perf_counter() - s0, info["iterations"]))
            x_prev, x = x, new
        out[pc] = steps
    return dict(tool="tomofuse", voxels=int(mask.sum()), nodes=n, mesh_s=t1 - t0, assembly_s=t2 - t1,
                assembly_dof_per_s=n / (t2 - t1), operators_s=t3 - t2, nnz=mesh.nnz,
                step_s_multigrid=[round(s, 3) for s, _ in out["multigrid"]],
                cg_iterations_multigrid=[i for _, i in out["multigrid"]],
                step_s_jacobi=[round(s, 3) for s, _ in out["jacobi"]],
                cg_iterations_jacobi=[i for _, i in out["jacobi"]],
                d_dt_over_h2=D * dt / H ** 2, peak_rss_mb=peak_rss_mb())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--r-small", type=float, default=29.0, help="ball radius (voxels) for ~1e5 DOF")
    ap.add_argument("--r-large", type=float, default=62.0, help="ball radius (voxels) for ~1e6 DOF")
    ap.add_argument("--parts", nargs="+", default=["tomofuse", "skfem", "accuracy"])
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        if args._child == "accuracy":
            out = part_accuracy(args)
        elif args._child == "skfem":
            out = part_skfem(args)
        elif args._child == "tomofuse-small":
            out = part_tomofuse(args, args.r_small)
        else:
            out = part_tomofuse(args, args.r_large)
        print(json.dumps(out))
        return
    children = []
    for part in args.parts:
        children += ["tomofuse-small", "tomofuse-large"] if part == "tomofuse" else [part]
    for child in children:
        cmd = [sys.executable, __file__, "--_child", child, "--threads", str(args.threads), "--r-small",
               str(args.r_small), "--r-large", str(args.r_large)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{child}: failed\n{proc.stderr[-2000:]}")
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"== {child}")
        for row in out if isinstance(out, list) else [out]:
            print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
