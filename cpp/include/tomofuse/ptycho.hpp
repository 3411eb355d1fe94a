// Far-field ptychography engines: difference map (Thibault et al.,
// Ultramicroscopy 109, 338 (2009)) and maximum likelihood with a Poisson
// noise model, minimized by preconditioned nonlinear conjugate gradients with
// a polynomial line search (Thibault & Guizar-Sicairos, New J. Phys. 14,
// 063004 (2012)).
//
// Model. Scan point k sees the object through an N x N window whose top-left
// corner is at object pixel (y0_k + fy_k, x0_k + fx_k), with integer y0, x0
// and fractions fy, fx in [0, 1). Probe mode m gives the exit wave
// psi_km = P_km * o_k, and the detector records I_k = sum_m |F psi_km|^2 with
// F the unitary 2-D DFT, zero frequency at index 0 (the caller undoes the
// detector's fftshift). The sub-pixel fraction enters in one of two ways,
// chosen per Scan (Scan::subpixel_steps):
//   - shifted probes (subpixel_steps = B > 0; tomofuse.ptycho.reconstruct uses
//     B = 8): o_k is the whole-pixel crop O(y0 + i, x0 + j) and the probe is
//     shifted by the fraction rounded to 1/B pixel, P_km = P_m(r - f_k), by a
//     Fourier phase ramp (exact for a band-limited probe);
//   - bilinear object (subpixel_steps = 0, the C++ default for compatibility):
//     P_km = P_m and o_k[i, j] = O(y0 + i + fy, x0 + j + fx) is interpolated
//     bilinearly.
// "Spreading" S_k^T below is the adjoint of taking o_k from O: a plain
// scatter-add for the whole-pixel crop, bilinear weights for the bilinear model.
//
// Every function is stateless: the caller owns the object, probe, exit waves
// and work buffers (so that a reconstruction can be checkpointed and resumed
// bit for bit). Loops run over OpenMP threads; every sum has a fixed order
// (per-pattern partial results summed in pattern order, object and probe
// pixels gathered pattern by pattern), so results do not depend on the number
// of threads.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "tomofuse/export.hpp"
#include "tomofuse/fft.hpp"

namespace tomofuse::ptycho {

using cfloat = std::complex<float>;

/// Where each pattern's window lies on the object.
struct TOMOFUSE_EXPORT Window {
    std::int64_t y0 = 0;  ///< top row of the window on the object
    std::int64_t x0 = 0;  ///< left column
    float fy = 0.0f;      ///< sub-pixel fraction of the row offset, [0, 1)
    float fx = 0.0f;      ///< sub-pixel fraction of the column offset, [0, 1)
};

/// The scan geometry: pattern size, probe modes, object shape and one window
/// per pattern, checked to lie inside the object. Holds the FFT plan of the
/// pattern shape; const member functions may be used from several threads.
///
/// Sub-pixel offsets have two models:
/// - subpixel_steps == 0: bilinear interpolation of the object under the
///   window (a window with fy > 0 needs N + 1 object rows, likewise columns);
/// - subpixel_steps == B > 0: the window is the whole-pixel crop and the
///   probe is shifted instead, exactly, by a Fourier phase ramp of the
///   fraction rounded to 1/B pixel: psi_k = P(r - f_k) O(r + q_k). The
///   shifted probes of the distinct fractions ("bins", at most B^2) are
///   computed once per call; Window::fy/fx are then 0 and shift(k) holds
///   the rounded fraction.
class TOMOFUSE_EXPORT Scan {
public:
    /// Windows from probe-center positions (y, x) in object pixels relative to
    /// the object's center index (height // 2, width // 2): y0 = floor(y) +
    /// height // 2 - n // 2, fy = y - floor(y). Throws InvalidArgument naming
    /// the first position that puts the window outside the object, ShapeError
    /// for empty or inconsistent sizes.
    Scan(std::size_t n, std::size_t modes, std::size_t height, std::size_t width, const double* positions,
         std::size_t count, int subpixel_steps = 0);

    std::size_t n() const noexcept { return n_; }
    std::size_t modes() const noexcept { return modes_; }
    std::size_t height() const noexcept { return height_; }
    std::size_t width() const noexcept { return width_; }
    std::size_t size() const noexcept { return windows_.size(); }
    std::size_t frame() const noexcept { return n_ * n_; }
    int subpixel_steps() const noexcept { return steps_; }
    const std::vector<Window>& windows() const noexcept { return windows_; }
    const fft::Plan2D& plan() const noexcept { return plan_; }
    /// Number of distinct probe shifts (1 for the bilinear model).
    std::size_t bins() const noexcept { return bin_shift_.size(); }
    /// Probe shift bin of pattern k, and the (fy, fx) shift of bin b.
    std::uint32_t bin(std::size_t k) const noexcept { return bin_of_[k]; }
    const std::pair<float, float>& bin_shift(std::size_t b) const noexcept { return bin_shift_[b]; }
    /// The 1-D Fourier phase ramps of bin b's shift, exp(-2 pi i f u / N) for the N
    /// frequencies u in FFT order: along rows (axis 0, f = fy) and columns (axis 1, f = fx).
    const cfloat* ramp(std::size_t b, int axis) const noexcept { return ramps_.data() + (2 * b + (axis != 0)) * n_; }

private:
    std::size_t n_;
    std::size_t modes_;
    std::size_t height_;
    std::size_t width_;
    int steps_ = 0;
    std::vector<Window> windows_;
    std::vector<std::uint32_t> bin_of_;
    std::vector<std::pair<float, float>> bin_shift_;
    std::vector<cfloat> ramps_;  // (bins, 2, n): see ramp()
    fft::Plan2D plan_;
};

/// The probe seen by every bin: (bins, modes, N, N) probe modes shifted by
/// each bin's fraction (for the bilinear model, one bin: the probe itself).
TOMOFUSE_EXPORT void shifted_probes(const Scan& scan, const cfloat* probe, cfloat* out, int nthreads = 0);

/// Measured data of a scan, in the unscaled layout of the engines.
struct Data {
    const float* values = nullptr;        ///< (K, N, N): amplitudes sqrt(I) for DM, intensities I for ML
    const std::uint8_t* mask = nullptr;   ///< (N, N), nonzero = valid detector pixel; nullptr = all valid
};

/// out[k] = o_k, the object under each window as the model sees it, (K, N, N).
TOMOFUSE_EXPORT void object_windows(const Scan& scan, const cfloat* object, cfloat* out, int nthreads = 0);

/// The normal equations of each pattern's linearized position step: out (K, 5) doubles
/// (a11, a12, a22, b1, b2) = (<d_y, d_y>, <d_y, d_x>, <d_x, d_x>, Re<d_y, r>, Re<d_x, r>), inner products
/// over modes and pixels of the residual r_km = exit_km - P_km o_k and of the exit wave's derivatives
/// in the position: d = -grad(P_km) o_k for shifted probes (the probe moves over the whole-pixel
/// crop), d = P_m grad(o_k) for the bilinear model (the window moves under the probe); gradients by
/// numpy.gradient's differences (central, one-sided at the frame's edges), in float; per-pixel
/// terms in float, their sums over pixels in double, row by row in a fixed order (the same at any
/// thread count). The frame must be at least 2 x 2.
/// `dm_workspace` (optional, dm_workspace_bytes(scan) bytes): a dm_iteration workspace of this scan as the
/// last dm_iteration left it; its shifted probes are read when its key says they are `probe`'s (the
/// same bits as computing them), else they are computed.
TOMOFUSE_EXPORT void position_equations(const Scan& scan, const cfloat* object, const cfloat* probe,
                                        const cfloat* exit, double* out, int nthreads = 0,
                                        const void* dm_workspace = nullptr);

/// The Gauss-Newton normal equations of each pattern's position from its measured intensities: out (K, 5)
/// doubles (a11, a12, a22, b1, b2) = (<J_y, J_y>, <J_y, J_x>, <J_x, J_x>, <J_y, r>, <J_x, r>), sums over the
/// valid detector pixels q of the residual r = sqrt(I_k) - A_k between measured and model amplitudes
/// (A_k = sqrt(sum_m |F(P_km o_k)|^2), unitary F) and of the model amplitude's derivatives in the position,
/// J_i = dA_k/dx_i = sum_m Re(conj(F(P_km o_k)) F(P_km d_i o_k)) / A_k (the window moving under the probe:
/// the far-field modulus does not see the rest of a shift, a translation of the whole exit wave); d_i o_k
/// by numpy.gradient's differences. Pixels where the model's power is 0 add nothing. Per-pixel terms in
/// float, sums in double in pixel order: the same at any thread count. Intensities as ml_iteration's
/// (zero frequency at index 0). The frame must be at least 2 x 2.
TOMOFUSE_EXPORT void position_equations_modulus(const Scan& scan, const Data& intensities, const cfloat* object,
                                                const cfloat* probe, double* out, int nthreads = 0);

/// exit[k, m] = P_km * o_k, the start of the difference map.
TOMOFUSE_EXPORT void exit_waves(const Scan& scan, const cfloat* object, const cfloat* probe, cfloat* exit,
                                int nthreads = 0);

/// Options of one difference-map iteration.
struct DMOptions {
    bool update_object = true;
    bool update_probe = true;
    int overlap_iterations = 1;   ///< alternating object / probe updates per iteration (>= 1)
    float object_inertia = 1e-3f; ///< regularization relative to the largest illumination
    float probe_inertia = 1e-3f;  ///< regularization relative to the largest object power
    /// Per-pattern bound (K values, sum of squared amplitude errors) below which the
    /// modulus constraint leaves a pattern alone, and down to which it relaxes it
    /// (Thibault et al. 2009's power bound); nullptr = strict constraint.
    const double* bound = nullptr;
    /// The `workspace` is the one the previous call used, unmodified since: the shifted
    /// probes it holds are reused when the probe and the scan's shifts are those they were
    /// computed from (compared bit for bit; recomputed otherwise). A DM iteration's Fourier
    /// pass and the next one's overlap projection usually see the same probe (one shift of
    /// every probe bin saved per iteration). Same result either way.
    bool reuse_workspace = false;
};

/// One difference-map iteration, in place:
///   1. overlap projection: `overlap_iterations` times, the object and then
///      the probe are the weighted least-squares solutions of exit ~ P * o_k
///      given the other (spreading S_k^T; for the bilinear model with lumped
///      weights), damped by an inertia term towards the previous value; with
///      shifted probes the probe's normal equations are not diagonal and the
///      probe takes one step towards their solution, preconditioned by their
///      diagonal (its fixed point is the exact least-squares probe);
///   2. exit <- exit + F^-1 M F (2 P o_k - exit) - P o_k, M replacing the
///      modulus of the summed modes by the measured amplitude at valid pixels
///      (relaxed by options.bound: with error e_k > b_k the model amplitude
///      moves to A + sqrt(b_k / e_k) (|Psi| - A), with e_k <= b_k not at all).
/// `error[k]` receives sum over valid pixels of (|F(2 P o_k - exit)| - A)^2
/// before the modulus constraint (amplitudes in the unitary normalization);
/// `model_error[k]`, if not null, the same for the model P o_k after the
/// overlap projection (one more transform per pattern and mode). `workspace`, if
/// not null, holds dm_workspace_bytes(scan) bytes of scratch (any contents,
/// overwritten, unless options.reuse_workspace says they are the previous call's):
/// the shifted probes, the per-bin probe sums and the update terms,
/// which are otherwise allocated by every call (hundreds of MB at the paper's
/// 400^2 patterns: a caller that iterates keeps one workspace and saves the
/// system's page zeroing). Object, probe, exit, error, model_error and workspace
/// must not overlap each other or the amplitudes, the mask or the bound
/// (InvalidArgument).
TOMOFUSE_EXPORT void dm_iteration(const Scan& scan, const Data& amplitudes, cfloat* object, cfloat* probe,
                                  cfloat* exit, const DMOptions& options, double* error,
                                  double* model_error = nullptr, int nthreads = 0, void* workspace = nullptr);

/// Bytes of dm_iteration's workspace for this scan.
TOMOFUSE_EXPORT std::size_t dm_workspace_bytes(const Scan& scan);

/// Object update from waves: num[y, x] = sum_k S_k^T (sum_m conj(P_km) w_km),
/// den = sum_k S_k^T (sum_m |P_km|^2), S_k^T the spreading of window k (for
/// the bilinear model with lumped weights). Both (height, width), overwritten.
TOMOFUSE_EXPORT void object_gather(const Scan& scan, const cfloat* probe, const cfloat* waves, cfloat* num,
                                   float* den, int nthreads = 0);

/// The illumination alone: den of object_gather, sum_k S_k^T sum_m |P_km|^2, (height, width).
TOMOFUSE_EXPORT void illumination(const Scan& scan, const cfloat* probe, float* den, int nthreads = 0);

/// Probe update from waves: num[m, i, j] = sum_k conj(o_k[i, j]) w_km[i, j],
/// den[i, j] = sum_k |o_k[i, j]|^2; with shifted probes, each pattern's terms
/// are shifted back by its fraction (the adjoint of the shift) and den stays the
/// plain sum (the diagonal part of the normal operator sum_k S_k^H |o_k|^2 S_k,
/// a preconditioner). num (M, N, N), den (N, N), overwritten.
TOMOFUSE_EXPORT void probe_gather(const Scan& scan, const cfloat* object, const cfloat* waves, cfloat* num,
                                  float* den, int nthreads = 0);

/// Maximum-likelihood state kept between iterations (owned by the caller so it
/// can be checkpointed). Arrays: object-shaped (H, W), probe-shaped (M, N, N).
struct MLState {
    cfloat* grad_object = nullptr;     ///< gradient at the current point (recomputed by ml_start)
    cfloat* grad_probe = nullptr;
    float* precond_object = nullptr;   ///< sum_k S_k^T sum_m |P_m|^2 at the current point
    float* precond_probe = nullptr;    ///< (N, N) sum_k |o_k|^2 at the current point
    cfloat* dir_object = nullptr;      ///< previous search direction
    cfloat* dir_probe = nullptr;
    cfloat* prev_grad_object = nullptr;  ///< gradient at the previous point
    cfloat* prev_grad_probe = nullptr;
    double prev_zg = 0.0;              ///< <M^-1 g, g> at the previous point (0: restart)
    double nll = 0.0;                  ///< negative log-likelihood at the current point
    double alpha = 0.0;                ///< last accepted step
};

struct MLOptions {
    bool update_object = true;
    bool update_probe = true;
    float intensity_floor = 1e-6f;       ///< added to model intensities (counts)
    float precond_regularization = 1e-2f;///< relative to the largest preconditioner value
    int max_backtracks = 10;
    /// Weight mu of the Gaussian smoothness prior on the object,
    /// mu * sum over neighboring pixels |O_i - O_j|^2, added to the NLL (0 = none).
    double smoothness = 0.0;
};

/// Work buffers of the ML engine: far fields and back-propagated residuals of
/// every pattern and mode, (K, M, N, N) each; and, optionally, the workspace of
/// the shifted-probe model, (2, bins, M, N, N) with bins = Scan::bins(), which
/// an engine loop keeps from call to call: without it every call allocates its
/// shifted probes anew, tens of MB that the C library hands back to the system
/// and the kernel zeroes again at the next call. Results do not depend on it.
/// `shifted_key` (optional, with `shifted`; ml_shifted_key_bytes(scan) bytes, any
/// contents -- e.g. zeros -- at first, then modified by the engine only, as `shifted`)
/// records which probe and shifts the first half of `shifted` holds, so that
/// ml_iteration's line search reads the shifted probes of the point the last
/// ml_gradient was evaluated at instead of computing them again (Scan::bins()
/// transforms per mode); the same bits either way. Zero it whenever `shifted` was
/// written by anything else.
struct MLBuffers {
    cfloat* far = nullptr;
    cfloat* chi = nullptr;
    cfloat* shifted = nullptr;
    unsigned char* shifted_key = nullptr;
};

/// Size in bytes of MLBuffers::shifted_key for this scan.
TOMOFUSE_EXPORT std::size_t ml_shifted_key_bytes(const Scan& scan);

/// Poisson negative log-likelihood (as a deviance: sum over valid pixels of
/// Im - I - I log(Im / I), Im the model intensity plus the floor) and its
/// Wirtinger gradient with respect to conj(object) and conj(probe) at the
/// given point, with the diagonal preconditioners. `nll[k]` per pattern;
/// returns the total plus the smoothness prior (if options.smoothness > 0).
/// Fills buffers.far and buffers.chi. With options.update_probe false the
/// probe gradient and preconditioner are not computed (set to zero). Outputs
/// and buffers must not overlap each other or the inputs (InvalidArgument).
TOMOFUSE_EXPORT double ml_gradient(const Scan& scan, const Data& intensities, const cfloat* object,
                                   const cfloat* probe, const MLBuffers& buffers, const MLOptions& options,
                                   cfloat* grad_object, cfloat* grad_probe, float* precond_object,
                                   float* precond_probe, double* nll, int nthreads = 0);

/// Coefficients (B1, B2) of the second-order expansion
/// L(x + a h) ~ L(x) + B1 a + B2 a^2 along direction h = (h_object, h_probe),
/// with `far` (K, M, N, N) holding the far fields at x (buffers.far of ml_gradient); read only.
/// `shifted`: optional workspace as MLBuffers::shifted. `chi`: optional, the back-propagated
/// residuals at x (buffers.chi of the same ml_gradient call; read only): with it the cross term
/// sum l' 2 Re(conj F(P o) F(h_P h_o)) of B2 is computed in real space as 2 Re <chi, h_P h_o>
/// (Parseval) instead of by one more transform per pattern and mode -- the same up to rounding.
TOMOFUSE_EXPORT void ml_line_coefficients(const Scan& scan, const Data& intensities, const cfloat* object,
                                          const cfloat* probe, const cfloat* h_object, const cfloat* h_probe,
                                          const cfloat* far, const MLOptions& options, double* b1, double* b2,
                                          int nthreads = 0, cfloat* shifted = nullptr, const cfloat* chi = nullptr);

/// Start (or resume) ML at (object, probe): gradient, preconditioners and
/// NLL into `state` (directions and previous gradient are left as they are).
TOMOFUSE_EXPORT void ml_start(const Scan& scan, const Data& intensities, const cfloat* object, const cfloat* probe,
                              MLState& state, const MLBuffers& buffers, const MLOptions& options, int nthreads = 0);

/// Result of one ML iteration.
struct MLStep {
    double nll = 0.0;      ///< NLL after the step (never above the NLL before it)
    double alpha = 0.0;    ///< accepted step length (0: no decrease found, point unchanged)
    int backtracks = 0;    ///< halvings of the line-search step
    bool restarted = false;///< the direction was reset to steepest descent
};

/// One preconditioned Polak-Ribiere (PR+) conjugate-gradient iteration with
/// the polynomial line search, in place on object and probe. The step is
/// halved until the NLL does not increase, so the NLL is monotone. `state` and
/// `buffers` (far fields and back-propagated residuals at the current point) are
/// as ml_start or the previous ml_iteration left them; the line search reads
/// both (ml_line_coefficients with `chi`).
TOMOFUSE_EXPORT MLStep ml_iteration(const Scan& scan, const Data& intensities, cfloat* object, cfloat* probe,
                                    MLState& state, const MLBuffers& buffers, const MLOptions& options,
                                    int nthreads = 0);

}  // namespace tomofuse::ptycho
