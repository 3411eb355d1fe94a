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

#include <complex>
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

/// Gridding for the Fourier back-projector: the spreading step of a type-1 non-uniform FFT of
/// samples on rays through the origin, onto the Hermitian half of a (rows, cols) frequency grid,
/// for a transform whose real part is wanted (a real image).
///
/// Ray a carries `n_points` samples `samples[a * n_points + k]` at the grid position
/// k * (steps[2a], steps[2a + 1]) (row, column; cells); rays with a negative row step are
/// reflected through the origin with their samples conjugated, which leaves the real part
/// unchanged.  Every position must lie within rows/2 and cols/2 of the origin.  A sample at
/// (g_r, g_c) adds s * phi_r * phi_c to the cells around it, with the kernel given as `width`
/// (even, <= 8 for float, <= 16 for double) polynomials of degree `degree`: tap j, at the cell
/// floor(g) - width/2 + 1 + j of an axis, has the value sum_d kernel[j * (degree + 1) + d] *
/// z^(degree - d), z = 2 (g - floor(g)) - 1, evaluated in `Real` by Horner's rule.
///
/// `half` ((rows/2 + 1) x cols, overwritten) receives H = (G + G~) / 2 for the frequency rows
/// 0 .. rows/2, with G the periodic (rows, cols) grid of the spread samples and G~(r, c) =
/// conj G(-r, -c): the inverse 2-D DFT of the Hermitian grid whose half this is (a complex
/// transform along the columns, then a complex-to-real one along the rows) is the real part of
/// G's.  Row r is frequency r; column c is frequency c - cols/2 (the origin at the center, as in
/// finufft's spreader).  Every cell sums its samples in the order (ray, point), and the kernel of
/// a sample is evaluated the same way wherever it is used: identical results for any thread
/// count.  Instruction-set clones (GCC, x86-64) are compiled without contraction: the same bits.
template <typename Real>
void spread_rays_hermitian(const std::complex<Real>* samples, std::size_t n_rays, std::size_t n_points,
                           const double* steps, const double* kernel, std::size_t width, std::size_t degree,
                           std::size_t rows, std::size_t cols, std::complex<Real>* half, int nthreads = 0);
/// The argument checks of spread_rays_hermitian (which runs them too): InvalidArgument unless
/// width is even and fits, degree <= 63, rows and cols are even and >= 2 width + 4 and every
/// ray stays within rows/2, cols/2 of the origin.
template <typename Real>
void check_spread_rays_hermitian(std::size_t n_rays, std::size_t n_points, const double* steps, std::size_t width,
                                 std::size_t degree, std::size_t rows, std::size_t cols);
extern template TOMOFUSE_EXPORT void check_spread_rays_hermitian<float>(std::size_t, std::size_t, const double*,
                                                                        std::size_t, std::size_t, std::size_t,
                                                                        std::size_t);
extern template TOMOFUSE_EXPORT void check_spread_rays_hermitian<double>(std::size_t, std::size_t, const double*,
                                                                         std::size_t, std::size_t, std::size_t,
                                                                         std::size_t);
extern template TOMOFUSE_EXPORT void spread_rays_hermitian<float>(const std::complex<float>*, std::size_t,
                                                                  std::size_t, const double*, const double*,
                                                                  std::size_t, std::size_t, std::size_t,
                                                                  std::size_t, std::complex<float>*, int);
extern template TOMOFUSE_EXPORT void spread_rays_hermitian<double>(const std::complex<double>*, std::size_t,
                                                                   std::size_t, const double*, const double*,
                                                                   std::size_t, std::size_t, std::size_t,
                                                                   std::size_t, std::complex<double>*, int);

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
