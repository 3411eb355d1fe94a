// tomofuse::ptycho against slow double-precision references: windows, shifted probes, exit waves,
// the gathers as adjoints of the forward model, the DM fixed point, the ML gradient against
// finite differences, monotone ML; moves of a Scan; identical bits at any thread count.
#include <cmath>
#include <cstdio>
#include <complex>
#include <optional>
#include <tuple>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/ptycho.hpp"

namespace {

using cf = std::complex<float>;
using cd = std::complex<double>;
using tomofuse::ptycho::Scan;
const double kPi = 3.14159265358979323846;

constexpr std::size_t N = 8, M = 2, H = 24, W = 26, K = 6;

std::vector<double> positions() {
    // (y, x) probe-center positions: a whole-pixel one, one whole in y only, and random fractions.
    std::vector<double> p = {0.0, 0.0, 2.0, -3.25};
    const auto r = tomofuse::test::random_reals(2 * (K - 2), 11, -6.0, 6.0);
    p.insert(p.end(), r.begin(), r.end());
    return p;
}

struct Win {
    long y0, x0;
    double fy, fx;
    std::size_t bin_code;
};

// The documented window convention, computed independently of Scan.
Win window(double y, double x, int steps) {
    Win w{static_cast<long>(std::floor(y)) + static_cast<long>(H / 2) - static_cast<long>(N / 2),
          static_cast<long>(std::floor(x)) + static_cast<long>(W / 2) - static_cast<long>(N / 2), y - std::floor(y),
          x - std::floor(x), 0};
    if (steps > 0) {
        long by = std::lround(w.fy * steps), bx = std::lround(w.fx * steps);
        if (by == steps) {
            by = 0;
            ++w.y0;
        }
        if (bx == steps) {
            bx = 0;
            ++w.x0;
        }
        w.fy = static_cast<double>(by) / steps;
        w.fx = static_cast<double>(bx) / steps;
    }
    return w;
}

// Unscaled 2-D DFT of an N x N frame (sign -1 forward).
std::vector<cd> dft(const std::vector<cd>& a, int sign) {
    std::vector<cd> out(N * N);
    for (std::size_t u = 0; u < N; ++u) {
        for (std::size_t v = 0; v < N; ++v) {
            cd s = 0.0;
            for (std::size_t y = 0; y < N; ++y) {
                for (std::size_t x = 0; x < N; ++x) {
                    s += a[y * N + x] * std::polar(1.0, sign * 2.0 * kPi * static_cast<double>(u * y + v * x) / N);
                }
            }
            out[u * N + v] = s;
        }
    }
    return out;
}

double freq(std::size_t u) { return u < (N + 1) / 2 ? static_cast<double>(u) : static_cast<double>(u) - N; }

// The probe mode shifted by (fy, fx) pixels: F^-1[F(P) exp(-2 pi i (fy ky + fx kx) / N)].
std::vector<cd> shifted(const cf* mode, double fy, double fx) {
    std::vector<cd> a(mode, mode + N * N);
    auto f = dft(a, -1);
    for (std::size_t u = 0; u < N; ++u) {
        for (std::size_t v = 0; v < N; ++v) {
            f[u * N + v] *= std::polar(1.0, -2.0 * kPi * (fy * freq(u) + fx * freq(v)) / N);
        }
    }
    auto b = dft(f, 1);
    for (auto& z : b) {
        z /= static_cast<double>(N * N);
    }
    return b;
}

// psi_km = P_km o_k for every pattern and mode, (K, M, N, N), in double.
std::vector<cd> reference_exit(const std::vector<cf>& obj, const std::vector<cf>& probe, int steps) {
    const auto pos = positions();
    std::vector<cd> out(K * M * N * N);
    for (std::size_t k = 0; k < K; ++k) {
        const Win w = window(pos[2 * k], pos[2 * k + 1], steps);
        for (std::size_t m = 0; m < M; ++m) {
            std::vector<cd> p(probe.begin() + static_cast<long>(m * N * N), probe.begin() + static_cast<long>((m + 1) * N * N));
            if (steps > 0) {
                p = shifted(probe.data() + m * N * N, w.fy, w.fx);
            }
            for (std::size_t i = 0; i < N; ++i) {
                for (std::size_t j = 0; j < N; ++j) {
                    const auto at = [&](std::size_t a, std::size_t b) -> cd {
                        return obj[(static_cast<std::size_t>(w.y0) + a) * W + static_cast<std::size_t>(w.x0) + b];
                    };
                    cd o = at(i, j);
                    if (steps == 0) {
                        o = (1 - w.fy) * (1 - w.fx) * at(i, j) +
                            (w.fx > 0 ? (1 - w.fy) * w.fx * at(i, j + 1) : cd(0)) +
                            (w.fy > 0 ? w.fy * (1 - w.fx) * at(i + 1, j) : cd(0)) +
                            (w.fy > 0 && w.fx > 0 ? w.fy * w.fx * at(i + 1, j + 1) : cd(0));
                    }
                    out[((k * M + m) * N + i) * N + j] = p[i * N + j] * o;
                }
            }
        }
    }
    return out;
}

std::vector<cf> object() {
    const auto ph = tomofuse::test::random_reals(H * W, 21, -0.6, 0.6);
    const auto am = tomofuse::test::random_reals(H * W, 22, 0.8, 1.0);
    std::vector<cf> o(H * W);
    for (std::size_t i = 0; i < o.size(); ++i) {
        o[i] = std::polar(static_cast<float>(am[i]), static_cast<float>(ph[i]));
    }
    return o;
}

std::vector<cf> probe() {
    std::vector<cf> p(M * N * N);
    for (std::size_t i = 0; i < N; ++i) {
        for (std::size_t j = 0; j < N; ++j) {
            const double y = static_cast<double>(i) - N / 2.0, x = static_cast<double>(j) - N / 2.0;
            const double g = std::exp(-(y * y + x * x) / 6.0) * 30.0;
            p[i * N + j] = static_cast<cf>(std::polar(g, 0.3 * y));
            p[N * N + i * N + j] = static_cast<cf>(0.3 * g * x / 3.0);
        }
    }
    return p;
}

Scan make_scan(int steps) {
    const auto pos = positions();
    return Scan(N, M, H, W, pos.data(), K, steps);
}

cd inner(const std::vector<cf>& a, const std::vector<cd>& b) {
    cd s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        s += std::conj(cd(a[i])) * b[i];
    }
    return s;
}

class Ptycho : public ::testing::TestWithParam<int> {};

TEST_P(Ptycho, WindowsFollowTheDocumentedConvention) {
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto pos = positions();
    for (std::size_t k = 0; k < K; ++k) {
        const Win w = window(pos[2 * k], pos[2 * k + 1], steps);
        EXPECT_EQ(s.windows()[k].y0, w.y0);
        EXPECT_EQ(s.windows()[k].x0, w.x0);
        if (steps == 0) {
            EXPECT_NEAR(s.windows()[k].fy, w.fy, 1e-6);
            EXPECT_NEAR(s.windows()[k].fx, w.fx, 1e-6);
        } else {
            EXPECT_NEAR(s.bin_shift(s.bin(k)).first, w.fy, 1e-6);
            EXPECT_NEAR(s.bin_shift(s.bin(k)).second, w.fx, 1e-6);
        }
    }
}

TEST_P(Ptycho, ExitWavesMatchTheReferenceModel) {
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto o = object();
    const auto p = probe();
    std::vector<cf> exit(K * M * N * N);
    tomofuse::ptycho::exit_waves(s, o.data(), p.data(), exit.data(), 1);
    EXPECT_LT(tomofuse::test::rel_error(std::vector<cd>(exit.begin(), exit.end()), reference_exit(o, p, steps)), 2e-6);
}

TEST_P(Ptycho, GathersAreTheAdjointsOfTheForwardModel) {
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto o = object();
    const auto p = probe();
    const auto waves = tomofuse::test::random_complex(K * M * N * N, 31);
    const auto fwd = reference_exit(o, p, steps);
    // <A_P o, w> = <o, A_P^H w>, A_P: object -> exit waves at fixed probe.
    std::vector<cf> onum(H * W), pnum(M * N * N);
    std::vector<float> oden(H * W), pden(N * N), illum(H * W);
    tomofuse::ptycho::object_gather(s, p.data(), waves.data(), onum.data(), oden.data(), 2);
    tomofuse::ptycho::probe_gather(s, o.data(), waves.data(), pnum.data(), pden.data(), 2);
    const cd lhs = std::conj(inner(waves, fwd));  // <fwd, waves>
    EXPECT_LT(std::abs(lhs - inner(o, std::vector<cd>(onum.begin(), onum.end()))), 1e-4 * std::abs(lhs));
    EXPECT_LT(std::abs(lhs - inner(p, std::vector<cd>(pnum.begin(), pnum.end()))), 1e-4 * std::abs(lhs));
    // The illumination is object_gather's denominator.
    tomofuse::ptycho::illumination(s, p.data(), illum.data(), 2);
    EXPECT_TRUE(tomofuse::test::same_bits(illum, oden));
    // den = sum_k S_k^T sum_m |P_km|^2: <S o_r, power> = <o_r, den> for a real o_r.
    const auto real = tomofuse::test::random_reals(H * W, 32, 0.0, 1.0);
    std::vector<cf> o_r(real.begin(), real.end());
    std::vector<cf> ones(M * N * N, cf(1.0f, 0.0f));
    // The windows of o_r: with a probe of ones, the exit waves (a shifted constant is the constant).
    const auto windows_r = reference_exit(o_r, ones, steps);
    const auto exit_p = reference_exit(std::vector<cf>(H * W, cf(1.0f, 0.0f)), p, steps);  // P_km
    double lhs_den = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
        for (std::size_t q = 0; q < N * N; ++q) {
            double pw = 0.0;
            for (std::size_t m = 0; m < M; ++m) {
                pw += std::norm(exit_p[(k * M + m) * N * N + q]);
            }
            lhs_den += windows_r[k * M * N * N + q].real() * pw;
        }
    }
    double rhs_den = 0.0;
    for (std::size_t i = 0; i < H * W; ++i) {
        rhs_den += real[i] * oden[i];
    }
    EXPECT_NEAR(lhs_den, rhs_den, 1e-4 * std::abs(lhs_den));
    // probe_gather's den (plain model: sum_k |o_k|^2) for the bilinear model.
    if (steps == 0) {
        const auto ow = reference_exit(o, ones, 0);
        for (std::size_t q = 0; q < N * N; ++q) {
            double d = 0.0;
            for (std::size_t k = 0; k < K; ++k) {
                d += std::norm(ow[k * M * N * N + q]);
            }
            EXPECT_NEAR(pden[q], d, 1e-4 * d);
        }
    }
}

// Amplitudes (unitary DFT) of the reference model.
std::vector<float> amplitudes(const std::vector<cd>& exit) {
    std::vector<float> a(K * N * N);
    for (std::size_t k = 0; k < K; ++k) {
        std::vector<double> pw(N * N, 0.0);
        for (std::size_t m = 0; m < M; ++m) {
            const auto f = dft(std::vector<cd>(exit.begin() + static_cast<long>((k * M + m) * N * N),
                                               exit.begin() + static_cast<long>((k * M + m + 1) * N * N)),
                               -1);
            for (std::size_t q = 0; q < N * N; ++q) {
                pw[q] += std::norm(f[q]) / (N * N);
            }
        }
        for (std::size_t q = 0; q < N * N; ++q) {
            a[k * N * N + q] = static_cast<float>(std::sqrt(pw[q]));
        }
    }
    return a;
}

TEST_P(Ptycho, DifferenceMapWorkspaceChangesNothing) {
    // The caller's workspace (any contents) gives the iterations of calls that allocate their own
    // scratch, bit for bit, with object and probe updates and two overlap passes.
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto p0 = probe();
    const auto amp = amplitudes(reference_exit(object(), p0, steps));
    tomofuse::ptycho::DMOptions opt;
    opt.overlap_iterations = 2;
    auto run = [&](void* workspace) {
        std::vector<cf> o(H * W, cf(1.0f, 0.0f)), p = p0;
        std::vector<cf> exit(K * M * N * N);
        tomofuse::ptycho::exit_waves(s, o.data(), p.data(), exit.data(), 1);
        std::vector<double> err(K), model_err(K), all;
        for (int it = 0; it < 3; ++it) {
            tomofuse::ptycho::dm_iteration(s, {amp.data(), nullptr}, o.data(), p.data(), exit.data(), opt,
                                           err.data(), model_err.data(), 2, workspace);
            all.insert(all.end(), err.begin(), err.end());
            all.insert(all.end(), model_err.begin(), model_err.end());
        }
        return std::make_tuple(o, p, exit, all);
    };
    const auto plain = run(nullptr);
    std::vector<unsigned char> ws(tomofuse::ptycho::dm_workspace_bytes(s), 0xA5);
    const auto kept = run(ws.data());
    EXPECT_TRUE(tomofuse::test::same_bits(std::get<0>(plain), std::get<0>(kept)));
    EXPECT_TRUE(tomofuse::test::same_bits(std::get<1>(plain), std::get<1>(kept)));
    EXPECT_TRUE(tomofuse::test::same_bits(std::get<2>(plain), std::get<2>(kept)));
    EXPECT_TRUE(std::get<3>(plain) == std::get<3>(kept));
}

TEST_P(Ptycho, DifferenceMapHasTheTruthAsAFixedPoint) {
    // Consistent exit waves and measured amplitudes of the truth: the Fourier projection finds
    // no error and leaves the exit waves alone; with the whole-pixel windows of the shifted-probe
    // model the object update (an exact least-squares solve there) returns the truth.
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    auto o = object();
    auto p = probe();
    const auto truth_o = o;
    const auto amp = amplitudes(reference_exit(o, p, steps));
    std::vector<cf> exit(K * M * N * N);
    tomofuse::ptycho::exit_waves(s, o.data(), p.data(), exit.data(), 1);
    const auto truth_exit = exit;
    std::vector<double> err(K), model_err(K);
    tomofuse::ptycho::DMOptions opt;
    opt.update_object = steps > 0;
    opt.update_probe = false;
    tomofuse::ptycho::dm_iteration(s, {amp.data(), nullptr}, o.data(), p.data(), exit.data(), opt, err.data(),
                                   model_err.data(), 2);
    double total = 0.0;
    for (float a : amp) {
        total += static_cast<double>(a) * a;
    }
    for (std::size_t k = 0; k < K; ++k) {
        EXPECT_LT(err[k], 1e-9 * total);
        EXPECT_LT(model_err[k], 1e-9 * total);
    }
    EXPECT_LT(tomofuse::test::rel_error(exit, truth_exit), 1e-5);
    std::vector<float> illum(H * W);
    tomofuse::ptycho::illumination(s, p.data(), illum.data(), 1);
    const float imax = *std::max_element(illum.begin(), illum.end());
    for (std::size_t i = 0; i < H * W; ++i) {
        if (illum[i] > 0.1f * imax) {
            EXPECT_LT(std::abs(o[i] - truth_o[i]), 1e-4f) << i;
        }
    }
}

struct MLRun {
    std::vector<cf> far, chi, go, gp, dobj, dpr, qo, qp;
    std::vector<float> po, pp;
    tomofuse::ptycho::MLState state;
    MLRun()
        : far(K * M * N * N), chi(K * M * N * N), go(H * W), gp(M * N * N), dobj(H * W), dpr(M * N * N),
          qo(H * W), qp(M * N * N), po(H * W), pp(N * N) {
        state.grad_object = go.data();
        state.grad_probe = gp.data();
        state.precond_object = po.data();
        state.precond_probe = pp.data();
        state.dir_object = dobj.data();
        state.dir_probe = dpr.data();
        state.prev_grad_object = qo.data();
        state.prev_grad_probe = qp.data();
    }
    tomofuse::ptycho::MLBuffers buffers() { return {far.data(), chi.data()}; }
};

std::vector<float> intensities(int steps) {
    auto a = amplitudes(reference_exit(object(), probe(), steps));
    for (float& v : a) {
        v = std::round(v * v);
    }
    return a;
}

TEST_P(Ptycho, MlGradientMatchesFiniteDifferences) {
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto data = intensities(steps);
    auto o = object();
    for (auto& v : o) {
        v *= cf(0.97f, 0.05f);  // away from the minimum
    }
    const auto p = probe();
    MLRun run;
    tomofuse::ptycho::MLOptions opt;
    std::vector<double> nll(K);
    const tomofuse::ptycho::Data d{data.data(), nullptr};
    tomofuse::ptycho::ml_gradient(s, d, o.data(), p.data(), run.buffers(), opt, run.go.data(), run.gp.data(),
                                  run.po.data(), run.pp.data(), nll.data(), 1);
    // dL = 2 Re <g, dO> along a random direction h (central differences, t small).
    const auto h = tomofuse::test::random_complex(H * W, 41);
    const float t = 2e-3f;
    auto at = [&](float sign) {
        std::vector<cf> x(o);
        for (std::size_t i = 0; i < x.size(); ++i) {
            x[i] += sign * t * h[i];
        }
        MLRun r;
        std::vector<double> l(K);
        return tomofuse::ptycho::ml_gradient(s, d, x.data(), p.data(), r.buffers(), opt, r.go.data(), r.gp.data(),
                                             r.po.data(), r.pp.data(), l.data(), 1);
    };
    const double fd = (at(1.0f) - at(-1.0f)) / (2.0 * t);
    const double an = 2.0 * inner(run.go, std::vector<cd>(h.begin(), h.end())).real();
    EXPECT_NEAR(fd, an, 0.02 * std::abs(an));
    EXPECT_GT(std::abs(an), 1e-3 * std::abs(at(0.0f)));  // a real slope, not 0 = 0
    std::printf("ML directional derivative: finite differences %.6g, gradient %.6g\n", fd, an);
}

TEST_P(Ptycho, MlIterationsNeverIncreaseTheObjectiveAndIgnoreTheThreadCount) {
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto data = intensities(steps);
    const tomofuse::ptycho::Data d{data.data(), nullptr};
    std::vector<std::vector<cf>> results;
    for (int threads : {1, 2, 3}) {
        auto o = std::vector<cf>(H * W, cf(1.0f, 0.0f));
        auto p = probe();
        MLRun run;
        tomofuse::ptycho::MLOptions opt;
        opt.smoothness = 0.01;
        tomofuse::ptycho::ml_start(s, d, o.data(), p.data(), run.state, run.buffers(), opt, threads);
        double last = run.state.nll;
        for (int it = 0; it < 5; ++it) {
            const auto step = tomofuse::ptycho::ml_iteration(s, d, o.data(), p.data(), run.state, run.buffers(), opt,
                                                             threads);
            EXPECT_LE(step.nll, last);
            last = step.nll;
        }
        o.insert(o.end(), p.begin(), p.end());
        results.push_back(o);
    }
    EXPECT_TRUE(tomofuse::test::same_bits(results[0], results[1]));
    EXPECT_TRUE(tomofuse::test::same_bits(results[0], results[2]));
}

TEST_P(Ptycho, DifferenceMapIgnoresTheThreadCount) {
    const int steps = GetParam();
    const Scan s = make_scan(steps);
    const auto amp = amplitudes(reference_exit(object(), probe(), steps));
    std::vector<std::vector<cf>> results;
    for (int threads : {1, 2, 3}) {
        auto o = std::vector<cf>(H * W, cf(1.0f, 0.0f));
        auto p = probe();
        std::vector<cf> exit(K * M * N * N);
        tomofuse::ptycho::exit_waves(s, o.data(), p.data(), exit.data(), threads);
        std::vector<double> err(K);
        tomofuse::ptycho::DMOptions opt;
        opt.overlap_iterations = 2;
        for (int it = 0; it < 3; ++it) {
            tomofuse::ptycho::dm_iteration(s, {amp.data(), nullptr}, o.data(), p.data(), exit.data(), opt, err.data(),
                                           nullptr, threads);
        }
        o.insert(o.end(), p.begin(), p.end());
        o.insert(o.end(), exit.begin(), exit.end());
        results.push_back(o);
    }
    EXPECT_TRUE(tomofuse::test::same_bits(results[0], results[1]));
    EXPECT_TRUE(tomofuse::test::same_bits(results[0], results[2]));
}

TEST_P(Ptycho, AMovedScanComputesTheSame) {
    const int steps = GetParam();
    const auto o = object();
    const auto p = probe();
    std::vector<cf> a(K * M * N * N), b(K * M * N * N);
    std::optional<Scan> first(make_scan(steps));
    tomofuse::ptycho::exit_waves(*first, o.data(), p.data(), a.data(), 2);
    const Scan second(std::move(*first));
    first.reset();
    tomofuse::ptycho::exit_waves(second, o.data(), p.data(), b.data(), 2);
    EXPECT_TRUE(tomofuse::test::same_bits(a, b));
}

INSTANTIATE_TEST_SUITE_P(SubpixelModels, Ptycho, ::testing::Values(0, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                             return info.param == 0 ? std::string("bilinear") : std::string("shifted_probes");
                         });

TEST(PtychoArguments, BadArgumentsThrowInvalidArgument) {
    const auto pos = positions();
    EXPECT_THROW(Scan(N, M, H, W, pos.data(), K, 65), tomofuse::InvalidArgument);
    EXPECT_THROW(Scan(N, M, H, W, pos.data(), 0, 0), tomofuse::ShapeError);
    std::vector<double> outside = pos;
    outside[0] = 100.0;
    EXPECT_THROW(Scan(N, M, H, W, outside.data(), K, 0), tomofuse::InvalidArgument);
    const Scan s = make_scan(0);
    std::vector<cf> o(H * W), p(M * N * N), exit(K * M * N * N);
    std::vector<double> err(K);
    EXPECT_THROW(tomofuse::ptycho::dm_iteration(s, {nullptr, nullptr}, o.data(), p.data(), exit.data(), {},
                                                err.data()),
                 tomofuse::InvalidArgument);
    EXPECT_THROW(tomofuse::ptycho::exit_waves(s, o.data(), p.data(), exit.data(), -1), tomofuse::InvalidArgument);
}

}  // namespace
