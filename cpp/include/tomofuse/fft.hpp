// Batched 2-D complex<float> FFTs (Intel oneMKL or FFTW inside, through the FFTW3 API; not
// exposed: see backend()).
//
// A batch is `batch` frames of ny*nx elements each, stored one after the other
// in C order (the last two axes of a C-contiguous (..., ny, nx) array).
// Normalization follows numpy.fft:
//   Norm::Backward  forward unscaled,        backward scaled by 1/(ny*nx)
//   Norm::Ortho     both scaled by 1/sqrt(ny*nx)
//   Norm::Forward   forward scaled by 1/(ny*nx), backward unscaled
// Direction::Forward uses exp(-2 pi i k x / n), Direction::Backward exp(+...).
#pragma once

#include <complex>
#include <cstddef>
#include <memory>
#include <string>

#include "tomofuse/export.hpp"

namespace tomofuse::fft {

enum class Direction { Forward, Backward };

enum class Norm { Backward, Ortho, Forward };

/// How hard FFTW searches for a fast algorithm when a plan is made.
/// Estimate is immediate; Measure times candidate algorithms (milliseconds to
/// seconds per plan) and may give a faster transform. The MKL backend has one
/// algorithm per shape and CPU: both values give the same transform.
enum class Rigor { Estimate, Measure };

/// The FFT library compiled into the core and its version, e.g.
/// "Intel oneMKL 2026.0.2 (FFTW3 interface, sequential; <the CPU code path MKL chose>)" or
/// "FFTW fftw-3.3.10-sse2-avx" (FFTW lists its SIMD code paths; none: scalar).
TOMOFUSE_EXPORT std::string backend();

/// Scale factor applied by a transform of n = ny*nx points.
TOMOFUSE_EXPORT double scale_factor(Direction direction, Norm norm, std::size_t n);

/// A reusable 2-D transform of fixed shape (ny, nx).
///
/// FFTW plans are made under a process-wide planner lock (FFTW's planner is not
/// thread-safe), once per (direction, in-place / out-of-place) combination, the
/// first time that combination is executed. execute() is const and thread-safe:
/// one plan may be shared by any number of threads.
class TOMOFUSE_EXPORT Plan2D {
public:
    /// Throws tomofuse::InvalidArgument if ny or nx is zero or too large.
    Plan2D(std::size_t ny, std::size_t nx, Rigor rigor = Rigor::Estimate);
    ~Plan2D();

    Plan2D(const Plan2D&) = delete;
    Plan2D& operator=(const Plan2D&) = delete;
    Plan2D(Plan2D&& other) noexcept;
    Plan2D& operator=(Plan2D&& other) noexcept;

    std::size_t ny() const noexcept { return ny_; }
    std::size_t nx() const noexcept { return nx_; }
    /// Points per frame, ny * nx.
    std::size_t frame_size() const noexcept { return ny_ * nx_; }
    Rigor rigor() const noexcept { return rigor_; }

    /// Transform `batch` contiguous frames from `in` to `out`.
    ///
    /// `in == out` transforms in place; otherwise the two ranges must not
    /// overlap and `in` is left unchanged. Any alignment is accepted (frames
    /// not aligned for FFTW's SIMD code go through an aligned per-thread
    /// scratch frame). Frames are distributed over `nthreads` OpenMP threads
    /// (0 = tomofuse::default_threads()); results do not depend on nthreads.
    /// batch == 0 does nothing. Throws tomofuse::InvalidArgument for null
    /// pointers, partially overlapping ranges or bad enum values, and
    /// tomofuse::Error if this plan was moved from or FFTW fails.
    void execute(const std::complex<float>* in, std::complex<float>* out, std::size_t batch,
                 Direction direction, Norm norm = Norm::Backward, int nthreads = 0) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::size_t ny_ = 0;
    std::size_t nx_ = 0;
    Rigor rigor_ = Rigor::Estimate;
};

/// Forward FFT over the last two axes of `batch` contiguous (ny, nx) frames.
TOMOFUSE_EXPORT void fft2(const std::complex<float>* in, std::complex<float>* out,
                          std::size_t batch, std::size_t ny, std::size_t nx,
                          Norm norm = Norm::Backward, int nthreads = 0);

/// Inverse FFT over the last two axes of `batch` contiguous (ny, nx) frames.
TOMOFUSE_EXPORT void ifft2(const std::complex<float>* in, std::complex<float>* out,
                           std::size_t batch, std::size_t ny, std::size_t nx,
                           Norm norm = Norm::Backward, int nthreads = 0);

/// Fourier filter of real frames with edge padding: each of `batch` (ny, nx)
/// frames of `in` is padded to (pad_ny, pad_nx) by repeating its edge values
/// (the frame sits at offset ((pad_ny - ny) / 2, (pad_nx - nx) / 2)), its
/// real-to-complex spectrum is multiplied by the real `response` of shape
/// (pad_ny, pad_nx / 2 + 1) (numpy.fft.rfft2 layout; even in ky, as any real
/// filter is: otherwise the kx = 0 column is not Hermitian and the result
/// depends on the FFT library), transformed back and
/// cropped to (ny, nx) into `out` (`out == in` allowed; otherwise no overlap).
/// Frames are distributed over OpenMP threads; results do not depend on
/// nthreads. Rigor::Measure plans once per padded shape and process (about a
/// second at 2048 x 2048, then ~2x faster transforms; its choice of algorithm,
/// and so the last bits, may differ between processes). Throws
/// tomofuse::InvalidArgument / ShapeError for bad arguments.
TOMOFUSE_EXPORT void filter_real_2d(const float* in, float* out, std::size_t batch, std::size_t ny, std::size_t nx,
                                    std::size_t pad_ny, std::size_t pad_nx, const float* response,
                                    Rigor rigor = Rigor::Estimate, int nthreads = 0);

}  // namespace tomofuse::fft
