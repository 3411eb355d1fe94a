// tomofuse::tomo: projections at 0 and 90 degrees against plain sums, the back-projector as the
// exact adjoint, the linear back-projector against a slow loop of its documented formula;
// identical bits at any thread count; the Fourier back-projector's gridding against a slow spreader.
#include <cmath>
#include <complex>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/tomo.hpp"

namespace {

const double kPi = 3.14159265358979323846;

TEST(Tomo, ProjectionsAtZeroAndNinetyDegreesAreSumsAlongTheAxes) {
    const std::size_t nz = 3, ny = 5, nx = 7;
    const auto vol = tomofuse::test::random_reals(nz * ny * nx, 51, 0.0, 1.0);
    const double angles[2] = {0.0, kPi / 2};
    // n_cols = nx at 0 degrees (column c <-> x = c), = ny at 90 degrees (column c <-> y = c).
    std::vector<double> p0(nz * nx), p90(nz * ny);
    tomofuse::tomo::project<double>(vol.data(), {nz, ny, nx}, angles, 1, nx, 0.0, p0.data(), 1);
    tomofuse::tomo::project<double>(vol.data(), {nz, ny, nx}, angles + 1, 1, ny, 0.0,
                                    p90.data(), 1);
    for (std::size_t z = 0; z < nz; ++z) {
        for (std::size_t c = 0; c < nx; ++c) {
            double s = 0.0;
            for (std::size_t y = 0; y < ny; ++y) {
                s += vol[(z * ny + y) * nx + c];
            }
            EXPECT_NEAR(p0[z * nx + c], s, 1e-9);
        }
        for (std::size_t c = 0; c < ny; ++c) {
            double s = 0.0;
            for (std::size_t x = 0; x < nx; ++x) {
                s += vol[(z * ny + c) * nx + x];
            }
            EXPECT_NEAR(p90[z * ny + c], s, 1e-9) << z << " " << c;
        }
    }
}

TEST(Tomo, BackprojectIsTheExactAdjointOfProject) {
    const std::size_t nz = 2, ny = 9, nx = 8, na = 13, nc = 12;
    const auto vol = tomofuse::test::random_reals(nz * ny * nx, 52);
    const auto proj = tomofuse::test::random_reals(na * nz * nc, 53);
    const auto angles = tomofuse::test::random_reals(na, 54, 0.0, kPi);
    std::vector<double> pv(na * nz * nc), bp(nz * ny * nx);
    tomofuse::tomo::project<double>(vol.data(), {nz, ny, nx}, angles.data(), na, nc, 0.3, pv.data(), 2);
    tomofuse::tomo::backproject<double>(proj.data(), {nz, ny, nx}, angles.data(), na, nc, 0.3, bp.data(), 2);
    double lhs = 0.0, rhs = 0.0;
    for (std::size_t i = 0; i < pv.size(); ++i) {
        lhs += pv[i] * proj[i];
    }
    for (std::size_t i = 0; i < bp.size(); ++i) {
        rhs += vol[i] * bp[i];
    }
    EXPECT_NEAR(lhs, rhs, 1e-10 * std::abs(lhs));
}

// The documented formula of backproject_linear, one voxel at a time, in double.
std::vector<double> linear_reference(const std::vector<double>& proj, std::size_t nz, std::size_t ny, std::size_t nx,
                                     const std::vector<double>& angles, std::size_t nc, double offset) {
    std::vector<double> vol(nz * ny * nx, 0.0);
    for (std::size_t z = 0; z < nz; ++z) {
        for (std::size_t y = 0; y < ny; ++y) {
            for (std::size_t x = 0; x < nx; ++x) {
                double s = 0.0;
                for (std::size_t a = 0; a < angles.size(); ++a) {
                    const double u = (x + 0.5 - nx / 2.0) * std::cos(angles[a]) + (y + 0.5 - ny / 2.0) * std::sin(angles[a]);
                    const double col = u - 0.5 + nc / 2.0 + offset;
                    const double c0 = std::floor(col);
                    const double f = col - c0;
                    auto at = [&](double c) {
                        return c >= 0 && c < static_cast<double>(nc)
                                   ? proj[(a * nz + z) * nc + static_cast<std::size_t>(c)]
                                   : 0.0;
                    };
                    s += (1 - f) * at(c0) + f * at(c0 + 1);
                }
                vol[(z * ny + y) * nx + x] = s;
            }
        }
    }
    return vol;
}

TEST(Tomo, LinearBackprojectionMatchesItsFormulaAndIgnoresTheThreadCount) {
    // nz = 37 runs the 32-, 4- and 1-slice blocks.
    const std::size_t nz = 37, ny = 11, nx = 10, na = 9, nc = 14;
    const auto proj = tomofuse::test::random_reals(na * nz * nc, 55);
    const auto angles = tomofuse::test::random_reals(na, 56, 0.0, kPi);
    const auto ref = linear_reference(proj, nz, ny, nx, angles, nc, -0.4);
    std::vector<double> out(nz * ny * nx);
    tomofuse::tomo::backproject_linear<double>(proj.data(), {nz, ny, nx}, angles.data(), na, nc, -0.4, out.data(), 1);
    EXPECT_LT(tomofuse::test::rel_error(out, ref), 1e-12);
    const auto projf = tomofuse::test::cast<float>(proj);
    std::vector<float> outf(nz * ny * nx), outf2(nz * ny * nx);
    tomofuse::tomo::backproject_linear<float>(projf.data(), {nz, ny, nx}, angles.data(), na, nc, -0.4, outf.data(), 1);
    EXPECT_LT(tomofuse::test::rel_error(std::vector<double>(outf.begin(), outf.end()), ref), 1e-5);
    for (int threads : {2, 3}) {
        tomofuse::tomo::backproject_linear<float>(projf.data(), {nz, ny, nx}, angles.data(), na, nc, -0.4,
                                                  outf2.data(), threads);
        EXPECT_TRUE(tomofuse::test::same_bits(outf, outf2));
    }
}

TEST(Tomo, ProjectAndBackprojectIgnoreTheThreadCount) {
    const std::size_t nz = 4, ny = 12, nx = 12, na = 10, nc = 16;
    const auto vol = tomofuse::test::cast<float>(tomofuse::test::random_reals(nz * ny * nx, 57));
    const auto angles = tomofuse::test::random_reals(na, 58, 0.0, kPi);
    std::vector<float> p1(na * nz * nc), p2(na * nz * nc), b1(nz * ny * nx), b2(nz * ny * nx);
    tomofuse::tomo::project<float>(vol.data(), {nz, ny, nx}, angles.data(), na, nc, 0.0, p1.data(), 1);
    tomofuse::tomo::project<float>(vol.data(), {nz, ny, nx}, angles.data(), na, nc, 0.0, p2.data(), 3);
    EXPECT_TRUE(tomofuse::test::same_bits(p1, p2));
    tomofuse::tomo::backproject<float>(p1.data(), {nz, ny, nx}, angles.data(), na, nc, 0.0, b1.data(), 1);
    tomofuse::tomo::backproject<float>(p1.data(), {nz, ny, nx}, angles.data(), na, nc, 0.0, b2.data(), 3);
    EXPECT_TRUE(tomofuse::test::same_bits(b1, b2));
}

// spread_rays_hermitian with the tent kernel (width 2: taps (1 - z)/2 and (1 + z)/2, z = 2f - 1)
// against a slow spreader onto the full periodic grid, then (G + conj G(-r, -c)) / 2.
TEST(Tomo, SpreadRaysHermitianMatchesASlowSpreader) {
    using cd = std::complex<double>;
    const std::size_t rows = 12, cols = 10, n_rays = 5, n_points = 4;
    const double kernel[4] = {-0.5, 0.5, 0.5, 0.5};
    const auto angles = tomofuse::test::random_reals(n_rays, 61, -kPi, kPi);
    const auto re = tomofuse::test::random_reals(n_rays * n_points, 62);
    const auto im = tomofuse::test::random_reals(n_rays * n_points, 63);
    std::vector<double> steps(2 * n_rays);
    std::vector<cd> samples(n_rays * n_points);
    for (std::size_t a = 0; a < n_rays; ++a) {
        steps[2 * a] = 0.45 * rows * std::cos(angles[a]) / (n_points - 1);
        steps[2 * a + 1] = 0.45 * cols * std::sin(angles[a]) / (n_points - 1);
        for (std::size_t k = 0; k < n_points; ++k) {
            samples[a * n_points + k] = cd(re[a * n_points + k], im[a * n_points + k]);
        }
    }
    std::vector<cd> grid(rows * cols);
    const auto wrap = [](long i, std::size_t n) { return static_cast<std::size_t>(((i % long(n)) + long(n)) % long(n)); };
    for (std::size_t a = 0; a < n_rays; ++a) {
        const bool reflect = steps[2 * a] < 0.0;
        const double dr = reflect ? -steps[2 * a] : steps[2 * a], dc = reflect ? -steps[2 * a + 1] : steps[2 * a + 1];
        for (std::size_t k = 0; k < n_points; ++k) {
            const cd s = reflect ? std::conj(samples[a * n_points + k]) : samples[a * n_points + k];
            const double gr = k * dr, gc = k * dc + 0.5 * cols;
            const double fr = std::floor(gr), fc = std::floor(gc);
            const double wr[2] = {1.0 - (gr - fr), gr - fr}, wc[2] = {1.0 - (gc - fc), gc - fc};
            for (int i = 0; i < 2; ++i) {
                for (int j = 0; j < 2; ++j) {
                    grid[wrap(long(fr) + i, rows) * cols + wrap(long(fc) + j, cols)] += wr[i] * wc[j] * s;
                }
            }
        }
    }
    std::vector<cd> half((rows / 2 + 1) * cols), again(half.size());
    tomofuse::tomo::spread_rays_hermitian<double>(samples.data(), n_rays, n_points, steps.data(), kernel, 2, 1, rows,
                                                  cols, half.data(), 1);
    for (std::size_t r = 0; r <= rows / 2; ++r) {
        for (std::size_t c = 0; c < cols; ++c) {
            const cd want = 0.5 * (grid[r * cols + c] + std::conj(grid[wrap(-long(r), rows) * cols + wrap(-long(c), cols)]));
            EXPECT_NEAR(std::abs(half[r * cols + c] - want), 0.0, 1e-12) << r << " " << c;
        }
    }
    tomofuse::tomo::spread_rays_hermitian<double>(samples.data(), n_rays, n_points, steps.data(), kernel, 2, 1, rows,
                                                  cols, again.data(), 3);
    EXPECT_TRUE(tomofuse::test::same_bits(half, again));
    EXPECT_THROW(tomofuse::tomo::spread_rays_hermitian<double>(samples.data(), n_rays, n_points, steps.data(), kernel,
                                                               3, 1, rows, cols, half.data(), 1),
                 tomofuse::InvalidArgument);
    steps[0] = 10.0;  // leaves the grid
    EXPECT_THROW(tomofuse::tomo::spread_rays_hermitian<double>(samples.data(), n_rays, n_points, steps.data(), kernel,
                                                               2, 1, rows, cols, half.data(), 1),
                 tomofuse::InvalidArgument);
}

TEST(Tomo, BadArgumentsThrow) {
    std::vector<float> v(8), p(8);
    const double a = 0.0;
    EXPECT_THROW(tomofuse::tomo::project<float>(v.data(), {2, 2, 2}, &a, 1, 0, 0.0, p.data()),
                 tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::tomo::project<float>(v.data(), {2, 2, 2}, &a, 1, 4, 0.0, p.data(), -2),
                 tomofuse::InvalidArgument);
}

}  // namespace
