#include "tomofuse/parallel.hpp"

#include <atomic>
#include <string>

#include "tomofuse/errors.hpp"

#if defined(TOMOFUSE_HAVE_OPENMP)
#include <omp.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define TOMOFUSE_HAVE_ATFORK 1
#endif
#endif

namespace tomofuse {

namespace {
// 0 = follow OpenMP. The only process-wide setting of the library.
std::atomic<int> g_default_threads{0};

#if defined(TOMOFUSE_HAVE_ATFORK)
// GNU libgomp's thread pool does not survive fork(): a child whose parent had
// run a multi-threaded OpenMP region deadlocks in its own first one (e.g. a
// multiprocessing.Pool with the "fork" start method). Such children run the
// core serially instead.
std::atomic<bool> g_threads_used{false};
std::atomic<bool> g_serial_after_fork{false};

void on_fork_child() noexcept {
    if (g_threads_used.load(std::memory_order_relaxed)) {
        g_serial_after_fork.store(true, std::memory_order_relaxed);
    }
}

const int g_atfork_registered = pthread_atfork(nullptr, nullptr, &on_fork_child);
#endif

bool serial_after_fork() noexcept {
#if defined(TOMOFUSE_HAVE_ATFORK)
    (void)g_atfork_registered;
    return g_serial_after_fork.load(std::memory_order_relaxed);
#else
    return false;
#endif
}
}  // namespace

bool openmp_enabled() noexcept {
#if defined(TOMOFUSE_HAVE_OPENMP)
    return true;
#else
    return false;
#endif
}

int default_threads() noexcept {
#if defined(TOMOFUSE_HAVE_OPENMP)
    if (serial_after_fork()) {
        return 1;
    }
    const int n = g_default_threads.load(std::memory_order_relaxed);
    if (n > 0) {
        return n;
    }
    const int omp = omp_get_max_threads();
    return omp > 0 ? omp : 1;
#else
    return 1;
#endif
}

void set_default_threads(int n) {
    if (n < 0) {
        throw InvalidArgument("set_default_threads: n must be >= 0 (0 = automatic), got " +
                              std::to_string(n));
    }
    g_default_threads.store(n, std::memory_order_relaxed);
}

int resolve_threads(int nthreads) {
    if (nthreads < 0) {
        throw InvalidArgument("nthreads must be >= 0 (0 = library default), got " +
                              std::to_string(nthreads));
    }
#if defined(TOMOFUSE_HAVE_OPENMP)
    if (serial_after_fork()) {
        return 1;
    }
    const int n = nthreads > 0 ? nthreads : default_threads();
#if defined(TOMOFUSE_HAVE_ATFORK)
    if (n > 1) {
        g_threads_used.store(true, std::memory_order_relaxed);
    }
#endif
    return n;
#else
    return 1;
#endif
}

}  // namespace tomofuse
