// Siddon projection and back-projection through the shared ray walker.
#include "tomofuse/tomo.hpp"

#include <algorithm>
#include <cmath>
#include <new>
#include <memory>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

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

// Back-projection of one block of B detector rows (slices z0 .. z0+B-1).
//
// `block` holds the filtered projections of these rows transposed to
// (angle, column + 1, row-in-block) with a zero column on either side of the
// detector, so linear interpolation needs no bounds checks and the B slices of
// a voxel column are contiguous: one weight pair serves B samples, which the
// compiler vectorizes.  `acc` is (y1 - y0, nx, B) and is accumulated over the
// angles in order, so every voxel's sum has a fixed order.
// The voxels x in [lo, hi) of one row whose padded position p = (x + 0.5 - cx) c + base
// satisfies 0 <= p < top (p is monotonic in x; the ends are checked with the
// same expression as the loop uses).
inline void x_range(double c, double base, double cx, double top, std::size_t nx, std::size_t& lo,
                    std::size_t& hi) {
    auto inside = [&](std::size_t x) {
        const double p = (static_cast<double>(x) + 0.5 - cx) * c + base;
        return p >= 0.0 && p < top;
    };
    lo = hi = 0;
    if (c == 0.0) {
        if (inside(0)) {
            hi = nx;
        }
        return;
    }
    double xa = (0.0 - base) / c + cx - 0.5, xb = (top - base) / c + cx - 0.5;
    if (xa > xb) {
        std::swap(xa, xb);
    }
    const double l0 = std::max(0.0, std::floor(xa) - 1.0);
    const double h0 = std::min(static_cast<double>(nx), std::ceil(xb) + 2.0);
    if (l0 < h0) {
        lo = static_cast<std::size_t>(l0);
        hi = static_cast<std::size_t>(h0);
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
    const double p = (static_cast<double>(x) + 0.5 - cx) * c + base;
    const auto i = static_cast<std::size_t>(p);  // p >= 0: truncation is floor
    const auto w = static_cast<Real>(p - static_cast<double>(i));
    const Real w0 = Real(1) - w;
    const Real* t0 = ta + i * B;
    // out and t0 never overlap (accumulator vs projection block)
    TOMOFUSE_OMP(simd)
    for (std::size_t b = 0; b < B; ++b) {
        out[b] += w0 * t0[b] + w * t0[B + b];
    }
}

// Two consecutive angles at once: out = (out + tap_a) + tap_b, the same operations in
// the same order as two single passes (so the same bits), with one load and store of
// the accumulator instead of two.
template <typename Real, std::size_t B>
inline __attribute__((always_inline)) void add_tap_pair(const Real* ta, double ca, double base_a, const Real* tb,
                                                        double cb, double base_b, double cx, std::size_t x,
                                                        Real* out) {
    const double pa = (static_cast<double>(x) + 0.5 - cx) * ca + base_a;
    const double pb = (static_cast<double>(x) + 0.5 - cx) * cb + base_b;
    const auto ia = static_cast<std::size_t>(pa);
    const auto ib = static_cast<std::size_t>(pb);
    const auto wa = static_cast<Real>(pa - static_cast<double>(ia));
    const auto wb = static_cast<Real>(pb - static_cast<double>(ib));
    const Real wa0 = Real(1) - wa, wb0 = Real(1) - wb;
    const Real* t0 = ta + ia * B;
    const Real* u0 = tb + ib * B;
    TOMOFUSE_OMP(simd)
    for (std::size_t b = 0; b < B; ++b) {
        out[b] = (out[b] + (wa0 * t0[b] + wa * t0[B + b])) + (wb0 * u0[b] + wb * u0[B + b]);
    }
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
    const double top = static_cast<double>(n_cols) + 1.0;  // padded position p must satisfy 0 <= p < top
    std::size_t a = 0;
    for (; a + 1 < n_angles; a += 2) {
        const Real* ta = block + a * ld;
        const Real* tb = ta + ld;
        const double ca = cs[a], cb = cs[a + 1];
        for (std::size_t y = y0; y < y1; ++y) {
            // padded column position of voxel x: p = pos + 1, pos as in backproject_linear's contract
            const double yc = static_cast<double>(y) + 0.5 - cy;
            const double base_a = yc * sn[a] + shift + 1.0;
            const double base_b = yc * sn[a + 1] + shift + 1.0;
            std::size_t lo_a, hi_a, lo_b, hi_b;
            x_range(ca, base_a, cx, top, nx, lo_a, hi_a);
            x_range(cb, base_b, cx, top, nx, lo_b, hi_b);
            Real* row = acc + (y - y0) * nx * B;
            // [both_lo, both_hi): both angles; outside it, whichever applies (a first)
            const std::size_t both_lo = std::max(lo_a, lo_b), both_hi = std::min(hi_a, hi_b);
            if (both_lo >= both_hi) {
                for (std::size_t x = lo_a; x < hi_a; ++x) {
                    add_tap<Real, B>(ta, ca, base_a, cx, x, row + x * B);
                }
                for (std::size_t x = lo_b; x < hi_b; ++x) {
                    add_tap<Real, B>(tb, cb, base_b, cx, x, row + x * B);
                }
                continue;
            }
            for (std::size_t x = std::min(lo_a, lo_b); x < both_lo; ++x) {
                if (x >= lo_a) {
                    add_tap<Real, B>(ta, ca, base_a, cx, x, row + x * B);
                } else {
                    add_tap<Real, B>(tb, cb, base_b, cx, x, row + x * B);
                }
            }
            for (std::size_t x = both_lo; x < both_hi; ++x) {
                add_tap_pair<Real, B>(ta, ca, base_a, tb, cb, base_b, cx, x, row + x * B);
            }
            for (std::size_t x = both_hi; x < std::max(hi_a, hi_b); ++x) {
                if (x < hi_a) {
                    add_tap<Real, B>(ta, ca, base_a, cx, x, row + x * B);
                } else {
                    add_tap<Real, B>(tb, cb, base_b, cx, x, row + x * B);
                }
            }
        }
    }
    for (; a < n_angles; ++a) {
        const Real* ta = block + a * ld;
        const double c = cs[a];
        for (std::size_t y = y0; y < y1; ++y) {
            const double base = (static_cast<double>(y) + 0.5 - cy) * sn[a] + shift + 1.0;
            std::size_t lo, hi;
            x_range(c, base, cx, top, nx, lo, hi);
            Real* row = acc + (y - y0) * nx * B;
            for (std::size_t x = lo; x < hi; ++x) {
                add_tap<Real, B>(ta, c, base, cx, x, row + x * B);
            }
        }
    }
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
TOMOFUSE_BLOCK_KERNEL(float, 1)
TOMOFUSE_BLOCK_KERNEL(double, 32)
TOMOFUSE_BLOCK_KERNEL(double, 16)
TOMOFUSE_BLOCK_KERNEL(double, 4)
TOMOFUSE_BLOCK_KERNEL(double, 1)
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
            backproject_block_1(block, n_cols, cs, sn, n_angles, shift, cy, cx, nx, y0, y1, acc);
    }
}

}  // namespace detail

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
    // Rows are processed in blocks of 32 (then 16, 4 and 1 for the remainder).
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
        block.assign_zero(n_angles * ld * B);
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
