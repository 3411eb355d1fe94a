// Per-row and per-pixel kernels of the ptychography engines, compiled as instruction-set
// clones (isa.hpp); contraction is off for this file (CMakeLists.txt), so every clone gives
// the same bits.
#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "detail.hpp"
#include "isa.hpp"

namespace tomofuse::ptycho::detail {

namespace {

// a b and conj(a) b by the textbook formulas (as -fcx-limited-range computes them), written with the
// negation on an operand and two additions: GCC 12 turns std::complex's a * b in a loop of an AVX-512
// clone into vfmaddsub (one rounding fewer in each part) even with -ffp-contract=off, so that clone
// gave other bits than the AVX2 and baseline ones. Negation is exact, x + (-y) z == x - y z: the same
// values as the operators, in every clone.
inline cfloat mul(cfloat a, cfloat b) {
    return {a.real() * b.real() + (-a.imag()) * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}
inline cfloat conj_mul(cfloat a, cfloat b) {
    return {a.real() * b.real() + a.imag() * b.imag(), a.real() * b.imag() + (-a.imag()) * b.real()};
}

}  // namespace

// One row of the bilinear window: rows a (weight 1 - fy) and b (weight fy; null when fy == 0).
TOMOFUSE_ISA_CLONES void interp_row(const cfloat* a, const cfloat* b, float fy, float fx, std::size_t n,
                                    cfloat* o) {
    const float gx = 1.0f - fx;
    const float gy = 1.0f - fy;
    if (b == nullptr) {
        if (fx == 0.0f) {
            // a whole-pixel window (always, with shifted probes): a copy.  As an element loop GCC
            // emits a scalar move per float (std::complex's assignment), 6-10 % of an ML or DM
            // iteration at 400^2 patterns
            std::memcpy(o, a, n * sizeof(cfloat));
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

// f = p o, or f = 2 p o - e, or f = a b + c d.
TOMOFUSE_ISA_CLONES void product(const cfloat* p, const cfloat* o, cfloat* f, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        f[q] = mul(p[q], o[q]);
    }
}
TOMOFUSE_ISA_CLONES void product_sum(const cfloat* a, const cfloat* b, const cfloat* c, const cfloat* d, cfloat* f,
                                     std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        f[q] = mul(a[q], b[q]) + mul(c[q], d[q]);
    }
}
TOMOFUSE_ISA_CLONES void reflect(const cfloat* p, const cfloat* o, const cfloat* e, cfloat* f, std::size_t nn) {
    for (std::size_t q = 0; q < nn; ++q) {
        f[q] = 2.0f * mul(p[q], o[q]) - e[q];
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
        e[q] += f[q] - mul(p[q], o[q]);
    }
}

// Sum over valid pixels of (mag - amp)^2 (double): 8 interleaved partial sums (pixel q
// goes to lane q % 8) added in lane order, a fixed order that vectorizes.
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
        g[j] = conj_mul(p[j], w[j]);
    }
    for (std::size_t m = 1; m < modes; ++m) {
        const cfloat* pm = p + m * p_stride;
        const cfloat* wm = w + m * w_stride;
        for (std::size_t j = 0; j < n; ++j) {
            g[j] += conj_mul(pm[j], wm[j]);
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
            nm[j] += conj_mul(o[j], wm[j]);
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

namespace {

// The natural logarithm of a double by +, -, *, / and bit operations only: no libm call, so that a
// loop of them vectorizes, and (contraction off) the same bits in every instruction-set clone.
// For a positive normal x = 2^e m, m in [sqrt(1/2), sqrt(2)): log m = 2 atanh(s), s = (m - 1) / (m + 1),
// |s| <= 0.1716, by its series to s^23 (the next term below 1e-19 relative), plus e ln 2 with ln 2
// split so that e * hi is exact: within a few ulp of the correctly rounded value (the deviance test
// compares with numpy). 0, +inf and NaN give -inf, +inf and NaN as libm's log (negative x: not a
// number either, -inf); subnormals do not
// occur here (the model intensity is at least the float floor and the counts at most FLT_MAX, so
// their ratio is above 1e-83).
inline double log_normal(double x) {
    std::uint64_t b;
    std::memcpy(&b, &x, sizeof(b));
    // the biased exponent as a double, exactly: 2^52 + k as bits, minus 2^52
    const std::uint64_t kb = 0x4330000000000000ull | ((b >> 52) & 0x7ffull);
    double biased;
    std::memcpy(&biased, &kb, sizeof(biased));
    double e = (biased - 4503599627370496.0) - 1023.0;
    const std::uint64_t mb = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m;
    std::memcpy(&m, &mb, sizeof(m));  // [1, 2)
    // (every operand computed unconditionally, then selected: with trapping math on, GCC if-converts
    // only selects of values, not conditional arithmetic)
    const bool big = m > 1.4142135623730951;
    const double m_half = m * 0.5;
    const double e_next = e + 1.0;
    m = big ? m_half : m;
    e = big ? e_next : e;
    const double s = (m - 1.0) / (m + 1.0);
    const double z = s * s;
    double p = 1.0 / 23.0;
    p = p * z + 1.0 / 21.0;
    p = p * z + 1.0 / 19.0;
    p = p * z + 1.0 / 17.0;
    p = p * z + 1.0 / 15.0;
    p = p * z + 1.0 / 13.0;
    p = p * z + 1.0 / 11.0;
    p = p * z + 1.0 / 9.0;
    p = p * z + 1.0 / 7.0;
    p = p * z + 1.0 / 5.0;
    p = p * z + 1.0 / 3.0;
    const double log_m = 2.0 * s + 2.0 * s * (z * p);
    constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000
    constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi
    const double r = e * kLn2Hi + (log_m + e * kLn2Lo);
    const bool regular = (x > 0.0) & (x <= 1.7976931348623157e308);
    const double scaled = x * HUGE_VAL;  // +inf -> +inf, NaN -> NaN
    const double special = x == 0.0 ? -HUGE_VAL : scaled;
    return regular ? r : special;
}

}  // namespace

namespace {

// Per pixel Im - I - I log(Im / I) (Im for I = 0; 0 at invalid pixels) of `count` pixels: a plain loop,
// which GCC vectorizes (log_normal is arithmetic and selects only).
inline void deviance_terms(const float* pw, const float* data, const std::uint8_t* mask, float inv_n2, float floor,
                           double* t, std::size_t count) {
    for (std::size_t q = 0; q < count; ++q) {
        const double model = static_cast<double>(pw[q] * inv_n2 + floor);
        const double I = data[q];
        const bool counted = I > 0.0;
        const double ratio = model / (counted ? I : 1.0);
        const double term = model - I - I * log_normal(ratio);
        t[q] = counted ? term : model;
    }
    if (mask != nullptr) {
        for (std::size_t q = 0; q < count; ++q) {
            t[q] = mask[q] != 0 ? t[q] : 0.0;
        }
    }
}

}  // namespace

// Poisson deviance sum over valid pixels of Im - I - I log(Im / I) (Im for I = 0), double,
// 8 interleaved partial sums (pixel q to lane q % 8, in order) added in lane order; the terms in
// chunks of kChunk pixels.
TOMOFUSE_ISA_CLONES double poisson_deviance(const float* pw, const float* data, const std::uint8_t* mask,
                                            float inv_n2, float floor, std::size_t nn) {
    constexpr std::size_t L = 8;
    constexpr std::size_t kChunk = 512;  // a multiple of L
    double acc[L] = {};
    double t[kChunk];
    for (std::size_t c0 = 0; c0 < nn; c0 += kChunk) {
        const std::size_t count = std::min(kChunk, nn - c0);
        deviance_terms(pw + c0, data + c0, mask == nullptr ? nullptr : mask + c0, inv_n2, floor, t, count);
        const std::size_t full = count / L * L;
        for (std::size_t j0 = 0; j0 < full; j0 += L) {
            for (std::size_t l = 0; l < L; ++l) {
                acc[l] += t[j0 + l];
            }
        }
        for (std::size_t j = full; j < count; ++j) {
            acc[j % L] += t[j];
        }
    }
    double total = 0.0;
    for (double a : acc) {
        total += a;
    }
    return total;
}

namespace {

template <bool kSecondOrder>
inline void line_accumulate_terms(const cfloat* f0, const cfloat* f1, const cfloat* f2, float* im, float* a1,
                                  float* a2, std::size_t nn, bool first) {
    for (std::size_t q = 0; q < nn; ++q) {
        const float c1 = 2.0f * (f0[q].real() * f1[q].real() + f0[q].imag() * f1[q].imag());
        float c2 = sq(f1[q]);
        if constexpr (kSecondOrder) {
            c2 = c2 + 2.0f * (f0[q].real() * f2[q].real() + f0[q].imag() * f2[q].imag());
        }
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

}  // namespace

// Line search, per pixel over modes: im += |f0|^2, a1 += 2 Re(conj(f0) f1),
// a2 += |f1|^2 + 2 Re(conj(f0) f2) (f2 null: |f1|^2 only; first mode: assign).
TOMOFUSE_ISA_CLONES void line_accumulate(const cfloat* f0, const cfloat* f1, const cfloat* f2, float* im, float* a1,
                                         float* a2, std::size_t nn, bool first) {
    if (f2 != nullptr) {
        line_accumulate_terms<true>(f0, f1, f2, im, a1, a2, nn, first);
    } else {
        line_accumulate_terms<false>(f0, f1, nullptr, im, a1, a2, nn, first);
    }
}

TOMOFUSE_ISA_CLONES double cross_sum(const cfloat* chi, const cfloat* hp, const cfloat* d, std::size_t nn) {
    constexpr std::size_t L = 8;
    double acc[L] = {};
    const std::size_t full = nn / L * L;
    for (std::size_t q0 = 0; q0 < full; q0 += L) {
        for (std::size_t l = 0; l < L; ++l) {
            const cfloat g = mul(hp[q0 + l], d[q0 + l]);
            acc[l] += static_cast<double>(chi[q0 + l].real()) * static_cast<double>(g.real()) +
                      static_cast<double>(chi[q0 + l].imag()) * static_cast<double>(g.imag());
        }
    }
    for (std::size_t q = full; q < nn; ++q) {
        const cfloat g = mul(hp[q], d[q]);
        acc[q % L] += static_cast<double>(chi[q].real()) * static_cast<double>(g.real()) +
                      static_cast<double>(chi[q].imag()) * static_cast<double>(g.imag());
    }
    double total = 0.0;
    for (double a : acc) {
        total += a;
    }
    return total;
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

TOMOFUSE_ISA_CLONES void difference(const cfloat* a, const cfloat* b, float c, std::size_t n, cfloat* g) {
    for (std::size_t j = 0; j < n; ++j) {
        g[j] = (b[j] - a[j]) * c;
    }
}

void gradient_row(const cfloat* row, std::size_t n, cfloat* g) {
    g[0] = row[1] - row[0];
    difference(row, row + 2, 0.5f, n - 2, g + 1);
    g[n - 1] = row[n - 1] - row[n - 2];
}

TOMOFUSE_ISA_CLONES void position_terms_probe(const cfloat* gy, const cfloat* gx, const cfloat* p, const cfloat* e,
                                              const cfloat* o, std::size_t n, bool first, float* syy, float* syx,
                                              float* sxx, cfloat* ty, cfloat* tx) {
    if (first) {
        for (std::size_t j = 0; j < n; ++j) {
            syy[j] = 0.0f;
            sxx[j] = 0.0f;
            syx[j] = 0.0f;
            ty[j] = cfloat(0.0f, 0.0f);
            tx[j] = cfloat(0.0f, 0.0f);
        }
    }
    for (std::size_t j = 0; j < n; ++j) {
        const cfloat r = e[j] - mul(p[j], o[j]);
        const float yr = gy[j].real(), yi = gy[j].imag(), xr = gx[j].real(), xi = gx[j].imag();
        syy[j] += yr * yr + yi * yi;
        sxx[j] += xr * xr + xi * xi;
        syx[j] += yr * xr + yi * xi;
        ty[j] += conj_mul(gy[j], r);
        tx[j] += conj_mul(gx[j], r);
    }
}

TOMOFUSE_ISA_CLONES void position_terms_object(const cfloat* p, const cfloat* e, const cfloat* o, std::size_t n,
                                               bool first, float* pw, cfloat* t) {
    if (first) {
        for (std::size_t j = 0; j < n; ++j) {
            pw[j] = 0.0f;
            t[j] = cfloat(0.0f, 0.0f);
        }
    }
    for (std::size_t j = 0; j < n; ++j) {
        const cfloat r = e[j] - mul(p[j], o[j]);
        pw[j] += p[j].real() * p[j].real() + p[j].imag() * p[j].imag();
        t[j] += conj_mul(p[j], r);
    }
}

namespace {

// acc[q] += the sums of the five terms that add(j, part, l) adds for pixels j = 0 .. n - 1 into
// part[.][l], pixel j in lane l = j % 8, each term's 8 lanes then added in order.
template <class Add>
inline void position_lanes(std::size_t n, double* acc, Add&& add) {
    double part[5][8] = {};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int l = 0; l < 8; ++l) add(j + static_cast<std::size_t>(l), part, l);
    }
    for (int l = 0; j < n; ++j, ++l) add(j, part, l);
    for (int q = 0; q < 5; ++q) {
        double t = 0.0;
        for (int l = 0; l < 8; ++l) t += part[q][l];
        acc[q] += t;
    }
}

}  // namespace

TOMOFUSE_ISA_CLONES void position_sums_probe(const cfloat* o, const float* syy, const float* syx, const float* sxx,
                                             const cfloat* ty, const cfloat* tx, std::size_t n, double* acc) {
    position_lanes(n, acc, [&](std::size_t j, double (&part)[5][8], int l) {
        const double orr = o[j].real(), oi = o[j].imag();
        const double o2 = static_cast<double>(sq(o[j]));
        part[0][l] += o2 * syy[j];
        part[1][l] += o2 * syx[j];
        part[2][l] += o2 * sxx[j];
        part[3][l] -= orr * ty[j].real() + oi * ty[j].imag();
        part[4][l] -= orr * tx[j].real() + oi * tx[j].imag();
    });
}

TOMOFUSE_ISA_CLONES void position_sums_object(const cfloat* gy, const cfloat* gx, const float* pw, const cfloat* t,
                                              std::size_t n, double* acc) {
    position_lanes(n, acc, [&](std::size_t j, double (&part)[5][8], int l) {
        const double yr = gy[j].real(), yi = gy[j].imag(), xr = gx[j].real(), xi = gx[j].imag();
        const double p = pw[j];
        part[0][l] += (yr * yr + yi * yi) * p;
        part[1][l] += (yr * xr + yi * xi) * p;
        part[2][l] += (xr * xr + xi * xi) * p;
        part[3][l] += yr * t[j].real() + yi * t[j].imag();
        part[4][l] += xr * t[j].real() + xi * t[j].imag();
    });
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

}  // namespace tomofuse::ptycho::detail
