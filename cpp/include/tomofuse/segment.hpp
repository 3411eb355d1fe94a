// Segmentation kernels: a separable Gaussian blur with replicated edges (and its
// adjoint), and iterated conditional modes (ICM) on a label volume whose blurred
// phase levels must explain a measured volume.
//
// The model (tomofuse.segment): a measured volume y (e.g. PXCT delta) is the
// piecewise-constant level field m[L] of the labels blurred by the instrument's
// point-spread function H (Gaussian, per-axis sigma, edge-replicated), plus noise:
//
//   E(L) = w * sum_i (y_i - (H m[L])_i)^2                    data (w = 1 / (2 s^2))
//        + beta * #{6-neighbor pairs with different labels} smoothness (Potts)
//        + sum_i U_i(L_i)                                      unary (pair form, below)
//
// ICM visits every voxel and gives it the label that lowers E most, keeping the
// data term exact through g = H^T (y - H m[L]) updated after every change with
// the Gram matrix H^T H (separable: one banded matrix per axis). E never increases.
//
// Unary terms come in pairs (a, b) with a signed field d: U(b) = max(0, d),
// U(a) = max(0, -d), other labels 0 (evidence that decides between two labels of
// similar level, e.g. graphite vs silicon from a second modality).
//
// Sweeps in cells: the volume is cut into cubic cells of at least max(4 r + 1, 3) voxels along
// each axis (r the kernel radius), on the lattice of the whole volume (`origin` places a
// block in it), and colored by the parities of their cell indices (8 colors). The colors
// run one after the other; the cells of one color run at once, each visiting the voxels
// that want to change, most confident first. Cells of one color never touch the same
// voxels of g, so the result is identical for any thread count, and a voxel's history
// depends only on its neighborhood and its place on the lattice -- a block with a halo
// (and its origin) gives the whole volume's labels wherever the halo holds the influence
// of the block's edges.
//
// A visit skips the voxels whose decision provably stands: when a voxel is found to keep its
// label, the lowest energy change to another label is kept as a bound with the voxel's g at that
// time, and the voxel is skipped while the bound exceeds the most that g's change since can have
// changed its energy changes (2 w D |change of g|, D the largest difference of levels; the move's
// voxel and its 6-neighbors are always visited again). Every
// sweep starts with a look, plane by plane in memory order, at the voxels whose bound is negative
// (their best moves from the sweep's starting g; a bound for those that keep their label), and
// visits only the cells where a voxel still wants to move or that a move has reached since. The
// labels are those of computing every voxel's best move at every visit, only faster (most
// voxels, inside phases, are computed once per call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tomofuse/export.hpp"

namespace tomofuse::segment {

/// Shape of a (z, y, x) C-contiguous volume.
struct Shape {
    std::size_t nz = 0, ny = 0, nx = 0;
    std::size_t size() const noexcept { return nz * ny * nx; }
};

/// Radius (voxels) of the sampled Gaussian kernel of `sigma` voxels: ceil(3.5 sigma), 0 for sigma 0.
TOMOFUSE_EXPORT int kernel_radius(double sigma);

/// out = H in (adjoint = false) or H^T in (adjoint = true): per-axis sampled Gaussians
/// (sigma[3] in voxels along z, y, x, each normalized to sum 1; sigma 0 = identity)
/// with edge-replicated boundaries. `in` and `out` may be the same array.
/// Throws InvalidArgument for negative or non-finite sigma, null pointers or nthreads < 0.
TOMOFUSE_EXPORT void gaussian_blur(const float* in, float* out, Shape shape, const double sigma[3],
                                   bool adjoint = false, int nthreads = 0);

/// Linear interpolation of a field of `factor`-cube means back onto the fine grid (tomofuse.segment's
/// TXTM evidence): fine voxel i along an axis lies at coarse coordinate c = (i + o % f + 0.5) / f - 0.5
/// (o the fine volume's origin in a larger one: the weights depend only on the place on the lattice)
/// and takes (1 - w) a[floor(c)] + w a[floor(c) + 1] with w = c - floor(c) in float32, the end values
/// beyond the first and last coarse centers. The axes in the order z, y, x, each in float32 as
/// a0 * (1 - w) + a1 * w: the same bits as that separable computation in NumPy.
///
/// in  (coarse) float32, every extent >= 1; out (fine) float32, every extent >= 1; factor >= 1.
/// Throws InvalidArgument for null pointers, empty shapes, factor < 1 or negative origin.
TOMOFUSE_EXPORT void upsample_linear(const float* in, Shape coarse, float* out, Shape fine, int factor,
                                     const std::ptrdiff_t origin[3], int nthreads = 0);

struct IcmOptions {
    double data_weight = 1.0;   ///< w = 1 / (2 s^2), per squared data unit (> 0)
    double smoothness = 0.0;    ///< beta, per unlike 6-neighbor pair (>= 0)
    int max_sweeps = 10;        ///< >= 0
    std::size_t min_changes = 0;  ///< stop after a sweep that changes at most this many voxels
    int cell = 0;               ///< edge of the cells of a sweep (0: 4 r + 1 per axis, at least 8;
                                ///< else >= max(4 r + 1, 3))
    std::ptrdiff_t origin[3] = {0, 0, 0};  ///< where the volume starts in a larger one (z, y, x), >= 0
};

struct IcmReport {
    int sweeps = 0;                      ///< sweeps run
    std::vector<std::int64_t> changes;   ///< voxels changed in each sweep
    std::vector<std::int64_t> evaluations;  ///< best moves each sweep computed (see icm)
    double energy_before = 0.0;          ///< E at the start
    double energy_after = 0.0;           ///< E at the end (E at the start plus the moves' exact changes)
};

/// Iterated conditional modes (see the file comment).
///
/// data    (shape) measured volume, finite
/// labels  (shape) uint8 labels < n_labels, updated in place
/// levels  (n_labels) level of each label in data units, finite
/// sigma   PSF sigma along z, y, x in voxels (>= 0)
/// allowed (shape) uint8 bit masks (bit k set: label k allowed at the voxel) or null = all;
///         a voxel's current label is kept if no allowed label lowers E
/// pairs   (n_pairs, 2) label pairs (a, b), a != b; unary (n_pairs, shape) float32 d fields
///         (null when n_pairs == 0)
/// Throws InvalidArgument for labels out of range, non-finite input or bad options.
TOMOFUSE_EXPORT IcmReport icm(const float* data, std::uint8_t* labels, Shape shape, const float* levels,
                              int n_labels, const double sigma[3], const std::uint8_t* allowed,
                              const std::uint8_t* pairs, int n_pairs, const float* unary,
                              const IcmOptions& options, int nthreads = 0);

/// E(L) of the model (same terms and weights as icm).
TOMOFUSE_EXPORT double icm_energy(const float* data, const std::uint8_t* labels, Shape shape,
                                  const float* levels, int n_labels, const double sigma[3],
                                  const std::uint8_t* pairs, int n_pairs, const float* unary,
                                  const IcmOptions& options, int nthreads = 0);

/// Whole components turned to one label where that lowers E (escapes ICM's one-voxel local
/// minima, e.g. a one-to-two-voxel layer of another phase on a particle).
///
/// components (shape) int32 ids >= 0 (0 = none); ids 1, 2, ... are tried in increasing order,
/// each turned to `target` as a whole when the exact energy change (data term on the support
/// of H times the change, unlike pairs, unaries) is negative; later components see the earlier
/// ones' result. The other arguments as in icm. Returns the number of voxels changed.
TOMOFUSE_EXPORT std::int64_t shell_moves(const float* data, std::uint8_t* labels, Shape shape,
                                         const float* levels, int n_labels, const double sigma[3],
                                         const std::int32_t* components, int target,
                                         const std::uint8_t* pairs, int n_pairs, const float* unary,
                                         const IcmOptions& options, int nthreads = 0);

}  // namespace tomofuse::segment
