// The scan geometry: windows of the patterns on the object, probe-shift bins, and the
// shifted probes of the exact sub-pixel model with their adjoint.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "detail.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"
#include "tomofuse/ptycho.hpp"

namespace tomofuse::ptycho {

using tomofuse::detail::RegionErrors;

namespace detail {

double ordered_sum(const std::vector<double>& v) {
    double t = 0.0;
    for (double x : v) {
        t += x;
    }
    return t;
}

void check_no_overlap(const char* where, std::initializer_list<Extent> outputs, std::initializer_list<Extent> inputs) {
    auto overlap = [](const Extent& a, const Extent& b) {
        if (a.data == nullptr || b.data == nullptr || a.bytes == 0 || b.bytes == 0) {
            return false;
        }
        const auto a0 = reinterpret_cast<std::uintptr_t>(a.data), b0 = reinterpret_cast<std::uintptr_t>(b.data);
        return a0 < b0 + b.bytes && b0 < a0 + a.bytes;
    };
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
        for (auto p = o + 1; p != outputs.end(); ++p) {
            if (overlap(*o, *p)) {
                throw InvalidArgument(std::string("tomofuse::ptycho::") + where + ": " + o->name + " and " + p->name +
                                      " overlap");
            }
        }
        for (const Extent& i : inputs) {
            if (overlap(*o, i)) {
                throw InvalidArgument(std::string("tomofuse::ptycho::") + where + ": " + o->name + " overlaps " +
                                      i.name);
            }
        }
    }
}

void check_pointers(const char* where, std::initializer_list<const void*> ptrs) {
    for (const void* p : ptrs) {
        if (p == nullptr) {
            throw InvalidArgument(std::string("tomofuse::ptycho::") + where + ": null array pointer");
        }
    }
}

namespace {

// 1-D phase ramp exp(-2 pi i f k / n), k in numpy.fft.fftfreq order (times n).
void ramp_1d(std::size_t n, double f, cfloat* r) {
    const double pi = 3.14159265358979323846;
    for (std::size_t u = 0; u < n; ++u) {
        const double k = u < (n + 1) / 2 ? static_cast<double>(u) : static_cast<double>(u) - static_cast<double>(n);
        const double ph = -2.0 * pi * f * k / static_cast<double>(n);
        r[u] = cfloat(static_cast<float>(std::cos(ph)), static_cast<float>(std::sin(ph)));
    }
}

}  // namespace

void shift_into(const Scan& s, const cfloat* probe, cfloat* out, int threads) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t bins = s.bins();
    std::vector<cfloat> spec(probe, probe + modes * nn);
    for (std::size_t m = 0; m < modes; ++m) {
        forward(s, spec.data() + m * nn);
    }
    const float inv_nn = 1.0f / static_cast<float>(nn);
    const auto total = static_cast<std::ptrdiff_t>(bins * modes);
    RegionErrors errors;
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(dynamic, 1))
    for (std::ptrdiff_t idx = 0; idx < total; ++idx) {
        errors.run([&] {
            const auto b = static_cast<std::size_t>(idx) / modes;
            const auto m = static_cast<std::size_t>(idx) % modes;
            cfloat* o = out + static_cast<std::size_t>(idx) * nn;
            const cfloat* sp = spec.data() + m * nn;
            const cfloat* ry = s.ramp(b, 0);
            const cfloat* rx = s.ramp(b, 1);
            for (std::size_t u = 0; u < n; ++u) {
                const cfloat ru = ry[u] * inv_nn;
                for (std::size_t v = 0; v < n; ++v) {
                    o[u * n + v] = sp[u * n + v] * (ru * rx[v]);
                }
            }
            backward(s, o);
        });
    }
    errors.rethrow();
}

Probes make_probes(const Scan& s, const cfloat* probe, int threads, cfloat* storage) {
    Probes p;
    if (s.subpixel_steps() == 0) {
        p.base = probe;
        return p;
    }
    if (storage == nullptr) {
        p.buffer.resize(s.bins() * s.modes() * s.frame());
        storage = p.buffer.data();
    }
    shift_into(s, probe, storage, threads);
    p.base = storage;
    p.bin_stride = s.modes() * s.frame();
    return p;
}

namespace {

constexpr std::uint64_t kShiftedKeyTag = 0x746f6d6f66757365ull;  // "tomofuse"

// Compares `key` with (s, probe) when `write` is false, else writes it; true if equal (or written).
bool shifted_key_io(const Scan& s, unsigned char* key, const cfloat* probe, bool write) {
    unsigned char* at = key;
    auto field = [&](const void* v, std::size_t bytes) {
        const bool same = write || std::memcmp(at, v, bytes) == 0;
        if (write) {
            std::memcpy(at, v, bytes);
        }
        at += bytes;
        return same;
    };
    const std::uint64_t head[4] = {kShiftedKeyTag, s.n(), s.modes(), s.bins()};
    if (!field(head, sizeof(head))) {
        return false;
    }
    for (std::size_t b = 0; b < s.bins(); ++b) {
        const float shift[2] = {s.bin_shift(b).first, s.bin_shift(b).second};
        if (!field(shift, sizeof(shift))) {
            return false;
        }
    }
    return field(probe, s.modes() * s.frame() * sizeof(cfloat));
}

Probes held(const Scan& s, const cfloat* storage) {
    Probes p;
    p.base = storage;
    p.bin_stride = s.modes() * s.frame();
    return p;
}

}  // namespace

std::size_t shifted_key_bytes(const Scan& s) {
    return 4 * sizeof(std::uint64_t) + s.bins() * 2 * sizeof(float) + s.modes() * s.frame() * sizeof(cfloat);
}

Probes keyed_probes(const Scan& s, const cfloat* probe, int threads, cfloat* storage, unsigned char* key,
                    bool reuse) {
    if (key == nullptr || storage == nullptr || s.subpixel_steps() == 0) {
        return make_probes(s, probe, threads, storage);
    }
    if (reuse && shifted_key_io(s, key, probe, false)) {
        return held(s, storage);
    }
    std::memset(key, 0, shifted_key_bytes(s));  // invalid while the probes are rewritten
    Probes p = make_probes(s, probe, threads, storage);
    shifted_key_io(s, key, probe, true);
    return p;
}

Probes held_probes(const Scan& s, const cfloat* storage, const unsigned char* key, const cfloat* probe) {
    // (read only: the key compared, not written)
    if (key == nullptr || storage == nullptr || s.subpixel_steps() == 0 ||
        !shifted_key_io(s, const_cast<unsigned char*>(key), probe, false)) {
        return Probes{};
    }
    return held(s, storage);
}

void unshift_sum_modes(const Scan& s, cfloat* per_bin, cfloat* out, std::size_t modes, int threads) {
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t bins = s.bins();
    const auto total = static_cast<std::ptrdiff_t>(bins * modes);
    RegionErrors transform_errors;
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(dynamic, 1))
    for (std::ptrdiff_t idx = 0; idx < total; ++idx) {
        transform_errors.run([&] {
            forward(s, per_bin + static_cast<std::size_t>(idx) * nn);
        });
    }
    transform_errors.rethrow();
    const float inv_nn = 1.0f / static_cast<float>(nn);
    const auto rows = static_cast<std::ptrdiff_t>(modes * n);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t r = 0; r < rows; ++r) {
        const auto m = static_cast<std::size_t>(r) / n;
        const auto u = static_cast<std::size_t>(r) % n;
        cfloat* o = out + m * nn + u * n;
        std::fill(o, o + n, cfloat(0.0f, 0.0f));
        for (std::size_t b = 0; b < bins; ++b) {
            const cfloat* a = per_bin + (b * modes + m) * nn + u * n;
            const cfloat ru = std::conj(s.ramp(b, 0)[u]);
            const cfloat* rx = s.ramp(b, 1);
            for (std::size_t v = 0; v < n; ++v) {
                o[v] += a[v] * (ru * std::conj(rx[v]));
            }
        }
        for (std::size_t v = 0; v < n; ++v) {
            o[v] *= inv_nn;
        }
    }
    for (std::size_t m = 0; m < modes; ++m) {
        backward(s, out + m * nn);
    }
}

}  // namespace detail

using namespace detail;

Scan::Scan(std::size_t n, std::size_t modes, std::size_t height, std::size_t width, const double* positions,
           std::size_t count, int subpixel_steps)
    : n_(n), modes_(modes), height_(height), width_(width), steps_(subpixel_steps),
      plan_(n == 0 ? 1 : n, n == 0 ? 1 : n) {
    if (subpixel_steps < 0 || subpixel_steps > 64) {
        throw InvalidArgument("subpixel_steps must be in [0, 64] (0 = bilinear object interpolation), got " +
                              std::to_string(subpixel_steps));
    }
    if (n == 0 || modes == 0 || height == 0 || width == 0) {
        throw ShapeError("tomofuse::ptycho::Scan: pattern size, modes and object shape must be > 0");
    }
    if (count == 0) {
        throw ShapeError("tomofuse::ptycho::Scan: the scan holds no positions (empty scan)");
    }
    if (count > std::numeric_limits<std::uint32_t>::max()) {
        throw ShapeError("tomofuse::ptycho::Scan: too many positions");
    }
    if (positions == nullptr) {
        throw InvalidArgument("tomofuse::ptycho::Scan: positions must not be null");
    }
    windows_.resize(count);
    std::vector<std::uint32_t> code(count, 0);
    const auto h2 = static_cast<std::int64_t>(height / 2);
    const auto w2 = static_cast<std::int64_t>(width / 2);
    const auto n2 = static_cast<std::int64_t>(n / 2);
    for (std::size_t k = 0; k < count; ++k) {
        const double y = positions[2 * k];
        const double x = positions[2 * k + 1];
        if (!std::isfinite(y) || !std::isfinite(x) || std::abs(y) > 1e9 || std::abs(x) > 1e9) {
            throw InvalidArgument("positions: position " + std::to_string(k) + " is not finite");
        }
        const double fly = std::floor(y);
        const double flx = std::floor(x);
        Window w;
        w.y0 = static_cast<std::int64_t>(fly) + h2 - n2;
        w.x0 = static_cast<std::int64_t>(flx) + w2 - n2;
        w.fy = static_cast<float>(y - fly);
        w.fx = static_cast<float>(x - flx);
        if (w.fy >= 1.0f) {  // rounding of a value just below an integer
            w.fy = 0.0f;
            w.y0 += 1;
        }
        if (w.fx >= 1.0f) {
            w.fx = 0.0f;
            w.x0 += 1;
        }
        if (steps_ > 0) {  // shift the probe by the fraction rounded to 1 / steps; crop whole pixels
            auto by = static_cast<std::int64_t>(std::lround(static_cast<double>(w.fy) * steps_));
            auto bx = static_cast<std::int64_t>(std::lround(static_cast<double>(w.fx) * steps_));
            if (by == steps_) {
                by = 0;
                w.y0 += 1;
            }
            if (bx == steps_) {
                bx = 0;
                w.x0 += 1;
            }
            w.fy = 0.0f;
            w.fx = 0.0f;
            code[k] = static_cast<std::uint32_t>(by * steps_ + bx);
        }
        const std::int64_t rows = static_cast<std::int64_t>(n) + (w.fy != 0.0f ? 1 : 0);
        const std::int64_t cols = static_cast<std::int64_t>(n) + (w.fx != 0.0f ? 1 : 0);
        if (w.y0 < 0 || w.x0 < 0 || w.y0 + rows > static_cast<std::int64_t>(height) ||
            w.x0 + cols > static_cast<std::int64_t>(width)) {
            throw InvalidArgument("positions: position " + std::to_string(k) + " (y, x) = (" + std::to_string(y) +
                                  ", " + std::to_string(x) + ") puts the " + std::to_string(n) + "x" +
                                  std::to_string(n) + " probe window outside the " + std::to_string(height) + "x" +
                                  std::to_string(width) + " object");
        }
        windows_[k] = w;
    }
    // Distinct shifts in increasing code order (by * steps + bx), so bins do not depend on
    // the order of the positions.
    bin_of_.assign(count, 0);
    if (steps_ == 0) {
        bin_shift_.assign(1, {0.0f, 0.0f});
        return;
    }
    std::vector<std::uint32_t> codes(code);
    std::sort(codes.begin(), codes.end());
    codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
    for (std::uint32_t c : codes) {
        bin_shift_.emplace_back(static_cast<float>(c / static_cast<std::uint32_t>(steps_)) / static_cast<float>(steps_),
                                static_cast<float>(c % static_cast<std::uint32_t>(steps_)) / static_cast<float>(steps_));
    }
    for (std::size_t k = 0; k < count; ++k) {
        bin_of_[k] = static_cast<std::uint32_t>(std::lower_bound(codes.begin(), codes.end(), code[k]) - codes.begin());
    }
    ramps_.resize(bin_shift_.size() * 2 * n_);
    for (std::size_t b = 0; b < bin_shift_.size(); ++b) {
        ramp_1d(n_, bin_shift_[b].first, ramps_.data() + 2 * b * n_);
        ramp_1d(n_, bin_shift_[b].second, ramps_.data() + (2 * b + 1) * n_);
    }
}

void shifted_probes(const Scan& s, const cfloat* probe, cfloat* out, int nthreads) {
    check_pointers("shifted_probes", {probe, out});
    const int threads = resolve_threads(nthreads);
    if (s.subpixel_steps() == 0) {
        std::copy(probe, probe + s.modes() * s.frame(), out);
        return;
    }
    shift_into(s, probe, out, threads);
}

}  // namespace tomofuse::ptycho
