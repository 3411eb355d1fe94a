"""tomofuse.ptycho.reconstruct: accuracy on a simulated scan of a known object, checkpoint/resume, bad input.

The acceptance case is the issue's: a weak phase object from the electrode phantom (projected, 0.8 rad
peak to peak), a focused probe, a Fermat spiral with 65 % linear overlap, 1e6 photons per pattern with
Poisson noise, 256^2 object / 64^2 probe / 266 positions (``bench/ptycho_case.py``, shared with the
pty-chi benchmark). The object error removes constant phase, phase ramp, scale and sub-pixel shift
(``tomofuse.ptycho.object_error``), so a flat guess scores 1.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from tomofuse import acquire, ptycho

CASE_MODULE = Path(__file__).resolve().parents[1] / "bench" / "ptycho_case.py"


@pytest.fixture(scope="module")
def small_case():
    spec = importlib.util.spec_from_file_location("ptycho_case", CASE_MODULE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_case("small", 0)


def _run(case, engines, **kw):
    return ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                              object_shape=tuple(case["object_shape"]), engines=engines, threads=2, **kw)


def _error(case, r):
    return ptycho.object_error(r.object, case["truth"], mask=case["mask"])


def test_acceptance_object_error_and_monotone_errors(small_case):
    flat = ptycho.object_error(np.ones_like(small_case["truth"]), small_case["truth"], mask=small_case["mask"])
    assert flat == pytest.approx(1.0, abs=1e-6)
    dm20 = _run(small_case, (("dm", 20),))
    e20 = _error(small_case, dm20)
    assert e20 <= 0.43
    full = _run(small_case, (("dm", 100), ("ml", 100)))
    e200 = _error(small_case, full)
    assert e200 <= 0.29
    (dm_name, dm_err), (ml_name, ml_err) = full.errors
    assert (dm_name, ml_name) == ("dm", "ml") and len(dm_err) == 100 and len(ml_err) == 100
    # DM's Fourier error of the model falls to the Poisson floor (#pixels / 4 / counts ~ 1e-3 here).
    assert dm_err[-1] < 0.5 * dm_err[0] and dm_err[-1] < 2e-3
    assert np.all(np.diff(ml_err) <= 0)  # ML: the Poisson NLL never increases
    # More DM iterations keep improving the object; longer ML does not diverge. (ML slowly fits
    # the Poisson noise: 0.085 after 100 + 100, 0.093 after 300 + 300 on this case; see ml_smoothness.)
    assert _error(small_case, _run(small_case, (("dm", 60),))) < e20
    longer = _run(small_case, (("dm", 200), ("ml", 200)))
    assert _error(small_case, longer) <= min(0.29, e200 * 1.15)


def test_checkpoint_resume_is_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    obj = np.exp(0.5j * rng.uniform(size=(64, 64))).astype(np.complex64)
    yy, xx = np.mgrid[:16, :16] - 8
    probe = np.exp(-(yy ** 2 + xx ** 2) / 12.0).astype(np.complex64)
    pos = rng.uniform(-18, 17, (30, 2))
    data = acquire.ptycho_scan(obj, probe, pos, photons=1e5, seed=2)
    kw = dict(object_shape=(64, 64), engines=(("dm", 7), ("ml", 6)), probe_modes=2, refine_positions=True,
              position_start=1, position_interval=2, threads=1, checkpoint_every=3)
    whole = ptycho.reconstruct(data, pos, probe, **kw)

    ckpt = tmp_path / "run.h5"
    calls = []

    def stop_after(n):
        def cb(fraction, message):
            calls.append(message)
            if sum(bool(re.fullmatch(r"(dm|ml) \d+/\d+", m)) for m in calls) == n:
                raise KeyboardInterrupt
        return cb

    import h5py

    # Interrupted after DM iteration 5 (checkpoint at DM 3), then, resumed from there, after ML
    # iteration 4 (DM 4-7, then ML 1-4; checkpoint at ML 3).
    for n, stage, iteration in ((5, 0, 3), (8, 1, 3)):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            ptycho.reconstruct(data, pos, probe, checkpoint=ckpt, callback=stop_after(n), **kw)
        with h5py.File(ckpt, "r") as f:
            assert (int(f.attrs["stage"]), int(f.attrs["iteration"])) == (stage, iteration)
    resumed = ptycho.reconstruct(data, pos, probe, checkpoint=ckpt, **kw)
    np.testing.assert_array_equal(resumed.object, whole.object)
    np.testing.assert_array_equal(resumed.probe, whole.probe)
    np.testing.assert_array_equal(resumed.positions_px, whole.positions_px)
    for (na, ea), (nb, eb) in zip(resumed.errors, whole.errors):
        assert na == nb
        np.testing.assert_array_equal(ea, eb)
    # a finished checkpoint returns the result without iterating
    calls.clear()
    again = ptycho.reconstruct(data, pos, probe, checkpoint=ckpt, callback=lambda f, m: calls.append(m), **kw)
    np.testing.assert_array_equal(again.object, whole.object)
    assert not any(re.fullmatch(r"(dm|ml) \d+/\d+", m) for m in calls)
    # a checkpoint of other data is refused
    with pytest.raises(ValueError, match="different data"):
        ptycho.reconstruct(data * 2, pos, probe, checkpoint=ckpt, **kw)


def test_bad_input():
    probe = np.ones((16, 16), np.complex64)
    data = np.ones((3, 16, 16), np.float32)
    pos = np.zeros((3, 2))
    with pytest.raises(ValueError, match="outside"):
        ptycho.reconstruct(data, pos + 100, probe, object_shape=(40, 40), engines=(("dm", 1),))
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        ptycho.reconstruct(bad, pos, probe, engines=(("dm", 1),))
    with pytest.raises(ValueError, match="non-negative"):
        ptycho.reconstruct(data - 2, pos, probe, engines=(("dm", 1),))
    with pytest.raises(ValueError, match="pattern size"):
        ptycho.reconstruct(data, pos, np.ones((8, 8), np.complex64), engines=(("dm", 1),))
    with pytest.raises(ValueError, match="empty"):
        ptycho.reconstruct(data[:0], pos[:0], probe, engines=(("dm", 1),))
    with pytest.raises(ValueError, match="positions_px"):
        ptycho.reconstruct(data, pos[:2], probe, engines=(("dm", 1),))
    with pytest.raises(ValueError, match="engines"):
        ptycho.reconstruct(data, pos, probe, engines=(("epie", 1),))
    with pytest.raises(ValueError, match="probe_modes"):
        ptycho.reconstruct(data, pos, probe, probe_modes=0)
    with pytest.raises(ValueError, match="mask"):
        ptycho.reconstruct(data, pos, probe, mask=np.ones((16, 16), bool))
