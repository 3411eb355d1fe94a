// C++ exceptions -> Python exceptions, one to one.
//
//   tomofuse::Error           -> tomofuse._core.Error(RuntimeError)
//   tomofuse::InvalidArgument -> tomofuse._core.InvalidArgument(ValueError)
//   tomofuse::ShapeError      -> tomofuse._core.ShapeError(InvalidArgument)       (a ValueError)
//   tomofuse::DTypeError      -> tomofuse._core.DTypeError(InvalidArgument, TypeError)
//
//   std::bad_alloc            -> MemoryError, with a message that says what to do
//
// DTypeError keeps the C++ hierarchy (it is an InvalidArgument, hence a
// ValueError) and is also a TypeError, which is what Python code expects for
// a wrong dtype.
#include <pybind11/pybind11.h>

#include <exception>
#include <new>

#include "bindings.hpp"
#include "options.hpp"
#include "tomofuse/errors.hpp"

namespace py = pybind11;

namespace tomofuse::bindings {

void bind_errors(py::module_& m) {
    // pybind11 tries the most recently registered translator first, so bases
    // are registered before the classes derived from them.
    auto& error = py::register_exception<tomofuse::Error>(m, "Error", PyExc_RuntimeError);
    auto& invalid =
        py::register_exception<tomofuse::InvalidArgument>(m, "InvalidArgument", PyExc_ValueError);
    auto& shape = py::register_exception<tomofuse::ShapeError>(m, "ShapeError", invalid.ptr());
    const py::tuple dtype_bases = py::make_tuple(invalid, py::handle(PyExc_TypeError));
    auto& dtype = py::register_exception<tomofuse::DTypeError>(m, "DTypeError", dtype_bases.ptr());

    // An allocation that failed inside the core (also inside a parallel region: the kernels
    // collect it and rethrow it after the region).
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) {
                std::rethrow_exception(p);
            }
        } catch (const MemoryExhausted& e) {
            PyErr_SetString(PyExc_MemoryError, e.what());
        } catch (const std::bad_alloc&) {
            PyErr_SetString(PyExc_MemoryError,
                            "tomofuse core: out of memory (a work buffer could not be allocated); use smaller "
                            "chunks (fewer slices, patterns or frames per call), fewer threads, or distribute "
                            "the work (tomofuse.distributed)");
        }
    });

    error.doc() = "Failure inside the tomofuse core that is not caused by the arguments.";
    invalid.doc() = "An argument has a bad value (a ValueError).";
    shape.doc() = "An array argument has the wrong shape or memory layout (a ValueError).";
    dtype.doc() = "An array argument has the wrong dtype (a TypeError and a ValueError).";
}

}  // namespace tomofuse::bindings
