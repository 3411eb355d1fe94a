// Private: 64-byte aligned heap arrays (RAII), for FFTW frames and SIMD kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

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

}  // namespace tomofuse::detail
