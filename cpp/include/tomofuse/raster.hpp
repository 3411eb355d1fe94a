// Point-in-shape queries for rasterizing implicit geometry (phantoms, masks).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tomofuse/export.hpp"

namespace tomofuse::raster {

/// For each of `n` points (row-major (n, 3)), whether it lies inside (distance
/// <= radius) any of `m` spheres (centers row-major (m, 3), radii (m,)).
/// Writes 1/0 to `inside[n]`.
///
/// Spheres are binned once into a uniform grid of cells twice the largest
/// radius wide, so each point tests only the spheres of its cell: O(n + m)
/// for spheres of similar size. Every output element depends only on its own
/// point, so results are identical for any thread count.
///
/// Throws tomofuse::InvalidArgument for null pointers with non-zero counts,
/// negative or non-finite radii, non-finite centers, or nthreads < 0.
template <typename Real>
void points_in_spheres(const Real* points, std::size_t n, const Real* centers, const Real* radii,
                       std::size_t m, std::uint8_t* inside, int nthreads = 0);

extern template TOMOFUSE_EXPORT void points_in_spheres<float>(const float*, std::size_t, const float*,
                                                              const float*, std::size_t, std::uint8_t*, int);
extern template TOMOFUSE_EXPORT void points_in_spheres<double>(const double*, std::size_t, const double*,
                                                               const double*, std::size_t, std::uint8_t*,
                                                               int);

}  // namespace tomofuse::raster
