// tomofuse._core.trace_rays and tomofuse._core.surface_elements: argument
// checks with the GIL held, the computation with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/raytrace.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

raytrace::Shape3 volume_shape(const py::array& a) {
    return {static_cast<std::size_t>(a.shape(0)), static_cast<std::size_t>(a.shape(1)),
            static_cast<std::size_t>(a.shape(2))};
}

void require_nonempty(const py::array& a, const char* name) {
    if (a.size() == 0) {
        throw ShapeError(std::string(name) + " must not be empty, got shape " + shape_str(a));
    }
}

py::tuple trace_rays(const py::object& labels_obj, const py::object& particles_obj, const py::object& origins_obj,
                     const py::object& directions_obj, const py::object& self_obj, double max_length,
                     int sei_label, double max_gap, int threads) {
    auto labels = require_array<std::uint8_t>(labels_obj, "labels", 3);
    auto particles = require_array<std::int32_t>(particles_obj, "particles", 3);
    auto origins = require_array<double>(origins_obj, "origins", 2);
    auto directions = require_array<double>(directions_obj, "directions", 2);
    auto self_ids = require_array<std::int32_t>(self_obj, "self_ids", 1);
    require_nonempty(labels, "labels");
    for (int a = 0; a < 3; ++a) {
        if (particles.shape(a) != labels.shape(a)) {
            throw ShapeError("particles must have the shape of labels, " + shape_str(labels) + ", got " +
                             shape_str(particles));
        }
    }
    if (origins.shape(1) != 3) {
        throw ShapeError("origins must have shape (n, 3), got " + shape_str(origins));
    }
    if (directions.shape(0) != origins.shape(0) || directions.shape(1) != 3) {
        throw ShapeError("directions must have the shape of origins, " + shape_str(origins) + ", got " +
                         shape_str(directions));
    }
    if (self_ids.shape(0) != origins.shape(0)) {
        throw ShapeError("self_ids must have shape (n,) with n = len(origins) = " +
                         std::to_string(origins.shape(0)) + ", got " + shape_str(self_ids));
    }
    if (!(max_length > 0)) {
        throw InvalidArgument("max_length must be > 0 voxels, got " + std::to_string(max_length));
    }
    if (sei_label < 0 || sei_label > 254) {
        throw InvalidArgument("sei_label must be in [0, 254], got " + std::to_string(sei_label));
    }
    if (!(max_gap >= 0) || !std::isfinite(max_gap)) {
        throw InvalidArgument("max_gap must be finite and >= 0 voxels, got " + std::to_string(max_gap));
    }
    check_threads(threads);
    const auto shape = volume_shape(labels);
    const auto n = static_cast<std::size_t>(origins.shape(0));
    raytrace::RayHits hits;
    {
        py::gil_scoped_release release;
        raytrace::trace_rays(labels.data(), particles.data(), shape, origins.data(), directions.data(),
                             self_ids.data(), n, max_length, static_cast<std::uint8_t>(sei_label), max_gap, hits,
                             threads);
    }
    const auto sn = static_cast<py::ssize_t>(n);
    return py::make_tuple(to_array(hits.label, {sn}), to_array(hits.particle, {sn}),
                          to_array(hits.sei_length, {sn}));
}

py::tuple surface_elements(const py::object& particles_obj, double sigma, int threads) {
    auto particles = require_array<std::int32_t>(particles_obj, "particles", 3);
    require_nonempty(particles, "particles");
    if (!(sigma > 0) || !std::isfinite(sigma) || sigma > 16) {
        throw InvalidArgument("sigma must be in (0, 16] voxels, got " + std::to_string(sigma));
    }
    check_threads(threads);
    const auto shape = volume_shape(particles);
    raytrace::SurfaceElements s;
    {
        py::gil_scoped_release release;
        s = raytrace::surface_elements(particles.data(), shape, sigma, threads);
    }
    const auto n = static_cast<py::ssize_t>(s.size());
    return py::make_tuple(to_array(s.particle, {n}), to_array(s.center, {n, 3}), to_array(s.normal, {n, 3}),
                          to_array(s.area, {n}), to_array(s.axis, {n}));
}

}  // namespace

void bind_raytrace(py::module_& m) {
    m.def("trace_rays", &trace_rays, py::arg("labels"), py::arg("particles"), py::arg("origins"),
          py::arg("directions"), py::arg("self_ids"), py::kw_only(),
          py::arg("max_length") = std::numeric_limits<double>::infinity(), py::arg("sei_label") = 4,
          py::arg("max_gap") = 0.0, py::arg("threads") = 0,
          "Walk rays through a label volume (Amanatides-Woo) from a particle's surface.\n\n"
          "labels : (z, y, x) uint8; particles : (z, y, x) int32; origins, directions : (n, 3)\n"
          "float64 in voxel coordinates (voxel (i, j, k) spans [i, i+1) x ...); self_ids : (n,) int32.\n"
          "Voxels of particle self_ids[i] (> 0) are skipped; returns (hit_label uint8 (n,) with 255\n"
          "for rays leaving the grid or exceeding max_length, hit_particle int32 (n,), sei_length\n"
          "float64 (n,) = path length through the SEI run met first, NaN otherwise; the run bridges\n"
          "gaps of at most max_gap voxels of path through non-SEI voxels when SEI follows).");
    m.def("surface_elements", &surface_elements, py::arg("particles"), py::kw_only(), py::arg("sigma") = 2.0,
          py::arg("threads") = 0,
          "Area-correct surface of every particle: one element per voxel face between a particle\n"
          "and anything else. Returns (particle int32 (n,), center float64 (n, 3) voxel coordinates,\n"
          "normal float64 (n, 3) outward unit normals from the gradient of the Gaussian-smoothed\n"
          "(std sigma voxels) indicator, area float64 (n,) voxel^2 = |n . face axis|, axis int8 (n,)\n"
          "signed outward face axis +-1 z, +-2 y, +-3 x).");
}

}  // namespace tomofuse::bindings
