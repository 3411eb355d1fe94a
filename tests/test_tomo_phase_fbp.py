"""tomofuse.tomo.fbp_phase_derivative: modified FBP of *wrapped* phase == FBP of the unwrapped phase.

Ground truth: closed-form line integrals of smooth ellipses and hard disks
(analytic_sinograms), scaled to a projected phase of ~20 rad, so the wrapped
phase wraps three times; the reference is ``fbp`` of the unwrapped (true) phase.
"""

import math

import numpy as np
import pytest

import analytic_sinograms as asg
from tomofuse.tomo import (FILTERS, derivative_filter, fbp, fbp_phase_derivative, phase_derivative, ramp_filter,
                           remove_phase_ramp)

N, A = 128, 180
ANGLES = np.linspace(0, np.pi, A, endpoint=False)
# (ellipses (x0, y0, a, b, alpha, value), disks (x0, y0, R, value)) per slice; phase per pixel in rad
SLICES = [
    ([(6, -4, 46, 32, 0.4, 0.25), (-18, 16, 14, 10, 1.2, 0.25), (24, 18, 9, 9, 0.0, 0.5)],
     [(-20, -22, 5, 0.05), (8, 30, 4, 0.08)]),
    ([(-5, 3, 40, 40, 0.0, 0.25), (15, -10, 12, 20, -0.7, 0.4)], [(25, 25, 6, 0.06)]),
]


def unwrapped():
    return asg.projections(ANGLES, N, SLICES)


def wrap(p):
    return np.angle(np.exp(1j * p))


def rel_rmse(a, ref):
    """RMSE relative to the RMS of the reference reconstruction over the whole slice."""
    return math.sqrt(np.mean((a - ref) ** 2)) / math.sqrt(np.mean(ref ** 2))


def test_phantom_wraps_many_times_with_sub_pi_steps():
    p = unwrapped()
    assert 18 < p.max() < 22                     # ~20 rad: wraps 3 times
    assert np.abs(np.diff(p, axis=2)).max() < 2.5  # but neighbors differ by < pi


@pytest.mark.parametrize("filt", FILTERS)
@pytest.mark.parametrize("padding", [True, False])
def test_wrapped_phase_gives_fbp_of_unwrapped(filt, padding):
    p = unwrapped()
    ref = fbp(p, ANGLES, filter=filt, padding=padding)
    out = fbp_phase_derivative(wrap(p), ANGLES, filter=filt, padding=padding)
    assert out.shape == ref.shape and out.dtype == np.float64
    # acceptance: 1 % RMSE; the derivation is exact, so it holds to rounding
    assert rel_rmse(out, ref) < 1e-9
    assert np.abs(out - ref).max() < 1e-9 * (ref.max() - ref.min())
    # the test has teeth: plain FBP of the wrapped phase is far off
    assert rel_rmse(fbp(wrap(p), ANGLES, filter=filt, padding=padding), ref) > 0.3


def test_float32_within_acceptance_and_noise_robust():
    rng = np.random.default_rng(0)
    p = unwrapped() + 0.05 * rng.standard_normal((A, 2, N))  # phase noise, still < pi per step
    ref = fbp(p, ANGLES)
    out = fbp_phase_derivative(wrap(p).astype(np.float32), ANGLES)
    assert out.dtype == np.float32
    assert rel_rmse(out, ref) < 1e-4            # float32 rounding only; acceptance is 1e-2


def test_reconstructs_the_analytic_object():
    out = fbp_phase_derivative(wrap(unwrapped()), ANGLES, filter="hann")
    for k, (ell, disks) in enumerate(SLICES):
        img = asg.image(N, ell, disks)
        # discretization floor of FBP at 128 px / 180 angles (same as test_tomo_fbp's disks)
        assert math.sqrt(np.mean((out[k] - img) ** 2)) < 0.01 * (img.max() - img.min())


def test_complex_transmission_input():
    p = unwrapped()
    rng = np.random.default_rng(1)
    amplitude = 0.5 + 0.5 * rng.random(p.shape)  # absorption does not enter the phase derivative
    t = amplitude * np.exp(1j * p)
    np.testing.assert_allclose(fbp_phase_derivative(t, ANGLES), fbp(p, ANGLES), rtol=0, atol=1e-10)


def test_constant_offset():
    p = unwrapped()
    c = 2.5  # e.g. a constant not removed: the air phase stays inside (-pi, pi]
    # the derivative does not see a constant at all...
    np.testing.assert_allclose(phase_derivative(wrap(p + c)), phase_derivative(wrap(p)), atol=1e-12)
    # ...and the result equals fbp of the offset unwrapped phase, whose only change is the
    # ramp filter's zero-frequency term pi R(0) c (a constant, ~2c/(pi n) per pixel)
    out = fbp_phase_derivative(wrap(p + c), ANGLES)
    np.testing.assert_allclose(out, fbp(p + c, ANGLES), rtol=0, atol=1e-10)
    n_pad = 256
    yy, xx = np.mgrid[:N, :N] + 0.5 - N / 2
    fov = np.hypot(xx, yy) < N / 2 - 1  # where every ray meets the detector
    np.testing.assert_allclose((out - fbp(p, ANGLES))[:, fov], math.pi * ramp_filter(n_pad)[0] * c,
                               rtol=0, atol=1e-10)


def test_after_phase_ramp_removal():
    """Ptychography's random constant + linear phase per projection, removed on the air columns first."""
    rng = np.random.default_rng(2)
    p = unwrapped()
    cols = np.arange(N)[None, None, :]
    rows = np.arange(2)[None, :, None]
    const = rng.uniform(-np.pi, np.pi, (A, 1, 1))
    slope = 0.03 + rng.uniform(-0.02, 0.02, (A, 1, 1))  # a drift common to all projections, plus noise
    measured = wrap(p + const + slope * cols + 0.01 * rows)
    air = np.zeros((2, N), dtype=bool)
    air[:, :12] = air[:, -12:] = True
    cleaned = remove_phase_ramp(measured, mask=air, wrap=True)
    assert rel_rmse(fbp_phase_derivative(cleaned, ANGLES), fbp(p, ANGLES)) < 0.01
    # without the removal the drifting ramps fail the 1 % acceptance (measured: 5 %)
    assert rel_rmse(fbp_phase_derivative(measured, ANGLES), fbp(p, ANGLES)) > 0.02


def test_derivative_filter_is_hilbert_with_half_pixel_shift():
    """H(f) = -i sgn(f) W(f) / (2 pi) * exp(-i pi f) * pi f / sin(pi f), independently written."""
    n = 1024
    f = np.arange(n // 2 + 1) / n
    windows = {"ramp": np.ones_like(f), "hann": 0.5 + 0.5 * np.cos(2 * np.pi * f),
               "shepp-logan": np.sinc(f)}
    for name, w in windows.items():
        h = derivative_filter(n, filter=name)
        assert h[0] == 0
        g = f[1:]
        expected = -1j * w[1:] / (2 * np.pi) * np.exp(-1j * np.pi * g) * (np.pi * g) / np.sin(np.pi * g)
        # the band-limited ramp differs from |f| by its truncation, ~1/(pi^2 n)
        assert np.abs(h[1:] - expected).max() < 2 / (np.pi**2 * n) / (2 * np.sin(np.pi / n))


def test_phase_derivative_is_wrap_free():
    p = np.linspace(0, 30, 200)[None, None, :]  # 0.15 rad per pixel, wraps ~5 times
    d = phase_derivative(wrap(p))
    np.testing.assert_allclose(d, np.full((1, 1, 199), 30 / 199), atol=1e-12)
    np.testing.assert_allclose(phase_derivative(np.exp(1j * p)), d, atol=1e-12)


def test_identical_for_any_thread_count():
    w = wrap(unwrapped()).astype(np.float32)
    a = fbp_phase_derivative(w, ANGLES, threads=1)
    for t in (2, 4):
        np.testing.assert_array_equal(fbp_phase_derivative(w, ANGLES, threads=t), a)


def test_center_and_shape_follow_fbp():
    p = asg.projections(ANGLES, N, SLICES, offset=-3.4)
    ref = fbp(p, ANGLES, center=N / 2 - 3.4, shape=(100, 90))
    out = fbp_phase_derivative(wrap(p), ANGLES, center=N / 2 - 3.4, shape=(100, 90))
    assert out.shape == (2, 100, 90)
    assert rel_rmse(out, ref) < 1e-9


def test_progress_callback():
    seen = []
    fbp_phase_derivative(wrap(unwrapped()), ANGLES, callback=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.parametrize(
    "phase, kwargs, exc, match",
    [
        ([[[0.0, 1.0]]], {}, TypeError, "numpy.ndarray"),
        (np.zeros((A, N)), {}, ValueError, "3 dimensions"),
        (np.zeros((A, 0, N)), {}, ValueError, "empty"),
        (np.zeros((A, 2, 1)), {}, ValueError, "at least 2 columns"),
        (np.full((A, 2, N), np.nan), {}, ValueError, "finite"),
        (np.zeros((A, 2, N), dtype=bool), {}, TypeError, "dtype bool"),
        (np.zeros((A - 1, 2, N)), {}, ValueError, f"expected {A - 1} angles"),
        (np.zeros((A, 2, N)), dict(center=N + 1.0), ValueError, "center must lie on the detector"),
        (np.zeros((A, 2, N)), dict(center=float("inf")), ValueError, "center"),
        (np.zeros((A, 2, N)), dict(filter="ramlak"), ValueError, "filter must be one of"),
        (np.zeros((A, 2, N)), dict(shape=(0, 5)), ValueError, "shape"),
    ],
)
def test_bad_input(phase, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fbp_phase_derivative(phase, ANGLES, **kwargs)
