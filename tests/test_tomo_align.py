"""tomofuse.tomo.align_projections / shift_projections.

Shifts are checked against analytic images (a sampled Gaussian, integer rolls) and against
scipy.ndimage.shift; the alignment against the random shifts the PXCT simulator applied
(tomofuse.acquire.pxct_phase), after removing the components no alignment can observe:
a common vertical shift (the object moved along the rotation axis) and a horizontal
``a cos(theta) + b sin(theta)`` (the object moved within the slice plane).
"""

import math

import numpy as np
import pytest
from scipy import ndimage

from tomofuse.acquire import PXCTOptions, pxct_phase
from tomofuse.phantom import electrode
from tomofuse.tomo import AlignmentOptions, align_projections, remove_phase_ramp, shift_projections

A = 90
THETA = np.linspace(0, np.pi, A, endpoint=False)


@pytest.fixture(scope="module")
def sample():
    """A 64 x 48 x 48 electrode at the paper's PXCT voxel size (21.4 nm)."""
    return electrode((64, 48, 48), 21.4e-9, seed=1, truth_samples=1000)


def residual(estimate, truth, theta):
    """RMS (dy, dx) error after removing the unobservable mean dy and a cos + b sin of dx."""
    ey = estimate[:, 0] - truth[:, 0]
    ey = ey - ey.mean()
    ex = estimate[:, 1] - truth[:, 1]
    basis = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, ex, rcond=None)
    ex_all = ex - basis[:, 1:] @ coef[1:]  # the constant (rotation axis) is observable and kept
    return math.sqrt(np.mean(ey**2)), math.sqrt(np.mean((ex - basis @ coef) ** 2)), math.sqrt(np.mean(ex_all**2))


# ----------------------------------------------------------------------------- shift_projections

def gaussian_frames(shifts, shape=(40, 50), sigma=3.0, center=(18.0, 24.0)):
    r = np.arange(shape[0])[:, None]
    c = np.arange(shape[1])[None, :]
    return np.stack([np.exp(-((r - center[0] - dy) ** 2 + (c - center[1] - dx) ** 2) / (2 * sigma**2))
                     for dy, dx in shifts])


def test_fourier_shift_moves_a_gaussian_exactly():
    shifts = np.array([[1.3, -2.7], [-0.45, 0.8], [4.9, 3.25]])
    moved = shift_projections(gaussian_frames(np.zeros((3, 2))), shifts)
    np.testing.assert_allclose(moved, gaussian_frames(shifts), atol=1e-6)


def test_linear_shift_matches_scipy():
    rng = np.random.default_rng(0)
    frames = rng.random((4, 20, 30))
    shifts = rng.uniform(-3, 3, (4, 2))
    out = shift_projections(frames, shifts, mode="linear")
    for a in range(4):
        ref = ndimage.shift(frames[a], shifts[a], order=1, mode="nearest")
        np.testing.assert_allclose(out[a], ref, atol=1e-12)


@pytest.mark.parametrize("mode", ["fourier", "linear"])
def test_integer_shifts_are_rolls(mode):
    rng = np.random.default_rng(1)
    frames = rng.random((2, 24, 32)).astype(np.float32)
    shifts = np.array([[3.0, -2.0], [-1.0, 5.0]])
    out = shift_projections(frames, shifts, mode=mode)
    assert out.dtype == np.float32
    for a, (dy, dx) in enumerate(shifts.astype(int)):
        np.testing.assert_allclose(out[a, 6:-6, 6:-6], np.roll(frames[a], (dy, dx), (0, 1))[6:-6, 6:-6],
                                   atol=2e-5)


def test_fourier_round_trip():
    frames = gaussian_frames(np.zeros((2, 2)), sigma=2.0)
    shifts = np.array([[0.37, -1.61], [2.2, 0.05]])
    back = shift_projections(shift_projections(frames, shifts), -shifts)
    np.testing.assert_allclose(back, frames, atol=1e-6)


# ----------------------------------------------------------------------------- align_projections

def test_recovers_random_pxct_shifts(sample):
    """The acceptance: +-5 px random shifts, wrapped phase with random offsets and noise -> < 0.2 px RMS."""
    ds = pxct_phase(sample, THETA, shifts=5.0, options=PXCTOptions(noise=0.03), seed=4)
    assert np.max(np.abs(ds.truth["shifts"])) > 4.5
    phase = remove_phase_ramp(ds.data, mask=ds.air_mask, wrap=True)
    assert np.min(phase) > -math.pi / 2  # the object phase never wraps: ramp removal unwraps it
    fractions = []
    est = align_projections(phase, THETA, air_mask=ds.air_mask, callback=lambda f, m: fractions.append(f))
    assert est.shape == (A, 2) and est.dtype == np.float64
    rms_y, rms_x, rms_x_with_axis = residual(est, ds.truth["shifts"], THETA)
    assert rms_y < 0.2 and rms_x < 0.2
    assert rms_x_with_axis < 0.2  # the rotation axis (constant dx) is found too
    assert abs(est[:, 0].mean()) < 1e-9  # gauge: zero-mean vertical shifts
    assert fractions and fractions[-1] == 1.0 and all(0 <= f <= 1 for f in fractions)
    assert all(b >= a - 1e-12 for a, b in zip(fractions, fractions[1:]))
    # undoing the estimate leaves only the unobservable object translation
    aligned = shift_projections(phase, -est)
    again = align_projections(aligned, THETA, air_mask=ds.air_mask, options=AlignmentOptions(iterations=2))
    assert np.sqrt(np.mean(again**2)) < 0.15  # noise level (the first estimate is ~0.06 px off)


def test_unobservable_components_are_fixed_by_convention(sample):
    """A pure object translation (common dy, a cos + b sin in dx) is not a misalignment; an axis offset is."""
    dy = np.full(A, 1.3)
    dx = 1.5 + 2.0 * np.cos(THETA) - 1.5 * np.sin(THETA)
    ds = pxct_phase(sample, THETA, shifts=np.stack([dy, dx], 1), options=PXCTOptions(phase_offsets=False, wrap=False))
    est = align_projections(ds.data, THETA, air_mask=ds.air_mask,
                            options=AlignmentOptions(schedule=(2, 1)))  # coarse-to-fine
    np.testing.assert_allclose(est[:, 0], 0.0, atol=0.1)
    np.testing.assert_allclose(est[:, 1], 1.5, atol=0.1)  # the constant: axis 1.5 px off the center


def test_vertical_only_from_mass_profiles(sample):
    ds = pxct_phase(sample, THETA[::3], shifts=4.0, options=PXCTOptions(phase_offsets=False, wrap=False), seed=2)
    est = align_projections(ds.data, THETA[::3], horizontal=False, air_mask=ds.air_mask)
    np.testing.assert_array_equal(est[:, 1], 0.0)
    rms_y, _, _ = residual(est, ds.truth["shifts"] * [1, 0], THETA[::3])
    assert rms_y < 0.05


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(projections=np.zeros((4, 16))), ValueError, "3 dimensions"),
        (dict(angles=np.zeros(3)), ValueError, "expected 4 angles"),
        (dict(projections=np.full((4, 16, 16), np.nan)), ValueError, "finite"),
        (dict(projections=np.zeros((4, 16, 16), complex)), TypeError, "real numbers"),
        (dict(projections=np.zeros((4, 6, 16))), ValueError, "at least 8 x 8"),
        (dict(mask=np.ones((16, 15), bool)), ValueError, "mask must have shape"),
        (dict(mask=np.ones((16, 16))), TypeError, "bool"),
        (dict(air_mask=np.eye(16, dtype=bool)), ValueError, "not on one line"),
        (dict(options=dict(schedule=(2,))), ValueError, "ending at 1"),
        (dict(options=dict(schedule=(1, 2, 1))), ValueError, "decreasing"),
        (dict(options=dict(max_shift=7)), ValueError, "too large"),
        (dict(options=dict(max_shift=-1)), ValueError, "max_shift"),
        (dict(options=dict(smoothing=-1.0)), ValueError, "smoothing"),
        (dict(options=dict(tolerance=0)), ValueError, "tolerance"),
        (dict(options=dict(iterations=0)), ValueError, "iterations"),
        (dict(options=(3,)), TypeError, "AlignmentOptions"),
        (dict(center=17.0), ValueError, "center"),
    ],
)
def test_align_bad_input(kwargs, exc, match):
    args = dict(projections=np.zeros((4, 16, 16)), angles=np.linspace(0, np.pi, 4, endpoint=False))
    args.update(kwargs)
    proj = args.pop("projections")
    angles = args.pop("angles")
    with pytest.raises(exc, match=match):
        if isinstance(args.get("options"), dict):  # the options object checks its own fields
            args["options"] = AlignmentOptions(**args["options"])
        align_projections(proj, angles, **args)


@pytest.mark.parametrize(
    "shifts, kwargs, exc, match",
    [
        (np.zeros((3, 2)), {}, ValueError, r"shape \(2, 2\)"),
        (np.zeros(2), {}, ValueError, "shape"),
        (np.full((2, 2), np.inf), {}, ValueError, "finite"),
        (np.zeros((2, 2)), dict(mode="cubic"), ValueError, "mode must be one of"),
    ],
)
def test_shift_bad_input(shifts, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        shift_projections(np.zeros((2, 8, 8)), shifts, **kwargs)
