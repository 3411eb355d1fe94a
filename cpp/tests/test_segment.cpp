// tomofuse::segment: the Gaussian blur and its adjoint against a slow dense reference (per-axis
// sampled Gaussians of radius ceil(3.5 sigma), normalized, samples beyond the ends folded onto the
// end voxels), the upsampling against a voxel-by-voxel reference, ICM's energy against a direct sum of
// its three terms, ICM never raising the energy and recovering known labels, identical bits at any
// thread count and from concurrent calls.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/segment.hpp"

namespace {

using tomofuse::segment::Shape;

// Dense (n x n) matrix of one axis of H.
std::vector<double> axis_matrix(std::size_t n, double sigma) {
    const int r = sigma > 0 ? static_cast<int>(std::ceil(3.5 * sigma)) : 0;
    std::vector<double> k(2 * r + 1, 1.0);
    double sum = 0.0;
    for (int t = -r; t <= r; ++t) {
        k[t + r] = r == 0 ? 1.0 : std::exp(-0.5 * (t / sigma) * (t / sigma));
        sum += k[t + r];
    }
    std::vector<double> h(n * n, 0.0);
    for (std::size_t j = 0; j < n; ++j) {
        for (int t = -r; t <= r; ++t) {
            const long i = std::min<long>(std::max<long>(static_cast<long>(j) + t, 0), static_cast<long>(n) - 1);
            h[j * n + static_cast<std::size_t>(i)] += k[t + r] / sum;
        }
    }
    return h;
}

// out[z,y,x] = sum_{a,b,c} Hz[z,a] Hy[y,b] Hx[x,c] in[a,b,c] (transposed matrices for the adjoint).
std::vector<double> slow_blur(const std::vector<float>& in, Shape s, const double sigma[3], bool adjoint) {
    const auto hz = axis_matrix(s.nz, sigma[0]), hy = axis_matrix(s.ny, sigma[1]), hx = axis_matrix(s.nx, sigma[2]);
    auto at = [adjoint](const std::vector<double>& h, std::size_t n, std::size_t i, std::size_t j) {
        return adjoint ? h[j * n + i] : h[i * n + j];
    };
    std::vector<double> out(s.size(), 0.0);
    for (std::size_t z = 0; z < s.nz; ++z)
        for (std::size_t y = 0; y < s.ny; ++y)
            for (std::size_t x = 0; x < s.nx; ++x) {
                double acc = 0.0;
                for (std::size_t a = 0; a < s.nz; ++a)
                    for (std::size_t b = 0; b < s.ny; ++b)
                        for (std::size_t c = 0; c < s.nx; ++c)
                            acc += at(hz, s.nz, z, a) * at(hy, s.ny, y, b) * at(hx, s.nx, x, c) *
                                   in[(a * s.ny + b) * s.nx + c];
                out[(z * s.ny + y) * s.nx + x] = acc;
            }
    return out;
}

// E = w |y - H m[L]|^2 + beta #unlike 6-neighbor pairs (no unaries), summed directly.
double slow_energy(const std::vector<float>& data, const std::vector<std::uint8_t>& labels, Shape s,
                   const std::vector<float>& levels, const double sigma[3], double w, double beta) {
    std::vector<float> m(s.size());
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = levels[labels[i]];
    const auto hm = slow_blur(m, s, sigma, false);
    double e = 0.0;
    for (std::size_t i = 0; i < m.size(); ++i) e += w * (data[i] - hm[i]) * (data[i] - hm[i]);
    for (std::size_t z = 0; z < s.nz; ++z)
        for (std::size_t y = 0; y < s.ny; ++y)
            for (std::size_t x = 0; x < s.nx; ++x) {
                const std::size_t i = (z * s.ny + y) * s.nx + x;
                if (x + 1 < s.nx && labels[i] != labels[i + 1]) e += beta;
                if (y + 1 < s.ny && labels[i] != labels[i + s.nx]) e += beta;
                if (z + 1 < s.nz && labels[i] != labels[i + s.nx * s.ny]) e += beta;
            }
    return e;
}

struct Case {
    Shape shape{6, 7, 9};
    std::vector<float> levels{0.0f, 1.0f, 2.5f};
    std::vector<std::uint8_t> truth, start;
    std::vector<float> data;
};

// Blocky true labels, data = H m[truth] + noise, a start with a fifth of the voxels relabeled.
Case make_case(const double sigma[3], double noise, unsigned seed, Shape shape = Shape{6, 7, 9}) {
    Case c;
    c.shape = shape;
    const auto u = tomofuse::test::random_reals(c.shape.size(), seed, 0.0, 1.0);
    const auto v = tomofuse::test::random_reals(c.shape.size(), seed + 1, -1.0, 1.0);
    c.truth.resize(c.shape.size());
    for (std::size_t z = 0; z < c.shape.nz; ++z)
        for (std::size_t y = 0; y < c.shape.ny; ++y)
            for (std::size_t x = 0; x < c.shape.nx; ++x)
                c.truth[(z * c.shape.ny + y) * c.shape.nx + x] = static_cast<std::uint8_t>((x / 3 + y / 4 + z / 3) % 3);
    std::vector<float> m(c.shape.size());
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = c.levels[c.truth[i]];
    const auto hm = slow_blur(m, c.shape, sigma, false);
    c.data.resize(m.size());
    c.start = c.truth;
    for (std::size_t i = 0; i < m.size(); ++i) {
        c.data[i] = static_cast<float>(hm[i] + noise * v[i]);
        if (u[i] < 0.2) c.start[i] = static_cast<std::uint8_t>((c.truth[i] + 1 + (u[i] < 0.1)) % 3);
    }
    return c;
}

TEST(Segment, KernelRadiusIsCeilOfThreePointFiveSigma) {
    EXPECT_EQ(tomofuse::segment::kernel_radius(0.0), 0);
    EXPECT_EQ(tomofuse::segment::kernel_radius(1.0), 4);
    EXPECT_EQ(tomofuse::segment::kernel_radius(0.5), 2);
    EXPECT_EQ(tomofuse::segment::kernel_radius(2.3), 9);
}

TEST(Segment, BlurAndAdjointMatchTheDenseReference) {
    const Shape s{5, 6, 7};
    const double sigmas[3][3] = {{0.8, 0.0, 1.3}, {2.5, 0.6, 0.4}, {0.0, 0.0, 0.0}};
    const auto in = tomofuse::test::cast<float>(tomofuse::test::random_reals(s.size(), 7));
    for (const auto& sigma : sigmas) {
        for (bool adjoint : {false, true}) {
            std::vector<float> out(s.size());
            tomofuse::segment::gaussian_blur(in.data(), out.data(), s, sigma, adjoint, 2);
            EXPECT_LT(tomofuse::test::rel_error(out, slow_blur(in, s, sigma, adjoint)), 2e-6)
                << "sigma " << sigma[0] << " " << sigma[1] << " " << sigma[2] << " adjoint " << adjoint;
        }
    }
}

TEST(Segment, AdjointIdentityAndInPlace) {
    const Shape s{9, 4, 11};
    const double sigma[3] = {1.7, 0.9, 2.2};
    const auto u = tomofuse::test::cast<float>(tomofuse::test::random_reals(s.size(), 11));
    const auto v = tomofuse::test::cast<float>(tomofuse::test::random_reals(s.size(), 12));
    std::vector<float> hu(s.size()), htv(s.size());
    tomofuse::segment::gaussian_blur(u.data(), hu.data(), s, sigma, false, 1);
    tomofuse::segment::gaussian_blur(v.data(), htv.data(), s, sigma, true, 1);
    double a = 0.0, b = 0.0, scale = 0.0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        a += double(hu[i]) * v[i];
        b += double(u[i]) * htv[i];
        scale += std::abs(double(hu[i]) * v[i]);
    }
    EXPECT_NEAR(a, b, 1e-6 * scale);
    auto inplace = u;
    tomofuse::segment::gaussian_blur(inplace.data(), inplace.data(), s, sigma, false, 3);
    EXPECT_TRUE(tomofuse::test::same_bits(inplace, hu));
}

TEST(Segment, BlurIsIdenticalAtAnyThreadCount) {
    const Shape s{13, 8, 10};
    const double sigma[3] = {1.2, 0.7, 1.9};
    const auto in = tomofuse::test::cast<float>(tomofuse::test::random_reals(s.size(), 21));
    std::vector<float> ref(s.size());
    tomofuse::segment::gaussian_blur(in.data(), ref.data(), s, sigma, false, 1);
    for (int threads : {2, 3, 4, 0}) {
        std::vector<float> out(s.size());
        tomofuse::segment::gaussian_blur(in.data(), out.data(), s, sigma, false, threads);
        EXPECT_TRUE(tomofuse::test::same_bits(out, ref)) << threads << " threads";
    }
}

// upsample_linear one fine voxel at a time: each axis's coarse coordinate (i + o % f + 0.5) / f - 0.5,
// the end values outside the outer centers, the axes z, y, x in turn in float (as the kernel).
float slow_upsample(const std::vector<float>& a, Shape c, int f, const std::ptrdiff_t o[3], std::size_t z,
                    std::size_t y, std::size_t x) {
    // the coordinate as num / (2 f) with an integer num: the weight exactly, then rounded to float
    auto taps = [f](std::size_t i, std::size_t m, std::ptrdiff_t org, std::size_t& i0, std::size_t& i1, float& w) {
        const long num = 2 * (static_cast<long>(i) + org % f) + 1 - f;
        const long top = 2L * f * (static_cast<long>(m) - 1);
        if (num <= 0 || num >= top) {
            i0 = i1 = num <= 0 ? 0 : m - 1;
            w = 0.0f;
            return;
        }
        i0 = static_cast<std::size_t>(num / (2L * f));
        i1 = std::min(i0 + 1, m - 1);
        w = static_cast<float>(static_cast<double>(num - 2L * f * static_cast<long>(i0)) / (2.0 * f));
    };
    std::size_t z0, z1, y0, y1, x0, x1;
    float wz, wy, wx;
    taps(z, c.nz, o[0], z0, z1, wz);
    taps(y, c.ny, o[1], y0, y1, wy);
    taps(x, c.nx, o[2], x0, x1, wx);
    auto at = [&](std::size_t zz, std::size_t yy, std::size_t xx) { return a[(zz * c.ny + yy) * c.nx + xx]; };
    auto along_z = [&](std::size_t yy, std::size_t xx) {
        const float lo = at(z0, yy, xx) * (1.0f - wz), hi = at(z1, yy, xx) * wz;
        return lo + hi;
    };
    auto along_y = [&](std::size_t xx) {
        const float lo = along_z(y0, xx) * (1.0f - wy), hi = along_z(y1, xx) * wy;
        return lo + hi;
    };
    const float lo = along_y(x0) * (1.0f - wx), hi = along_y(x1) * wx;
    return lo + hi;
}

TEST(Segment, UpsampleLinearMatchesTheVoxelByVoxelReference) {
    const Shape c{4, 5, 3};
    const auto a = tomofuse::test::cast<float>(tomofuse::test::random_reals(c.size(), 41));
    for (int f : {1, 2, 3, 4}) {
        const std::ptrdiff_t o[3] = {5, 0, 7};
        const Shape s{c.nz * static_cast<std::size_t>(f) - 1, c.ny * static_cast<std::size_t>(f) + 2,
                      c.nx * static_cast<std::size_t>(f)};
        std::vector<float> ref(s.size());
        tomofuse::segment::upsample_linear(a.data(), c, ref.data(), s, f, o, 1);
        for (std::size_t z = 0; z < s.nz; ++z) {
            for (std::size_t y = 0; y < s.ny; ++y) {
                for (std::size_t x = 0; x < s.nx; ++x) {
                    EXPECT_EQ(ref[(z * s.ny + y) * s.nx + x], slow_upsample(a, c, f, o, z, y, x))
                        << "f " << f << " at " << z << " " << y << " " << x;
                }
            }
        }
        for (int threads : {2, 3, 0}) {
            std::vector<float> out(s.size());
            tomofuse::segment::upsample_linear(a.data(), c, out.data(), s, f, o, threads);
            EXPECT_TRUE(tomofuse::test::same_bits(out, ref)) << threads << " threads";
        }
    }
    std::vector<float> out(8);
    const std::ptrdiff_t o0[3] = {0, 0, 0}, neg[3] = {0, -1, 0};
    EXPECT_THROW(tomofuse::segment::upsample_linear(a.data(), c, out.data(), Shape{2, 2, 2}, 0, o0, 1),
                 tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::segment::upsample_linear(a.data(), c, out.data(), Shape{2, 2, 2}, 2, neg, 1),
                 tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::segment::upsample_linear(a.data(), c, out.data(), Shape{0, 2, 2}, 2, o0, 1),
                 tomofuse::InvalidArgument);
}

TEST(Segment, IcmEnergyIsTheDirectSumOfItsTerms) {
    const double sigma[3] = {0.7, 1.1, 0.5};
    const auto c = make_case(sigma, 0.3, 31);
    tomofuse::segment::IcmOptions opt;
    opt.data_weight = 1.7;
    opt.smoothness = 0.4;
    for (const auto* labels : {&c.truth, &c.start}) {
        const double e = tomofuse::segment::icm_energy(c.data.data(), labels->data(), c.shape, c.levels.data(), 3,
                                                       sigma, nullptr, 0, nullptr, opt, 2);
        const double ref = slow_energy(c.data, *labels, c.shape, c.levels, sigma, 1.7, 0.4);
        EXPECT_NEAR(e, ref, 1e-5 * ref);
    }
}

TEST(Segment, IcmLowersTheEnergyAndRecoversNoiseFreeLabels) {
    // Without blur and noise each voxel's data term alone names its label: ICM must find the truth.
    const double none[3] = {0.0, 0.0, 0.0};
    auto c = make_case(none, 0.0, 41);
    tomofuse::segment::IcmOptions opt;
    opt.max_sweeps = 5;
    auto labels = c.start;
    auto rep = tomofuse::segment::icm(c.data.data(), labels.data(), c.shape, c.levels.data(), 3, none, nullptr,
                                      nullptr, 0, nullptr, opt, 2);
    EXPECT_EQ(labels, c.truth);
    EXPECT_EQ(rep.energy_after, 0.0);
    // With blur, noise and smoothness: the energy never rises, and the report is the energy of the result.
    const double sigma[3] = {0.9, 1.2, 0.6};
    c = make_case(sigma, 0.05, 43);
    opt.smoothness = 0.05;
    opt.max_sweeps = 8;
    labels = c.start;
    rep = tomofuse::segment::icm(c.data.data(), labels.data(), c.shape, c.levels.data(), 3, sigma, nullptr, nullptr, 0,
                                 nullptr, opt, 2);
    const double before = slow_energy(c.data, c.start, c.shape, c.levels, sigma, 1.0, 0.05);
    const double after = slow_energy(c.data, labels, c.shape, c.levels, sigma, 1.0, 0.05);
    EXPECT_NEAR(rep.energy_before, before, 1e-5 * before);
    EXPECT_NEAR(rep.energy_after, after, 1e-5 * before);
    EXPECT_LT(after, before);
    std::size_t wrong_before = 0, wrong_after = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        wrong_before += c.start[i] != c.truth[i];
        wrong_after += labels[i] != c.truth[i];
    }
    EXPECT_LT(wrong_after, wrong_before / 4) << wrong_before << " -> " << wrong_after;
}

TEST(Segment, IcmKeepsDisallowedLabelsOut) {
    const double none[3] = {0.0, 0.0, 0.0};
    const auto c = make_case(none, 0.0, 47);
    std::vector<std::uint8_t> allowed(c.shape.size(), 0b011);  // labels 0 and 1 only
    std::vector<std::uint8_t> labels(c.shape.size(), 0);
    tomofuse::segment::IcmOptions opt;
    tomofuse::segment::icm(c.data.data(), labels.data(), c.shape, c.levels.data(), 3, none, allowed.data(), nullptr,
                           0, nullptr, opt, 1);
    for (std::size_t i = 0; i < labels.size(); ++i) {
        ASSERT_LT(labels[i], 2);
        // label 2 (level 2.5) is best approximated by label 1 (level 1.0)
        EXPECT_EQ(labels[i], c.truth[i] == 0 ? 0 : 1);
    }
}

// ICM from the case's start labels (3 levels, no allowed masks, no unaries): (labels, changes per sweep).
std::pair<std::vector<std::uint8_t>, std::vector<std::int64_t>> run_icm(const Case& c, const double sigma[3],
                                                                       const tomofuse::segment::IcmOptions& opt,
                                                                       int threads) {
    auto labels = c.start;
    auto rep = tomofuse::segment::icm(c.data.data(), labels.data(), c.shape, c.levels.data(), 3, sigma, nullptr,
                                      nullptr, 0, nullptr, opt, threads);
    return std::make_pair(labels, rep.changes);
}

template <typename Run, typename Result>
void expect_same_at_2_to_4_threads(Run&& run, const Result& ref) {
    for (int threads : {2, 3, 4}) {
        const auto got = run(threads);
        EXPECT_EQ(got.first, ref.first) << threads << " threads";
        EXPECT_EQ(got.second, ref.second) << threads << " threads";
    }
}

TEST(Segment, IcmIsIdenticalAtAnyThreadCountAndFromConcurrentCalls) {
    const double sigma[3] = {0.25, 0.25, 0.25};  // r = 1: cells of 2 (2 r) + 1 = 5 voxels
    const Case c = make_case(sigma, 0.1, 53, Shape{24, 10, 11});
    tomofuse::segment::IcmOptions opt;
    opt.smoothness = 0.1;
    opt.cell = 5;  // 5 x 2 x 3 cells, so that the cells of one color really run side by side
    opt.origin[0] = 3;  // and a place in a larger volume (the lattice shifted)
    auto run = [&](int threads) { return run_icm(c, sigma, opt, threads); };
    const auto ref = run(1);
    expect_same_at_2_to_4_threads(run, ref);
    std::vector<std::pair<std::vector<std::uint8_t>, std::vector<std::int64_t>>> results(4);
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&, t] { results[t] = run(1 + t % 2); });
    }
    for (auto& th : pool) th.join();
    for (const auto& r : results) {
        EXPECT_EQ(r.first, ref.first);
        EXPECT_EQ(r.second, ref.second);
    }
}

TEST(Segment, IcmWithoutBlurIsIdenticalAtAnyThreadCountInTheSmallestCells) {
    // sigma 0: g changes only at the moved voxel, but a move also marks its 6-neighbors for a new
    // evaluation, one voxel into the next cell: cells of 3, the smallest that keep two cells of one
    // color apart (ThreadSanitizer checks this test too); 2 is refused
    const double sigma[3] = {0.0, 0.0, 0.0};
    const Case c = make_case(sigma, 0.3, 61, Shape{12, 9, 15});
    tomofuse::segment::IcmOptions opt;
    opt.smoothness = 0.3;
    opt.cell = 3;
    auto run = [&](int threads) { return run_icm(c, sigma, opt, threads); };
    const auto ref = run(1);
    EXPECT_GT(ref.second.at(0), 0);
    expect_same_at_2_to_4_threads(run, ref);
    opt.cell = 2;
    EXPECT_THROW(run(2), tomofuse::InvalidArgument);
}

TEST(Segment, BadArgumentsThrowInvalidArgument) {
    const Shape s{2, 2, 2};
    std::vector<float> in(8, 1.0f), out(8);
    const double negative[3] = {-1.0, 0.0, 0.0};
    const double nan[3] = {std::nan(""), 0.0, 0.0};
    const double ok[3] = {0.0, 0.0, 0.0};
    EXPECT_THROW(tomofuse::segment::gaussian_blur(in.data(), out.data(), s, negative), tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::segment::gaussian_blur(in.data(), out.data(), s, nan), tomofuse::InvalidArgument);
    std::vector<std::uint8_t> labels(8, 3);  // out of range for 3 levels
    const float levels[3] = {0.0f, 1.0f, 2.0f};
    tomofuse::segment::IcmOptions opt;
    EXPECT_THROW(tomofuse::segment::icm(in.data(), labels.data(), s, levels, 3, ok, nullptr, nullptr, 0, nullptr, opt),
                 tomofuse::InvalidArgument);
    labels.assign(8, 0);
    in[3] = std::nanf("");
    EXPECT_THROW(tomofuse::segment::icm(in.data(), labels.data(), s, levels, 3, ok, nullptr, nullptr, 0, nullptr, opt),
                 tomofuse::InvalidArgument);
}

}  // namespace
