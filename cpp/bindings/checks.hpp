// Private to the extension module: argument checks shared by the bind_* files.
// All of them run with the GIL held and throw tomofuse exceptions naming the
// argument, which bind_errors maps to Python exceptions.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>

#include "tomofuse/errors.hpp"

namespace tomofuse::bindings {

inline std::string shape_str(const pybind11::array& a) {
    std::string s = "(";
    for (pybind11::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i > 0) {
            s += ", ";
        }
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) {
        s += ",";
    }
    return s + ")";
}

inline std::string type_name(const pybind11::handle& obj) {
    return pybind11::str(pybind11::type::handle_of(obj).attr("__qualname__"));
}

inline int check_threads(int threads) {
    if (threads < 0) {
        throw InvalidArgument("threads must be >= 0 (0 = tomofuse default), got " +
                              std::to_string(threads));
    }
    return threads;
}

// `obj` as a C-contiguous ndarray of dtype T with `ndim` dimensions, or an exception
// naming `name`.
template <typename T>
pybind11::array_t<T> require_array(const pybind11::object& obj, const char* name, int ndim) {
    const std::string arg(name);
    if (!pybind11::isinstance<pybind11::array>(obj)) {
        throw DTypeError(arg + " must be a numpy.ndarray, got an object of type " + type_name(obj));
    }
    auto a = pybind11::reinterpret_borrow<pybind11::array>(obj);
    if (!a.dtype().equal(pybind11::dtype::of<T>())) {
        throw DTypeError(arg + " must have dtype " + std::string(pybind11::str(pybind11::dtype::of<T>())) +
                         ", got " + std::string(pybind11::str(a.dtype())));
    }
    if (a.ndim() != ndim) {
        throw ShapeError(arg + " must have " + std::to_string(ndim) + " dimensions, got shape " +
                         shape_str(a));
    }
    if ((a.flags() & pybind11::array::c_style) == 0) {
        throw ShapeError(arg + " must be C-contiguous, got a non-contiguous array of shape " +
                         shape_str(a) + " (use numpy.ascontiguousarray(" + arg + "))");
    }
    return pybind11::reinterpret_borrow<pybind11::array_t<T>>(a);
}

}  // namespace tomofuse::bindings
