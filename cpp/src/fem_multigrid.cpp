// Geometric multigrid for voxel meshes: 2x coarser voxel grids (a coarse voxel
// is present where any of its 8 fine voxels is), trilinear interpolation,
// Galerkin coarse operators, damped-Jacobi smoothing, a direct solve on the
// coarsest level. Used as a CG preconditioner (symmetric V-cycle).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fem_detail.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"

namespace tomofuse::fem::detail {

namespace {

constexpr std::size_t kCoarsestNodes = 3000;
constexpr int kSweeps = 2;

void spmv(const RowMat& a, const double* x, double* y, int threads) {
    const auto n = static_cast<std::ptrdiff_t>(a.rows());
    const int* ptr = a.outerIndexPtr();
    const int* idx = a.innerIndexPtr();
    const double* val = a.valuePtr();
    TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1 && n > 32768))
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (int p = ptr[i]; p < ptr[i + 1]; ++p) {
            s += val[p] * x[idx[p]];
        }
        y[i] = s;
    }
}

RowMat explicit_matrix(const VoxelMesh& mesh, double mass, double stiffness, int threads) {
    const CsrPattern& p = *mesh.pattern();
    const auto n = static_cast<Eigen::Index>(p.rows());
    RowMat a(n, n);
    a.resizeNonZeros(static_cast<Eigen::Index>(p.nnz()));
    std::copy(p.indptr.begin(), p.indptr.end(), a.outerIndexPtr());  // int64 -> int (nnz < 2^31 checked by caller)
    std::copy(p.indices.begin(), p.indices.end(), a.innerIndexPtr());
    mesh.assemble_into(mass, stiffness, nullptr, nullptr, a.valuePtr(), threads);
    return a;
}

// R A P with A assembled from the mesh, one matrix at a time (peak memory).
RowMat galerkin(const VoxelMesh& mesh, double mass, double stiffness, const RowMat& P, const RowMat& R, int threads) {
    RowMat ap;
    {
        const RowMat a = explicit_matrix(mesh, mass, stiffness, threads);
        ap = a * P;
    }
    return R * ap;
}

// Gershgorin bound of lambda_max(D^-1 A) of an explicit matrix.
double gershgorin(const RowMat& a) {
    double bound = 0.0;
    for (Eigen::Index i = 0; i < a.rows(); ++i) {
        double sum = 0.0, diag = 0.0;
        for (RowMat::InnerIterator it(a, i); it; ++it) {
            sum += std::abs(it.value());
            if (it.col() == i) {
                diag = it.value();
            }
        }
        bound = std::max(bound, sum / diag);
    }
    return bound;
}

}  // namespace

const std::vector<CoarseLevel>& HierarchySource::levels(int threads) const {
    std::call_once(once_, [&] {
        std::vector<std::uint8_t> mask = mask_;
        Shape3 shape = shape_;
        double h = h_;
        auto fine = std::make_unique<VoxelMesh>(mask.data(), shape, h, threads);
        if (fine->pattern()->nnz() >= static_cast<std::size_t>(std::numeric_limits<int>::max())) {
            throw InvalidArgument("multigrid: the mesh is too large (nnz must fit in 32 bits)");
        }
        RowMat m, k;  // the current level's matrices (the finest level's are assembled when needed)
        // Grid index of each node of the current level (a subset of its mesh's nodes).
        std::vector<std::int64_t> grid = fine->node_grid();
        while (grid.size() > kCoarsestNodes && std::min({shape[0], shape[1], shape[2]}) > 2) {
            const Shape3 cs{(shape[0] + 1) / 2, (shape[1] + 1) / 2, (shape[2] + 1) / 2};
            std::vector<std::uint8_t> cmask(cs[0] * cs[1] * cs[2], 0);
            for (std::size_t i = 0; i < shape[0]; ++i) {
                for (std::size_t j = 0; j < shape[1]; ++j) {
                    for (std::size_t l = 0; l < shape[2]; ++l) {
                        if (mask[(i * shape[1] + j) * shape[2] + l] != 0) {
                            cmask[((i / 2) * cs[1] + j / 2) * cs[2] + l / 2] = 1;
                        }
                    }
                }
            }
            auto coarse = std::make_unique<VoxelMesh>(cmask.data(), cs, 2 * h, threads);
            // Trilinear interpolation: a fine node at even grid coordinate 2I sits on
            // coarse node I; at odd 2I+1 halfway between I and I+1.
            const std::size_t gy = shape[1] + 1, gx = shape[2] + 1;
            const std::size_t cgy = cs[1] + 1, cgx = cs[2] + 1;
            const auto& cid = coarse->node_id();
            std::vector<Eigen::Triplet<double, int>> t;
            t.reserve(grid.size() * 8);
            for (std::size_t n = 0; n < grid.size(); ++n) {
                const auto g = static_cast<std::size_t>(grid[n]);
                const std::size_t c[3] = {g / (gy * gx), (g / gx) % gy, g % gx};
                std::size_t lo[3], cnt[3];
                for (int a = 0; a < 3; ++a) {
                    lo[a] = c[a] / 2;
                    cnt[a] = (c[a] % 2 == 0) ? 1 : 2;
                }
                const double w = 1.0 / static_cast<double>(cnt[0] * cnt[1] * cnt[2]);
                for (std::size_t a = 0; a < cnt[0]; ++a) {
                    for (std::size_t b = 0; b < cnt[1]; ++b) {
                        for (std::size_t d = 0; d < cnt[2]; ++d) {
                            const std::size_t cg = ((lo[0] + a) * cgy + (lo[1] + b)) * cgx + (lo[2] + d);
                            const std::int32_t id = cid[cg];
                            if (id < 0) {
                                throw Error("multigrid: internal error, a coarse interpolation node is missing");
                            }
                            t.emplace_back(static_cast<int>(n), id, w);
                        }
                    }
                }
            }
            // Keep only the coarse nodes that some fine node interpolates from
            // (a coarse voxel's far corner may have none): no empty rows in R A P.
            std::vector<int> compact(coarse->num_nodes(), -1);
            for (const auto& e : t) {
                compact[static_cast<std::size_t>(e.col())] = 0;
            }
            std::vector<std::int64_t> cgrid;
            for (std::size_t c = 0; c < compact.size(); ++c) {
                if (compact[c] == 0) {
                    compact[c] = static_cast<int>(cgrid.size());
                    cgrid.push_back(coarse->node_grid()[c]);
                }
            }
            for (auto& e : t) {
                e = Eigen::Triplet<double, int>(e.row(), compact[static_cast<std::size_t>(e.col())], e.value());
            }
            CoarseLevel level;
            level.P.resize(static_cast<Eigen::Index>(grid.size()), static_cast<Eigen::Index>(cgrid.size()));
            level.P.setFromTriplets(t.begin(), t.end());
            level.R = level.P.transpose();
            if (levels_.empty()) {
                level.M = galerkin(*fine, 1.0, 0.0, level.P, level.R, threads);
                level.K = galerkin(*fine, 0.0, 1.0, level.P, level.R, threads);
            } else {
                RowMat mp = m * level.P;
                level.M = level.R * mp;
                RowMat kp = k * level.P;
                level.K = level.R * kp;
            }
            m = level.M;
            k = level.K;
            levels_.push_back(std::move(level));
            mask.swap(cmask);
            shape = cs;
            h *= 2;
            grid.swap(cgrid);
            fine = std::move(coarse);
        }
    });
    return levels_;
}

VCycle::VCycle(std::shared_ptr<const HierarchySource> source, double alpha, double beta,
               std::vector<double> fine_diag, double fine_gershgorin, const FineApply& fine_apply, int threads)
    : source_(std::move(source)), levels_(source_->levels(threads)) {
    inv_diag_.push_back(std::move(fine_diag));
    for (const auto& l : levels_) {
        RowMat a = alpha * l.M + beta * l.K;
        const Eigen::VectorXd dg = a.diagonal();
        inv_diag_.emplace_back(dg.data(), dg.data() + dg.size());
        a_.push_back(std::move(a));
    }
    for (auto& d : inv_diag_) {
        for (double& v : d) {
            if (!(v > 0)) {
                throw InvalidArgument("solve: the multigrid preconditioner needs a positive diagonal");
            }
            v = 1.0 / v;
        }
    }
    Workspace work = workspace();
    const Call call{fine_apply, threads, work};
    // Damping 4 / (3 lambda) with lambda ~ lambda_max(D^-1 A): the smaller of
    // Gershgorin's bound and 1.1 x a power-iteration estimate (which can only
    // underestimate, by far less than the 1.5 that would make omega lambda > 2).
    for (std::size_t l = 0; l < inv_diag_.size(); ++l) {
        const std::size_t n = inv_diag_[l].size();
        std::vector<double> x(n), y(n);
        for (std::size_t i = 0; i < n; ++i) {
            x[i] = std::sin(0.7 * static_cast<double>(i) + 0.3);  // fixed start: deterministic
        }
        double lambda = 0.0;
        for (int it = 0; it < 8; ++it) {
            op(l, x.data(), y.data(), call);
            double num = 0.0, den = 0.0;
            for (std::size_t i = 0; i < n; ++i) {
                y[i] *= inv_diag_[l][i];
                num += y[i] * y[i];
                den += x[i] * x[i];
            }
            lambda = std::sqrt(num / den);
            const double sc = 1.0 / std::sqrt(num);
            for (std::size_t i = 0; i < n; ++i) {
                x[i] = y[i] * sc;
            }
        }
        const double bound = (l == 0) ? fine_gershgorin : gershgorin(a_[l - 1]);
        omega_.push_back(4.0 / (3.0 * std::min(bound, 1.1 * lambda)));
    }
    if (!a_.empty()) {
        Eigen::SparseMatrix<double> c = a_.back();
        coarsest_.compute(c);
        if (coarsest_.info() != Eigen::Success) {
            throw Error("solve: the coarsest multigrid level could not be factorized");
        }
    }
}

VCycle::Workspace VCycle::workspace() const {
    Workspace work(inv_diag_.size());
    for (std::size_t l = 0; l < inv_diag_.size(); ++l) {
        work[l].assign(3 * inv_diag_[l].size(), 0.0);
    }
    return work;
}

void VCycle::op(std::size_t level, const double* x, double* y, const Call& call) const {
    if (level == 0) {
        call.fine_apply(x, y, call.threads);
    } else {
        spmv(a_[level - 1], x, y, call.threads);
    }
}

void VCycle::cycle(std::size_t level, const double* r, double* z, const Call& call) const {
    const std::size_t n = inv_diag_[level].size();
    if (level == inv_diag_.size() - 1 && level > 0) {
        Eigen::Map<const Eigen::VectorXd> rv(r, static_cast<Eigen::Index>(n));
        Eigen::Map<Eigen::VectorXd> zv(z, static_cast<Eigen::Index>(n));
        zv = coarsest_.solve(rv);
        return;
    }
    double* az = call.work[level].data();
    double* res = az + n;
    const double* d = inv_diag_[level].data();
    const double w = omega_[level];
    const auto sn = static_cast<std::ptrdiff_t>(n);
    const int th = (n > 32768) ? call.threads : 1;
    auto smooth = [&](bool from_zero) {
        if (from_zero) {
            TOMOFUSE_OMP(parallel for schedule(static) num_threads(th) if (th > 1))
            for (std::ptrdiff_t i = 0; i < sn; ++i) {
                z[i] = w * d[i] * r[i];
            }
            return;
        }
        op(level, z, az, call);
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(th) if (th > 1))
        for (std::ptrdiff_t i = 0; i < sn; ++i) {
            z[i] += w * d[i] * (r[i] - az[i]);
        }
    };
    smooth(true);
    for (int s = 1; s < kSweeps; ++s) {
        smooth(false);
    }
    if (level + 1 < inv_diag_.size()) {
        op(level, z, az, call);
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(th) if (th > 1))
        for (std::ptrdiff_t i = 0; i < sn; ++i) {
            res[i] = r[i] - az[i];
        }
        const CoarseLevel& c = levels_[level];
        const std::size_t nc = inv_diag_[level + 1].size();
        std::vector<double> rc(nc), zc(nc);
        spmv(c.R, res, rc.data(), call.threads);
        cycle(level + 1, rc.data(), zc.data(), call);
        spmv(c.P, zc.data(), az, call.threads);
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(th) if (th > 1))
        for (std::ptrdiff_t i = 0; i < sn; ++i) {
            z[i] += az[i];
        }
    }
    for (int s = 0; s < kSweeps; ++s) {
        smooth(false);
    }
}

void VCycle::apply(const double* r, double* z, const FineApply& fine_apply, int threads, Workspace& work) const {
    cycle(0, r, z, Call{fine_apply, threads, work});
}

}  // namespace tomofuse::fem::detail
