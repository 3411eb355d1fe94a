"""tomofuse.tomo.remove_phase_ramp: random constant + linear offsets are recovered."""

import numpy as np
import pytest

from tomofuse.tomo import remove_phase_ramp

A, R, C = 12, 60, 80


def simulated(seed=0, wrapped=True):
    """A smooth object phase (up to ~6 rad, so it wraps) on a sample region, air around it,
    plus a random constant in (-pi, pi) and slopes up to 0.05 rad/pixel per projection."""
    rng = np.random.default_rng(seed)
    rr, cc = np.meshgrid(np.arange(R), np.arange(C), indexing="ij")
    sample = (np.abs(cc - C / 2) < 22) & (rr > 5) & (rr < R - 5)
    obj = np.zeros((A, R, C))
    for a in range(A):
        obj[a][sample] = 6.0 * np.sin(0.1 * cc[sample] + a) ** 2 + 0.05 * rr[sample]
    const = rng.uniform(-np.pi, np.pi, A)
    sr, sc = rng.uniform(-0.05, 0.05, A), rng.uniform(-0.05, 0.05, A)
    ramp = const[:, None, None] + sr[:, None, None] * rr + sc[:, None, None] * cc
    phase = obj + ramp
    if wrapped:
        phase = np.angle(np.exp(1j * phase))
    return phase, obj, ~sample, np.stack([const, sr, sc], 1)


def test_recovers_offsets_from_the_air_region():
    phase, obj, air, truth = simulated()
    out, ramps = remove_phase_ramp(phase, mask=air, wrap=True, return_ramps=True)
    resid = np.angle(np.exp(1j * (out - obj)))  # compare modulo 2 pi (input was wrapped)
    assert np.sqrt(np.mean(resid**2)) < 1e-3
    np.testing.assert_allclose(ramps[:, 1:], truth[:, 1:], atol=1e-9)


def test_unwrapped_input_stays_unwrapped():
    phase, obj, air, _ = simulated(seed=1, wrapped=False)
    out = remove_phase_ramp(phase, mask=air)
    assert np.sqrt(np.mean((out - obj) ** 2)) < 1e-3  # no 2 pi jumps introduced


def test_noise_and_whole_frame():
    rng = np.random.default_rng(2)
    rr, cc = np.meshgrid(np.arange(R), np.arange(C), indexing="ij")
    phase = 0.3 + 0.01 * rr - 0.02 * cc + 0.01 * rng.standard_normal((R, C))
    out = remove_phase_ramp(phase.astype(np.float32))
    assert out.dtype == np.float32 and out.shape == (R, C)
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) < 0.0105  # only the noise is left


@pytest.mark.parametrize(
    "phase, kwargs, exc, match",
    [
        (np.zeros(5), {}, ValueError, "phase must be"),
        (np.zeros((4, 4), dtype=np.int64), {}, TypeError, "floating"),
        (np.full((4, 4), np.nan), {}, ValueError, "finite"),
        (np.zeros((4, 4)), dict(mask=np.ones((3, 4), bool)), ValueError, "mask must have shape"),
        (np.zeros((4, 4)), dict(mask=np.ones((4, 4))), TypeError, "bool"),
        (np.zeros((4, 4)), dict(mask=np.eye(4, dtype=bool)), ValueError, "neighboring pixels"),
    ],
)
def test_bad_input(phase, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        remove_phase_ramp(phase, **kwargs)
