// Non-owning N-dimensional views: pointer + shape + strides (in elements).
//
// The caller owns the memory; a function that takes a view never keeps it
// after returning. Strides are in elements, not bytes, and may be negative.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>

#include "tomofuse/errors.hpp"

namespace tomofuse {

template <typename T, std::size_t N>
class View {
    static_assert(N >= 1, "a view has at least one dimension");

public:
    using value_type = T;
    using shape_type = std::array<std::size_t, N>;
    using stride_type = std::array<std::ptrdiff_t, N>;
    static constexpr std::size_t ndim = N;

    View() = default;
    View(T* data, const shape_type& shape, const stride_type& strides) noexcept
        : data_(data), shape_(shape), strides_(strides) {}
    /// A C-contiguous view.
    View(T* data, const shape_type& shape) noexcept
        : data_(data), shape_(shape), strides_(contiguous_strides(shape)) {}
    /// View<T, N> converts to ConstView<T, N>.
    template <typename U,
              typename = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    View(const View<U, N>& other) noexcept  // NOLINT(google-explicit-constructor)
        : data_(other.data()), shape_(other.shape()), strides_(other.strides()) {}

    T* data() const noexcept { return data_; }
    const shape_type& shape() const noexcept { return shape_; }
    const stride_type& strides() const noexcept { return strides_; }
    std::size_t shape(std::size_t axis) const noexcept { return shape_[axis]; }
    std::ptrdiff_t stride(std::size_t axis) const noexcept { return strides_[axis]; }

    std::size_t size() const noexcept {
        std::size_t n = 1;
        for (std::size_t s : shape_) {
            n *= s;
        }
        return n;
    }

    bool is_c_contiguous() const noexcept {
        std::ptrdiff_t expected = 1;
        for (std::size_t i = N; i-- > 0;) {
            if (shape_[i] != 1 && strides_[i] != expected) {
                return false;
            }
            expected *= static_cast<std::ptrdiff_t>(shape_[i]);
        }
        return true;
    }

    template <typename... I>
    T& operator()(I... idx) const noexcept {
        static_assert(sizeof...(I) == N, "one index per dimension");
        const std::array<std::ptrdiff_t, N> ii{static_cast<std::ptrdiff_t>(idx)...};
        std::ptrdiff_t off = 0;
        for (std::size_t a = 0; a < N; ++a) {
            off += ii[a] * strides_[a];
        }
        return data_[off];
    }

    static stride_type contiguous_strides(const shape_type& shape) noexcept {
        stride_type st{};
        std::ptrdiff_t s = 1;
        for (std::size_t i = N; i-- > 0;) {
            st[i] = s;
            s *= static_cast<std::ptrdiff_t>(shape[i]);
        }
        return st;
    }

    /// Throws tomofuse::ShapeError naming `name` unless the view is C-contiguous.
    void require_c_contiguous(const char* name) const {
        if (!is_c_contiguous()) {
            throw ShapeError(std::string(name) + " must be C-contiguous");
        }
    }

private:
    T* data_ = nullptr;
    shape_type shape_{};
    stride_type strides_{};
};

/// Read-only view.
template <typename T, std::size_t N>
using ConstView = View<const T, N>;

}  // namespace tomofuse
