// tomofuse._core.VoxelMesh and tomofuse._core.SparseOperator: argument checks
// with the GIL held, assembly and solves with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/fem.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

fem::VoxelMesh make_mesh(const py::object& mask_obj, double voxel_size, int threads) {
    auto mask = require_array<std::uint8_t>(mask_obj, "mask", 3);
    if (mask.size() == 0) {
        throw ShapeError("mask must not be empty, got shape " + shape_str(mask));
    }
    if (!(voxel_size > 0) || !std::isfinite(voxel_size)) {
        throw InvalidArgument("voxel_size must be a positive length in meters, got " + std::to_string(voxel_size));
    }
    check_threads(threads);
    const fem::Shape3 shape{static_cast<std::size_t>(mask.shape(0)), static_cast<std::size_t>(mask.shape(1)),
                            static_cast<std::size_t>(mask.shape(2))};
    // node ids, element ids, the 27-point pattern and the occupancy: about 140 bytes per voxel
    require_memory("VoxelMesh", 140, {shape[0] + 1, shape[1] + 1, shape[2] + 1});
    py::gil_scoped_release release;
    return fem::VoxelMesh(mask.data(), shape, voxel_size, threads);
}

// The optional per-element coefficient, checked; nullptr when None.
py::array_t<double> element_coefficient(const fem::VoxelMesh& mesh, const py::object& obj) {
    if (obj.is_none()) {
        return py::array_t<double>();
    }
    auto c = require_array<double>(obj, "element_coefficient", 1);
    if (static_cast<std::size_t>(c.shape(0)) != mesh.num_elements()) {
        throw ShapeError("element_coefficient must have shape (num_elements,) = (" +
                         std::to_string(mesh.num_elements()) + ",), got " + shape_str(c));
    }
    const double* p = c.data();
    for (py::ssize_t i = 0; i < c.shape(0); ++i) {
        if (!(p[i] >= 0) || !std::isfinite(p[i])) {
            throw InvalidArgument("element_coefficient must be finite and >= 0; element " + std::to_string(i) +
                                  " has " + std::to_string(p[i]));
        }
    }
    return c;
}

py::array_t<double> node_diagonal(const fem::VoxelMesh& mesh, const py::object& obj) {
    if (obj.is_none()) {
        return py::array_t<double>();
    }
    auto d = require_array<double>(obj, "node_diagonal", 1);
    if (static_cast<std::size_t>(d.shape(0)) != mesh.num_nodes()) {
        throw ShapeError("node_diagonal must have shape (num_nodes,) = (" + std::to_string(mesh.num_nodes()) +
                         ",), got " + shape_str(d));
    }
    const double* p = d.data();
    for (py::ssize_t i = 0; i < d.shape(0); ++i) {
        if (!std::isfinite(p[i])) {
            throw InvalidArgument("node_diagonal must be finite; node " + std::to_string(i) + " has " +
                                  std::to_string(p[i]));
        }
    }
    return d;
}

// The checked arguments of VoxelMesh::assemble / make_operator (GIL held); the arrays keep
// the optional per-element and per-node data alive while the core reads them.
struct OperatorTerms {
    py::array_t<double> coefficient;
    py::array_t<double> diagonal;
    const double* coefficient_ptr = nullptr;
    const double* diagonal_ptr = nullptr;
};

OperatorTerms operator_terms(const fem::VoxelMesh& mesh, double mass, double stiffness,
                             const py::object& coef_obj, const py::object& diag_obj, int threads) {
    OperatorTerms t;
    t.coefficient = element_coefficient(mesh, coef_obj);
    t.coefficient_ptr = coef_obj.is_none() ? nullptr : t.coefficient.data();
    t.diagonal = node_diagonal(mesh, diag_obj);
    t.diagonal_ptr = diag_obj.is_none() ? nullptr : t.diagonal.data();
    check_threads(threads);
    if (!std::isfinite(mass) || !std::isfinite(stiffness)) {
        throw InvalidArgument("mass and stiffness must be finite");
    }
    return t;
}

py::array_t<double> node_vector(const fem::SparseOperator& op, const py::object& obj, const char* name) {
    auto a = require_array<double>(obj, name, 1);
    if (static_cast<std::size_t>(a.shape(0)) != op.rows()) {
        throw ShapeError(std::string(name) + " must have shape (" + std::to_string(op.rows()) + ",), got " +
                         shape_str(a));
    }
    return a;
}

const char* kMeshDoc = R"doc(
Trilinear hexahedral finite elements on the voxels of a mask.

Every nonzero voxel of ``mask`` is one element; its nodes are its 8 corners
on the (nz+1, ny+1, nx+1) node grid, numbered in C order of grid position.
Matrices are assembled row by row (each thread owns its rows), so results
are identical for any thread count.

Parameters
----------
mask : (nz, ny, nx) ndarray of uint8
    Nonzero where the body is.
voxel_size : float
    Voxel edge h in meters.
threads : int
    0 = tomofuse default.
)doc";

const char* kOperatorDoc = R"doc(
A symmetric sparse matrix on a voxel mesh's CSR pattern (27-point), with
y = A x and a preconditioned conjugate-gradient solve. Made by
VoxelMesh.operator().
)doc";

}  // namespace

void bind_fem(py::module_& m) {
    py::class_<fem::SparseOperator, std::shared_ptr<fem::SparseOperator>>(m, "SparseOperator", kOperatorDoc)
        .def_property_readonly("rows", &fem::SparseOperator::rows)
        .def_property_readonly("nnz", [](const fem::SparseOperator& op) { return op.pattern().nnz(); })
        .def(
            "matvec",
            [](const fem::SparseOperator& op, const py::object& x_obj, int threads) {
                auto x = node_vector(op, x_obj, "x");
                check_threads(threads);
                py::array_t<double> y(static_cast<py::ssize_t>(op.rows()));
                double* yp = y.mutable_data();
                {
                    py::gil_scoped_release release;
                    op.apply(x.data(), yp, threads);
                }
                return y;
            },
            py::arg("x"), py::kw_only(), py::arg("threads") = 0, "y = A x for x of shape (rows,) float64.")
        .def("diagonal", [](const fem::SparseOperator& op) { return to_array(op.diagonal(), {static_cast<py::ssize_t>(op.rows())}); },
             "The diagonal of A, shape (rows,).")
        .def(
            "csr",
            [](const fem::SparseOperator& op) {
                const auto& p = op.pattern();
                return py::make_tuple(to_array(p.indptr, {static_cast<py::ssize_t>(p.indptr.size())}),
                                      to_array(p.indices, {static_cast<py::ssize_t>(p.nnz())}),
                                      to_array(op.values(), {static_cast<py::ssize_t>(p.nnz())}));
            },
            "(indptr int64, indices int32, data float64): the matrix in CSR form (copies).")
        .def(
            "solve",
            [](const fem::SparseOperator& op, const py::object& b_obj, const py::object& x0_obj, double rtol,
               double atol, int max_iterations, const std::string& preconditioner, int threads) {
                auto b = node_vector(op, b_obj, "b");
                py::array_t<double> x(static_cast<py::ssize_t>(op.rows()));
                if (x0_obj.is_none()) {
                    std::fill(x.mutable_data(), x.mutable_data() + op.rows(), 0.0);
                } else {
                    auto x0 = node_vector(op, x0_obj, "x0");
                    std::memcpy(x.mutable_data(), x0.data(), op.rows() * sizeof(double));
                }
                if (!(rtol >= 0) || !(atol >= 0) || !std::isfinite(rtol) || !std::isfinite(atol)) {
                    throw InvalidArgument("rtol and atol must be finite and >= 0, got rtol=" + std::to_string(rtol) +
                                          ", atol=" + std::to_string(atol));
                }
                if (max_iterations < 0) {
                    throw InvalidArgument("max_iterations must be >= 0, got " + std::to_string(max_iterations));
                }
                check_threads(threads);
                fem::CgOptions opt;
                opt.rtol = rtol;
                opt.atol = atol;
                opt.max_iterations = max_iterations;
                opt.preconditioner = fem::parse_preconditioner(preconditioner);
                opt.nthreads = threads;
                fem::CgResult r;
                double* xp = x.mutable_data();
                {
                    py::gil_scoped_release release;
                    r = op.solve(b.data(), xp, opt);
                }
                py::dict info;
                info["iterations"] = r.iterations;
                info["residual_norm"] = r.residual_norm;
                info["rhs_norm"] = r.rhs_norm;
                info["converged"] = r.converged;
                return py::make_tuple(x, info);
            },
            py::arg("b"), py::arg("x0") = py::none(), py::kw_only(), py::arg("rtol") = 1e-10,
            py::arg("atol") = 0.0, py::arg("max_iterations") = 10000, py::arg("preconditioner") = "jacobi",
            py::arg("threads") = 0,
            "Solve A x = b by preconditioned conjugate gradients from x0 (default 0).\n\n"
            "Stops at |b - A x| <= max(atol, rtol |b|). preconditioner: 'jacobi' (parallel),\n"
            "'jacobi+constant' (Jacobi plus an exact coarse correction of the constant vector, for\n"
            "Neumann problems held by weak boundary terms), 'multigrid' (geometric V-cycle; operators\n"
            "without element_coefficient/node_diagonal only), 'cholesky'\n"
            "(incomplete Cholesky, computed on first use and kept; serial) or 'none'. Returns (x, info)\n"
            "with info = {iterations, residual_norm, rhs_norm, converged}.");

    py::class_<fem::VoxelMesh, std::shared_ptr<fem::VoxelMesh>>(m, "VoxelMesh", kMeshDoc)
        .def(py::init([](const py::object& mask, double voxel_size, int threads) {
                 return std::make_shared<fem::VoxelMesh>(make_mesh(mask, voxel_size, threads));
             }),
             py::arg("mask"), py::kw_only(), py::arg("voxel_size"), py::arg("threads") = 0)
        .def_property_readonly("shape",
                               [](const fem::VoxelMesh& me) {
                                   return py::make_tuple(me.shape()[0], me.shape()[1], me.shape()[2]);
                               })
        .def_property_readonly("voxel_size", &fem::VoxelMesh::voxel_size)
        .def_property_readonly("num_nodes", &fem::VoxelMesh::num_nodes)
        .def_property_readonly("num_elements", &fem::VoxelMesh::num_elements)
        .def_property_readonly("nnz", [](const fem::VoxelMesh& me) { return me.pattern()->nnz(); })
        .def("node_grid",
             [](const fem::VoxelMesh& me) {
                 return to_array(me.node_grid(), {static_cast<py::ssize_t>(me.num_nodes())});
             },
             "Flat index of each node in the (nz+1, ny+1, nx+1) node grid, int64 (num_nodes,).")
        .def("node_id",
             [](const fem::VoxelMesh& me) {
                 const auto s = me.node_shape();
                 return to_array(me.node_id(), {static_cast<py::ssize_t>(s[0]), static_cast<py::ssize_t>(s[1]),
                                                static_cast<py::ssize_t>(s[2])});
             },
             "Node id at each node-grid point, -1 where no element touches it; int32 (nz+1, ny+1, nx+1).")
        .def("element_voxel",
             [](const fem::VoxelMesh& me) {
                 return to_array(me.element_voxel(), {static_cast<py::ssize_t>(me.num_elements())});
             },
             "Flat voxel index of each element, int64 (num_elements,).")
        .def("element_nodes",
             [](const fem::VoxelMesh& me) {
                 return to_array(me.element_nodes(), {static_cast<py::ssize_t>(me.num_elements()), 8});
             },
             "Node ids of each element, int32 (num_elements, 8); local node 4 bz + 2 by + bx.")
        .def("lumped_mass",
             [](const fem::VoxelMesh& me) {
                 return to_array(me.lumped_mass(), {static_cast<py::ssize_t>(me.num_nodes())});
             },
             "Row sums of the consistent mass matrix: volume (m^3) per node, float64 (num_nodes,).")
        .def(
            "assemble",
            [](const fem::VoxelMesh& me, double mass, double stiffness, const py::object& coef_obj,
               const py::object& diag_obj, int threads) {
                const auto terms = operator_terms(me, mass, stiffness, coef_obj, diag_obj, threads);
                std::vector<double> v;
                {
                    py::gil_scoped_release release;
                    v = me.assemble(mass, stiffness, terms.coefficient_ptr, terms.diagonal_ptr, threads);
                }
                return to_array(v, {static_cast<py::ssize_t>(v.size())});
            },
            py::arg("mass") = 0.0, py::arg("stiffness") = 0.0, py::kw_only(),
            py::arg("element_coefficient") = py::none(), py::arg("node_diagonal") = py::none(),
            py::arg("threads") = 0,
            "CSR values (on the mesh pattern) of mass * M + stiffness * K + diag(node_diagonal), with M\n"
            "the consistent mass matrix (h^3 per element), K the stiffness matrix (k_e h per element,\n"
            "k_e = element_coefficient[e] or 1) and node_diagonal (num_nodes,) float64 or None.")
        .def(
            "operator",
            [](const fem::VoxelMesh& me, double mass, double stiffness, const py::object& coef_obj,
               const py::object& diag_obj, int threads) {
                const auto terms = operator_terms(me, mass, stiffness, coef_obj, diag_obj, threads);
                py::gil_scoped_release release;
                return std::make_shared<fem::SparseOperator>(
                    me.make_operator(mass, stiffness, terms.coefficient_ptr, terms.diagonal_ptr, threads));
            },
            py::arg("mass") = 0.0, py::arg("stiffness") = 0.0, py::kw_only(),
            py::arg("element_coefficient") = py::none(), py::arg("node_diagonal") = py::none(),
            py::arg("threads") = 0,
            "The SparseOperator mass * M + stiffness * K + diag(node_diagonal) (see assemble).")
        .def("pattern",
             [](const fem::VoxelMesh& me) {
                 const auto& p = *me.pattern();
                 return py::make_tuple(to_array(p.indptr, {static_cast<py::ssize_t>(p.indptr.size())}),
                                       to_array(p.indices, {static_cast<py::ssize_t>(p.nnz())}));
             },
             "(indptr int64, indices int32) of the mesh's CSR pattern.")
        .def("__repr__", [](const fem::VoxelMesh& me) {
            return "VoxelMesh(shape=(" + std::to_string(me.shape()[0]) + ", " + std::to_string(me.shape()[1]) +
                   ", " + std::to_string(me.shape()[2]) + "), elements=" + std::to_string(me.num_elements()) +
                   ", nodes=" + std::to_string(me.num_nodes()) + ")";
        });

    m.def(
        "unit_element_matrices",
        []() {
            py::array_t<double> mm({8, 8}), kk({8, 8});
            std::memcpy(mm.mutable_data(), fem::unit_mass().data(), 64 * sizeof(double));
            std::memcpy(kk.mutable_data(), fem::unit_stiffness().data(), 64 * sizeof(double));
            return py::make_tuple(mm, kk);
        },
        "(mass, stiffness) 8 x 8 matrices of the unit-cube trilinear element (local node 4 bz + 2 by + bx).");
}

}  // namespace tomofuse::bindings
