// Maximum likelihood with a Poisson noise model (Thibault & Guizar-Sicairos, New J. Phys. 14,
// 063004 (2012)): gradient and preconditioners, the polynomial line search, and one
// preconditioned Polak-Ribiere conjugate-gradient iteration, with the Gaussian smoothness prior.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <vector>

#include "aligned.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"
#include "tomofuse/ptycho.hpp"

namespace tomofuse::ptycho {

namespace {

using namespace detail;
using tomofuse::detail::RegionErrors;

// Deterministic inner product Re sum conj(a) b (and |a|^2 weighted variants)
// over fixed chunks summed in order.
constexpr std::size_t kChunk = 4096;

template <typename F>
double chunked_sum(std::size_t count, int threads, F&& term) {
    const std::size_t chunks = (count + kChunk - 1) / kChunk;
    std::vector<double> part(chunks, 0.0);
    const auto nch = static_cast<std::ptrdiff_t>(chunks);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t c = 0; c < nch; ++c) {
        const std::size_t lo = static_cast<std::size_t>(c) * kChunk;
        const std::size_t hi = std::min(count, lo + kChunk);
        double acc = 0.0;
        for (std::size_t i = lo; i < hi; ++i) {
            acc += term(i);
        }
        part[static_cast<std::size_t>(c)] = acc;
    }
    double total = 0.0;
    for (double p : part) {
        total += p;
    }
    return total;
}

// Gaussian smoothness prior R(O) = mu sum over neighboring pixel pairs |O_i - O_j|^2
// (Thibault & Guizar-Sicairos 2012, sec. 3.4). Adds dR/dconj(O) to grad and returns R;
// rows in parallel, each row's sum in order, rows summed in order.
double smoothness_gradient(const Scan& s, const cfloat* o, double mu, cfloat* grad, int threads) {
    const std::size_t h = s.height();
    const std::size_t w = s.width();
    std::vector<double> rowsum(h, 0.0);
    const auto hh = static_cast<std::ptrdiff_t>(h);
    const auto fmu = static_cast<float>(mu);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t yy = 0; yy < hh; ++yy) {
        const auto y = static_cast<std::size_t>(yy);
        double acc = 0.0;
        for (std::size_t x = 0; x < w; ++x) {
            const cfloat c = o[y * w + x];
            cfloat g(0.0f, 0.0f);
            if (x + 1 < w) {
                const cfloat d = c - o[y * w + x + 1];
                acc += sq(d);
                g += d;
            }
            if (x > 0) {
                g += c - o[y * w + x - 1];
            }
            if (y + 1 < h) {
                const cfloat d = c - o[(y + 1) * w + x];
                acc += sq(d);
                g += d;
            }
            if (y > 0) {
                g += c - o[(y - 1) * w + x];
            }
            grad[y * w + x] += fmu * g;
        }
        rowsum[y] = acc;
    }
    return mu * ordered_sum(rowsum);
}

// (B1, B2) of the prior along h: R(O + a h) = R(O) + a B1 + a^2 B2.
void smoothness_line(const Scan& s, const cfloat* o, const cfloat* hdir, double mu, double* b1, double* b2,
                     int threads) {
    const std::size_t h = s.height();
    const std::size_t w = s.width();
    std::vector<double> r1(h, 0.0), r2(h, 0.0);
    const auto hh = static_cast<std::ptrdiff_t>(h);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t yy = 0; yy < hh; ++yy) {
        const auto y = static_cast<std::size_t>(yy);
        double a1 = 0.0;
        double a2 = 0.0;
        for (std::size_t x = 0; x < w; ++x) {
            const std::size_t i = y * w + x;
            if (x + 1 < w) {
                const std::complex<double> d(o[i] - o[i + 1]);
                const std::complex<double> e(hdir[i] - hdir[i + 1]);
                a1 += 2.0 * std::real(std::conj(d) * e);
                a2 += sq(e);
            }
            if (y + 1 < h) {
                const std::complex<double> d(o[i] - o[i + w]);
                const std::complex<double> e(hdir[i] - hdir[i + w]);
                a1 += 2.0 * std::real(std::conj(d) * e);
                a2 += sq(e);
            }
        }
        r1[y] = a1;
        r2[y] = a2;
    }
    *b1 = mu * ordered_sum(r1);
    *b2 = mu * ordered_sum(r2);
}

// Bytes of MLBuffers::shifted for this scan (0 for the bilinear model, which never uses it).
std::size_t shifted_workspace_bytes(const Scan& s) {
    return s.subpixel_steps() == 0 ? 0 : 2 * s.bins() * s.modes() * s.frame() * sizeof(cfloat);
}

// Half `slot` (0 or 1) of the workspace, or null (no workspace, or the bilinear model).
cfloat* shifted_slot(const Scan& s, cfloat* shifted, std::size_t slot) {
    if (shifted == nullptr || s.subpixel_steps() == 0) {
        return nullptr;
    }
    return shifted + slot * s.bins() * s.modes() * s.frame();
}

// ml_line_coefficients with the key of the workspace's first half (MLBuffers::shifted_key, or null):
// the shifted probes of `probe` are read from it when the key says they are the probe's.
void line_coefficients(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe,
                       const cfloat* h_object, const cfloat* h_probe, const cfloat* far_fields,
                       const MLOptions& options, double* b1, double* b2, int nthreads, cfloat* shifted,
                       unsigned char* key, const cfloat* chi);

}  // namespace

std::size_t ml_shifted_key_bytes(const Scan& s) { return shifted_key_bytes(s); }

double ml_gradient(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe,
                   const MLBuffers& buffers, const MLOptions& options, cfloat* grad_object, cfloat* grad_probe,
                   float* precond_object, float* precond_probe, double* nll, int nthreads) {
    check_pointers("ml_gradient", {intensities.values, object, probe, buffers.far, buffers.chi, grad_object,
                                   grad_probe, precond_object, precond_probe, nll});
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t hw = s.height() * s.width();
    const std::size_t waves = s.size() * modes * nn * sizeof(cfloat);
    check_no_overlap("ml_gradient",
                     {{"buffers.far", buffers.far, waves},
                      {"buffers.chi", buffers.chi, waves},
                      {"buffers.shifted", buffers.shifted, shifted_workspace_bytes(s)},
                      {"buffers.shifted_key", buffers.shifted_key, shifted_key_bytes(s)},
                      {"grad_object", grad_object, hw * sizeof(cfloat)},
                      {"grad_probe", grad_probe, modes * nn * sizeof(cfloat)},
                      {"precond_object", precond_object, hw * sizeof(float)},
                      {"precond_probe", precond_probe, nn * sizeof(float)},
                      {"nll", nll, s.size() * sizeof(double)}},
                     {{"intensities", intensities.values, s.size() * nn * sizeof(float)},
                      {"mask", intensities.mask, nn},
                      {"object", object, hw * sizeof(cfloat)},
                      {"probe", probe, modes * nn * sizeof(cfloat)}});
    const double inv_n2 = 1.0 / static_cast<double>(nn);  // |F_unitary|^2 = |F_unscaled|^2 / n^2
    const float inv_n2f = static_cast<float>(inv_n2);
    const float floor = options.intensity_floor;
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    const Probes ps = keyed_probes(s, probe, threads, shifted_slot(s, buffers.shifted, 0), buffers.shifted_key, true);
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o;
        std::vector<float> pw, wt;
        errors.run([&] {
            o.resize(nn);
            pw.resize(nn);
            wt.resize(nn);
        });
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            errors.run([&] {
                const auto k = static_cast<std::size_t>(kk);
                interpolate(s, object, s.windows()[k], o.data());
                cfloat* far = buffers.far + k * modes * nn;
                cfloat* chi = buffers.chi + k * modes * nn;
                for (std::size_t m = 0; m < modes; ++m) {
                    const cfloat* p = ps.of(s, k) + m * nn;
                    cfloat* fm = far + m * nn;
                    product(p, o.data(), fm, nn);
                    forward(s, fm);
                }
                const float* data = intensities.values + k * nn;
                for (std::size_t m = 0; m < modes; ++m) {
                    power(far + m * nn, pw.data(), nn, m == 0);
                }
                nll[k] = poisson_deviance(pw.data(), data, intensities.mask, inv_n2f, floor, nn);
                ml_weights(pw.data(), data, intensities.mask, inv_n2f, floor, wt.data(), nn);
                for (std::size_t m = 0; m < modes; ++m) {
                    weighted(far + m * nn, wt.data(), chi + m * nn, nn);
                }
                for (std::size_t m = 0; m < modes; ++m) {
                    backward(s, chi + m * nn);
                }
            });
        }
    }
    errors.rethrow();
    // Gradients w.r.t. conj(object) and conj(probe): chi is F^-1 (w Psi) in the unitary
    // normalization (the weight carries 1/n^2 for unscaled forward+backward).
    object_gather_impl(s, ps, buffers.chi, grad_object, precond_object, threads);
    if (options.update_probe) {
        probe_gather_impl(s, object, buffers.chi, grad_probe, precond_probe, threads,
                          shifted_slot(s, buffers.shifted, 1));
    } else {  // not needed: the probe is not updated
        std::fill(grad_probe, grad_probe + s.modes() * nn, cfloat(0.0f, 0.0f));
        std::fill(precond_probe, precond_probe + nn, 0.0f);
    }
    double total = 0.0;
    for (std::size_t k = 0; k < s.size(); ++k) {
        total += nll[k];
    }
    if (options.smoothness > 0.0) {
        total += smoothness_gradient(s, object, options.smoothness, grad_object, threads);
    }
    return total;
}

void ml_line_coefficients(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe,
                          const cfloat* h_object, const cfloat* h_probe, const cfloat* far_fields,
                          const MLOptions& options, double* b1, double* b2, int nthreads, cfloat* shifted,
                          const cfloat* chi) {
    line_coefficients(s, intensities, object, probe, h_object, h_probe, far_fields, options, b1, b2, nthreads,
                      shifted, nullptr, chi);
}

namespace {

void line_coefficients(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe,
                       const cfloat* h_object, const cfloat* h_probe, const cfloat* far_fields,
                       const MLOptions& options, double* b1, double* b2, int nthreads, cfloat* shifted,
                       unsigned char* key, const cfloat* chi) {
    check_pointers("ml_line_coefficients", {intensities.values, object, probe, h_object, h_probe, far_fields,
                                            b1, b2});
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const double inv_n2 = 1.0 / static_cast<double>(nn);
    const double floor = options.intensity_floor;
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    {
        const std::size_t hw = s.height() * s.width();
        const std::size_t pm = modes * nn;
        check_no_overlap("ml_line_coefficients",
                         {{"shifted", shifted, shifted_workspace_bytes(s)}, {"shifted_key", key, shifted_key_bytes(s)}},
                         {{"object", object, hw * sizeof(cfloat)},
                          {"probe", probe, pm * sizeof(cfloat)},
                          {"h_object", h_object, hw * sizeof(cfloat)},
                          {"h_probe", h_probe, pm * sizeof(cfloat)},
                          {"far", far_fields, s.size() * pm * sizeof(cfloat)},
                          {"chi", chi, chi == nullptr ? 0 : s.size() * pm * sizeof(cfloat)}});
    }
    // With chi, the term sum l' 2 Re(conj(F(P o)) F(h_P h_o)) of B2 is 2 Re <chi, h_P h_o> in real space
    // (chi = B(w F(P o)) with the weights w = l' of ml_gradient, B the adjoint of F): one transform per
    // pattern and mode fewer; equal up to rounding.
    const bool cross_in_real_space = chi != nullptr;
    const Probes ps = keyed_probes(s, probe, threads, shifted_slot(s, shifted, 0), key, true);
    const Probes hs = make_probes(s, h_probe, threads, shifted_slot(s, shifted, 1));
    std::vector<double> c1(s.size()), c2(s.size());
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o, d;
        std::vector<float> im, a1, a2;
        tomofuse::detail::AlignedArray<cfloat> f;
        errors.run([&] {
            o.resize(nn);
            d.resize(nn);
            im.resize(nn);
            a1.resize(nn);
            a2.resize(nn);
            f = tomofuse::detail::alloc_aligned<cfloat>(2 * modes * nn);
        });
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            errors.run([&] {
                const auto k = static_cast<std::size_t>(kk);
                const Window& w = s.windows()[k];
                double cross = 0.0;  // the cross term of B2 from real space (with chi)
                interpolate(s, object, w, o.data());
                interpolate(s, h_object, w, d.data());
                for (std::size_t m = 0; m < modes; ++m) {
                    const cfloat* p = ps.of(s, k) + m * nn;
                    const cfloat* hp = hs.of(s, k) + m * nn;
                    cfloat* d1 = f.get() + 2 * m * nn;
                    cfloat* d2 = d1 + nn;
                    product_sum(hp, o.data(), p, d.data(), d1, nn);
                    forward(s, d1);
                    if (cross_in_real_space) {
                        cross += cross_sum(chi + (k * modes + m) * nn, hp, d.data(), nn);
                    } else {
                        product(hp, d.data(), d2, nn);
                        forward(s, d2);
                    }
                }
                const cfloat* far = far_fields + k * modes * nn;
                const float* data = intensities.values + k * nn;
                for (std::size_t m = 0; m < modes; ++m) {
                    line_accumulate(far + m * nn, f.get() + 2 * m * nn,
                                    cross_in_real_space ? nullptr : f.get() + (2 * m + 1) * nn, im.data(), a1.data(),
                                    a2.data(), nn, m == 0);
                }
                line_sums(im.data(), a1.data(), a2.data(), data, intensities.mask, inv_n2, floor, nn, &c1[k], &c2[k]);
                c2[k] += 2.0 * cross;
            });
        }
    }
    errors.rethrow();
    *b1 = ordered_sum(c1);
    *b2 = ordered_sum(c2);
    if (options.smoothness > 0.0) {
        double r1 = 0.0;
        double r2 = 0.0;
        smoothness_line(s, object, h_object, options.smoothness, &r1, &r2, threads);
        *b1 += r1;
        *b2 += r2;
    }
}

}  // namespace

void ml_start(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe, MLState& state,
              const MLBuffers& buffers, const MLOptions& options, int nthreads) {
    std::vector<double> nll(s.size());
    state.nll = ml_gradient(s, intensities, object, probe, buffers, options, state.grad_object, state.grad_probe,
                            state.precond_object, state.precond_probe, nll.data(), nthreads);
}

MLStep ml_iteration(const Scan& s, const Data& intensities, cfloat* object, cfloat* probe, MLState& state,
                    const MLBuffers& buffers, const MLOptions& options, int nthreads) {
    check_pointers("ml_iteration", {object, probe, state.grad_object, state.grad_probe, state.precond_object,
                                    state.precond_probe, state.dir_object, state.dir_probe, state.prev_grad_object,
                                    state.prev_grad_probe});
    if (options.max_backtracks < 0) {
        throw InvalidArgument("tomofuse::ptycho::ml_iteration: max_backtracks must be >= 0");
    }
    const int threads = resolve_threads(nthreads);
    const std::size_t hw = s.height() * s.width();
    const std::size_t nn = s.frame();
    const std::size_t pm = s.modes() * nn;
    const std::size_t waves = s.size() * pm * sizeof(cfloat);
    check_no_overlap("ml_iteration",
                     {{"object", object, hw * sizeof(cfloat)},
                      {"probe", probe, pm * sizeof(cfloat)},
                      {"state.grad_object", state.grad_object, hw * sizeof(cfloat)},
                      {"state.grad_probe", state.grad_probe, pm * sizeof(cfloat)},
                      {"state.precond_object", state.precond_object, hw * sizeof(float)},
                      {"state.precond_probe", state.precond_probe, nn * sizeof(float)},
                      {"state.dir_object", state.dir_object, hw * sizeof(cfloat)},
                      {"state.dir_probe", state.dir_probe, pm * sizeof(cfloat)},
                      {"state.prev_grad_object", state.prev_grad_object, hw * sizeof(cfloat)},
                      {"state.prev_grad_probe", state.prev_grad_probe, pm * sizeof(cfloat)},
                      {"buffers.far", buffers.far, waves},
                      {"buffers.chi", buffers.chi, waves},
                      {"buffers.shifted", buffers.shifted, shifted_workspace_bytes(s)},
                      {"buffers.shifted_key", buffers.shifted_key, shifted_key_bytes(s)}},
                     {{"intensities", intensities.values, s.size() * nn * sizeof(float)},
                      {"mask", intensities.mask, nn}});
    MLStep step;

    // Preconditioned gradient z = M^-1 g (zero for a part that is not updated).
    auto reg = [&](const float* pre, std::size_t count) {
        float mx = 0.0f;
        for (std::size_t q = 0; q < count; ++q) {
            mx = std::max(mx, pre[q]);
        }
        return options.precond_regularization * mx + std::numeric_limits<float>::min();
    };
    const float ro = reg(state.precond_object, hw);
    const float rp = reg(state.precond_probe, nn);
    std::vector<cfloat> zo(hw), zp(pm);
    for (std::size_t q = 0; q < hw; ++q) {
        zo[q] = options.update_object ? state.grad_object[q] / (state.precond_object[q] + ro) : cfloat(0.0f, 0.0f);
    }
    for (std::size_t q = 0; q < pm; ++q) {
        zp[q] = options.update_probe ? state.grad_probe[q] / (state.precond_probe[q % nn] + rp) : cfloat(0.0f, 0.0f);
    }
    auto dot = [&](const cfloat* ao, const cfloat* bo, const cfloat* ap, const cfloat* bp) {
        return chunked_sum(hw, threads, [&](std::size_t q) {
                   return static_cast<double>(std::real(std::conj(ao[q]) * bo[q]));
               }) +
               chunked_sum(pm, threads, [&](std::size_t q) {
                   return static_cast<double>(std::real(std::conj(ap[q]) * bp[q]));
               });
    };
    const double zg = dot(zo.data(), state.grad_object, zp.data(), state.grad_probe);
    double beta = 0.0;
    if (state.prev_zg > 0.0) {
        const double zprev = dot(zo.data(), state.prev_grad_object, zp.data(), state.prev_grad_probe);
        beta = std::max(0.0, (zg - zprev) / state.prev_zg);
    }
    for (std::size_t q = 0; q < hw; ++q) {
        state.dir_object[q] = static_cast<float>(beta) * state.dir_object[q] - zo[q];
    }
    for (std::size_t q = 0; q < pm; ++q) {
        state.dir_probe[q] = static_cast<float>(beta) * state.dir_probe[q] - zp[q];
    }
    if (beta > 0.0 && dot(state.dir_object, state.grad_object, state.dir_probe, state.grad_probe) >= 0.0) {
        for (std::size_t q = 0; q < hw; ++q) {
            state.dir_object[q] = -zo[q];
        }
        for (std::size_t q = 0; q < pm; ++q) {
            state.dir_probe[q] = -zp[q];
        }
        step.restarted = true;
    }
    std::copy(state.grad_object, state.grad_object + hw, state.prev_grad_object);
    std::copy(state.grad_probe, state.grad_probe + pm, state.prev_grad_probe);
    state.prev_zg = zg;

    double b1 = 0.0;
    double b2 = 0.0;
    line_coefficients(s, intensities, object, probe, state.dir_object, state.dir_probe, buffers.far, options, &b1,
                      &b2, threads, buffers.shifted, buffers.shifted_key, buffers.chi);
    double alpha = 0.0;
    if (b1 < 0.0 && b2 > 0.0 && std::isfinite(b2)) {
        alpha = -b1 / (2.0 * b2);
    } else if (b1 < 0.0) {
        alpha = state.alpha > 0.0 ? 2.0 * state.alpha : 0.1 * state.nll / -b1;
    }

    const double nll0 = state.nll;
    std::vector<cfloat> o0(object, object + hw), p0(probe, probe + pm);
    std::vector<double> nll(s.size());
    bool accepted = false;
    if (alpha > 0.0 && std::isfinite(alpha)) {
        for (int bt = 0; bt <= options.max_backtracks; ++bt) {
            const auto a = static_cast<float>(alpha);
            for (std::size_t q = 0; q < hw; ++q) {
                object[q] = o0[q] + a * state.dir_object[q];
            }
            for (std::size_t q = 0; q < pm; ++q) {
                probe[q] = p0[q] + a * state.dir_probe[q];
            }
            const double value = ml_gradient(s, intensities, object, probe, buffers, options, state.grad_object,
                                             state.grad_probe, state.precond_object, state.precond_probe, nll.data(),
                                             threads);
            if (value <= nll0) {
                state.nll = value;
                accepted = true;
                break;
            }
            alpha *= 0.5;
            ++step.backtracks;
        }
    }
    if (!accepted) {
        std::copy(o0.begin(), o0.end(), object);
        std::copy(p0.begin(), p0.end(), probe);
        state.nll = ml_gradient(s, intensities, object, probe, buffers, options, state.grad_object, state.grad_probe,
                                state.precond_object, state.precond_probe, nll.data(), threads);
        state.prev_zg = 0.0;  // restart with steepest descent
        alpha = 0.0;
        step.restarted = true;
    }
    state.alpha = alpha;
    step.alpha = alpha;
    step.nll = state.nll;
    return step;
}

}  // namespace tomofuse::ptycho
