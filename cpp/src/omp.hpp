// Private helpers for OpenMP: pragmas that vanish (without -Wunknown-pragmas
// noise) when the core is built with TOMOFUSE_OPENMP=OFF, and the collection of
// exceptions thrown inside a parallel region.
#pragma once

#include <atomic>
#include <exception>

#if defined(TOMOFUSE_HAVE_OPENMP)
#include <omp.h>
#define TOMOFUSE_PRAGMA_(x) _Pragma(#x)
#define TOMOFUSE_OMP(...) TOMOFUSE_PRAGMA_(omp __VA_ARGS__)
#else
#define TOMOFUSE_OMP(...)
#endif

namespace tomofuse::detail {

/// An exception must not leave an OpenMP region (the runtime calls std::terminate,
/// so an out-of-memory would kill the Python process). Code inside a region runs
/// through run(), which keeps the first exception and makes every later run() a
/// no-op; after the region, rethrow() raises it in the calling thread (so
/// std::bad_alloc reaches Python as MemoryError). Every thread still meets every
/// worksharing construct (a thread that failed before an `omp for` must not skip
/// it, or the team deadlocks at its barrier), so put per-thread set-up and each
/// loop iteration in a run() of its own:
///
///     RegionErrors errors;
///     TOMOFUSE_OMP(parallel num_threads(threads))
///     {
///         std::vector<float> scratch;
///         errors.run([&] { scratch.resize(n); });
///         TOMOFUSE_OMP(for)
///         for (...) { errors.run([&] { ... }); }
///     }
///     errors.rethrow();
class RegionErrors {
public:
    template <typename F>
    void run(F&& f) noexcept {
        if (failed_.load(std::memory_order_relaxed)) {
            return;
        }
        try {
            f();
        } catch (...) {
            if (!claimed_.exchange(true, std::memory_order_acq_rel)) {
                first_ = std::current_exception();
            }
            failed_.store(true, std::memory_order_release);
        }
    }
    bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
    /// Rethrows the first exception of the region, if any (call after the region).
    void rethrow() const {
        if (failed() && first_) {
            std::rethrow_exception(first_);
        }
    }

private:
    std::atomic<bool> failed_{false};
    std::atomic<bool> claimed_{false};
    std::exception_ptr first_;
};

}  // namespace tomofuse::detail
