// tomofuse._core.fft2 and tomofuse._core.FFTPlan2D.
//
// Every argument is checked here with the GIL held (dtype, ndim, contiguity,
// shapes, writeability, overlap); the transform itself runs with the GIL
// released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <complex>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/fft.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

namespace {

using cf = std::complex<float>;
using tomofuse::fft::Direction;
using tomofuse::fft::Norm;
using tomofuse::fft::Plan2D;
using tomofuse::fft::Rigor;

// A complex64, C-contiguous ndarray with ndim >= 2, or an exception naming `name`.
py::array require_frames(const py::object& obj, const char* name, bool writeable) {
    const std::string arg(name);
    if (!py::isinstance<py::array>(obj)) {
        throw DTypeError(arg + " must be a numpy.ndarray of dtype complex64, got an object of type " +
                         type_name(obj));
    }
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().equal(py::dtype::of<cf>())) {
        throw DTypeError(arg + " must have dtype complex64, got " +
                         std::string(py::str(a.dtype())) + " (convert with " + arg +
                         ".astype(numpy.complex64))");
    }
    if (a.ndim() < 2) {
        throw ShapeError(arg + " must have at least 2 dimensions (..., ny, nx), got shape " +
                         shape_str(a));
    }
    if ((a.flags() & py::array::c_style) == 0) {
        throw ShapeError(arg + " must be C-contiguous, got a non-contiguous array of shape " +
                         shape_str(a) + " (use numpy.ascontiguousarray(" + arg + "))");
    }
    if (writeable && !a.writeable()) {
        throw InvalidArgument(arg + " must be writeable");
    }
    return a;
}

const char* rigor_name(Rigor r) { return r == Rigor::Measure ? "measure" : "estimate"; }

std::size_t check_extent(long long n, const char* name) {
    if (n <= 0) {
        throw ShapeError(std::string(name) + " must be > 0, got " + std::to_string(n));
    }
    return static_cast<std::size_t>(n);
}

// The transform of `a_obj` into `out_obj` (or a new array), with an existing
// plan or, when `plan` is null, a plan for a's last two axes.
py::object transform(const Plan2D* plan, const py::object& a_obj, const py::object& out_obj,
                     Direction direction, const std::optional<std::string>& norm_name,
                     int threads) {
    py::array a = require_frames(a_obj, "a", false);
    const Norm norm = parse_norm(norm_name);
    check_threads(threads);

    const py::ssize_t nd = a.ndim();
    const auto ny = static_cast<std::size_t>(a.shape(nd - 2));
    const auto nx = static_cast<std::size_t>(a.shape(nd - 1));
    if (plan != nullptr) {
        if (ny != plan->ny() || nx != plan->nx()) {
            throw ShapeError("a must have shape (..., " + std::to_string(plan->ny()) + ", " +
                             std::to_string(plan->nx()) + ") to match the plan, got " +
                             shape_str(a));
        }
    } else if (ny == 0 || nx == 0) {
        throw ShapeError("a must have non-empty last two axes (..., ny, nx), got shape " +
                         shape_str(a));
    }
    std::size_t batch = 1;
    for (py::ssize_t i = 0; i < nd - 2; ++i) {
        batch *= static_cast<std::size_t>(a.shape(i));
    }

    py::array out;
    if (out_obj.is_none()) {
        std::vector<py::ssize_t> shape(a.shape(), a.shape() + nd);
        out = py::array_t<cf, py::array::c_style>(shape);
    } else {
        out = require_frames(out_obj, "out", true);
        bool same_shape = out.ndim() == nd;
        for (py::ssize_t i = 0; same_shape && i < nd; ++i) {
            same_shape = out.shape(i) == a.shape(i);
        }
        if (!same_shape) {
            throw ShapeError("out must have the shape of a, " + shape_str(a) + ", got " +
                             shape_str(out));
        }
        const auto pa = reinterpret_cast<std::uintptr_t>(a.data());
        const auto po = reinterpret_cast<std::uintptr_t>(out.data());
        const auto bytes = static_cast<std::uintptr_t>(a.nbytes());
        if (pa != po && pa < po + bytes && po < pa + bytes) {
            throw InvalidArgument(
                "out must either be a itself (in-place transform) or not share memory with a");
        }
    }
    if (batch == 0) {
        return std::move(out);
    }

    const auto* in_ptr = static_cast<const cf*>(a.data());
    auto* out_ptr = static_cast<cf*>(out.mutable_data());
    {
        py::gil_scoped_release release;
        if (plan != nullptr) {
            plan->execute(in_ptr, out_ptr, batch, direction, norm, threads);
        } else {
            Plan2D(ny, nx).execute(in_ptr, out_ptr, batch, direction, norm, threads);
        }
    }
    return std::move(out);
}

const char* const kFft2Doc = R"doc(
2-D discrete Fourier transform over the last two axes of a complex64 array.

The leading axes are a batch: a (..., ny, nx) array holds prod(...) frames,
transformed independently and in parallel over frames.

Parameters
----------
a : (..., ny, nx) ndarray of complex64
    C-contiguous input, ndim >= 2.
inverse : bool, optional
    False for the forward transform (exp(-2 pi i k x / n)), True for the
    inverse (exp(+2 pi i k x / n)).
norm : {"backward", "ortho", "forward"} or None, optional
    Normalization, as in numpy.fft: "backward" (default) scales the inverse by
    1/(ny*nx), "forward" scales the forward transform, "ortho" both by
    1/sqrt(ny*nx).
threads : int, optional
    Number of threads; 0 (default) uses tomofuse._core.default_threads().
    Results do not depend on it.
out : (..., ny, nx) ndarray of complex64, optional
    Writeable, C-contiguous array of a's shape for the result. ``out=a``
    transforms in place. A new array is allocated when None.

Returns
-------
out : (..., ny, nx) ndarray of complex64
    The transform (the ``out`` argument itself when given).

Raises
------
TypeError
    If a or out is not an ndarray of dtype complex64 (tomofuse._core.DTypeError).
ValueError
    If a has ndim < 2, empty frames or is not C-contiguous, or out does not
    match a (tomofuse._core.ShapeError / InvalidArgument).
)doc";

py::array_t<float> filter_real_2d(const py::object& frames_obj, const py::object& response_obj, std::size_t pad_ny,
                                  std::size_t pad_nx, const std::string& rigor, int threads) {
    const Rigor rigor_value = parse_rigor(rigor);
    auto frames = require_array<float>(frames_obj, "frames", 3);
    auto response = require_array<float>(response_obj, "response", 2);
    check_threads(threads);
    const auto batch = static_cast<std::size_t>(frames.shape(0));
    const auto ny = static_cast<std::size_t>(frames.shape(1));
    const auto nx = static_cast<std::size_t>(frames.shape(2));
    if (ny == 0 || nx == 0) {
        throw ShapeError("frames must have non-empty (ny, nx) frames, got shape " + shape_str(frames));
    }
    if (pad_ny < ny || pad_nx < nx) {
        throw InvalidArgument("pad_ny, pad_nx must be at least the frame shape " + std::to_string(ny) + " x " +
                              std::to_string(nx) + ", got " + std::to_string(pad_ny) + " x " +
                              std::to_string(pad_nx));
    }
    if (static_cast<std::size_t>(response.shape(0)) != pad_ny ||
        static_cast<std::size_t>(response.shape(1)) != pad_nx / 2 + 1) {
        throw ShapeError("response must have shape (pad_ny, pad_nx // 2 + 1) = (" + std::to_string(pad_ny) + ", " +
                         std::to_string(pad_nx / 2 + 1) + "), got " + shape_str(response));
    }
    py::array_t<float> out({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(ny),
                            static_cast<py::ssize_t>(nx)});
    {
        py::gil_scoped_release release;
        tomofuse::fft::filter_real_2d(frames.data(), out.mutable_data(), batch, ny, nx, pad_ny, pad_nx,
                                      response.data(),
                                      rigor_value,
                                      threads);
    }
    return out;
}

}  // namespace


void bind_fft(py::module_& m) {
    m.def("fft_backend", &tomofuse::fft::backend,
          "The FFT library compiled into the core and its version (Intel oneMKL with the CPU code\n"
          "path it chose, or FFTW with the SIMD code paths it was built with).");
    m.def("filter_real_2d", &filter_real_2d, py::arg("frames"), py::arg("response"), py::kw_only(),
          py::arg("pad_ny"), py::arg("pad_nx"), py::arg("rigor") = "estimate", py::arg("threads") = 0,
          "Edge-pad each float32 (ny, nx) frame of frames (batch, ny, nx) to (pad_ny, pad_nx), multiply\n"
          "its rfft2 spectrum by response (pad_ny, pad_nx // 2 + 1) float32, inverse-transform and crop:\n"
          "a new (batch, ny, nx) float32 array. rigor: FFTW planning, 'estimate' or 'measure'. OpenMP over\n"
          "frames; GIL released.");
    m.def(
        "fft2",
        [](const py::object& a, bool inverse, const std::optional<std::string>& norm, int threads,
           const py::object& out) {
            return transform(nullptr, a, out, inverse ? Direction::Backward : Direction::Forward,
                             norm, threads);
        },
        py::arg("a"), py::kw_only(), py::arg("inverse") = false, py::arg("norm") = "backward",
        py::arg("threads") = 0, py::arg("out") = py::none(), kFft2Doc);

    py::class_<Plan2D>(m, "FFTPlan2D", R"doc(
Reusable 2-D complex64 FFT of a fixed frame shape (ny, nx).

Plans are made once, on first use of each direction (and of in-place or
out-of-place execution), and may be shared between threads.

Parameters
----------
ny, nx : int
    Frame shape, both > 0.
rigor : {"estimate", "measure"}, optional
    "estimate" (default) plans instantly; "measure" times candidate
    algorithms on first use, which costs time up front and may run faster.
)doc")
        .def(py::init([](long long ny, long long nx, const std::string& rigor) {
                 return Plan2D(check_extent(ny, "ny"), check_extent(nx, "nx"), parse_rigor(rigor));
             }),
             py::arg("ny"), py::arg("nx"), py::kw_only(), py::arg("rigor") = "estimate")
        .def_property_readonly("ny", &Plan2D::ny)
        .def_property_readonly("nx", &Plan2D::nx)
        .def_property_readonly("shape",
                               [](const Plan2D& p) { return py::make_tuple(p.ny(), p.nx()); })
        .def_property_readonly("rigor", [](const Plan2D& p) { return rigor_name(p.rigor()); })
        .def(
            "forward",
            [](const Plan2D& p, const py::object& a, const py::object& out,
               const std::optional<std::string>& norm, int threads) {
                return transform(&p, a, out, Direction::Forward, norm, threads);
            },
            py::arg("a"), py::arg("out") = py::none(), py::kw_only(), py::arg("norm") = "backward",
            py::arg("threads") = 0,
            "Forward FFT of a (..., ny, nx) complex64 array; see tomofuse._core.fft2.")
        .def(
            "backward",
            [](const Plan2D& p, const py::object& a, const py::object& out,
               const std::optional<std::string>& norm, int threads) {
                return transform(&p, a, out, Direction::Backward, norm, threads);
            },
            py::arg("a"), py::arg("out") = py::none(), py::kw_only(), py::arg("norm") = "backward",
            py::arg("threads") = 0,
            "Inverse FFT of a (..., ny, nx) complex64 array; see tomofuse._core.fft2.")
        .def("__repr__", [](const Plan2D& p) {
            return "FFTPlan2D(ny=" + std::to_string(p.ny()) + ", nx=" + std::to_string(p.nx()) +
                   ", rigor='" + rigor_name(p.rigor()) + "')";
        });
}

}  // namespace tomofuse::bindings
