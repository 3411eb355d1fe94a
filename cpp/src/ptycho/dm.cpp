// The difference map (Thibault et al., Ultramicroscopy 109, 338 (2009)): overlap projection
// by damped object / probe gathers, then the relaxed Fourier modulus constraint, fused per pattern.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "aligned.hpp"
#include "detail.hpp"
#include "kernels.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"
#include "tomofuse/ptycho.hpp"

namespace tomofuse::ptycho {

namespace {

using namespace detail;
using tomofuse::detail::RegionErrors;

// x <- (num + c x) / (den + c), c = inertia * max(den), elementwise.
template <typename Index>
void damped_divide(cfloat* x, const cfloat* num, const float* den, Index count, std::size_t stride_den, float inertia,
                   int threads) {
    float dmax = 0.0f;
    const std::size_t nden = stride_den;
    for (std::size_t q = 0; q < nden; ++q) {
        dmax = std::max(dmax, den[q]);
    }
    const float c = inertia * dmax;
    const auto total = static_cast<std::ptrdiff_t>(count);
    TOMOFUSE_OMP(parallel for num_threads(threads) schedule(static))
    for (std::ptrdiff_t q = 0; q < total; ++q) {
        const auto u = static_cast<std::size_t>(q);
        const float d = den[u % stride_den] + c;
        if (d > 0.0f) {
            x[u] = (num[u] + c * x[u]) / d;
        }
    }
}

// dm_iteration's scratch, carved from one block of dm_workspace_bytes(s) bytes, each part on a
// 64-byte boundary of the block: the shifted probes and the per-bin probe sums (none for the
// bilinear model), the per-bin floats (probe power for the object update, then |o|^2 sums for
// the probe update; one bin for the bilinear model), and the object and probe update terms.
struct DMScratch {
    unsigned char* key = nullptr;  // what `probes` were computed from (see probes_of)
    cfloat* probes = nullptr;
    cfloat* acc = nullptr;
    float* bin_floats = nullptr;
    cfloat* onum = nullptr;
    float* oden = nullptr;
    cfloat* pnum = nullptr;
    float* pden = nullptr;
    std::size_t bytes = 0;

    DMScratch(const Scan& s, unsigned char* base) {
        const bool shifted = s.subpixel_steps() > 0;
        const std::size_t bins = shifted ? s.bins() : 0;
        const std::size_t nn = s.frame();
        const std::size_t pm = s.modes() * nn;
        const std::size_t hw = s.height() * s.width();
        auto take = [&](std::size_t size) {
            unsigned char* at = base == nullptr ? nullptr : base + bytes;
            bytes += (size + 63) / 64 * 64;
            return at;
        };
        key = take(shifted ? shifted_key_bytes(s) : 0);
        probes = reinterpret_cast<cfloat*>(take(bins * pm * sizeof(cfloat)));
        acc = reinterpret_cast<cfloat*>(take(bins * pm * sizeof(cfloat)));
        bin_floats = reinterpret_cast<float*>(take(std::max<std::size_t>(bins, 1) * nn * sizeof(float)));
        onum = reinterpret_cast<cfloat*>(take(hw * sizeof(cfloat)));
        oden = reinterpret_cast<float*>(take(hw * sizeof(float)));
        pnum = reinterpret_cast<cfloat*>(take(pm * sizeof(cfloat)));
        pden = reinterpret_cast<float*>(take(nn * sizeof(float)));
        if (!shifted) {
            key = nullptr;
            probes = acc = nullptr;
        }
    }

    // The shifted probes of `probe` (keyed_probes on the workspace's probes and key).
    Probes probes_of(const Scan& s, const cfloat* probe, int threads, bool reuse) const {
        return keyed_probes(s, probe, threads, probes, key, reuse);
    }
};

}  // namespace

std::size_t dm_workspace_bytes(const Scan& s) { return DMScratch(s, nullptr).bytes; }

namespace detail {

Probes dm_workspace_probes(const Scan& s, const void* workspace, const cfloat* probe) {
    // (read only: the key compared, the probes used as const)
    const DMScratch w(s, static_cast<unsigned char*>(const_cast<void*>(workspace)));
    return held_probes(s, w.probes, w.key, probe);
}

}  // namespace detail

void dm_iteration(const Scan& s, const Data& amplitudes, cfloat* object, cfloat* probe, cfloat* exit,
                  const DMOptions& options, double* error, double* model_error, int nthreads, void* workspace) {
    check_pointers("dm_iteration", {amplitudes.values, object, probe, exit, error});
    if (options.overlap_iterations < 1) {
        throw InvalidArgument("tomofuse::ptycho::dm_iteration: overlap_iterations must be >= 1");
    }
    const int threads = resolve_threads(nthreads);
    const std::size_t n = s.n();
    const std::size_t nn = s.frame();
    const std::size_t modes = s.modes();
    const std::size_t hw = s.height() * s.width();
    const std::size_t k_count = s.size();
    const std::size_t workspace_bytes = dm_workspace_bytes(s);
    check_no_overlap("dm_iteration",
                     {{"object", object, hw * sizeof(cfloat)},
                      {"probe", probe, modes * nn * sizeof(cfloat)},
                      {"exit", exit, k_count * modes * nn * sizeof(cfloat)},
                      {"error", error, k_count * sizeof(double)},
                      {"model_error", model_error, k_count * sizeof(double)},
                      {"workspace", workspace, workspace_bytes}},
                     {{"amplitudes", amplitudes.values, k_count * nn * sizeof(float)},
                      {"mask", amplitudes.mask, nn},
                      {"bound", options.bound, k_count * sizeof(double)}});

    // Scratch: the caller's workspace, else a block of this call's own.
    tomofuse::detail::AlignedArray<unsigned char> own;
    if (workspace == nullptr) {
        own = tomofuse::detail::alloc_aligned<unsigned char>(workspace_bytes);
        workspace = own.get();
    }
    const DMScratch w(s, static_cast<unsigned char*>(workspace));

    // 1. Overlap projection.
    Probes ps = w.probes_of(s, probe, threads, options.reuse_workspace && own.get() == nullptr);
    if (options.update_object || options.update_probe) {
        for (int it = 0; it < options.overlap_iterations; ++it) {
            if (options.update_object) {
                object_gather_impl(s, ps, exit, w.onum, w.oden, threads, w.bin_floats);
                damped_divide(object, w.onum, w.oden, hw, hw, options.object_inertia, threads);
            }
            if (options.update_probe) {
                probe_update_terms(s, ps, object, exit, probe, w.pnum, w.pden, threads, w.acc, w.bin_floats);
                damped_divide(probe, w.pnum, w.pden, modes * nn, nn, options.probe_inertia, threads);
                // the shifted probes of the new probe replace those of the old one (no longer read)
                ps = w.probes_of(s, probe, threads, true);
            }
        }
    }

    // 2. Fourier projection of 2 P o - exit, fused per pattern.
    const float inv_scale = 1.0f / static_cast<float>(n);  // |F_unitary| = |F_unscaled| / n
    const float inv_nn = 1.0f / static_cast<float>(nn);     // undo the unscaled forward + backward
    const auto count = static_cast<std::ptrdiff_t>(s.size());
    RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<cfloat> o;
        std::vector<float> pw, mag;
        tomofuse::detail::AlignedArray<cfloat> f;
        errors.run([&] {
            o.resize(nn);
            pw.resize(nn);
            mag.resize(nn);
            f = tomofuse::detail::alloc_aligned<cfloat>(modes * nn);
        });
        TOMOFUSE_OMP(for schedule(dynamic, 2))
        for (std::ptrdiff_t kk = 0; kk < count; ++kk) {
            errors.run([&] {
                const auto k = static_cast<std::size_t>(kk);
                interpolate(s, object, s.windows()[k], o.data());
                const float* amp = amplitudes.values + k * nn;
                if (model_error != nullptr) {
                    // Error of the current model P o_k (one more transform per mode).
                    for (std::size_t m = 0; m < modes; ++m) {
                        cfloat* fm = f.get() + m * nn;
                        product(ps.of(s, k) + m * nn, o.data(), fm, nn);
                        forward(s, fm);
                        power(fm, pw.data(), nn, m == 0);
                    }
                    magnitude(pw.data(), inv_scale, mag.data(), nn);
                    model_error[k] = amplitude_error(mag.data(), amp, amplitudes.mask, nn);
                }
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* fm = f.get() + m * nn;
                    reflect(ps.of(s, k) + m * nn, o.data(), exit + (k * modes + m) * nn, fm, nn);
                    forward(s, fm);
                    power(fm, pw.data(), nn, m == 0);
                }
                // Model amplitudes (unitary) and the error before the constraint.
                magnitude(pw.data(), inv_scale, mag.data(), nn);
                const double err = amplitude_error(mag.data(), amp, amplitudes.mask, nn);
                error[k] = err;
                // Relaxed modulus constraint: move the model amplitude towards the measured one
                // until the remaining error equals the bound (the whole way when bound = 0).
                const double bound = options.bound == nullptr ? 0.0 : options.bound[k];
                const float keep = err > bound ? static_cast<float>(std::sqrt(bound / err)) : 1.0f;
                modulus_factor(mag.data(), amp, amplitudes.mask, keep, inv_nn, pw.data(), nn);
                for (std::size_t m = 0; m < modes; ++m) {
                    cfloat* fm = f.get() + m * nn;
                    scale_by(fm, pw.data(), nn);
                    backward(s, fm);
                    dm_update(exit + (k * modes + m) * nn, fm, ps.of(s, k) + m * nn, o.data(), nn);
                }
            });
        }
    }
    errors.rethrow();
}

}  // namespace tomofuse::ptycho
