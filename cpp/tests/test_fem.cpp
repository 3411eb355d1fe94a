// tomofuse::fem: assembly against a dense sum of element matrices, products and solves against a
// dense reference, every preconditioner; moves and lifetimes of an operator; identical bits at
// any thread count; one operator solving from several threads at once.
#include <cmath>
#include <optional>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/fem.hpp"

namespace {

using tomofuse::fem::CgOptions;
using tomofuse::fem::Preconditioner;
using tomofuse::fem::SparseOperator;
using tomofuse::fem::VoxelMesh;

std::vector<std::uint8_t> mask(std::size_t nz, std::size_t ny, std::size_t nx, unsigned seed) {
    const auto r = tomofuse::test::random_reals(nz * ny * nx, seed, 0.0, 1.0);
    std::vector<std::uint8_t> m(r.size());
    for (std::size_t i = 0; i < m.size(); ++i) {
        m[i] = r[i] < 0.85 ? 1 : 0;
    }
    m[0] = 1;
    return m;
}

// Dense mass * M + stiffness * K (+ diag) summed element by element.
std::vector<double> dense(const VoxelMesh& mesh, double mass, double stiffness, const double* coef,
                          const double* diag) {
    const std::size_t n = mesh.num_nodes();
    const double h = mesh.voxel_size();
    std::vector<double> a(n * n, 0.0);
    const auto nodes = mesh.element_nodes();
    const auto& mu = tomofuse::fem::unit_mass();
    const auto& ku = tomofuse::fem::unit_stiffness();
    for (std::size_t e = 0; e < mesh.num_elements(); ++e) {
        const double k = coef != nullptr ? coef[e] : 1.0;
        for (std::size_t i = 0; i < 8; ++i) {
            for (std::size_t j = 0; j < 8; ++j) {
                const auto r = static_cast<std::size_t>(nodes[8 * e + i]);
                const auto c = static_cast<std::size_t>(nodes[8 * e + j]);
                a[r * n + c] += mass * h * h * h * mu[8 * i + j] + stiffness * k * h * ku[8 * i + j];
            }
        }
    }
    if (diag != nullptr) {
        for (std::size_t i = 0; i < n; ++i) {
            a[i * n + i] += diag[i];
        }
    }
    return a;
}

std::vector<double> csr_to_dense(const SparseOperator& op) {
    const std::size_t n = op.rows();
    const auto values = op.values();
    std::vector<double> a(n * n, 0.0);
    const auto& p = op.pattern();
    for (std::size_t r = 0; r < n; ++r) {
        for (auto q = p.indptr[r]; q < p.indptr[r + 1]; ++q) {
            a[r * n + static_cast<std::size_t>(p.indices[static_cast<std::size_t>(q)])] = values[static_cast<std::size_t>(q)];
        }
    }
    return a;
}

// Gaussian elimination with partial pivoting.
std::vector<double> dense_solve(std::vector<double> a, std::vector<double> b) {
    const std::size_t n = b.size();
    for (std::size_t c = 0; c < n; ++c) {
        std::size_t piv = c;
        for (std::size_t r = c + 1; r < n; ++r) {
            if (std::abs(a[r * n + c]) > std::abs(a[piv * n + c])) {
                piv = r;
            }
        }
        for (std::size_t j = 0; j < n; ++j) {
            std::swap(a[c * n + j], a[piv * n + j]);
        }
        std::swap(b[c], b[piv]);
        for (std::size_t r = c + 1; r < n; ++r) {
            const double f = a[r * n + c] / a[c * n + c];
            for (std::size_t j = c; j < n; ++j) {
                a[r * n + j] -= f * a[c * n + j];
            }
            b[r] -= f * b[c];
        }
    }
    std::vector<double> x(n);
    for (std::size_t r = n; r-- > 0;) {
        double s = b[r];
        for (std::size_t j = r + 1; j < n; ++j) {
            s -= a[r * n + j] * x[j];
        }
        x[r] = s / a[r * n + r];
    }
    return x;
}

TEST(Fem, AssemblyAndProductsMatchTheDenseSumOfElementMatrices) {
    const auto m = mask(3, 4, 5, 61);
    const VoxelMesh mesh(m.data(), {3, 4, 5}, 2e-6, 1);
    const auto coef = tomofuse::test::random_reals(mesh.num_elements(), 62, 0.5, 2.0);
    const auto diag = tomofuse::test::random_reals(mesh.num_nodes(), 63, 0.0, 1e-3);
    for (const bool with_data : {false, true}) {
        const double* c = with_data ? coef.data() : nullptr;
        const double* d = with_data ? diag.data() : nullptr;
        const SparseOperator op = mesh.make_operator(1e6, 2.0, c, d, 2);
        EXPECT_EQ(op.table_values(), !with_data);
        const auto ref = dense(mesh, 1e6, 2.0, c, d);
        EXPECT_LT(tomofuse::test::rel_error(csr_to_dense(op), ref), 1e-14);
        const auto x = tomofuse::test::random_reals(op.rows(), 64);
        std::vector<double> y(op.rows()), yref(op.rows(), 0.0);
        op.apply(x.data(), y.data(), 2);
        for (std::size_t r = 0; r < op.rows(); ++r) {
            for (std::size_t j = 0; j < op.rows(); ++j) {
                yref[r] += ref[r * op.rows() + j] * x[j];
            }
        }
        EXPECT_LT(tomofuse::test::rel_error(y, yref), 1e-13);
    }
}

TEST(Fem, EveryPreconditionerSolvesToTheDenseSolution) {
    const auto m = mask(4, 4, 5, 65);
    const VoxelMesh mesh(m.data(), {4, 4, 5}, 1.0, 1);
    const SparseOperator op = mesh.make_operator(0.5, 1.0);
    const auto b = tomofuse::test::random_reals(op.rows(), 66);
    const auto ref = dense_solve(csr_to_dense(op), b);
    for (const Preconditioner pc : {Preconditioner::None, Preconditioner::Jacobi, Preconditioner::JacobiConstant,
                                    Preconditioner::Cholesky, Preconditioner::Multigrid}) {
        std::vector<double> x(op.rows(), 0.0);
        CgOptions opt;
        opt.preconditioner = pc;
        opt.rtol = 1e-12;
        const auto res = op.solve(b.data(), x.data(), opt);
        EXPECT_TRUE(res.converged) << tomofuse::fem::preconditioner_name(pc);
        EXPECT_LT(tomofuse::test::rel_error(x, ref), 1e-9) << tomofuse::fem::preconditioner_name(pc);
    }
}

// A mesh with coarse multigrid levels (more than 3000 nodes).
struct Big {
    std::vector<std::uint8_t> m = mask(15, 16, 17, 67);
    VoxelMesh mesh{m.data(), {15, 16, 17}, 1e-6, 0};
    std::vector<double> b = tomofuse::test::random_reals(mesh.num_nodes(), 68);
};

std::vector<double> solve(const SparseOperator& op, const std::vector<double>& b, Preconditioner pc, int threads) {
    std::vector<double> x(b.size(), 0.0);
    CgOptions opt;
    opt.preconditioner = pc;
    opt.rtol = 1e-9;
    opt.nthreads = threads;
    const auto res = op.solve(b.data(), x.data(), opt);
    EXPECT_TRUE(res.converged);
    return x;
}

double residual(const SparseOperator& op, const std::vector<double>& x, const std::vector<double>& b) {
    std::vector<double> ax(b.size());
    op.apply(x.data(), ax.data(), 1);
    double r = 0.0, nb = 0.0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        r += (b[i] - ax[i]) * (b[i] - ax[i]);
        nb += b[i] * b[i];
    }
    return std::sqrt(r / nb);
}

TEST(Fem, SolvesGiveTheSameBitsForAnyThreadCountInAnyOrder) {
    const Big big;
    const SparseOperator op = big.mesh.make_operator(1e12, 1.0);
    for (const Preconditioner pc : {Preconditioner::Jacobi, Preconditioner::Cholesky, Preconditioner::Multigrid}) {
        const auto x1 = solve(op, big.b, pc, 1);  // the first solve builds the preconditioner
        EXPECT_LT(residual(op, x1, big.b), 2e-9);
        const auto x2 = solve(op, big.b, pc, 2);
        const auto x3 = solve(op, big.b, pc, 3);
        EXPECT_TRUE(tomofuse::test::same_bits(x1, x2)) << tomofuse::fem::preconditioner_name(pc);
        EXPECT_TRUE(tomofuse::test::same_bits(x1, x3)) << tomofuse::fem::preconditioner_name(pc);
    }
}

TEST(Fem, AnOperatorMovedAfterItsFirstSolveSolvesTheSame) {
    const Big big;
    for (const Preconditioner pc : {Preconditioner::Multigrid, Preconditioner::Cholesky}) {
        std::optional<SparseOperator> first(big.mesh.make_operator(1e12, 1.0));
        const auto before = solve(*first, big.b, pc, 2);  // builds the preconditioner inside `first`
        SparseOperator second(std::move(*first));
        first.reset();  // the moved-from operator is gone
        EXPECT_TRUE(tomofuse::test::same_bits(solve(second, big.b, pc, 1), before));
        SparseOperator third(big.mesh.make_operator(1.0, 1.0));
        third = std::move(second);
        EXPECT_TRUE(tomofuse::test::same_bits(solve(third, big.b, pc, 2), before));
    }
}

TEST(Fem, AnOperatorOutlivesItsMesh) {
    std::optional<Big> big(std::in_place);
    const auto b = big->b;
    const SparseOperator op = big->mesh.make_operator(1e12, 1.0);
    big.reset();
    const auto x = solve(op, b, Preconditioner::Multigrid, 2);
    EXPECT_LT(residual(op, x, b), 2e-9);
}

TEST(Fem, OneOperatorSolvesFromSeveralThreadsAtOnce) {
    const Big big;
    for (const Preconditioner pc : {Preconditioner::Multigrid, Preconditioner::Cholesky, Preconditioner::Jacobi}) {
        const SparseOperator op = big.mesh.make_operator(1e12, 1.0);  // nothing built yet: the threads race to build
        const auto serial = solve(big.mesh.make_operator(1e12, 1.0), big.b, pc, 1);
        std::vector<std::vector<double>> results(4);
        std::vector<std::thread> threads;
        for (std::size_t t = 0; t < results.size(); ++t) {
            threads.emplace_back([&, t] { results[t] = solve(op, big.b, pc, 1 + static_cast<int>(t % 2)); });
        }
        for (auto& th : threads) {
            th.join();
        }
        for (const auto& r : results) {
            EXPECT_TRUE(tomofuse::test::same_bits(r, serial)) << tomofuse::fem::preconditioner_name(pc);
        }
    }
}

TEST(Fem, BadArgumentsThrow) {
    const auto m = mask(2, 2, 2, 69);
    EXPECT_THROW(VoxelMesh(m.data(), {2, 2, 2}, -1.0), tomofuse::InvalidArgument);
    EXPECT_THROW(VoxelMesh(m.data(), {0, 2, 2}, 1.0), tomofuse::InvalidArgument);
    const VoxelMesh mesh(m.data(), {2, 2, 2}, 1.0);
    SparseOperator op = mesh.make_operator(1.0, 1.0);
    std::vector<double> b(op.rows(), 1.0), x(op.rows(), 0.0);
    CgOptions opt;
    opt.nthreads = -1;
    EXPECT_THROW(op.solve(b.data(), x.data(), opt), tomofuse::InvalidArgument);
    const SparseOperator with_data = mesh.make_operator(1.0, 1.0, nullptr, b.data());
    opt.nthreads = 0;
    opt.preconditioner = Preconditioner::Multigrid;
    EXPECT_THROW(with_data.solve(b.data(), x.data(), opt), tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::fem::parse_preconditioner("ilu"), tomofuse::InvalidArgument);
    SparseOperator moved = std::move(op);
    EXPECT_THROW(op.solve(b.data(), x.data(), {}), tomofuse::Error);  // NOLINT(bugprone-use-after-move)
    EXPECT_THROW(op.apply(b.data(), x.data()), tomofuse::Error);      // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(op.rows(), 0u);                                         // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(moved.rows(), b.size());
}

}  // namespace
