// tomofuse._core: the pybind11 boundary of the C++ core.
#include <pybind11/pybind11.h>

#include "bindings.hpp"
#include "tomofuse/parallel.hpp"
#include "tomofuse/version.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() =
        "Compiled core of tomofuse (C++17, OpenMP). Functions take NumPy arrays, check them "
        "with the GIL held and release the GIL while they compute.";

    tomofuse::bindings::bind_errors(m);

    m.def("default_threads", &tomofuse::default_threads,
          "Number of threads used when a function is called with threads=0.\n\n"
          "Unless set with set_default_threads(), this follows OpenMP (OMP_NUM_THREADS or the\n"
          "number of cores). It is the only process-wide setting of tomofuse.");
    m.def("set_default_threads", &tomofuse::set_default_threads, py::arg("n"),
          "Set the number of threads used for threads=0; n=0 restores the automatic default.\n\n"
          "Raises ValueError for n < 0.");
    m.def("openmp_enabled", &tomofuse::openmp_enabled,
          "Whether the core was compiled with OpenMP (otherwise every loop runs serially).");
    m.def("version", &tomofuse::library_version, "Version of the loaded libtomofuse_core.");
    m.attr("__version__") = tomofuse::library_version();

    tomofuse::bindings::bind_fem(m);
    tomofuse::bindings::bind_fft(m);
    tomofuse::bindings::bind_ptycho(m);
    tomofuse::bindings::bind_raster(m);
    tomofuse::bindings::bind_raytrace(m);
    tomofuse::bindings::bind_segment(m);
    tomofuse::bindings::bind_tomo(m);
}
