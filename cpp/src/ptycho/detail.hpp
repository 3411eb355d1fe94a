// Private to the ptychography engines (cpp/src/ptycho/): what the scan geometry,
// the overlap operators, the difference map and maximum likelihood share.
//
//   kernels.cpp   per-row / per-pixel kernels (instruction-set clones), the window interpolation
//   scan.cpp      Scan (windows, probe-shift bins), shifted probes and their adjoint
//   overlap.cpp   object windows, exit waves, object / probe gathers, illumination
//   dm.cpp        dm_iteration
//   ml.cpp        ml_gradient, ml_line_coefficients, ml_start, ml_iteration
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "tomofuse/ptycho.hpp"

namespace tomofuse::ptycho::detail {

// Unscaled transforms of one frame in place (FFTW's own scaling conventions:
// forward with Norm::Backward and backward with Norm::Forward are unscaled).
inline void forward(const Scan& s, cfloat* f) {
    s.plan().execute(f, f, 1, fft::Direction::Forward, fft::Norm::Backward, 1);
}
inline void backward(const Scan& s, cfloat* f) {
    s.plan().execute(f, f, 1, fft::Direction::Backward, fft::Norm::Forward, 1);
}

// |z|^2 by the textbook formula (libstdc++'s std::norm goes through std::abs, a hypot,
// unless compiled with -ffast-math).
inline float sq(cfloat z) noexcept { return z.real() * z.real() + z.imag() * z.imag(); }
inline double sq(std::complex<double> z) noexcept { return z.real() * z.real() + z.imag() * z.imag(); }

// Throws InvalidArgument naming `where` if any pointer is null.
void check_pointers(const char* where, std::initializer_list<const void*> ptrs);

// A named byte range of an argument (null pointers and empty ranges never overlap).
struct Extent {
    const char* name;
    const void* data;
    std::size_t bytes;
};

// Throws InvalidArgument (naming `where` and both arguments) if an output overlaps another
// output or an input.
void check_no_overlap(const char* where, std::initializer_list<Extent> outputs, std::initializer_list<Extent> inputs);

// Sum of v in order.
double ordered_sum(const std::vector<double>& v);

// ---------------------------------------------------------------- scan.cpp

// The probe of every shift bin: base + bin * bin_stride (bin_stride 0 for the bilinear model,
// where every pattern sees the probe itself).
struct Probes {
    std::vector<cfloat> buffer;
    const cfloat* base = nullptr;
    std::size_t bin_stride = 0;
    const cfloat* of(const Scan& s, std::size_t k) const { return base + s.bin(k) * bin_stride; }
};

// out (bins, modes, nn) = P_m shifted by each bin's fraction: F^-1[F(P_m) ramp_b].
void shift_into(const Scan& s, const cfloat* probe, cfloat* out, int threads);

// With `storage` (bins * modes * nn elements, the caller's), the shifted probes go there
// instead of into a buffer of their own (no allocation: see MLBuffers::shifted).
Probes make_probes(const Scan& s, const cfloat* probe, int threads, cfloat* storage = nullptr);

// A key of shifted probes: what shift_into reads (a tag, the frame size, modes and bins, each bin's
// shift, the probe itself), shifted_key_bytes(s) bytes, so that shifted probes kept from one call to
// the next are read again only when they are this probe's for these shifts.
std::size_t shifted_key_bytes(const Scan& s);

// The shifted probes of `probe` in `storage` (bins * modes * nn elements, the caller's, kept between
// calls) under `key` (shifted_key_bytes(s) bytes, or null: always computed): with `reuse`, those
// `storage` holds when the key says they were computed from this probe for these shifts, else
// computed into it and the key written (zeroed while they are). The same bits either way. For the
// bilinear model (no shifts) the probe itself.
Probes keyed_probes(const Scan& s, const cfloat* probe, int threads, cfloat* storage, unsigned char* key, bool reuse);

// keyed_probes' held probes when `key` (not null) says they are `probe`'s for these shifts, else none
// (base null). Reads only.
Probes held_probes(const Scan& s, const cfloat* storage, const unsigned char* key, const cfloat* probe);

// out[m] = sum_b S_b^-1 per_bin[b, m] (the adjoint of the shifts) for `modes` modes; per_bin
// is overwritten. Each pixel sums the bins in order.
void unshift_sum_modes(const Scan& s, cfloat* per_bin, cfloat* out, std::size_t modes, int threads);

// ---------------------------------------------------------------- dm.cpp

// The shifted probes held by a dm_iteration workspace of this scan (dm_workspace_bytes(s) bytes, last
// written by dm_iteration) when its key says they were computed from `probe` for these shifts, else
// none (base null; also for the bilinear model, which keeps none).
Probes dm_workspace_probes(const Scan& s, const void* workspace, const cfloat* probe);

// ---------------------------------------------------------------- overlap.cpp

// num = sum_k S_k^T sum_m conj(P_km) waves_km, den = sum_k S_k^T sum_m |P_km|^2 over the object;
// with waves null only den (the illumination).
// `power`: optional scratch of bins * nn floats (bins = 1 for unshifted probes), overwritten.
void object_gather_impl(const Scan& s, const Probes& ps, const cfloat* waves, cfloat* num, float* den,
                        int threads, float* power = nullptr);

// probe_gather, with the per-bin sums in `work` (bins * modes * nn elements, overwritten) when
// given, else in buffers of its own.
void probe_gather_impl(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* num, float* den,
                       int threads, cfloat* work);

// Per-bin probe sums: acc (bins, modes, nn) += conj(o_k) w_km and dacc (bins, nn) += |o_k|^2 over
// the patterns of each shift bin (bins = 1 for the bilinear model), both overwritten.
void probe_sums(const Scan& s, const cfloat* object, const cfloat* waves, cfloat* acc, float* dacc, int threads);

// The terms of the difference map's probe update for the fixed object: num (modes, nn) and den
// (nn) such that the damped division (num + c P) / (den + c) is the update -- the least-squares
// probe (bilinear model), or one step towards it preconditioned by the diagonal of the normal
// equations (shifted probes ps of the current probe P).
// `acc` (bins * modes * nn) and `dacc` (bins * nn): optional scratch of the per-bin sums, overwritten.
void probe_update_terms(const Scan& s, const Probes& ps, const cfloat* object, const cfloat* waves,
                        const cfloat* probe, cfloat* num, float* den, int threads, cfloat* acc = nullptr,
                        float* dacc = nullptr);

}  // namespace tomofuse::ptycho::detail
