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

// |z|^2 by the textbook formula (libstdc++'s std::norm goes through std::abs, a hypot,
// unless compiled with -ffast-math).
inline float sq(cfloat z) noexcept { return z.real() * z.real() + z.imag() * z.imag(); }
inline double sq(std::complex<double> z) noexcept { return z.real() * z.real() + z.imag() * z.imag(); }

// Instruction-set clones of the per-row kernels (GCC on x86-64): the same source for
// AVX-512, AVX2 and the baseline, picked at load time. Floating-point contraction is
// off for this file (CMakeLists.txt), so every clone gives the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TOMOFUSE_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TOMOFUSE_ISA_CLONES
#endif

// One row of the bilinear window: rows a (weight 1 - fy) and b (weight fy; null when fy == 0).
TOMOFUSE_ISA_CLONES void interp_row(const cfloat* a, const cfloat* b, float fy, float fx, std::size_t n,
                                    cfloat* o) {
    const float gx = 1.0f - fx;
    const float gy = 1.0f - fy;
    if (b == nullptr) {
        if (fx == 0.0f) {
            for (std::size_t j = 0; j < n; ++j) {
                o[j] = a[j];
            }
        } else {
            for (std::size_t j = 0; j < n; ++j) {
                o[j] = gx * a[j] + fx * a[j + 1];
            }
        }
    } else if (fx == 0.0f) {
        for (std::size_t j = 0; j < n; ++j) {
            o[j] = gy * a[j] + fy * b[j];
        }
    } else {
        for (std::size_t j = 0; j < n; ++j) {
            o[j] = gy * (gx * a[j] + fx * a[j + 1]) + fy * (gx * b[j] + fx * b[j + 1]);
        }
    }
}

// f = p o, or f = 2 p o - e.
TOMOFUSE_ISA_CLONES void product(const cfloat* p, const cfloat* o, cfloat* f, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        f[q] = p[q] * o[q];
    }
}
TOMOFUSE_ISA_CLONES void reflect(const cfloat* p, const cfloat* o, const cfloat* e, cfloat* f, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        f[q] = 2.0f * (p[q] * o[q]) - e[q];
    }
}

// pw = |f|^2 (first mode) or pw += |f|^2.
TOMOFUSE_ISA_CLONES void power(const cfloat* f, float* pw, std::size_t nn, bool first) {
    if (first) {
        for (std::size_t q = 0; q < nn; ++q) {
            pw[q] = sq(f[q]);
        }
    } else {
        for (std::size_t q = 0; q < nn; ++q) {
            pw[q] += sq(f[q]);
        }
    }
}

// mag = sqrt(pw) * inv_scale.
TOMOFUSE_ISA_CLONES void magnitude(const float* pw, float inv_scale, float* mag, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        mag[q] = std::sqrt(pw[q]) * inv_scale;
    }
}

// Relaxed modulus factor: valid pixels move from mag to amp + keep (mag - amp), all
// scaled by inv_nn (the unscaled forward + backward pair); invalid pixels keep mag.
TOMOFUSE_ISA_CLONES void modulus_factor(const float* mag, const float* amp, const std::uint8_t* mask, float keep,
                                        float inv_nn, float* factor, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        const float m = mag[q];
        const float target = amp[q] + keep * (m - amp[q]);
        factor[q] = m > 0.0f ? target / m * inv_nn : 0.0f;
    }
    if (mask != nullptr) {
        for (std::size_t q = 0; q < nn; ++q) {
            factor[q] = mask[q] != 0 ? factor[q] : inv_nn;
        }
    }
}

TOMOFUSE_ISA_CLONES void scale_by(cfloat* f, const float* factor, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        f[q] *= factor[q];
    }
}

// e += f - p o.
TOMOFUSE_ISA_CLONES void dm_update(cfloat* e, const cfloat* f, const cfloat* p, const cfloat* o, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        e[q] += f[q] - p[q] * o[q];
    }
}

// Sum over valid pixels of (mag - amp)^2 (double): 8 interleaved partial sums (pixel q
// goes to lane q % 8) added in lane order, a fixed order that vectorises.
TOMOFUSE_ISA_CLONES double amplitude_error(const float* mag, const float* amp, const std::uint8_t* mask,
                                           std::size_t nn) {
    constexpr std::size_t L = 8;
    double acc[L] = {};
    const std::size_t full = nn / L * L;
    if (mask == nullptr) {
        for (std::size_t q = 0; q < full; q += L) {
            for (std::size_t l = 0; l < L; ++l) {
                const double d = static_cast<double>(mag[q + l]) - static_cast<double>(amp[q + l]);
                acc[l] += d * d;
            }
        }
    } else {
        for (std::size_t q = 0; q < full; q += L) {
            for (std::size_t l = 0; l < L; ++l) {
                const double d = static_cast<double>(mag[q + l]) - static_cast<double>(amp[q + l]);
                acc[l] += mask[q + l] != 0 ? d * d : 0.0;
            }
        }
    }
    for (std::size_t q = full; q < nn; ++q) {
        if (mask == nullptr || mask[q] != 0) {
            const double d = static_cast<double>(mag[q]) - static_cast<double>(amp[q]);
            acc[q % L] += d * d;
        }
    }
    double err = 0.0;
    for (double a : acc) {
        err += a;
    }
    return err;
}

// g = sum_m conj(P_m) w_m over one window row.
TOMOFUSE_ISA_CLONES void conj_product(const cfloat* p, std::size_t p_stride, const cfloat* w, std::size_t w_stride,
                                      std::size_t modes, std::size_t n, cfloat* g) {
    for (std::size_t j = 0; j < n; ++j) {
        g[j] = std::conj(p[j]) * w[j];
    }
    for (std::size_t m = 1; m < modes; ++m) {
        const cfloat* pm = p + m * p_stride;
        const cfloat* wm = w + m * w_stride;
        for (std::size_t j = 0; j < n; ++j) {
            g[j] += std::conj(pm[j]) * wm[j];
        }
    }
}

// The two window rows that meet one object row, interpolated vertically
// (v = a g1 + b g0, a = 1 - fy, b = fy) and spread horizontally:
// num[j] += (1 - fx) v[j], then num[j + 1] += fx v[j]; den likewise with the probe
// power rows. An absent tap has null power row (and g row); with num null only den
// is spread (the illumination).
TOMOFUSE_ISA_CLONES void spread_rows(cfloat* num, float* den, const cfloat* g1, const cfloat* g0, const float* pw1,
                                     const float* pw0, float a, float b, float fx, std::size_t n, cfloat* v,
                                     float* pv) {
    if (pw1 != nullptr && pw0 != nullptr) {
        for (std::size_t j = 0; j < n; ++j) {
            pv[j] = a * pw1[j] + b * pw0[j];
        }
    } else if (pw1 != nullptr) {
        for (std::size_t j = 0; j < n; ++j) {
            pv[j] = a * pw1[j];
        }
    } else {
        for (std::size_t j = 0; j < n; ++j) {
            pv[j] = b * pw0[j];
        }
    }
    const float gx = 1.0f - fx;
    for (std::size_t j = 0; j < n; ++j) {
        den[j] += gx * pv[j];
    }
    if (fx != 0.0f) {
        for (std::size_t j = 0; j < n; ++j) {
            den[j + 1] += fx * pv[j];
        }
    }
    if (num == nullptr) {
        return;
    }
    if (pw1 != nullptr && pw0 != nullptr) {
        for (std::size_t j = 0; j < n; ++j) {
            v[j] = a * g1[j] + b * g0[j];
        }
    } else if (pw1 != nullptr) {
        for (std::size_t j = 0; j < n; ++j) {
            v[j] = a * g1[j];
        }
    } else {
        for (std::size_t j = 0; j < n; ++j) {
            v[j] = b * g0[j];
        }
    }
    for (std::size_t j = 0; j < n; ++j) {
        num[j] += gx * v[j];
    }
    if (fx != 0.0f) {
        for (std::size_t j = 0; j < n; ++j) {
            num[j + 1] += fx * v[j];
        }
    }
}

// den += |o|^2, num_m += conj(o) w_m over one window row.
TOMOFUSE_ISA_CLONES void gather_probe_row(const cfloat* o, const cfloat* w, std::size_t w_stride, std::size_t modes,
                                          cfloat* num, std::size_t num_stride, float* den, std::size_t n) {
    for (std::size_t j = 0; j < n; ++j) {
        den[j] += sq(o[j]);
    }
    for (std::size_t m = 0; m < modes; ++m) {
        const cfloat* wm = w + m * w_stride;
        cfloat* nm = num + m * num_stride;
        for (std::size_t j = 0; j < n; ++j) {
            nm[j] += std::conj(o[j]) * wm[j];
        }
    }
}

// ML: per pixel weight (1 - I / Im) scaled by the unscaled transform pair; 0 at invalid pixels.
TOMOFUSE_ISA_CLONES void ml_weights(const float* pw, const float* data, const std::uint8_t* mask, float inv_n2,
                                    float floor, float* weight, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        const float im = pw[q] * inv_n2 + floor;
        weight[q] = (1.0f - data[q] / im) * inv_n2;
    }
    if (mask != nullptr) {
        for (std::size_t q = 0; q < nn; ++q) {
            weight[q] = mask[q] != 0 ? weight[q] : 0.0f;
        }
    }
}

// chi = weight * far.
TOMOFUSE_ISA_CLONES void weighted(const cfloat* far, const float* weight, cfloat* chi, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        chi[q] = weight[q] * far[q];
    }
}

// Poisson deviance sum over valid pixels of Im - I - I log(Im / I) (Im for I = 0), double,
// 8 interleaved partial sums added in lane order.
double poisson_deviance(const float* pw, const float* data, const std::uint8_t* mask, float inv_n2, float floor,
                        std::size_t nn) {
    constexpr std::size_t L = 8;
    double acc[L] = {};
    for (std::size_t q = 0; q < nn; ++q) {
        if (mask != nullptr && mask[q] == 0) {
            continue;
        }
        const double model = static_cast<double>(pw[q] * inv_n2 + floor);
        const double I = data[q];
        acc[q % L] += I > 0.0 ? model - I - I * std::log(model / I) : model;
    }
    double total = 0.0;
    for (double a : acc) {
        total += a;
    }
    return total;
}

// Line search, per pixel over modes: im += |f0|^2, a1 += 2 Re(conj(f0) f1),
// a2 += |f1|^2 + 2 Re(conj(f0) f2) (first mode: assign).
TOMOFUSE_ISA_CLONES void line_accumulate(const cfloat* f0, const cfloat* f1, const cfloat* f2, float* im, float* a1,
                                         float* a2, std::size_t nn, bool first) {
    for (std::size_t q = 0; q < nn; ++q) {
        const float c1 = 2.0f * (f0[q].real() * f1[q].real() + f0[q].imag() * f1[q].imag());
        const float c2 = sq(f1[q]) + 2.0f * (f0[q].real() * f2[q].real() + f0[q].imag() * f2[q].imag());
        const float c0 = sq(f0[q]);
        if (first) {
            im[q] = c0;
            a1[q] = c1;
            a2[q] = c2;
        } else {
            im[q] += c0;
            a1[q] += c1;
            a2[q] += c2;
        }
    }
}

// (B1, B2) contributions of one pattern: sum over valid pixels of l' a1 and
// l' a2 + l'' a1^2 / 2, l' = 1 - I / Im, l'' = I / Im^2 (all scaled by inv_n2), double,
// 8 interleaved partial sums.
TOMOFUSE_ISA_CLONES void line_sums(const float* im, const float* a1, const float* a2, const float* data,
                                   const std::uint8_t* mask, double inv_n2, double floor, std::size_t nn, double* b1,
                                   double* b2) {
    constexpr std::size_t L = 8;
    double s1[L] = {};
    double s2[L] = {};
    const std::size_t full = nn / L * L;
    for (std::size_t q0 = 0; q0 < full; q0 += L) {
        for (std::size_t l = 0; l < L; ++l) {
            const std::size_t q = q0 + l;
            const double v = mask == nullptr || mask[q] != 0 ? 1.0 : 0.0;
            const double model = static_cast<double>(im[q]) * inv_n2 + floor;
            const double x1 = static_cast<double>(a1[q]) * inv_n2;
            const double x2 = static_cast<double>(a2[q]) * inv_n2;
            const double I = data[q];
            const double l1 = 1.0 - I / model;
            const double l2 = I / (model * model);
            s1[l] += v * (l1 * x1);
            s2[l] += v * (l1 * x2 + 0.5 * l2 * x1 * x1);
        }
    }
    for (std::size_t q = full; q < nn; ++q) {
        if (mask != nullptr && mask[q] == 0) {
            continue;
        }
        const double model = static_cast<double>(im[q]) * inv_n2 + floor;
        const double x1 = static_cast<double>(a1[q]) * inv_n2;
        const double x2 = static_cast<double>(a2[q]) * inv_n2;
        const double I = data[q];
        const double l1 = 1.0 - I / model;
        s1[q % L] += l1 * x1;
        s2[q % L] += l1 * x2 + 0.5 * I / (model * model) * x1 * x1;
    }
    double t1 = 0.0;
    double t2 = 0.0;
    for (std::size_t l = 0; l < L; ++l) {
        t1 += s1[l];
        t2 += s2[l];
    }
    *b1 = t1;
    *b2 = t2;
}

// Bilinear interpolation of the object under window w into out (N x N).
void interpolate(const Scan& s, const cfloat* object, const Window& w, cfloat* out) {
    const std::size_t n = s.n();
    const std::size_t width = s.width();
    for (std::size_t i = 0; i < n; ++i) {
        const cfloat* a = object + (static_cast<std::size_t>(w.y0) + i) * width + static_cast<std::size_t>(w.x0);
        interp_row(a, w.fy != 0.0f ? a + width : nullptr, w.fy, w.fx, n, out + i * n);
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

}  // namespace

Scan::Scan(std::size_t n, std::size_t modes, std::size_t height, std::size_t width, const double* positions,
           std::size_t count, int subpixel_steps)
    : n_(n), modes_(modes), height_(height), width_(width), steps_(subpixel_steps),
      plan_(n == 0 ? 1 : n, n == 0 ? 1 : n) {
    if (subpixel_steps < 0 || subpixel_steps > 64) {
        throw InvalidArgument("subpixel_steps must be in [0, 64] (0 = bilinear object interpolation), got " +
                              std::to_string(subpixel_steps));
    }
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
    std::vector<std::uint32_t> code(count, 0);
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
        if (steps_ > 0) {  // shift the probe by the fraction rounded to 1 / steps; crop whole pixels
            auto by = static_cast<std::int64_t>(std::lround(static_cast<double>(w.fy) * steps_));
            auto bx = static_cast<std::int64_t>(std::lround(static_cast<double>(w.fx) * steps_));
            if (by == steps_) {
                by = 0;
                w.y0 += 1;
            }
            if (bx == steps_) {
                bx = 0;
                w.x0 += 1;
            }
            w.fy = 0.0f;
            w.fx = 0.0f;
            code[k] = static_cast<std::uint32_t>(by * steps_ + bx);
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
    // Distinct shifts in increasing code order (by * steps + bx), so bins do not depend on
    // the order of the positions.
    bin_of_.assign(count, 0);
    if (steps_ == 0) {
        bin_shift_.assign(1, {0.0f, 0.0f});
        return;
    }
    std::vector<std::uint32_t> codes(code);
    std::sort(codes.begin(), codes.end());
    codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
    for (std::uint32_t c : codes) {
        bin_shift_.emplace_back(static_cast<float>(c / static_cast<std::uint32_t>(steps_)) / static_cast<float>(steps_),
                                static_cast<float>(c % static_cast<std::uint32_t>(steps_)) / static_cast<float>(steps_));
    }
    for (std::size_t k = 0; k < count; ++k) {
        bin_of_[k] = static_cast<std::uint32_t>(std::lower_bound(codes.begin(), codes.end(), code[k]) - codes.begin());
    }
}

namespace {

// 1-D phase ramp exp(-2 pi i f k / n), k in numpy.fft.fftfreq order (times n).
std::vector<cfloat> ramp_1d(std::size_t n, double f) {
    std::vector<cfloat> r(n);
    const double pi = 3.14159265358979323846;
    for (std::size_t u = 0; u < n; ++u) {
        const double k = u < (n + 1) / 2 ? static_cast<double>(u) : static_cast<double>(u) - static_cast<double>(n);
        const double ph = -2.0 * pi * f * k / static_cast<double>(n);
        r[u] = cfloat(static_cast<float>(std::cos(ph)), static_cast<float>(std::sin(ph)));
    }
    return r;
}

// The 1-D phase ramps (rows and columns) of every shift bin.
struct Ramps {
    std::vector<std::vector<cfloat>> y, x;
    explicit Ramps(const Scan& s) : y(s.bins()), x(s.bins()) {
        for (std::size_t b = 0; b < s.bins(); ++b) {
            y[b] = ramp_1d(s.n(), s.bin_shift(b).first);
            x[b] = ramp_1d(s.n(), s.bin_shift(b).second);
        }
    }
};

// The probe of every shift bin: base + bin * bin_stride (bin_stride 0 for the bilinear model,
// where every pattern sees the probe itself).
struct Probes {
    std::vector<cfloat> buffer;
    const cfloat* base = nullptr;
    std::size_t bin_stride = 0;
    const cfloat* of(const Scan& s, std::size_t k) const { return base + s.bin(k) * bin_stride; }
};

// out (bins, modes, nn) = P_m shifted by each bin's fraction: F^-1[F(P_m) ramp_b].
void shift_into(const Scan& s, const cfloat* probe, cfloat* out, int threads) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t bins = s.bins();
    std::vector<cfloat> spec(probe, probe + modes * nn);
    for (std::size_t m = 0; m < modes; ++m) {
        forward(s, spec.data() + m * nn);
    }
    const Ramps ramps(s);
    const auto& ry = ramps.y;
    const auto& rx = ramps.x;
    const float inv_nn = 1.0f / static_cast<float>(nn);
    const auto total = static_cast<std::ptrdiff_t>(bins * modes);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(dynamic, 1))
    for (std::ptrdiff_t idx = 0; idx < total; ++idx) {
        const auto b = static_cast<std::size_t>(idx) / modes;
        const auto m = static_cast<std::size_t>(idx) % modes;
        cfloat* o = out + static_cast<std::size_t>(idx) * nn;
        const cfloat* sp = spec.data() + m * nn;
        for (std::size_t u = 0; u < n; ++u) {
            const cfloat ru = ry[b][u] * inv_nn;
            for (std::size_t v = 0; v < n; ++v) {
                o[u * n + v] = sp[u * n + v] * (ru * rx[b][v]);
            }
        }
        backward(s, o);
    }
}

Probes make_probes(const Scan& s, const cfloat* probe, int threads) {
    Probes p;
    if (s.subpixel_steps() == 0) {
        p.base = probe;
        return p;
    }
    p.buffer.resize(s.bins() * s.modes() * s.frame());
    shift_into(s, probe, p.buffer.data(), threads);
    p.base = p.buffer.data();
    p.bin_stride = s.modes() * s.frame();
    return p;
}

// out[m] = sum_b S_b^-1 per_bin[b, m] (the adjoint of the shifts); per_bin is overwritten.
// Each pixel sums the bins in order.
void unshift_sum_modes(const Scan& s, cfloat* per_bin, cfloat* out, std::size_t modes, int threads) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t bins = s.bins();
    const auto total = static_cast<std::ptrdiff_t>(bins * modes);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(dynamic, 1))
    for (std::ptrdiff_t idx = 0; idx < total; ++idx) {
        forward(s, per_bin + static_cast<std::size_t>(idx) * nn);
    }
    const Ramps ramps(s);
    const auto& ry = ramps.y;
    const auto& rx = ramps.x;
    const float inv_nn = 1.0f / static_cast<float>(nn);
    const auto rows = static_cast<std::ptrdiff_t>(modes * n);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const auto m = static_cast<std::size_t>(r) / n;
        const auto u = static_cast<std::size_t>(r) % n;
        cfloat* o = out + m * nn + u * n;
        std::fill(o, o + n, cfloat(0.0f, 0.0f));
        for (std::size_t b = 0; b < bins; ++b) {
            const cfloat* a = per_bin + (b * modes + m) * nn + u * n;
            const cfloat ru = std::conj(ry[b][u]);
            for (std::size_t v = 0; v < n; ++v) {
                o[v] += a[v] * (ru * std::conj(rx[b][v]));
            }
        }
        for (std::size_t v = 0; v < n; ++v) {
            o[v] *= inv_nn;
        }
    }
    for (std::size_t m = 0; m < modes; ++m) {
        backward(s, out + m * nn);
    }
}

void unshift_sum(const Scan& s, cfloat* per_bin, cfloat* out, int threads) {
    unshift_sum_modes(s, per_bin, out, s.modes(), threads);
}

}  // namespace

void shifted_probes(const Scan& s, const cfloat* probe, cfloat* out, int nthreads) {
    check_pointers("shifted_probes", {probe, out});
    const int threads = resolve_threads(nthreads);
    if (s.subpixel_steps() == 0) {
        std::copy(probe, probe + s.modes() * s.frame(), out);
        return;
    }
    shift_into(s, probe, out, threads);
}

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
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn);
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t k = 0; k < count; ++k) {
            interpolate(s, object, s.windows()[static_cast<std::size_t>(k)], o.data());
            for (std::size_t m = 0; m < modes; ++m) {
                cfloat* e = exit + (static_cast<std::size_t>(k) * modes + m) * nn;
                const cfloat* p = ps.of(s, static_cast<std::size_t>(k)) + m * nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    e[q] = p[q] * o[q];
                }
            }
        }
    }
}

namespace {

void object_gather_impl(const Scan& s, const Probes& ps, const cfloat* waves, cfloat* num, float* den,
                        int threads) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t width = s.width();
    const auto& ws = s.windows();
    const auto rows = rows_to_patterns(s);
    // Probe power of each bin, summed over modes.
    const std::size_t bins = ps.bin_stride == 0 ? 1 : s.bins();
    std::vector<float> power(bins * nn, 0.0f);
    for (std::size_t b = 0; b < bins; ++b) {
        const cfloat* pb = ps.base + b * ps.bin_stride;
        for (std::size_t m = 0; m < modes; ++m) {
            for (std::size_t q = 0; q < nn; ++q) {
                power[b * nn + q] += sq(pb[m * nn + q]);
            }
        }
    }
    const auto height = static_cast<std::ptrdiff_t>(s.height());
    const std::size_t count = ws.size();
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        // Per thread, the last two rows of g = sum_m conj(P_m) w_km computed for each pattern
        // (slot i % 2 holds row i): consecutive object rows share a window row, so each is
        // computed once per block of rows. Recomputing gives the same bits, so the result
        // does not depend on how rows are split between threads.
        const bool gather = waves != nullptr;  // else only the illumination den
        std::vector<cfloat> cache(gather ? count * 2 * n : 0);
        std::vector<std::int64_t> cached(gather ? count * 2 : 0, -1);
        std::vector<cfloat> v(n);
        std::vector<float> pv(n);
        auto row_of = [&](std::uint32_t k, std::int64_t i) -> const cfloat* {
            const std::size_t slot = static_cast<std::size_t>(k) * 2 + static_cast<std::size_t>(i & 1);
            cfloat* g = cache.data() + slot * n;
            if (cached[slot] != i) {
                const auto ii = static_cast<std::size_t>(i);
                conj_product(ps.of(s, k) + ii * n, nn, waves + static_cast<std::size_t>(k) * modes * nn + ii * n, nn, modes,
                             n, g);
                cached[slot] = i;
            }
            return g;
        };
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t yy = 0; yy < height; ++yy) {
            const auto y = static_cast<std::size_t>(yy);
            cfloat* nrow = gather ? num + y * width : nullptr;
            float* drow = den + y * width;
            if (gather) {
                std::fill(nrow, nrow + width, cfloat(0.0f, 0.0f));
            }
            std::fill(drow, drow + width, 0.0f);
            for (std::uint32_t k : rows[y]) {
                const Window& w = ws[k];
                // Window row i1 = y - y0 with weight 1 - fy, and i0 = i1 - 1 with weight fy.
                const std::int64_t i1 = static_cast<std::int64_t>(y) - w.y0;
                const std::int64_t i0 = i1 - 1;
                const bool has1 = i1 < static_cast<std::int64_t>(n);
                const bool has0 = w.fy != 0.0f && i0 >= 0;
                if (!has1 && !has0) {
                    continue;
                }
                const cfloat* g1 = gather && has1 ? row_of(k, i1) : nullptr;
                const cfloat* g0 = gather && has0 ? row_of(k, i0) : nullptr;
                const float* pw = power.data() + (ps.bin_stride == 0 ? 0 : s.bin(k)) * nn;
                spread_rows(gather ? nrow + w.x0 : nullptr, drow + w.x0, g1, g0,
                            has1 ? pw + static_cast<std::size_t>(i1) * n : nullptr,
                            has0 ? pw + static_cast<std::size_t>(i0) * n : nullptr, 1.0f - w.fy, w.fy,
                            w.fx, n, v.data(), pv.data());
            }
        }
    }
}

}  // namespace

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

void probe_gather(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* num, float* den, int nthreads) {
    check_pointers("probe_gather", {object, waves, num, den});
    const int threads = resolve_threads(nthreads);
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t width = s.width();
    const auto& ws = s.windows();
    const auto nrows = static_cast<std::ptrdiff_t>(n);
    // With shifted probes, accumulate numerator and denominator per bin and undo each bin's
    // shift at the end (the adjoint of the shifts; the denominator so shifted approximates the
    // diagonal of sum_k S_k^H |o_k|^2 S_k).
    const bool shifted = s.subpixel_steps() > 0;
    const std::size_t bins = shifted ? s.bins() : 1;
    std::vector<cfloat> per_bin(shifted ? bins * modes * nn : 0);
    std::vector<float> den_bin(shifted ? bins * nn : 0);
    cfloat* acc = shifted ? per_bin.data() : num;
    float* dacc = shifted ? den_bin.data() : den;
    const std::size_t bin_stride = shifted ? modes * nn : 0;
    const std::size_t den_stride = shifted ? nn : 0;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(n);
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t ii = 0; ii < nrows; ++ii) {
            const auto i = static_cast<std::size_t>(ii);
            for (std::size_t b = 0; b < bins; ++b) {
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* row = acc + b * bin_stride + m * nn + i * n;
                    std::fill(row, row + n, cfloat(0.0f, 0.0f));
                }
                float* d = dacc + b * den_stride + i * n;
                std::fill(d, d + n, 0.0f);
            }
            for (std::size_t k = 0; k < ws.size(); ++k) {
                const Window& w = ws[k];
                const cfloat* a = object + (static_cast<std::size_t>(w.y0) + i) * width + static_cast<std::size_t>(w.x0);
                interp_row(a, w.fy != 0.0f ? a + width : nullptr, w.fy, w.fx, n, o.data());
                gather_probe_row(o.data(), waves + k * modes * nn + i * n, nn, modes,
                                 acc + s.bin(k) * bin_stride + i * n, nn, dacc + s.bin(k) * den_stride + i * n, n);
            }
        }
    }
    if (shifted) {
        unshift_sum(s, per_bin.data(), num, threads);
        // The denominator: the same unshift on the (real) per-bin sums, mode by mode of one.
        std::vector<cfloat> dc(bins * nn);
        for (std::size_t q = 0; q < bins * nn; ++q) {
            dc[q] = cfloat(den_bin[q], 0.0f);
        }
        std::vector<cfloat> dout(modes * nn);
        unshift_sum_modes(s, dc.data(), dout.data(), 1, threads);
        // Never below the plain sum over the bins (the unshifted diagonal): the larger of the two
        // keeps the update damped where the shifted sum rings or vanishes.
        for (std::size_t q = 0; q < nn; ++q) {
            float plain = 0.0f;
            for (std::size_t b = 0; b < bins; ++b) {
                plain += den_bin[b * nn + q];
            }
            den[q] = std::max(plain, dout[q].real());
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
    Probes ps = make_probes(s, probe, threads);
    if (options.update_object || options.update_probe) {
        std::vector<cfloat> onum(options.update_object ? hw : 0);
        std::vector<float> oden(options.update_object ? hw : 0);
        std::vector<cfloat> pnum(options.update_probe ? modes * nn : 0);
        std::vector<float> pden(options.update_probe ? nn : 0);
        for (int it = 0; it < options.overlap_iterations; ++it) {
            if (options.update_object) {
                object_gather_impl(s, ps, exit, onum.data(), oden.data(), threads);
                damped_divide(object, onum.data(), oden.data(), hw, hw, options.object_inertia, threads);
            }
            if (options.update_probe) {
                probe_gather(s, object, exit, pnum.data(), pden.data(), threads);
                damped_divide(probe, pnum.data(), pden.data(), modes * nn, nn, options.probe_inertia, threads);
                ps = make_probes(s, probe, threads);
            }
        }
    }

    // 2. Fourier projection of 2 P o - exit, fused per pattern.
    const float inv_scale = 1.0f / static_cast<float>(n);  // |F_unitary| = |F_unscaled| / n
    const float inv_nn = 1.0f / static_cast<float>(nn);     // undo the unscaled forward + backward
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn);
        std::vector<float> pw(nn), mag(nn);
        Frames f = alloc_frames(modes * nn);
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            const auto k = static_cast<std::size_t>(kk);
            interpolate(s, object, s.windows()[k], o.data());
            const float* amp = amplitudes.values + k * nn;
            if (model_error != nullptr) {
                // Error of the current model P o_k (one more transform per mode).
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* fm = f.get() + m * nn;
                    product(ps.of(s, k) + m * nn, o.data(), fm, nn);
                    forward(s, fm);
                    power(fm, pw.data(), nn, m == 0);
                }
                magnitude(pw.data(), inv_scale, mag.data(), nn);
                model_error[k] = amplitude_error(mag.data(), amp, amplitudes.mask, nn);
            }
            for (std::size_t m = 0; m < modes; ++m) {
                cfloat* fm = f.get() + m * nn;
                reflect(ps.of(s, k) + m * nn, o.data(), exit + (k * modes + m) * nn, fm, nn);
                forward(s, fm);
                power(fm, pw.data(), nn, m == 0);
            }
            // Model amplitudes (unitary) and the error before the constraint.
            magnitude(pw.data(), inv_scale, mag.data(), nn);
            const double err = amplitude_error(mag.data(), amp, amplitudes.mask, nn);
            error[k] = err;
            // Relaxed modulus constraint: move the model amplitude towards the measured one
            // until the remaining error equals the bound (the whole way when bound = 0).
            const double bound = options.bound == nullptr ? 0.0 : options.bound[k];
            const float keep = err > bound ? static_cast<float>(std::sqrt(bound / err)) : 1.0f;
            modulus_factor(mag.data(), amp, amplitudes.mask, keep, inv_nn, pw.data(), nn);
            for (std::size_t m = 0; m < modes; ++m) {
                cfloat* fm = f.get() + m * nn;
                scale_by(fm, pw.data(), nn);
                backward(s, fm);
                dm_update(exit + (k * modes + m) * nn, fm, ps.of(s, k) + m * nn, o.data(), nn);
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
    const Probes ps = make_probes(s, probe, threads);
    (void)n;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn);
        std::vector<float> pw(nn), wt(nn);
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            const auto k = static_cast<std::size_t>(kk);
            interpolate(s, object, s.windows()[k], o.data());
            cfloat* far = buffers.far + k * modes * nn;
            cfloat* chi = buffers.chi + k * modes * nn;
            for (std::size_t m = 0; m < modes; ++m) {
                const cfloat* p = ps.of(s, k) + m * nn;
                cfloat* fm = far + m * nn;
                for (std::size_t q = 0; q < nn; ++q) {
                    fm[q] = p[q] * o[q];
                }
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
        }
    }
    // Gradients w.r.t. conj(object) and conj(probe): chi is F^-1 (w Psi) in the unitary
    // normalisation (the weight carries 1/n^2 for unscaled forward+backward).
    object_gather_impl(s, ps, buffers.chi, grad_object, precond_object, threads);
    if (options.update_probe) {
        probe_gather(s, object, buffers.chi, grad_probe, precond_probe, threads);
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
    const Probes ps = make_probes(s, probe, threads);
    const Probes hs = make_probes(s, h_probe, threads);
    std::vector<double> c1(s.size()), c2(s.size());
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o(nn), d(nn);
        std::vector<float> im(nn), a1(nn), a2(nn);
        Frames f = alloc_frames(2 * modes * nn);
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            const auto k = static_cast<std::size_t>(kk);
            const Window& w = s.windows()[k];
            interpolate(s, object, w, o.data());
            interpolate(s, h_object, w, d.data());
            for (std::size_t m = 0; m < modes; ++m) {
                const cfloat* p = ps.of(s, k) + m * nn;
                const cfloat* hp = hs.of(s, k) + m * nn;
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
            for (std::size_t m = 0; m < modes; ++m) {
                line_accumulate(far + m * nn, f.get() + 2 * m * nn, f.get() + (2 * m + 1) * nn, im.data(), a1.data(),
                                a2.data(), nn, m == 0);
            }
            line_sums(im.data(), a1.data(), a2.data(), data, intensities.mask, inv_n2, floor, nn, &c1[k], &c2[k]);
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
