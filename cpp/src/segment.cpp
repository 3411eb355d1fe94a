// Segmentation kernels (see tomofuse/segment.hpp).
#include "tomofuse/segment.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "aligned.hpp"
#include "isa.hpp"
#include "omp.hpp"
#include "tomofuse/errors.hpp"
#include "tomofuse/parallel.hpp"

namespace tomofuse::segment {

namespace {

// Uninitialized storage for a work volume of n voxels (huge-page backed where the OS can:
// detail::try_alloc_volume); Error naming `what` when it cannot be allocated.
template <typename T>
detail::AlignedArray<T> work_volume(std::size_t n, const char* what) {
    detail::AlignedArray<T> p = detail::try_alloc_volume<T>(n);
    if (!p) {
        throw Error(std::string(what) + ": out of memory for a " + (sizeof(T) == 8 ? "double" : "float") +
                    " work volume of " + std::to_string(n) + " voxels");
    }
    return p;
}

// A banded n x n matrix: row j holds the entries of columns j - half ... j + half.
struct Band {
    std::size_t n = 0;
    int half = 0;
    std::vector<double> w;  // n * (2 half + 1)
    // rows [inner_lo, inner_hi): all inside the matrix (j - half >= 0, j + half < n) and holding
    // the same entries bit for bit (set by find_inner; empty when there are none)
    std::ptrdiff_t inner_lo = 0, inner_hi = 0;

    double at(std::size_t row, std::ptrdiff_t col) const {
        const std::ptrdiff_t t = col - static_cast<std::ptrdiff_t>(row) + half;
        if (t < 0 || t > 2 * half) {
            return 0.0;
        }
        return w[row * static_cast<std::size_t>(2 * half + 1) + static_cast<std::size_t>(t)];
    }
    // The stored entries of `row` from column `col` on (col within the band: row - half <= col <= row + half).
    const double* from(std::size_t row, std::size_t col) const {
        return w.data() + (row * static_cast<std::size_t>(2 * half + 1) + static_cast<std::size_t>(half) + col - row);
    }
};

// H: the sampled, normalized Gaussian of `sigma` voxels with edge-replicated
// boundaries (entries beyond the ends fold onto the end samples).
Band gaussian_band(std::size_t n, double sigma) {
    Band b;
    b.n = n;
    b.half = kernel_radius(sigma);
    const int r = b.half;
    const std::size_t width = static_cast<std::size_t>(2 * r + 1);
    b.w.assign(n * width, 0.0);
    std::vector<double> k(width, 0.0);
    if (r == 0) {
        k[0] = 1.0;
    } else {
        double s = 0.0;
        for (int t = -r; t <= r; ++t) {
            k[static_cast<std::size_t>(t + r)] = std::exp(-0.5 * (t / sigma) * (t / sigma));
            s += k[static_cast<std::size_t>(t + r)];
        }
        for (double& v : k) {
            v /= s;
        }
    }
    const auto last = static_cast<std::ptrdiff_t>(n) - 1;
    for (std::size_t j = 0; j < n; ++j) {
        for (int t = -r; t <= r; ++t) {
            const std::ptrdiff_t col = std::clamp<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(j) + t, 0, last);
            const std::ptrdiff_t slot = col - static_cast<std::ptrdiff_t>(j) + r;
            if (slot >= 0 && slot <= 2 * r) {
                b.w[j * width + static_cast<std::size_t>(slot)] += k[static_cast<std::size_t>(t + r)];
            }
        }
    }
    return b;
}

Band transpose(const Band& h) {
    Band t;
    t.n = h.n;
    t.half = h.half;
    const std::size_t width = static_cast<std::size_t>(2 * h.half + 1);
    t.w.assign(h.n * width, 0.0);
    for (std::size_t j = 0; j < h.n; ++j) {
        for (int s = 0; s <= 2 * h.half; ++s) {
            const std::ptrdiff_t col = static_cast<std::ptrdiff_t>(j) - h.half + s;
            if (col < 0 || col >= static_cast<std::ptrdiff_t>(h.n)) {
                continue;
            }
            const auto c = static_cast<std::size_t>(col);
            // H[j, col] is H^T[col, j]
            const std::ptrdiff_t slot = static_cast<std::ptrdiff_t>(j) - col + h.half;
            t.w[c * width + static_cast<std::size_t>(slot)] = h.w[j * width + static_cast<std::size_t>(s)];
        }
    }
    return t;
}

// The longest run of rows, from row `half` on, that lie inside the matrix and equal row `half` bit
// for bit (a sampled kernel away from the edges): blur_planes applies them as one kernel.
void find_inner(Band& b) {
    const auto n = static_cast<std::ptrdiff_t>(b.n);
    const std::size_t width = static_cast<std::size_t>(2 * b.half + 1);
    b.inner_lo = b.inner_hi = b.half;
    if (n < 2 * static_cast<std::ptrdiff_t>(b.half) + 1) {
        return;
    }
    const double* ref = b.w.data() + static_cast<std::size_t>(b.half) * width;
    std::ptrdiff_t j = b.half;
    while (j + b.half < n && std::memcmp(b.w.data() + static_cast<std::size_t>(j) * width, ref, width * sizeof(double)) == 0) {
        ++j;
    }
    b.inner_hi = j;
}

// G = H^T H (half-width 2 r).
Band gram(const Band& h) {
    Band g;
    g.n = h.n;
    g.half = 2 * h.half;
    const std::size_t width = static_cast<std::size_t>(2 * g.half + 1);
    g.w.assign(h.n * width, 0.0);
    for (std::size_t m = 0; m < h.n; ++m) {
        for (int s = 0; s <= 2 * h.half; ++s) {
            const std::ptrdiff_t i = static_cast<std::ptrdiff_t>(m) - h.half + s;
            if (i < 0 || i >= static_cast<std::ptrdiff_t>(h.n)) {
                continue;
            }
            const double hi = h.at(m, i);
            if (hi == 0.0) {
                continue;
            }
            for (int u = 0; u <= 2 * h.half; ++u) {
                const std::ptrdiff_t j = static_cast<std::ptrdiff_t>(m) - h.half + u;
                if (j < 0 || j >= static_cast<std::ptrdiff_t>(h.n)) {
                    continue;
                }
                const std::ptrdiff_t slot = j - i + g.half;
                g.w[static_cast<std::size_t>(i) * width + static_cast<std::size_t>(slot)] += hi * h.at(m, j);
            }
        }
    }
    return g;
}

struct Operators {
    Band h[3], ht[3], g[3];
};

Operators make_operators(Shape s, const double sigma[3]) {
    Operators op;
    const std::size_t n[3] = {s.nz, s.ny, s.nx};
    for (int a = 0; a < 3; ++a) {
        op.h[a] = gaussian_band(n[a], sigma[a]);
        op.ht[a] = transpose(op.h[a]);
        op.g[a] = gram(op.h[a]);
        find_inner(op.h[a]);
        find_inner(op.ht[a]);
    }
    return op;
}

// ICM's bound of how far a voxel's decision stands (see icm), stored in float: it is stored this share
// below its value, and the most that g's change since can lower it is enlarged by this share (both
// 2^-20, above float's 2^-24 rounding and double's rounding of the test).
constexpr double kSlackSafety = 1.0 + 0x1p-20;
constexpr double kSlackErosion = 0x1p-20;

// A stride of ICM's g of at least `n` doubles: whole 64-byte lines, an odd number of them.
std::size_t g_stride(std::size_t n) {
    const std::size_t lines = (n + 7) / 8;
    return 8 * (lines % 2 == 1 ? lines : lines + 1);
}

// Rows of bounds an ICM visit's scan asks for ahead of itself.
constexpr std::size_t kPrefetchRows = 6;

// A move's update of g over its box (icm): row (a, b) of the box, at g + a plane + b row, less
// (dm gz[a] gy[b]) gx -- one call per move, the rows' loops inlined in each clone. (Compiled without
// contraction: every clone gives the same bits.)
TOMOFUSE_ISA_CLONES
void move_box(double* g, std::size_t plane, std::size_t row, std::size_t nz, std::size_t ny, std::size_t len,
              double dm, const double* gz, const double* gy, const double* __restrict gx) {
    for (std::size_t a = 0; a < nz; ++a) {
        const double wz = dm * gz[a];
        for (std::size_t b = 0; b < ny; ++b) {
            const double wzy = wz * gy[b];
            double* __restrict r = g + a * plane + b * row;
            for (std::size_t j = 0; j < len; ++j) {
                r[j] -= wzy * gx[j];
            }
        }
    }
}

// Rows [lo, hi) of a band whose rows there are one kernel `k` (Band::inner_lo/hi) applied to one
// row of values: dst[j] = sum over t of k[t] * src[j - half + t], in increasing t -- the order and
// the terms of the row-by-row sum, so the same bits, but across j at once (vectorized).
TOMOFUSE_ISA_CLONES
void kernel_run(double* __restrict dst, const double* __restrict src, const double* __restrict k, int half,
                std::ptrdiff_t lo, std::ptrdiff_t hi) {
    for (std::ptrdiff_t j = lo; j < hi; ++j) dst[j] = 0.0;
    for (int t = 0; t <= 2 * half; ++t) {
        const double kt = k[t];
        const double* s = src + (t - half);
        for (std::ptrdiff_t j = lo; j < hi; ++j) dst[j] += kt * s[j];
    }
}

// Row j of band b applied across n rows of `count` contiguous values (row c at src + c * stride):
// dst[q] = sum over the band of w(j, c) * src_c[q], in increasing c.
inline void band_row(const Band& b, std::ptrdiff_t j, std::ptrdiff_t n, const double* src, std::size_t stride,
                     std::size_t count, double* dst) {
    const double* w = b.w.data() + static_cast<std::size_t>(j) * static_cast<std::size_t>(2 * b.half + 1);
    const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, j - b.half);
    const std::ptrdiff_t hi = std::min<std::ptrdiff_t>(n - 1, j + b.half);
    for (std::size_t q = 0; q < count; ++q) dst[q] = 0.0;
    for (std::ptrdiff_t c = lo; c <= hi; ++c) {
        const double wc = w[c - j + b.half];
        const double* row = src + static_cast<std::size_t>(c) * stride;
        for (std::size_t q = 0; q < count; ++q) dst[q] += wc * row[q];
    }
}

// Values of a plane per task of blur_planes' z pass: the band's source rows of a task (up to
// 2 half + 1 of them) stay in cache while it runs down the volume.
constexpr std::size_t kZBlock = 512;

// (Bz x By x Bx) of a volume given row by row, handed on plane by plane: the band along x, then
// along y, then along z, each output value summed over the band in increasing order (the order of
// the sums is fixed: the same values at any thread count). The x and y passes of a plane run while
// it is in cache, with one double volume between them and the z pass.
//
// load(z, y, row) writes the nx input values of row (z, y) as doubles; store(z, q0, count, values)
// receives the results q0 ... q0 + count - 1 of plane z (the z pass runs down the volume in
// columns of kZBlock values of a plane: every plane of `work` is read once instead of once per
// output plane and band entry). `work` (n doubles) holds the x-y filtered planes; it may be
// the memory `load` reads (a plane is read completely before its filtered values are written).
// Planes run on threads; the result is identical for any thread count. Exceptions of load and
// store are not allowed (they run inside OpenMP regions); only the buffers' allocation may throw.
template <typename Load, typename Store>
void blur_planes(Load&& load, Store&& store, double* work, Shape s, const Band* bands, int threads) {
    const std::size_t nx = s.nx, ny = s.ny, plane = s.ny * s.nx;
    const Band& bx = bands[2];
    const Band& by = bands[1];
    const Band& bz = bands[0];
    const auto snx = static_cast<std::ptrdiff_t>(nx), sny = static_cast<std::ptrdiff_t>(ny);
    const auto snz = static_cast<std::ptrdiff_t>(s.nz);
    const std::size_t wx = static_cast<std::size_t>(2 * bx.half + 1);
    detail::RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<double> row, xp;
        errors.run([&] {
            row.resize(nx);
            xp.resize(plane);
        });
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t z = 0; z < snz; ++z) {
            errors.run([&] {
                const auto zi = static_cast<std::size_t>(z);
                for (std::size_t y = 0; y < ny; ++y) {  // along x
                    load(zi, y, row.data());
                    double* dst = xp.data() + y * nx;
                    if (bx.inner_hi > bx.inner_lo) {
                        kernel_run(dst, row.data(), bx.w.data() + static_cast<std::size_t>(bx.inner_lo) * wx, bx.half,
                                   bx.inner_lo, bx.inner_hi);
                    }
                    for (std::ptrdiff_t j = 0; j < snx; ++j) {
                        if (j == bx.inner_lo && bx.inner_hi > bx.inner_lo) {
                            j = bx.inner_hi - 1;  // done by kernel_run
                            continue;
                        }
                        const double* w = bx.w.data() + static_cast<std::size_t>(j) * wx;
                        const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(0, j - bx.half);
                        const std::ptrdiff_t hi = std::min<std::ptrdiff_t>(snx - 1, j + bx.half);
                        double acc = 0.0;
                        for (std::ptrdiff_t c = lo; c <= hi; ++c) {
                            acc += w[c - j + bx.half] * row[static_cast<std::size_t>(c)];
                        }
                        dst[j] = acc;
                    }
                }
                double* out = work + zi * plane;  // along y
                for (std::ptrdiff_t j = 0; j < sny; ++j) {
                    band_row(by, j, sny, xp.data(), nx, nx, out + static_cast<std::size_t>(j) * nx);
                }
            });
        }
        // (the implicit barrier: every plane of work is written before the z pass reads it)
        const auto n_blocks = static_cast<std::ptrdiff_t>((plane + kZBlock - 1) / kZBlock);
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t blk = 0; blk < n_blocks; ++blk) {  // along z
            errors.run([&] {
                const std::size_t q0 = static_cast<std::size_t>(blk) * kZBlock;
                const std::size_t count = std::min(kZBlock, plane - q0);
                for (std::ptrdiff_t j = 0; j < snz; ++j) {
                    band_row(bz, j, snz, work + q0, plane, count, xp.data());
                    store(static_cast<std::size_t>(j), q0, count, static_cast<const double*>(xp.data()));
                }
            });
        }
    }
    errors.rethrow();
}

void check_sigma(const double sigma[3]) {
    if (sigma == nullptr) {
        throw InvalidArgument("sigma must not be null");
    }
    for (int a = 0; a < 3; ++a) {
        if (!(sigma[a] >= 0) || !std::isfinite(sigma[a]) || sigma[a] > 1e4) {
            throw InvalidArgument("sigma must be finite, >= 0 and <= 1e4 voxels, got " + std::to_string(sigma[a]));
        }
    }
}

struct Model {
    Shape s;
    const float* data;
    const float* levels;
    int n_labels;
    const std::uint8_t* pairs;
    int n_pairs;
    const float* unary;
    double w;
    double beta;
};

void check_model(const Model& m, const std::uint8_t* labels, int threads) {
    if (m.s.size() == 0) {
        return;
    }
    if (m.data == nullptr || labels == nullptr || m.levels == nullptr) {
        throw InvalidArgument("data, labels and levels must not be null");
    }
    if (m.n_labels < 1 || m.n_labels > 8) {
        throw InvalidArgument("n_labels must be in [1, 8], got " + std::to_string(m.n_labels));
    }
    for (int k = 0; k < m.n_labels; ++k) {
        if (!std::isfinite(m.levels[k])) {
            throw InvalidArgument("levels must be finite");
        }
    }
    if (m.n_pairs < 0 || (m.n_pairs > 0 && (m.pairs == nullptr || m.unary == nullptr))) {
        throw InvalidArgument("pairs and unary must be given for n_pairs > 0");
    }
    for (int p = 0; p < m.n_pairs; ++p) {
        const int a = m.pairs[2 * p], b = m.pairs[2 * p + 1];
        if (a >= m.n_labels || b >= m.n_labels || a == b) {
            throw InvalidArgument("pairs must hold two different labels < n_labels");
        }
    }
    if (!(m.w > 0) || !std::isfinite(m.w)) {
        throw InvalidArgument("data_weight must be > 0 and finite");
    }
    if (!(m.beta >= 0) || !std::isfinite(m.beta)) {
        throw InvalidArgument("smoothness must be >= 0 and finite");
    }
    // passes over the volume in blocks on the threads, the flags OR-ed (no exception inside the parallel
    // region); a float is not finite when its exponent bits are all set
    const std::size_t n = m.s.size();
    auto any_of = [threads](std::size_t len, auto&& bad_at) {
        constexpr std::size_t kBlock = 1 << 16;
        const auto blocks = static_cast<std::ptrdiff_t>((len + kBlock - 1) / kBlock);
        unsigned any = 0;
        TOMOFUSE_OMP(parallel for schedule(static) reduction(| : any) num_threads(threads))
        for (std::ptrdiff_t b = 0; b < blocks; ++b) {
            const std::size_t lo = static_cast<std::size_t>(b) * kBlock, hi = std::min(len, lo + kBlock);
            unsigned acc = 0;
            for (std::size_t i = lo; i < hi; ++i) acc |= bad_at(i);
            any |= acc;
        }
        return any != 0;
    };
    auto nonfinite = [](const float* v, std::size_t i) {
        std::uint32_t bits;
        std::memcpy(&bits, v + i, sizeof bits);
        return static_cast<unsigned>((bits & 0x7f800000u) == 0x7f800000u);
    };
    const unsigned n_labels = static_cast<unsigned>(m.n_labels);
    const bool bad_label = any_of(n, [&](std::size_t i) { return static_cast<unsigned>(labels[i] >= n_labels); });
    const bool bad_data = any_of(n, [&](std::size_t i) { return nonfinite(m.data, i); });
    const bool bad_unary =
        any_of(n * static_cast<std::size_t>(m.n_pairs), [&](std::size_t i) { return nonfinite(m.unary, i); });
    if (bad_label) {
        throw InvalidArgument("labels must be < n_labels = " + std::to_string(m.n_labels));
    }
    if (bad_data) {
        throw InvalidArgument("data must be finite");
    }
    if (bad_unary) {
        throw InvalidArgument("unary must be finite");
    }
}

// residual r = data - H m[L] (double); `work` is scratch
void residual(const Model& m, const std::uint8_t* labels, const Operators& op, double* r, double* work,
              int threads) {
    const std::size_t nx = m.s.nx, plane = m.s.ny * m.s.nx;
    blur_planes(
        [&](std::size_t z, std::size_t y, double* row) {
            const std::uint8_t* l = labels + z * plane + y * nx;
            for (std::size_t x = 0; x < nx; ++x) row[x] = m.levels[l[x]];
        },
        [&](std::size_t z, std::size_t q0, std::size_t count, const double* hm) {
            const float* d = m.data + z * plane + q0;
            double* rz = r + z * plane + q0;
            for (std::size_t q = 0; q < count; ++q) rz[q] = static_cast<double>(d[q]) - hm[q];
        },
        work, m.s, op.h, threads);
}

// Every label's unary at voxel i (u[0 .. 7]; 0 for a label in no pair): pair p = (a, b) with value d
// costs max(d, 0) for b and max(-d, 0) for a, summed over the pairs in their order.
inline void unaries(const Model& m, std::size_t i, std::size_t n, double u[8]) {
    for (int k = 0; k < 8; ++k) u[k] = 0.0;
    for (int p = 0; p < m.n_pairs; ++p) {
        const double v = m.unary[static_cast<std::size_t>(p) * n + i];
        u[m.pairs[2 * p + 1]] += v > 0 ? v : 0.0;
        u[m.pairs[2 * p]] += v < 0 ? -v : 0.0;
    }
}

double energy_of(const Model& m, const std::uint8_t* labels, const double* r, int threads) {
    const Shape s = m.s;
    const std::size_t n = s.size();
    double data = 0.0, unlike = 0.0, un = 0.0;
    // ordered per-z partial sums: the same total for any thread count
    std::vector<double> part(s.nz * 3, 0.0);
    TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads))
    for (std::ptrdiff_t z = 0; z < static_cast<std::ptrdiff_t>(s.nz); ++z) {
        double a = 0.0, b = 0.0, c = 0.0;
        const std::size_t zz = static_cast<std::size_t>(z);
        for (std::size_t y = 0; y < s.ny; ++y) {
            for (std::size_t x = 0; x < s.nx; ++x) {
                const std::size_t i = (zz * s.ny + y) * s.nx + x;
                a += r[i] * r[i];
                const int l = labels[i];
                if (x + 1 < s.nx) b += labels[i + 1] != l;
                if (y + 1 < s.ny) b += labels[i + s.nx] != l;
                if (zz + 1 < s.nz) b += labels[i + s.ny * s.nx] != l;
                if (m.n_pairs > 0) {
                    double u[8];
                    unaries(m, i, n, u);
                    c += u[l];
                }
            }
        }
        part[zz * 3] = a;
        part[zz * 3 + 1] = b;
        part[zz * 3 + 2] = c;
    }
    for (std::size_t z = 0; z < s.nz; ++z) {
        data += part[z * 3];
        unlike += part[z * 3 + 1];
        un += part[z * 3 + 2];
    }
    return m.w * data + m.beta * unlike + un;
}

}  // namespace

int kernel_radius(double sigma) {
    if (!(sigma > 0)) {
        return 0;
    }
    return static_cast<int>(std::ceil(3.5 * sigma));
}

void gaussian_blur(const float* in, float* out, Shape shape, const double sigma[3], bool adjoint, int nthreads) {
    check_sigma(sigma);
    const int threads = resolve_threads(nthreads);
    const std::size_t n = shape.size();
    if (n == 0) {
        return;
    }
    if (in == nullptr || out == nullptr) {
        throw InvalidArgument("in and out must not be null");
    }
    // not zero-filled: the x-y pass writes it, plane by plane on the threads
    const auto work = work_volume<double>(n, "gaussian_blur");
    const Operators op = make_operators(shape, sigma);
    // `in` may be `out`: a plane of `in` is read before the z pass writes any plane of `out`
    const std::size_t nx = shape.nx, plane = shape.ny * shape.nx;
    blur_planes(
        [&](std::size_t z, std::size_t y, double* row) {
            const float* src = in + z * plane + y * nx;
            for (std::size_t x = 0; x < nx; ++x) row[x] = src[x];
        },
        [&](std::size_t z, std::size_t q0, std::size_t count, const double* b) {
            float* dst = out + z * plane + q0;
            for (std::size_t q = 0; q < count; ++q) dst[q] = static_cast<float>(b[q]);
        },
        work.get(), shape, adjoint ? op.ht : op.h, threads);
}

namespace {

// One axis of upsample_linear: for every fine index i, the two coarse indices and the weight of the
// second (float32, exactly as NumPy computes them from the same integers).
struct AxisTaps {
    std::vector<std::size_t> i0, i1;
    std::vector<float> w;
};

AxisTaps axis_taps(std::size_t n_fine, std::size_t m_coarse, int f, std::ptrdiff_t origin) {
    AxisTaps t;
    t.i0.resize(n_fine);
    t.i1.resize(n_fine);
    t.w.resize(n_fine);
    const auto ff = static_cast<std::int64_t>(f);
    const auto m = static_cast<std::int64_t>(m_coarse);
    for (std::size_t i = 0; i < n_fine; ++i) {
        // c = num / (2 f) with an integer num
        const std::int64_t num = 2 * (static_cast<std::int64_t>(i) + origin % ff) + 1 - ff;
        std::int64_t i0 = num >= 0 ? num / (2 * ff) : -((-num + 2 * ff - 1) / (2 * ff));  // floor
        double w = static_cast<double>(num - 2 * ff * i0) / (2.0 * static_cast<double>(ff));
        if (num < 0) {
            i0 = 0;
            w = 0.0;
        } else if (num > 2 * ff * (m - 1)) {
            i0 = m - 1;
            w = 0.0;
        }
        t.i0[i] = static_cast<std::size_t>(i0);
        t.i1[i] = static_cast<std::size_t>(std::min(i0 + 1, m - 1));
        t.w[i] = static_cast<float>(w);
    }
    return t;
}

}  // namespace

void upsample_linear(const float* in, Shape coarse, float* out, Shape fine, int factor, const std::ptrdiff_t origin[3],
                     int nthreads) {
    const int threads = resolve_threads(nthreads);
    if (in == nullptr || out == nullptr || origin == nullptr) {
        throw InvalidArgument("upsample_linear: in, out and origin must not be null");
    }
    if (coarse.size() == 0 || fine.size() == 0) {
        throw InvalidArgument("upsample_linear: every extent of both shapes must be >= 1");
    }
    if (factor < 1) {
        throw InvalidArgument("upsample_linear: factor must be >= 1, got " + std::to_string(factor));
    }
    for (int a = 0; a < 3; ++a) {
        if (origin[a] < 0) {
            throw InvalidArgument("upsample_linear: origin must be >= 0");
        }
    }
    const AxisTaps tz = axis_taps(fine.nz, coarse.nz, factor, origin[0]);
    const AxisTaps ty = axis_taps(fine.ny, coarse.ny, factor, origin[1]);
    const AxisTaps tx = axis_taps(fine.nx, coarse.nx, factor, origin[2]);
    const std::size_t cplane = coarse.ny * coarse.nx, fplane = fine.ny * fine.nx;
    // per thread: the plane interpolated along z (coarse y, x), then along y (fine y, coarse x)
    const std::size_t scratch = cplane + fine.ny * coarse.nx;
    detail::RegionErrors errors;
    TOMOFUSE_OMP(parallel num_threads(threads))
    {
        std::vector<float> work;
        errors.run([&] { work.resize(scratch); });
        TOMOFUSE_OMP(for schedule(static))
        for (std::ptrdiff_t z = 0; z < static_cast<std::ptrdiff_t>(fine.nz); ++z) {
            errors.run([&] {
                float* a = work.data();
                float* b = a + cplane;
                const auto zi = static_cast<std::size_t>(z);
                const float wz = tz.w[zi], vz = 1.0f - wz;
                const float* p0 = in + tz.i0[zi] * cplane;
                const float* p1 = in + tz.i1[zi] * cplane;
                for (std::size_t q = 0; q < cplane; ++q) {
                    const float lo = p0[q] * vz;
                    const float hi = p1[q] * wz;
                    a[q] = lo + hi;
                }
                for (std::size_t y = 0; y < fine.ny; ++y) {
                    const float wy = ty.w[y], vy = 1.0f - wy;
                    const float* r0 = a + ty.i0[y] * coarse.nx;
                    const float* r1 = a + ty.i1[y] * coarse.nx;
                    float* dst = b + y * coarse.nx;
                    for (std::size_t x = 0; x < coarse.nx; ++x) {
                        const float lo = r0[x] * vy;
                        const float hi = r1[x] * wy;
                        dst[x] = lo + hi;
                    }
                }
                float* o = out + zi * fplane;
                for (std::size_t y = 0; y < fine.ny; ++y) {
                    const float* row = b + y * coarse.nx;
                    float* dst = o + y * fine.nx;
                    for (std::size_t x = 0; x < fine.nx; ++x) {
                        const float lo = row[tx.i0[x]] * (1.0f - tx.w[x]);
                        const float hi = row[tx.i1[x]] * tx.w[x];
                        dst[x] = lo + hi;
                    }
                }
            });
        }
    }
    errors.rethrow();
}

double icm_energy(const float* data, const std::uint8_t* labels, Shape shape, const float* levels, int n_labels,
                  const double sigma[3], const std::uint8_t* pairs, int n_pairs, const float* unary,
                  const IcmOptions& options, int nthreads) {
    check_sigma(sigma);
    const int threads = resolve_threads(nthreads);
    const Model m{shape, data, levels, n_labels, pairs, n_pairs, unary, options.data_weight, options.smoothness};
    check_model(m, labels, threads);
    const std::size_t n = shape.size();
    if (n == 0) {
        return 0.0;
    }
    // written in full by residual()
    const auto r = work_volume<double>(n, "icm_energy"), work = work_volume<double>(n, "icm_energy");
    const Operators op = make_operators(shape, sigma);
    residual(m, labels, op, r.get(), work.get(), threads);
    return energy_of(m, labels, r.get(), threads);
}

IcmReport icm(const float* data, std::uint8_t* labels, Shape shape, const float* levels, int n_labels,
              const double sigma[3], const std::uint8_t* allowed, const std::uint8_t* pairs, int n_pairs,
              const float* unary, const IcmOptions& options, int nthreads) {
    check_sigma(sigma);
    const int threads = resolve_threads(nthreads);
    const Model m{shape, data, levels, n_labels, pairs, n_pairs, unary, options.data_weight, options.smoothness};
    check_model(m, labels, threads);
    if (options.max_sweeps < 0) {
        throw InvalidArgument("max_sweeps must be >= 0");
    }
    if (options.cell < 0) {
        throw InvalidArgument("cell must be >= 0");
    }
    for (int a = 0; a < 3; ++a) {
        if (options.origin[a] < 0) {
            throw InvalidArgument("origin must be >= 0");
        }
    }
    IcmReport report;
    const std::size_t n = shape.size();
    if (n == 0) {
        return report;
    }
    // Two double volumes: g is residual()'s scratch before it is computed from r, and r the scratch
    // of g = H^T r. The sweeps need only g: r is freed before them and two float volumes, `slack`
    // and `g_then`, allocated in its place (the peak is two doubles per voxel).
    // `slack`: when a voxel was last evaluated and kept its label, its lowest energy change to another
    // label (less its rounding; negative: evaluate it), and `g_then` its g at that time. Moves since
    // changed each of its energy changes by at most 2 w D |g - g_then| (D the largest difference of
    // two levels; nothing else in them changes but the 6-neighbors' labels, and a move sets the
    // bound of its voxel and of those negative): it is evaluated again only when the bound less
    // that is negative. A voxel not evaluated would have found no move: the labels are those of
    // evaluating every voxel at every visit, as tomofuse/segment.hpp describes. (Moves update g
    // alone; the bounds are read where they are needed.)
    // Not initialized: their first writes, plane by plane on the threads (residual(), the fill below),
    // fault the pages in on those threads (a std::vector's zero fill would do it on one).
    // g is kept with padded rows and planes: a move updates a box of (2 hz + 1)(2 hy + 1) rows of it,
    // and with a power-of-two row or plane length (512^3) those rows fall into the same few sets of
    // the caches, which then miss on every row. Each stride is an odd number of 64-byte lines.
    const std::size_t g_row = g_stride(shape.nx), g_plane = g_stride(shape.ny * g_row);
    auto gi = [g_row, g_plane](std::size_t z, std::size_t y, std::size_t x) { return z * g_plane + y * g_row + x; };
    auto r_volume = work_volume<double>(n, "icm");
    const auto g_volume = work_volume<double>(shape.nz * g_plane, "icm");  // (g_plane >= ny nx)
    double* const r = r_volume.get();
    double* const g = g_volume.get();
    const Operators op = make_operators(shape, sigma);
    const int hz = op.g[0].half, hy = op.g[1].half, hx = op.g[2].half;
    // Cells on the lattice of the whole volume (the region starts at `origin` in it): an edge of
    // at least 2 max(h, 1) + 1 along each axis (h = 2 r, the Gram matrix's half-width; a move also
    // marks its 6-neighbors' bounds) keeps the voxels of g and of the bounds that two cells of one
    // color change apart, and their decisions independent.
    const int hs[3] = {hz, hy, hx};
    std::ptrdiff_t cell[3];
    for (int a = 0; a < 3; ++a) {
        const int need = 2 * std::max(hs[a], 1) + 1;
        if (options.cell > 0 && options.cell < need) {
            throw InvalidArgument("cell must be >= 2 max(2 r, 1) + 1 = " + std::to_string(need) +
                                  " for this sigma along every axis, got " + std::to_string(options.cell));
        }
        cell[a] = options.cell > 0 ? options.cell : std::max(need, 8);
    }
    const std::size_t n_dim[3] = {shape.nz, shape.ny, shape.nx};
    std::ptrdiff_t c0[3], nc[3];  // per axis: the first whole-volume cell index, the cells touching the region
    for (int a = 0; a < 3; ++a) {
        c0[a] = options.origin[a] / cell[a];
        nc[a] = (options.origin[a] + static_cast<std::ptrdiff_t>(n_dim[a]) - 1) / cell[a] - c0[a] + 1;
    }
    const std::size_t plane = shape.ny * shape.nx;
    const double w = m.w, beta = m.beta;
    const int K = n_labels;

    residual(m, labels, op, r, g, threads);
    report.energy_before = energy_of(m, labels, r, threads);

    // g = H^T r once, then kept exact (to rounding) by the updates of every move, in an order
    // fixed by the cells' lattice: the same in a block and in the whole volume.
    {
        const std::size_t nx = shape.nx;
        // r is scratch afterwards: the x-y filtered planes overwrite it
        blur_planes([&](std::size_t z, std::size_t y, double* row) {
                        const double* src = r + z * plane + y * nx;
                        for (std::size_t x = 0; x < nx; ++x) row[x] = src[x];
                    },
                    [&](std::size_t z, std::size_t q0, std::size_t count, const double* v) {
                        for (std::size_t q = q0; q < q0 + count;) {  // (the values of rows of g)
                            const std::size_t run = std::min(q0 + count - q, nx - q % nx);
                            std::copy_n(v + (q - q0), run, g + gi(z, q / nx, q % nx));
                            q += run;
                        }
                    },
                    r, shape, op.ht, threads);
    }
    r_volume.reset();
    const auto slack_volume = work_volume<float>(n, "icm");
    const auto g_then_volume = work_volume<float>(n, "icm");  // read only where slack >= 0 (written with it)
    float* const slack = slack_volume.get();
    float* const g_then = g_then_volume.get();
    {
        const std::size_t plane_size = shape.ny * shape.nx;
        TOMOFUSE_OMP(parallel for schedule(static) num_threads(threads))
        for (std::ptrdiff_t z = 0; z < static_cast<std::ptrdiff_t>(shape.nz); ++z) {
            std::fill_n(slack + static_cast<std::size_t>(z) * plane_size, plane_size, -1.0f);
        }
    }
    // A cell is visited only when a voxel of it wanted to move at the sweep's first look, or a move
    // in it or in one of its 26 neighbors (the reach of a move: g within 2 r, the 6-neighbors'
    // labels) came after its last visit or that look -- otherwise none of its voxels can want to
    // change. Stamps count the looks and the color passes; every look sets every cell's
    // `visited_at` (no move yet: -1, before the first look's stamp 0).
    const std::size_t n_cells_all = static_cast<std::size_t>(nc[0] * nc[1] * nc[2]);
    std::vector<std::int64_t> moved_at(n_cells_all, -1), visited_at(n_cells_all);
    auto cell_index = [&](std::ptrdiff_t kz, std::ptrdiff_t ky, std::ptrdiff_t kx) {
        return static_cast<std::size_t>((kz * nc[1] + ky) * nc[2] + kx);
    };
    auto needs_visit = [&](const std::ptrdiff_t k[3]) {
        const std::int64_t last = visited_at[cell_index(k[0], k[1], k[2])];
        for (std::ptrdiff_t a = std::max<std::ptrdiff_t>(0, k[0] - 1); a <= std::min(nc[0] - 1, k[0] + 1); ++a) {
            for (std::ptrdiff_t b = std::max<std::ptrdiff_t>(0, k[1] - 1); b <= std::min(nc[1] - 1, k[1] + 1); ++b) {
                for (std::ptrdiff_t c = std::max<std::ptrdiff_t>(0, k[2] - 1); c <= std::min(nc[2] - 1, k[2] + 1);
                     ++c) {
                    if (moved_at[cell_index(a, b, c)] >= last) {
                        return true;
                    }
                }
            }
        }
        return false;
    };

    // the Gram matrices' diagonals: a voxel's own weight in its energy change
    std::vector<double> diag[3];
    for (int a = 0; a < 3; ++a) {
        diag[a].resize(n_dim[a]);
        for (std::size_t j = 0; j < n_dim[a]; ++j) diag[a][j] = op.g[a].at(j, static_cast<std::ptrdiff_t>(j));
    }
    // D: the largest difference of two levels
    double level_span = 0.0;
    for (int a = 0; a < K; ++a) {
        for (int b = 0; b < K; ++b) {
            level_span = std::max(level_span, static_cast<double>(levels[a]) - levels[b]);
        }
    }
    double energy_change = 0.0;  // summed in a fixed order: sweeps, colors, cells
    for (int sweep = 0; sweep < options.max_sweeps; ++sweep) {
        bool out_of_memory = false;
        // The best move of voxel i given the current g and labels: (label, energy change).
        // `other`: the lowest energy change to another allowed label (+inf: none), and `scale` a bound of
        // the magnitudes its terms had (for its rounding).
        auto best_move = [&](std::size_t i, std::size_t z, std::size_t y, std::size_t x, double& best_de,
                             double& other, double& scale) {
            const int cur = labels[i];
            const unsigned mask = allowed ? allowed[i] : 0xFFu;
            // the 6-neighbors' labels (255: none, beyond the volume), counted per label without branches
            const unsigned nb[6] = {x > 0 ? labels[i - 1] : 255u, x + 1 < shape.nx ? labels[i + 1] : 255u,
                                    y > 0 ? labels[i - shape.nx] : 255u,
                                    y + 1 < shape.ny ? labels[i + shape.nx] : 255u,
                                    z > 0 ? labels[i - plane] : 255u, z + 1 < shape.nz ? labels[i + plane] : 255u};
            auto same = [&](int k) {
                const auto ku = static_cast<unsigned>(k);
                return static_cast<int>(nb[0] == ku) + static_cast<int>(nb[1] == ku) + static_cast<int>(nb[2] == ku) +
                       static_cast<int>(nb[3] == ku) + static_cast<int>(nb[4] == ku) + static_cast<int>(nb[5] == ku);
            };
            const double self = diag[0][z] * diag[1][y] * diag[2][x];
            const double g_i = g[gi(z, y, x)];
            double u[8];
            unaries(m, i, n, u);
            const double ucur = u[cur];
            const double lcur = levels[cur];
            const int scur = same(cur);
            int best = cur;
            best_de = 0.0;
            other = std::numeric_limits<double>::infinity();
            double uabs = 0.0;
            for (int k = 0; k < K; ++k) {
                const double dm = static_cast<double>(levels[k]) - lcur;
                double de = w * (-2.0 * dm * g_i + dm * dm * self) + beta * (scur - same(k));
                if (m.n_pairs) {
                    de += u[k] - ucur;
                }
                uabs += u[k];
                // k == cur gives de == 0 (never below best_de <= 0)
                const bool ok = ((mask >> k) & 1u) != 0;
                const bool better = de < best_de && ok;
                best_de = better ? de : best_de;
                best = better ? k : best;
                const bool lower = ok && k != cur && de < other;
                other = lower ? de : other;
            }
            scale = w * (2.0 * level_span * std::fabs(g_i) + level_span * level_span * self) + 6.0 * beta + 2.0 * uabs;
            return best;
        };
        // Give voxel i the label `best`: g -= dm * G[:, i] (the residual falls by dm * H[:, i]).
        auto apply_move = [&](std::size_t i, std::size_t z, std::size_t y, std::size_t x, int best) {
            const double dm = static_cast<double>(levels[best]) - levels[labels[i]];
            labels[i] = static_cast<std::uint8_t>(best);
            const std::ptrdiff_t zl = std::max<std::ptrdiff_t>(0, static_cast<std::ptrdiff_t>(z) - hz);
            const std::ptrdiff_t zh =
                std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(shape.nz) - 1, static_cast<std::ptrdiff_t>(z) + hz);
            const std::ptrdiff_t yl = std::max<std::ptrdiff_t>(0, static_cast<std::ptrdiff_t>(y) - hy);
            const std::ptrdiff_t yh =
                std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(shape.ny) - 1, static_cast<std::ptrdiff_t>(y) + hy);
            const std::ptrdiff_t xl = std::max<std::ptrdiff_t>(0, static_cast<std::ptrdiff_t>(x) - hx);
            const std::ptrdiff_t xh =
                std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(shape.nx) - 1, static_cast<std::ptrdiff_t>(x) + hx);
            // G_z, G_y, G_x are symmetric: row z holds G_z[z][zz] = G_z[zz][z], from column zl on; so for y, x
            const auto z0 = static_cast<std::size_t>(zl), y0 = static_cast<std::size_t>(yl),
                       x0 = static_cast<std::size_t>(xl);
            move_box(g + gi(z0, y0, x0), g_plane, g_row, static_cast<std::size_t>(zh - zl + 1),
                     static_cast<std::size_t>(yh - yl + 1), static_cast<std::size_t>(xh - xl + 1), dm,
                     op.g[0].from(z, z0), op.g[1].from(y, y0), op.g[2].from(x, x0));
            // the voxel and its 6-neighbors (their unlike counts change; beyond the box where a sigma is 0)
            slack[i] = -1.0f;
            if (x > 0) slack[i - 1] = -1.0f;
            if (x + 1 < shape.nx) slack[i + 1] = -1.0f;
            if (y > 0) slack[i - shape.nx] = -1.0f;
            if (y + 1 < shape.ny) slack[i + shape.nx] = -1.0f;
            if (z > 0) slack[i - plane] = -1.0f;
            if (z + 1 < shape.nz) slack[i + plane] = -1.0f;
        };
        // Voxel i unless its bound, lowered by the change of g since it was set, still stands (evaluated:
        // counted in `evals`): true if it wants to move (`de` its energy change; its bound stays
        // negative); one that keeps its label gets the bound `other` less its rounding (1e-12 of its
        // terms' size, far above double's) and 2^-20 of itself (float's rounding), and g_then its g.
        // The change of g is taken from the float g_then, enlarged by g_then's rounding (2^-24 of it).
        const double fall_per_g = kSlackSafety * 2.0 * w * level_span;
        auto evaluate = [&](std::size_t i, std::size_t z, std::size_t y, std::size_t x, std::int64_t& evals,
                            double& de) {
            const float si = slack[i];
            if (si >= 0.0f) {
                const double then = g_then[i];
                if (si - fall_per_g * (std::fabs(g[gi(z, y, x)] - then) + 0x1p-23 * std::fabs(then)) >= 0.0) {
                    return false;
                }
            }
            ++evals;
            double other, scale;
            if (best_move(i, z, y, x, de, other, scale) != labels[i]) {
                return true;
            }
            const double b = other - 1e-12 * scale;
            slack[i] = b > 0 ? static_cast<float>(std::min(b * (1.0 - kSlackErosion), 1e30))
                             : -1.0f;  // (no other label allowed: 1e30)
            g_then[i] = static_cast<float>(g[gi(z, y, x)]);
            return false;
        };
        std::int64_t total = 0, n_eval = 0;
        // The sweep's first look, plane by plane in memory order: every voxel whose bound is negative
        // gets its best move from the g and labels of the sweep's start, and a bound if it keeps its
        // label -- what a visit would compute, with later moves lowering the bound as usual (so the
        // labels are the same), but streamed instead of gathered cell by cell. A cell is visited only
        // if a voxel of it still wants to move or a move since then reached it.
        const std::int64_t look = static_cast<std::int64_t>(sweep) * 9;
        {
            // per plane and (y, x) cell: a voxel wants to move (each plane written by its own thread)
            std::vector<std::uint8_t> wants(shape.nz * static_cast<std::size_t>(nc[1] * nc[2]), 0);
            TOMOFUSE_OMP(parallel for schedule(static) reduction(+ : n_eval) num_threads(threads))
            for (std::ptrdiff_t zs = 0; zs < static_cast<std::ptrdiff_t>(shape.nz); ++zs) {
                const auto z = static_cast<std::size_t>(zs);
                std::uint8_t* wz = wants.data() + z * static_cast<std::size_t>(nc[1] * nc[2]);
                for (std::size_t y = 0; y < shape.ny; ++y) {
                    const std::ptrdiff_t ky = (static_cast<std::ptrdiff_t>(y) + options.origin[1]) / cell[1] - c0[1];
                    for (std::size_t x = 0; x < shape.nx; ++x) {
                        double de;
                        if (evaluate((z * shape.ny + y) * shape.nx + x, z, y, x, n_eval, de)) {
                            const std::ptrdiff_t kx =
                                (static_cast<std::ptrdiff_t>(x) + options.origin[2]) / cell[2] - c0[2];
                            wz[ky * nc[2] + kx] = 1;
                        }
                    }
                }
            }
            for (std::ptrdiff_t kz = 0; kz < nc[0]; ++kz) {
                const std::ptrdiff_t start = (c0[0] + kz) * cell[0] - options.origin[0];
                const auto zl = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, start));
                const auto zh = static_cast<std::size_t>(
                    std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(shape.nz), start + cell[0]));
                for (std::ptrdiff_t kyx = 0; kyx < nc[1] * nc[2]; ++kyx) {
                    bool any = false;
                    for (std::size_t z = zl; z < zh && !any; ++z) {
                        any = wants[z * static_cast<std::size_t>(nc[1] * nc[2]) + static_cast<std::size_t>(kyx)] != 0;
                    }
                    // -2: before every move stamp (forces the visit)
                    visited_at[cell_index(kz, 0, 0) + static_cast<std::size_t>(kyx)] = any ? -2 : look;
                }
            }
        }
        for (int color = 0; color < 8; ++color) {
            // the cells of this color: parity of the whole-volume cell index along z, y, x
            std::ptrdiff_t first[3], count[3];
            for (int a = 0; a < 3; ++a) {
                const int bit = (color >> (2 - a)) & 1;
                first[a] = ((c0[a] & 1) == bit) ? 0 : 1;
                count[a] = first[a] < nc[a] ? (nc[a] - first[a] + 1) / 2 : 0;
            }
            const std::ptrdiff_t n_cells = count[0] * count[1] * count[2];
            const std::int64_t stamp = look + 1 + color;
            std::int64_t color_changes = 0;
            // each cell's energy change (summed in cell order below: the same total at any thread count)
            std::vector<double> cell_de(static_cast<std::size_t>(n_cells), 0.0);
            TOMOFUSE_OMP(parallel for schedule(dynamic, 1) reduction(+ : color_changes, n_eval) num_threads(threads))
            for (std::ptrdiff_t c = 0; c < n_cells; ++c) {
                const std::ptrdiff_t k[3] = {first[0] + 2 * (c / (count[1] * count[2])),
                                             first[1] + 2 * ((c / count[2]) % count[1]), first[2] + 2 * (c % count[2])};
                if (!needs_visit(k)) {
                    continue;
                }
                // (cells of one color are never neighbors: each writes its own stamps only)
                visited_at[cell_index(k[0], k[1], k[2])] = stamp;
                std::size_t lo[3], hi[3];
                for (int a = 0; a < 3; ++a) {
                    const std::ptrdiff_t start = (c0[a] + k[a]) * cell[a] - options.origin[a];
                    lo[a] = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, start));
                    hi[a] = static_cast<std::size_t>(
                        std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(n_dim[a]), start + cell[a]));
                }
                // Highest confidence first: the voxels that want to change, most lowering E first
                // (in raster order a blurred edge's misfit is taken by the first voxel visited);
                // ties in raster order.
                std::vector<std::pair<double, std::size_t>> cand;
                // the cell's rows of bounds, of g_then and of g, kPrefetchRows ahead of the scan (rows a
                // plane apart defeat the hardware's prefetch)
                const std::size_t cell_ny = hi[1] - lo[1], cell_rows = (hi[0] - lo[0]) * cell_ny;
                auto prefetch_row = [&](std::size_t row) {
                    if (row < cell_rows) {
                        const std::size_t at =
                            ((lo[0] + row / cell_ny) * shape.ny + lo[1] + row % cell_ny) * shape.nx;
                        __builtin_prefetch(slack + at + lo[2]);
                        __builtin_prefetch(slack + at + hi[2] - 1);
                    }
                };
                for (std::size_t row = 0; row < kPrefetchRows; ++row) prefetch_row(row);
                try {
                    for (std::size_t z = lo[0]; z < hi[0]; ++z) {
                        for (std::size_t y = lo[1]; y < hi[1]; ++y) {
                            prefetch_row((z - lo[0]) * cell_ny + (y - lo[1]) + kPrefetchRows);
                            for (std::size_t x = lo[2]; x < hi[2]; ++x) {
                                const std::size_t i = (z * shape.ny + y) * shape.nx + x;
                                double de;
                                if (evaluate(i, z, y, x, n_eval, de)) {
                                    cand.emplace_back(de, i);
                                }
                            }
                        }
                    }
                } catch (const std::bad_alloc&) {
                    TOMOFUSE_OMP(atomic write)
                    out_of_memory = true;
                    continue;
                }
                std::sort(cand.begin(), cand.end());
                std::int64_t cell_changes = 0;
                double de_sum = 0.0;
                for (const auto& cd : cand) {
                    const std::size_t i = cd.second;
                    const std::size_t z = i / plane, y = (i % plane) / shape.nx, x = i % shape.nx;
                    double de, other, scale;
                    const int best = best_move(i, z, y, x, de, other, scale);
                    if (best != labels[i]) {
                        apply_move(i, z, y, x, best);
                        ++cell_changes;
                        de_sum += de;
                    }
                }
                cell_de[static_cast<std::size_t>(c)] = de_sum;
                if (cell_changes > 0) {
                    moved_at[cell_index(k[0], k[1], k[2])] = stamp;
                }
                color_changes += cell_changes;
            }
            total += color_changes;
            for (const double d : cell_de) energy_change += d;
        }
        if (out_of_memory) {
            throw Error("icm: out of memory for the list of voxels to change");
        }
        report.changes.push_back(total);
        report.evaluations.push_back(n_eval);
        report.sweeps = sweep + 1;
        if (static_cast<std::size_t>(total) <= options.min_changes) {
            break;
        }
    }
    // E after: E before plus the exact energy change of every move (each computed from g, which the
    // updates keep exact to rounding) -- not a second residual and energy pass over the volume
    report.energy_after = report.energy_before + energy_change;
    return report;
}

std::int64_t shell_moves(const float* data, std::uint8_t* labels, Shape shape, const float* levels, int n_labels,
                         const double sigma[3], const std::int32_t* components, int target, const std::uint8_t* pairs,
                         int n_pairs, const float* unary, const IcmOptions& options, int nthreads) {
    check_sigma(sigma);
    const int threads = resolve_threads(nthreads);
    const Model m{shape, data, levels, n_labels, pairs, n_pairs, unary, options.data_weight, options.smoothness};
    check_model(m, labels, threads);
    if (target < 0 || target >= n_labels) {
        throw InvalidArgument("target must be a label < n_labels = " + std::to_string(n_labels));
    }
    const std::size_t n = shape.size();
    if (n == 0) {
        return 0;
    }
    if (components == nullptr) {
        throw InvalidArgument("components must not be null");
    }
    std::int32_t n_comp = 0;
    bool negative = false;
    for (std::size_t i = 0; i < n; ++i) {
        negative |= components[i] < 0;
        n_comp = std::max(n_comp, components[i]);
    }
    if (negative) {
        throw InvalidArgument("components must be >= 0");
    }
    if (n_comp == 0) {
        return 0;
    }
    // every component's voxels in raster order (counting sort) and its bounding box
    std::vector<std::size_t> start(static_cast<std::size_t>(n_comp) + 2, 0), members;
    std::vector<std::size_t> box(static_cast<std::size_t>(n_comp + 1) * 6);
    for (std::size_t c = 0; c <= static_cast<std::size_t>(n_comp); ++c) {
        box[c * 6 + 0] = shape.nz, box[c * 6 + 1] = shape.ny, box[c * 6 + 2] = shape.nx;
        box[c * 6 + 3] = box[c * 6 + 4] = box[c * 6 + 5] = 0;
    }
    const std::size_t plane = shape.ny * shape.nx;
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<std::size_t>(components[i]);
        if (c == 0) continue;
        ++start[c + 1];
        const std::size_t z = i / plane, y = (i % plane) / shape.nx, x = i % shape.nx;
        const std::size_t at[3] = {z, y, x};
        for (int a = 0; a < 3; ++a) {
            box[c * 6 + a] = std::min(box[c * 6 + a], at[a]);
            box[c * 6 + 3 + a] = std::max(box[c * 6 + 3 + a], at[a] + 1);
        }
    }
    for (std::size_t c = 1; c < start.size(); ++c) start[c] += start[c - 1];
    members.resize(start.back());
    {
        std::vector<std::size_t> fill(start.begin(), start.end() - 1);
        for (std::size_t i = 0; i < n; ++i) {
            const auto c = static_cast<std::size_t>(components[i]);
            if (c != 0) members[fill[c]++] = i;
        }
    }
    const auto r_volume = work_volume<double>(n, "shell_moves");  // written in full by residual() (see icm)
    double* const r = r_volume.get();
    {
        const auto work = work_volume<double>(n, "shell_moves");
        const Operators op = make_operators(shape, sigma);
        residual(m, labels, op, r, work.get(), threads);
    }
    Band h[3];
    const std::size_t dim[3] = {shape.nz, shape.ny, shape.nx};
    for (int a = 0; a < 3; ++a) h[a] = gaussian_band(dim[a], sigma[a]);
    const double w = m.w, beta = m.beta;
    std::int64_t flipped = 0;
    std::vector<double> t0, t1;
    for (std::size_t c = 1; c <= static_cast<std::size_t>(n_comp); ++c) {
        if (start[c + 1] == start[c]) continue;
        bool any = false;
        for (std::size_t q = start[c]; q < start[c + 1]; ++q) any |= labels[members[q]] != target;
        if (!any) continue;
        // support of H times the change: the box grown by the kernel radius (clipped)
        std::size_t lo[3], hi[3], ext[3];
        for (int a = 0; a < 3; ++a) {
            const auto half = static_cast<std::size_t>(h[a].half);
            lo[a] = box[c * 6 + a] > half ? box[c * 6 + a] - half : 0;
            hi[a] = std::min(dim[a], box[c * 6 + 3 + a] + half);
            ext[a] = hi[a] - lo[a];
        }
        const std::size_t m_box = ext[0] * ext[1] * ext[2];
        t0.assign(m_box, 0.0);
        t1.assign(m_box, 0.0);
        auto local = [&](std::size_t z, std::size_t y, std::size_t x) {
            return ((z - lo[0]) * ext[1] + (y - lo[1])) * ext[2] + (x - lo[2]);
        };
        for (std::size_t q = start[c]; q < start[c + 1]; ++q) {
            const std::size_t i = members[q];
            const std::size_t z = i / plane, y = (i % plane) / shape.nx, x = i % shape.nx;
            t0[local(z, y, x)] = static_cast<double>(levels[target]) - levels[labels[i]];
        }
        // d = H delta on the support, one axis at a time (x, then y, then z), t0 -> t1 -> t0 -> t1
        auto pass = [&](const std::vector<double>& in, std::vector<double>& out, int axis) {
            const Band& b = h[axis];
            const std::size_t stride = axis == 2 ? 1 : (axis == 1 ? ext[2] : ext[1] * ext[2]);
            for (std::size_t e = 0; e < m_box; ++e) out[e] = 0.0;
            for (std::size_t e = 0; e < m_box; ++e) {
                const double v = in[e];
                if (v == 0.0) continue;
                const std::size_t zz = e / (ext[1] * ext[2]), yy = (e / ext[2]) % ext[1], xx = e % ext[2];
                const std::size_t pos = (axis == 0 ? zz : axis == 1 ? yy : xx);
                const std::size_t col = lo[axis] + pos;  // global index of the source
                for (std::size_t row = lo[axis]; row < hi[axis]; ++row) {
                    const double hv = b.at(row, static_cast<std::ptrdiff_t>(col));
                    if (hv != 0.0) {
                        out[e + (row - lo[axis]) * stride - pos * stride] += hv * v;
                    }
                }
            }
        };
        pass(t0, t1, 2);
        pass(t1, t0, 1);
        pass(t0, t1, 0);
        double ddata = 0.0;
        for (std::size_t z = lo[0]; z < hi[0]; ++z) {
            for (std::size_t y = lo[1]; y < hi[1]; ++y) {
                for (std::size_t x = lo[2]; x < hi[2]; ++x) {
                    const double d = t1[local(z, y, x)];
                    ddata += d * (d - 2.0 * r[(z * shape.ny + y) * shape.nx + x]);
                }
            }
        }
        double dsmooth = 0.0, dunary = 0.0;
        const auto cc = static_cast<std::int32_t>(c);
        for (std::size_t q = start[c]; q < start[c + 1]; ++q) {
            const std::size_t i = members[q];
            const std::size_t z = i / plane, y = (i % plane) / shape.nx, x = i % shape.nx;
            const int li = labels[i];
            auto neighbor = [&](std::size_t j) {
                if (components[j] == cc) {
                    dsmooth -= 0.5 * (labels[j] != li);  // a pair inside: both ends become target
                } else {
                    dsmooth += static_cast<double>(labels[j] != target) - static_cast<double>(labels[j] != li);
                }
            };
            if (x > 0) neighbor(i - 1);
            if (x + 1 < shape.nx) neighbor(i + 1);
            if (y > 0) neighbor(i - shape.nx);
            if (y + 1 < shape.ny) neighbor(i + shape.nx);
            if (z > 0) neighbor(i - plane);
            if (z + 1 < shape.nz) neighbor(i + plane);
            if (m.n_pairs) {
                double u[8];
                unaries(m, i, n, u);
                dunary += u[target] - u[li];
            }
        }
        const double de = w * ddata + beta * dsmooth + dunary;
        if (de < 0.0) {
            for (std::size_t q = start[c]; q < start[c + 1]; ++q) {
                labels[members[q]] = static_cast<std::uint8_t>(target);
            }
            for (std::size_t z = lo[0]; z < hi[0]; ++z) {
                for (std::size_t y = lo[1]; y < hi[1]; ++y) {
                    for (std::size_t x = lo[2]; x < hi[2]; ++x) {
                        r[(z * shape.ny + y) * shape.nx + x] -= t1[local(z, y, x)];
                    }
                }
            }
            flipped += static_cast<std::int64_t>(start[c + 1] - start[c]);
        }
    }
    return flipped;
}

}  // namespace tomofuse::segment
