"""fbp(method="fourier"): the non-uniform-FFT back-projection against a slow direct sum of the
same trigonometric interpolant, and against closed-form sinograms of disks."""

import math

import numpy as np
import pytest

from test_tomo_fbp import ANGLES, N, disk_image, disk_sinogram
from tomofuse.tomo import fbp
from tomofuse.tomo._gridrec import FourierBackprojector, backproject_fourier


def reference(filtered, angles, ny, nx, offset):
    """sum_a q_a(u) with q_a's zero-padded trigonometric interpolant, its spectrum weighted by
    sinc^2 (the response of linear interpolation), evaluated by explicit sums:
    q(u) = sum_c q[c] K(u - u_c), K(d) = sum_k sinc^2(k/L) exp(2 pi i k d / L) / L."""
    n_angles, rows, cols = filtered.shape
    # the fast path's padding (the interpolant's ringing depends on L, so L must be the same)
    length = FourierBackprojector(angles, cols=cols, center_offset=offset, ny=ny, nx=nx, dtype=np.float64).length
    yy, xx = np.meshgrid(np.arange(ny) + 0.5 - ny / 2, np.arange(nx) + 0.5 - nx / 2, indexing="ij")
    uc = np.arange(cols) + 0.5 - cols / 2 - offset
    k = np.arange(-(length // 2), (length - 1) // 2 + 1)  # symmetric modes
    if length % 2 == 0:
        k = np.arange(-length // 2 + 1, length // 2)  # drop the Nyquist pair's odd half ...
    out = np.zeros((rows, ny, nx))
    for a, th in enumerate(angles):
        u = xx * np.cos(th) + yy * np.sin(th)
        d = u.reshape(-1, 1) - uc.reshape(1, -1)  # (pixels, cols)
        kernel = np.real((np.exp(2j * np.pi * np.outer(d.reshape(-1), k) / length)
                          * np.sinc(k / length) ** 2).sum(axis=1)).reshape(d.shape)
        if length % 2 == 0:  # ... and add it back as the real cosine term (weight 1 in the fast path)
            kernel += np.cos(np.pi * d) * np.sinc(0.5) ** 2
        kernel /= length
        for z in range(rows):
            out[z] += (kernel @ filtered[a, z]).reshape(ny, nx)
    return out


def test_matches_slow_sum_of_the_interpolant():
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, np.pi, 9)
    filtered = rng.normal(size=(9, 2, 14))
    for offset, (ny, nx) in ((0.0, (11, 13)), (1.7, (12, 9))):
        got = backproject_fourier(filtered, angles, center_offset=offset, ny=ny, nx=nx)
        want = reference(filtered, angles, ny, nx, offset)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * np.abs(want).max())
        got32 = backproject_fourier(filtered.astype(np.float32), angles, center_offset=offset, ny=ny, nx=nx)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, want, rtol=0, atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("shape", [(9, 14, 11, 13), (64, 100, 100, 100), (37, 90, 64, 120)])
def test_float32_as_accurate_as_finufft(shape):
    """The float32 back-projection (the core's spreader, scipy.fft, the kernel's transform) is at
    least as accurate as finufft's complete type-1 transform of the same points at 1e-4 (the
    accuracy the previous implementation asked of finufft), against the float64 result."""
    import finufft

    n_angles, cols, ny, nx = shape
    rng = np.random.default_rng(n_angles)
    angles = rng.uniform(0, np.pi, n_angles)
    filtered = rng.normal(size=(n_angles, 1, cols))
    exact = backproject_fourier(filtered, angles, center_offset=1.3, ny=ny, nx=nx)[0]
    got = backproject_fourier(filtered.astype(np.float32), angles, center_offset=1.3, ny=ny, nx=nx, threads=1)[0]
    bp = FourierBackprojector(angles, cols=cols, center_offset=1.3, ny=ny, nx=nx, dtype=np.float32, threads=1)
    strengths = np.fft.rfft(filtered[:, 0].astype(np.float32), n=bp.length, axis=1).astype(np.complex64)
    omega = 2 * math.pi * np.arange(bp.length // 2 + 1) / bp.length
    px = (omega[None, :] * np.cos(angles)[:, None]).reshape(-1).astype(np.float32)
    py = (omega[None, :] * np.sin(angles)[:, None]).reshape(-1).astype(np.float32)
    peer = finufft.nufft2d1(py, px, (strengths * bp.point_factor).reshape(-1), (ny, nx), eps=1e-4, isign=1,
                            modeord=0, upsampfac=1.25).real

    def rel(a):
        return np.sqrt(np.mean((a - exact) ** 2) / np.mean(exact ** 2))

    assert rel(got) <= rel(peer) and rel(got) < 1e-4, (rel(got), rel(peer))


@pytest.mark.parametrize("filt, mean_err, max_err", [("ramp", 0.006, 0.04), ("shepp-logan", 0.006, 0.03),
                                                     ("cosine", 0.006, 0.02), ("hamming", 0.006, 0.015),
                                                     ("hann", 0.006, 0.015)])
def test_reconstructs_analytic_disks(filt, mean_err, max_err):
    """The floors of the direct method (test_tomo_fbp.py): with the sinc^2 response of linear
    interpolation the two methods have the same resolution.  Without it the trigonometric
    interpolant keeps the full band (ramp: mean error 0.012 instead of 0.005, -1.7 dB on a
    Shepp-Logan phantom)."""
    rec = fbp(disk_sinogram(), ANGLES, filter=filt, method="fourier")[0]
    img, interior = disk_image()
    err = np.abs(rec - img)[interior]
    assert err.mean() < mean_err and err.max() < max_err, (err.mean(), err.max())
    psnr = 20 * math.log10(1.3 / math.sqrt(np.mean((rec - img) ** 2)))
    direct = fbp(disk_sinogram(), ANGLES, filter=filt)[0]
    psnr_direct = 20 * math.log10(1.3 / math.sqrt(np.mean((direct - img) ** 2)))
    assert psnr > 24.0 and psnr >= psnr_direct - 0.2, (psnr, psnr_direct)


def test_center_and_shape_are_honored():
    off = 3.2
    img, interior = disk_image()
    rec = fbp(disk_sinogram(off), ANGLES, center=N / 2 + off, method="fourier", filter="hann")[0]
    assert np.abs(rec - img)[interior].mean() < 0.006
    wrong = fbp(disk_sinogram(off), ANGLES, method="fourier", filter="hann")[0]
    assert np.abs(wrong - img)[interior].max() > 0.3
    # a non-square slice is the same crop of the plane as the direct method's
    s = disk_sinogram().astype(np.float32)
    a = fbp(s, ANGLES, method="fourier", filter="hann", shape=(100, 140))
    b = fbp(s, ANGLES, method="direct", filter="hann", shape=(100, 140))
    assert a.dtype == np.float32 and a.shape == b.shape == (1, 100, 140)
    assert np.abs(a - b).mean() < 0.003


def test_bad_method_and_threads():
    with pytest.raises(ValueError, match="method"):
        fbp(disk_sinogram(), ANGLES, method="gridrec")
    with pytest.raises(ValueError, match="threads"):
        fbp(disk_sinogram(), ANGLES, method="fourier", threads=-1)


def test_progress_reaches_one():
    seen = []
    fbp(np.repeat(disk_sinogram(), 3, axis=1), ANGLES, method="fourier", callback=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))


# --- the core's gridding (spread_rays_hermitian) against a slow, obvious spreader -------------

def slow_spread_half(samples, steps, kernel, rows, cols):
    """Every sample spread tap by tap (float64, np.polyval) onto the full periodic grid G (rows in
    FFT order, columns centered), then H = (G + conj G(-r, -c)) / 2 for rows 0 .. rows/2."""
    width = kernel.shape[0]
    grid = np.zeros((rows, cols), dtype=np.complex128)
    for a in range(samples.shape[0]):
        for k in range(samples.shape[1]):
            gr, gc = k * steps[a, 0], k * steps[a, 1] + cols / 2
            fr, fc = math.floor(gr), math.floor(gc)
            tr = [np.polyval(kernel[j], 2 * (gr - fr) - 1) for j in range(width)]
            tc = [np.polyval(kernel[j], 2 * (gc - fc) - 1) for j in range(width)]
            for i in range(width):
                for j in range(width):
                    grid[(fr - width // 2 + 1 + i) % rows, (fc - width // 2 + 1 + j) % cols] += (
                        tr[i] * tc[j] * samples[a, k])
    mirrored = np.conj(grid[(-np.arange(rows)) % rows][:, (-np.arange(cols)) % cols])
    return ((grid + mirrored) / 2)[: rows // 2 + 1]


def spread_case(seed, n_rays, n_points, rows, cols, real):
    """Rays in every direction (negative row steps, a zero row step, rays that end exactly on the
    grid's edge, |cos| = 1), with the float32 or float64 kernel of the back-projector."""
    from tomofuse.tomo._gridrec import WIDTH, _kernel

    rng = np.random.default_rng(seed)
    angles = np.concatenate([[0.0, np.pi / 2, np.pi, -np.pi / 2], rng.uniform(-np.pi, np.pi, n_rays - 4)])
    radius = rng.uniform(0.3, 1.0, n_rays)
    radius[:4] = 1.0
    reach = n_points - 1
    steps = np.stack([radius * rows / 2 * np.cos(angles), radius * cols / 2 * np.sin(angles)], axis=1) / reach
    cplx = np.complex64 if real is np.float32 else np.complex128
    samples = (rng.normal(size=(n_rays, n_points)) + 1j * rng.normal(size=(n_rays, n_points))).astype(cplx)
    kernel, _ = _kernel(WIDTH[real])
    return samples, steps, kernel


@pytest.mark.parametrize("real, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("rows, cols", [(40, 40), (36, 50), (64, 44)])
def test_spread_matches_slow_spreader(real, rtol, rows, cols):
    from tomofuse import _core

    width = {np.float32: 8, np.float64: 16}[real]
    if min(rows, cols) < 2 * width + 4:
        pytest.skip("grid smaller than the core allows for this kernel")
    samples, steps, kernel = spread_case(rows + cols, 11, 9, rows, cols, real)
    got = _core.spread_rays_hermitian(samples, steps, kernel, rows=rows, cols=cols, threads=1)
    want = slow_spread_half(samples.astype(np.complex128), steps, kernel, rows, cols)
    assert got.dtype == samples.dtype and got.shape == (rows // 2 + 1, cols)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("real", [np.float32, np.float64])
def test_spread_same_bits_for_any_thread_count(real):
    """Bands of rows are spread by different threads; every cell still sums its samples in the
    same order with the same kernel values."""
    from tomofuse import _core

    samples, steps, kernel = spread_case(5, 60, 90, 200, 180, real)
    one = _core.spread_rays_hermitian(samples, steps, kernel, rows=200, cols=180, threads=1)
    out = np.full_like(one, np.nan)
    for threads in (2, 3):
        got = _core.spread_rays_hermitian(samples, steps, kernel, rows=200, cols=180, threads=threads, out=out)
        assert got is out
        np.testing.assert_array_equal(got, one)


def test_fourier_fbp_same_bits_for_any_thread_count():
    s = np.repeat(disk_sinogram(), 3, axis=1)
    one = fbp(s, ANGLES, method="fourier", threads=1)
    np.testing.assert_array_equal(fbp(s, ANGLES, method="fourier", threads=2), one)


def test_spread_checks_its_arguments():
    from tomofuse import _core

    samples, steps, kernel = spread_case(1, 6, 5, 40, 40, np.float32)
    ok = dict(rows=40, cols=40)
    cases = [
        ((samples, steps, kernel[:7]), ok, ValueError, "width must be even"),
        ((samples, steps, np.zeros((10, 7))), ok, ValueError, "width must be even, 2..8"),
        ((samples, steps, kernel), dict(rows=41, cols=40), ValueError, "even"),
        ((samples, steps, kernel), dict(rows=18, cols=40), ValueError, "2 \\* width \\+ 4"),
        ((samples, steps * 1.5, kernel), ok, ValueError, "leaves the grid"),
        ((samples, np.full_like(steps, np.nan), kernel), ok, ValueError, "leaves the grid"),
        ((samples, steps[:5], kernel), ok, ValueError, "steps must have shape"),
        ((samples.astype(np.complex128), steps, kernel.astype(np.float32)), ok, TypeError, "kernel must have dtype"),
        ((samples.real.copy(), steps, kernel), ok, TypeError, "samples must have dtype"),
        ((samples, steps, kernel), dict(ok, out=np.zeros((20, 40), np.complex64)), ValueError, "out must have shape"),
        ((samples, steps, kernel), dict(ok, out=np.zeros((21, 40), np.complex128)), TypeError, "out must have dtype"),
        ((samples, steps, kernel), dict(ok, threads=-1), ValueError, "threads"),
    ]
    for args, kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            _core.spread_rays_hermitian(*args, **kwargs)
    big = np.zeros((21, 40), np.complex64)
    with pytest.raises(ValueError, match="shares memory"):
        _core.spread_rays_hermitian(big.reshape(-1)[:30].reshape(6, 5), steps, kernel, rows=40, cols=40, out=big)
