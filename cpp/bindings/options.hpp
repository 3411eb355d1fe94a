// Private to the extension module: checks and parsing of the scalar options the
// bindings receive (thread counts, positive / finite numbers, named choices).
// All run with the GIL held and throw tomofuse exceptions naming the option.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "tomofuse/errors.hpp"
#include "tomofuse/fft.hpp"

namespace tomofuse::bindings {

/// A request the size guard refused (becomes MemoryError in Python, see bind_errors.cpp).
struct MemoryExhausted : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline int check_threads(int threads) {
    if (threads < 0) {
        throw InvalidArgument("threads must be >= 0 (0 = tomofuse default), got " +
                              std::to_string(threads));
    }
    return threads;
}

// value > 0 and finite.
template <typename Real>
Real require_positive(Real value, const char* name) {
    if (!(value > 0) || !std::isfinite(value)) {
        throw InvalidArgument(std::string(name) + " must be > 0 and finite, got " + std::to_string(value));
    }
    return value;
}

// value >= 0 and finite.
template <typename Real>
Real require_nonnegative(Real value, const char* name) {
    if (!(value >= 0) || !std::isfinite(value)) {
        throw InvalidArgument(std::string(name) + " must be finite and >= 0, got " + std::to_string(value));
    }
    return value;
}

// Memory the system can give without swapping, bytes: MemAvailable of /proc/meminfo (Linux),
// else the physical memory; 0 if unknown.
inline std::uint64_t available_memory() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::uint64_t kib = 0;
    std::string unit;
    while (meminfo >> key >> kib >> unit) {
        if (key == "MemAvailable:") {
            return kib * 1024;
        }
    }
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
    }
#endif
    return 0;
}

inline std::string gib(long double bytes) {
    std::ostringstream s;
    s.precision(3);
    s << bytes / (1024.0L * 1024.0L * 1024.0L) << " GiB";
    return s.str();
}

// The size guard of the bindings, run with the GIL held before anything is allocated: `count`
// elements of `element_bytes` each (the product of `dims`, computed without overflow) for
// `what`. Throws std::bad_alloc's Python counterpart -- a MemoryError naming the size, the
// memory available and what to do -- when it exceeds the available memory; ShapeError if the
// size does not even fit in 64 bits.
inline std::size_t require_memory(const char* what, std::size_t element_bytes, std::initializer_list<std::size_t> dims,
                                  std::size_t copies = 1) {
    long double total = static_cast<long double>(element_bytes) * static_cast<long double>(copies);
    std::size_t count = 1;
    bool overflow = false;
    for (std::size_t d : dims) {
        total *= static_cast<long double>(d);
        if (d != 0 && count > std::numeric_limits<std::size_t>::max() / d) {
            overflow = true;
        }
        count *= d;
    }
    if (overflow || total > static_cast<long double>(std::numeric_limits<std::int64_t>::max())) {
        throw ShapeError(std::string(what) + ": the requested size (" + gib(total) + ") is not addressable");
    }
    const std::uint64_t avail = available_memory();
    if (avail > 0 && total > static_cast<long double>(avail)) {
        throw MemoryExhausted(std::string(what) + " needs " + gib(total) + " but only " +
                              gib(static_cast<long double>(avail)) +
                              " are available; use smaller chunks (fewer slices, patterns or frames per call) "
                              "or distribute the work (tomofuse.distributed)");
    }
    return count;
}

inline fft::Norm parse_norm(const std::optional<std::string>& norm) {
    if (!norm || *norm == "backward") {
        return fft::Norm::Backward;
    }
    if (*norm == "ortho") {
        return fft::Norm::Ortho;
    }
    if (*norm == "forward") {
        return fft::Norm::Forward;
    }
    throw InvalidArgument("norm must be 'backward', 'ortho', 'forward' or None, got '" + *norm + "'");
}

inline fft::Rigor parse_rigor(const std::string& rigor) {
    if (rigor == "estimate") {
        return fft::Rigor::Estimate;
    }
    if (rigor == "measure") {
        return fft::Rigor::Measure;
    }
    throw InvalidArgument("rigor must be 'estimate' or 'measure', got '" + rigor + "'");
}

}  // namespace tomofuse::bindings
