// Private: 64-byte aligned heap arrays (RAII), for FFTW frames and SIMD kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tomofuse::detail {

/// Alignment of every aligned buffer: a multiple of any SIMD alignment FFTW
/// checks for (16 for SSE, 32 for AVX, 64 for AVX-512) and one cache line.
constexpr std::size_t kAlignment = 64;

struct AlignedFree {
    void operator()(void* p) const noexcept { std::free(p); }
};

/// An owning pointer to `count` elements allocated with std::aligned_alloc.
template <typename T>
using AlignedArray = std::unique_ptr<T[], AlignedFree>;

/// Uninitialized storage for `count` elements of T, or nullptr when it cannot
/// be allocated (never throws: safe inside an OpenMP region).
template <typename T>
AlignedArray<T> try_alloc_aligned(std::size_t count) noexcept {
    if (count > (SIZE_MAX - kAlignment) / sizeof(T)) {
        return AlignedArray<T>();
    }
    std::size_t bytes = (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    if (bytes == 0) {
        bytes = kAlignment;
    }
    return AlignedArray<T>(static_cast<T*>(std::aligned_alloc(kAlignment, bytes)));
}

/// As try_alloc_aligned, throwing std::bad_alloc on failure.
template <typename T>
AlignedArray<T> alloc_aligned(std::size_t count) {
    AlignedArray<T> p = try_alloc_aligned<T>(count);
    if (!p) {
        throw std::bad_alloc();
    }
    return p;
}

/// Alignment and granule of large work volumes: a transparent huge page on x86-64 and arm64 Linux.
constexpr std::size_t kHugePage = std::size_t{2} << 20;

/// Work volumes of at least this many bytes are backed by transparent huge pages (try_alloc_volume).
constexpr std::size_t kHugeVolumeBytes = std::size_t{16} << 20;

/// Uninitialized storage for a work volume of `count` elements, or nullptr when it cannot be
/// allocated (never throws). Buffers of kHugeVolumeBytes or more are aligned to a huge page and, on
/// Linux, advised to be backed by transparent huge pages, as NumPy does for its arrays: glibc maps
/// such buffers fresh on every allocation, and faulting them in 4 KiB pages costs about 0.6 s per GB
/// on a 2-core VM, in 2 MiB pages a tenth of that. Smaller ones are try_alloc_aligned's: a few huge
/// pages, each zeroed by the one thread that faults it in, slowed a two-thread blur of 72^3 voxels
/// by a third (measured: 1.3 -> 1.7 ms; 160^3: 20 -> 13 ms, 256^3: 113 -> 59 ms).
template <typename T>
AlignedArray<T> try_alloc_volume(std::size_t count) noexcept {
    if (count > (SIZE_MAX - kHugePage) / sizeof(T)) {
        return AlignedArray<T>();
    }
    const std::size_t bytes = count * sizeof(T);
    if (bytes < kHugeVolumeBytes) {
        return try_alloc_aligned<T>(count);
    }
    // aligned_alloc wants a size that is a multiple of the alignment
    const std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = std::aligned_alloc(kHugePage, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p != nullptr) {
        (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice only: ignored where THP is off
    }
#endif
    return AlignedArray<T>(static_cast<T*>(p));
}

}  // namespace tomofuse::detail
