// Private to the extension module: conversion between Python objects and the
// arrays the core reads and writes. Every check runs with the GIL held and
// throws a tomofuse exception naming the argument (DTypeError -> TypeError,
// ShapeError / InvalidArgument -> ValueError, see bind_errors.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

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

// Whether the array argument `obj` is float32 (true) or float64 (false), for functions
// instantiated for both; anything else is a DTypeError naming `name` and both dtypes.
inline bool is_float32(const pybind11::object& obj, const char* name) {
    const std::string arg(name);
    if (!pybind11::isinstance<pybind11::array>(obj)) {
        throw DTypeError(arg + " must be a numpy.ndarray of dtype float32 or float64, got an object of type " +
                         type_name(obj));
    }
    const auto dtype = pybind11::reinterpret_borrow<pybind11::array>(obj).dtype();
    if (dtype.equal(pybind11::dtype::of<float>())) {
        return true;
    }
    if (dtype.equal(pybind11::dtype::of<double>())) {
        return false;
    }
    throw DTypeError(arg + " must have dtype float32 or float64, got " + std::string(pybind11::str(dtype)));
}

// require_array with an exact shape, and writeable when `writeable`.
template <typename T>
pybind11::array_t<T> require_shape(const pybind11::object& obj, const char* name,
                                   const std::vector<std::size_t>& shape, bool writeable) {
    auto a = require_array<T>(obj, name, static_cast<int>(shape.size()));
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (static_cast<std::size_t>(a.shape(static_cast<pybind11::ssize_t>(i))) != shape[i]) {
            std::string want = "(";
            for (std::size_t j = 0; j < shape.size(); ++j) {
                want += (j ? ", " : "") + std::to_string(shape[j]);
            }
            throw ShapeError(std::string(name) + " must have shape " + want + (shape.size() == 1 ? ",)" : ")") +
                             ", got " + shape_str(a));
        }
    }
    if (writeable && !a.writeable()) {
        throw InvalidArgument(std::string(name) + " must be writeable");
    }
    return a;
}

// A new ndarray of `shape` holding a copy of v (v.size() == product of shape).
template <typename T>
pybind11::array_t<T> to_array(const std::vector<T>& v, std::vector<pybind11::ssize_t> shape) {
    pybind11::array_t<T> a(std::move(shape));
    if (!v.empty()) {
        std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    }
    return a;
}

// The bytes an argument occupies, for alias checks.
struct Span {
    const char* name;
    const void* lo;
    const void* hi;
};

inline Span span(const char* name, const pybind11::array& a) {
    const auto* p = static_cast<const char*>(a.data());
    return {name, p, p + a.nbytes()};
}

// Outputs must not overlap any other argument (an output listed among `all` under the
// same name is itself).
inline void check_no_alias(const std::vector<Span>& outputs, const std::vector<Span>& all) {
    for (const Span& o : outputs) {
        for (const Span& a : all) {
            if (o.lo == a.lo && o.hi == a.hi && std::string(o.name) == a.name) {
                continue;
            }
            if (o.lo < a.hi && a.lo < o.hi) {
                throw InvalidArgument(std::string(o.name) + " shares memory with " + a.name);
            }
        }
    }
}

}  // namespace tomofuse::bindings
