// Allocation failures inside OpenMP regions reach the caller as std::bad_alloc (an exception
// leaving a parallel region would call std::terminate). A replaced global operator new fails
// every request above a limit while a test arms it; the inputs are sized so that the large
// requests are the per-thread buffers inside the engines' parallel regions.
#include <atomic>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

#include "test_util.hpp"
#include "tomofuse/ptycho.hpp"

namespace {
std::atomic<std::size_t> g_limit{std::numeric_limits<std::size_t>::max()};
std::atomic<std::size_t> g_refused{0};
}  // namespace

void* operator new(std::size_t n) {
    if (n > g_limit.load(std::memory_order_relaxed)) {
        g_refused.fetch_add(1);
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using cf = std::complex<float>;

// Requests above `limit` bytes fail while this lives.
struct Armed {
    explicit Armed(std::size_t limit) {
        g_refused = 0;
        g_limit = limit;
    }
    ~Armed() { g_limit = std::numeric_limits<std::size_t>::max(); }
};

constexpr std::size_t N = 256, K = 3, H = 300, W = 300;

struct Case {
    std::vector<double> pos = {0.0, 0.0, 3.5, -2.25, -4.0, 5.0};
    tomofuse::ptycho::Scan scan{N, 1, H, W, pos.data(), K, 0};
    std::vector<cf> object = std::vector<cf>(H * W, cf(1.0f, 0.0f));
    std::vector<cf> probe = std::vector<cf>(N * N, cf(1.0f, 0.0f));
    std::vector<cf> exit = std::vector<cf>(K * N * N, cf(1.0f, 0.0f));
    std::vector<cf> far = std::vector<cf>(K * N * N), chi = std::vector<cf>(K * N * N);
    std::vector<float> data = std::vector<float>(K * N * N, 1.0f);
    std::vector<double> out = std::vector<double>(K);
};

// Per-thread frames of N * N complex values (512 KiB) are refused; the caller's arrays exist.
constexpr std::size_t kLimit = N * N * sizeof(cf) / 2;

TEST(AllocationFailure, DifferenceMapRaisesBadAlloc) {
    Case c;
    tomofuse::ptycho::DMOptions opt;
    opt.update_object = false;  // no allocation before the parallel region
    opt.update_probe = false;
    Armed armed(kLimit);
    EXPECT_THROW(tomofuse::ptycho::dm_iteration(c.scan, {c.data.data(), nullptr}, c.object.data(), c.probe.data(),
                                                c.exit.data(), opt, c.out.data(), nullptr, 2),
                 std::bad_alloc);
    EXPECT_GT(g_refused.load(), 0u);
}

TEST(AllocationFailure, MlGradientAndLineSearchRaiseBadAlloc) {
    Case c;
    std::vector<cf> go(H * W), gp(N * N);
    std::vector<float> po(H * W), pp(N * N);
    tomofuse::ptycho::MLOptions opt;
    opt.update_probe = false;
    Armed armed(kLimit);
    EXPECT_THROW(tomofuse::ptycho::ml_gradient(c.scan, {c.data.data(), nullptr}, c.object.data(), c.probe.data(),
                                               {c.far.data(), c.chi.data()}, opt, go.data(), gp.data(), po.data(),
                                               pp.data(), c.out.data(), 2),
                 std::bad_alloc);
    double b1 = 0.0, b2 = 0.0;
    EXPECT_THROW(tomofuse::ptycho::ml_line_coefficients(c.scan, {c.data.data(), nullptr}, c.object.data(),
                                                        c.probe.data(), c.object.data(), c.probe.data(),
                                                        c.far.data(), opt, &b1, &b2, 2),
                 std::bad_alloc);
}

TEST(AllocationFailure, ExitWavesRaiseBadAlloc) {
    Case c;
    Armed armed(kLimit);
    EXPECT_THROW(tomofuse::ptycho::exit_waves(c.scan, c.object.data(), c.probe.data(), c.exit.data(), 2),
                 std::bad_alloc);
}

TEST(AllocationFailure, TheEnginesWorkAgainAfterwards) {
    Case c;
    { Armed armed(kLimit); }
    EXPECT_NO_THROW(tomofuse::ptycho::exit_waves(c.scan, c.object.data(), c.probe.data(), c.exit.data(), 2));
    EXPECT_EQ(c.exit[0], cf(1.0f, 0.0f));
}

}  // namespace
