// Point-in-sphere queries with a uniform grid (see tomofuse/raster.hpp).
#include "tomofuse/raster.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::raster {

namespace detail {

// Spheres binned into cells (compressed rows: cell -> sphere indices).
template <typename Real>
class SphereGrid {
  public:
    SphereGrid(const Real* centers, const Real* radii, std::size_t m) : centers_(centers), radii_(radii) {
        double rmax = 0;
        for (std::size_t i = 0; i < 3; ++i) {
            lo_[i] = INFINITY;
            hi_[i] = -INFINITY;
        }
        for (std::size_t s = 0; s < m; ++s) {
            const double r = radii[s];
            if (!(r >= 0) || !std::isfinite(r)) {
                throw InvalidArgument("radii must be finite and >= 0, got " + std::to_string(r) +
                                      " at index " + std::to_string(s));
            }
            rmax = std::max(rmax, r);
            for (std::size_t i = 0; i < 3; ++i) {
                const double c = centers[3 * s + i];
                if (!std::isfinite(c)) {
                    throw InvalidArgument("centers must be finite, got a non-finite value in row " +
                                          std::to_string(s));
                }
                lo_[i] = std::min(lo_[i], c - r);
                hi_[i] = std::max(hi_[i], c + r);
            }
        }
        // Cells of 2*rmax, enlarged if the grid would exceed ~16M cells.
        double cell = std::max(2.0 * rmax, 1e-300);
        for (;;) {
            std::size_t total = 1;
            for (std::size_t i = 0; i < 3; ++i) {
                dims_[i] = static_cast<std::size_t>(std::floor((hi_[i] - lo_[i]) / cell)) + 1;
                total *= dims_[i];
            }
            if (total <= (std::size_t{1} << 24)) {
                break;
            }
            cell *= 2.0;
        }
        inv_cell_ = 1.0 / cell;
        const std::size_t ncell = dims_[0] * dims_[1] * dims_[2];
        start_.assign(ncell + 1, 0);
        // Two passes over the spheres (count, fill): deterministic order.
        for (int pass = 0; pass < 2; ++pass) {
            std::vector<std::size_t> fill;
            if (pass == 1) {
                for (std::size_t c = 0; c < ncell; ++c) {
                    start_[c + 1] += start_[c];
                }
                index_.resize(start_[ncell]);
                fill.assign(start_.begin(), start_.end() - 1);
            }
            for (std::size_t s = 0; s < m; ++s) {
                std::array<std::size_t, 3> a{}, b{};
                for (std::size_t i = 0; i < 3; ++i) {
                    a[i] = clamp_cell(centers[3 * s + i] - radii[s], i);
                    b[i] = clamp_cell(centers[3 * s + i] + radii[s], i);
                }
                for (std::size_t z = a[0]; z <= b[0]; ++z) {
                    for (std::size_t y = a[1]; y <= b[1]; ++y) {
                        for (std::size_t x = a[2]; x <= b[2]; ++x) {
                            const std::size_t c = (z * dims_[1] + y) * dims_[2] + x;
                            if (pass == 0) {
                                ++start_[c + 1];
                            } else {
                                index_[fill[c]++] = static_cast<std::uint32_t>(s);
                            }
                        }
                    }
                }
            }
        }
    }

    bool contains(const Real* p) const {
        std::size_t ijk[3];
        for (std::size_t i = 0; i < 3; ++i) {
            const double v = p[i];
            if (!(v >= lo_[i] && v <= hi_[i])) {
                return false;
            }
            ijk[i] = clamp_cell(v, i);
        }
        const std::size_t c = (ijk[0] * dims_[1] + ijk[1]) * dims_[2] + ijk[2];
        for (std::size_t k = start_[c]; k < start_[c + 1]; ++k) {
            const std::size_t s = index_[k];
            double d2 = 0;
            for (std::size_t i = 0; i < 3; ++i) {
                const double d = static_cast<double>(p[i]) - static_cast<double>(centers_[3 * s + i]);
                d2 += d * d;
            }
            const double r = radii_[s];
            if (d2 <= r * r) {
                return true;
            }
        }
        return false;
    }

  private:
    std::size_t clamp_cell(double v, std::size_t axis) const {
        const double f = std::floor((v - lo_[axis]) * inv_cell_);
        if (!(f > 0)) {
            return 0;
        }
        return std::min(static_cast<std::size_t>(f), dims_[axis] - 1);
    }

    const Real* centers_;
    const Real* radii_;
    double lo_[3]{}, hi_[3]{}, inv_cell_ = 1;
    std::size_t dims_[3]{1, 1, 1};
    std::vector<std::size_t> start_;
    std::vector<std::uint32_t> index_;
};

}  // namespace detail

template <typename Real>
void points_in_spheres(const Real* points, std::size_t n, const Real* centers, const Real* radii,
                       std::size_t m, std::uint8_t* inside, int nthreads) {
    const int threads = resolve_threads(nthreads);
    if (n > 0 && (points == nullptr || inside == nullptr)) {
        throw InvalidArgument("points and inside must not be null when n > 0");
    }
    if (m > 0 && (centers == nullptr || radii == nullptr)) {
        throw InvalidArgument("centers and radii must not be null when m > 0");
    }
    if (m > UINT32_MAX) {
        throw InvalidArgument("at most 2^32 - 1 spheres are supported");
    }
    if (m == 0) {
        std::fill(inside, inside + n, std::uint8_t{0});
        return;
    }
    const detail::SphereGrid<Real> grid(centers, radii, m);
    const auto count = static_cast<std::ptrdiff_t>(n);
    TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads))
    for (std::ptrdiff_t i = 0; i < count; ++i) {
        inside[i] = grid.contains(points + 3 * i) ? 1 : 0;
    }
    (void)threads;
}

template TOMOFUSE_EXPORT void points_in_spheres<float>(const float*, std::size_t, const float*, const float*,
                                                       std::size_t, std::uint8_t*, int);
template TOMOFUSE_EXPORT void points_in_spheres<double>(const double*, std::size_t, const double*,
                                                        const double*, std::size_t, std::uint8_t*, int);

}  // namespace tomofuse::raster
