"""tomofuse._core.filter_real_2d (edge padding + rfft2 filter + crop, the Paganin kernel) against NumPy."""

import numpy as np
import pytest

from tomofuse import _core


def reference(frames, response, pad_ny, pad_nx):
    ny, nx = frames.shape[1:]
    top, left = (pad_ny - ny) // 2, (pad_nx - nx) // 2
    padded = np.pad(frames.astype(np.float64), ((0, 0), (top, pad_ny - ny - top), (left, pad_nx - nx - left)),
                    mode="edge")
    return np.fft.irfft2(np.fft.rfft2(padded) * response, s=(pad_ny, pad_nx))[:, top:top + ny, left:left + nx]


@pytest.mark.parametrize("shape, pad", [((3, 37, 50), (80, 96)), ((2, 16, 16), (16, 16)), ((1, 9, 14), (27, 15)),
                                        ((4, 1, 7), (3, 8))])
@pytest.mark.parametrize("rigor", ["estimate", "measure"])
def test_matches_numpy(shape, pad, rigor):
    rng = np.random.default_rng(sum(shape))
    frames = rng.random(shape).astype(np.float32)
    response = rng.random((pad[0], pad[1] // 2 + 1))
    # A real filter of real images is even in ky (every filter of the package is a function of |k|).
    # An uneven one makes the kx = 0 (and Nyquist) column non-Hermitian, which each FFT library's
    # c2r resolves in its own way (MKL and FFTW differ from numpy there): not a defined result.
    response = ((response + response[(-np.arange(pad[0])) % pad[0]]) / 2).astype(np.float32)
    got = _core.filter_real_2d(frames, response, pad_ny=pad[0], pad_nx=pad[1], rigor=rigor, threads=2)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, reference(frames, response, *pad), rtol=0, atol=2e-6)


def test_identity_response_and_threads():
    rng = np.random.default_rng(0)
    frames = rng.random((7, 24, 30)).astype(np.float32)
    ones = np.ones((48, 31), np.float32)
    runs = [_core.filter_real_2d(frames, ones, pad_ny=48, pad_nx=60, threads=t) for t in (1, 2, 4)]
    np.testing.assert_allclose(runs[0], frames, rtol=0, atol=1e-6)
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])


def test_bad_input():
    f = np.zeros((2, 8, 8), np.float32)
    r = np.ones((16, 9), np.float32)
    with pytest.raises(TypeError, match="frames"):
        _core.filter_real_2d(f.astype(np.float64), r, pad_ny=16, pad_nx=16)
    with pytest.raises(ValueError, match="frames"):
        _core.filter_real_2d(f[0], r, pad_ny=16, pad_nx=16)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.filter_real_2d(f[:, :, ::2], r, pad_ny=16, pad_nx=16)
    with pytest.raises(ValueError, match="pad_ny"):
        _core.filter_real_2d(f, r, pad_ny=4, pad_nx=16)
    with pytest.raises(ValueError, match="response"):
        _core.filter_real_2d(f, np.ones((16, 16), np.float32), pad_ny=16, pad_nx=16)
    with pytest.raises(ValueError, match="rigor"):
        _core.filter_real_2d(f, r, pad_ny=16, pad_nx=16, rigor="patient")
    with pytest.raises(ValueError, match="threads"):
        _core.filter_real_2d(f, r, pad_ny=16, pad_nx=16, threads=-1)
