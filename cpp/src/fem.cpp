// Trilinear hexahedral finite elements on voxel masks, row-wise assembly and
// a deterministic preconditioned conjugate-gradient solver.
#include "tomofuse/fem.hpp"

#include <Eigen/IterativeLinearSolvers>
#include <Eigen/SparseCore>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "fem_detail.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::fem {

namespace detail {

using Matrix8 = std::array<double, 64>;

// Tensor products of the 1-D linear element on [0, 1]:
// mass m = [[1/3, 1/6], [1/6, 1/3]], stiffness k = [[1, -1], [-1, 1]].
Matrix8 make_unit(bool stiffness) {
    const double m[2][2] = {{1.0 / 3.0, 1.0 / 6.0}, {1.0 / 6.0, 1.0 / 3.0}};
    const double k[2][2] = {{1.0, -1.0}, {-1.0, 1.0}};
    Matrix8 out{};
    for (int a = 0; a < 8; ++a) {
        for (int b = 0; b < 8; ++b) {
            const int az = (a >> 2) & 1, ay = (a >> 1) & 1, ax = a & 1;
            const int bz = (b >> 2) & 1, by = (b >> 1) & 1, bx = b & 1;
            double v;
            if (stiffness) {
                v = k[az][bz] * m[ay][by] * m[ax][bx] + m[az][bz] * k[ay][by] * m[ax][bx] +
                    m[az][bz] * m[ay][by] * k[ax][bx];
            } else {
                v = m[az][bz] * m[ay][by] * m[ax][bx];
            }
            out[static_cast<std::size_t>(8 * a + b)] = v;
        }
    }
    return out;
}

// Dot products and norms are summed over fixed blocks in a fixed order: the
// result does not depend on the number of threads.
constexpr std::ptrdiff_t kBlock = 4096;

std::ptrdiff_t num_blocks(std::ptrdiff_t n) { return (n + kBlock - 1) / kBlock; }

double sum_blocks(const std::vector<double>& partial) {
    double s = 0.0;
    for (double v : partial) {
        s += v;
    }
    return s;
}

double dot(const double* a, const double* b, std::ptrdiff_t n, int threads, std::vector<double>& partial) {
    const std::ptrdiff_t nb = num_blocks(n);
    partial.assign(static_cast<std::size_t>(nb), 0.0);
    TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t blk = 0; blk < nb; ++blk) {
        const std::ptrdiff_t lo = blk * kBlock, hi = std::min(n, lo + kBlock);
        double s = 0.0;
        for (std::ptrdiff_t i = lo; i < hi; ++i) {
            s += a[i] * b[i];
        }
        partial[static_cast<std::size_t>(blk)] = s;
    }
    return sum_blocks(partial);
}

inline int popcount(std::uint32_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcount(v);
#else
    int c = 0;
    for (; v != 0; v &= v - 1) {
        ++c;
    }
    return c;
#endif
}

void check_threads(int nthreads) {
    if (nthreads < 0) {
        throw InvalidArgument("nthreads must be >= 0, got " + std::to_string(nthreads));
    }
}

// Vector loops of a few thousand rows are not worth a parallel region (and
// on a busy machine every barrier can cost a time slice): use one thread per
// kRowsPerThread rows at most. Results do not depend on it.
constexpr std::size_t kRowsPerThread = 32768;

int team_size(int nthreads, std::size_t rows) {
    const int threads = resolve_threads(nthreads);
    const auto cap = static_cast<int>(std::max<std::size_t>(1, rows / kRowsPerThread));
    return std::max(1, std::min(threads, cap));
}

void spmv(const CsrPattern& pat, const double* val, const double* x, double* y, int threads) {
    const auto n = static_cast<std::ptrdiff_t>(pat.rows());
    const std::int64_t* ptr = pat.indptr.data();
    const std::int32_t* idx = pat.indices.data();
    TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (std::int64_t p = ptr[i]; p < ptr[i + 1]; ++p) {
            s += val[p] * x[idx[p]];
        }
        y[i] = s;
    }
}

}  // namespace detail

const std::array<double, 64>& unit_mass() noexcept {
    static const detail::Matrix8 m = detail::make_unit(false);
    return m;
}

const std::array<double, 64>& unit_stiffness() noexcept {
    static const detail::Matrix8 k = detail::make_unit(true);
    return k;
}

namespace detail {

// Tables for the 8 elements around a node: element d = 4 dz + 2 dy + dx
// sits at voxel (i-1+dz, j-1+dy, k-1+dx); the node is its local corner
// 7 - d; its corner b is the node at slot slot(d) + slot(b) of the 3x3x3
// neighborhood, slot(x) = 9 xz + 3 xy + xx.
struct Tables {
    double m[8][8], k[8][8];
    int slot[8][8];
    std::uint32_t slots[8];
    std::uint32_t touched[256];  // slots coupled by an occupancy byte
};

const Tables& tables() {
    static const Tables tab = [] {
        Tables t{};
        auto slot_of = [](int x) { return 9 * ((x >> 2) & 1) + 3 * ((x >> 1) & 1) + (x & 1); };
        for (int d = 0; d < 8; ++d) {
            for (int b = 0; b < 8; ++b) {
                t.m[d][b] = unit_mass()[static_cast<std::size_t>(8 * (7 - d) + b)];
                t.k[d][b] = unit_stiffness()[static_cast<std::size_t>(8 * (7 - d) + b)];
                t.slot[d][b] = slot_of(d) + slot_of(b);
                t.slots[d] |= 1u << t.slot[d][b];
            }
        }
        for (int occ = 0; occ < 256; ++occ) {
            for (int d = 0; d < 8; ++d) {
                if ((occ >> d) & 1) {
                    t.touched[occ] |= t.slots[d];
                }
            }
        }
        return t;
    }();
    return tab;
}

// Row values (pattern order) of every occupancy byte for mass * M + stiffness * K,
// summed in the same order as the per-node assembly.
std::vector<double> neighborhood_rows(double cm, double ck) {
    const Tables& tab = tables();
    std::vector<double> rows(256 * 27, 0.0);
    for (int occ = 0; occ < 256; ++occ) {
        double acc[27] = {};
        for (int d = 0; d < 8; ++d) {
            if ((occ >> d) & 1) {
                for (int b = 0; b < 8; ++b) {
                    acc[tab.slot[d][b]] += cm * tab.m[d][b] + ck * tab.k[d][b];
                }
            }
        }
        std::size_t out = static_cast<std::size_t>(occ) * 27;
        for (int s = 0; s < 27; ++s) {
            if ((tab.touched[occ] >> s) & 1u) {
                rows[out++] = acc[s];
            }
        }
    }
    return rows;
}

}  // namespace detail

std::string preconditioner_name(Preconditioner p) {
    switch (p) {
        case Preconditioner::None:
            return "none";
        case Preconditioner::Jacobi:
            return "jacobi";
        case Preconditioner::JacobiConstant:
            return "jacobi+constant";
        case Preconditioner::Cholesky:
            return "cholesky";
        case Preconditioner::Multigrid:
            return "multigrid";
    }
    return "unknown";
}

Preconditioner parse_preconditioner(const std::string& name) {
    if (name == "none") {
        return Preconditioner::None;
    }
    if (name == "jacobi") {
        return Preconditioner::Jacobi;
    }
    if (name == "jacobi+constant") {
        return Preconditioner::JacobiConstant;
    }
    if (name == "cholesky") {
        return Preconditioner::Cholesky;
    }
    if (name == "multigrid") {
        return Preconditioner::Multigrid;
    }
    throw InvalidArgument("preconditioner must be 'none', 'jacobi', 'jacobi+constant', 'cholesky' or 'multigrid', got '" +
                          name + "'");
}

// ---------------------------------------------------------------------------
// SparseOperator
// ---------------------------------------------------------------------------

struct SparseOperator::Factor {
    Eigen::IncompleteCholesky<double, Eigen::Lower, Eigen::AMDOrdering<int>> ic;
};

// The preconditioners built on first use: under the lock, once; read-only afterwards (a
// solve holds its own reference, so they are never changed while one runs).
struct SparseOperator::Preconditioners {
    std::mutex mutex;
    std::shared_ptr<const Factor> factor;
    std::shared_ptr<const detail::VCycle> vcycle;
};

SparseOperator::SparseOperator(std::shared_ptr<const CsrPattern> pattern, std::vector<double> values)
    : pattern_(std::move(pattern)), values_(std::move(values)), preconditioners_(std::make_unique<Preconditioners>()) {
    if (!pattern_) {
        throw InvalidArgument("SparseOperator: pattern must not be null");
    }
    if (values_.size() != pattern_->nnz()) {
        throw InvalidArgument("SparseOperator: values must have one entry per pattern entry (" +
                              std::to_string(pattern_->nnz()) + "), got " + std::to_string(values_.size()));
    }
}

SparseOperator::SparseOperator(std::shared_ptr<const CsrPattern> pattern, NeighborhoodTable table)
    : pattern_(std::move(pattern)), table_(std::move(table)), preconditioners_(std::make_unique<Preconditioners>()) {
    if (!pattern_ || !table_.occupancy) {
        throw InvalidArgument("SparseOperator: pattern and occupancy must not be null");
    }
    if (table_.occupancy->size() != pattern_->rows() || table_.rows.size() != 256 * 27) {
        throw InvalidArgument("SparseOperator: the neighborhood table does not match the pattern");
    }
}

SparseOperator::~SparseOperator() = default;
SparseOperator::SparseOperator(SparseOperator&&) noexcept = default;
SparseOperator& SparseOperator::operator=(SparseOperator&&) noexcept = default;

void SparseOperator::spmv(const double* x, double* y, int threads) const {
    if (!table_values()) {
        detail::spmv(*pattern_, values_.data(), x, y, threads);
        return;
    }
    const auto n = static_cast<std::ptrdiff_t>(rows());
    const std::int64_t* ptr = pattern_->indptr.data();
    const std::int32_t* idx = pattern_->indices.data();
    const std::uint8_t* occ = table_.occupancy->data();
    const double* tab = table_.rows.data();
    TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        const double* v = tab + 27 * static_cast<std::size_t>(occ[i]) - ptr[i];
        double s = 0.0;
        for (std::int64_t p = ptr[i]; p < ptr[i + 1]; ++p) {
            s += v[p] * x[idx[p]];
        }
        y[i] = s;
    }
}

std::vector<double> SparseOperator::values() const {
    if (!table_values()) {
        return values_;
    }
    const std::size_t n = rows();
    std::vector<double> out(pattern_->nnz());
    for (std::size_t i = 0; i < n; ++i) {
        const auto b = static_cast<std::size_t>(pattern_->indptr[i]);
        const auto len = static_cast<std::size_t>(pattern_->indptr[i + 1]) - b;
        const double* v = table_.rows.data() + 27 * static_cast<std::size_t>((*table_.occupancy)[i]);
        std::copy(v, v + len, out.begin() + static_cast<std::ptrdiff_t>(b));
    }
    return out;
}

void SparseOperator::apply(const double* x, double* y, int nthreads) const {
    if (!pattern_) {
        throw Error("SparseOperator::apply: this operator was moved from");
    }
    detail::check_threads(nthreads);
    spmv(x, y, detail::team_size(nthreads, rows()));
}

std::vector<double> SparseOperator::diagonal() const {
    const std::size_t n = rows();
    std::vector<double> d(n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        const auto b = pattern_->indices.begin() + pattern_->indptr[i];
        const auto e = pattern_->indices.begin() + pattern_->indptr[i + 1];
        const auto it = std::lower_bound(b, e, static_cast<std::int32_t>(i));
        if (it != e && *it == static_cast<std::int32_t>(i)) {
            if (table_values()) {
                d[i] = table_.rows[27 * static_cast<std::size_t>((*table_.occupancy)[i]) +
                                   static_cast<std::size_t>(it - b)];
            } else {
                d[i] = values_[static_cast<std::size_t>(it - pattern_->indices.begin())];
            }
        }
    }
    return d;
}

std::shared_ptr<const SparseOperator::Factor> SparseOperator::cholesky_factor() const {
    std::lock_guard<std::mutex> lock(preconditioners_->mutex);
    if (preconditioners_->factor) {
        return preconditioners_->factor;
    }
    const auto n = static_cast<Eigen::Index>(rows());
    if (pattern_->nnz() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw InvalidArgument("solve: the matrix is too large for the incomplete Cholesky preconditioner");
    }
    std::vector<int> outer(pattern_->indptr.begin(), pattern_->indptr.end());
    const std::vector<double> vals = values();
    Eigen::Map<const Eigen::SparseMatrix<double, Eigen::RowMajor, int>> csr(
        n, n, static_cast<Eigen::Index>(pattern_->nnz()), outer.data(), pattern_->indices.data(),
        vals.data());
    // A is symmetric: its CSR arrays are also its CSC arrays.
    Eigen::SparseMatrix<double, Eigen::ColMajor, int> csc = csr.transpose();
    auto f = std::make_unique<Factor>();
    f->ic.compute(csc);
    if (f->ic.info() != Eigen::Success) {
        throw Error("solve: incomplete Cholesky factorization failed (matrix not positive definite?)");
    }
    preconditioners_->factor = std::move(f);
    return preconditioners_->factor;
}

std::shared_ptr<const detail::VCycle> SparseOperator::multigrid(int threads) const {
    if (!table_values() || !table_.hierarchy) {
        throw InvalidArgument("solve: preconditioner 'multigrid' needs an operator made by VoxelMesh.operator() "
                              "without element_coefficient and node_diagonal");
    }
    std::lock_guard<std::mutex> lock(preconditioners_->mutex);
    if (preconditioners_->vcycle) {
        return preconditioners_->vcycle;
    }
    // Gershgorin bound of lambda_max(D^-1 A) over the neighborhoods present.
    bool present[256] = {};
    for (std::uint8_t o : *table_.occupancy) {
        present[o] = true;
    }
    double bound = 0.0;
    const detail::Tables& tab = detail::tables();
    for (int o = 0; o < 256; ++o) {
        if (!present[o]) {
            continue;
        }
        const double* v = table_.rows.data() + 27 * o;
        const int len = detail::popcount(tab.touched[o]);
        const int k13 = detail::popcount(tab.touched[o] & ((1u << 13) - 1u));
        double sum = 0.0;
        for (int q = 0; q < len; ++q) {
            sum += std::abs(v[q]);
        }
        bound = std::max(bound, sum / v[k13]);
    }
    preconditioners_->vcycle = std::make_shared<const detail::VCycle>(
        table_.hierarchy, table_.mass, table_.stiffness, diagonal(), bound,
        [this](const double* in, double* out, int th) { spmv(in, out, th); }, threads);
    return preconditioners_->vcycle;
}

CgResult SparseOperator::solve(const double* b, double* x, const CgOptions& options) const {
    if (!pattern_ || !preconditioners_) {
        throw Error("SparseOperator::solve: this operator was moved from");
    }
    detail::check_threads(options.nthreads);
    if (!(options.rtol >= 0) || !(options.atol >= 0)) {
        throw InvalidArgument("solve: rtol and atol must be >= 0");
    }
    if (options.max_iterations < 0) {
        throw InvalidArgument("solve: max_iterations must be >= 0");
    }
    const int threads = detail::team_size(options.nthreads, rows());
    const auto n = static_cast<std::ptrdiff_t>(rows());
    std::vector<double> partial;
    CgResult res;
    res.rhs_norm = std::sqrt(detail::dot(b, b, n, threads, partial));
    if (res.rhs_norm == 0.0) {
        std::fill(x, x + n, 0.0);
        res.converged = true;
        return res;
    }
    const double tol = std::max(options.atol, options.rtol * res.rhs_norm);

    // Preconditioner.
    std::vector<double> inv_diag;
    double inv_total = 0.0;  // 1 / (1^T A 1) for the constant-vector correction
    if (options.preconditioner == Preconditioner::JacobiConstant) {
        double total = 0.0;
        for (double v : values()) {
            total += v;
        }
        if (!(total > 0)) {
            throw InvalidArgument("solve: 'jacobi+constant' needs 1^T A 1 > 0, got " + std::to_string(total));
        }
        inv_total = 1.0 / total;
    }
    if (options.preconditioner == Preconditioner::Jacobi || options.preconditioner == Preconditioner::JacobiConstant) {
        inv_diag = diagonal();
        for (std::size_t i = 0; i < inv_diag.size(); ++i) {
            if (!(inv_diag[i] > 0)) {
                throw InvalidArgument("solve: the Jacobi preconditioner needs a positive diagonal; row " +
                                      std::to_string(i) + " has " + std::to_string(inv_diag[i]));
            }
            inv_diag[i] = 1.0 / inv_diag[i];
        }
    }
    const std::shared_ptr<const Factor> factor =
        options.preconditioner == Preconditioner::Cholesky ? cholesky_factor() : nullptr;
    const std::shared_ptr<const detail::VCycle> vcycle =
        options.preconditioner == Preconditioner::Multigrid ? multigrid(threads) : nullptr;
    detail::VCycle::Workspace work = vcycle ? vcycle->workspace() : detail::VCycle::Workspace();
    const detail::VCycle::FineApply fine = [this](const double* in, double* out, int th) { spmv(in, out, th); };
    std::vector<double> ones;
    if (options.preconditioner == Preconditioner::JacobiConstant) {
        ones.assign(static_cast<std::size_t>(n), 1.0);
    }
    auto precondition = [&](const std::vector<double>& r, std::vector<double>& z) {
        switch (options.preconditioner) {
            case Preconditioner::None:
                std::copy(r.begin(), r.end(), z.begin());
                break;
            case Preconditioner::Jacobi: {
                const double* d = inv_diag.data();
                TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
                for (std::ptrdiff_t i = 0; i < n; ++i) {
                    z[static_cast<std::size_t>(i)] = d[i] * r[static_cast<std::size_t>(i)];
                }
                break;
            }
            case Preconditioner::JacobiConstant: {
                const double c = inv_total * detail::dot(r.data(), ones.data(), n, threads, partial);
                const double* d = inv_diag.data();
                TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
                for (std::ptrdiff_t i = 0; i < n; ++i) {
                    z[static_cast<std::size_t>(i)] = d[i] * r[static_cast<std::size_t>(i)] + c;
                }
                break;
            }
            case Preconditioner::Multigrid:
                vcycle->apply(r.data(), z.data(), fine, threads, work);
                break;
            case Preconditioner::Cholesky: {
                Eigen::Map<const Eigen::VectorXd> rv(r.data(), n);
                Eigen::Map<Eigen::VectorXd> zv(z.data(), n);
                zv = factor->ic.solve(rv);
                break;
            }
        }
    };

    const auto un = static_cast<std::size_t>(n);
    std::vector<double> r(un), z(un), p(un), q(un);
    spmv(x, q.data(), threads);
    TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t i = 0; i < n; ++i) {
        r[static_cast<std::size_t>(i)] = b[i] - q[static_cast<std::size_t>(i)];
    }
    double rnorm = std::sqrt(detail::dot(r.data(), r.data(), n, threads, partial));
    res.residual_norm = rnorm;
    if (rnorm <= tol) {
        res.converged = true;
        return res;
    }
    precondition(r, z);
    std::copy(z.begin(), z.end(), p.begin());
    double rz = detail::dot(r.data(), z.data(), n, threads, partial);
    const std::ptrdiff_t nb = detail::num_blocks(n);
    std::vector<double> partial_rr(static_cast<std::size_t>(nb));
    for (int it = 1; it <= options.max_iterations; ++it) {
        spmv(p.data(), q.data(), threads);
        const double pq = detail::dot(p.data(), q.data(), n, threads, partial);
        if (!(pq > 0)) {
            // A p = 0 or indefinite: nothing more to gain (semi-definite system).
            res.iterations = it - 1;
            break;
        }
        const double alpha = rz / pq;
        // x += alpha p, r -= alpha q, |r|^2 over fixed blocks.
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
        for (std::ptrdiff_t blk = 0; blk < nb; ++blk) {
            const std::ptrdiff_t lo = blk * detail::kBlock, hi = std::min(n, lo + detail::kBlock);
            double s = 0.0;
            for (std::ptrdiff_t i = lo; i < hi; ++i) {
                const auto u = static_cast<std::size_t>(i);
                x[i] += alpha * p[u];
                r[u] -= alpha * q[u];
                s += r[u] * r[u];
            }
            partial_rr[static_cast<std::size_t>(blk)] = s;
        }
        rnorm = std::sqrt(detail::sum_blocks(partial_rr));
        res.iterations = it;
        res.residual_norm = rnorm;
        if (rnorm <= tol) {
            res.converged = true;
            break;
        }
        precondition(r, z);
        const double rz_new = detail::dot(r.data(), z.data(), n, threads, partial);
        const double beta = rz_new / rz;
        rz = rz_new;
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
        for (std::ptrdiff_t i = 0; i < n; ++i) {
            const auto u = static_cast<std::size_t>(i);
            p[u] = z[u] + beta * p[u];
        }
    }
    return res;
}

// ---------------------------------------------------------------------------
// VoxelMesh
// ---------------------------------------------------------------------------

VoxelMesh::VoxelMesh(const std::uint8_t* mask, const Shape3& shape, double voxel_size, int nthreads)
    : shape_(shape), h_(voxel_size) {
    detail::check_threads(nthreads);
    if (mask == nullptr) {
        throw InvalidArgument("VoxelMesh: mask must not be null");
    }
    if (!(voxel_size > 0) || !std::isfinite(voxel_size)) {
        throw InvalidArgument("VoxelMesh: voxel_size must be a positive length, got " + std::to_string(voxel_size));
    }
    for (std::size_t s : shape) {
        if (s == 0) {
            throw InvalidArgument("VoxelMesh: mask must not be empty");
        }
    }
    const std::size_t nz = shape[0], ny = shape[1], nx = shape[2];
    const std::size_t n_vox = nz * ny * nx;
    const int threads = detail::team_size(nthreads, n_vox);
    const std::size_t gz = nz + 1, gy = ny + 1, gx = nx + 1;
    const std::size_t n_grid = gz * gy * gx;

    // Elements: mask voxels in C order.
    voxel_element_.assign(n_vox, -1);
    std::size_t n_el = 0;
    for (std::size_t v = 0; v < n_vox; ++v) {
        if (mask[v] != 0) {
            if (n_el >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
                throw InvalidArgument("VoxelMesh: too many elements for 32-bit ids");
            }
            voxel_element_[v] = static_cast<std::int32_t>(n_el++);
        }
    }
    if (n_el == 0) {
        throw InvalidArgument("VoxelMesh: mask has no nonzero voxel");
    }
    element_voxel_.resize(n_el);
    for (std::size_t v = 0; v < n_vox; ++v) {
        if (voxel_element_[v] >= 0) {
            element_voxel_[static_cast<std::size_t>(voxel_element_[v])] = static_cast<std::int64_t>(v);
        }
    }

    // Nodes: grid points touched by an element, numbered in C order. Each
    // thread marks its own grid planes (node-centric: no shared writes).
    auto in_mask = [&](std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t k) {
        if (i < 0 || j < 0 || k < 0 || i >= static_cast<std::ptrdiff_t>(nz) ||
            j >= static_cast<std::ptrdiff_t>(ny) || k >= static_cast<std::ptrdiff_t>(nx)) {
            return false;
        }
        return mask[(static_cast<std::size_t>(i) * ny + static_cast<std::size_t>(j)) * nx +
                    static_cast<std::size_t>(k)] != 0;
    };
    std::vector<std::int32_t> used(n_grid, 0);
    std::vector<std::size_t> plane_count(gz, 0);
    TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads))
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(gz); ++i) {
        std::size_t count = 0;
        for (std::ptrdiff_t j = 0; j < static_cast<std::ptrdiff_t>(gy); ++j) {
            for (std::ptrdiff_t k = 0; k < static_cast<std::ptrdiff_t>(gx); ++k) {
                bool touched = false;
                for (int d = 0; d < 8 && !touched; ++d) {
                    touched = in_mask(i - 1 + ((d >> 2) & 1), j - 1 + ((d >> 1) & 1), k - 1 + (d & 1));
                }
                if (touched) {
                    used[(static_cast<std::size_t>(i) * gy + static_cast<std::size_t>(j)) * gx +
                         static_cast<std::size_t>(k)] = 1;
                    ++count;
                }
            }
        }
        plane_count[static_cast<std::size_t>(i)] = count;
    }
    std::vector<std::size_t> plane_start(gz + 1, 0);
    for (std::size_t i = 0; i < gz; ++i) {
        plane_start[i + 1] = plane_start[i] + plane_count[i];
    }
    const std::size_t n_nodes = plane_start[gz];
    if (n_nodes >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
        throw InvalidArgument("VoxelMesh: too many nodes for 32-bit ids");
    }
    node_id_.assign(n_grid, -1);
    node_grid_.resize(n_nodes);
    TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads))
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(gz); ++i) {
        std::size_t next = plane_start[static_cast<std::size_t>(i)];
        const std::size_t base = static_cast<std::size_t>(i) * gy * gx;
        for (std::size_t g = base; g < base + gy * gx; ++g) {
            if (used[g] != 0) {
                node_id_[g] = static_cast<std::int32_t>(next);
                node_grid_[next] = static_cast<std::int64_t>(g);
                ++next;
            }
        }
    }

    // Pattern: node n couples to the nodes at grid offsets (-1..1)^3 that
    // share an element with it. Count, prefix-sum, fill; rows are owned.
    auto pattern = std::make_shared<CsrPattern>();
    pattern->indptr.assign(n_nodes + 1, 0);
    const auto nn = static_cast<std::ptrdiff_t>(n_nodes);
    // Occupancy byte of every node (bit d: the voxel at offset d is an element).
    auto occupancy = std::make_shared<std::vector<std::uint8_t>>(n_nodes);
    const detail::Tables& tab = detail::tables();
    TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t n = 0; n < nn; ++n) {
        const auto g = static_cast<std::size_t>(node_grid_[static_cast<std::size_t>(n)]);
        const auto i = static_cast<std::ptrdiff_t>(g / (gy * gx));
        const auto j = static_cast<std::ptrdiff_t>((g / gx) % gy);
        const auto k = static_cast<std::ptrdiff_t>(g % gx);
        unsigned occ = 0;
        for (int d = 0; d < 8; ++d) {
            if (in_mask(i - 1 + ((d >> 2) & 1), j - 1 + ((d >> 1) & 1), k - 1 + (d & 1))) {
                occ |= 1u << d;
            }
        }
        (*occupancy)[static_cast<std::size_t>(n)] = static_cast<std::uint8_t>(occ);
        pattern->indptr[static_cast<std::size_t>(n) + 1] = detail::popcount(tab.touched[occ]);
    }
    for (std::size_t n = 0; n < n_nodes; ++n) {
        pattern->indptr[n + 1] += pattern->indptr[n];
    }
    pattern->indices.resize(static_cast<std::size_t>(pattern->indptr[n_nodes]));
    const auto sgx = static_cast<std::ptrdiff_t>(gx), sgy = static_cast<std::ptrdiff_t>(gy);
    TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t n = 0; n < nn; ++n) {
        const std::uint32_t touched = tab.touched[(*occupancy)[static_cast<std::size_t>(n)]];
        const std::ptrdiff_t g = node_grid_[static_cast<std::size_t>(n)];
        std::int64_t out = pattern->indptr[static_cast<std::size_t>(n)];
        for (int s = 0; s < 27; ++s) {
            if ((touched >> s) & 1u) {
                const std::ptrdiff_t off = ((s / 9) - 1) * sgy * sgx + (((s / 3) % 3) - 1) * sgx + ((s % 3) - 1);
                pattern->indices[static_cast<std::size_t>(out++)] = node_id_[static_cast<std::size_t>(g + off)];
            }
        }
    }
    occupancy_ = std::move(occupancy);
    hierarchy_ = std::make_shared<const detail::HierarchySource>(std::vector<std::uint8_t>(mask, mask + n_vox), shape_, h_);
    pattern_ = std::move(pattern);
}

std::vector<std::int32_t> VoxelMesh::element_nodes() const {
    const std::size_t ny = shape_[1], nx = shape_[2];
    const std::size_t gy = ny + 1, gx = nx + 1;
    std::vector<std::int32_t> out(num_elements() * 8);
    for (std::size_t e = 0; e < num_elements(); ++e) {
        const auto v = static_cast<std::size_t>(element_voxel_[e]);
        const std::size_t i = v / (ny * nx), j = (v / nx) % ny, k = v % nx;
        for (std::size_t a = 0; a < 8; ++a) {
            const std::size_t g = ((i + ((a >> 2) & 1)) * gy + (j + ((a >> 1) & 1))) * gx + (k + (a & 1));
            out[8 * e + a] = node_id_[g];
        }
    }
    return out;
}

std::vector<double> VoxelMesh::assemble(double mass, double stiffness, const double* element_coefficient,
                                        const double* node_diagonal, int nthreads) const {
    std::vector<double> values(pattern_->nnz());
    assemble_into(mass, stiffness, element_coefficient, node_diagonal, values.data(), nthreads);
    return values;
}

void VoxelMesh::assemble_into(double mass, double stiffness, const double* element_coefficient,
                              const double* node_diagonal, double* values, int nthreads) const {
    detail::check_threads(nthreads);
    if (!std::isfinite(mass) || !std::isfinite(stiffness)) {
        throw InvalidArgument("assemble: mass and stiffness factors must be finite");
    }
    const int threads = detail::team_size(nthreads, num_nodes());
    const CsrPattern& pat = *pattern_;
    const std::size_t nz = shape_[0], ny = shape_[1], nx = shape_[2];
    const std::size_t gy = ny + 1, gx = nx + 1;
    const detail::Tables& tab = detail::tables();
    const double cm = mass * h_ * h_ * h_;
    const double ck = stiffness * h_;
    const auto nn = static_cast<std::ptrdiff_t>(num_nodes());
    if (element_coefficient == nullptr) {
        // Every row is its neighborhood's row of the table.
        const std::vector<double> rows = detail::neighborhood_rows(cm, ck);
        const std::uint8_t* occ = occupancy_->data();
        TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1))
        for (std::ptrdiff_t n = 0; n < nn; ++n) {
            const auto b = static_cast<std::size_t>(pat.indptr[static_cast<std::size_t>(n)]);
            const auto e = static_cast<std::size_t>(pat.indptr[static_cast<std::size_t>(n) + 1]);
            const double* v = rows.data() + 27 * static_cast<std::size_t>(occ[n]);
            for (std::size_t p = b; p < e; ++p) {
                values[p] = v[p - b];
            }
            if (node_diagonal != nullptr) {
                // the diagonal is the row's entry for slot 13
                const std::uint32_t below = tab.touched[occ[n]] & ((1u << 13) - 1u);
                values[b + static_cast<std::size_t>(detail::popcount(below))] += node_diagonal[n];
            }
        }
        return;
    }
    const auto snz = static_cast<std::ptrdiff_t>(nz), sny = static_cast<std::ptrdiff_t>(ny),
               snx = static_cast<std::ptrdiff_t>(nx);
    TOMOFUSE_OMP(parallel for schedule(static, 1024) num_threads(threads) if (threads > 1))
    for (std::ptrdiff_t n = 0; n < nn; ++n) {
        const auto g = static_cast<std::size_t>(node_grid_[static_cast<std::size_t>(n)]);
        const auto i = static_cast<std::ptrdiff_t>(g / (gy * gx));
        const auto j = static_cast<std::ptrdiff_t>((g / gx) % gy);
        const auto k = static_cast<std::ptrdiff_t>(g % gx);
        double acc[27] = {};
        std::uint32_t touched = 0;
        for (int d = 0; d < 8; ++d) {
            const std::ptrdiff_t vi = i - 1 + ((d >> 2) & 1), vj = j - 1 + ((d >> 1) & 1), vk = k - 1 + (d & 1);
            if (vi < 0 || vj < 0 || vk < 0 || vi >= snz || vj >= sny || vk >= snx) {
                continue;
            }
            const std::int32_t e = voxel_element_[static_cast<std::size_t>((vi * sny + vj) * snx + vk)];
            if (e < 0) {
                continue;
            }
            const double kc = element_coefficient != nullptr ? ck * element_coefficient[e] : ck;
            for (int b = 0; b < 8; ++b) {
                acc[tab.slot[d][b]] += cm * tab.m[d][b] + kc * tab.k[d][b];
            }
            touched |= tab.slots[d];
        }
        if (node_diagonal != nullptr) {
            acc[13] += node_diagonal[n];  // slot 13 = offset (0, 0, 0)
        }
        std::int64_t out = pat.indptr[static_cast<std::size_t>(n)];
        for (int s = 0; s < 27; ++s) {
            if ((touched >> s) & 1u) {
                values[static_cast<std::size_t>(out++)] = acc[s];
            }
        }
    }
}

SparseOperator VoxelMesh::make_operator(double mass, double stiffness, const double* element_coefficient,
                                        const double* node_diagonal, int nthreads) const {
    if (element_coefficient == nullptr && node_diagonal == nullptr) {
        detail::check_threads(nthreads);
        if (!std::isfinite(mass) || !std::isfinite(stiffness)) {
            throw InvalidArgument("make_operator: mass and stiffness factors must be finite");
        }
        return SparseOperator(pattern_, NeighborhoodTable{occupancy_,
                                                           detail::neighborhood_rows(mass * h_ * h_ * h_, stiffness * h_),
                                                           hierarchy_, mass, stiffness});
    }
    return SparseOperator(pattern_, assemble(mass, stiffness, element_coefficient, node_diagonal, nthreads));
}

std::vector<double> VoxelMesh::lumped_mass() const {
    std::vector<double> out(num_nodes(), 0.0);
    const double share = h_ * h_ * h_ / 8.0;
    const std::size_t ny = shape_[1], nx = shape_[2];
    const std::size_t gy = ny + 1, gx = nx + 1;
    for (std::size_t e = 0; e < num_elements(); ++e) {
        const auto v = static_cast<std::size_t>(element_voxel_[e]);
        const std::size_t i = v / (ny * nx), j = (v / nx) % ny, k = v % nx;
        for (std::size_t a = 0; a < 8; ++a) {
            const std::size_t g = ((i + ((a >> 2) & 1)) * gy + (j + ((a >> 1) & 1))) * gx + (k + (a & 1));
            out[static_cast<std::size_t>(node_id_[g])] += share;
        }
    }
    return out;
}

}  // namespace tomofuse::fem
