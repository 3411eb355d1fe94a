// Parallel-beam tomography: exact-length (Siddon) projection and its adjoint.
//
// Volumes are (nz, ny, nx), projections (n_angles, nz, n_cols), both C order.
// The rotation axis is z through (y, x) = (ny/2, nx/2) in voxel coordinates
// (voxel (i, j, k) spans [i, i+1) x [j, j+1) x [k, k+1)). At angle theta the
// detector axis is e_u = (x: cos theta, y: sin theta) and the rays run along
// e_r = (x: -sin theta, y: cos theta); column c sits at
// u = c + 0.5 - n_cols/2 - center_offset (voxels), so the rotation axis projects
// to the continuous detector position n_cols/2 + center_offset. Row z of the
// projection is the line integral (in voxel lengths) through slice z.
#pragma once

#include <cstddef>

#include "tomofuse/export.hpp"
#include "tomofuse/raytrace.hpp"

namespace tomofuse::tomo {

/// Line integrals of `volume` along every (angle, row, column) ray.
template <typename Real>
void project(const Real* volume, const raytrace::Shape3& shape, const double* angles, std::size_t n_angles,
             std::size_t n_cols, double center_offset, Real* projections, int nthreads = 0);

/// The exact adjoint of project(): every ray spreads its value over the
/// voxels it crosses, weighted by the intersection lengths. `volume` is
/// overwritten. Parallel over slices, so results do not depend on nthreads.
template <typename Real>
void backproject(const Real* projections, const raytrace::Shape3& shape, const double* angles,
                 std::size_t n_angles, std::size_t n_cols, double center_offset, Real* volume, int nthreads = 0);

/// Pixel-driven back-projection with linear interpolation on the detector, the
/// back-projection step of filtered back-projection: each voxel center (y, x)
/// projects to u = (x - nx/2) cos theta + (y - ny/2) sin theta, i.e. column
/// u - 0.5 + n_cols/2 + center_offset, and sums the interpolated values over
/// the angles in order (zero beyond the detector), in `Real` arithmetic.
/// `volume` is overwritten. Rows are processed in blocks so that one
/// interpolation weight serves up to 32 slices (vectorized; instruction-set
/// clones on GCC/x86-64 give identical bits); a lone row (a single slice, or
/// the last of a volume) is vectorized along x instead, with the same bits.
/// Every voxel is summed by one thread in a fixed order: identical results
/// for any thread count.
template <typename Real>
void backproject_linear(const Real* projections, const raytrace::Shape3& shape, const double* angles,
                        std::size_t n_angles, std::size_t n_cols, double center_offset, Real* volume,
                        int nthreads = 0);

/// The single-row kernel backproject_linear<float> runs on this machine: "avx512f",
/// "avx2" or "portable" (the environment variable TOMOFUSE_DISABLE_INTRINSICS, e.g.
/// "avx512f,avx2", read when the library loads, excludes instruction sets; for tests).
TOMOFUSE_EXPORT const char* backproject_linear_row_kernel();

extern template TOMOFUSE_EXPORT void backproject_linear<float>(const float*, const raytrace::Shape3&, const double*,
                                                               std::size_t, std::size_t, double, float*, int);
extern template TOMOFUSE_EXPORT void backproject_linear<double>(const double*, const raytrace::Shape3&,
                                                                const double*, std::size_t, std::size_t, double,
                                                                double*, int);
extern template TOMOFUSE_EXPORT void project<float>(const float*, const raytrace::Shape3&, const double*,
                                                    std::size_t, std::size_t, double, float*, int);
extern template TOMOFUSE_EXPORT void project<double>(const double*, const raytrace::Shape3&, const double*,
                                                     std::size_t, std::size_t, double, double*, int);
extern template TOMOFUSE_EXPORT void backproject<float>(const float*, const raytrace::Shape3&, const double*,
                                                        std::size_t, std::size_t, double, float*, int);
extern template TOMOFUSE_EXPORT void backproject<double>(const double*, const raytrace::Shape3&, const double*,
                                                         std::size_t, std::size_t, double, double*, int);

}  // namespace tomofuse::tomo
