// The overlap operators of the engines: the object under each window, exit waves, and the
// gathers of object and probe from waves (each the adjoint of the forward model in the other
// factor), which the difference map and maximum likelihood share.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "aligned.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"
#include "tomofuse/ptycho.hpp"

namespace tomofuse::ptycho {

using tomofuse::detail::RegionErrors;

namespace detail {

namespace {

// Object rows (object gather) and probe rows (probe sums) per band: a thread takes whole bands and
// reads, for each pattern in turn, the band's rows of its wave (contiguous, so the hardware's
// prefetch follows them) into the band's output rows (kept in cache).  Row by row over all patterns,
// the reads jump between patterns at irregular distances and wait on memory (the two gathers took
// 40 % of a DM iteration at 419 x 128^2).  Every output pixel still sums the patterns in order: the
// result does not depend on the band or on how bands are split between threads.
constexpr std::size_t kBand = 16;

// Patterns whose window touches a band of kBand object rows (rows y0 .. y0 + n - 1 + (fy > 0)),
// in pattern order, for every band.
std::vector<std::vector<std::uint32_t>> bands_to_patterns(const Scan& s) {
    const std::size_t nb = (s.height() + kBand - 1) / kBand;
    std::vector<std::vector<std::uint32_t>> bands(nb);
    const auto& ws = s.windows();
    for (std::size_t k = 0; k < ws.size(); ++k) {
        const std::size_t top = static_cast<std::size_t>(ws[k].y0);
        const std::size_t last = top + s.n() - 1 + (ws[k].fy != 0.0f ? 1 : 0);
        for (std::size_t b = top / kBand; b <= last / kBand; ++b) {
            bands[b].push_back(static_cast<std::uint32_t>(k));
        }
    }
    return bands;
}

}  // namespace

void object_gather_impl(const Scan& s, const Probes& ps, const cfloat* waves, cfloat* num, float* den,
                        int threads, float* power_work) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t width = s.width();
    const std::size_t height = s.height();
    const auto& ws = s.windows();
    const auto bands = bands_to_patterns(s);
    // Probe power of each bin, summed over modes.
    const std::size_t bins = ps.bin_stride == 0 ? 1 : s.bins();
    std::vector<float> own;
    if (power_work == nullptr) {
        own.resize(bins * nn);
        power_work = own.data();
    }
    float* const power = power_work;
    const auto bin_count = static_cast<std::ptrdiff_t>(bins);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t bb = 0; bb < bin_count; ++bb) {
        const auto b = static_cast<std::size_t>(bb);
        const cfloat* pb = ps.base + b * ps.bin_stride;
        float* pw = power + b * nn;
        std::fill(pw, pw + nn, 0.0f);
        for (std::size_t m = 0; m < modes; ++m) {
            for (std::size_t q = 0; q < nn; ++q) {
                pw[q] += sq(pb[m * nn + q]);
            }
        }
    }
    const auto nbands = static_cast<std::ptrdiff_t>(bands.size());
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        // The last two window rows of g = sum_m conj(P_m) w_km of the current pattern (slot i % 2
        // holds row i): consecutive object rows share a window row, so each is computed once per
        // band. Recomputing gives the same bits.
        const bool gather = waves != nullptr;  // else only the illumination den
        std::vector<cfloat> cache;
        std::vector<cfloat> v;
        std::vector<float> pv;
        errors.run([&] {
            cache.resize(gather ? 2 * n : 0);
            v.resize(n);
            pv.resize(n);
        });
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t bb = 0; bb < nbands; ++bb) {
            errors.run([&] {
                const std::size_t y_lo = static_cast<std::size_t>(bb) * kBand;
                const std::size_t y_hi = std::min(height, y_lo + kBand);
                if (gather) {
                    std::fill(num + y_lo * width, num + y_hi * width, cfloat(0.0f, 0.0f));
                }
                std::fill(den + y_lo * width, den + y_hi * width, 0.0f);
                for (std::uint32_t k : bands[static_cast<std::size_t>(bb)]) {
                    const Window& w = ws[k];
                    std::int64_t cached[2] = {-1, -1};
                    auto row_of = [&](std::int64_t i) -> const cfloat* {
                        cfloat* g = cache.data() + static_cast<std::size_t>(i & 1) * n;
                        if (cached[i & 1] != i) {
                            const auto ii = static_cast<std::size_t>(i);
                            conj_product(ps.of(s, k) + ii * n, nn, waves + static_cast<std::size_t>(k) * modes * nn + ii * n,
                                         nn, modes, n, g);
                            cached[i & 1] = i;
                        }
                        return g;
                    };
                    const std::size_t top = static_cast<std::size_t>(w.y0);
                    const std::size_t end = top + n + (w.fy != 0.0f ? 1 : 0);
                    for (std::size_t y = std::max(y_lo, top); y < std::min(y_hi, end); ++y) {
                        cfloat* nrow = gather ? num + y * width : nullptr;
                        float* drow = den + y * width;
                        // Window row i1 = y - y0 with weight 1 - fy, and i0 = i1 - 1 with weight fy.
                        const std::int64_t i1 = static_cast<std::int64_t>(y) - w.y0;
                        const std::int64_t i0 = i1 - 1;
                        const bool has1 = i1 < static_cast<std::int64_t>(n);
                        const bool has0 = w.fy != 0.0f && i0 >= 0;
                        if (!has1 && !has0) {
                            continue;
                        }
                        const cfloat* g0 = gather && has0 ? row_of(i0) : nullptr;
                        const cfloat* g1 = gather && has1 ? row_of(i1) : nullptr;
                        const float* pw = power + (ps.bin_stride == 0 ? 0 : s.bin(k)) * nn;
                        spread_rows(gather ? nrow + w.x0 : nullptr, drow + w.x0, g1, g0,
                                    has1 ? pw + static_cast<std::size_t>(i1) * n : nullptr,
                                    has0 ? pw + static_cast<std::size_t>(i0) * n : nullptr, 1.0f - w.fy, w.fy,
                                    w.fx, n, v.data(), pv.data());
                    }
                }
            });
        }
    }
    errors.rethrow();
}

}  // namespace detail

using namespace detail;

void object_windows(const Scan& s, const cfloat* object, cfloat* out, int nthreads) {
    check_pointers("object_windows", {object, out});
    const int threads = resolve_threads(nthreads);
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t k = 0; k < count; ++k) {
        interpolate(s, object, s.windows()[static_cast<std::size_t>(k)], out + static_cast<std::size_t>(k) * s.frame());
    }
}

void exit_waves(const Scan& s, const cfloat* object, const cfloat* probe, cfloat* exit, int nthreads) {
    check_pointers("exit_waves", {object, probe, exit});
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    const Probes ps = make_probes(s, probe, threads);
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o;
        errors.run([&] { o.resize(nn); });
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t k = 0; k < count; ++k) {
            errors.run([&] {
                interpolate(s, object, s.windows()[static_cast<std::size_t>(k)], o.data());
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* e = exit + (static_cast<std::size_t>(k) * modes + m) * nn;
                    const cfloat* p = ps.of(s, static_cast<std::size_t>(k)) + m * nn;
                    product(p, o.data(), e, nn);
                }
            });
        }
    }
    errors.rethrow();
}

void position_equations(const Scan& s, const cfloat* object, const cfloat* probe, const cfloat* exit, double* out,
                        int nthreads, const void* dm_workspace) {
    check_pointers("position_equations", {object, probe, exit, out});
    const std::size_t n = s.n();
    if (n < 2) {
        throw InvalidArgument("tomofuse::ptycho::position_equations: the frame must be at least 2 x 2, got " +
                              std::to_string(n));
    }
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const bool shifted = s.subpixel_steps() > 0;
    Probes ps = dm_workspace != nullptr ? dm_workspace_probes(s, dm_workspace, probe) : Probes{};
    if (ps.base == nullptr) {
        ps = make_probes(s, probe, threads);
    }
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o, gy, gx, ty, tx;
        std::vector<float> syy, sxx, syx;
        errors.run([&] {
            o.resize(nn);
            gy.resize(n);
            gx.resize(n);
            ty.resize(n);
            tx.resize(n);
            syy.resize(n);
            sxx.resize(n);
            syx.resize(n);
        });
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            errors.run([&] {
                const auto k = static_cast<std::size_t>(kk);
                interpolate(s, object, s.windows()[k], o.data());
                const cfloat* p = ps.of(s, k);
                const cfloat* e = exit + k * modes * nn;
                double acc[5] = {0.0, 0.0, 0.0, 0.0, 0.0};  // a11, a12, a22, b1, b2
                for (std::size_t i = 0; i < n; ++i) {
                    // rows i - 1 and i + 1 (i and i + 1, i - 1 and i at the edges), weight 1/2 or 1
                    const std::size_t up = i == 0 ? 0 : i - 1, down = i + 1 == n ? i : i + 1;
                    const float cy = (i == 0 || i + 1 == n) ? 1.0f : 0.5f;
                    const cfloat* orow = o.data() + i * n;
                    if (shifted) {
                        // d = -grad(P_m) o: sum_m over the row, then the products with o
                        for (std::size_t m = 0; m < modes; ++m) {
                            const cfloat* pm = p + m * nn;
                            difference(pm + up * n, pm + down * n, cy, n, gy.data());
                            gradient_row(pm + i * n, n, gx.data());
                            position_terms_probe(gy.data(), gx.data(), pm + i * n, e + m * nn + i * n, orow, n, m == 0,
                                                 syy.data(), syx.data(), sxx.data(), ty.data(), tx.data());
                        }
                        position_sums_probe(orow, syy.data(), syx.data(), sxx.data(), ty.data(), tx.data(), n, acc);
                    } else {
                        // d = P_m grad(o): sum_m |P_m|^2 and conj(P_m) r_m over the row, then the products
                        // with the window's gradient
                        for (std::size_t m = 0; m < modes; ++m) {
                            const cfloat* pm = p + m * nn;
                            position_terms_object(pm + i * n, e + m * nn + i * n, orow, n, m == 0, syy.data(),
                                                  ty.data());
                        }
                        difference(o.data() + up * n, o.data() + down * n, cy, n, gy.data());
                        gradient_row(orow, n, gx.data());
                        position_sums_object(gy.data(), gx.data(), syy.data(), ty.data(), n, acc);
                    }
                }
                std::copy(acc, acc + 5, out + 5 * k);
            });
        }
    }
    errors.rethrow();
}

void position_equations_modulus(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe,
                                double* out, int nthreads) {
    check_pointers("position_equations_modulus", {intensities.values, object, probe, out});
    const std::size_t n = s.n();
    if (n < 2) {
        throw InvalidArgument("tomofuse::ptycho::position_equations_modulus: the frame must be at least 2 x 2, got " +
                              std::to_string(n));
    }
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const Probes ps = make_probes(s, probe, threads);
    const double inv_n = 1.0 / static_cast<double>(n);  // |F_unitary| = |F_unscaled| / n
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o, gy, gx;
        std::vector<float> pw, jy, jx;
        tomofuse::detail::AlignedArray<cfloat> f, t;
        errors.run([&] {
            o.resize(nn);
            gy.resize(nn);
            gx.resize(nn);
            pw.resize(nn);
            jy.resize(nn);
            jx.resize(nn);
            f = tomofuse::detail::alloc_aligned<cfloat>(modes * nn);
            t = tomofuse::detail::alloc_aligned<cfloat>(nn);
        });
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            errors.run([&] {
                const auto k = static_cast<std::size_t>(kk);
                interpolate(s, object, s.windows()[k], o.data());
                const cfloat* p = ps.of(s, k);
                // the model's far fields F(P_m o) and their power
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* fm = f.get() + m * nn;
                    product(p + m * nn, o.data(), fm, nn);
                    forward(s, fm);
                    power(fm, pw.data(), nn, m == 0);
                }
                // the window's gradient (numpy.gradient's differences)
                for (std::size_t i = 0; i < n; ++i) {
                    const std::size_t up = i == 0 ? 0 : i - 1, down = i + 1 == n ? i : i + 1;
                    const float cy = (i == 0 || i + 1 == n) ? 1.0f : 0.5f;
                    difference(o.data() + up * n, o.data() + down * n, cy, n, gy.data() + i * n);
                    gradient_row(o.data() + i * n, n, gx.data() + i * n);
                }
                // sum_m Re(conj(F(P_m o)) F(P_m d_i o)), i = y, x
                for (int axis = 0; axis < 2; ++axis) {
                    const cfloat* g = axis == 0 ? gy.data() : gx.data();
                    float* j = axis == 0 ? jy.data() : jx.data();
                    for (std::size_t m = 0; m < modes; ++m) {
                        const cfloat* fm = f.get() + m * nn;
                        product(p + m * nn, g, t.get(), nn);
                        forward(s, t.get());
                        for (std::size_t q = 0; q < nn; ++q) {
                            const float v = fm[q].real() * t[q].real() + fm[q].imag() * t[q].imag();
                            j[q] = m == 0 ? v : j[q] + v;
                        }
                    }
                }
                // normal equations over the valid pixels, in double, in pixel order
                const float* in = intensities.values + k * nn;
                double acc[5] = {0.0, 0.0, 0.0, 0.0, 0.0};  // a11, a12, a22, b1, b2
                for (std::size_t q = 0; q < nn; ++q) {
                    if ((intensities.mask != nullptr && intensities.mask[q] == 0) || !(pw[q] > 0.0f)) {
                        continue;
                    }
                    const double root = std::sqrt(static_cast<double>(pw[q]));
                    const double dy = static_cast<double>(jy[q]) * inv_n / root;
                    const double dx = static_cast<double>(jx[q]) * inv_n / root;
                    const double r = std::sqrt(std::max(0.0, static_cast<double>(in[q]))) - root * inv_n;
                    acc[0] += dy * dy;
                    acc[1] += dy * dx;
                    acc[2] += dx * dx;
                    acc[3] += dy * r;
                    acc[4] += dx * r;
                }
                std::copy(acc, acc + 5, out + 5 * k);
            });
        }
    }
    errors.rethrow();
}

void illumination(const Scan& s, const cfloat* probe, float* den, int nthreads) {
    check_pointers("illumination", {probe, den});
    const int threads = resolve_threads(nthreads);
    object_gather_impl(s, make_probes(s, probe, threads), nullptr, nullptr, den, threads);
}

void object_gather(const Scan& s, const cfloat* probe, const cfloat* waves, cfloat* num, float* den, int nthreads) {
    check_pointers("object_gather", {probe, waves, num, den});
    const int threads = resolve_threads(nthreads);
    object_gather_impl(s, make_probes(s, probe, threads), waves, num, den, threads);
}

namespace detail {

void probe_sums(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* acc, float* dacc, int threads) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t width = s.width();
    const auto& ws = s.windows();
    const auto nbands = static_cast<std::ptrdiff_t>((n + kBand - 1) / kBand);
    const bool shifted = s.subpixel_steps() > 0;
    const std::size_t bins = shifted ? s.bins() : 1;
    const std::size_t bin_stride = shifted ? modes * nn : 0;
    const std::size_t den_stride = shifted ? nn : 0;
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o;
        errors.run([&] { o.resize(n); });
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t bb = 0; bb < nbands; ++bb) {
            errors.run([&] {
                const std::size_t i_lo = static_cast<std::size_t>(bb) * kBand;
                const std::size_t i_hi = std::min(n, i_lo + kBand);
                for (std::size_t b = 0; b < bins; ++b) {
                    for (std::size_t m = 0; m < modes; ++m) {
                        cfloat* rows = acc + b * bin_stride + m * nn;
                        std::fill(rows + i_lo * n, rows + i_hi * n, cfloat(0.0f, 0.0f));
                    }
                    float* d = dacc + b * den_stride;
                    std::fill(d + i_lo * n, d + i_hi * n, 0.0f);
                }
                for (std::size_t k = 0; k < ws.size(); ++k) {
                    const Window& w = ws[k];
                    for (std::size_t i = i_lo; i < i_hi; ++i) {
                        const cfloat* a =
                            object + (static_cast<std::size_t>(w.y0) + i) * width + static_cast<std::size_t>(w.x0);
                        interp_row(a, w.fy != 0.0f ? a + width : nullptr, w.fy, w.fx, n, o.data());
                        gather_probe_row(o.data(), waves + k * modes * nn + i * n, nn, modes,
                                         acc + s.bin(k) * bin_stride + i * n, nn, dacc + s.bin(k) * den_stride + i * n,
                                         n);
                    }
                }
            });
        }
    }
    errors.rethrow();
}

namespace {

// den[q] = sum over bins of dacc[b, q], bins in order (rows of pixels in parallel).
void sum_bins(const float* dacc, std::size_t bins, std::size_t nn, float* den, int threads) {
    constexpr std::size_t kRow = 1024;
    const auto rows = static_cast<std::ptrdiff_t>((nn + kRow - 1) / kRow);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const std::size_t lo = static_cast<std::size_t>(r) * kRow;
        const std::size_t hi = std::min(nn, lo + kRow);
        std::fill(den + lo, den + hi, 0.0f);
        for (std::size_t b = 0; b < bins; ++b) {
            const float* d = dacc + b * nn;
            for (std::size_t q = lo; q < hi; ++q) {
                den[q] += d[q];
            }
        }
    }
}

}  // namespace

void probe_update_terms(const Scan& s, const Probes& ps, const cfloat* object, const cfloat* waves,
                        const cfloat* probe, cfloat* num, float* den, int threads, cfloat* acc_work,
                        float* dacc_work) {
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    if (s.subpixel_steps() == 0) {
        probe_sums(s, object, waves, num, den, threads);  // the normal equations are diagonal
        return;
    }
    // Shifted probes: the normal equations sum_b S_b^H D_b S_b P = sum_b S_b^H num_b are not
    // diagonal. One step preconditioned by their diagonal part D = sum_b D_b: the residual
    // r = sum_b S_b^H (num_b - D_b S_b P) (from the shifted probes already at hand), and
    // num = r + D P, so that the damped division (num + c P) / (D + c) = P + r / (D + c). Its
    // fixed point is the exact least-squares probe; the step costs the transforms of the plain
    // gather.
    const std::size_t bins = s.bins();
    std::vector<cfloat> own_acc;
    std::vector<float> own_dacc;
    if (acc_work == nullptr) {
        own_acc.resize(bins * modes * nn);
        acc_work = own_acc.data();
    }
    if (dacc_work == nullptr) {
        own_dacc.resize(bins * nn);
        dacc_work = own_dacc.data();
    }
    cfloat* const acc = acc_work;
    const float* const dacc = dacc_work;
    probe_sums(s, object, waves, acc_work, dacc_work, threads);
    sum_bins(dacc, bins, nn, den, threads);
    const auto rows = static_cast<std::ptrdiff_t>(bins * modes);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const auto b = static_cast<std::size_t>(r) / modes;
        const auto m = static_cast<std::size_t>(r) % modes;
        cfloat* a = acc + (b * modes + m) * nn;
        const cfloat* pb = ps.base + b * ps.bin_stride + m * nn;
        const float* d = dacc + b * nn;
        for (std::size_t q = 0; q < nn; ++q) {
            a[q] -= d[q] * pb[q];
        }
    }
    unshift_sum_modes(s, acc, num, modes, threads);
    for (std::size_t m = 0; m < modes; ++m) {
        for (std::size_t q = 0; q < nn; ++q) {
            num[m * nn + q] += den[q] * probe[m * nn + q];
        }
    }
}

void probe_gather_impl(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* num, float* den,
                       int threads, cfloat* work) {
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    if (s.subpixel_steps() == 0) {
        probe_sums(s, object, waves, num, den, threads);
        return;
    }
    // With shifted probes, accumulate numerator and denominator per bin, undo each bin's shift
    // in the numerator (the adjoint of the shifts) and sum the denominators: the diagonal of
    // sum_k |o_k|^2, a preconditioner of the (non-diagonal) normal operator.
    const std::size_t bins = s.bins();
    std::vector<cfloat> own;
    if (work == nullptr) {
        own.resize(bins * modes * nn);
        work = own.data();
    }
    std::vector<float> den_bin(bins * nn);
    probe_sums(s, object, waves, work, den_bin.data(), threads);
    unshift_sum_modes(s, work, num, modes, threads);
    sum_bins(den_bin.data(), bins, nn, den, threads);
}

}  // namespace detail

void probe_gather(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* num, float* den, int nthreads) {
    check_pointers("probe_gather", {object, waves, num, den});
    detail::probe_gather_impl(s, object, waves, num, den, resolve_threads(nthreads), nullptr);
}

}  // namespace tomofuse::ptycho
