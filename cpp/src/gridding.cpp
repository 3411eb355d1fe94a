// Gridding of samples on rays through the origin onto the Hermitian half of a frequency grid:
// the spreading step of the Fourier back-projector (a type-1 non-uniform FFT whose result is
// the real part).  See tomo.hpp for the contract.
//
// Per sample: the `width` row taps and `width` column taps of the separable kernel come from
// one Horner evaluation of the piecewise polynomials on a vector of 2 * kPad lanes (row taps in
// the first half, column taps in the second), the column taps times the complex sample make one
// vector of kPad interleaved complex values, and each of the `width` rows adds that vector times
// its row tap.  GCC / Clang vector extensions keep those steps in SIMD registers (loops over
// small arrays were scalarized by the compiler: 4x slower); like tomo.cpp, this file needs
// GCC or Clang.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "isa.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"
#include "tomofuse/tomo.hpp"

namespace tomofuse::tomo {

namespace {

// Taps per axis held in a vector: width <= kPad; the taps beyond width have zero coefficients.
template <typename Real>
constexpr std::size_t kPad = std::is_same_v<Real, float> ? 8 : 16;

template <typename Real>
struct Lanes {
    static constexpr std::size_t n = 2 * kPad<Real>;
    typedef Real type __attribute__((vector_size(n * sizeof(Real))));
};

// Lanes K... of the concatenation (a, b), as GCC's and Clang's shuffle builtins spell it.
template <typename V, int... K>
inline V shuffle(V a, V b, std::integer_sequence<int, K...>) {
#if defined(__clang__)
    return __builtin_shufflevector(a, b, K...);
#else
    using Index = std::conditional_t<sizeof(a[0]) == 4, int, long long>;
    typedef Index IV __attribute__((vector_size(sizeof(V))));
    return __builtin_shuffle(a, b, IV{static_cast<Index>(K)...});
#endif
}

// (k0, k0, k1, k1, ..., k_{P-1}, k_{P-1}) from the second half: the column taps against
// interleaved (re, im) pairs.
template <typename Real, std::size_t... I>
inline typename Lanes<Real>::type duplicate_upper(typename Lanes<Real>::type v, std::index_sequence<I...>) {
    return shuffle(v, v, std::integer_sequence<int, static_cast<int>(kPad<Real> + I / 2)...>{});
}

// (re, im, re, im, ...): the complex sample against interleaved (re, im) lanes.
template <typename Real, std::size_t... I>
inline typename Lanes<Real>::type interleave(Real re, Real im, std::index_sequence<I...>) {
    using V = typename Lanes<Real>::type;
    return shuffle(V{} + re, V{} + im,
                   std::integer_sequence<int, (I % 2 == 0 ? 0 : static_cast<int>(sizeof...(I)))...>{});
}

// One band of extended rows [b0, b1) (row e = frequency e, from 1 - width/2 to rows/2 + width/2;
// rows outside [0, rows/2] live in the spill buffers).  Every cell of the band receives its
// samples in the order (ray, point).
template <typename Real>
struct Band {
    const std::complex<Real>* samples;
    std::size_t n_rays, n_points;
    const double* steps;
    const Real* coef;  // (degree + 1, 2 * kPad): Horner order, row taps then column taps
    std::size_t width, degree, cols;
    Real* half;   // (rows/2 + 1, cols) complex as interleaved Real
    Real* lo;     // spill rows e = -1, -2, ...: lo + (-e - 1) * 2 * cols
    Real* hi;     // spill rows e = rows/2 + 1, ...: hi + (e - rows/2 - 1) * 2 * cols
    long last;    // rows / 2
};

// Row e of the band's storage (the fields copied into locals: stores through Real* may alias
// the Band, which would make the compiler reload them for every row)
template <typename Real>
struct Rows {
    Real* half;
    Real* lo;
    Real* hi;
    long last;
    std::size_t stride;
    Real* operator()(long e) const {
        if (e < 0) {
            return lo + static_cast<std::size_t>(-e - 1) * stride;
        }
        if (e > last) {
            return hi + static_cast<std::size_t>(e - last - 1) * stride;
        }
        return half + static_cast<std::size_t>(e) * stride;
    }
};

template <typename Real>
inline __attribute__((always_inline)) void spread_band_body(const Band<Real>& b, long b0, long b1) {
    constexpr std::size_t P = kPad<Real>;
    const long w = static_cast<long>(b.width);
    const long half_w = w / 2;
    const long cols = static_cast<long>(b.cols);
    const double center = 0.5 * static_cast<double>(b.cols);
    const Rows<Real> row_ptr{b.half, b.lo, b.hi, b.last, 2 * b.cols};
    const Real* const coef = b.coef;
    const std::size_t degree = b.degree;
    for (std::size_t a = 0; a < b.n_rays; ++a) {
        // rays with a negative row step are reflected through the origin, their samples
        // conjugated: the real part of the transform is unchanged
        const bool reflect = b.steps[2 * a] < 0.0;
        const double dr = reflect ? -b.steps[2 * a] : b.steps[2 * a];
        const double dc = reflect ? -b.steps[2 * a + 1] : b.steps[2 * a + 1];
        // points whose rows floor(k dr) - w/2 + 1 ... floor(k dr) + w/2 meet [b0, b1)
        std::size_t k0 = 0, k1 = b.n_points;
        if (dr > 0.0) {
            const double lo_k = std::floor(static_cast<double>(b0 - half_w - 1) / dr) - 1.0;
            const double hi_k = std::ceil(static_cast<double>(b1 + half_w) / dr) + 1.0;
            k0 = lo_k <= 0.0 ? 0 : static_cast<std::size_t>(std::min(lo_k, static_cast<double>(b.n_points)));
            k1 = hi_k <= 0.0 ? 0 : static_cast<std::size_t>(std::min(hi_k, static_cast<double>(b.n_points)));
        }
        const std::complex<Real>* s = b.samples + a * b.n_points;
        for (std::size_t k = k0; k < k1; ++k) {
            const double gr = static_cast<double>(k) * dr;
            const double gc = static_cast<double>(k) * dc + center;
            const double fr = std::floor(gr), fc = std::floor(gc);
            const long e0 = static_cast<long>(fr) - half_w + 1;
            const long r_first = std::max(0L, b0 - e0), r_end = std::min(w, b1 - e0);
            if (r_first >= r_end) {
                continue;
            }
            const Real zr = static_cast<Real>(2.0 * (gr - fr) - 1.0);
            const Real zc = static_cast<Real>(2.0 * (gc - fc) - 1.0);
            const Real sr = s[k].real();
            const Real si = reflect ? -s[k].imag() : s[k].imag();
            const long c0 = static_cast<long>(fc) - half_w + 1;
            using V = typename Lanes<Real>::type;
            V z;
            for (std::size_t j = 0; j < P; ++j) {
                z[j] = zr;
                z[P + j] = zc;
            }
            V kv;
            std::memcpy(&kv, coef, sizeof(V));
            for (std::size_t d = 1; d <= degree; ++d) {
                V c;
                std::memcpy(&c, coef + d * 2 * P, sizeof(V));
                kv = kv * z + c;
            }
            const V sv = interleave<Real>(sr, si, std::make_index_sequence<2 * P>{});
            const V v = duplicate_upper<Real>(kv, std::make_index_sequence<2 * P>{}) * sv;
            Real kr[P];
            for (std::size_t j = 0; j < P; ++j) {
                kr[j] = kv[j];
            }
            if (c0 >= 0 && c0 + static_cast<long>(P) <= cols) {
                // interior points (all their rows in the half grid) without the spill tests
                Real* const first_row = e0 >= 0 && e0 + w - 1 <= row_ptr.last ? row_ptr(e0) : nullptr;
                for (long r = r_first; r < r_end; ++r) {
                    Real* cell = (first_row != nullptr ? first_row + static_cast<std::size_t>(r) * row_ptr.stride
                                                       : row_ptr(e0 + r)) + 2 * c0;
                    const Real t = kr[r];
                    V g;
                    std::memcpy(&g, cell, sizeof(V));
                    g += t * v;
                    std::memcpy(cell, &g, sizeof(V));
                }
            } else {  // the taps wrap around the grid's column period
                for (long r = r_first; r < r_end; ++r) {
                    Real* row = row_ptr(e0 + r);
                    const Real t = kr[r];
                    for (long j = 0; j < w; ++j) {
                        const long c = ((c0 + j) % cols + cols) % cols;
                        row[2 * c] += t * v[2 * j];
                        row[2 * c + 1] += t * v[2 * j + 1];
                    }
                }
            }
        }
    }
}

TOMOFUSE_ISA_CLONES void spread_band_float(const Band<float>& b, long b0, long b1) { spread_band_body(b, b0, b1); }
TOMOFUSE_ISA_CLONES void spread_band_double(const Band<double>& b, long b0, long b1) { spread_band_body(b, b0, b1); }

inline void spread_band(const Band<float>& b, long b0, long b1) { spread_band_float(b, b0, b1); }
inline void spread_band(const Band<double>& b, long b0, long b1) { spread_band_double(b, b0, b1); }

// dst[c] += conj(src[(cols - c) mod cols]): the reflection of a row through the origin
template <typename Real>
void add_reflected(Real* dst, const Real* src, std::size_t cols) {
    for (std::size_t c = 0; c < cols; ++c) {
        const std::size_t m = c == 0 ? 0 : cols - c;
        dst[2 * c] += src[2 * m];
        dst[2 * c + 1] -= src[2 * m + 1];
    }
}

// row <- row + reflected(row), in place (pairs c, cols - c together)
template <typename Real>
void symmetrize(Real* row, std::size_t cols) {
    for (std::size_t c = 0; c <= cols / 2; ++c) {
        const std::size_t m = c == 0 ? 0 : cols - c;
        const Real ar = row[2 * c], ai = row[2 * c + 1], br = row[2 * m], bi = row[2 * m + 1];
        row[2 * c] = ar + br;
        row[2 * c + 1] = ai - bi;
        row[2 * m] = br + ar;
        row[2 * m + 1] = bi - ai;
    }
}

}  // namespace

template <typename Real>
void check_spread_rays_hermitian(std::size_t n_rays, std::size_t n_points, const double* steps, std::size_t width,
                                 std::size_t degree, std::size_t rows, std::size_t cols) {
    constexpr std::size_t P = kPad<Real>;
    if (width < 2 || width % 2 != 0 || width > P) {
        throw InvalidArgument("spread_rays_hermitian: width must be even, 2.." + std::to_string(P) + ", got " +
                              std::to_string(width));
    }
    if (degree > 63) {
        throw InvalidArgument("spread_rays_hermitian: degree must be <= 63, got " + std::to_string(degree));
    }
    if (rows % 2 != 0 || cols % 2 != 0 || rows < 2 * width + 4 || cols < 2 * width + 4) {
        throw InvalidArgument("spread_rays_hermitian: rows and cols must be even and >= 2 * width + 4, got " +
                              std::to_string(rows) + " x " + std::to_string(cols));
    }
    const double reach = static_cast<double>(n_points == 0 ? 0 : n_points - 1);
    for (std::size_t a = 0; a < n_rays; ++a) {
        const double dr = steps[2 * a], dc = steps[2 * a + 1];
        // (half a cell of slack for the rounding of a ray that ends exactly at rows/2)
        if (!(std::isfinite(dr) && std::isfinite(dc)) || reach * std::abs(dr) > 0.5 * static_cast<double>(rows + 1) ||
            reach * std::abs(dc) > 0.5 * static_cast<double>(cols + 1)) {
            throw InvalidArgument("spread_rays_hermitian: ray " + std::to_string(a) +
                                  " leaves the grid (|steps| * (n_points - 1) must be <= rows/2, cols/2)");
        }
    }
}

template <typename Real>
void spread_rays_hermitian(const std::complex<Real>* samples, std::size_t n_rays, std::size_t n_points,
                           const double* steps, const double* kernel, std::size_t width, std::size_t degree,
                           std::size_t rows, std::size_t cols, std::complex<Real>* half, int nthreads) {
    constexpr std::size_t P = kPad<Real>;
    check_spread_rays_hermitian<Real>(n_rays, n_points, steps, width, degree, rows, cols);
    const int threads = resolve_threads(nthreads);
    const std::size_t last = rows / 2;
    const std::size_t stride = 2 * cols;
    const std::size_t spill = width / 2;
    std::vector<Real> coef((degree + 1) * 2 * P, Real(0));
    for (std::size_t d = 0; d <= degree; ++d) {
        for (std::size_t j = 0; j < width; ++j) {
            const Real c = static_cast<Real>(kernel[j * (degree + 1) + d]);
            coef[d * 2 * P + j] = c * Real(0.5);  // the 1/2 of (P + P~) / 2, exact in binary
            coef[d * 2 * P + P + j] = c;
        }
    }
    std::vector<Real> lo(spill * stride, Real(0)), hi(spill * stride, Real(0));
    Real* out = reinterpret_cast<Real*>(half);
    std::fill(out, out + (last + 1) * stride, Real(0));
    const Band<Real> band{samples, n_rays, n_points, steps, coef.data(), width, degree, cols,
                          out, lo.data(), hi.data(), static_cast<long>(last)};
    // bands of extended rows; a point near a band's edge is evaluated by both bands, each adding
    // its own rows, so every cell's sum is the same for any number of bands
    const long e_first = 1 - static_cast<long>(spill), e_end = static_cast<long>(last + spill) + 1;
    const long band_rows = threads == 1 ? e_end - e_first : 32;
    const long n_bands = (e_end - e_first + band_rows - 1) / band_rows;
    tomofuse::detail::RegionErrors errors;
    TOMOFUSE_OMP(parallel for schedule(dynamic, 1) num_threads(threads))
    for (long i = 0; i < n_bands; ++i) {
        errors.run([&] {
            const long b0 = e_first + i * band_rows;
            spread_band(band, b0, std::min(e_end, b0 + band_rows));
        });
    }
    errors.rethrow();
    // H(r) = P'(r) + conj P'(-r, -c) with P' = P / 2: the spill rows e = -d and rows/2 + d are the
    // periodic grid's rows -d and -(rows/2 - d); rows 0 and rows/2 are their own reflections
    for (std::size_t d = 1; d <= spill; ++d) {
        add_reflected(out + d * stride, lo.data() + (d - 1) * stride, cols);
        add_reflected(out + (last - d) * stride, hi.data() + (d - 1) * stride, cols);
    }
    symmetrize(out, cols);
    symmetrize(out + last * stride, cols);
}

template TOMOFUSE_EXPORT void check_spread_rays_hermitian<float>(std::size_t, std::size_t, const double*, std::size_t,
                                                                 std::size_t, std::size_t, std::size_t);
template TOMOFUSE_EXPORT void check_spread_rays_hermitian<double>(std::size_t, std::size_t, const double*, std::size_t,
                                                                  std::size_t, std::size_t, std::size_t);
template TOMOFUSE_EXPORT void spread_rays_hermitian<float>(const std::complex<float>*, std::size_t, std::size_t,
                                                           const double*, const double*, std::size_t, std::size_t,
                                                           std::size_t, std::size_t, std::complex<float>*, int);
template TOMOFUSE_EXPORT void spread_rays_hermitian<double>(const std::complex<double>*, std::size_t, std::size_t,
                                                            const double*, const double*, std::size_t, std::size_t,
                                                            std::size_t, std::size_t, std::complex<double>*, int);

}  // namespace tomofuse::tomo
