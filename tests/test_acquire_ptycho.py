"""tomofuse.acquire.ptycho_scan: far-field forward model against explicit NumPy crops, Parseval, shifts, Poisson."""

import numpy as np
import pytest

from tomofuse import ptycho
from tomofuse.acquire import ptycho_scan

N = 32


def _object(shape=(80, 96), seed=1):
    rng = np.random.default_rng(seed)
    phase = rng.uniform(-1.0, 1.0, shape)
    amp = rng.uniform(0.6, 1.0, shape)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _probe():
    """A Gaussian beam with a curved, tilted phase: negligible at the array edges (so Fourier shifts do not wrap)."""
    y, x = np.indices((N, N)) - N // 2
    p = np.exp(-(y**2 + x**2) / (2 * 3.5**2)) * np.exp(1j * (0.02 * (y**2 + x**2) + 0.3 * x - 0.1 * y))
    return (p / np.sqrt(np.sum(np.abs(p) ** 2))).astype(np.complex64)


def _fourier_shift(a, dy, dx):
    """a(r - d) by a phase ramp, written independently of the module (complex128)."""
    uy = np.fft.fftfreq(a.shape[0])[:, None]
    ux = np.fft.fftfreq(a.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(a) * np.exp(-2j * np.pi * (uy * dy + ux * dx)))


def test_integer_positions_equal_an_explicit_crop():
    obj, probe = _object(), _probe()
    pos = np.array([[0, 0], [-5, 7], [20, -30], [-24, 32]])
    out = ptycho_scan(obj, probe, pos, photons=None)
    assert out.shape == (4, N, N) and out.dtype == np.float32
    h, w = obj.shape
    for k, (y, x) in enumerate(pos):
        r0, c0 = h // 2 + y - N // 2, w // 2 + x - N // 2
        psi = probe.astype(np.complex128) * obj[r0:r0 + N, c0:c0 + N]
        ref = np.abs(np.fft.fftshift(np.fft.fft2(psi))) ** 2 / N**2
        np.testing.assert_allclose(out[k], ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_parseval_and_centered_zero_frequency():
    obj, probe = _object(), _probe()
    pos = np.array([[0.3, -1.7], [4.5, 2.25], [-10.0, 11.9]])
    out = ptycho_scan(obj, probe, pos, photons=None)
    h, w = obj.shape
    for k, (y, x) in enumerate(pos):
        # |exit wave|^2 summed: the probe's power times |O|^2 sampled under it (shifted probe, fractional part)
        iy, ix = int(np.floor(y)), int(np.floor(x))
        p = _fourier_shift(probe.astype(np.complex128), y - iy, x - ix)
        r0, c0 = h // 2 + iy - N // 2, w // 2 + ix - N // 2
        total = np.sum(np.abs(p * obj[r0:r0 + N, c0:c0 + N]) ** 2)
        assert out[k].sum(dtype=np.float64) == pytest.approx(total, rel=1e-5)
    # a flat object: the pattern is the probe's far field with the zero frequency at the pattern center
    probe = ptycho.focused_probe(N, object_pixel_size=20e-9, energy_kev=6.2, diameter=12 * 20e-9)
    flat = ptycho_scan(np.ones((64, 64), np.complex64), probe, [[0, 0]], photons=None)[0]
    far = np.abs(np.fft.fft2(np.fft.ifftshift(probe.astype(np.complex128)))) ** 2 / N**2
    np.testing.assert_allclose(flat, np.fft.fftshift(far), rtol=1e-4, atol=1e-7)
    assert flat.sum() == pytest.approx(1.0, rel=1e-5)  # unit-normalized probe, |O| = 1
    # the focused probe's pupil is a centered disc of radius N / 4: no power beyond it
    u = np.hypot(*(np.indices((N, N)) - N // 2))
    assert flat[u > N / 4 + 1].sum() < 1e-6 and flat[N // 2, N // 2] > 0


def test_subpixel_shift_composes():
    obj, probe = _object(), _probe()
    # half a pixel twice (probe pre-shifted by 0.5 independently, then scanned at +0.5) = one whole pixel
    whole = ptycho_scan(obj, probe, [[3.0, -2.0], [0.0, 1.0]], photons=None)
    half = _fourier_shift(probe.astype(np.complex128), 0.5, 0.0).astype(np.complex64)
    twice = ptycho_scan(obj, half, [[2.5, -2.0]], photons=None)
    np.testing.assert_allclose(twice[0], whole[0], rtol=0, atol=2e-5 * whole[0].max())
    half_x = _fourier_shift(probe.astype(np.complex128), 0.0, 0.5).astype(np.complex64)
    twice_x = ptycho_scan(obj, half_x, [[0.0, 0.5]], photons=None)
    np.testing.assert_allclose(twice_x[0], whole[1], rtol=0, atol=2e-5 * whole[1].max())
    # and a fraction really moves the probe: 0.5 px differs from both neighbors
    mid = ptycho_scan(obj, probe, [[0.0, 0.5]], photons=None)[0]
    ends = ptycho_scan(obj, probe, [[0.0, 0.0], [0.0, 1.0]], photons=None)
    assert np.abs(mid - ends[0]).max() > 1e-3 * mid.max() and np.abs(mid - ends[1]).max() > 1e-3 * mid.max()


def test_subpixel_matches_a_band_limited_object_shift():
    # for a band-limited (smooth, periodic) object, moving the probe by +f equals moving the object by -f
    n_obj = 64
    y, x = np.indices((n_obj, n_obj))
    obj = np.exp(1j * 0.8 * np.sin(2 * np.pi * 3 * y / n_obj) * np.cos(2 * np.pi * 2 * x / n_obj))
    probe = _probe()
    f = (0.3, 0.7)
    moved = ptycho_scan(obj.astype(np.complex64), probe, [f], photons=None)[0]
    obj_shifted = _fourier_shift(obj, -f[0], -f[1])  # O(r + f)
    r0 = n_obj // 2 - N // 2
    psi = probe.astype(np.complex128) * obj_shifted[r0:r0 + N, r0:r0 + N]
    ref = np.abs(np.fft.fftshift(np.fft.fft2(psi))) ** 2 / N**2
    # psi_module(r) = P(r - f) O(r) vs psi_ref(r) = P(r) O(r + f) = psi_module(r + f): same |FFT|^2
    np.testing.assert_allclose(moved, ref, rtol=0, atol=1e-4 * ref.max())


def test_photon_scaling_and_poisson_statistics():
    obj, probe = _object(), _probe()
    pos = ptycho.fermat_spiral(4.0, (30.0, 40.0))  # in pixels here
    clean = ptycho_scan(obj, probe, pos, photons=None).astype(np.float64)
    photons = 2e4
    expected = clean * photons / (clean.sum() / len(pos))
    noisy = ptycho_scan(obj, probe, pos, photons=photons, seed=3)
    assert noisy.dtype == np.float32 and np.all(noisy == np.round(noisy)) and noisy.min() >= 0
    assert noisy.sum() / len(pos) == pytest.approx(photons, rel=0.01)
    # Poisson: standardized residuals have mean 0 and variance 1 where counts are large enough
    big = expected > 20
    z = (noisy[big] - expected[big]) / np.sqrt(expected[big])
    assert z.size > 2000
    assert abs(z.mean()) < 0.1 and np.var(z) == pytest.approx(1.0, abs=0.1)
    # zero counts where nothing is expected; the relative brightness of patterns is kept
    np.testing.assert_array_equal(noisy[expected == 0], 0)
    # seeded: same seed, same counts; another seed, other counts
    np.testing.assert_array_equal(noisy, ptycho_scan(obj, probe, pos, photons=photons, seed=3))
    assert np.any(noisy != ptycho_scan(obj, probe, pos, photons=photons, seed=4))


def test_bad_input():
    obj, probe = _object(), _probe()
    ok = np.zeros((1, 2))
    with pytest.raises(ValueError, match="outside"):
        ptycho_scan(obj, probe, [[30.0, 0.0]], photons=None)  # 80 rows: floor(y) <= 80 - 40 - 32 + 16 = 24
    ptycho_scan(obj, probe, [[24.9, 0.0], [-24.0, -32.0]], photons=None)  # the edges are allowed
    with pytest.raises(ValueError, match="outside"):
        ptycho_scan(obj, probe, [[-24.5, 0.0]], photons=None)
    with pytest.raises(ValueError, match="empty"):
        ptycho_scan(obj, probe, np.zeros((0, 2)), photons=None)
    with pytest.raises(ValueError, match="positions_px"):
        ptycho_scan(obj, probe, np.zeros((3, 3)), photons=None)
    with pytest.raises(ValueError, match="finite"):
        ptycho_scan(obj, probe, [[np.nan, 0.0]], photons=None)
    with pytest.raises(ValueError, match="square"):
        ptycho_scan(obj, probe[:, :30], ok, photons=None)
    with pytest.raises(ValueError, match="obj"):
        ptycho_scan(obj[:20], probe, ok, photons=None)
    bad = obj.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="obj must be finite"):
        ptycho_scan(bad, probe, ok, photons=None)
    with pytest.raises(TypeError, match="obj"):
        ptycho_scan(np.ones((64, 64), np.int32), probe, ok, photons=None)
    with pytest.raises(TypeError, match="probe"):
        ptycho_scan(obj, list(probe), ok, photons=None)
    for photons in (0, -5.0, float("inf")):
        with pytest.raises(ValueError, match="photons"):
            ptycho_scan(obj, probe, ok, photons=photons)
    with pytest.raises(TypeError, match="photons"):  # a wrong type is a TypeError everywhere
        ptycho_scan(obj, probe, ok, photons=True)
    with pytest.raises(TypeError, match="seed"):
        ptycho_scan(obj, probe, ok, photons=10.0, seed=1.5)
