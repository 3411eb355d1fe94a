"""The finite-element core (issue 7): voxel hexahedra, assembly, conjugate gradients.

Ground truth: element matrices by Gauss quadrature and a slow SciPy assembly
(tests/echem_reference.py), the patch test (K annihilates constants and is
exact on linear fields away from the boundary), scipy's direct solver.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tomofuse import _core

from echem_reference import gauss_element_matrices, reference_fe_matrices

H = 1e-7


def random_mask(shape=(7, 6, 5), fill=0.55, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < fill).astype(np.uint8)


def ball(radius, pad=1):
    n = 2 * (int(np.ceil(radius)) + pad)
    c = np.arange(n) + 0.5 - n / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return (x * x + y * y + z * z < radius * radius).astype(np.uint8)


def csr_of(values, mesh):
    indptr, indices = mesh.pattern()
    n = mesh.num_nodes
    return sp.csr_matrix((values, indices, indptr), shape=(n, n))


def test_unit_element_matrices_match_gauss_quadrature():
    m, k = _core.unit_element_matrices()
    m_ref, k_ref = gauss_element_matrices()
    np.testing.assert_allclose(m, m_ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(k, k_ref, rtol=0, atol=1e-15)
    assert m.sum() == pytest.approx(1.0)                       # unit volume
    np.testing.assert_allclose(k.sum(axis=1), 0.0, atol=1e-15)  # constants are in the kernel


def test_two_element_mesh():
    mask = np.zeros((1, 1, 2), np.uint8)
    mask[0, 0, :] = 1
    mesh = _core.VoxelMesh(mask, voxel_size=H)
    assert (mesh.num_elements, mesh.num_nodes) == (2, 12)
    M = csr_of(mesh.assemble(1.0, 0.0), mesh)
    K = csr_of(mesh.assemble(0.0, 1.0), mesh)
    assert M.sum() == pytest.approx(2 * H ** 3)
    np.testing.assert_allclose(mesh.lumped_mass(), np.asarray(M.sum(axis=1)).ravel(), rtol=1e-14)
    # end-face nodes couple to the 8 nodes of their element, shared-face nodes to all 12
    assert mesh.nnz == 4 * 8 + 4 * 12 + 4 * 8
    M_ref, K_ref, used = reference_fe_matrices(mask.astype(bool), H)
    np.testing.assert_allclose(M.toarray(), M_ref.toarray(), rtol=0, atol=1e-14 * H ** 3)
    np.testing.assert_allclose(K.toarray(), K_ref.toarray(), rtol=0, atol=1e-14 * H)
    np.testing.assert_array_equal(mesh.node_grid(), used)


@pytest.mark.parametrize("seed", [0, 1])
def test_assembly_matches_slow_reference(seed):
    mask = random_mask(seed=seed)
    mesh = _core.VoxelMesh(mask, voxel_size=H)
    rng = np.random.default_rng(10 + seed)
    coef = rng.uniform(0.1, 3.0, mesh.num_elements)
    diag = rng.uniform(0.0, 1.0, mesh.num_nodes) * H
    M_ref, K_ref, used = reference_fe_matrices(mask.astype(bool), H, coefficient=coef)
    np.testing.assert_array_equal(mesh.node_grid(), used)
    a, b = 0.7 / H ** 3, 1.3 / H
    A = csr_of(mesh.assemble(a, b, element_coefficient=coef, node_diagonal=diag), mesh)
    ref = a * M_ref + b * K_ref + sp.diags(diag)
    assert abs(A - ref).max() <= 1e-13 * abs(ref).max()
    # pattern: sorted, no duplicates, equal to the reference's structure (27-point)
    indptr, indices = mesh.pattern()
    for r in range(mesh.num_nodes):
        row = indices[indptr[r]:indptr[r + 1]]
        assert np.all(np.diff(row) > 0)
    assert mesh.nnz == (abs(M_ref) + abs(K_ref)).nnz
    # element bookkeeping
    en = mesh.element_nodes()
    np.testing.assert_array_equal(mesh.element_voxel(), np.flatnonzero(mask))
    g = np.array(mask.shape) + 1
    node_pts = np.stack(np.unravel_index(mesh.node_grid(), tuple(g)), axis=1)
    vox = np.stack(np.unravel_index(mesh.element_voxel(), mask.shape), axis=1)
    for a_ in range(8):
        off = np.array([(a_ >> 2) & 1, (a_ >> 1) & 1, a_ & 1])
        np.testing.assert_array_equal(node_pts[en[:, a_]], vox + off)
    node_id = mesh.node_id()
    assert node_id.shape == tuple(g)
    np.testing.assert_array_equal(node_id.ravel()[mesh.node_grid()], np.arange(mesh.num_nodes))
    assert np.count_nonzero(node_id >= 0) == mesh.num_nodes


def test_patch_test_linear_fields():
    mask = ball(6.3)
    mesh = _core.VoxelMesh(mask, voxel_size=H)
    K = csr_of(mesh.assemble(0.0, 1.0), mesh)
    g = np.array(mask.shape) + 1
    p = np.stack(np.unravel_index(mesh.node_grid(), tuple(g)), axis=1) * H
    np.testing.assert_allclose(K @ np.ones(mesh.num_nodes), 0.0, atol=1e-22)
    u = 0.3 * p[:, 0] - 1.1 * p[:, 1] + 0.7 * p[:, 2]
    # interior nodes (all 8 surrounding voxels inside): K u = 0 for a linear u
    en = mesh.element_nodes()
    count = np.bincount(en.ravel(), minlength=mesh.num_nodes)
    interior = count == 8
    assert interior.sum() > 100
    Ku = K @ u
    assert np.max(np.abs(Ku[interior])) < 1e-12 * np.max(np.abs(Ku))
    # the boundary terms integrate the normal flux: sum(K u) = 0 (divergence theorem)
    assert abs(Ku.sum()) < 1e-12 * np.abs(Ku).sum()


def test_deterministic_across_threads():
    mask = ball(27.0)  # > 65536 nodes, so two threads really run
    meshes = [_core.VoxelMesh(mask, voxel_size=H, threads=t) for t in (1, 2)]
    assert meshes[0].num_nodes > 65536
    np.testing.assert_array_equal(meshes[0].pattern()[1], meshes[1].pattern()[1])
    coef = np.linspace(0.5, 2.0, meshes[0].num_elements)
    vals = [m.assemble(1.0 / H ** 3, 1.0 / H, element_coefficient=coef, threads=t) for m, t in zip(meshes, (1, 2))]
    np.testing.assert_array_equal(vals[0], vals[1])
    b = np.sin(np.arange(meshes[0].num_nodes) * 0.01)
    xs = []
    for t in (1, 2):
        op = meshes[0].operator(1.0 / H ** 3, 0.5 / H, element_coefficient=coef, threads=t)
        x, info = op.solve(b, rtol=1e-10, threads=t)
        assert info["converged"]
        xs.append(x)
    np.testing.assert_array_equal(xs[0], xs[1])


@pytest.mark.parametrize("preconditioner", ["jacobi", "none", "cholesky", "jacobi+constant"])
def test_cg_matches_direct_solver(preconditioner):
    mask = random_mask((9, 8, 7), fill=0.7, seed=3)
    mesh = _core.VoxelMesh(mask, voxel_size=H)
    coef = np.random.default_rng(4).uniform(0.5, 5.0, mesh.num_elements)
    dt_mass = 1.0 / H ** 3 * 0.3
    op = mesh.operator(dt_mass, 1.0 / H, element_coefficient=coef)
    ip, ix, data = op.csr()
    A = sp.csr_matrix((data, ix, ip))
    assert abs(A - A.T).max() == 0.0
    b = np.random.default_rng(5).normal(size=mesh.num_nodes)
    x_ref = spla.spsolve(A.tocsc(), b)
    x, info = op.solve(b, rtol=1e-12, preconditioner=preconditioner)
    assert info["converged"] and info["iterations"] > 0
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-9 * np.abs(x_ref).max())
    np.testing.assert_allclose(op.matvec(x), b, atol=1e-10 * np.abs(b).max())
    np.testing.assert_allclose(op.diagonal(), A.diagonal())
    # warm start at the solution: no iteration needed
    x2, info2 = op.solve(b, x, rtol=1e-8, preconditioner=preconditioner)
    assert info2["iterations"] <= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="no nonzero voxel"):
        _core.VoxelMesh(np.zeros((3, 3, 3), np.uint8), voxel_size=H)
    with pytest.raises(TypeError, match="mask must have dtype uint8"):
        _core.VoxelMesh(np.ones((3, 3, 3), bool), voxel_size=H)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.VoxelMesh(np.ones((3, 3, 6), np.uint8)[:, :, ::2], voxel_size=H)
    with pytest.raises(ValueError, match="voxel_size"):
        _core.VoxelMesh(np.ones((3, 3, 3), np.uint8), voxel_size=-1.0)
    mesh = _core.VoxelMesh(np.ones((2, 2, 2), np.uint8), voxel_size=H)
    with pytest.raises(ValueError, match="element_coefficient must have shape"):
        mesh.assemble(1.0, 1.0, element_coefficient=np.ones(3))
    with pytest.raises(ValueError, match="element_coefficient must be finite and >= 0"):
        mesh.assemble(1.0, 1.0, element_coefficient=-np.ones(8))
    with pytest.raises(ValueError, match="node_diagonal must have shape"):
        mesh.assemble(1.0, 1.0, node_diagonal=np.ones(3))
    op = mesh.operator(1.0, 1.0)
    with pytest.raises(ValueError, match="preconditioner must be"):
        op.solve(np.ones(27), preconditioner="ilu")
    with pytest.raises(ValueError, match=r"b must have shape \(27,\)"):
        op.solve(np.ones(5))
    with pytest.raises(ValueError, match="positive diagonal"):
        mesh.operator(-1.0, 0.0).solve(np.ones(27))


def test_table_valued_operator_equals_assembled_matrix():
    # Without per-element data an operator keeps one row per neighborhood (256), not per node.
    mask = random_mask((8, 7, 6), fill=0.6, seed=7)
    mesh = _core.VoxelMesh(mask, voxel_size=H)
    M_ref, K_ref, _ = reference_fe_matrices(mask.astype(bool), H)
    a, b = 2.0 / H ** 3, 0.3 / H
    op = mesh.operator(a, b)
    ip, ix, data = op.csr()
    A = sp.csr_matrix((data, ix, ip), shape=M_ref.shape)
    ref = a * M_ref + b * K_ref
    assert abs(A - ref).max() <= 1e-13 * abs(ref).max()
    np.testing.assert_array_equal(data, mesh.assemble(a, b))
    x = np.random.default_rng(8).normal(size=mesh.num_nodes)
    np.testing.assert_allclose(op.matvec(x), ref @ x, rtol=1e-12, atol=1e-12 * np.abs(ref @ x).max())
    np.testing.assert_allclose(op.diagonal(), ref.diagonal(), rtol=1e-13)
    # an explicit diagonal forces stored values; both agree
    d = np.full(mesh.num_nodes, 0.1 * a * H ** 3)
    op_d = mesh.operator(a, b, node_diagonal=d)
    np.testing.assert_allclose(op_d.matvec(x) - op.matvec(x), d * x, rtol=1e-9, atol=1e-12 * np.abs(d * x).max())
    for pc in ("jacobi", "cholesky"):
        y, info = op.solve(x, rtol=1e-12, preconditioner=pc)
        assert info["converged"]
        np.testing.assert_allclose(ref @ y, x, atol=1e-9 * np.abs(x).max())


def test_multigrid_preconditioner():
    mask = ball(13.0)  # ~1e4 nodes: two coarse levels below it
    mesh = _core.VoxelMesh(mask, voxel_size=H)
    assert mesh.num_nodes > 9000
    M_ref, K_ref, _ = reference_fe_matrices(mask.astype(bool), H)
    a, b = 1.0 / H ** 3, 20.0 / H  # D dt / h^2 = 20: stiffness-dominated
    A = a * M_ref + b * K_ref
    rhs = np.random.default_rng(9).normal(size=mesh.num_nodes)
    x_ref = spla.spsolve(A.tocsc(), rhs)
    its = {}
    for pc in ("jacobi", "multigrid"):
        op = mesh.operator(a, b)
        x, info = op.solve(rhs, rtol=1e-11, preconditioner=pc)
        assert info["converged"]
        np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-8 * np.abs(x_ref).max())
        its[pc] = info["iterations"]
    assert its["multigrid"] * 4 < its["jacobi"]
    # deterministic for any thread count
    xs = [mesh.operator(a, b).solve(rhs, rtol=1e-11, preconditioner="multigrid", threads=t)[0] for t in (1, 2)]
    np.testing.assert_array_equal(xs[0], xs[1])
    with pytest.raises(ValueError, match="multigrid"):
        mesh.operator(a, b, element_coefficient=np.ones(mesh.num_elements)).solve(rhs, preconditioner="multigrid")
