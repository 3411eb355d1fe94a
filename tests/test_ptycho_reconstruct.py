"""tomofuse.ptycho.reconstruct: accuracy on a simulated scan of a known object, checkpoint/resume, bad input.

The acceptance case: a weak phase object from the electrode phantom (projected, 0.8 rad
peak to peak), a focused probe, a Fermat spiral with 65 % linear overlap, 1e6 photons per pattern with
Poisson noise, 256^2 object / 64^2 probe / 266 positions (``bench/ptycho_case.py``, shared with the
pty-chi benchmark). The object error removes constant phase, phase ramp, scale and sub-pixel shift
(``tomofuse.ptycho.object_error``), so a flat guess scores 1.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tomofuse import acquire, ptycho

CASE_MODULE = Path(__file__).resolve().parents[1] / "bench" / "ptycho_case.py"
FAMILY_MODULE = Path(__file__).resolve().parents[1] / "bench" / "ptycho_family.py"


@pytest.fixture(scope="module")
def small_case():
    spec = importlib.util.spec_from_file_location("ptycho_case", CASE_MODULE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_case("small", 0)


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def family_member():
    """Member 9 of the robustness family (bench/ptycho_family.py): a projected electrode, 0.42 rad, a probe with
    coma (0.91 rad) and astigmatism (0.41 rad) started from an unaberrated guess 22 % too small, 86 positions at
    55 % overlap, 1e6 photons, 0.3-px position errors -- not the model the engines were tuned on."""
    return _load(FAMILY_MODULE, "ptycho_family").make_member(9)


def test_family_member_with_an_aberrated_probe(family_member):
    """The shifted-probe difference map's probe update used to diverge here (object error 4.6 after DM 20,
    1.40 after DM 100, 1.04 after ML 100: worse than a flat guess); measured now 0.61 and 0.325."""
    case = family_member
    kw = dict(object_shape=case["truth"].shape, threads=2)
    dm = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"], engines=(("dm", 100),), **kw)
    both = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                              engines=(("dm", 100), ("ml", 100)), **kw)
    e_dm = ptycho.object_error(dm.object, case["truth"], mask=case["mask"])
    e_ml = ptycho.object_error(both.object, case["truth"], mask=case["mask"])
    assert e_dm < 0.70 and e_ml < 0.40 and e_ml < 0.7 * e_dm, (e_dm, e_ml)


def test_held_out_patterns_stop_ml_before_it_fits_the_noise():
    """Member 1 of the robustness family: 85 photons per object pixel, three probe modes, 115 patterns.  ML's
    probe refinement fits the noise there: with every pattern used the object error after DM 100 + ML 300 is far
    above its value after ML 100 (measured 3.04 vs 2.12).  Five held-out patterns (HoldOut, the default)
    stop ML near the best iterate (measured: stopped at ML 110, the iterate of ML 60 returned, 2.20)."""
    fam = _load(FAMILY_MODULE, "ptycho_family")
    case = fam.make_member(1)
    prm = fam.member_parameters(1)
    kw = dict(object_shape=case["truth"].shape, probe_modes=prm["modes"], threads=2)

    def error(r):
        return ptycho.object_error(r.object, case["truth"], mask=case["mask"])

    short = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                               engines=(("dm", 100), ("ml", 100)), holdout=False, **kw)
    long_ = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                               engines=(("dm", 100), ("ml", 300)), holdout=False, **kw)
    held = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                              engines=(("dm", 100), ("ml", 300)), **kw)
    assert short.held_out is None and long_.held_out is None and held.held_out.sum() == 5
    assert held.positions_px.shape == case["positions_px"].shape
    e_short, e_long, e_held = error(short), error(long_), error(held)
    assert e_long > 1.3 * e_short, (e_short, e_long)  # the case overfits (else the test proves nothing)
    assert e_held < 1.1 * e_short and len(held.errors[1][1]) < 300, (e_short, e_held, len(held.errors[1][1]))


def test_ml_position_refinement_on_a_member_with_position_errors():
    """Member 5 of the robustness family: 1.5 px rms position errors, 52 % overlap, 100 patterns.  DM's refinement
    leaves most of the error (its real-space steps are small); ML's Gauss-Newton steps of the amplitude misfit,
    judged by the held-out patterns, take the object error after DM 100 + ML 300 from 0.424 to 0.228 and the
    positions' rms error (mean removed) from 1.12 to 0.49 px (measured)."""
    fam = _load(FAMILY_MODULE, "ptycho_family")
    case = fam.make_member(5)
    prm = fam.member_parameters(5)
    kw = dict(object_shape=case["truth"].shape, probe_modes=prm["modes"], engines=(("dm", 100), ("ml", 300)),
              threads=2)
    out = {}
    for ml_start in (None, 100):
        r = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                               refine_positions=ptycho.PositionRefinement(ml_start=ml_start), **kw)
        true = case["positions_true"][~r.held_out]
        d = r.positions_px[~r.held_out] - true
        d -= d.mean(axis=0)
        out[ml_start] = (ptycho.object_error(r.object, case["truth"], mask=case["mask"]),
                         float(np.sqrt((d ** 2).sum(axis=1).mean())))
    assert out[100][0] < 0.75 * out[None][0], out
    assert out[100][1] < 0.75 * out[None][1], out


def test_defocus_search_recovers_a_wrong_probe_guess():
    """An initial probe whose beam is 40 % too small (a wrong sample-to-focus distance) and unaberrated, against data
    from an aberrated probe: with the search (the default) DM starts from a refocused probe and ends far better than
    from the guess as given (measured 0.30 vs 1.04 after DM 100, the guess of family member 8, 40 % off)."""
    fam = _load(FAMILY_MODULE, "ptycho_family")
    prm = dict(fam.member_parameters(8))  # an image object, 1.3 rad, 2 modes, coma 1.16 rad, central stop
    prm.update(modes=1, position_error=0.0)
    case = fam.make_case(prm)
    kw = dict(object_shape=case["truth"].shape, engines=(("dm", 100),), threads=2)
    off = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                             dm=ptycho.DMOptions(defocus_search=0), **kw)
    on = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"], **kw)
    e_off = ptycho.object_error(off.object, case["truth"], mask=case["mask"])
    e_on = ptycho.object_error(on.object, case["truth"], mask=case["mask"])
    assert e_on < 0.6 * e_off, (e_on, e_off)
    # the refocused probe is wider, as the true one is (the guess is 40 % too small)
    def width(p):
        q = np.sum(np.abs(p) ** 2, axis=0)
        y, x = np.mgrid[:q.shape[0], :q.shape[1]]
        cy, cx = (q * y).sum() / q.sum(), (q * x).sum() / q.sum()
        return np.sqrt((q * ((y - cy) ** 2 + (x - cx) ** 2)).sum() / q.sum())
    assert width(on.probe) > 1.15 * width(case["probe"][None])


def _run(case, engines, **kw):
    return ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"],
                              object_shape=tuple(case["object_shape"]), engines=engines, threads=2, **kw)


def _error(case, r):
    return ptycho.object_error(r.object, case["truth"], mask=case["mask"])


def test_dm_error_interval_reports_without_changing_the_iterate(small_case):
    # the model's Fourier error costs an FFT per pattern: computed at the stage's first and last iteration and every
    # error_interval, NaN in between -- the same values as computing it every time, and the same object bit for bit
    dm = ptycho.DMOptions(defocus_search=0)
    every = _run(small_case, (("dm", 25),), dm=replace(dm, error_interval=1), holdout=False)
    sparse = _run(small_case, (("dm", 25),), dm=replace(dm, error_interval=10), holdout=False)
    e1, e10 = np.asarray(every.errors[0][1]), np.asarray(sparse.errors[0][1])
    assert np.all(np.isfinite(e1)) and len(e1) == len(e10) == 25
    assert np.flatnonzero(np.isfinite(e10)).tolist() == [0, 9, 19, 24]
    np.testing.assert_array_equal(e10[[0, 9, 19, 24]], e1[[0, 9, 19, 24]])
    np.testing.assert_array_equal(sparse.object, every.object)
    np.testing.assert_array_equal(sparse.probe, every.probe)
    with pytest.raises(ValueError, match="error_interval"):
        ptycho.DMOptions(error_interval=0)


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
    assert (dm_name, ml_name) == ("dm", "ml") and len(dm_err) == 100 and 10 <= len(ml_err) <= 100
    # DM's Fourier error of the model falls to the Poisson floor (#pixels / 4 / counts ~ 1e-3 here).
    assert dm_err[-1] < 0.5 * dm_err[0] and dm_err[-1] < 2e-3
    assert np.all(np.diff(ml_err) <= 0)  # ML: the objective (Poisson NLL + prior) never increases
    plain = _run(small_case, (("dm", 100), ("ml", 30)), ml=ptycho.MLOptions(smoothness=0.0, smoothness_counts=0.0))
    assert np.all(np.diff(plain.errors[1][1]) <= 0)  # without the prior: the Poisson NLL itself
    # More iterations do not make the object worse, within issue 15's 2 % between checkpoints (measured with
    # the default position refinement: DM 0.266 / 0.205 after 20 / 60; DM + ML 0.0596 / 0.0604 / 0.0599 after
    # 100 + 100 / 200 + 200 / 300 + 300; without it 0.0595 / 0.0600 / 0.0599).
    assert _error(small_case, _run(small_case, (("dm", 60),))) < e20
    longer = _run(small_case, (("dm", 200), ("ml", 200)))
    assert _error(small_case, longer) <= e200 * 1.02


# (patterns, engines, held-out patience, interrupts: (progress messages, checkpoint stage, iteration)).  30 patterns
# hold none out.  120 at 50 photons hold 5 out (measured): after DM 25, ML's held-out deviance is lowest at its start
# (ML 0, 10, 20), so ML stops at 20 (patience 20) and returns its start; DM alone (the last stage, so its result is
# its iterate of the lowest held-out deviance) is lowest at DM 50 of 10 .. 70.  The interrupts fall after ML 10's
# and DM 60's evaluations (checkpoints at ML 12, DM 60): the resumed runs must take the rules' state from them.
# The last case refines positions in ML from ML 10 every 10, each refinement judged at the next by the held-out
# deviance (measured: refined at ML 10, undone at ML 20): interrupted after ML 13 (checkpoint at ML 12) and, resumed,
# after ML 26 (checkpoint at ML 24), the resumed runs must take the iterate before the last refinement and its
# deviance, then that refinement is off, from the checkpoints.
@pytest.mark.parametrize("count,engines,patience,interrupts,ml_start", [
    (30, (("dm", 7), ("ml", 6)), 50, ((5, 0, 3), (8, 1, 3)), None),
    (120, (("dm", 25), ("ml", 200)), 20, ((5, 0, 3), (35, 1, 12)), None),
    (120, (("dm", 70),), 20, ((62, 0, 60),), None),
    (120, (("dm", 25), ("ml", 45)), 50, ((38, 1, 12), (14, 1, 24)), 10),
])
def test_checkpoint_resume_is_bit_exact(tmp_path, count, engines, patience, interrupts, ml_start):
    rng = np.random.default_rng(1)
    obj = np.exp(0.5j * rng.uniform(size=(64, 64))).astype(np.complex64)
    yy, xx = np.mgrid[:16, :16] - 8
    probe = np.exp(-(yy ** 2 + xx ** 2) / 12.0).astype(np.complex64)
    pos = rng.uniform(-18, 17, (count, 2))
    data = acquire.ptycho_scan(obj, probe, pos, photons=1e5 if count == 30 else 50, seed=2)
    kw = dict(object_shape=(64, 64), engines=engines, probe_modes=2,
              refine_positions=ptycho.PositionRefinement(start=1, interval=2, ml_start=ml_start),
              threads=1, checkpoint_every=3, holdout=ptycho.HoldOut(patience=patience))
    whole = ptycho.reconstruct(data, pos, probe, **kw)
    assert (whole.held_out is None) == (count == 30)
    if ml_start is not None:  # ML's refinement changed the run
        fixed = ptycho.reconstruct(data, pos, probe, **dict(kw, refine_positions=ptycho.PositionRefinement(
            start=1, interval=2, ml_start=None)))
        assert np.abs(fixed.object - whole.object).max() > 1e-3

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
    # iteration 4 (DM 4-7, then ML 1-4; checkpoint at ML 3) or 13; or after DM 62 alone.
    for n, stage, iteration in interrupts:
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
    for va, vb in zip(resumed.validation, whole.validation):
        np.testing.assert_array_equal(va, vb)
    if whole.held_out is not None and ml_start is None:  # the last stage returned an earlier iterate; ML stopped
        v = whole.validation[-1]
        assert v[v[:, 2] > 0][-1, 0] < v[-1, 0]
        if engines[-1][0] == "ml":
            assert len(whole.errors[-1][1]) == v[-1, 0] < engines[-1][1]
            assert len(whole.validation[0]) == 0  # DM before ML hands on its last iterate
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
        ptycho.reconstruct(data, pos, probe, mask=np.zeros((16, 16), bool))  # True = valid: none is
    with pytest.raises(TypeError, match="holdout"):
        ptycho.reconstruct(data, pos, probe, holdout=0.05)  # a share is given as HoldOut(share=...)
    with pytest.raises(ValueError, match="HoldOut.share"):
        ptycho.HoldOut(share=0.0)
    with pytest.raises(ValueError, match="HoldOut.patience"):
        ptycho.HoldOut(patience=0)


@pytest.fixture(scope="module")
def blob_case():
    """128^2 smooth phase object (0.8 rad), 32^2 focused probe, 250 sub-pixel Fermat-spiral positions."""
    import scipy.ndimage

    rng = np.random.default_rng(0)
    h, n, px = 128, 32, 20e-9
    ph = scipy.ndimage.gaussian_filter(rng.standard_normal((h, h)), 2)
    ph = (ph - ph.min()) / (ph.max() - ph.min())
    obj = np.exp(1j * 0.8 * ph - 0.05 * ph).astype(np.complex64)
    probe = ptycho.focused_probe(n, object_pixel_size=px, energy_kev=6.2)
    lim = h // 2 - n // 2 - 3
    pos = ptycho.fermat_spiral(5.5 * px, (2 * lim * px, 2 * lim * px)) / px
    pos = pos + rng.uniform(-0.5, 0.5, pos.shape)
    mask = np.zeros((h, h), bool)
    inner = slice(h // 2 - lim + n // 4, h // 2 + lim - n // 4)
    mask[inner, inner] = True
    return {"obj": obj, "probe": probe, "pos": pos, "mask": mask, "shape": (h, h)}


def test_position_refinement_recovers_perturbed_positions(blob_case):
    c = blob_case
    rng = np.random.default_rng(5)
    wrong = rng.uniform(-1.5, 1.5, c["pos"].shape)
    wrong -= wrong.mean(axis=0)
    data = acquire.ptycho_scan(c["obj"], c["probe"], c["pos"], photons=1e6, seed=1)
    out = {}
    for refine in (False, True):
        r = ptycho.reconstruct(data, c["pos"] + wrong, c["probe"] * 1e3, object_shape=c["shape"],
                               engines=(("dm", 150), ("ml", 50)), refine_positions=refine, threads=1)
        d = r.positions_px - c["pos"]
        d -= d.mean(axis=0)  # a common shift is not observable
        out[refine] = (ptycho.object_error(r.object, c["obj"], mask=c["mask"]),
                       float(np.sqrt((d ** 2).sum(axis=1).mean())))
    start = float(np.sqrt((wrong ** 2).sum(axis=1).mean()))
    assert out[False][1] == pytest.approx(start)  # positions untouched without refinement
    assert out[True][1] < 0.8 * start  # measured 1.24 -> 0.88 px rms (bilinear model: 0.66)
    assert out[True][0] < 0.85 * out[False][0]  # measured 0.28 -> 0.18 (bilinear model: 0.30 -> 0.20)


def test_held_out_patterns_choose_the_iterate_of_a_last_dm_stage(blob_case):
    """DM's iterates wander: on the blob case (1e6 photons, exact positions) the object error after DM 150 is 0.178
    (measured) although DM passed 0.10 earlier.  With the default HoldOut, DM as the last stage returns its iterate
    of the lowest held-out deviance (measured: DM 40's, 0.104); followed by ML it hands on its last iterate."""
    c = blob_case
    data = acquire.ptycho_scan(c["obj"], c["probe"], c["pos"], photons=1e6, seed=1)
    kw = dict(object_shape=c["shape"], threads=2)
    plain = ptycho.reconstruct(data, c["pos"], c["probe"] * 1e3, engines=(("dm", 150),), holdout=False, **kw)
    held = ptycho.reconstruct(data, c["pos"], c["probe"] * 1e3, engines=(("dm", 150),), **kw)
    e_plain = ptycho.object_error(plain.object, c["obj"], mask=c["mask"])
    e_held = ptycho.object_error(held.object, c["obj"], mask=c["mask"])
    v = held.validation[0]
    assert held.held_out.sum() == 6 and len(v) == 15 and v[v[:, 2] > 0][-1, 0] < 150
    assert e_held < 0.75 * e_plain, (e_plain, e_held)


def _perturbed_model(c, rng, modes, subpixel_steps):
    """``(n, probe, obj, positions, scan)``: the blob case's probe as ``modes`` modes (the extra ones scaled and
    given random phases), its object with random phase noise, positions moved by up to half a pixel."""
    from tomofuse import _core

    n = c["probe"].shape[0]
    probe = np.stack([c["probe"] * (1.0 if m == 0 else 0.3 * (m + 1)) for m in range(modes)]).astype(np.complex64)
    probe[1:] *= np.exp(1j * rng.uniform(0, 6, (modes - 1, n, n))).astype(np.complex64)
    obj = (c["obj"] * np.exp(0.1j * rng.standard_normal(c["shape"]))).astype(np.complex64)
    pos = c["pos"] + rng.uniform(-0.5, 0.5, c["pos"].shape)
    return n, probe, obj, pos, _core.PtychoScan(n, modes, c["shape"], pos, subpixel_steps=subpixel_steps)


@pytest.mark.parametrize("subpixel_steps,modes", [(8, 1), (8, 2), (0, 2), (0, 1)])
def test_position_step_equals_the_whole_array_reference(blob_case, subpixel_steps, modes):
    """The core's normal equations of the position refinement (``PtychoScan.position_equations``) against the
    same equations written out over whole arrays in NumPy (``_refine_positions_reference``), on exit waves that
    disagree with ``P o``; the same bits at 1 and 2 threads."""
    from tomofuse import _core
    from tomofuse.ptycho import _reconstruct

    rng = np.random.default_rng(3)
    n, probe, obj, pos, scan = _perturbed_model(blob_case, rng, modes, subpixel_steps)
    exit_ = np.empty((len(pos), modes, n, n), np.complex64)
    scan.exit_waves(obj, probe, exit_, threads=1)
    exit_ = np.fft.ifft2(np.fft.fft2(exit_) * np.exp(0.2j * rng.standard_normal((n, n)))).astype(np.complex64)
    # the reference's sums, captured on their way to the step
    sums = {}
    step = _reconstruct._position_step

    def capture(positions, *terms, **kw):
        sums["want"] = np.stack(terms, axis=1)
        return step(positions, *terms, **kw)

    _reconstruct._position_step = capture
    try:
        want = _reconstruct._refine_positions_reference(scan, obj, probe, exit_, pos, max_step=10.0)
    finally:
        _reconstruct._position_step = step
    eq = [scan.position_equations(obj, probe, exit_, threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(eq[0], eq[1])
    # each term to its own size: float per-pixel terms (the residual's P o rounded as NumPy rounds it or not:
    # NumPy may fuse its multiply-adds; 1e-7 of |P o| against a residual of ~0.2 of it), sums in double
    scale = np.abs(sums["want"]).max(axis=0)
    for j in range(5):
        np.testing.assert_allclose(eq[0][:, j], sums["want"][:, j], rtol=0, atol=1e-4 * scale[j])
    got = _reconstruct._refine_positions(scan, obj, probe, exit_, pos, max_step=10.0, threads=2)
    assert np.abs(got - pos).max() > 1e-3  # the residual moves the positions
    np.testing.assert_allclose(got - pos, want - pos, rtol=0, atol=1e-4 * np.abs(want - pos).max())


@pytest.mark.parametrize("subpixel_steps,modes", [(8, 1), (8, 2), (0, 2), (0, 1)])
def test_modulus_position_equations_equal_the_whole_array_reference(blob_case, subpixel_steps, modes):
    """The core's Gauss-Newton equations from the measured intensities (``PtychoScan.position_equations_modulus``)
    against the same sums written out over whole arrays in NumPy, in double; with a detector mask; the same bits at
    1 and 2 threads."""
    from tomofuse import _core
    from tomofuse.ptycho import _reconstruct

    rng = np.random.default_rng(4)
    n, probe, obj, pos, scan = _perturbed_model(blob_case, rng, modes, subpixel_steps)
    model = np.empty((len(pos), modes, n, n), np.complex64)
    scan.exit_waves(obj, probe, model, threads=1)
    inten = ((np.abs(np.fft.fft2(model, norm="ortho")) ** 2).sum(axis=1)
             * rng.uniform(0.8, 1.2, (len(pos), n, n))).astype(np.float32)
    mask = np.ones((n, n), np.uint8)
    mask[:3, :5] = 0
    eq = [scan.position_equations_modulus(inten, mask, obj, probe, threads=t) for t in (1, 2)]
    np.testing.assert_array_equal(eq[0], eq[1])
    want = _reconstruct._position_equations_modulus_reference(scan, inten, mask, obj, probe)
    scale = np.abs(want).max(axis=0)
    assert scale.min() > 0
    for j in range(5):
        np.testing.assert_allclose(eq[0][:, j], want[:, j], rtol=0, atol=1e-4 * scale[j])
    # the masked pixels add nothing
    inten2 = inten.copy()
    inten2[:, :3, :5] = 7.0
    np.testing.assert_array_equal(scan.position_equations_modulus(inten2, mask, obj, probe, threads=1), eq[0])


@pytest.mark.parametrize("subpixel_steps", [8, 0])
def test_modulus_position_steps_find_the_true_positions(blob_case, subpixel_steps):
    """With the true object and probe, Gauss-Newton steps of the amplitude misfit bring 1-px position errors to a
    small fraction in a few rounds, on data from an independent simulation (the robustness family's: Fourier-shifted
    object crops, Poisson counts)."""
    from tomofuse import _core
    from tomofuse.ptycho import _reconstruct

    c = blob_case
    n = c["probe"].shape[0]
    probe = c["probe"].astype(np.complex64)
    obj = c["obj"].astype(np.complex64)
    rng = np.random.default_rng(8)
    true = c["pos"] + rng.uniform(0.0, 1.0, c["pos"].shape)  # sub-pixel positions
    fam = _load(FAMILY_MODULE, "ptycho_family")
    padded = np.pad(c["obj"], 8, mode="edge")  # the simulator's crop margin (the same frame: its center moves by 8)
    data = np.fft.ifftshift(fam.simulate(padded, [c["probe"]], [1.0], true, 1e6, rng), axes=(1, 2))
    model = np.empty((len(true), 1, n, n), np.complex64)  # the probe's scale: the model's mean counts the data's
    _core.PtychoScan(n, 1, c["shape"], true, subpixel_steps=0).exit_waves(obj, probe[None], model, threads=2)
    counts = (np.abs(model) ** 2).sum(axis=(1, 2, 3)).mean()
    probe = probe * np.float32(np.sqrt(data.sum(axis=(1, 2)).mean() / counts))
    wrong = rng.uniform(-1.0, 1.0, true.shape)
    pos = true + wrong

    def error(p):  # what an affine map of the whole scan does not explain (removed by the refinement)
        design = np.column_stack([true, np.ones(len(true))])
        d = p - design @ np.linalg.lstsq(design, p, rcond=None)[0]
        return float(np.sqrt((d ** 2).sum(axis=1).mean()))

    start = error(pos)
    for _ in range(4):
        scan = _core.PtychoScan(n, 1, c["shape"], pos, subpixel_steps=subpixel_steps)
        pos = _reconstruct._refine_positions_modulus(scan, data, None, obj, probe[None], pos, max_step=0.5,
                                                     threads=2)
    assert error(pos) < 0.15 * start, (start, error(pos))


def test_position_equations_read_the_dm_workspace_only_for_its_probe(blob_case):
    """The shifted probes of a dm_iteration workspace are the probe's own: the equations with it are those
    without it, and a workspace of another probe is not read."""
    from tomofuse import _core

    c = blob_case
    n = c["probe"].shape[0]
    rng = np.random.default_rng(5)
    scan = _core.PtychoScan(n, 1, c["shape"], c["pos"] + rng.uniform(-0.5, 0.5, c["pos"].shape), subpixel_steps=8)
    obj = c["obj"].astype(np.complex64)
    probe = c["probe"][None].astype(np.complex64)
    exit_ = np.empty((len(c["pos"]), 1, n, n), np.complex64)
    scan.exit_waves(obj, probe, exit_, threads=1)
    amp = np.sqrt(np.abs(np.fft.fft2(exit_[:, 0])) ** 2 * 1.1).astype(np.float32)
    work = np.empty(scan.dm_workspace_bytes, np.uint8)
    o, p = obj.copy(), probe.copy()
    scan.dm_iteration(amp, None, o, p, exit_, workspace=work, threads=2)
    plain = scan.position_equations(o, p, exit_, threads=2)
    assert np.abs(plain).max() > 0
    np.testing.assert_array_equal(scan.position_equations(o, p, exit_, workspace=work, threads=2), plain)
    other = (p * np.exp(0.3j)).astype(np.complex64)  # the workspace holds p's shifts, not these
    np.testing.assert_array_equal(scan.position_equations(o, other, exit_, workspace=work, threads=1),
                                  scan.position_equations(o, other, exit_, threads=1))
    with pytest.raises(ValueError, match="workspace"):
        scan.position_equations(o, p, exit_, workspace=work[:-1])


def test_position_equations_bad_input(blob_case):
    from tomofuse import _core

    c = blob_case
    n = c["probe"].shape[0]
    scan = _core.PtychoScan(n, 1, c["shape"], c["pos"], subpixel_steps=8)
    obj = np.ones(c["shape"], np.complex64)
    probe = c["probe"][None].astype(np.complex64)
    exit_ = np.zeros((len(c["pos"]), 1, n, n), np.complex64)
    with pytest.raises(ValueError, match="exit"):
        scan.position_equations(obj, probe, exit_[:-1])
    with pytest.raises(ValueError, match="probe"):
        scan.position_equations(obj, probe[:, :-1], exit_)
    data = np.zeros((len(c["pos"]), n, n), np.float32)
    with pytest.raises(ValueError, match="intensities"):
        scan.position_equations_modulus(data[:-1], None, obj, probe)
    with pytest.raises(ValueError, match="object"):
        scan.position_equations_modulus(data, None, obj[:-1], probe)
    with pytest.raises(ValueError, match="threads"):
        scan.position_equations(obj, probe, exit_, threads=-1)


def test_mixed_state_probe_recovers_an_incoherent_mode(blob_case):
    """Patterns are the incoherent sum of two probe modes (23 % of the power in the second)."""
    c = blob_case
    n = c["probe"].shape[0]
    q = (np.arange(n) - n // 2) / (n / 4)
    yy, xx = np.meshgrid(q, q, indexing="ij")
    second = c["probe"] * (yy + 0.5j * xx)
    second *= np.sqrt(0.3 * np.sum(np.abs(c["probe"]) ** 2) / np.sum(np.abs(second) ** 2))
    clean = (acquire.ptycho_scan(c["obj"], c["probe"], c["pos"], photons=None)
             + acquire.ptycho_scan(c["obj"], second.astype(np.complex64), c["pos"], photons=None))
    data = np.random.default_rng(2).poisson(clean * 1e6 / clean.sum(axis=(1, 2)).mean()).astype(np.float32)
    res = {}
    for modes in (1, 2):
        r = ptycho.reconstruct(data, c["pos"], c["probe"] * 1e3, object_shape=c["shape"],
                               engines=(("dm", 200), ("ml", 100)), probe_modes=modes, threads=1)
        power = np.sum(np.abs(r.probe) ** 2, axis=(1, 2))
        res[modes] = (ptycho.object_error(r.object, c["obj"], mask=c["mask"]), power / power.sum(), r.errors[0][1][-1])
        flat = r.probe.reshape(modes, -1)
        gram = flat.conj() @ flat.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-3 * power.max())  # orthogonal
        assert np.all(np.diff(power) <= 0)  # sorted by power
    assert res[2][0] < 0.6 * res[1][0]  # measured 0.34 -> 0.14
    assert res[2][2] < 0.6 * res[1][2]  # the data are fitted better
    assert 0.05 < res[2][1][1] < 0.35  # measured 0.085 (truth 0.23; DM refines the modes, ML keeps them)


def test_real_velociprobe_star_half_scan_resolution():
    """The real APS Velociprobe Siemens-star scan (../shared/realdata; skipped without it): two reconstructions
    from the even and the odd positions agree up to a resolution near the detector's limit by the Fourier ring
    correlation (measured 0.49-0.52 of Nyquist after DM 100 + ML 50; see the closing note of issue 15), and
    far better than what a scan without overlap-consistent noise would give."""
    from realdata import velociprobe_scan

    patterns, positions, probe = velociprobe_scan()
    shape = ptycho.default_object_shape(positions, patterns.shape[1])
    halves = [ptycho.reconstruct(patterns[h::2], positions[h::2], probe, object_shape=shape,
                                 engines=(("dm", 60), ("ml", 30)), threads=2) for h in (0, 1)]
    ill = [r.illumination / r.illumination.max() for r in halves]
    mask = (ill[0] > 0.3) & (ill[1] > 0.3)
    frc = ptycho.fourier_ring_correlation(halves[0].object, halves[1].object, pixel_size=1.0, mask=mask)
    assert frc.crossed
    nyquist_fraction = 2.0 / frc.resolution  # pixel_size 1: resolution in pixels (half-period)
    assert nyquist_fraction > 0.40, nyquist_fraction
    # a check that can fail: halves reconstructed from unrelated data (the odd half's patterns reversed in
    # order, so each sits at another position) do not correlate beyond the lowest rings
    wrong = ptycho.reconstruct(patterns[1::2][::-1], positions[1::2], probe, object_shape=shape,
                               engines=(("dm", 20),), threads=2)
    bad = ptycho.fourier_ring_correlation(halves[0].object, wrong.object, pixel_size=1.0, mask=mask)
    assert 2.0 / bad.resolution < 0.5 * nyquist_fraction


def test_engine_buffers_start_on_64_byte_boundaries():
    """The engines' frame buffers are 64-byte aligned (the FFT plans' alignment; NumPy's large arrays are
    16 bytes past it and their frames would go through an aligned copy)."""
    from tomofuse.ptycho._reconstruct import _aligned_empty

    for shape, dtype in [((3, 1, 40, 40), np.complex64), (12345, np.uint8), ((2, 7), np.float32), (0, np.uint8)]:
        a = _aligned_empty(shape, dtype)
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable and (a.size == 0 or a.ctypes.data % 64 == 0)
        a[...] = 1  # the whole array is writable memory of its own
