// tomofuse._core.project / backproject: argument checks with the GIL held,
// the computation with the GIL released; float32 and float64 by dtype.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/tomo.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

py::array_t<double> angle_array(const py::object& obj) {
    auto a = require_array<double>(obj, "angles", 1);
    if (a.shape(0) == 0) {
        throw ShapeError("angles must not be empty");
    }
    return a;
}

template <typename Real>
py::array project_impl(const py::object& volume_obj, const py::object& angles_obj, py::ssize_t n_cols,
                       double center_offset, int threads) {
    auto volume = require_array<Real>(volume_obj, "volume", 3);
    auto angles = angle_array(angles_obj);
    if (volume.size() == 0) {
        throw ShapeError("volume must not be empty, got shape " + shape_str(volume));
    }
    if (n_cols <= 0) {
        throw InvalidArgument("n_cols must be > 0, got " + std::to_string(n_cols));
    }
    check_threads(threads);
    const raytrace::Shape3 shape{static_cast<std::size_t>(volume.shape(0)), static_cast<std::size_t>(volume.shape(1)),
                                 static_cast<std::size_t>(volume.shape(2))};
    require_memory("project", sizeof(Real),
                   {static_cast<std::size_t>(angles.shape(0)), static_cast<std::size_t>(volume.shape(0)),
                    static_cast<std::size_t>(n_cols)});
    py::array_t<Real> out({angles.shape(0), volume.shape(0), n_cols});
    const Real* src = volume.data();
    const double* th = angles.data();
    Real* dst = out.mutable_data();
    const auto na = static_cast<std::size_t>(angles.shape(0));
    {
        py::gil_scoped_release release;
        tomo::project<Real>(src, shape, th, na, static_cast<std::size_t>(n_cols), center_offset, dst, threads);
    }
    return out;
}

template <typename Real>
py::array backproject_impl(const py::object& proj_obj, const py::object& angles_obj, py::ssize_t ny,
                           py::ssize_t nx, double center_offset, int threads, bool linear) {
    auto proj = require_array<Real>(proj_obj, "projections", 3);
    auto angles = angle_array(angles_obj);
    if (proj.shape(0) != angles.shape(0)) {
        throw ShapeError("projections must have one image per angle: " + std::to_string(angles.shape(0)) +
                         " angles, got projections of shape " + shape_str(proj));
    }
    if (proj.size() == 0) {
        throw ShapeError("projections must not be empty, got shape " + shape_str(proj));
    }
    if (ny <= 0 || nx <= 0) {
        throw InvalidArgument("ny and nx must be > 0, got " + std::to_string(ny) + ", " + std::to_string(nx));
    }
    check_threads(threads);
    const raytrace::Shape3 shape{static_cast<std::size_t>(proj.shape(1)), static_cast<std::size_t>(ny),
                                 static_cast<std::size_t>(nx)};
    require_memory(linear ? "backproject_linear" : "backproject", sizeof(Real),
                   {static_cast<std::size_t>(proj.shape(1)), static_cast<std::size_t>(ny),
                    static_cast<std::size_t>(nx)});
    py::array_t<Real> out({proj.shape(1), ny, nx});
    const Real* src = proj.data();
    const double* th = angles.data();
    Real* dst = out.mutable_data();
    const auto na = static_cast<std::size_t>(angles.shape(0));
    const auto nc = static_cast<std::size_t>(proj.shape(2));
    {
        py::gil_scoped_release release;
        if (linear) {
            tomo::backproject_linear<Real>(src, shape, th, na, nc, center_offset, dst, threads);
        } else {
            tomo::backproject<Real>(src, shape, th, na, nc, center_offset, dst, threads);
        }
    }
    return out;
}

}  // namespace

void bind_tomo(py::module_& m) {
    m.def(
        "project",
        [](const py::object& volume, const py::object& angles, py::ssize_t n_cols, double center_offset,
           int threads) {
            return is_float32(volume, "volume") ? project_impl<float>(volume, angles, n_cols, center_offset, threads)
                                      : project_impl<double>(volume, angles, n_cols, center_offset, threads);
        },
        py::arg("volume"), py::arg("angles"), py::kw_only(), py::arg("n_cols"), py::arg("center_offset") = 0.0,
        py::arg("threads") = 0,
        "Parallel-beam line integrals (exact intersection lengths, voxel units) of a (nz, ny, nx)\n"
        "float32/float64 volume at angles (radians, float64) -> (n_angles, nz, n_cols).");
    m.def(
        "backproject",
        [](const py::object& projections, const py::object& angles, py::ssize_t ny, py::ssize_t nx,
           double center_offset, int threads) {
            return is_float32(projections, "projections")
                       ? backproject_impl<float>(projections, angles, ny, nx, center_offset, threads, false)
                       : backproject_impl<double>(projections, angles, ny, nx, center_offset, threads, false);
        },
        py::arg("projections"), py::arg("angles"), py::kw_only(), py::arg("ny"), py::arg("nx"),
        py::arg("center_offset") = 0.0, py::arg("threads") = 0,
        "The exact adjoint of project(): (n_angles, nz, n_cols) -> (nz, ny, nx).");
    m.def("backproject_linear_row_kernel", &tomo::backproject_linear_row_kernel,
          "The kernel backproject_linear uses for a lone float32 row on this machine: 'avx512f', 'avx2'\n"
          "or 'portable' (TOMOFUSE_DISABLE_INTRINSICS='avx512f,avx2', read at import, excludes some).");
    m.def(
        "backproject_linear",
        [](const py::object& projections, const py::object& angles, py::ssize_t ny, py::ssize_t nx,
           double center_offset, int threads) {
            return is_float32(projections, "projections")
                       ? backproject_impl<float>(projections, angles, ny, nx, center_offset, threads, true)
                       : backproject_impl<double>(projections, angles, ny, nx, center_offset, threads, true);
        },
        py::arg("projections"), py::arg("angles"), py::kw_only(), py::arg("ny"), py::arg("nx"),
        py::arg("center_offset") = 0.0, py::arg("threads") = 0,
        "Pixel-driven back-projection with linear interpolation (the FBP back-projector):\n"
        "(n_angles, nz, n_cols) -> (nz, ny, nx), unscaled sum over angles.");
}

}  // namespace tomofuse::bindings
