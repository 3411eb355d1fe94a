// Ray tracing through label volumes and area-correct particle surfaces.
#include "tomofuse/raytrace.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::raytrace {

namespace detail {

// Policy: skip the particle's own voxels, report the first foreign voxel and,
// if it is SEI, the length of the SEI run.
struct FirstHit {
    const std::uint8_t* labels;
    const std::int32_t* particles;
    std::int32_t self;
    std::uint8_t sei;
    double max_gap;
    std::uint8_t label = kNoHit;
    std::int32_t particle = 0;
    bool in_sei = false;
    double sei_start = 0.0;
    double gap_start = -1.0;  // >= 0 while crossing non-SEI voxels after the run
    double sei_length = std::numeric_limits<double>::quiet_NaN();

    bool on_voxel(std::size_t idx, double t_enter, double t_exit) {
        if (!in_sei) {
            if (self > 0 && particles[idx] == self) {
                return true;
            }
            label = labels[idx];
            particle = particles[idx];
            if (label != sei) {
                return false;
            }
            in_sei = true;
            sei_start = t_enter;
            sei_length = t_exit - t_enter;
            return true;
        }
        if (labels[idx] == sei) {
            // the run goes on, across a gap of at most max_gap if there was one
            gap_start = -1.0;
            sei_length = t_exit - sei_start;
            return true;
        }
        if (gap_start < 0) {
            gap_start = t_enter;
        }
        return max_gap > 0 && t_exit - gap_start <= max_gap;
    }
    void on_outside(double) {
        if (!in_sei) {
            label = kNoHit;
            particle = 0;
        }
    }
    void on_limit() { on_outside(0.0); }
};

std::size_t checked_volume(const Shape3& shape) {
    std::size_t n = 1;
    for (std::size_t a = 0; a < 3; ++a) {
        if (shape[a] == 0) {
            throw ShapeError("tomofuse::raytrace: every dimension of the volume must be > 0");
        }
        n *= shape[a];
    }
    return n;
}

}  // namespace detail

void trace_rays(const std::uint8_t* labels, const std::int32_t* particles, const Shape3& shape,
                const double* origins, const double* directions, const std::int32_t* self_ids, std::size_t n,
                double max_length, std::uint8_t sei_label, double max_gap, RayHits& out, int nthreads) {
    const int threads = resolve_threads(nthreads);
    detail::checked_volume(shape);
    if (labels == nullptr || particles == nullptr || (n > 0 && (origins == nullptr || directions == nullptr ||
                                                                self_ids == nullptr))) {
        throw InvalidArgument("tomofuse::raytrace::trace_rays: null pointer argument");
    }
    if (!(max_length > 0)) {
        throw InvalidArgument("max_length must be > 0, got " + std::to_string(max_length));
    }
    if (!(max_gap >= 0) || !std::isfinite(max_gap)) {
        throw InvalidArgument("max_gap must be finite and >= 0, got " + std::to_string(max_gap));
    }
    for (std::size_t i = 0; i < 3 * n; ++i) {
        if (!std::isfinite(origins[i]) || !std::isfinite(directions[i])) {
            throw InvalidArgument("origins and directions must be finite (ray " + std::to_string(i / 3) + ")");
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        const double* d = directions + 3 * i;
        if (d[0] == 0 && d[1] == 0 && d[2] == 0) {
            throw InvalidArgument("directions must be non-zero (ray " + std::to_string(i) + ")");
        }
    }
    out.label.assign(n, kNoHit);
    out.particle.assign(n, 0);
    out.sei_length.assign(n, std::numeric_limits<double>::quiet_NaN());
    const auto count = static_cast<std::ptrdiff_t>(n);
    TOMOFUSE_OMP(parallel for schedule(dynamic, 256) num_threads(threads))
    for (std::ptrdiff_t i = 0; i < count; ++i) {
        detail::FirstHit hit{labels, particles, self_ids[i], sei_label, max_gap};
        walk(shape, origins + 3 * i, directions + 3 * i, max_length, hit);
        out.label[static_cast<std::size_t>(i)] = hit.label;
        out.particle[static_cast<std::size_t>(i)] = hit.particle;
        out.sei_length[static_cast<std::size_t>(i)] = hit.sei_length;
    }
    (void)threads;
}

namespace detail {

struct Box {
    long long lo[3];
    long long hi[3];  // inclusive
};

// Gaussian-smoothed indicator of one particle on a box around it (zero outside
// the grid), and the surface elements of its faces.
class ParticleSurface {
  public:
    ParticleSurface(const std::int32_t* particles, const Shape3& shape, std::int32_t id, const Box& bbox,
                    const std::vector<double>& kernel)
        : particles_(particles), shape_(shape), id_(id) {
        // The gradients are needed within bbox +- 1 (central differences read
        // bbox +- 2). The indicator is zero outside the bbox, so every pass of
        // the separable blur is exact on bbox +- 2 with zero padding beyond it:
        // a line that misses the bbox carries only zeros through every pass.
        for (int a = 0; a < 3; ++a) {
            lo_[a] = std::max(0LL, bbox.lo[a] - 2);
            hi_[a] = std::min(static_cast<long long>(shape[a]) - 1, bbox.hi[a] + 2);
            dim_[a] = static_cast<std::size_t>(hi_[a] - lo_[a] + 1);
        }
        field_.assign(dim_[0] * dim_[1] * dim_[2], 0.0);
        for (std::size_t z = 0; z < dim_[0]; ++z) {
            for (std::size_t y = 0; y < dim_[1]; ++y) {
                for (std::size_t x = 0; x < dim_[2]; ++x) {
                    if (particle_at(lo_[0] + static_cast<long long>(z), lo_[1] + static_cast<long long>(y),
                                    lo_[2] + static_cast<long long>(x)) == id_) {
                        field_[(z * dim_[1] + y) * dim_[2] + x] = 1.0;
                    }
                }
            }
        }
        for (int a = 0; a < 3; ++a) {
            blur_axis(a, kernel);
        }
    }

    void append(const Box& bbox, SurfaceElements& out) const {
        static const int order[6][3] = {{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
        static const std::int8_t codes[6] = {-1, 1, -2, 2, -3, 3};
        for (long long z = bbox.lo[0]; z <= bbox.hi[0]; ++z) {
            for (long long y = bbox.lo[1]; y <= bbox.hi[1]; ++y) {
                for (long long x = bbox.lo[2]; x <= bbox.hi[2]; ++x) {
                    if (particle_at(z, y, x) != id_) {
                        continue;
                    }
                    for (int f = 0; f < 6; ++f) {
                        const long long v[3] = {z + order[f][0], y + order[f][1], x + order[f][2]};
                        if (in_grid(v) && particle_at(v[0], v[1], v[2]) == id_) {
                            continue;
                        }
                        double g[3];
                        gradient(z, y, x, g);
                        if (in_grid(v)) {
                            double h[3];
                            gradient(v[0], v[1], v[2], h);
                            for (int a = 0; a < 3; ++a) {
                                g[a] = 0.5 * (g[a] + h[a]);
                            }
                        }
                        double n[3] = {-g[0], -g[1], -g[2]};
                        const double norm = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
                        const int axis = f / 2;
                        const double sign = order[f][axis];
                        double along = 0.0;
                        if (norm > 0) {
                            for (int a = 0; a < 3; ++a) {
                                n[a] /= norm;
                            }
                            along = sign * n[axis];
                        }
                        if (!(along > 0)) {
                            n[0] = n[1] = n[2] = 0.0;
                            n[axis] = sign;
                            along = 1.0;
                        }
                        out.particle.push_back(id_);
                        const double c[3] = {static_cast<double>(z) + 0.5, static_cast<double>(y) + 0.5,
                                             static_cast<double>(x) + 0.5};
                        for (int a = 0; a < 3; ++a) {
                            out.center.push_back(c[a] + (a == axis ? 0.5 * sign : 0.0));
                            out.normal.push_back(n[a]);
                        }
                        out.area.push_back(along);
                        out.axis.push_back(codes[f]);
                    }
                }
            }
        }
    }

  private:
    bool in_grid(const long long v[3]) const {
        for (int a = 0; a < 3; ++a) {
            if (v[a] < 0 || v[a] >= static_cast<long long>(shape_[a])) {
                return false;
            }
        }
        return true;
    }
    std::int32_t particle_at(long long z, long long y, long long x) const {
        return particles_[(static_cast<std::size_t>(z) * shape_[1] + static_cast<std::size_t>(y)) * shape_[2] +
                          static_cast<std::size_t>(x)];
    }
    // Smoothed field at a grid voxel; zero outside the grid (and outside the
    // box, where the smoothed indicator is zero by construction).
    double field(long long z, long long y, long long x) const {
        if (z < lo_[0] || z > hi_[0] || y < lo_[1] || y > hi_[1] || x < lo_[2] || x > hi_[2]) {
            return 0.0;
        }
        return field_[(static_cast<std::size_t>(z - lo_[0]) * dim_[1] + static_cast<std::size_t>(y - lo_[1])) *
                          dim_[2] +
                      static_cast<std::size_t>(x - lo_[2])];
    }
    void gradient(long long z, long long y, long long x, double g[3]) const {
        g[0] = 0.5 * (field(z + 1, y, x) - field(z - 1, y, x));
        g[1] = 0.5 * (field(z, y + 1, x) - field(z, y - 1, x));
        g[2] = 0.5 * (field(z, y, x + 1) - field(z, y, x - 1));
    }
    // Convolution along one axis with zero padding outside the box (see the
    // constructor for why that is exact where the gradients are read).
    void blur_axis(int axis, const std::vector<double>& kernel) {
        const auto radius = static_cast<long long>(kernel.size() / 2);
        const std::size_t n = dim_[axis];
        const std::size_t stride = axis == 0 ? dim_[1] * dim_[2] : (axis == 1 ? dim_[2] : 1);
        const std::size_t lines = field_.size() / n;
        std::vector<double> line(n), result(n);
        for (std::size_t l = 0; l < lines; ++l) {
            // base index of line l: decompose l over the two other axes
            std::size_t base;
            if (axis == 0) {
                base = l;
            } else if (axis == 1) {
                base = (l / dim_[2]) * dim_[1] * dim_[2] + (l % dim_[2]);
            } else {
                base = l * dim_[2];
            }
            bool any = false;
            for (std::size_t i = 0; i < n; ++i) {
                line[i] = field_[base + i * stride];
                any = any || line[i] != 0.0;
            }
            if (!any) {
                continue;
            }
            for (std::size_t i = 0; i < n; ++i) {
                double s = 0.0;
                for (long long k = -radius; k <= radius; ++k) {
                    const long long j = static_cast<long long>(i) + k;
                    if (j >= 0 && j < static_cast<long long>(n)) {
                        s += kernel[static_cast<std::size_t>(k + radius)] * line[static_cast<std::size_t>(j)];
                    }
                }
                result[i] = s;
            }
            for (std::size_t i = 0; i < n; ++i) {
                field_[base + i * stride] = result[i];
            }
        }
    }

    const std::int32_t* particles_;
    Shape3 shape_;
    std::int32_t id_;
    long long lo_[3]{}, hi_[3]{};
    std::size_t dim_[3]{};
    std::vector<double> field_;
};

std::vector<double> gaussian_kernel(double sigma) {
    const auto radius = static_cast<long long>(4.0 * sigma + 0.5);
    std::vector<double> k(static_cast<std::size_t>(2 * radius + 1));
    double sum = 0.0;
    for (long long i = -radius; i <= radius; ++i) {
        const double v = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
        k[static_cast<std::size_t>(i + radius)] = v;
        sum += v;
    }
    for (double& v : k) {
        v /= sum;
    }
    return k;
}

}  // namespace detail

SurfaceElements surface_elements(const std::int32_t* particles, const Shape3& shape, double sigma, int nthreads) {
    const int threads = resolve_threads(nthreads);
    const std::size_t total = detail::checked_volume(shape);
    if (particles == nullptr) {
        throw InvalidArgument("tomofuse::raytrace::surface_elements: particles must not be null");
    }
    if (!(sigma > 0) || !std::isfinite(sigma) || sigma > 16) {
        throw InvalidArgument("sigma must be in (0, 16] voxels, got " + std::to_string(sigma));
    }
    std::int32_t max_id = 0;
    for (std::size_t i = 0; i < total; ++i) {
        if (particles[i] < 0) {
            throw InvalidArgument("particle ids must be >= 0, got " + std::to_string(particles[i]));
        }
        max_id = std::max(max_id, particles[i]);
    }
    const auto nid = static_cast<std::size_t>(max_id) + 1;
    std::vector<detail::Box> boxes(nid);
    std::vector<char> present(nid, 0);
    for (auto& b : boxes) {
        for (int a = 0; a < 3; ++a) {
            b.lo[a] = std::numeric_limits<long long>::max();
            b.hi[a] = -1;
        }
    }
    for (std::size_t z = 0, i = 0; z < shape[0]; ++z) {
        for (std::size_t y = 0; y < shape[1]; ++y) {
            for (std::size_t x = 0; x < shape[2]; ++x, ++i) {
                const std::int32_t p = particles[i];
                if (p == 0) {
                    continue;
                }
                detail::Box& b = boxes[static_cast<std::size_t>(p)];
                present[static_cast<std::size_t>(p)] = 1;
                const long long v[3] = {static_cast<long long>(z), static_cast<long long>(y),
                                        static_cast<long long>(x)};
                for (int a = 0; a < 3; ++a) {
                    b.lo[a] = std::min(b.lo[a], v[a]);
                    b.hi[a] = std::max(b.hi[a], v[a]);
                }
            }
        }
    }
    std::vector<std::int32_t> ids;
    for (std::size_t p = 1; p < nid; ++p) {
        if (present[p]) {
            ids.push_back(static_cast<std::int32_t>(p));
        }
    }
    const std::vector<double> kernel = detail::gaussian_kernel(sigma);
    std::vector<SurfaceElements> parts(ids.size());
    const auto count = static_cast<std::ptrdiff_t>(ids.size());
    TOMOFUSE_OMP(parallel for schedule(dynamic, 1) num_threads(threads))
    for (std::ptrdiff_t k = 0; k < count; ++k) {
        const std::int32_t id = ids[static_cast<std::size_t>(k)];
        const detail::Box& box = boxes[static_cast<std::size_t>(id)];
        const detail::ParticleSurface surface(particles, shape, id, box, kernel);
        surface.append(box, parts[static_cast<std::size_t>(k)]);
    }
    (void)threads;
    SurfaceElements out;
    std::size_t n = 0;
    for (const auto& p : parts) {
        n += p.size();
    }
    out.particle.reserve(n);
    out.center.reserve(3 * n);
    out.normal.reserve(3 * n);
    out.area.reserve(n);
    out.axis.reserve(n);
    for (const auto& p : parts) {
        out.particle.insert(out.particle.end(), p.particle.begin(), p.particle.end());
        out.center.insert(out.center.end(), p.center.begin(), p.center.end());
        out.normal.insert(out.normal.end(), p.normal.begin(), p.normal.end());
        out.area.insert(out.area.end(), p.area.begin(), p.area.end());
        out.axis.insert(out.axis.end(), p.axis.begin(), p.axis.end());
    }
    return out;
}

}  // namespace tomofuse::raytrace
