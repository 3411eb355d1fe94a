#include "tomofuse/fft.hpp"

#include <fftw3.h>
#if defined(TOMOFUSE_FFT_MKL)
#include <mkl_service.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "aligned.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::fft {

using tomofuse::detail::RegionErrors;

namespace detail {
namespace {

using cf = std::complex<float>;

// FFTW's planner (and fftwf_destroy_plan) must never run concurrently.
std::mutex& planner_mutex() {
    static std::mutex m;
    return m;
}

using AlignedFrames = tomofuse::detail::AlignedArray<cf>;
using AlignedFloats = tomofuse::detail::AlignedArray<float>;
using tomofuse::detail::alloc_aligned;
using tomofuse::detail::try_alloc_aligned;

fftwf_complex* as_fftw(cf* p) noexcept { return reinterpret_cast<fftwf_complex*>(p); }

int fftw_alignment(const cf* p) noexcept {
    return fftwf_alignment_of(reinterpret_cast<float*>(const_cast<cf*>(p)));
}

const char* direction_name(Direction d) {
    return d == Direction::Forward ? "forward" : "backward";
}

void check_enums(Direction direction, Norm norm) {
    switch (direction) {
        case Direction::Forward:
        case Direction::Backward:
            break;
        default:
            throw InvalidArgument("tomofuse::fft: invalid Direction value " +
                                  std::to_string(static_cast<int>(direction)));
    }
    switch (norm) {
        case Norm::Backward:
        case Norm::Ortho:
        case Norm::Forward:
            break;
        default:
            throw InvalidArgument("tomofuse::fft: invalid Norm value " +
                                  std::to_string(static_cast<int>(norm)));
    }
}

void scale_frame(cf* p, std::size_t n, float s) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        p[i] *= s;
    }
}

void copy_scaled(const cf* src, cf* dst, std::size_t n, float s) noexcept {
    if (s == 1.0f) {
        std::memcpy(static_cast<void*>(dst), static_cast<const void*>(src), n * sizeof(cf));
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        dst[i] = src[i] * s;
    }
}

}  // namespace
}  // namespace detail

using detail::cf;

std::string backend() {
#if defined(TOMOFUSE_FFT_MKL)
    MKLVersion v{};
    mkl_get_version(&v);
    return "Intel oneMKL " + std::to_string(v.MajorVersion) + "." + std::to_string(v.MinorVersion) + "." +
           std::to_string(v.UpdateVersion) + " (FFTW3 interface, sequential; " +
           (v.Processor != nullptr ? v.Processor : "unknown processor") + ")";
#else
    return std::string("FFTW ") + fftwf_version;
#endif
}

double scale_factor(Direction direction, Norm norm, std::size_t n) {
    detail::check_enums(direction, norm);
    if (n == 0) {
        throw InvalidArgument("tomofuse::fft::scale_factor: n must be > 0");
    }
    const double dn = static_cast<double>(n);
    if (norm == Norm::Ortho) {
        return 1.0 / std::sqrt(dn);
    }
    const bool scaled = (direction == Direction::Forward) == (norm == Norm::Forward);
    return scaled ? 1.0 / dn : 1.0;
}

struct Plan2D::Impl {
    int ny = 0;
    int nx = 0;
    unsigned rigor_flag = FFTW_ESTIMATE;
    // fftwf_alignment_of() of the arrays the plans were made with.
    int plan_alignment = 0;

    // plans[2 * direction + in_place], made on first use.
    mutable std::mutex mutex;
    mutable std::array<fftwf_plan, 4> plans{};

    ~Impl() {
        std::lock_guard<std::mutex> lock(detail::planner_mutex());
        for (fftwf_plan& p : plans) {
            if (p != nullptr) {
                fftwf_destroy_plan(p);
                p = nullptr;
            }
        }
    }

    fftwf_plan get(Direction direction, bool in_place) const {
        const std::size_t idx = 2 * (direction == Direction::Backward ? 1U : 0U) + (in_place ? 1U : 0U);
        std::lock_guard<std::mutex> lock(mutex);
        if (plans[idx] != nullptr) {
            return plans[idx];
        }
        const std::size_t n = static_cast<std::size_t>(ny) * static_cast<std::size_t>(nx);
        // FFTW_MEASURE overwrites the arrays it plans with: use our own.
        detail::AlignedFrames a = detail::alloc_aligned<cf>(n);
        detail::AlignedFrames b;
        if (!in_place) {
            b = detail::alloc_aligned<cf>(n);
        }
        cf* in = a.get();
        cf* out = in_place ? a.get() : b.get();
        const int sign = direction == Direction::Forward ? FFTW_FORWARD : FFTW_BACKWARD;
        const unsigned flags = rigor_flag | (in_place ? 0U : FFTW_PRESERVE_INPUT);
        fftwf_plan p = nullptr;
        {
            std::lock_guard<std::mutex> planner(detail::planner_mutex());
            p = fftwf_plan_dft_2d(ny, nx, detail::as_fftw(in), detail::as_fftw(out), sign, flags);
        }
        if (p == nullptr) {
            throw Error("tomofuse::fft::Plan2D: FFTW could not plan a " +
                        std::string(detail::direction_name(direction)) + " transform of shape (" +
                        std::to_string(ny) + ", " + std::to_string(nx) + ")");
        }
        plans[idx] = p;
        return p;
    }
};

Plan2D::Plan2D(std::size_t ny, std::size_t nx, Rigor rigor) : ny_(ny), nx_(nx), rigor_(rigor) {
    if (ny == 0 || nx == 0) {
        throw ShapeError("tomofuse::fft::Plan2D: ny and nx must be > 0, got (" +
                         std::to_string(ny) + ", " + std::to_string(nx) + ")");
    }
    if (ny > static_cast<std::size_t>(INT_MAX) || nx > static_cast<std::size_t>(INT_MAX) ||
        ny > SIZE_MAX / sizeof(cf) / nx) {
        throw ShapeError("tomofuse::fft::Plan2D: shape (" + std::to_string(ny) + ", " +
                         std::to_string(nx) + ") is too large");
    }
    unsigned flag = 0;
    switch (rigor) {
        case Rigor::Estimate:
            flag = FFTW_ESTIMATE;
            break;
        case Rigor::Measure:
            flag = FFTW_MEASURE;
            break;
        default:
            throw InvalidArgument("tomofuse::fft::Plan2D: invalid Rigor value " +
                                  std::to_string(static_cast<int>(rigor)));
    }
    impl_ = std::make_unique<Impl>();
    impl_->ny = static_cast<int>(ny);
    impl_->nx = static_cast<int>(nx);
    impl_->rigor_flag = flag;
    detail::AlignedFrames probe = detail::alloc_aligned<cf>(1);
    impl_->plan_alignment = detail::fftw_alignment(probe.get());
}

Plan2D::~Plan2D() = default;
Plan2D::Plan2D(Plan2D&& other) noexcept = default;
Plan2D& Plan2D::operator=(Plan2D&& other) noexcept = default;

void Plan2D::execute(const cf* in, cf* out, std::size_t batch, Direction direction, Norm norm,
                     int nthreads) const {
    if (!impl_) {
        throw Error("tomofuse::fft::Plan2D::execute: this plan was moved from");
    }
    detail::check_enums(direction, norm);
    const int threads = resolve_threads(nthreads);
    if (batch == 0) {
        return;
    }
    if (in == nullptr || out == nullptr) {
        throw InvalidArgument("tomofuse::fft::Plan2D::execute: in and out must not be null");
    }
    const std::size_t n = frame_size();
    if (batch > SIZE_MAX / sizeof(cf) / n) {
        throw InvalidArgument("tomofuse::fft::Plan2D::execute: batch of " + std::to_string(batch) +
                              " frames is too large");
    }
    const bool in_place = static_cast<const void*>(in) == static_cast<const void*>(out);
    if (!in_place) {
        const auto a = reinterpret_cast<std::uintptr_t>(in);
        const auto b = reinterpret_cast<std::uintptr_t>(out);
        const std::uintptr_t bytes = batch * n * sizeof(cf);
        if (a < b + bytes && b < a + bytes) {
            throw InvalidArgument(
                "tomofuse::fft::Plan2D::execute: in and out overlap without being identical");
        }
    }

    // Frames whose alignment differs from the planning arrays go through an
    // aligned scratch frame with the in-place plan. The decision depends on
    // the frame only, never on the thread, so results do not depend on
    // nthreads.
    const int want = impl_->plan_alignment;
    bool any_misaligned = false;
    for (std::size_t f = 0; f < batch && !any_misaligned; ++f) {
        any_misaligned = detail::fftw_alignment(in + f * n) != want ||
                         detail::fftw_alignment(out + f * n) != want;
    }
    const fftwf_plan direct = impl_->get(direction, in_place);
    const fftwf_plan via_scratch = any_misaligned ? impl_->get(direction, true) : nullptr;
    const float scale = static_cast<float>(scale_factor(direction, norm, n));

    const std::ptrdiff_t nframes = static_cast<std::ptrdiff_t>(batch);
    const int team = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), batch));
    // Frames are independent and equally expensive; dynamic chunks (about
    // eight per thread) keep all threads busy when a core is shared with
    // other work, without changing any result.
    const int chunk = static_cast<int>(
        std::max<std::size_t>(1, batch / (8 * static_cast<std::size_t>(team))));
    (void)team;
    (void)chunk;
    std::atomic<bool> out_of_memory{false};

    TOMOFUSE_OMP(parallel num_threads(team) if (team > 1))
    {
        detail::AlignedFrames scratch;
        TOMOFUSE_OMP(for schedule(dynamic, chunk))
        for (std::ptrdiff_t f = 0; f < nframes; ++f) {
            const std::size_t off = static_cast<std::size_t>(f) * n;
            cf* src = const_cast<cf*>(in) + off;  // FFTW does not write to it (see flags)
            cf* dst = out + off;
            if (detail::fftw_alignment(src) == want && detail::fftw_alignment(dst) == want) {
                fftwf_execute_dft(direct, detail::as_fftw(src), detail::as_fftw(dst));
                if (scale != 1.0f) {
                    detail::scale_frame(dst, n, scale);
                }
                continue;
            }
            if (!scratch) {
                scratch = detail::try_alloc_aligned<cf>(n);
                if (!scratch) {
                    out_of_memory.store(true, std::memory_order_relaxed);
                    continue;
                }
            }
            std::memcpy(static_cast<void*>(scratch.get()), static_cast<const void*>(src),
                        n * sizeof(cf));
            fftwf_execute_dft(via_scratch, detail::as_fftw(scratch.get()),
                              detail::as_fftw(scratch.get()));
            detail::copy_scaled(scratch.get(), dst, n, scale);
        }
    }
    if (out_of_memory.load()) {
        throw std::bad_alloc();
    }
}

void fft2(const cf* in, cf* out, std::size_t batch, std::size_t ny, std::size_t nx, Norm norm,
          int nthreads) {
    Plan2D(ny, nx).execute(in, out, batch, Direction::Forward, norm, nthreads);
}

void ifft2(const cf* in, cf* out, std::size_t batch, std::size_t ny, std::size_t nx, Norm norm,
           int nthreads) {
    Plan2D(ny, nx).execute(in, out, batch, Direction::Backward, norm, nthreads);
}

namespace detail {
namespace {

// The r2c / c2r plan pair of one padded shape, destroyed under the planner lock.
struct RealPlans {
    fftwf_plan forward = nullptr;
    fftwf_plan backward = nullptr;
    RealPlans(int ny, int nx, unsigned flag) {
        const std::size_t n = static_cast<std::size_t>(ny) * static_cast<std::size_t>(nx);
        const std::size_t h = static_cast<std::size_t>(ny) * (static_cast<std::size_t>(nx) / 2 + 1);
        AlignedFloats real = alloc_aligned<float>(n);
        AlignedFrames spec = alloc_aligned<cf>(h);
        std::lock_guard<std::mutex> planner(planner_mutex());
        forward = fftwf_plan_dft_r2c_2d(ny, nx, real.get(), as_fftw(spec.get()), flag);
        backward = fftwf_plan_dft_c2r_2d(ny, nx, as_fftw(spec.get()), real.get(), flag);
    }
    ~RealPlans() {
        std::lock_guard<std::mutex> planner(planner_mutex());
        if (forward != nullptr) {
            fftwf_destroy_plan(forward);
        }
        if (backward != nullptr) {
            fftwf_destroy_plan(backward);
        }
    }
    RealPlans(const RealPlans&) = delete;
    RealPlans& operator=(const RealPlans&) = delete;
};

}  // namespace
}  // namespace detail

void filter_real_2d(const float* in, float* out, std::size_t batch, std::size_t ny, std::size_t nx,
                    std::size_t pad_ny, std::size_t pad_nx, const float* response, Rigor rigor, int nthreads) {
    const int threads = resolve_threads(nthreads);
    if (rigor != Rigor::Estimate && rigor != Rigor::Measure) {
        throw InvalidArgument("tomofuse::fft::filter_real_2d: invalid rigor");
    }
    if (ny == 0 || nx == 0) {
        throw ShapeError("tomofuse::fft::filter_real_2d: frames must not be empty");
    }
    if (pad_ny < ny || pad_nx < nx) {
        throw InvalidArgument("tomofuse::fft::filter_real_2d: the padded shape (" + std::to_string(pad_ny) + ", " +
                              std::to_string(pad_nx) + ") must be at least the frame shape (" +
                              std::to_string(ny) + ", " + std::to_string(nx) + ")");
    }
    if (pad_ny > static_cast<std::size_t>(INT_MAX) || pad_nx > static_cast<std::size_t>(INT_MAX) ||
        pad_ny > SIZE_MAX / sizeof(cf) / pad_nx) {
        throw ShapeError("tomofuse::fft::filter_real_2d: padded shape too large");
    }
    if (batch == 0) {
        return;
    }
    if (in == nullptr || out == nullptr || response == nullptr) {
        throw InvalidArgument("tomofuse::fft::filter_real_2d: null pointer argument");
    }
    const std::size_t frame = ny * nx;
    if (in != out) {
        const auto a = reinterpret_cast<std::uintptr_t>(in);
        const auto b = reinterpret_cast<std::uintptr_t>(out);
        const std::uintptr_t bytes = batch * frame * sizeof(float);
        if (a < b + bytes && b < a + bytes) {
            throw InvalidArgument("tomofuse::fft::filter_real_2d: in and out overlap without being identical");
        }
    }
    const detail::RealPlans plans(static_cast<int>(pad_ny), static_cast<int>(pad_nx),
                                  rigor == Rigor::Measure ? FFTW_MEASURE : FFTW_ESTIMATE);
    if (plans.forward == nullptr || plans.backward == nullptr) {
        throw Error("tomofuse::fft::filter_real_2d: FFTW could not plan a real transform of shape (" +
                    std::to_string(pad_ny) + ", " + std::to_string(pad_nx) + ")");
    }
    const std::size_t hx = pad_nx / 2 + 1;
    const std::size_t top = (pad_ny - ny) / 2, left = (pad_nx - nx) / 2;
    const float scale = static_cast<float>(1.0 / (static_cast<double>(pad_ny) * static_cast<double>(pad_nx)));
    const auto nframes = static_cast<std::ptrdiff_t>(batch);
    const int team = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), batch));
    (void)team;
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(team) if (team > 1))
    {
        detail::AlignedFloats real;
        detail::AlignedFrames spec;
        errors.run([&] {
            real = detail::alloc_aligned<float>(pad_ny * pad_nx);
            spec = detail::alloc_aligned<cf>(pad_ny * hx);
        });
        TOMOFUSE_OMP(for schedule(dynamic, 1))
        for (std::ptrdiff_t f = 0; f < nframes; ++f) {
            errors.run([&] {
                const float* src = in + static_cast<std::size_t>(f) * frame;
                float* buf = real.get();
                // edge padding: row r of the padded frame is source row clamp(r - top)
                for (std::size_t r = 0; r < pad_ny; ++r) {
                    const std::size_t sr = std::min(ny - 1, r < top ? 0 : r - top);
                    const float* line = src + sr * nx;
                    float* dst = buf + r * pad_nx;
                    std::fill(dst, dst + left, line[0]);
                    std::copy(line, line + nx, dst + left);
                    std::fill(dst + left + nx, dst + pad_nx, line[nx - 1]);
                }
                fftwf_execute_dft_r2c(plans.forward, buf, detail::as_fftw(spec.get()));
                cf* sp = spec.get();
                for (std::size_t k = 0; k < pad_ny * hx; ++k) {
                    sp[k] *= response[k];
                }
                fftwf_execute_dft_c2r(plans.backward, detail::as_fftw(sp), buf);
                float* dst = out + static_cast<std::size_t>(f) * frame;
                for (std::size_t r = 0; r < ny; ++r) {
                    const float* line = buf + (r + top) * pad_nx + left;
                    for (std::size_t c = 0; c < nx; ++c) {
                        dst[r * nx + c] = line[c] * scale;
                    }
                }
            });
        }
    }
    errors.rethrow();
}

}  // namespace tomofuse::fft
