// Private helpers for OpenMP pragmas that vanish (without -Wunknown-pragmas
// noise) when the core is built with TOMOFUSE_OPENMP=OFF.
#pragma once

#if defined(TOMOFUSE_HAVE_OPENMP)
#include <omp.h>
#define TOMOFUSE_PRAGMA_(x) _Pragma(#x)
#define TOMOFUSE_OMP(...) TOMOFUSE_PRAGMA_(omp __VA_ARGS__)
#else
#define TOMOFUSE_OMP(...)
#endif
