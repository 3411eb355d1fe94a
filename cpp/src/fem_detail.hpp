// Private to the core: the geometric multigrid hierarchy of a voxel mesh.
#pragma once

#include <Eigen/SparseCholesky>
#include <Eigen/SparseCore>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "tomofuse/fem.hpp"

namespace tomofuse::fem::detail {

using RowMat = Eigen::SparseMatrix<double, Eigen::RowMajor, int>;

/// One coarse level: interpolation from it to the next finer level and its
/// Galerkin mass and stiffness matrices (R M P, R K P with R = P^T).
struct CoarseLevel {
    RowMat P;  ///< finer nodes x this level's nodes (trilinear interpolation)
    RowMat R;  ///< P^T
    RowMat M;
    RowMat K;
};

/// Builds the coarse levels of a mesh once, on first use (thread-safe). It
/// keeps its own copy of the mask, so operators may outlive their mesh.
class HierarchySource {
public:
    HierarchySource(std::vector<std::uint8_t> mask, const Shape3& shape, double h)
        : mask_(std::move(mask)), shape_(shape), h_(h) {}
    const std::vector<CoarseLevel>& levels(int threads) const;

private:
    std::vector<std::uint8_t> mask_;
    Shape3 shape_;
    double h_;
    mutable std::once_flag once_;
    mutable std::vector<CoarseLevel> levels_;
};

/// A V-cycle for alpha M + beta K on a hierarchy, built once per operator and read-only
/// afterwards: the finest level's operator, the thread count and the work vectors are
/// arguments of each application, so one VCycle serves any number of concurrent solves and
/// holds no pointer to the operator it was built for.
class VCycle {
public:
    /// y = A x on the finest level, with `threads` threads.
    using FineApply = std::function<void(const double* x, double* y, int threads)>;
    /// Work vectors of one solve (3 per level).
    using Workspace = std::vector<std::vector<double>>;

    /// `fine_apply` (used only while constructing: damping estimates) computes the finest
    /// level's product; `fine_diag` is its diagonal and `fine_gershgorin` a bound of
    /// lambda_max(D^-1 A) there. `source` keeps the levels alive.
    VCycle(std::shared_ptr<const HierarchySource> source, double alpha, double beta, std::vector<double> fine_diag,
           double fine_gershgorin, const FineApply& fine_apply, int threads);
    Workspace workspace() const;
    /// z = B r (B symmetric positive definite, an approximate inverse of A).
    void apply(const double* r, double* z, const FineApply& fine_apply, int threads, Workspace& work) const;

private:
    struct Call {
        const FineApply& fine_apply;
        int threads;
        Workspace& work;
    };
    void cycle(std::size_t level, const double* r, double* z, const Call& call) const;
    void op(std::size_t level, const double* x, double* y, const Call& call) const;
    std::shared_ptr<const HierarchySource> source_;
    const std::vector<CoarseLevel>& levels_;
    std::vector<RowMat> a_;                     // coarse operators (index l = levels_[l])
    std::vector<std::vector<double>> inv_diag_;  // 0 = finest, l + 1 = levels_[l]
    std::vector<double> omega_;
    Eigen::SimplicialLDLT<Eigen::SparseMatrix<double>> coarsest_;
};

}  // namespace tomofuse::fem::detail
