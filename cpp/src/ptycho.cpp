#include "tomofuse/ptycho.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>

#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::ptycho {

namespace {

using fft::Direction;
using fft::Norm;

// 64-byte aligned scratch frames (one set per thread), RAII.
struct FreeDeleter {
    void operator()(cfloat* p) const noexcept { std::free(p); }
};
using Frames = std::unique_ptr<cfloat[], FreeDeleter>;

Frames alloc_frames(std::size_t count) {
    std::size_t bytes = count * sizeof(cfloat);
    bytes = (bytes + 63) / 64 * 64;
    auto* p = static_cast<cfloat*>(std::aligned_alloc(64, bytes));
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    return Frames(p);
}

// Unscaled transforms of one frame in place (FFTW's own scaling conventions:
// forward with Norm::Backward and backward with Norm::Forward are unscaled).
inline void forward(const Scan& s, cfloat* f) {
    s.plan().execute(f, f, 1, Direction::Forward, Norm::Backward, 1);
}
inline void backward(const Scan& s, cfloat* f) {
    s.plan().execute(f, f, 1, Direction::Backward, Norm::Forward, 1);
}

// Bilinear interpolation of the object under window w into out (N x N).
void interpolate(const Scan& s, const cfloat* object, const Window& w, cfloat* out) {
    const std::size_t n = s.n();
    const std::size_t width = s.width();
    const float fy = w.fy;
    const float fx = w.fx;
    for (std::size_t i = 0; i < n; ++i) {
        const cfloat* a = object + (static_cast<std::size_t>(w.y0) + i) * width + static_cast<std::size_t>(w.x0);
        cfloat* o = out + i * n;
        if (fx == 0.0f) {
            for (std::size_t j = 0; j < n; ++j) {
                o[j] = a[j];
            }
        } else {
            const float gx = 1.0f - fx;
            for (std::size_t j = 0; j < n; ++j) {
                o[j] = gx * a[j] + fx * a[j + 1];
            }
        }
        if (fy != 0.0f) {
            const cfloat* b = a + width;
            const float gy = 1.0f - fy;
            if (fx == 0.0f) {
                for (std::size_t j = 0; j < n; ++j) {
                    o[j] = gy * o[j] + fy * b[j];
                }
            } else {
                const float gx = 1.0f - fx;
                for (std::size_t j = 0; j < n; ++j) {
                    o[j] = gy * o[j] + fy * (gx * b[j] + fx * b[j + 1]);
                }
            }
        }
    }
}

// Spread one window row g (N values) with weight wy onto object row `row` (W
// values) with the column fraction fx: row[x0 + j] += wy (1 - fx) g[j],
// row[x0 + j + 1] += wy fx g[j]. Fixed order: j ascending, left tap first.
template <typename T>
inline void spread_row(T* row, const T* g, std::size_t n, std::int64_t x0, float wy, float fx) {
    T* r = row + x0;
    if (fx == 0.0f) {
        for (std::size_t j = 0; j < n; ++j) {
            r[j] += wy * g[j];
        }
    } else {
        const float a = wy * (1.0f - fx);
        const float b = wy * fx;
        for (std::size_t j = 0; j < n; ++j) {
            r[j] += a * g[j];
            r[j + 1] += b * g[j];
        }
    }
}

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

double ordered_sum(const std::vector<double>& v) {
    double t = 0.0;
    for (double x : v) {
        t += x;
    }
    return t;
}

inline bool valid(const Data& d, std::size_t q) { return d.mask == nullptr || d.mask[q] != 0; }

void check_pointers(const char* where, std::initializer_list<const void*> ptrs) {
    for (const void* p : ptrs) {
        if (p == nullptr) {
            throw InvalidArgument(std::string("tomofuse::ptycho::") + where + ": null array pointer");
        }
    }
}

// Patterns whose window touches object row y (rows y0 .. y0 + n - 1 + (fy > 0)), in
// pattern order, for every row.
std::vector<std::vector<std::uint32_t>> rows_to_patterns(const Scan& s) {
    std::vector<std::vector<std::uint32_t>> rows(s.height());
    const auto& ws = s.windows();
    for (std::size_t k = 0; k < ws.size(); ++k) {
        const std::size_t top = static_cast<std::size_t>(ws[k].y0);
        const std::size_t last = top + s.n() - 1 + (ws[k].fy != 0.0f ? 1 : 0);
        for (std::size_t y = top; y <= last; ++y) {
            rows[y].push_back(static_cast<std::uint32_t>(k));
        }
    }
    return rows;
}


// Gaussian smoothness prior R(O) = mu sum over neighbouring pixel pairs |O_i - O_j|^2
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
                acc += std::norm(d);
                g += d;
            }
            if (x > 0) {
                g += c - o[y * w + x - 1];
            }
            if (y + 1 < h) {
                const cfloat d = c - o[(y + 1) * w + x];
                acc += std::norm(d);
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
                a2 += std::norm(e);
            }
            if (y + 1 < h) {
                const std::complex<double> d(o[i] - o[i + w]);
                const std::complex<double> e(hdir[i] - hdir[i + w]);
                a1 += 2.0 * std::real(std::conj(d) * e);
                a2 += std::norm(e);
            }
        }
        r1[y] = a1;
        r2[y] = a2;
    }
    *b1 = mu * ordered_sum(r1);
    *b2 = mu * ordered_sum(r2);
}

}  // namespace

Scan::Scan(std::size_t n, std::size_t modes, std::size_t height, std::size_t width, const double* positions,
           std::size_t count)
    : n_(n), modes_(modes), height_(height), width_(width), plan_(n == 0 ? 1 : n, n == 0 ? 1 : n) {
    if (n == 0 || modes == 0 || height == 0 || width == 0) {
        throw ShapeError("tomofuse::ptycho::Scan: pattern size, modes and object shape must be > 0");
    }
    if (count == 0) {
        throw ShapeError("tomofuse::ptycho::Scan: the scan holds no positions (empty scan)");
    }
    if (count > std::numeric_limits<std::uint32_t>::max()) {
        throw ShapeError("tomofuse::ptycho::Scan: too many positions");
    }
    if (positions == nullptr) {
        throw InvalidArgument("tomofuse::ptycho::Scan: positions must not be null");
    }
    windows_.resize(count);
    const auto h2 = static_cast<std::int64_t>(height / 2);
    const auto w2 = static_cast<std::int64_t>(width / 2);
    const auto n2 = static_cast<std::int64_t>(n / 2);
    for (std::size_t k = 0; k < count; ++k) {
        const double y = positions[2 * k];
        const double x = positions[2 * k + 1];
        if (!std::isfinite(y) || !std::isfinite(x) || std::abs(y) > 1e9 || std::abs(x) > 1e9) {
            throw InvalidArgument("positions: position " + std::to_string(k) + " is not finite");
        }
        const double fly = std::floor(y);
        const double flx = std::floor(x);
        Window w;
        w.y0 = static_cast<std::int64_t>(fly) + h2 - n2;
        w.x0 = static_cast<std::int64_t>(flx) + w2 - n2;
        w.fy = static_cast<float>(y - fly);
        w.fx = static_cast<float>(x - flx);
        if (w.fy >= 1.0f) {  // rounding of a value just below an integer
            w.fy = 0.0f;
            w.y0 += 1;
        }
        if (w.fx >= 1.0f) {
            w.fx = 0.0f;
            w.x0 += 1;
        }
        const std::int64_t rows = static_cast<std::int64_t>(n) + (w.fy != 0.0f ? 1 : 0);
        const std::int64_t cols = static_cast<std::int64_t>(n) + (w.fx != 0.0f ? 1 : 0);
        if (w.y0 < 0 || w.x0 < 0 || w.y0 + rows > static_cast<std::int64_t>(height) ||
            w.x0 + cols > static_cast<std::int64_t>(width)) {
            throw InvalidArgument("positions: position " + std::to_string(k) + " (y, x) = (" + std::to_string(y) +
                                  ", " + std::to_string(x) + ") puts the " + std::to_string(n) + "x" +
                                  std::to_string(n) + " probe window outside the " + std::to_string(height) + "x" +
                                  std::to_string(width) + " object");
        }
        windows_[k] = w;
    }
}

void exit_waves(const Scan& s, const cfloat* object, const cfloat* probe, cfloat* exit, int nthreads) {
    check_pointers("exit_waves", {object, probe, exit});
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn);
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t k = 0; k < count; ++k) {
            interpolate(s, object, s.windows()[static_cast<std::size_t>(k)], o.data());
            for (std::size_t m = 0; m < modes; ++m) {
                cfloat* e = exit + (static_cast<std::size_t>(k) * modes + m) * nn;
                const cfloat* p = probe + m * nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    e[q] = p[q] * o[q];
                }
            }
        }
    }
}

void object_gather(const Scan& s, const cfloat* probe, const cfloat* waves, cfloat* num, float* den, int nthreads) {
    check_pointers("object_gather", {probe, waves, num, den});
    const int threads = resolve_threads(nthreads);
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t width = s.width();
    const auto& ws = s.windows();
    const auto rows = rows_to_patterns(s);
    // Probe power, summed over modes.
    std::vector<float> power(nn, 0.0f);
    for (std::size_t m = 0; m < modes; ++m) {
        for (std::size_t q = 0; q < nn; ++q) {
            power[q] += std::norm(probe[m * nn + q]);
        }
    }
    const auto height = static_cast<std::ptrdiff_t>(s.height());
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> g(n);
        TOMOFUSE_OMP(for schedule(dynamic, 4))
        for (std::ptrdiff_t yy = 0; yy < height; ++yy) {
            const auto y = static_cast<std::size_t>(yy);
            cfloat* nrow = num + y * width;
            float* drow = den + y * width;
            std::fill(nrow, nrow + width, cfloat(0.0f, 0.0f));
            std::fill(drow, drow + width, 0.0f);
            for (std::uint32_t k : rows[y]) {
                const Window& w = ws[k];
                // Window row i = y - y0 with weight 1 - fy, and i = y - y0 - 1 with weight fy.
                for (int tap = 0; tap < 2; ++tap) {
                    const std::int64_t i = static_cast<std::int64_t>(y) - w.y0 - tap;
                    const float wy = tap == 0 ? 1.0f - w.fy : w.fy;
                    if (i < 0 || i >= static_cast<std::int64_t>(n) || wy == 0.0f) {
                        continue;
                    }
                    const auto ii = static_cast<std::size_t>(i);
                    for (std::size_t j = 0; j < n; ++j) {
                        cfloat acc(0.0f, 0.0f);
                        for (std::size_t m = 0; m < modes; ++m) {
                            acc += std::conj(probe[m * nn + ii * n + j]) *
                                   waves[(static_cast<std::size_t>(k) * modes + m) * nn + ii * n + j];
                        }
                        g[j] = acc;
                    }
                    spread_row(nrow, g.data(), n, w.x0, wy, w.fx);
                    spread_row(drow, power.data() + ii * n, n, w.x0, wy, w.fx);
                }
            }
        }
    }
}

void probe_gather(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* num, float* den, int nthreads) {
    check_pointers("probe_gather", {object, waves, num, den});
    const int threads = resolve_threads(nthreads);
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t width = s.width();
    const auto& ws = s.windows();
    const auto nrows = static_cast<std::ptrdiff_t>(n);
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(n);
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t ii = 0; ii < nrows; ++ii) {
            const auto i = static_cast<std::size_t>(ii);
            for (std::size_t m = 0; m < modes; ++m) {
                std::fill(num + m * nn + i * n, num + m * nn + (i + 1) * n, cfloat(0.0f, 0.0f));
            }
            float* d = den + i * n;
            std::fill(d, d + n, 0.0f);
            for (std::size_t k = 0; k < ws.size(); ++k) {
                const Window& w = ws[k];
                // Row i of the interpolated window.
                const cfloat* a = object + (static_cast<std::size_t>(w.y0) + i) * width + static_cast<std::size_t>(w.x0);
                const float gx = 1.0f - w.fx;
                for (std::size_t j = 0; j < n; ++j) {
                    o[j] = w.fx == 0.0f ? a[j] : gx * a[j] + w.fx * a[j + 1];
                }
                if (w.fy != 0.0f) {
                    const cfloat* b = a + width;
                    const float gy = 1.0f - w.fy;
                    for (std::size_t j = 0; j < n; ++j) {
                        const cfloat bj = w.fx == 0.0f ? b[j] : gx * b[j] + w.fx * b[j + 1];
                        o[j] = gy * o[j] + w.fy * bj;
                    }
                }
                for (std::size_t j = 0; j < n; ++j) {
                    d[j] += std::norm(o[j]);
                }
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* nm = num + m * nn + i * n;
                    const cfloat* wv = waves + (k * modes + m) * nn + i * n;
                    for (std::size_t j = 0; j < n; ++j) {
                        nm[j] += std::conj(o[j]) * wv[j];
                    }
                }
            }
        }
    }
}

namespace {

// x <- (num + c x) / (den + c), c = inertia * max(den), elementwise.
template <typename Index>
void damped_divide(cfloat* x, const cfloat* num, const float* den, Index count, std::size_t stride_den, float inertia,
                   int threads) {
    float dmax = 0.0f;
    const std::size_t nden = stride_den;
    for (std::size_t q = 0; q < nden; ++q) {
        dmax = std::max(dmax, den[q]);
    }
    const float c = inertia * dmax;
    const auto total = static_cast<std::ptrdiff_t>(count);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t q = 0; q < total; ++q) {
        const auto u = static_cast<std::size_t>(q);
        const float d = den[u % stride_den] + c;
        if (d > 0.0f) {
            x[u] = (num[u] + c * x[u]) / d;
        }
    }
}

}  // namespace

void dm_iteration(const Scan& s, const Data& amplitudes, cfloat* object, cfloat* probe, cfloat* exit,
                  const DMOptions& options, double* error, double* model_error, int nthreads) {
    check_pointers("dm_iteration", {amplitudes.values, object, probe, exit, error});
    if (options.overlap_iterations < 1) {
        throw InvalidArgument("tomofuse::ptycho::dm_iteration: overlap_iterations must be >= 1");
    }
    const int threads = resolve_threads(nthreads);
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t hw = s.height() * s.width();

    // 1. Overlap projection.
    if (options.update_object || options.update_probe) {
        std::vector<cfloat> onum(options.update_object ? hw : 0);
        std::vector<float> oden(options.update_object ? hw : 0);
        std::vector<cfloat> pnum(options.update_probe ? modes * nn : 0);
        std::vector<float> pden(options.update_probe ? nn : 0);
        for (int it = 0; it < options.overlap_iterations; ++it) {
            if (options.update_object) {
                object_gather(s, probe, exit, onum.data(), oden.data(), threads);
                damped_divide(object, onum.data(), oden.data(), hw, hw, options.object_inertia, threads);
            }
            if (options.update_probe) {
                probe_gather(s, object, exit, pnum.data(), pden.data(), threads);
                damped_divide(probe, pnum.data(), pden.data(), modes * nn, nn, options.probe_inertia, threads);
            }
        }
    }

    // 2. Fourier projection of 2 P o - exit, fused per pattern.
    const float scale = static_cast<float>(n);            // |F_unscaled| = n |F_unitary|
    const float inv_nn = 1.0f / static_cast<float>(nn);   // undo the unscaled forward + backward
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn);
        std::vector<float> mag(nn);
        Frames f = alloc_frames(modes * nn);
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            const auto k = static_cast<std::size_t>(kk);
            interpolate(s, object, s.windows()[k], o.data());
            const float* amp = amplitudes.values + k * nn;
            if (model_error != nullptr) {
                // Error of the current model P o_k (one more transform per mode).
                for (std::size_t m = 0; m < modes; ++m) {
                    const cfloat* p = probe + m * nn;
                    cfloat* fm = f.get() + m * nn;
                    for (std::size_t q = 0; q < nn; ++q) {
                        fm[q] = p[q] * o[q];
                    }
                    forward(s, fm);
                }
                double merr = 0.0;
                for (std::size_t q = 0; q < nn; ++q) {
                    if (!valid(amplitudes, q)) {
                        continue;
                    }
                    float p2 = 0.0f;
                    for (std::size_t m = 0; m < modes; ++m) {
                        p2 += std::norm(f[m * nn + q]);
                    }
                    const double d = static_cast<double>(std::sqrt(p2) / scale) - static_cast<double>(amp[q]);
                    merr += d * d;
                }
                model_error[k] = merr;
            }
            for (std::size_t m = 0; m < modes; ++m) {
                const cfloat* p = probe + m * nn;
                const cfloat* e = exit + (k * modes + m) * nn;
                cfloat* fm = f.get() + m * nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    fm[q] = 2.0f * (p[q] * o[q]) - e[q];
                }
                forward(s, fm);
            }
            // Model amplitudes (unitary) and the error before the constraint.
            double err = 0.0;
            for (std::size_t q = 0; q < nn; ++q) {
                float p2 = 0.0f;
                for (std::size_t m = 0; m < modes; ++m) {
                    p2 += std::norm(f[m * nn + q]);
                }
                const float mod = std::sqrt(p2) / scale;
                mag[q] = mod;
                if (valid(amplitudes, q)) {
                    const double d = static_cast<double>(mod) - static_cast<double>(amp[q]);
                    err += d * d;
                }
            }
            error[k] = err;
            // Relaxed modulus constraint: move the model amplitude towards the measured one
            // until the remaining error equals the bound (the whole way when bound = 0).
            const double bound = options.bound == nullptr ? 0.0 : options.bound[k];
            const float keep = err > bound ? static_cast<float>(std::sqrt(bound / err)) : 1.0f;
            for (std::size_t q = 0; q < nn; ++q) {
                float factor = inv_nn;
                if (valid(amplitudes, q)) {
                    const float mod = mag[q];
                    const float target = amp[q] + keep * (mod - amp[q]);
                    factor = mod > 0.0f ? target / mod * inv_nn : 0.0f;
                }
                for (std::size_t m = 0; m < modes; ++m) {
                    f[m * nn + q] *= factor;
                }
            }
            for (std::size_t m = 0; m < modes; ++m) {
                cfloat* fm = f.get() + m * nn;
                backward(s, fm);
                const cfloat* p = probe + m * nn;
                cfloat* e = exit + (k * modes + m) * nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    e[q] += fm[q] - p[q] * o[q];
                }
            }
        }
    }
}

double ml_gradient(const Scan& s, const Data& intensities, const cfloat* object, const cfloat* probe,
                   const MLBuffers& buffers, const MLOptions& options, cfloat* grad_object, cfloat* grad_probe,
                   float* precond_object, float* precond_probe, double* nll, int nthreads) {
    check_pointers("ml_gradient", {intensities.values, object, probe, buffers.far, buffers.chi, grad_object,
                                   grad_probe, precond_object, precond_probe, nll});
    const int threads = resolve_threads(nthreads);
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const double inv_n2 = 1.0 / static_cast<double>(nn);  // |F_unitary|^2 = |F_unscaled|^2 / n^2
    const float inv_n2f = static_cast<float>(inv_n2);
    const float floor = options.intensity_floor;
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    (void)n;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn);
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            const auto k = static_cast<std::size_t>(kk);
            interpolate(s, object, s.windows()[k], o.data());
            cfloat* far = buffers.far + k * modes * nn;
            cfloat* chi = buffers.chi + k * modes * nn;
            for (std::size_t m = 0; m < modes; ++m) {
                const cfloat* p = probe + m * nn;
                cfloat* fm = far + m * nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    fm[q] = p[q] * o[q];
                }
                forward(s, fm);
            }
            const float* data = intensities.values + k * nn;
            double acc = 0.0;
            for (std::size_t q = 0; q < nn; ++q) {
                float im = 0.0f;
                for (std::size_t m = 0; m < modes; ++m) {
                    im += std::norm(far[m * nn + q]);
                }
                im = im * inv_n2f + floor;
                float weight = 0.0f;  // dL/dIm, times the unscaled forward and backward scaling
                if (valid(intensities, q)) {
                    const double I = data[q];
                    const double model = im;
                    acc += I > 0.0 ? model - I - I * std::log(model / I) : model;
                    weight = static_cast<float>((1.0 - I / model) * inv_n2);
                }
                for (std::size_t m = 0; m < modes; ++m) {
                    chi[m * nn + q] = weight * far[m * nn + q];
                }
            }
            nll[k] = acc;
            for (std::size_t m = 0; m < modes; ++m) {
                backward(s, chi + m * nn);
            }
        }
    }
    // Gradients w.r.t. conj(object) and conj(probe): chi is F^-1 (w Psi) in the unitary
    // normalisation (the weight carries 1/n^2 for unscaled forward+backward).
    object_gather(s, probe, buffers.chi, grad_object, precond_object, threads);
    probe_gather(s, object, buffers.chi, grad_probe, precond_probe, threads);
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
                          const cfloat* h_object, const cfloat* h_probe, const MLBuffers& buffers,
                          const MLOptions& options, double* b1, double* b2, int nthreads) {
    check_pointers("ml_line_coefficients", {intensities.values, object, probe, h_object, h_probe, buffers.far,
                                            b1, b2});
    const int threads = resolve_threads(nthreads);
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const double inv_n2 = 1.0 / static_cast<double>(nn);
    const double floor = options.intensity_floor;
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    std::vector<double> c1(s.size()), c2(s.size());
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn), d(nn);
        Frames f = alloc_frames(2 * modes * nn);
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            const auto k = static_cast<std::size_t>(kk);
            const Window& w = s.windows()[k];
            interpolate(s, object, w, o.data());
            interpolate(s, h_object, w, d.data());
            for (std::size_t m = 0; m < modes; ++m) {
                const cfloat* p = probe + m * nn;
                const cfloat* hp = h_probe + m * nn;
                cfloat* d1 = f.get() + 2 * m * nn;
                cfloat* d2 = d1 + nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    d1[q] = hp[q] * o[q] + p[q] * d[q];
                    d2[q] = hp[q] * d[q];
                }
                forward(s, d1);
                forward(s, d2);
            }
            const cfloat* far = buffers.far + k * modes * nn;
            const float* data = intensities.values + k * nn;
            double acc1 = 0.0;
            double acc2 = 0.0;
            for (std::size_t q = 0; q < nn; ++q) {
                if (!valid(intensities, q)) {
                    continue;
                }
                double im = 0.0;
                double a1 = 0.0;
                double a2 = 0.0;
                for (std::size_t m = 0; m < modes; ++m) {
                    const std::complex<double> f0(far[m * nn + q]);
                    const std::complex<double> f1(f[2 * m * nn + q]);
                    const std::complex<double> f2(f[(2 * m + 1) * nn + q]);
                    im += std::norm(f0);
                    a1 += 2.0 * std::real(std::conj(f0) * f1);
                    a2 += std::norm(f1) + 2.0 * std::real(std::conj(f0) * f2);
                }
                im = im * inv_n2 + floor;
                a1 *= inv_n2;
                a2 *= inv_n2;
                const double I = data[q];
                const double l1 = 1.0 - I / im;
                const double l2 = I / (im * im);
                acc1 += l1 * a1;
                acc2 += l1 * a2 + 0.5 * l2 * a1 * a1;
            }
            c1[k] = acc1;
            c2[k] = acc2;
        }
    }
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
    MLStep step;

    // Preconditioned gradient z = M^-1 g (zero for a part that is not updated).
    auto reg = [&](const float* pre, std::size_t count) {
        float mx = 0.0f;
        for (std::size_t q = 0; q < count; ++q) {
            mx = std::max(mx, pre[q]);
        }
        return options.precond_regularisation * mx + std::numeric_limits<float>::min();
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
    ml_line_coefficients(s, intensities, object, probe, state.dir_object, state.dir_probe, buffers, options, &b1,
                         &b2, threads);
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
