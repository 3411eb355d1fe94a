// One FFT library through the FFTW3 API, timed the way the core uses it (bench/compare_fft.py
// compiles this once per candidate library and runs it).
//
// Cases: 2-D complex-to-complex, forward then backward, in place, one frame after the other
// (new-array execute, as the ptychography engines call it per pattern) over a batch; and a real
// 1080 x 1080 forward/backward pair (the padded Paganin frame of the paper's TXTM detector).
// One thread. Prints one JSON object per line: the library's fftwf_version (FFTW lists its SIMD
// code paths there), then per case: rigor, median seconds, round-trip error.
#include <fftw3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> t) {
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

void c2c(int n, int batch, unsigned flag, const char* rigor, int reps) {
    const std::size_t frame = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
    const std::size_t total = frame * static_cast<std::size_t>(batch);
    fftwf_complex* a = fftwf_alloc_complex(total);
    fftwf_plan fwd = fftwf_plan_dft_2d(n, n, a, a, FFTW_FORWARD, flag);
    fftwf_plan bwd = fftwf_plan_dft_2d(n, n, a, a, FFTW_BACKWARD, flag);
    std::vector<float> ref(2 * total);
    for (std::size_t i = 0; i < total; ++i) {
        ref[2 * i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
        ref[2 * i + 1] = static_cast<float>(std::cos(0.11 * static_cast<double>(i)));
    }
    std::memcpy(a, ref.data(), sizeof(float) * 2 * total);
    std::vector<double> t;
    const float scale = 1.0f / static_cast<float>(frame);
    for (int rep = 0; rep < reps; ++rep) {
        const double t0 = now();
        for (int k = 0; k < batch; ++k) {
            fftwf_execute_dft(fwd, a + k * frame, a + k * frame);
            fftwf_execute_dft(bwd, a + k * frame, a + k * frame);
        }
        t.push_back(now() - t0);
        for (std::size_t i = 0; i < total; ++i) {
            a[i][0] *= scale;
            a[i][1] *= scale;
        }
    }
    double err = 0.0;
    for (std::size_t i = 0; i < total; ++i) {
        err = std::max(err, static_cast<double>(std::fabs(a[i][0] - ref[2 * i])));
        err = std::max(err, static_cast<double>(std::fabs(a[i][1] - ref[2 * i + 1])));
    }
    std::printf("{\"case\": \"c2c %dx%d x %d\", \"rigor\": \"%s\", \"seconds\": %.6g, \"error\": %.3g}\n", n, n,
                batch, rigor, median(t), err);
    std::fflush(stdout);
    fftwf_destroy_plan(fwd);
    fftwf_destroy_plan(bwd);
    fftwf_free(a);
}

void r2c(int n, int batch, unsigned flag, const char* rigor, int reps) {
    const std::size_t total = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
    float* r = fftwf_alloc_real(total);
    fftwf_complex* s = fftwf_alloc_complex(static_cast<std::size_t>(n) * static_cast<std::size_t>(n / 2 + 1));
    fftwf_plan fwd = fftwf_plan_dft_r2c_2d(n, n, r, s, flag);
    fftwf_plan bwd = fftwf_plan_dft_c2r_2d(n, n, s, r, flag);
    std::vector<float> ref(total);
    for (std::size_t i = 0; i < total; ++i) {
        ref[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
    }
    std::memcpy(r, ref.data(), sizeof(float) * total);
    std::vector<double> t;
    const float scale = 1.0f / static_cast<float>(total);
    for (int rep = 0; rep < reps; ++rep) {
        const double t0 = now();
        for (int k = 0; k < batch; ++k) {
            fftwf_execute_dft_r2c(fwd, r, s);
            fftwf_execute_dft_c2r(bwd, s, r);
            for (std::size_t i = 0; i < total; ++i) {
                r[i] *= scale;
            }
        }
        t.push_back(now() - t0);
    }
    double err = 0.0;
    for (std::size_t i = 0; i < total; ++i) {
        err = std::max(err, static_cast<double>(std::fabs(r[i] - ref[i])));
    }
    std::printf("{\"case\": \"r2c+c2r %dx%d x %d\", \"rigor\": \"%s\", \"seconds\": %.6g, \"error\": %.3g}\n", n,
                n, batch, rigor, median(t), err);
    std::fflush(stdout);
    fftwf_destroy_plan(fwd);
    fftwf_destroy_plan(bwd);
    fftwf_free(r);
    fftwf_free(s);
}

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 9;
    std::printf("{\"version\": \"%s\"}\n", fftwf_version);
    const struct {
        unsigned flag;
        const char* name;
    } rigors[] = {{FFTW_ESTIMATE, "estimate"}, {FFTW_MEASURE, "measure"}};
    for (const auto& rg : rigors) {
        c2c(64, 1088, rg.flag, rg.name, reps);
        c2c(128, 419, rg.flag, rg.name, reps);
        c2c(400, 64, rg.flag, rg.name, reps);
        r2c(1080, 8, rg.flag, rg.name, std::max(3, reps / 2));
    }
    return 0;
}
