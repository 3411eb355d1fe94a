// tomofuse::fft against a naive DFT; thread counts, alignment, moves, overlap.
#include <complex>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/fft.hpp"

namespace {

using cf = std::complex<float>;
using tomofuse::fft::Direction;
using tomofuse::fft::Norm;
using tomofuse::fft::Plan2D;

// Unscaled forward (sign -1) or backward (sign +1) DFT of one (ny, nx) frame, in double.
std::vector<std::complex<double>> dft(const cf* in, std::size_t ny, std::size_t nx, int sign) {
    const double pi = 3.14159265358979323846;
    std::vector<std::complex<double>> out(ny * nx);
    for (std::size_t u = 0; u < ny; ++u) {
        for (std::size_t v = 0; v < nx; ++v) {
            std::complex<double> s = 0.0;
            for (std::size_t y = 0; y < ny; ++y) {
                for (std::size_t x = 0; x < nx; ++x) {
                    const double ph = sign * 2.0 * pi *
                                      (static_cast<double>(u * y) / static_cast<double>(ny) +
                                       static_cast<double>(v * x) / static_cast<double>(nx));
                    s += std::complex<double>(in[y * nx + x]) * std::polar(1.0, ph);
                }
            }
            out[u * nx + v] = s;
        }
    }
    return out;
}

TEST(Fft, ForwardAndBackwardMatchTheNaiveDft) {
    const std::size_t ny = 6, nx = 5, batch = 3, n = ny * nx;
    const auto a = tomofuse::test::random_complex(batch * n, 1);
    for (const Norm norm : {Norm::Backward, Norm::Ortho, Norm::Forward}) {
        for (const Direction dir : {Direction::Forward, Direction::Backward}) {
            std::vector<cf> out(a.size());
            Plan2D(ny, nx).execute(a.data(), out.data(), batch, dir, norm, 1);
            const double scale = tomofuse::fft::scale_factor(dir, norm, n);
            std::vector<std::complex<double>> ref;
            for (std::size_t b = 0; b < batch; ++b) {
                auto f = dft(a.data() + b * n, ny, nx, dir == Direction::Forward ? -1 : 1);
                for (auto& z : f) {
                    ref.push_back(z * scale);
                }
            }
            std::vector<std::complex<double>> got(out.begin(), out.end());
            EXPECT_LT(tomofuse::test::rel_error(got, ref), 1e-5);
        }
    }
}

TEST(Fft, ThreadCountsInPlaceAndMisalignedFramesGiveTheSameBits) {
    const std::size_t ny = 16, nx = 12, batch = 7, n = ny * nx;
    const auto a = tomofuse::test::random_complex(batch * n, 2);
    const Plan2D plan(ny, nx);
    std::vector<cf> ref(a.size());
    plan.execute(a.data(), ref.data(), batch, Direction::Forward, Norm::Ortho, 1);
    for (int threads : {2, 3, 0}) {
        std::vector<cf> out(a.size());
        plan.execute(a.data(), out.data(), batch, Direction::Forward, Norm::Ortho, threads);
        EXPECT_TRUE(tomofuse::test::same_bits(out, ref)) << threads << " threads";
    }
    std::vector<cf> inplace = a;
    plan.execute(inplace.data(), inplace.data(), batch, Direction::Forward, Norm::Ortho, 2);
    EXPECT_TRUE(tomofuse::test::same_bits(inplace, ref));
    // Frames one element off FFTW's alignment go through the aligned scratch frame.
    std::vector<cf> shifted(a.size() + 1), out(a.size() + 1);
    std::copy(a.begin(), a.end(), shifted.begin() + 1);
    plan.execute(shifted.data() + 1, out.data() + 1, batch, Direction::Forward, Norm::Ortho, 2);
    EXPECT_TRUE(tomofuse::test::same_bits(std::vector<cf>(out.begin() + 1, out.end()), ref));
}

TEST(Fft, MovedFromPlanThrowsAndMovedToPlanWorks) {
    const auto a = tomofuse::test::random_complex(4 * 4, 3);
    Plan2D first(4, 4);
    std::vector<cf> ref(a.size()), out(a.size());
    first.execute(a.data(), ref.data(), 1, Direction::Forward);
    Plan2D second(std::move(first));
    second.execute(a.data(), out.data(), 1, Direction::Forward);
    EXPECT_TRUE(tomofuse::test::same_bits(out, ref));
    EXPECT_THROW(first.execute(a.data(), out.data(), 1, Direction::Forward), tomofuse::Error);  // NOLINT
    Plan2D third(2, 2);
    third = std::move(second);
    third.execute(a.data(), out.data(), 1, Direction::Forward);
    EXPECT_TRUE(tomofuse::test::same_bits(out, ref));
}

TEST(Fft, BadArgumentsThrow) {
    std::vector<cf> a(2 * 16);
    const Plan2D plan(4, 4);
    EXPECT_THROW(plan.execute(a.data(), a.data() + 3, 1, Direction::Forward), tomofuse::InvalidArgument);
    EXPECT_THROW(plan.execute(nullptr, a.data(), 1, Direction::Forward), tomofuse::InvalidArgument);
    EXPECT_THROW(plan.execute(a.data(), a.data(), 1, Direction::Forward, Norm::Backward, -1),
                 tomofuse::InvalidArgument);
    EXPECT_THROW(Plan2D(0, 4), tomofuse::ShapeError);
}

TEST(Fft, FilterWithUnitResponseReturnsTheFramesAndIsThreadIndependent) {
    const std::size_t batch = 3, ny = 9, nx = 7, py = 16, px = 12;
    const auto in = tomofuse::test::cast<float>(tomofuse::test::random_reals(batch * ny * nx, 4));
    std::vector<float> response(py * (px / 2 + 1), 1.0f);
    std::vector<float> out(in.size()), out2(in.size());
    tomofuse::fft::filter_real_2d(in.data(), out.data(), batch, ny, nx, py, px, response.data(),
                                  tomofuse::fft::Rigor::Estimate, 1);
    EXPECT_LT(tomofuse::test::rel_error(out, in), 1e-5);
    tomofuse::fft::filter_real_2d(in.data(), out2.data(), batch, ny, nx, py, px, response.data(),
                                  tomofuse::fft::Rigor::Estimate, 2);
    EXPECT_TRUE(tomofuse::test::same_bits(out, out2));
}

}  // namespace
