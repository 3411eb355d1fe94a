// Thread counts for the core's parallel loops.
//
// Every parallel entry point of tomofuse takes `int nthreads`:
//   nthreads > 0   use exactly that many threads,
//   nthreads == 0  use the library default (default_threads()),
//   nthreads < 0   is an error (tomofuse::InvalidArgument).
//
// The library default is the one documented piece of process-wide state in
// tomofuse. Unless set_default_threads() was called it follows OpenMP
// (omp_get_max_threads(), i.e. OMP_NUM_THREADS or the number of cores). A core
// built without OpenMP runs every loop serially and reports 1.
//
// fork(): GNU OpenMP cannot run parallel regions in a child forked from a
// process that already ran one (it deadlocks). A process forked after tomofuse
// used more than one thread therefore runs tomofuse serially (resolve_threads()
// and default_threads() return 1 there). Use the "spawn"/"forkserver" start
// methods of multiprocessing, or Dask's default (spawn), to keep threads in
// worker processes.
#pragma once

#include "tomofuse/export.hpp"

namespace tomofuse {

/// Number of threads used when a function is called with nthreads == 0.
TOMOFUSE_EXPORT int default_threads() noexcept;

/// Set the library default; n == 0 restores the automatic (OpenMP) default.
/// Throws tomofuse::InvalidArgument for n < 0. Thread-safe.
TOMOFUSE_EXPORT void set_default_threads(int n);

/// Map a caller's nthreads to the number of threads to use (always >= 1;
/// always 1 without OpenMP). Throws tomofuse::InvalidArgument for nthreads < 0.
TOMOFUSE_EXPORT int resolve_threads(int nthreads);

/// Whether the core was compiled with OpenMP.
TOMOFUSE_EXPORT bool openmp_enabled() noexcept;

}  // namespace tomofuse
