// Private to the extension module: checks and parsing of the scalar options the
// bindings receive (thread counts, positive / finite numbers, named choices).
// All run with the GIL held and throw tomofuse exceptions naming the option.
#pragma once

#include <cmath>
#include <optional>
#include <string>

#include "tomofuse/errors.hpp"
#include "tomofuse/fft.hpp"

namespace tomofuse::bindings {

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
