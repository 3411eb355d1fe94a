"""TXTM preprocessing: normalize, minus_log and Paganin against plain NumPy references."""

import math

import numpy as np
import pytest

from tomofuse.tomo import minus_log, normalize, paganin

HC = 12.398419843320026e-10


def paganin_reference(proj, pixel_size, distance, energy_kev, delta_beta, margin=None):
    """Straightforward float64 NumPy version of the same definition (edge padding to 2x, or by
    ``margin`` pixels per side)."""
    lam = HC / energy_kev
    out = np.empty(proj.shape)
    rows, cols = proj.shape[1:]
    mr, mc = (rows // 2, cols // 2) if margin is None else (margin, margin)
    pr, pc = (2 * rows, 2 * cols) if margin is None else (rows + 2 * margin, cols + 2 * margin)
    for a, frame in enumerate(proj.astype(np.float64)):
        padded = np.pad(frame, ((mr, pr - rows - mr), (mc, pc - cols - mc)), mode="edge")
        u2 = np.fft.fftfreq(pr, pixel_size)[:, None] ** 2 + np.fft.fftfreq(pc, pixel_size)[None, :] ** 2
        filtered = np.fft.ifft2(np.fft.fft2(padded) / (1 + math.pi * lam * distance * delta_beta * u2)).real
        out[a] = -np.log(np.clip(filtered[mr:mr + rows, mc:mc + cols], 1e-6, None))
    return out


def test_paganin_matches_numpy_reference():
    rng = np.random.default_rng(0)
    proj = np.exp(-rng.uniform(0.1, 2.0, (5, 48, 64))).astype(np.float32)
    kw = dict(pixel_size=27.5e-9, distance=2e-3, energy_kev=8.4, delta_beta=0.028)
    got = paganin(proj, **kw, pad=True, chunk=2)
    ref = paganin_reference(proj, **kw)
    assert got.dtype == np.float32 and got.shape == proj.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("delta_beta", [0.028, 0.3, 3.0])
def test_paganin_auto_padding(delta_beta):
    """pad="auto" keeps a margin of 12 decay lengths of the filter's K0 point-spread function
    (l = 0.5, 1.6, 5.1 pixels here): the result of a generous margin (40 l + 16 pixels) to
    1e-4 of the range (the sampled filter on a different grid differs by that much: the kernel
    has a log singularity, its sampled versions differ at the 1e-5 level), whereas a margin of
    2 pixels is visibly wrong for the long filter and 2x padding (40-48 pixels) for l = 5.1."""
    rng = np.random.default_rng(1)
    proj = np.exp(-rng.uniform(0.1, 2.0, (3, 96, 80))).astype(np.float32)
    kw = dict(pixel_size=27.5e-9, distance=5e-3, energy_kev=8.4, delta_beta=delta_beta)
    decay = math.sqrt(HC / 8.4 * 5e-3 * delta_beta / (4 * math.pi)) / 27.5e-9
    ref = paganin_reference(proj, **kw, margin=int(40 * decay) + 16)
    scale = np.abs(ref).max()
    got = paganin(proj, **kw)  # pad="auto"
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * scale)
    if delta_beta == 3.0:
        short = paganin(proj, **kw, pad=2)
        assert np.abs(short - ref).max() > 1e-2 * scale
        twice = paganin(proj, **kw, pad=True)
        assert np.abs(twice - ref).max() > 5 * np.abs(got - ref).max()


def test_paganin_is_a_low_pass_that_keeps_the_mean_level():
    rng = np.random.default_rng(1)
    proj = np.exp(-(1.0 + 0.3 * rng.standard_normal((2, 64, 64)))).astype(np.float32)
    strong = paganin(proj, pixel_size=27.5e-9, distance=5e-3, energy_kev=8.4, delta_beta=100.0)
    raw = minus_log(proj)
    assert strong.std() < 0.5 * raw.std()  # noise is smoothed away
    uniform = np.full((1, 32, 32), 0.25, np.float32)
    np.testing.assert_allclose(paganin(uniform, pixel_size=1e-8, distance=1e-3, energy_kev=8.4, delta_beta=50.0),
                               -math.log(0.25), rtol=1e-5)  # zero frequency passes unchanged
    np.testing.assert_allclose(paganin(proj, pixel_size=1e-8, distance=1e-3, energy_kev=8.4, delta_beta=0.0),
                               raw, rtol=1e-5, atol=1e-5)  # delta/beta = 0: no filtering


def test_normalize_and_minus_log():
    rng = np.random.default_rng(2)
    flat = rng.uniform(900, 1100, (3, 8, 10))
    dark = rng.uniform(90, 110, (2, 8, 10))
    t = rng.uniform(0.2, 0.9, (4, 8, 10))
    data = dark.mean(0) + t * (flat.mean(0) - dark.mean(0))
    np.testing.assert_allclose(normalize(data, flat, dark), t, rtol=1e-5)
    np.testing.assert_allclose(minus_log(t.astype(np.float32)), -np.log(t), rtol=1e-5)
    assert np.isfinite(minus_log(np.zeros((2, 2)))).all()
    bad_flat = flat.mean(0).copy()
    bad_flat[0, 0] = dark.mean(0)[0, 0]
    assert normalize(data, bad_flat, dark)[0, 0, 0] == 1.0  # dead pixel: neutral value


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: paganin(np.ones((2, 8, 8)), pixel_size=0, distance=1e-3, energy_kev=8.4, delta_beta=1),
         ValueError, "pixel_size"),
        (lambda: paganin(np.ones((2, 8, 8)), pixel_size=1e-8, distance=-1, energy_kev=8.4, delta_beta=1),
         ValueError, "distance"),
        (lambda: paganin(np.zeros((2, 8, 8)), pixel_size=1e-8, distance=1e-3, energy_kev=8.4, delta_beta=1),
         ValueError, "transmission values > 0"),
        (lambda: paganin(np.ones((2, 8, 8)), pixel_size=1e-8, distance=1e-3, energy_kev=8.4, delta_beta=1,
                         pad="twice"), ValueError, "pad"),
        (lambda: paganin(np.ones((2, 8, 8)), pixel_size=1e-8, distance=1e-3, energy_kev=8.4, delta_beta=1,
                         pad=-3), ValueError, "pad"),
        (lambda: paganin(np.ones((8, 8)), pixel_size=1e-8, distance=1e-3, energy_kev=8.4, delta_beta=1),
         ValueError, "stack"),
        (lambda: normalize(np.ones((2, 8, 8)), np.ones((7, 8)), np.zeros((8, 8))), ValueError, "flat must match"),
        (lambda: minus_log([1.0]), TypeError, "numpy.ndarray"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
