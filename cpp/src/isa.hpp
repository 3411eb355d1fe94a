// Private: instruction-set clones of the hot per-row kernels.
//
// TOMOFUSE_ISA_CLONES compiles one function for AVX-512, AVX2 and the baseline
// and picks one at load time (GCC's target_clones, dispatched through an ifunc).
// ifuncs need glibc's dynamic loader: musl and other C libraries have none, so the
// guard is on glibc (__GLIBC__, defined by any libstdc++ header), not on __linux__.
// Files that use it are compiled without floating-point contraction
// (CMakeLists.txt), so every clone gives the same bits.
#pragma once

#include <cstddef>  // defines __GLIBC__ on glibc

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define TOMOFUSE_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TOMOFUSE_ISA_CLONES
#endif
