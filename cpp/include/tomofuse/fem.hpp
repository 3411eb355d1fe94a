// Finite elements on voxel meshes: trilinear hexahedra on the voxels of a mask,
// mass and stiffness assembly, and a preconditioned conjugate-gradient solver.
//
// Geometry: the mask is a (z, y, x) C-ordered volume of `shape` voxels; voxel
// (i, j, k) spans [i, i+1) x [j, j+1) x [k, k+1) times `voxel_size`. Every
// voxel with a nonzero mask value is one element; its nodes are its 8 corners,
// points of the (nz+1, ny+1, nx+1) node grid. Nodes are numbered in C order of
// their grid position, so a row's neighbors have increasing ids in the order
// of their grid offsets.
//
// Local node a of an element is 4 bz + 2 by + bx, where bit b_d = 1 marks the
// corner on the voxel's upper face along axis d (z, y, x).
//
// Determinism: every parallel loop writes disjoint rows (each thread owns the
// rows it assembles; no atomic or racy accumulation), and dot products are
// summed over fixed blocks in a fixed order, so results are bit-identical for
// any thread count.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tomofuse/export.hpp"

namespace tomofuse::fem {

using Shape3 = std::array<std::size_t, 3>;

namespace detail {
class HierarchySource;
class VCycle;
}  // namespace detail

/// Consistent mass matrix of the unit-cube trilinear element, row-major 8 x 8
/// (entries m_z m_y m_x with the 1-D mass [[1/3, 1/6], [1/6, 1/3]]).
TOMOFUSE_EXPORT const std::array<double, 64>& unit_mass() noexcept;

/// Stiffness matrix (integral of grad N_a . grad N_b) of the unit-cube
/// trilinear element, row-major 8 x 8.
TOMOFUSE_EXPORT const std::array<double, 64>& unit_stiffness() noexcept;

/// Compressed sparse rows: column indices sorted within each row.
struct CsrPattern {
    std::vector<std::int64_t> indptr;   ///< n_rows + 1 offsets
    std::vector<std::int32_t> indices;  ///< nnz column indices
    std::size_t rows() const noexcept { return indptr.empty() ? 0 : indptr.size() - 1; }
    std::size_t nnz() const noexcept { return indices.size(); }
};

/// Preconditioner of the conjugate-gradient solver.
enum class Preconditioner {
    None,      ///< plain CG
    Jacobi,    ///< diagonal scaling (parallel)
    JacobiConstant,  ///< Jacobi plus an exact coarse correction of the constant vector (two-level,
                     ///< additive): for Neumann-dominated problems held only by weak boundary terms
    Cholesky,  ///< incomplete Cholesky IC(0)-like with fill by threshold (Eigen, serial apply)
    Multigrid,  ///< geometric multigrid V-cycle (2x coarser voxel grids, Galerkin coarse operators,
                ///< damped-Jacobi smoothing); operators from VoxelMesh::make_operator without
                ///< per-element data only
};

/// Options of SparseOperator::solve.
struct CgOptions {
    double rtol = 1e-10;                              ///< stop at |b - A x| <= rtol |b| ...
    double atol = 0.0;                                ///< ... or <= atol
    int max_iterations = 10000;                       ///< give up after this many iterations
    Preconditioner preconditioner = Preconditioner::Jacobi;
    int nthreads = 0;                                 ///< 0 = tomofuse default
};

/// Outcome of SparseOperator::solve.
struct CgResult {
    int iterations = 0;          ///< iterations done
    double residual_norm = 0.0;  ///< |b - A x| (recursively updated residual)
    double rhs_norm = 0.0;       ///< |b|
    bool converged = false;      ///< residual_norm met the tolerance
};

/// The values of a voxel-mesh matrix without per-element data, stored once
/// per neighborhood instead of once per row: a node's row depends only on
/// which of its 8 surrounding voxels are elements (its occupancy byte).
struct NeighborhoodTable {
    std::shared_ptr<const std::vector<std::uint8_t>> occupancy;  ///< occupancy byte of every row
    std::vector<double> rows;  ///< 256 x 27: row values of each occupancy, in pattern order
    std::shared_ptr<const detail::HierarchySource> hierarchy;  ///< coarse levels (multigrid), may be null
    double mass = 0.0;       ///< the operator is mass * M + stiffness * K of the mesh
    double stiffness = 0.0;
};

/// A symmetric matrix on a (shared) CSR pattern, with its values either
/// stored per entry or looked up in a NeighborhoodTable (matrix-free values).
class TOMOFUSE_EXPORT SparseOperator {
public:
    /// `values` has one entry per pattern entry. Throws InvalidArgument on a
    /// size mismatch.
    SparseOperator(std::shared_ptr<const CsrPattern> pattern, std::vector<double> values);
    /// Values from a neighborhood table (one occupancy byte per row).
    SparseOperator(std::shared_ptr<const CsrPattern> pattern, NeighborhoodTable table);
    ~SparseOperator();
    SparseOperator(SparseOperator&&) noexcept;
    SparseOperator& operator=(SparseOperator&&) noexcept;
    SparseOperator(const SparseOperator&) = delete;
    SparseOperator& operator=(const SparseOperator&) = delete;

    std::size_t rows() const noexcept { return pattern_ ? pattern_->rows() : 0; }
    const CsrPattern& pattern() const noexcept { return *pattern_; }
    std::shared_ptr<const CsrPattern> shared_pattern() const noexcept { return pattern_; }
    /// Whether the values come from a neighborhood table (no per-entry storage).
    bool table_values() const noexcept { return values_.empty() && table_.occupancy != nullptr; }
    /// The values, one per pattern entry (a copy; built from the table if needed).
    std::vector<double> values() const;

    /// y = A x (x, y of length rows(); must not overlap).
    void apply(const double* x, double* y, int nthreads = 0) const;

    /// The diagonal of A.
    std::vector<double> diagonal() const;

    /// Solve A x = b by preconditioned CG, starting from the x passed in.
    /// A must be symmetric positive (semi-)definite; a non-positive diagonal
    /// with the Jacobi preconditioner throws InvalidArgument. The incomplete
    /// Cholesky factor and the multigrid V-cycle are built on first use, under
    /// a lock, and kept read-only; every call has its own work vectors and uses
    /// its own options.nthreads. So solve may be called from several threads
    /// at once on one operator, and the operator may be moved between calls.
    /// Throws tomofuse::Error on an operator that was moved from.
    CgResult solve(const double* b, double* x, const CgOptions& options = {}) const;

private:
    struct Factor;
    struct Preconditioners;
    void spmv(const double* x, double* y, int threads) const;
    std::shared_ptr<const Factor> cholesky_factor() const;
    std::shared_ptr<const detail::VCycle> multigrid(int threads) const;
    std::shared_ptr<const CsrPattern> pattern_;
    std::vector<double> values_;
    NeighborhoodTable table_;
    std::unique_ptr<Preconditioners> preconditioners_;  // built on first use (thread-safe)
};

/// Trilinear hexahedral elements on the voxels of a mask.
class TOMOFUSE_EXPORT VoxelMesh {
public:
    /// Elements are the voxels where `mask` (C order, `shape`) is nonzero.
    /// Throws InvalidArgument for an empty mask, a non-positive voxel size or a
    /// mesh too large for 32-bit node ids.
    VoxelMesh(const std::uint8_t* mask, const Shape3& shape, double voxel_size, int nthreads = 0);

    const Shape3& shape() const noexcept { return shape_; }
    Shape3 node_shape() const noexcept { return {shape_[0] + 1, shape_[1] + 1, shape_[2] + 1}; }
    double voxel_size() const noexcept { return h_; }
    std::size_t num_nodes() const noexcept { return node_grid_.size(); }
    std::size_t num_elements() const noexcept { return element_voxel_.size(); }

    /// Flat index of each node in the node grid (C order of node_shape()).
    const std::vector<std::int64_t>& node_grid() const noexcept { return node_grid_; }
    /// Node id of each node-grid point, -1 where no element touches it.
    const std::vector<std::int32_t>& node_id() const noexcept { return node_id_; }
    /// Flat voxel index of each element (C order of shape()).
    const std::vector<std::int64_t>& element_voxel() const noexcept { return element_voxel_; }
    /// Element id of each voxel, -1 outside the mask.
    const std::vector<std::int32_t>& voxel_element() const noexcept { return voxel_element_; }
    /// Node ids of every element, (num_elements, 8) row-major, local order above.
    std::vector<std::int32_t> element_nodes() const;

    /// The CSR pattern of every matrix on this mesh (27-point: nodes sharing an element).
    std::shared_ptr<const CsrPattern> pattern() const noexcept { return pattern_; }

    /// Values (on pattern()) of  mass * M + stiffness * K + diag(node_diagonal)  where
    ///   M = sum_e h^3 M_unit,     K = sum_e k_e h K_unit,
    /// h = voxel_size, k_e = element_coefficient[e] (1 if null; length
    /// num_elements) and node_diagonal (none if null; length num_nodes) adds
    /// to the diagonal (boundary terms lumped at nodes). Assembled row by row:
    /// each thread owns its rows.
    std::vector<double> assemble(double mass, double stiffness, const double* element_coefficient = nullptr,
                                 const double* node_diagonal = nullptr, int nthreads = 0) const;
    /// assemble() into caller-owned storage of pattern()->nnz() values.
    void assemble_into(double mass, double stiffness, const double* element_coefficient, const double* node_diagonal,
                       double* values, int nthreads = 0) const;

    /// The operator mass * M + stiffness * K + diag(node_diagonal) (see assemble).
    /// Without element coefficients and node diagonal its values come from a
    /// NeighborhoodTable: 1 byte per row instead of 8 per entry, and a
    /// matrix-vector product reading about a third of the memory.
    SparseOperator make_operator(double mass, double stiffness, const double* element_coefficient = nullptr,
                                 const double* node_diagonal = nullptr, int nthreads = 0) const;

    /// Row sums of the consistent mass matrix: the volume (m^3) each node
    /// stands for, h^3 / 8 per element touching it.
    std::vector<double> lumped_mass() const;

private:
    Shape3 shape_{};
    double h_ = 0.0;
    std::vector<std::int64_t> node_grid_;
    std::vector<std::int32_t> node_id_;
    std::vector<std::int64_t> element_voxel_;
    std::vector<std::int32_t> voxel_element_;
    std::shared_ptr<const CsrPattern> pattern_;
    std::shared_ptr<const std::vector<std::uint8_t>> occupancy_;  // bit d: element at offset d exists
    std::shared_ptr<const detail::HierarchySource> hierarchy_;     // multigrid levels, built on first use
};

/// Name of a preconditioner: "none", "jacobi", "jacobi+constant", "cholesky" or "multigrid".
TOMOFUSE_EXPORT std::string preconditioner_name(Preconditioner p);
/// Parse a preconditioner name; throws InvalidArgument for an unknown one.
TOMOFUSE_EXPORT Preconditioner parse_preconditioner(const std::string& name);

}  // namespace tomofuse::fem
