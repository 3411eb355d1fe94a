// tomofuse._core.points_in_spheres: argument checks with the GIL held, the
// query with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/raster.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

template <typename Real>
py::array_t<bool> points_in_spheres_impl(const py::object& points_obj, const py::object& centers_obj,
                                         const py::object& radii_obj, int threads) {
    auto points = require_array<Real>(points_obj, "points", 2);
    auto centers = require_array<Real>(centers_obj, "centers", 2);
    auto radii = require_array<Real>(radii_obj, "radii", 1);
    if (points.shape(1) != 3) {
        throw ShapeError("points must have shape (n, 3), got " + shape_str(points));
    }
    if (centers.shape(1) != 3) {
        throw ShapeError("centers must have shape (m, 3), got " + shape_str(centers));
    }
    if (radii.shape(0) != centers.shape(0)) {
        throw ShapeError("radii must have shape (m,) with m = len(centers) = " +
                         std::to_string(centers.shape(0)) + ", got " + shape_str(radii));
    }
    check_threads(threads);
    const auto n = static_cast<std::size_t>(points.shape(0));
    const auto m = static_cast<std::size_t>(centers.shape(0));
    py::array_t<bool> out(static_cast<py::ssize_t>(n));
    static_assert(sizeof(bool) == sizeof(std::uint8_t), "bool must be one byte");
    auto* dst = reinterpret_cast<std::uint8_t*>(out.mutable_data());
    const Real* p = points.data();
    const Real* c = centers.data();
    const Real* r = radii.data();
    {
        py::gil_scoped_release release;
        raster::points_in_spheres<Real>(p, n, c, r, m, dst, threads);
    }
    return out;
}

}  // namespace

void bind_raster(py::module_& m) {
    m.def(
        "points_in_spheres",
        [](const py::object& points, const py::object& centers, const py::object& radii, int threads) {
            if (is_float32(points, "points")) {
                return points_in_spheres_impl<float>(points, centers, radii, threads);
            }
            return points_in_spheres_impl<double>(points, centers, radii, threads);
        },
        py::arg("points"), py::arg("centers"), py::arg("radii"), py::kw_only(), py::arg("threads") = 0,
        "Whether each point lies inside any sphere (distance <= radius).\n\n"
        "points : (n, 3) float32 or float64, C-contiguous; centers : (m, 3) and radii : (m,)\n"
        "of the same dtype. Returns a (n,) bool array. Identical for any thread count.");
}

}  // namespace tomofuse::bindings
