// Siddon projection and back-projection through the shared ray walker.
#include "tomofuse/tomo.hpp"

#include <algorithm>
#include <cmath>
#include <new>
#include <memory>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "aligned.hpp"
#include "isa.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::tomo {

using tomofuse::detail::RegionErrors;

namespace detail {

// The in-plane part of one ray clipped to the slice [0, ny] x [0, nx]:
// origin (z, y, x) just inside and unit direction, or false if it misses.
struct Ray {
    double origin[3];
    double direction[3];
    double length;
};

bool clip_ray(const raytrace::Shape3& shape, double z, double theta, double u, Ray& ray) {
    const double cy = 0.5 * static_cast<double>(shape[1]);
    const double cx = 0.5 * static_cast<double>(shape[2]);
    const double c = std::cos(theta), s = std::sin(theta);
    // point on the ray at t = 0 and direction, in (y, x)
    const double p[2] = {cy + u * s, cx + u * c};
    const double d[2] = {c, -s};
    const double hi[2] = {static_cast<double>(shape[1]), static_cast<double>(shape[2])};
    double t0 = -std::numeric_limits<double>::infinity();
    double t1 = std::numeric_limits<double>::infinity();
    for (int a = 0; a < 2; ++a) {
        if (d[a] == 0.0) {
            if (p[a] < 0.0 || p[a] >= hi[a]) {
                return false;
            }
            continue;
        }
        double ta = (0.0 - p[a]) / d[a];
        double tb = (hi[a] - p[a]) / d[a];
        if (ta > tb) {
            std::swap(ta, tb);
        }
        t0 = std::max(t0, ta);
        t1 = std::min(t1, tb);
    }
    if (!(t1 > t0)) {
        return false;
    }
    ray.origin[0] = z;
    for (int a = 0; a < 2; ++a) {
        // start on the entry boundary, clamped against rounding just outside
        double v = p[a] + t0 * d[a];
        v = std::min(std::max(v, 0.0), std::nextafter(hi[a], 0.0));
        ray.origin[a + 1] = v;
        ray.direction[a + 1] = d[a];
    }
    ray.direction[0] = 0.0;
    ray.length = t1 - t0;
    return true;
}

template <typename Real>
struct Integrate {
    const Real* volume;
    double sum = 0.0;
    bool on_voxel(std::size_t idx, double t0, double t1) {
        sum += static_cast<double>(volume[idx]) * (t1 - t0);
        return true;
    }
    void on_outside(double) {}
    void on_limit() {}
};

template <typename Real>
struct Spread {
    Real* volume;
    double value;
    bool on_voxel(std::size_t idx, double t0, double t1) {
        volume[idx] += static_cast<Real>(value * (t1 - t0));
        return true;
    }
    void on_outside(double) {}
    void on_limit() {}
};

void check(const raytrace::Shape3& shape, const double* angles, std::size_t n_angles, std::size_t n_cols,
           double center_offset, const void* a, const void* b) {
    for (std::size_t i = 0; i < 3; ++i) {
        if (shape[i] == 0) {
            throw ShapeError("tomofuse::tomo: every volume dimension must be > 0");
        }
    }
    if (n_angles == 0 || n_cols == 0) {
        throw ShapeError("tomofuse::tomo: need at least one angle and one detector column");
    }
    if (n_cols > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw ShapeError("tomofuse::tomo: at most 2^31 - 1 detector columns are supported");
    }
    if (angles == nullptr || a == nullptr || b == nullptr) {
        throw InvalidArgument("tomofuse::tomo: null pointer argument");
    }
    for (std::size_t i = 0; i < n_angles; ++i) {
        if (!std::isfinite(angles[i])) {
            throw InvalidArgument("angles must be finite, got a non-finite value at index " + std::to_string(i));
        }
    }
    if (!std::isfinite(center_offset)) {
        throw InvalidArgument("center_offset must be finite");
    }
}

double column_u(std::size_t c, std::size_t n_cols, double center_offset) {
    return static_cast<double>(c) + 0.5 - 0.5 * static_cast<double>(n_cols) - center_offset;
}

}  // namespace detail

template <typename Real>
void project(const Real* volume, const raytrace::Shape3& shape, const double* angles, std::size_t n_angles,
             std::size_t n_cols, double center_offset, Real* projections, int nthreads) {
    const int threads = resolve_threads(nthreads);
    detail::check(shape, angles, n_angles, n_cols, center_offset, volume, projections);
    const std::size_t nz = shape[0];
    const auto jobs = static_cast<std::ptrdiff_t>(n_angles * nz);
    TOMOFUSE_OMP(parallel for schedule(dynamic, 4) num_threads(threads))
    for (std::ptrdiff_t job = 0; job < jobs; ++job) {
        const auto a = static_cast<std::size_t>(job) / nz;
        const auto z = static_cast<std::size_t>(job) % nz;
        Real* row = projections + (a * nz + z) * n_cols;
        for (std::size_t c = 0; c < n_cols; ++c) {
            detail::Ray ray{};
            detail::Integrate<Real> acc{volume};
            if (detail::clip_ray(shape, static_cast<double>(z) + 0.5, angles[a],
                                 detail::column_u(c, n_cols, center_offset), ray)) {
                raytrace::walk(shape, ray.origin, ray.direction, ray.length, acc);
            }
            row[c] = static_cast<Real>(acc.sum);
        }
    }
    (void)threads;
}

template <typename Real>
void backproject(const Real* projections, const raytrace::Shape3& shape, const double* angles,
                 std::size_t n_angles, std::size_t n_cols, double center_offset, Real* volume, int nthreads) {
    const int threads = resolve_threads(nthreads);
    detail::check(shape, angles, n_angles, n_cols, center_offset, projections, volume);
    const std::size_t nz = shape[0];
    const std::size_t slice = shape[1] * shape[2];
    std::fill(volume, volume + nz * slice, Real(0));
    const auto slices = static_cast<std::ptrdiff_t>(nz);
    // Each slice is owned by one thread and visited in a fixed order: no races,
    // and the same sums in the same order for any thread count.
    TOMOFUSE_OMP(parallel for schedule(dynamic, 1) num_threads(threads))
    for (std::ptrdiff_t zi = 0; zi < slices; ++zi) {
        const auto z = static_cast<std::size_t>(zi);
        for (std::size_t a = 0; a < n_angles; ++a) {
            const Real* row = projections + (a * nz + z) * n_cols;
            for (std::size_t c = 0; c < n_cols; ++c) {
                if (row[c] == Real(0)) {
                    continue;
                }
                detail::Ray ray{};
                if (detail::clip_ray(shape, static_cast<double>(z) + 0.5, angles[a],
                                     detail::column_u(c, n_cols, center_offset), ray)) {
                    detail::Spread<Real> spread{volume, static_cast<double>(row[c])};
                    raytrace::walk(shape, ray.origin, ray.direction, ray.length, spread);
                }
            }
        }
    }
    (void)threads;
}

namespace detail {

// Voxel x's offset from the rotation center in x, x + 0.5 - cx, in the samples' precision:
// exact (a multiple of 0.5 below 2^22), so the same whichever kernel computes it.
template <typename Real>
inline Real voxel_offset(std::size_t x, double cx) {
    return static_cast<Real>(static_cast<double>(x) + 0.5 - cx);
}

// The padded detector position of a voxel at offset xc from the center, for an angle of cosine
// c and row base `base` (both rounded to Real once per angle and row): p = xc c + base in the
// samples' precision, two roundings (no contraction).  Every back-projection kernel, scalar or
// vector, blocked or lone, computes exactly this, so a slice has the same bits whichever path
// computes it.  For float32 samples the positions are float (error ~2^-24 of the detector
// width, 1.2e-4 px at 2048 columns, against the samples' own 2^-24): half the vector work of
// double positions in the lone-row kernels, where positions are most of the work.
template <typename Real>
inline Real position(Real xc, Real c, Real base) {
    return xc * c + base;
}

// The voxels x in [lo, hi) of one row whose padded position p = position(x + 0.5 - cx, c, base)
// satisfies 0 <= p < top (p is monotonic in x; the ends are checked with the same expression as
// the kernels use, so no kernel reads outside the padded row).  `inv_c` is 1 / c (0 for c == 0):
// the estimate of the ends takes no division.  Where |c| is tiny the float positions' rounding
// (~1e-4 px) can move the exact ends by more than the estimate's margin; the run found is then
// the estimate's part of it, whose ends lie within that rounding of 0 and top, where a tap's
// weights reach only the zero padding (contributions ~1e-4 of a sample).  Every kernel takes
// the same runs, so a slice has the same bits whichever path computes it.
template <typename Real>
inline void x_range(double c, double inv_c, double base, double cx, double top, std::size_t nx, std::size_t& lo,
                    std::size_t& hi) {
    const Real cr = static_cast<Real>(c), br = static_cast<Real>(base), topr = static_cast<Real>(top);
    auto inside = [&](std::size_t x) {
        const Real p = position<Real>(voxel_offset<Real>(x, cx), cr, br);
        return p >= Real(0) && p < topr;
    };
    lo = hi = 0;
    if (c == 0.0) {
        if (inside(0)) {
            hi = nx;
        }
        return;
    }
    double xa = (0.0 - base) * inv_c + cx - 0.5, xb = (top - base) * inv_c + cx - 0.5;
    if (xa > xb) {
        std::swap(xa, xb);
    }
    // truncation instead of floor / ceil (no SSE4.1 rounding in the baseline build): trunc(v) - 2 <=
    // floor(v) - 1 and trunc(v) + 3 >= ceil(v) + 2; clamped first so that the conversions stay in range
    const double bound = static_cast<double>(nx) + 4.0;
    const auto l0 = static_cast<std::ptrdiff_t>(std::min(std::max(xa, -4.0), bound)) - 2;
    const auto h0 = static_cast<std::ptrdiff_t>(std::min(std::max(xb, -4.0), bound)) + 3;
    const auto n = static_cast<std::ptrdiff_t>(nx);
    const std::ptrdiff_t l = std::max<std::ptrdiff_t>(0, l0), h = std::min(n, h0);
    if (l < h) {
        lo = static_cast<std::size_t>(l);
        hi = static_cast<std::size_t>(h);
        while (lo < hi && !inside(lo)) {
            ++lo;
        }
        while (hi > lo && !inside(hi - 1)) {
            --hi;
        }
    }
}

// One angle's contribution to the B slices of voxel x: out += w0 t[i] + w t[i + 1].
template <typename Real, std::size_t B>
inline __attribute__((always_inline)) void add_tap(const Real* ta, double c, double base, double cx, std::size_t x,
                                                   Real* out) {
    const Real p = position<Real>(voxel_offset<Real>(x, cx), static_cast<Real>(c), static_cast<Real>(base));
    const auto i = static_cast<std::int32_t>(p);  // p >= 0: truncation is floor
    const Real w = p - static_cast<Real>(i);
    const Real* t0 = ta + static_cast<std::size_t>(i) * B;
    // out and t0 never overlap (accumulator vs projection block)
    TOMOFUSE_OMP(simd)
    for (std::size_t b = 0; b < B; ++b) {
        out[b] += t0[b] + w * (t0[B + b] - t0[b]);
    }
}

// Two consecutive angles at once for voxels [lo, hi): out = (out + tap_a) + tap_b, each tap the
// operations of add_tap in the same order as two single passes (so the same bits), with one load
// and store of the accumulator instead of two.  The positions of 16 voxels come first, in a loop
// of fixed length that the compiler vectorizes (per voxel they cost as much as the taps of 16
// slices), then the taps.
template <typename Real, std::size_t B>
inline __attribute__((always_inline)) void add_tap_pairs(const Real* ta, double ca, double base_a, const Real* tb,
                                                         double cb, double base_b, double cx, std::size_t lo,
                                                         std::size_t hi, Real* row) {
    constexpr std::size_t K = 16;
    alignas(64) std::int32_t ia[K], ib[K];
    alignas(64) Real wa[K], wb[K];
    const Real car = static_cast<Real>(ca), bar = static_cast<Real>(base_a);
    const Real cbr = static_cast<Real>(cb), bbr = static_cast<Real>(base_b);
    const Real x00 = voxel_offset<Real>(0, cx);
    for (std::size_t x0 = lo; x0 < hi; x0 += K) {
        // lanes past hi are computed and not used (their positions stay within int range)
        for (std::size_t j = 0; j < K; ++j) {
            const Real xc = x00 + static_cast<Real>(x0 + j);  // == voxel_offset(x0 + j, cx), exact
            const Real pa = position<Real>(xc, car, bar);
            const Real pb = position<Real>(xc, cbr, bbr);
            ia[j] = static_cast<std::int32_t>(pa);  // p >= 0 for used lanes: truncation is floor
            ib[j] = static_cast<std::int32_t>(pb);
            wa[j] = pa - static_cast<Real>(ia[j]);
            wb[j] = pb - static_cast<Real>(ib[j]);
        }
        const std::size_t n = std::min(K, hi - x0);
        for (std::size_t j = 0; j < n; ++j) {
            const Real* t0 = ta + static_cast<std::size_t>(ia[j]) * B;
            const Real* u0 = tb + static_cast<std::size_t>(ib[j]) * B;
            Real* out = row + (x0 + j) * B;
            TOMOFUSE_OMP(simd)
            for (std::size_t b = 0; b < B; ++b) {
                out[b] = (out[b] + (t0[b] + wa[j] * (t0[B + b] - t0[b]))) + (u0[b] + wb[j] * (u0[B + b] - u0[b]));
            }
        }
    }
}

// The geometry both back-projection kernels walk: every angle (in pairs a, a + 1) and every
// row y of the tile [y0, y1), with the x range of voxels whose padded detector position p
// satisfies 0 <= p < top.  `taps(a, base_a, b, base_b, lo, hi, y)` adds the taps of voxels
// [lo, hi) of row y: angle a's alone when b == kOneAngle, else a's then b's per voxel.
// Outside the overlap of the two ranges only one angle applies, so every voxel gets its
// angles' taps in angle order.
constexpr std::size_t kOneAngle = static_cast<std::size_t>(-1);

template <typename Real, typename Taps>
inline __attribute__((always_inline)) void for_angle_pairs(const double* cs, const double* sn, std::size_t n_angles,
                                                           double shift, double cy, double cx, double top,
                                                           std::size_t nx, std::size_t y0, std::size_t y1,
                                                           Taps&& taps) {
    auto inverse = [](double c) { return c == 0.0 ? 0.0 : 1.0 / c; };
    std::size_t a = 0;
    for (; a + 1 < n_angles; a += 2) {
        const std::size_t b = a + 1;
        const double inv_a = inverse(cs[a]), inv_b = inverse(cs[b]);
        for (std::size_t y = y0; y < y1; ++y) {
            // padded column position of voxel x: p = pos + 1, pos as in backproject_linear's contract
            const double yc = static_cast<double>(y) + 0.5 - cy;
            const double base_a = yc * sn[a] + shift + 1.0;
            const double base_b = yc * sn[b] + shift + 1.0;
            std::size_t lo_a, hi_a, lo_b, hi_b;
            x_range<Real>(cs[a], inv_a, base_a, cx, top, nx, lo_a, hi_a);
            x_range<Real>(cs[b], inv_b, base_b, cx, top, nx, lo_b, hi_b);
            const std::size_t both_lo = std::max(lo_a, lo_b), both_hi = std::min(hi_a, hi_b);
            if (both_lo >= both_hi) {
                taps(a, base_a, kOneAngle, 0.0, lo_a, hi_a, y);
                taps(b, base_b, kOneAngle, 0.0, lo_b, hi_b, y);
                continue;
            }
            taps(a, base_a, kOneAngle, 0.0, lo_a, both_lo, y);
            taps(b, base_b, kOneAngle, 0.0, lo_b, both_lo, y);
            taps(a, base_a, b, base_b, both_lo, both_hi, y);
            taps(a, base_a, kOneAngle, 0.0, both_hi, hi_a, y);
            taps(b, base_b, kOneAngle, 0.0, both_hi, hi_b, y);
        }
    }
    for (; a < n_angles; ++a) {
        const double inv = inverse(cs[a]);
        for (std::size_t y = y0; y < y1; ++y) {
            const double base = (static_cast<double>(y) + 0.5 - cy) * sn[a] + shift + 1.0;
            std::size_t lo, hi;
            x_range<Real>(cs[a], inv, base, cx, top, nx, lo, hi);
            taps(a, base, kOneAngle, 0.0, lo, hi, y);
        }
    }
}

// One slice (B = 1).  The blocked kernels vectorize along the B slices of a voxel, which a
// single slice does not have, so here the vector runs along x.  Every tap is the same
// operations as add_tap with B = 1 in the same order (contraction is off, the positions are
// `position`, and d[i] is the subtraction t[i + 1] - t[i] that add_tap makes), so a slice
// has the same bits whichever path computes it.
//
// Gathering t[i], d[i] per lane is slow (microcoded on AMD); but |cos| <= 1, so W
// consecutive voxels read at most W + 1 consecutive taps: two contiguous loads and an
// in-register permutation replace each gather.  `t` and `d` are padded rows; reads run up to
// kSingleSlack values past a row (the block is allocated with that much slack).
constexpr std::size_t kSingleSlack = 32;

template <typename Real>
inline void taps_along_x_portable(const Real* __restrict t, const Real* __restrict d, Real c, Real base,
                                  const Real* __restrict xc, int lo, int hi, Real* __restrict row) {
    for (int x = lo; x < hi; ++x) {
        const Real p = position<Real>(xc[x], c, base);
        const int i = static_cast<int>(p);  // p >= 0: truncation is floor
        const Real w = p - static_cast<Real>(i);
        row[x] += t[i] + w * d[i];
    }
}

// Voxels [lo, hi) of one row: angle a's taps, then (tb != nullptr) angle b's, per voxel; also
// the tails that the vector kernels leave.
template <typename Real>
void taps_along_x_generic(const Real* __restrict ta, const Real* __restrict da, Real ca, Real base_a,
                          const Real* __restrict tb, const Real* __restrict db, Real cb, Real base_b,
                          const Real* __restrict xc, int lo, int hi, Real* __restrict row) {
    taps_along_x_portable(ta, da, ca, base_a, xc, lo, hi, row);
    if (tb != nullptr) {
        taps_along_x_portable(tb, db, cb, base_b, xc, lo, hi, row);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define TOMOFUSE_X86_SINGLE_SLICE 1
// GCC 12's AVX-512 conversion intrinsics start from _mm256_undefined_si256() and trip a false
// -Wmaybe-uninitialized (GCC bug 105593)
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// 16 voxels x .. x + 15 of one angle: t[i] + w d[i] (d the differences of the row's samples).
// The positions are monotone in x, so the lowest tap is lane `first`'s (0 for cos >= 0, else
// 15): every index lies in [i0, i0 + 16], two contiguous loads and a permutation per array.
__attribute__((target("avx512f"), always_inline)) inline __m512 tap16(const float* __restrict t,
                                                                      const float* __restrict d, __m512 vc,
                                                                      __m512 vbase, const float* __restrict xc,
                                                                      int x, int first) {
    const __m512 p = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(xc + x), vc), vbase);
    const __m512i idx = _mm512_cvttps_epi32(p);
    const __m512 w = _mm512_sub_ps(p, _mm512_cvtepi32_ps(idx));
    const __m512i vi0 = first == 0 ? _mm512_broadcastd_epi32(_mm512_castsi512_si128(idx))
                                   : _mm512_permutexvar_epi32(_mm512_set1_epi32(15), idx);
    const int i0 = _mm_cvtsi128_si32(_mm512_castsi512_si128(vi0));
    const __m512i rel = _mm512_sub_epi32(idx, vi0);  // in [0, 16]
    const __m512 a = _mm512_permutex2var_ps(_mm512_loadu_ps(t + i0), rel, _mm512_loadu_ps(t + i0 + 16));
    const __m512 b = _mm512_permutex2var_ps(_mm512_loadu_ps(d + i0), rel, _mm512_loadu_ps(d + i0 + 16));
    return _mm512_add_ps(a, _mm512_mul_ps(w, b));
}

__attribute__((target("avx512f"))) void taps_along_x_avx512(const float* __restrict ta, const float* __restrict da,
                                                            float ca, float base_a, const float* __restrict tb,
                                                            const float* __restrict db, float cb, float base_b,
                                                            const float* __restrict xc, int lo, int hi,
                                                            float* __restrict row) {
    const __m512 vca = _mm512_set1_ps(ca), vba = _mm512_set1_ps(base_a);
    const __m512 vcb = _mm512_set1_ps(cb), vbb = _mm512_set1_ps(base_b);
    const int fa = ca >= 0.0 ? 0 : 15, fb = cb >= 0.0 ? 0 : 15;
    int x = lo;
    for (; x + 16 <= hi; x += 16) {
        __m512 r = _mm512_add_ps(_mm512_loadu_ps(row + x), tap16(ta, da, vca, vba, xc, x, fa));
        if (tb != nullptr) {
            r = _mm512_add_ps(r, tap16(tb, db, vcb, vbb, xc, x, fb));
        }
        _mm512_storeu_ps(row + x, r);
    }
    taps_along_x_generic(ta, da, ca, base_a, tb, db, cb, base_b, xc, x, hi, row);
}

// 8 voxels of one angle; permutevar8x32 takes the index mod 8, so lanes past 7 blend in the
// second load.  The lowest tap as in tap16 (`first`: 0 or 7).
__attribute__((target("avx2"), always_inline)) inline __m256 tap8(const float* __restrict t,
                                                                  const float* __restrict d, __m256 vc,
                                                                  __m256 vbase, const float* __restrict xc, int x,
                                                                  int first) {
    const __m256 p = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(xc + x), vc), vbase);
    const __m256i idx = _mm256_cvttps_epi32(p);
    const __m256 w = _mm256_sub_ps(p, _mm256_cvtepi32_ps(idx));
    const __m256i vi0 = first == 0 ? _mm256_broadcastd_epi32(_mm256_castsi256_si128(idx))
                                   : _mm256_permutevar8x32_epi32(idx, _mm256_set1_epi32(7));
    const int i0 = _mm_cvtsi128_si32(_mm256_castsi256_si128(vi0));
    const __m256i rel = _mm256_sub_epi32(idx, vi0);  // in [0, 8]
    const __m256 high = _mm256_castsi256_ps(_mm256_cmpgt_epi32(rel, _mm256_set1_epi32(7)));
    const __m256 a = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(t + i0), rel),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(t + i0 + 8), rel), high);
    const __m256 b = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(d + i0), rel),
                                      _mm256_permutevar8x32_ps(_mm256_loadu_ps(d + i0 + 8), rel), high);
    return _mm256_add_ps(a, _mm256_mul_ps(w, b));
}

__attribute__((target("avx2"))) void taps_along_x_avx2(const float* __restrict ta, const float* __restrict da,
                                                       float ca, float base_a, const float* __restrict tb,
                                                       const float* __restrict db, float cb, float base_b,
                                                       const float* __restrict xc, int lo, int hi,
                                                       float* __restrict row) {
    const __m256 vca = _mm256_set1_ps(ca), vba = _mm256_set1_ps(base_a);
    const __m256 vcb = _mm256_set1_ps(cb), vbb = _mm256_set1_ps(base_b);
    const int fa = ca >= 0.0 ? 0 : 7, fb = cb >= 0.0 ? 0 : 7;
    int x = lo;
    for (; x + 8 <= hi; x += 8) {
        __m256 r = _mm256_add_ps(_mm256_loadu_ps(row + x), tap8(ta, da, vca, vba, xc, x, fa));
        if (tb != nullptr) {
            r = _mm256_add_ps(r, tap8(tb, db, vcb, vbb, xc, x, fb));
        }
        _mm256_storeu_ps(row + x, r);
    }
    taps_along_x_generic(ta, da, ca, base_a, tb, db, cb, base_b, xc, x, hi, row);
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// The signature of taps_along_x_generic and of its vector kernels.
template <typename Real>
using SingleSliceTaps = void (*)(const Real* __restrict, const Real* __restrict, Real, Real, const Real* __restrict,
                                 const Real* __restrict, Real, Real, const Real* __restrict, int, int,
                                 Real* __restrict);

#ifdef TOMOFUSE_X86_SINGLE_SLICE
// Instruction sets the hand-written kernels may not use, from the environment variable
// TOMOFUSE_DISABLE_INTRINSICS (comma-separated: "avx512f", "avx2"; like NumPy's
// NPY_DISABLE_CPU_FEATURES), so that tests can run every path on one machine.  Read once
// when the library is loaded (static initialization, before any thread can call in).
struct DisabledIntrinsics {
    bool avx512f = false, avx2 = false;
    DisabledIntrinsics() {
        const char* env = std::getenv("TOMOFUSE_DISABLE_INTRINSICS");
        const std::string list = env != nullptr ? env : "";
        avx512f = list.find("avx512f") != std::string::npos;
        avx2 = list.find("avx2") != std::string::npos;
    }
};
const DisabledIntrinsics kDisabledIntrinsics;
#endif

// The single-row kernel and its name, chosen per call of the kernel (CPU features are fixed at
// process start; no shared state).  float only: double rows take the portable kernel.
struct RowKernel {
    const char* name;
    SingleSliceTaps<float> taps;
};

RowKernel row_kernel() {
#ifdef TOMOFUSE_X86_SINGLE_SLICE
    if (!kDisabledIntrinsics.avx512f && __builtin_cpu_supports("avx512f")) {
        return {"avx512f", taps_along_x_avx512};
    }
    if (!kDisabledIntrinsics.avx2 && __builtin_cpu_supports("avx2")) {
        return {"avx2", taps_along_x_avx2};
    }
#endif
    return {"portable", taps_along_x_generic<float>};
}

// A lone row's block is (angle, column + 1) followed by the differences of neighboring samples,
// d[i] = t[i + 1] - t[i] (the same float subtraction the blocked kernels make per tap, so the
// same bits), which saves the lone-row kernels a gather and a subtraction per tap.
template <typename Real>
void single_row_differences(Real* block, std::size_t n_angles, std::size_t ld) {
    const std::size_t n = n_angles * ld;
    Real* diff = block + n;
    for (std::size_t i = 0; i + 1 < n; ++i) {
        diff[i] = block[i + 1] - block[i];
    }
    diff[n - 1] = Real(0) - block[n - 1];
}

template <typename Real>
void backproject_single_rows(const Real* block, std::size_t n_cols, const double* cs, const double* sn,
                             std::size_t n_angles, double shift, double cy, double cx, std::size_t nx,
                             std::size_t y0, std::size_t y1, Real* acc) {
    const std::size_t ld = n_cols + 2;
    const Real* diff = block + n_angles * ld;  // see single_row_differences
    SingleSliceTaps<Real> taps = taps_along_x_generic<Real>;
    if constexpr (std::is_same_v<Real, float>) {
        taps = row_kernel().taps;
    }
    // voxel x's offset from the center, x + 0.5 - cx (exact), with room for a full vector
    std::vector<Real> xc(nx + 16);
    for (std::size_t x = 0; x < xc.size(); ++x) {
        xc[x] = voxel_offset<Real>(x, cx);
    }
    for_angle_pairs<Real>(cs, sn, n_angles, shift, cy, cx, static_cast<double>(n_cols) + 1.0, nx, y0, y1,
                    [&](std::size_t a, double base_a, std::size_t b, double base_b, std::size_t lo, std::size_t hi,
                        std::size_t y) __attribute__((always_inline)) {
                        if (lo < hi) {
                            const bool pair = b != kOneAngle;
                            taps(block + a * ld, diff + a * ld, static_cast<Real>(cs[a]),
                                 static_cast<Real>(base_a), pair ? block + b * ld : nullptr,
                                 pair ? diff + b * ld : nullptr, pair ? static_cast<Real>(cs[b]) : Real(0),
                                 static_cast<Real>(base_b), xc.data(), static_cast<int>(lo), static_cast<int>(hi),
                                 acc + (y - y0) * nx);
                        }
                    });
}

// Back-projection of one block of B detector rows (slices z0 .. z0+B-1).
//
// `block` holds the filtered projections of these rows transposed to
// (angle, column + 1, row-in-block) with a zero column on either side of the
// detector, so linear interpolation needs no bounds checks and the B slices of
// a voxel column are contiguous: one weight pair serves B samples, which the
// compiler vectorizes.  `acc` is (y1 - y0, nx, B) and is accumulated over the
// angles in order, so every voxel's sum has a fixed order.
template <typename Real, std::size_t B>
inline __attribute__((always_inline)) void backproject_block_rows(const Real* block, std::size_t n_cols,
                                                                  const double* cs, const double* sn,
                                                                  std::size_t n_angles, double shift, double cy,
                                                                  double cx, std::size_t nx, std::size_t y0,
                                                                  std::size_t y1, Real* acc) {
    const std::size_t ld = (n_cols + 2) * B;
    // inlined (always_inline) into each instruction-set clone of the caller
    for_angle_pairs<Real>(cs, sn, n_angles, shift, cy, cx, static_cast<double>(n_cols) + 1.0, nx, y0, y1,
                    [&](std::size_t a, double base_a, std::size_t b, double base_b, std::size_t lo, std::size_t hi,
                        std::size_t y) __attribute__((always_inline)) {
                        const Real* ta = block + a * ld;
                        Real* row = acc + (y - y0) * nx * B;
                        if (b == kOneAngle) {
                            for (std::size_t x = lo; x < hi; ++x) {
                                add_tap<Real, B>(ta, cs[a], base_a, cx, x, row + x * B);
                            }
                        } else {
                            add_tap_pairs<Real, B>(ta, cs[a], base_a, block + b * ld, cs[b], base_b, cx, lo, hi, row);
                        }
                    });
}

// A zero-filled buffer aligned to 64 bytes (one 16-float column of a block is one
// cache line and one AVX-512 vector).
template <typename Real>
struct AlignedBuffer {
    tomofuse::detail::AlignedArray<Real> data;
    std::size_t size = 0;
    void assign_zero(std::size_t n) {
        if (n > size) {
            data = tomofuse::detail::alloc_aligned<Real>(n);
            size = n;
        }
        std::fill(data.get(), data.get() + n, Real(0));
    }
};

#define TOMOFUSE_BLOCK_KERNEL(Real, B)                                                                      \
    TOMOFUSE_ISA_CLONES void backproject_block_##B(                                                         \
        const Real* block, std::size_t n_cols, const double* cs, const double* sn, std::size_t n_angles,    \
        double shift, double cy, double cx, std::size_t nx, std::size_t y0, std::size_t y1, Real* acc) {    \
        backproject_block_rows<Real, B>(block, n_cols, cs, sn, n_angles, shift, cy, cx, nx, y0, y1, acc);    \
    }
TOMOFUSE_BLOCK_KERNEL(float, 32)
TOMOFUSE_BLOCK_KERNEL(float, 16)
TOMOFUSE_BLOCK_KERNEL(float, 4)
TOMOFUSE_BLOCK_KERNEL(double, 32)
TOMOFUSE_BLOCK_KERNEL(double, 16)
TOMOFUSE_BLOCK_KERNEL(double, 4)
#undef TOMOFUSE_BLOCK_KERNEL

template <typename Real>
void backproject_block(std::size_t B, const Real* block, std::size_t n_cols, const double* cs, const double* sn,
                       std::size_t n_angles, double shift, double cy, double cx, std::size_t nx, std::size_t y0,
                       std::size_t y1, Real* acc) {
    // one overload per Real for each block size (the clones above)
    switch (B) {
        case 32:
            backproject_block_32(block, n_cols, cs, sn, n_angles, shift, cy, cx, nx, y0, y1, acc);
            break;
        case 16:
            backproject_block_16(block, n_cols, cs, sn, n_angles, shift, cy, cx, nx, y0, y1, acc);
            break;
        case 4:
            backproject_block_4(block, n_cols, cs, sn, n_angles, shift, cy, cx, nx, y0, y1, acc);
            break;
        default:
            backproject_single_rows<Real>(block, n_cols, cs, sn, n_angles, shift, cy, cx, nx, y0, y1, acc);
    }
}

}  // namespace detail

const char* backproject_linear_row_kernel() { return detail::row_kernel().name; }

template <typename Real>
void backproject_linear(const Real* projections, const raytrace::Shape3& shape, const double* angles,
                        std::size_t n_angles, std::size_t n_cols, double center_offset, Real* volume,
                        int nthreads) {
    const int threads = resolve_threads(nthreads);
    detail::check(shape, angles, n_angles, n_cols, center_offset, projections, volume);
    const std::size_t nz = shape[0], ny = shape[1], nx = shape[2];
    std::vector<double> cs(n_angles), sn(n_angles);
    for (std::size_t a = 0; a < n_angles; ++a) {
        cs[a] = std::cos(angles[a]);
        sn[a] = std::sin(angles[a]);
    }
    const double shift = 0.5 * static_cast<double>(n_cols) - 0.5 + center_offset;
    const double cy = 0.5 * static_cast<double>(ny), cx = 0.5 * static_cast<double>(nx);
    // Rows are processed in blocks of 32 (then 16, 4 and 1 for the remainder; float rows take
    // the vectorized lone-row kernel instead of blocks of 4, whose voxel positions serve only 4
    // samples: 0.42 s per slice at 1024^2 x 1024 angles, when the lone-row kernel took 0.20 s;
    // it takes 0.11 s since its positions are float).
    // Each block's voxels are split into tiles of whole y rows whose
    // accumulators (~1 MiB) stay in cache while all angles stream past.
    detail::AlignedBuffer<Real> block;
    const std::size_t ld = n_cols + 2;
    for (std::size_t z0 = 0; z0 < nz;) {
        const std::size_t left = nz - z0;
        // the transposed block holds n_angles * (n_cols + 2) * B values: at most ~512 MiB
        // unless B is already down to 1 (PXCT's 1644 x 2048 takes 431 MB at B = 32)
        const std::size_t budget = (std::size_t{512} << 20) / (sizeof(Real) * n_angles * ld);
        std::size_t B = left >= 32 ? 32 : (left >= 16 ? 16 : (left >= 4 ? 4 : 1));
        while (B > 1 && B > budget) {
            B = B == 32 ? 16 : (B == 16 ? 4 : 1);
        }
        if (std::is_same_v<Real, float> && B == 4) {
            B = 1;
        }
        // a lone row also holds its samples' differences (single_row_differences)
        block.assign_zero(n_angles * ld * (B == 1 ? 2 : B) + detail::kSingleSlack);
        const auto n_a = static_cast<std::ptrdiff_t>(n_angles);
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads))
        for (std::ptrdiff_t ai = 0; ai < n_a; ++ai) {
            const auto a = static_cast<std::size_t>(ai);
            Real* dst = block.data.get() + a * ld * B;
            for (std::size_t b = 0; b < B; ++b) {
                const Real* src = projections + (a * nz + z0 + b) * n_cols;
                for (std::size_t col = 0; col < n_cols; ++col) {
                    dst[(col + 1) * B + b] = src[col];
                }
            }
        }
        if (B == 1) {
            detail::single_row_differences(block.data.get(), n_angles, ld);
        }
        const std::size_t tile = std::max<std::size_t>(1, (std::size_t{1} << 20) / (nx * B * sizeof(Real)));
        const std::size_t n_tiles = (ny + tile - 1) / tile;
        const auto tiles = static_cast<std::ptrdiff_t>(n_tiles);
        RegionErrors errors;
        TOMOFUSE_OMP(parallel num_threads(threads))
        {
            detail::AlignedBuffer<Real> acc;
            TOMOFUSE_OMP(for schedule(dynamic, 1))
            for (std::ptrdiff_t ti = 0; ti < tiles; ++ti) {
                errors.run([&] {
                    const std::size_t y0 = static_cast<std::size_t>(ti) * tile;
                    const std::size_t y1 = std::min(ny, y0 + tile);
                    acc.assign_zero(tile * nx * B);
                    detail::backproject_block<Real>(B, block.data.get(), n_cols, cs.data(), sn.data(), n_angles, shift, cy,
                                                    cx, nx, y0, y1, acc.data.get());
                    for (std::size_t y = y0; y < y1; ++y) {
                        const Real* src = acc.data.get() + (y - y0) * nx * B;
                        for (std::size_t b = 0; b < B; ++b) {
                            Real* out = volume + ((z0 + b) * ny + y) * nx;
                            for (std::size_t x = 0; x < nx; ++x) {
                                out[x] = src[x * B + b];
                            }
                        }
                    }
                });
            }
        }
        errors.rethrow();
        z0 += B;
    }
    (void)threads;
}

template TOMOFUSE_EXPORT void backproject_linear<float>(const float*, const raytrace::Shape3&, const double*,
                                                        std::size_t, std::size_t, double, float*, int);
template TOMOFUSE_EXPORT void backproject_linear<double>(const double*, const raytrace::Shape3&, const double*,
                                                         std::size_t, std::size_t, double, double*, int);
template TOMOFUSE_EXPORT void project<float>(const float*, const raytrace::Shape3&, const double*, std::size_t,
                                             std::size_t, double, float*, int);
template TOMOFUSE_EXPORT void project<double>(const double*, const raytrace::Shape3&, const double*, std::size_t,
                                              std::size_t, double, double*, int);
template TOMOFUSE_EXPORT void backproject<float>(const float*, const raytrace::Shape3&, const double*, std::size_t,
                                                 std::size_t, double, float*, int);
template TOMOFUSE_EXPORT void backproject<double>(const double*, const raytrace::Shape3&, const double*,
                                                  std::size_t, std::size_t, double, double*, int);

}  // namespace tomofuse::tomo
