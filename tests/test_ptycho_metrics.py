"""tomofuse.ptycho.object_error against hand-built cases: flat guess, the truth, known ambiguities, known noise."""

import math

import numpy as np
import pytest
import scipy.fft

from tomofuse import ptycho
from tomofuse.ptycho._metrics import _align

H, W = 128, 112


def _bandlimited(rng, shape, cutoff=0.15):
    """Periodic, band-limited (|f| <= cutoff cycles/pixel) real Gaussian field of unit standard deviation."""
    u = np.fft.fftfreq(shape[0])[:, None]
    v = np.fft.fftfreq(shape[1])[None, :]
    z = scipy.fft.ifft2(scipy.fft.fft2(rng.standard_normal(shape)) * ((u**2 + v**2) <= cutoff**2)).real
    return z / z.std()


def _fourier_shift(z, dy, dx):
    """``z`` moved by (+dy, +dx) pixels (periodic): ``out(r) = z(r - d)``."""
    u = np.fft.fftfreq(z.shape[0])[:, None]
    v = np.fft.fftfreq(z.shape[1])[None, :]
    return scipy.fft.ifft2(scipy.fft.fft2(z) * np.exp(-2j * math.pi * (u * dy + v * dx)))


@pytest.fixture(scope="module")
def weak_object():
    """A weak phase-and-amplitude object, ~0.5 rad rms phase, no phase ramp; and a well-scanned mask."""
    rng = np.random.default_rng(7)
    truth = np.exp(1j * 0.5 * _bandlimited(rng, (H, W)) - 0.05 * _bandlimited(rng, (H, W)))
    mask = np.zeros((H, W), dtype=bool)
    mask[16:-16, 12:-12] = True
    return truth, mask


def _contrast(truth, mask):
    t = truth[mask]
    return float(np.linalg.norm(t - t.mean()))


@pytest.mark.parametrize("value", [1.0, 3.0 - 2.0j, 1e-3j])
@pytest.mark.parametrize("use_mask", [False, True])
def test_flat_guess_scores_one(weak_object, value, use_mask):
    truth, mask = weak_object
    flat = np.full(truth.shape, value, dtype=np.complex64)
    err = ptycho.object_error(flat, truth, mask=mask if use_mask else None)
    assert err == pytest.approx(1.0, abs=1e-6)


def test_truth_scores_zero(weak_object):
    truth, mask = weak_object
    assert ptycho.object_error(truth, truth, mask=mask) < 1e-10
    assert ptycho.object_error(truth.astype(np.complex64), truth) < 1e-6


def test_denominator_is_the_contrast_without_a_ramp(weak_object):
    # estimate 0 -> residual ||t||; its ratio to the flat fit is ||t|| / contrast when the ramp gains nothing
    truth, mask = weak_object
    err = ptycho.object_error(np.zeros_like(truth), truth, mask=mask)
    expected = np.linalg.norm(truth[mask]) / _contrast(truth, mask)
    assert err == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize("shift, ramp, scale", [((0.37, -1.21), (0.031, -0.017), 0.7 * np.exp(0.4j)),
                                                ((-1.8, 0.05), (-0.2, 0.11), 2.5 * np.exp(-2.9j)),
                                                ((0.0, 0.0), (0.0, 0.0), -1.0)])
def test_ambiguities_are_removed_and_recovered(weak_object, shift, ramp, scale):
    truth, mask = weak_object
    y = (np.arange(H) - H // 2)[:, None]
    x = (np.arange(W) - W // 2)[None, :]
    est = scale * np.exp(1j * (ramp[0] * y + ramp[1] * x)) * _fourier_shift(truth, *shift)
    err, fit = _align(est, truth, mask=mask, max_shift=2.0)
    assert err < 1e-3  # the acceptance bar was < 0.02
    assert ptycho.object_error(est, truth, mask=mask) == pytest.approx(err, abs=1e-12)
    # the estimate was moved back by -shift, its ramp canceled and its scale divided out
    assert fit.shift == pytest.approx((-shift[0], -shift[1]), abs=1e-3)
    assert fit.ramp == pytest.approx((-ramp[0], -ramp[1]), abs=1e-5)
    assert abs(fit.scale) == pytest.approx(1.0 / abs(scale), rel=1e-4)
    assert np.max(np.abs(fit.aligned - truth)[mask]) < 1e-2


def test_shift_beyond_max_shift_is_not_removed(weak_object):
    truth, mask = weak_object
    est = _fourier_shift(truth, 3.4, 0.0)
    assert ptycho.object_error(est, truth, mask=mask, max_shift=4.0) < 1e-3
    assert ptycho.object_error(est, truth, mask=mask, max_shift=2.0) > 0.5
    assert ptycho.object_error(_fourier_shift(truth, 0.5, 0.0), truth, mask=mask, max_shift=0.0) > 0.2


@pytest.mark.parametrize("sigma", [0.02, 0.1])
def test_known_noise_gives_noise_to_contrast_ratio(weak_object, sigma):
    truth, mask = weak_object
    rng = np.random.default_rng(11)
    noise = sigma / math.sqrt(2) * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))
    err = ptycho.object_error(truth + noise, truth, mask=mask)
    # The best scale shrinks a noisy estimate, c = |t|^2 / (|t|^2 + |n|^2), which leaves the residual
    # |n| / sqrt(1 + |n|^2 / |t|^2); the shift and ramp (4 real parameters) absorb only ~4 of the
    # 2 M noise degrees of freedom.
    n_pix = int(mask.sum())
    t2 = float(np.sum(np.abs(truth[mask]) ** 2))
    analytic = sigma * math.sqrt(n_pix) / math.sqrt(1 + sigma**2 * n_pix / t2) / _contrast(truth, mask)
    assert err == pytest.approx(analytic, rel=0.03)
    n2 = float(np.sum(np.abs(noise[mask]) ** 2))
    realized = math.sqrt(n2 / (1 + n2 / t2)) / _contrast(truth, mask)
    assert err == pytest.approx(realized, rel=2e-3)


def test_pixels_outside_the_mask_do_not_count(weak_object):
    truth, mask = weak_object
    est = truth.copy()
    est[~mask] = 5.0 + 3.0j
    assert ptycho.object_error(est, truth, mask=mask, max_shift=0.0) < 1e-10
    assert ptycho.object_error(est, truth) > 1.0


def test_real_arrays_are_accepted():
    rng = np.random.default_rng(3)
    truth = 1.0 + 0.2 * _bandlimited(rng, (64, 64))
    assert ptycho.object_error(truth.astype(np.float32), truth) < 1e-5
    assert ptycho.object_error(np.ones((64, 64)), truth) == pytest.approx(1.0, abs=1e-6)


def test_truth_that_is_only_a_ramp_has_no_contrast():
    y = np.arange(32)[:, None]
    x = np.arange(40)[None, :]
    ramp = 2.0 * np.exp(1j * (0.1 * y - 0.05 * x))
    with pytest.raises(ValueError, match="no contrast"):
        ptycho.object_error(np.ones((32, 40)), ramp)
    with pytest.raises(ValueError, match="no contrast"):
        ptycho.object_error(np.ones((32, 40)), np.full((32, 40), 1 + 1j))


def _bad_cases():
    good = np.ones((16, 16), dtype=np.complex64)
    good[4, 5] = 2.0
    nan = good.copy()
    nan[2, 2] = np.nan
    mask = np.ones((16, 16), dtype=bool)
    return [
        (dict(estimate=good.tolist()), TypeError, "estimate"),
        (dict(truth=good.astype(object)), TypeError, "truth"),
        (dict(estimate=good[None]), ValueError, "estimate"),
        (dict(estimate=good[:, :8]), ValueError, "same shape"),
        (dict(truth=nan), ValueError, "truth must be finite"),
        (dict(estimate=np.full((16, 16), np.inf)), ValueError, "estimate must be finite"),
        (dict(mask=np.zeros((16, 16), dtype=bool)), ValueError, "mask"),
        (dict(mask=mask.astype(np.uint8)), TypeError, "mask"),
        (dict(mask=mask[:8]), ValueError, "mask"),
        (dict(mask=[[True] * 16] * 16), TypeError, "mask"),
        (dict(max_shift=-1.0), ValueError, "max_shift"),
        (dict(max_shift=float("nan")), ValueError, "max_shift"),
        (dict(max_shift=5.0), ValueError, "max_shift"),
        (dict(max_shift=True), TypeError, "max_shift"),
        (dict(max_shift="1"), TypeError, "max_shift"),
    ]


@pytest.mark.parametrize("override, exc, match", _bad_cases())
def test_bad_input(override, exc, match):
    good = np.ones((16, 16), dtype=np.complex64)
    good[4, 5] = 2.0
    args = dict(estimate=good, truth=good, mask=None, max_shift=2.0)
    args.update(override)
    with pytest.raises(exc, match=match):
        ptycho.object_error(args["estimate"], args["truth"], mask=args["mask"], max_shift=args["max_shift"])
