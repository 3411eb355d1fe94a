// tomofuse._core.project / backproject: argument checks with the GIL held,
// the computation with the GIL released; float32 and float64 by dtype.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <complex>
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


template <typename Real>
py::array spread_impl(const py::object& samples_obj, const py::object& steps_obj, const py::object& kernel_obj,
                      py::ssize_t rows, py::ssize_t cols, int threads, const py::object& out_obj) {
    auto samples = require_array<std::complex<Real>>(samples_obj, "samples", 2);
    auto steps = require_array<double>(steps_obj, "steps", 2);
    auto kernel = require_array<double>(kernel_obj, "kernel", 2);
    if (steps.shape(0) != samples.shape(0) || steps.shape(1) != 2) {
        throw ShapeError("steps must have shape (n_rays, 2) = (" + std::to_string(samples.shape(0)) +
                         ", 2), got " + shape_str(steps));
    }
    if (kernel.shape(0) < 1 || kernel.shape(1) < 1) {
        throw ShapeError("kernel must have shape (width, degree + 1), got " + shape_str(kernel));
    }
    if (rows <= 0 || cols <= 0) {
        throw InvalidArgument("rows and cols must be > 0, got " + std::to_string(rows) + ", " + std::to_string(cols));
    }
    check_threads(threads);
    const auto n_rays = static_cast<std::size_t>(samples.shape(0));
    const auto n_points = static_cast<std::size_t>(samples.shape(1));
    const auto width = static_cast<std::size_t>(kernel.shape(0));
    const auto degree = static_cast<std::size_t>(kernel.shape(1) - 1);
    const double* st = steps.data();
    tomo::check_spread_rays_hermitian<Real>(n_rays, n_points, st, width, degree, static_cast<std::size_t>(rows),
                                            static_cast<std::size_t>(cols));
    const py::ssize_t half_rows = rows / 2 + 1;
    py::array_t<std::complex<Real>> out;
    if (out_obj.is_none()) {
        require_memory("spread_rays_hermitian", 2 * sizeof(Real),
                       {static_cast<std::size_t>(half_rows), static_cast<std::size_t>(cols)});
        out = py::array_t<std::complex<Real>>({half_rows, cols});
    } else {
        out = require_shape<std::complex<Real>>(
            out_obj, "out", {static_cast<std::size_t>(half_rows), static_cast<std::size_t>(cols)}, true);
        check_no_alias({span("out", out)}, {span("samples", samples), span("steps", steps), span("kernel", kernel)});
    }
    const std::complex<Real>* src = samples.data();
    const double* ker = kernel.data();
    std::complex<Real>* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        tomo::spread_rays_hermitian<Real>(src, n_rays, n_points, st, ker, width, degree,
                                          static_cast<std::size_t>(rows), static_cast<std::size_t>(cols), dst,
                                          threads);
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
    m.def(
        "spread_rays_hermitian",
        [](const py::object& samples, const py::object& steps, const py::object& kernel, py::ssize_t rows,
           py::ssize_t cols, int threads, const py::object& out) {
            if (py::isinstance<py::array>(samples) &&
                py::reinterpret_borrow<py::array>(samples).dtype().equal(py::dtype::of<std::complex<float>>())) {
                return spread_impl<float>(samples, steps, kernel, rows, cols, threads, out);
            }
            return spread_impl<double>(samples, steps, kernel, rows, cols, threads, out);
        },
        py::arg("samples"), py::arg("steps"), py::arg("kernel"), py::kw_only(), py::arg("rows"), py::arg("cols"),
        py::arg("threads") = 0, py::arg("out") = py::none(),
        "Gridding of the Fourier back-projector (tomo.hpp): samples (n_rays, n_points) complex64/complex128\n"
        "at k * steps[a] (cells, (n_rays, 2) float64: row, column), kernel (width, degree + 1) float64\n"
        "piecewise polynomials -> the Hermitian half (rows/2 + 1, cols) of the spread grid (row r =\n"
        "frequency r, column c = frequency c - cols/2), (G + conj G(-r, -c)) / 2. Same bits for any thread count.");
}

}  // namespace tomofuse::bindings
