// Uses only the installed public headers and tomofuse::core (no FFTW headers,
// no FFTW library): batched 2-D FFTs checked against a naive double-precision
// DFT.
#include <tomofuse/errors.hpp>
#include <tomofuse/fft.hpp>
#include <tomofuse/parallel.hpp>
#include <tomofuse/version.hpp>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using cf = std::complex<float>;
using cd = std::complex<double>;
using tomofuse::fft::Direction;
using tomofuse::fft::Norm;

constexpr double kPi = 3.14159265358979323846;

// O((ny*nx)^2) DFT of one frame; sign -1 forward, +1 backward; no scaling.
std::vector<cd> naive_dft(const cf* x, std::size_t ny, std::size_t nx, int sign) {
    std::vector<cd> y(ny * nx);
    for (std::size_t ky = 0; ky < ny; ++ky) {
        for (std::size_t kx = 0; kx < nx; ++kx) {
            cd acc = 0.0;
            for (std::size_t iy = 0; iy < ny; ++iy) {
                for (std::size_t ix = 0; ix < nx; ++ix) {
                    const double phase =
                        sign * 2.0 * kPi *
                        (static_cast<double>((ky * iy) % ny) / static_cast<double>(ny) +
                         static_cast<double>((kx * ix) % nx) / static_cast<double>(nx));
                    acc += cd(x[iy * nx + ix]) * std::polar(1.0, phase);
                }
            }
            y[ky * nx + kx] = acc;
        }
    }
    return y;
}

// max |got - want| / max |want| over a batch.
double rel_error(const cf* got, const std::vector<cf>& in, std::size_t batch, std::size_t ny,
                 std::size_t nx, int sign, double scale) {
    double max_diff = 0.0;
    double max_ref = 0.0;
    const std::size_t n = ny * nx;
    for (std::size_t b = 0; b < batch; ++b) {
        const std::vector<cd> ref = naive_dft(in.data() + b * n, ny, nx, sign);
        for (std::size_t i = 0; i < n; ++i) {
            max_diff = std::max(max_diff, std::abs(cd(got[b * n + i]) - ref[i] * scale));
            max_ref = std::max(max_ref, std::abs(ref[i] * scale));
        }
    }
    return max_diff / max_ref;
}

std::vector<cf> random_frames(std::size_t count, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<cf> v(count);
    for (cf& z : v) {
        z = cf(normal(rng), normal(rng));
    }
    return v;
}

}  // namespace

int main() {
    constexpr double kTolerance = 1e-4;
    std::mt19937 rng(20240611);
    double worst = 0.0;
    int failures = 0;
    auto check = [&](const char* what, double err) {
        worst = std::max(worst, err);
        if (!(err < kTolerance)) {
            std::printf("FAIL %s: relative error %.3g >= %.1g\n", what, err, kTolerance);
            ++failures;
        }
    };

    if (std::strcmp(tomofuse::library_version(), tomofuse::header_version) != 0) {
        std::printf("FAIL header version %s != library version %s\n", tomofuse::header_version,
                    tomofuse::library_version());
        ++failures;
    }

    struct Case {
        std::size_t batch, ny, nx;
    };
    for (const Case c : {Case{3, 12, 10}, Case{2, 7, 5}, Case{1, 1, 13}}) {
        const std::size_t n = c.ny * c.nx;
        const std::vector<cf> in = random_frames(c.batch * n, rng);
        const tomofuse::fft::Plan2D plan(c.ny, c.nx);

        // Out of place, forward and backward, numpy "backward" normalization.
        std::vector<cf> out(in.size());
        plan.execute(in.data(), out.data(), c.batch, Direction::Forward, Norm::Backward, 2);
        check("forward", rel_error(out.data(), in, c.batch, c.ny, c.nx, -1, 1.0));
        plan.execute(in.data(), out.data(), c.batch, Direction::Backward, Norm::Backward, 1);
        check("backward", rel_error(out.data(), in, c.batch, c.ny, c.nx, +1,
                                    1.0 / static_cast<double>(n)));

        // In place, ortho, through the free function.
        std::vector<cf> work = in;
        tomofuse::fft::fft2(work.data(), work.data(), c.batch, c.ny, c.nx, Norm::Ortho, 0);
        check("fft2 in place ortho", rel_error(work.data(), in, c.batch, c.ny, c.nx, -1,
                                               1.0 / std::sqrt(static_cast<double>(n))));

        // Misaligned buffers (offset by one element) take the scratch path.
        std::vector<cf> shifted(in.size() + 1);
        std::copy(in.begin(), in.end(), shifted.begin() + 1);
        std::vector<cf> shifted_out(in.size() + 1);
        tomofuse::fft::ifft2(shifted.data() + 1, shifted_out.data() + 1, c.batch, c.ny, c.nx,
                             Norm::Forward, 2);
        check("ifft2 misaligned", rel_error(shifted_out.data() + 1, in, c.batch, c.ny, c.nx, +1,
                                            1.0));
    }

    // Errors cross the library boundary as typed exceptions.
    bool caught_shape = false;
    try {
        tomofuse::fft::Plan2D bad(0, 4);
    } catch (const tomofuse::ShapeError&) {
        caught_shape = true;
    }
    bool caught_invalid = false;
    try {
        tomofuse::set_default_threads(-1);
    } catch (const std::invalid_argument&) {
        caught_invalid = true;
    }
    if (!caught_shape || !caught_invalid) {
        std::printf("FAIL typed exceptions were not thrown/caught\n");
        ++failures;
    }

    if (failures != 0) {
        std::printf("FAILED %d check(s), max_err=%.3g\n", failures, worst);
        return 1;
    }
    std::printf("OK max_err=%.3g (tomofuse %s, default_threads=%d, openmp=%d)\n", worst,
                tomofuse::library_version(), tomofuse::default_threads(),
                tomofuse::openmp_enabled() ? 1 : 0);
    return 0;
}
