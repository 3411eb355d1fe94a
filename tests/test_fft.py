"""Batched 2-D FFT of the compiled core (tomofuse._core) against numpy.fft."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
from importlib import metadata

import numpy as np
import pytest

from tomofuse import _core

NORMS = ("backward", "ortho", "forward")
SHAPES = (
    (16, 16),
    (5, 3, 16, 16),  # two batch axes
    (1, 7, 11),  # prime sizes
    (2, 12, 10),  # non-square
    (3, 1, 9),  # a single row
    (4, 9, 1),  # a single column
    (2, 64, 48),
)


def random_complex64(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def assert_fft_close(got, ref):
    """Float32 FFT accuracy: error relative to the largest value ~ eps * log2(n)."""
    assert got.dtype == np.complex64
    assert got.shape == ref.shape
    n = ref.shape[-1] * ref.shape[-2]
    rtol = 1e-6 * max(1.0, np.log2(n))
    scale = np.max(np.abs(ref)) if ref.size else 1.0
    err = np.max(np.abs(got.astype(np.complex128) - ref)) if ref.size else 0.0
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:.3g} * {scale:.3g}"


def misaligned_copy(a):
    """A copy of ``a`` whose data pointer is 8 bytes off any 16-byte boundary."""
    buf = np.empty(a.size + 2, dtype=np.complex64)
    offset = 1 if buf.ctypes.data % 16 == 0 else 0
    out = buf[offset : offset + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 16 == 8
    assert out.flags.c_contiguous
    return out


# --------------------------------------------------------------------------
# Accuracy against numpy.fft
# --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_numpy(shape, norm):
    a = random_complex64(shape, seed=1)
    got = _core.fft2(a, norm=norm)
    assert_fft_close(got, np.fft.fft2(a.astype(np.complex128), norm=norm))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_inverse_matches_numpy(shape, norm):
    a = random_complex64(shape, seed=2)
    got = _core.fft2(a, inverse=True, norm=norm)
    assert_fft_close(got, np.fft.ifft2(a.astype(np.complex128), norm=norm))


def test_norm_none_is_backward():
    a = random_complex64((2, 8, 6))
    np.testing.assert_array_equal(_core.fft2(a, norm=None), _core.fft2(a))
    np.testing.assert_array_equal(
        _core.fft2(a, inverse=True, norm=None), _core.fft2(a, inverse=True, norm="backward")
    )


@pytest.mark.parametrize("norm", NORMS)
def test_round_trip(norm):
    a = random_complex64((3, 20, 30), seed=3)
    back = _core.fft2(_core.fft2(a, norm=norm), inverse=True, norm=norm)
    assert_fft_close(back, a.astype(np.complex128))


def test_input_is_not_modified():
    a = random_complex64((3, 16, 16))
    before = a.copy()
    _core.fft2(a)
    _core.fft2(a, inverse=True, norm="ortho")
    np.testing.assert_array_equal(a, before)


def test_misaligned_arrays():
    a = random_complex64((3, 7, 5), seed=4)
    src = misaligned_copy(a)
    assert_fft_close(_core.fft2(src), np.fft.fft2(a.astype(np.complex128)))
    out = misaligned_copy(np.zeros_like(a))
    res = _core.fft2(a, out=out, inverse=True)
    assert res is out
    assert_fft_close(out, np.fft.ifft2(a.astype(np.complex128)))
    # In place on a misaligned array.
    _core.fft2(src, out=src, norm="ortho")
    assert_fft_close(src, np.fft.fft2(a.astype(np.complex128), norm="ortho"))


def test_empty_batch():
    a = np.empty((0, 8, 8), dtype=np.complex64)
    res = _core.fft2(a)
    assert res.shape == (0, 8, 8)
    assert res.dtype == np.complex64


# --------------------------------------------------------------------------
# out=, in place, threads
# --------------------------------------------------------------------------


@pytest.mark.parametrize("inverse", [False, True])
def test_in_place(inverse):
    a = random_complex64((5, 3, 16, 16), seed=5)
    b = a.copy()
    res = _core.fft2(b, out=b, inverse=inverse, norm="ortho")
    assert res is b
    ref = (np.fft.ifft2 if inverse else np.fft.fft2)(a.astype(np.complex128), norm="ortho")
    assert_fft_close(b, ref)


def test_out_argument_is_filled_and_returned():
    a = random_complex64((2, 12, 10))
    out = np.full_like(a, np.nan)
    res = _core.fft2(a, out=out)
    assert res is out
    np.testing.assert_array_equal(out, _core.fft2(a))


@pytest.mark.parametrize("shape", [(272, 64, 64), (9, 7, 11), (3, 2, 5, 5)])
@pytest.mark.parametrize("inverse", [False, True])
def test_threads_bitwise_identical(shape, inverse):
    a = random_complex64(shape, seed=6)
    one = _core.fft2(a, inverse=inverse, threads=1)
    two = _core.fft2(a, inverse=inverse, threads=2)
    default = _core.fft2(a, inverse=inverse)
    many = _core.fft2(a, inverse=inverse, threads=7)  # more threads than cores
    assert one.tobytes() == two.tobytes()
    assert one.tobytes() == default.tobytes()
    assert one.tobytes() == many.tobytes()


def test_concurrent_calls_from_python_threads():
    """The GIL is released during the transform; concurrent calls stay correct."""
    arrays = [random_complex64((8, 32, 32), seed=s) for s in range(6)]
    expected = [_core.fft2(a, threads=1) for a in arrays]
    plan = _core.FFTPlan2D(32, 32)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        got = list(pool.map(lambda a: _core.fft2(a, threads=1), arrays))
        got_plan = list(pool.map(lambda a: plan.forward(a, threads=1), arrays))
    for e, g, gp in zip(expected, got, got_plan):
        np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(gp, e)


def test_default_threads_setting():
    original = _core.default_threads()
    assert original >= 1
    try:
        _core.set_default_threads(1)
        assert _core.default_threads() == 1
        a = random_complex64((4, 8, 8))
        np.testing.assert_array_equal(_core.fft2(a), _core.fft2(a, threads=2))
    finally:
        _core.set_default_threads(0)
    assert _core.default_threads() == original
    with pytest.raises(ValueError):
        _core.set_default_threads(-1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_parallel_use_does_not_hang():
    """GNU OpenMP deadlocks in a forked child of a process that ran a parallel
    region; the core falls back to one thread there instead."""
    script = textwrap.dedent(
        """
        import os
        import numpy as np
        from tomofuse import _core
        a = np.ones((16, 16, 16), np.complex64)
        _core.fft2(a, threads=2)
        pid = os.fork()
        if pid == 0:
            r = _core.fft2(a, threads=2)
            ok = r[0, 0, 0] == 256 and _core.default_threads() == 1
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------
# FFTPlan2D
# --------------------------------------------------------------------------


def test_plan_reuse():
    plan = _core.FFTPlan2D(16, 12)
    assert plan.shape == (16, 12)
    assert (plan.ny, plan.nx) == (16, 12)
    assert plan.rigor == "estimate"
    assert "FFTPlan2D(ny=16, nx=12" in repr(plan)
    for seed, shape in enumerate([(16, 12), (3, 16, 12), (2, 2, 16, 12)]):
        a = random_complex64(shape, seed=seed)
        f = plan.forward(a)
        assert_fft_close(f, np.fft.fft2(a.astype(np.complex128)))
        np.testing.assert_array_equal(f, _core.fft2(a))
        b = plan.backward(a, norm="forward")
        assert_fft_close(b, np.fft.ifft2(a.astype(np.complex128), norm="forward"))
        assert_fft_close(plan.backward(plan.forward(a)), a.astype(np.complex128))


def test_plan_in_place_and_out():
    plan = _core.FFTPlan2D(8, 8)
    a = random_complex64((4, 8, 8))
    b = a.copy()
    assert plan.forward(b, b) is b
    out = np.empty_like(a)
    assert plan.forward(a, out=out, threads=1) is out
    np.testing.assert_array_equal(b, out)


def test_plan_measure():
    plan = _core.FFTPlan2D(24, 20, rigor="measure")
    assert plan.rigor == "measure"
    a = random_complex64((3, 24, 20))
    assert_fft_close(plan.forward(a, norm="ortho"), np.fft.fft2(a.astype(np.complex128), norm="ortho"))


def test_plan_bad_arguments():
    with pytest.raises(ValueError, match="ny must be > 0"):
        _core.FFTPlan2D(0, 4)
    with pytest.raises(ValueError, match="nx must be > 0"):
        _core.FFTPlan2D(4, -1)
    with pytest.raises(ValueError, match="rigor"):
        _core.FFTPlan2D(4, 4, rigor="patient")
    plan = _core.FFTPlan2D(8, 8)
    with pytest.raises(ValueError, match=r"\(\.\.\., 8, 8\).*\(2, 8, 6\)"):
        plan.forward(random_complex64((2, 8, 6)))


# --------------------------------------------------------------------------
# Bad input: clear errors, named arguments, never a crash
# --------------------------------------------------------------------------


def test_error_classes():
    assert issubclass(_core.InvalidArgument, ValueError)
    assert issubclass(_core.ShapeError, _core.InvalidArgument)
    assert issubclass(_core.ShapeError, ValueError)
    assert issubclass(_core.DTypeError, TypeError)
    assert issubclass(_core.DTypeError, _core.InvalidArgument)
    assert issubclass(_core.Error, RuntimeError)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_wrong_dtype_is_type_error(dtype):
    a = np.zeros((4, 4), dtype=dtype)
    with pytest.raises(TypeError) as info:
        _core.fft2(a)
    assert isinstance(info.value, _core.DTypeError)
    msg = str(info.value)
    assert msg.startswith("a ")
    assert "complex64" in msg
    assert np.dtype(dtype).name in msg


def test_non_native_byte_order_is_type_error():
    a = np.zeros((4, 4), dtype=np.dtype(np.complex64).newbyteorder())
    with pytest.raises(TypeError):
        _core.fft2(a)


def test_not_an_array_is_type_error():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        _core.fft2([[1j, 2j], [3j, 4j]])


def test_non_contiguous_is_value_error():
    a = random_complex64((4, 16, 16))
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        _core.fft2(a[:, ::2, :])
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.fft2(np.asfortranarray(a[0]))


@pytest.mark.parametrize("shape", [(16,), ()])
def test_too_few_dimensions_is_value_error(shape):
    a = np.zeros(shape, dtype=np.complex64)
    with pytest.raises(ValueError, match=r"a must have at least 2 dimensions"):
        _core.fft2(a)


def test_empty_frames_are_value_error():
    with pytest.raises(ValueError, match="non-empty"):
        _core.fft2(np.zeros((3, 0, 4), dtype=np.complex64))


def test_bad_out():
    a = random_complex64((2, 8, 8))
    with pytest.raises(ValueError, match=r"out must have the shape of a, \(2, 8, 8\), got \(8, 8\)"):
        _core.fft2(a, out=np.empty((8, 8), dtype=np.complex64))
    with pytest.raises(TypeError, match="out must have dtype complex64"):
        _core.fft2(a, out=np.empty((2, 8, 8), dtype=np.complex128))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        _core.fft2(a, out=np.empty((2, 8, 16), dtype=np.complex64)[:, :, ::2])
    ro = np.empty_like(a)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        _core.fft2(a, out=ro)
    buf = np.zeros((3, 8, 8), dtype=np.complex64)
    with pytest.raises(ValueError, match="share memory"):
        _core.fft2(buf[:2], out=buf[1:])


def test_bad_norm_and_threads():
    a = random_complex64((8, 8))
    with pytest.raises(ValueError, match="norm must be"):
        _core.fft2(a, norm="unitary")
    with pytest.raises(ValueError, match="threads must be >= 0"):
        _core.fft2(a, threads=-2)


# --------------------------------------------------------------------------
# Module metadata
# --------------------------------------------------------------------------


def test_version():
    assert _core.__version__ == _core.version()
    assert metadata.version("tomofuse").startswith(_core.__version__)


def test_openmp_flag():
    assert isinstance(_core.openmp_enabled(), bool)
    if not _core.openmp_enabled():
        assert _core.default_threads() == 1
