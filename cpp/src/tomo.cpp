// Siddon projection and back-projection through the shared ray walker.
#include "tomofuse/tomo.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::tomo {

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
    const auto rows = static_cast<std::ptrdiff_t>(nz * ny);
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<double> acc(nx);
        TOMOFUSE_OMP(for schedule(dynamic, 4))
        for (std::ptrdiff_t r = 0; r < rows; ++r) {
            const std::size_t z = static_cast<std::size_t>(r) / ny;
            const std::size_t y = static_cast<std::size_t>(r) % ny;
            std::fill(acc.begin(), acc.end(), 0.0);
            const double yc = static_cast<double>(y) + 0.5 - cy;
            for (std::size_t a = 0; a < n_angles; ++a) {
                const Real* row = projections + (a * nz + z) * n_cols;
                const double base = yc * sn[a] + shift;
                const double c = cs[a];
                auto pos_at = [&](std::size_t x) { return (static_cast<double>(x) + 0.5 - cx) * c + base; };
                auto checked = [&](std::size_t x) {
                    const double pos = pos_at(x);
                    const double f = std::floor(pos);
                    const auto i = static_cast<long long>(f);
                    const double w = pos - f;
                    double v = 0.0;
                    if (i >= 0 && i < static_cast<long long>(n_cols)) {
                        v += (1.0 - w) * static_cast<double>(row[i]);
                    }
                    if (i + 1 >= 0 && i + 1 < static_cast<long long>(n_cols)) {
                        v += w * static_cast<double>(row[i + 1]);
                    }
                    acc[x] += v;
                };
                // pos is monotonic in x: find the pixels whose two taps are both on
                // the detector (0 <= pos < n_cols - 1), checked with the same
                // expression, and run them without branches; the same arithmetic,
                // so the sums are identical to the checked path.
                const double last = static_cast<double>(n_cols) - 1.0;
                auto interior = [&](std::size_t x) {
                    const double pos = pos_at(x);
                    return pos >= 0.0 && pos < last;
                };
                std::size_t lo = nx, hi = nx;
                if (c == 0.0) {
                    if (interior(0)) {
                        lo = 0;
                    }
                } else {
                    double xa = (0.0 - base) / c + cx - 0.5, xb = (last - base) / c + cx - 0.5;
                    if (xa > xb) {
                        std::swap(xa, xb);
                    }
                    const double l0 = std::max(0.0, std::floor(xa) - 1.0);
                    const double h0 = std::min(static_cast<double>(nx), std::ceil(xb) + 2.0);
                    if (l0 < h0) {
                        lo = static_cast<std::size_t>(l0);
                        hi = static_cast<std::size_t>(h0);
                        while (lo < hi && !interior(lo)) {
                            ++lo;
                        }
                        while (hi > lo && !interior(hi - 1)) {
                            --hi;
                        }
                    }
                }
                for (std::size_t x = 0; x < lo; ++x) {
                    checked(x);
                }
                for (std::size_t x = lo; x < hi; ++x) {
                    const double pos = pos_at(x);
                    const int i = static_cast<int>(pos);  // pos >= 0: truncation is floor
                    const double w = pos - static_cast<double>(i);
                    acc[x] += (1.0 - w) * static_cast<double>(row[i]) + w * static_cast<double>(row[i + 1]);
                }
                for (std::size_t x = hi; x < nx; ++x) {
                    checked(x);
                }
            }
            Real* out = volume + (z * ny + y) * nx;
            for (std::size_t x = 0; x < nx; ++x) {
                out[x] = static_cast<Real>(acc[x]);
            }
        }
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
