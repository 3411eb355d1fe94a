// Exact voxel traversal of rays through label volumes, and the area-correct
// particle surfaces the rays start from.
//
// Coordinates are continuous voxel coordinates in (z, y, x) order: voxel
// (i, j, k) spans [i, i+1) x [j, j+1) x [k, k+1), its center is (i+.5, j+.5, k+.5).
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "tomofuse/export.hpp"

namespace tomofuse::raytrace {

using Shape3 = std::array<std::size_t, 3>;

/// Amanatides-Woo traversal of the voxels a ray crosses.
///
/// The ray is `origin + t * direction` (direction need not be unit length; `t`
/// is then in units of |direction|). The start voxel is floor(origin) per axis,
/// except that an integral coordinate with a negative direction component
/// starts in the voxel below. At each step the axis with the smallest next
/// boundary parameter is stepped (ties: z before y before x).
///
/// The policy is called as:
///   bool on_voxel(std::size_t flat_index, double t_enter, double t_exit)  // false stops
///   void on_outside(double t)   // the ray left (or started outside) the grid at t
///   void on_limit()             // the ray reached max_length inside the grid
/// `t_exit` is clipped to max_length.
template <class Policy>
void walk(const Shape3& shape, const double origin[3], const double direction[3], double max_length,
          Policy& policy) {
    long long voxel[3];
    int step[3];
    double t_max[3];
    double t_delta[3];
    const double inf = std::numeric_limits<double>::infinity();
    for (int a = 0; a < 3; ++a) {
        const double o = origin[a];
        const double d = direction[a];
        double f = std::floor(o);
        if (f == o && d < 0) {
            f -= 1.0;
        }
        voxel[a] = static_cast<long long>(f);
        if (d > 0) {
            step[a] = 1;
            t_max[a] = ((f + 1.0) - o) / d;
            t_delta[a] = 1.0 / d;
        } else if (d < 0) {
            step[a] = -1;
            t_max[a] = (f - o) / d;
            t_delta[a] = -1.0 / d;
        } else {
            step[a] = 0;
            t_max[a] = inf;
            t_delta[a] = inf;
        }
    }
    double t = 0.0;
    for (;;) {
        for (int a = 0; a < 3; ++a) {
            if (voxel[a] < 0 || voxel[a] >= static_cast<long long>(shape[a])) {
                policy.on_outside(t);
                return;
            }
        }
        int axis = 0;
        if (t_max[1] < t_max[axis]) {
            axis = 1;
        }
        if (t_max[2] < t_max[axis]) {
            axis = 2;
        }
        const double t_next = t_max[axis];
        const std::size_t flat =
            (static_cast<std::size_t>(voxel[0]) * shape[1] + static_cast<std::size_t>(voxel[1])) * shape[2] +
            static_cast<std::size_t>(voxel[2]);
        const bool limited = t_next >= max_length;
        if (!policy.on_voxel(flat, t, limited ? max_length : t_next)) {
            return;
        }
        if (limited) {
            policy.on_limit();
            return;
        }
        t = t_next;
        voxel[axis] += step[axis];
        t_max[axis] += t_delta[axis];
    }
}

/// Label code reported for rays that leave the grid or exceed max_length first.
inline constexpr std::uint8_t kNoHit = 255;

/// What a ray from a particle's surface meets (see trace_rays).
struct RayHits {
    std::vector<std::uint8_t> label;     ///< first foreign voxel's label, or kNoHit
    std::vector<std::int32_t> particle;  ///< its particle id
    std::vector<double> sei_length;      ///< length through the SEI met first, NaN otherwise
};

/// Trace `n` rays (origins and directions row-major (n, 3), voxel coordinates)
/// through `labels` / `particles` (C order, `shape`). Voxels whose particle id
/// equals `self_ids[i]` (when > 0) are skipped; the first other voxel is the
/// hit. If its label is `sei_label`, the walk continues through the SEI and
/// `sei_length` is the path length from entering it to leaving its last voxel.
/// The run ends at the grid's edge, at `max_length`, or where the ray has
/// crossed more than `max_gap` (path length, voxels) of non-SEI voxels in a
/// row; shorter gaps are bridged when SEI follows (a ray running along the
/// radial edge of an SEI patch zig-zags across its staircase; 0 = no bridging,
/// stop at the first non-SEI voxel). Deterministic for any thread count. Throws
/// tomofuse::InvalidArgument for bad arguments.
TOMOFUSE_EXPORT void trace_rays(const std::uint8_t* labels, const std::int32_t* particles, const Shape3& shape,
                                const double* origins, const double* directions, const std::int32_t* self_ids,
                                std::size_t n, double max_length, std::uint8_t sei_label, double max_gap,
                                RayHits& out, int nthreads = 0);

/// Surface elements of every particle (see surface_elements).
struct SurfaceElements {
    std::vector<std::int32_t> particle;  ///< owning particle id
    std::vector<double> center;          ///< (n, 3) face centers, voxel coordinates
    std::vector<double> normal;          ///< (n, 3) outward unit normals
    std::vector<double> area;            ///< (n,) area in voxel^2 (area-correct weights)
    std::vector<std::int8_t> axis;       ///< signed outward face axis: +-1 z, +-2 y, +-3 x
    std::size_t size() const noexcept { return area.size(); }
};

/// The voxel faces between each particle (id > 0) and anything else, as an
/// area-correct surface: the outward normal n is minus the gradient (central
/// differences, averaged over the two voxels beside the face; the inside voxel
/// alone at the grid's edge) of the particle's indicator smoothed by a Gaussian
/// of std `sigma` voxels (truncated at int(4 sigma + 0.5), zero outside the
/// grid); a face's area is |n . e_axis| voxel^2, so the weights of a plane's
/// staircase sum to its true area. If n . e_axis <= 0 the face axis is used.
/// Order: particle ascending, inside voxel in C order, axes -z +z -y +y -x +x.
/// OpenMP over particles; deterministic. Throws tomofuse::InvalidArgument.
TOMOFUSE_EXPORT SurfaceElements surface_elements(const std::int32_t* particles, const Shape3& shape, double sigma,
                                                 int nthreads = 0);

}  // namespace tomofuse::raytrace
