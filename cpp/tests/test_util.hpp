// Shared helpers of the C++ tests: deterministic random data and comparisons.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <complex>
#include <cstddef>
#include <random>
#include <vector>

namespace tomofuse::test {

inline std::vector<double> random_reals(std::size_t n, unsigned seed, double lo = -1.0, double hi = 1.0) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(lo, hi);
    std::vector<double> v(n);
    for (double& x : v) {
        x = u(rng);
    }
    return v;
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
    return std::vector<T>(v.begin(), v.end());
}

inline std::vector<std::complex<float>> random_complex(std::size_t n, unsigned seed) {
    const auto re = random_reals(n, seed);
    const auto im = random_reals(n, seed + 1000);
    std::vector<std::complex<float>> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        v[i] = {static_cast<float>(re[i]), static_cast<float>(im[i])};
    }
    return v;
}

// max |a - b| / max |b|
template <typename A, typename B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b) {
    EXPECT_EQ(a.size(), b.size());
    double num = 0.0, den = 0.0;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
        num = std::max(num, static_cast<double>(std::abs(a[i] - static_cast<A>(b[i]))));
        den = std::max(den, static_cast<double>(std::abs(b[i])));
    }
    return den > 0 ? num / den : num;
}

// Bitwise equality of two arrays (NaN-safe, -0 != +0).
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](const T& x, const T& y) {
               return std::memcmp(&x, &y, sizeof(T)) == 0;
           });
}

}  // namespace tomofuse::test
