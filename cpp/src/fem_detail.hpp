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

/// A V-cycle for alpha M + beta K on a hierarchy (built per operator).
class VCycle {
public:
    /// `fine_apply(x, y)` computes y = A x on the finest level; `fine_diag` is its
    /// diagonal and `fine_gershgorin` a bound of lambda_max(D^-1 A) there.
    VCycle(const std::vector<CoarseLevel>& levels, double alpha, double beta, std::vector<double> fine_diag,
           double fine_gershgorin, const std::function<void(const double*, double*)>& fine_apply, int threads);
    /// z = B r (B symmetric positive definite, an approximate inverse of A).
    void apply(const double* r, double* z) const;

private:
    void cycle(std::size_t level, const double* r, double* z) const;
    void op(std::size_t level, const double* x, double* y) const;
    const std::vector<CoarseLevel>& levels_;
    std::function<void(const double*, double*)> fine_apply_;
    std::vector<RowMat> a_;                     // coarse operators (index l = levels_[l])
    std::vector<std::vector<double>> inv_diag_;  // 0 = finest, l + 1 = levels_[l]
    std::vector<double> omega_;
    Eigen::SimplicialLDLT<Eigen::SparseMatrix<double>> coarsest_;
    int threads_;
    mutable std::vector<std::vector<double>> work_;  // per level: 3 vectors
};

}  // namespace tomofuse::fem::detail
