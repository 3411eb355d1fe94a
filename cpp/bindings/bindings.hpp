// Private to the extension module: one bind_* function per binding file.
#pragma once

#include <pybind11/pybind11.h>

namespace tomofuse::bindings {

void bind_errors(pybind11::module_& m);
void bind_fem(pybind11::module_& m);
void bind_fft(pybind11::module_& m);
void bind_ptycho(pybind11::module_& m);
void bind_raster(pybind11::module_& m);
void bind_raytrace(pybind11::module_& m);
void bind_segment(pybind11::module_& m);
void bind_tomo(pybind11::module_& m);

}  // namespace tomofuse::bindings
