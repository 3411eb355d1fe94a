"""The ptychography engines of the core against a slow NumPy reference (float64), calculus and threads.

The reference below is written from the model in ``cpp/include/tomofuse/ptycho.hpp`` only: bilinear
windows, lumped-weight spreading, the damped least-squares overlap updates, the relaxed modulus
constraint, the Poisson deviance and its Wirtinger gradient, the polynomial line search and the
preconditioned PR+ conjugate-gradient step.  The gradient itself is checked against finite
differences, so the reference is tied to calculus rather than to the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from tomofuse import _core

N, H, W, MODES = 16, 40, 44, 2


# ------------------------------------------------------------------------------------------ reference


def windows(pos, n=N, h=H, w=W):
    fl = np.floor(pos)
    origin = (fl + np.array([h // 2, w // 2]) - n // 2).astype(int)
    return origin, pos - fl


def interp(obj, origin, frac, n=N):
    o = np.pad(obj, ((0, 1), (0, 1)))
    y0, x0 = origin
    fy, fx = frac
    a = o[y0:y0 + n, x0:x0 + n]
    b = o[y0:y0 + n, x0 + 1:x0 + n + 1]
    c = o[y0 + 1:y0 + n + 1, x0:x0 + n]
    d = o[y0 + 1:y0 + n + 1, x0 + 1:x0 + n + 1]
    return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)


def spread(acc, g, origin, frac, n=N):
    """Adjoint of interp (the lumped weights the core uses for numerator and denominator alike)."""
    big = np.zeros((acc.shape[0] + 1, acc.shape[1] + 1), dtype=acc.dtype)
    y0, x0 = origin
    fy, fx = frac
    big[y0:y0 + n, x0:x0 + n] += (1 - fy) * (1 - fx) * g
    big[y0:y0 + n, x0 + 1:x0 + n + 1] += (1 - fy) * fx * g
    big[y0 + 1:y0 + n + 1, x0:x0 + n] += fy * (1 - fx) * g
    big[y0 + 1:y0 + n + 1, x0 + 1:x0 + n + 1] += fy * fx * g
    acc += big[:-1, :-1]


def object_gather(probe, waves, pos):
    num = np.zeros((H, W), complex)
    den = np.zeros((H, W))
    power = np.sum(np.abs(probe) ** 2, axis=0)
    for k, (org, fr) in enumerate(zip(*windows(pos))):
        spread(num, np.sum(np.conj(probe) * waves[k], axis=0), org, fr)
        spread(den, power, org, fr)
    return num, den


def probe_gather(obj, waves, pos):
    num = np.zeros((MODES, N, N), complex)
    den = np.zeros((N, N))
    for k, (org, fr) in enumerate(zip(*windows(pos))):
        o = interp(obj, org, fr)
        num += np.conj(o)[None] * waves[k]
        den += np.abs(o) ** 2
    return num, den


def damped(x, num, den, inertia):
    c = inertia * den.max()
    return (num + c * x) / (den + c)


def fft(a):
    return np.fft.fft2(a, norm="ortho")


def ifft(a):
    return np.fft.ifft2(a, norm="ortho")


def dm_reference(amp, obj, probe, exit_, pos, bound, inertia=1e-3):
    obj, probe, exit_ = obj.astype(complex), probe.astype(complex), exit_.astype(complex)
    num, den = object_gather(probe, exit_, pos)
    obj = damped(obj, num, den, inertia)
    num, den = probe_gather(obj, exit_, pos)
    probe = damped(probe, num, den[None], inertia)
    err, model = np.zeros(len(pos)), np.zeros(len(pos))
    for k, (org, fr) in enumerate(zip(*windows(pos))):
        o = interp(obj, org, fr)
        phi = probe * o[None]
        model[k] = np.sum((np.sqrt(np.sum(np.abs(fft(phi)) ** 2, axis=0)) - amp[k]) ** 2)
        t = fft(2 * phi - exit_[k])
        mod = np.sqrt(np.sum(np.abs(t) ** 2, axis=0))
        err[k] = np.sum((mod - amp[k]) ** 2)
        keep = np.sqrt(bound[k] / err[k]) if err[k] > bound[k] else 1.0
        target = amp[k] + keep * (mod - amp[k])
        exit_[k] = exit_[k] + ifft(t * (target / mod)[None]) - phi
    return obj, probe, exit_, err, model


def ml_reference(data, obj, probe, pos, floor=1e-6, valid=None):
    """(nll, grad_object, grad_probe, precond_object, precond_probe, far) in float64."""
    valid = np.ones((N, N), bool) if valid is None else valid
    chi = np.zeros((len(pos), MODES, N, N), complex)
    far = np.zeros_like(chi)
    nll = 0.0
    for k, (org, fr) in enumerate(zip(*windows(pos))):
        o = interp(obj, org, fr)
        far[k] = fft(probe * o[None])
        im = np.sum(np.abs(far[k]) ** 2, axis=0) + floor
        i = data[k].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(i > 0, im - i - i * np.log(im / np.where(i > 0, i, 1)), im)
        nll += np.sum(terms[valid])
        w = np.where(valid, 1 - i / im, 0.0)
        chi[k] = ifft(w[None] * far[k])
    go, po = object_gather(probe, chi, pos)
    gp, pp = probe_gather(obj, chi, pos)
    return nll, go, gp, po, pp, far


def line_reference(data, obj, probe, ho, hp, pos, floor=1e-6):
    b1 = b2 = 0.0
    for k, (org, fr) in enumerate(zip(*windows(pos))):
        o, d = interp(obj, org, fr), interp(ho, org, fr)
        f0 = fft(probe * o[None])
        f1 = fft(hp * o[None] + probe * d[None])
        f2 = fft(hp * d[None])
        im = np.sum(np.abs(f0) ** 2, axis=0) + floor
        a1 = 2 * np.sum(np.real(np.conj(f0) * f1), axis=0)
        a2 = np.sum(np.abs(f1) ** 2 + 2 * np.real(np.conj(f0) * f2), axis=0)
        i = data[k]
        b1 += np.sum((1 - i / im) * a1)
        b2 += np.sum((1 - i / im) * a2 + 0.5 * i / im ** 2 * a1 ** 2)
    return b1, b2


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    k = 14
    pos = rng.uniform(-10, 10, (k, 2))
    pos[0] = [0.0, 0.0]        # a whole-pixel position
    pos[1] = [2.0, -3.25]      # whole in y only
    obj = (np.exp(1j * rng.uniform(-0.6, 0.6, (H, W))) * rng.uniform(0.8, 1.0, (H, W))).astype(np.complex64)
    yy, xx = np.mgrid[:N, :N] - N // 2
    probe = np.stack([np.exp(-(yy ** 2 + xx ** 2) / 18.0) * np.exp(0.3j * yy),
                      0.3 * np.exp(-(yy ** 2 + xx ** 2) / 12.0) * (xx / 4.0)]).astype(np.complex64) * 30
    truth_i = np.array([np.sum(np.abs(fft(probe * interp(obj * np.exp(0.2j), *w)[None])) ** 2, axis=0)
                        for w in zip(*windows(pos))])
    data = rng.poisson(truth_i).astype(np.float32)
    return {"pos": pos, "obj": obj, "probe": probe, "data": data, "scan": _core.PtychoScan(N, MODES, (H, W), pos)}


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ------------------------------------------------------------------------------------------------ tests


def test_windows_follow_the_documented_convention(case):
    origin, frac = case["scan"].windows
    o, f = windows(case["pos"])
    np.testing.assert_array_equal(origin, o)
    np.testing.assert_allclose(frac, f, atol=1e-6)


def test_gathers_match_reference(case):
    s, obj, probe = case["scan"], case["obj"], case["probe"]
    waves = np.empty((len(case["pos"]), MODES, N, N), np.complex64)
    s.exit_waves(obj, probe, waves)
    ref = np.stack([probe * interp(obj.astype(complex), *w)[None] for w in zip(*windows(case["pos"]))])
    assert rel(waves, ref) < 2e-6
    num, den = s.object_gather(probe, waves)
    rnum, rden = object_gather(probe.astype(complex), ref, case["pos"])
    assert rel(num, rnum) < 2e-6 and rel(den, rden) < 2e-6
    num, den = s.probe_gather(obj, waves)
    rnum, rden = probe_gather(obj.astype(complex), ref, case["pos"])
    assert rel(num, rnum) < 2e-6 and rel(den, rden) < 2e-6


def test_dm_iteration_matches_reference(case):
    s, pos = case["scan"], case["pos"]
    amp = np.sqrt(case["data"])
    obj, probe = case["obj"].copy(), case["probe"].copy()
    exit_ = np.empty((len(pos), MODES, N, N), np.complex64)
    s.exit_waves(obj, probe, exit_)
    # perturb the exit waves so that the overlap update has something to do
    exit_ *= np.exp(0.1j * np.arange(N))[None, None, None, :].astype(np.complex64)
    bound = np.full(len(pos), 3.0)
    bound[::2] = 0.0
    ro, rp, re, rerr, rmodel = dm_reference(amp, obj, probe, exit_, pos, bound)
    err, model = s.dm_iteration(amp, None, obj, probe, exit_, bound=bound, model_error=True, threads=2)
    assert rel(obj, ro) < 1e-5
    assert rel(probe, rp) < 1e-5
    assert rel(exit_, re) < 1e-4
    np.testing.assert_allclose(err, rerr, rtol=1e-3)
    np.testing.assert_allclose(model, rmodel, rtol=1e-3)


def test_ml_gradient_matches_reference_and_finite_differences(case):
    s, pos, data = case["scan"], case["pos"], case["data"]
    obj, probe = case["obj"], case["probe"]
    far = np.empty((len(pos), MODES, N, N), np.complex64)
    chi = np.empty_like(far)
    nll, go, gp, po, pp = s.ml_gradient(data, None, obj, probe, far, chi)
    rnll, rgo, rgp, rpo, rpp, rfar = ml_reference(data, obj.astype(complex), probe.astype(complex), pos)
    assert abs(nll.sum() - rnll) < 1e-4 * abs(rnll)
    assert rel(go, rgo) < 1e-4 and rel(gp, rgp) < 1e-4
    assert rel(po, rpo) < 1e-5 and rel(pp, rpp) < 1e-5
    assert rel(far / N, rfar) < 1e-5  # the core stores the unscaled transform
    # The reference gradient is the Wirtinger derivative: dL/da along h = 2 Re <g, h>.
    rng = np.random.default_rng(0)
    ho = rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))
    hp = rng.standard_normal((MODES, N, N)) + 1j * rng.standard_normal((MODES, N, N))
    eps = 1e-6
    plus = ml_reference(data, obj + eps * ho, probe + eps * hp, pos)[0]
    minus = ml_reference(data, obj - eps * ho, probe - eps * hp, pos)[0]
    directional = 2 * (np.vdot(rgo, ho).real + np.vdot(rgp, hp).real)
    assert abs((plus - minus) / (2 * eps) - directional) < 1e-5 * abs(directional)
    # ... and the core's line-search coefficients: B1 is that derivative, B2 the curvature.
    ho32, hp32 = (0.01 * ho).astype(np.complex64), (0.01 * hp).astype(np.complex64)
    b1, b2 = s.ml_line_coefficients(data, None, obj, probe, ho32, hp32, far)
    rb1, rb2 = line_reference(data, obj.astype(complex), probe.astype(complex), ho32.astype(complex),
                              hp32.astype(complex), pos)
    assert abs(b1 - rb1) < 1e-3 * abs(rb1) and abs(b2 - rb2) < 1e-3 * abs(rb2)
    assert abs(b1 - 2 * (np.vdot(rgo, ho32).real + np.vdot(rgp, hp32).real)) < 1e-3 * abs(b1)
    # with chi, B2's cross term comes from real space (Parseval): the same coefficients
    c1, c2 = s.ml_line_coefficients(data, None, obj, probe, ho32, hp32, far, chi=chi)
    assert c1 == b1 and abs(c2 - rb2) < 1e-3 * abs(rb2) and abs(c2 - b2) < 1e-5 * abs(b2)
    # the second-order model of L along h, against the exact value at a small step
    a = 0.5
    exact = ml_reference(data, obj + a * ho32, probe + a * hp32, pos)[0]
    assert abs(exact - (rnll + rb1 * a + rb2 * a * a)) < 0.02 * abs(rb1 * a)


class _State:
    def __init__(self):
        c = np.complex64
        self.grad_object = np.zeros((H, W), c)
        self.grad_probe = np.zeros((MODES, N, N), c)
        self.precond_object = np.zeros((H, W), np.float32)
        self.precond_probe = np.zeros((N, N), np.float32)
        self.dir_object = np.zeros((H, W), c)
        self.dir_probe = np.zeros((MODES, N, N), c)
        self.prev_grad_object = np.zeros((H, W), c)
        self.prev_grad_probe = np.zeros((MODES, N, N), c)
        self.prev_zg = self.nll = self.alpha = 0.0


def test_ml_iterations_match_reference(case):
    """Two CG iterations (steepest descent, then PR+) against the reference, step by step."""
    s, pos, data = case["scan"], case["pos"], case["data"]
    obj, probe = case["obj"].copy(), case["probe"].copy()
    far = np.empty((len(pos), MODES, N, N), np.complex64)
    chi = np.empty_like(far)
    st = _State()
    s.ml_iteration(data, None, obj, probe, st, far, chi, start=True)
    x_o, x_p = obj.astype(complex), probe.astype(complex)
    prev = None
    for _ in range(2):
        nll, go, gp, po, pp, _f = ml_reference(data, x_o, x_p, pos)
        zo = go / (po + 1e-2 * po.max())
        zp = gp / (pp + 1e-2 * pp.max())[None]
        zg = np.vdot(zo, go).real + np.vdot(zp, gp).real
        if prev is None:
            ho, hp = -zo, -zp
        else:
            beta = max(0.0, (zg - (np.vdot(zo, prev[0]).real + np.vdot(zp, prev[1]).real)) / prev[2])
            ho, hp = beta * prev[3] - zo, beta * prev[4] - zp
        b1, b2 = line_reference(data, x_o, x_p, ho, hp, pos)
        alpha = -b1 / (2 * b2)
        x_o, x_p = x_o + alpha * ho, x_p + alpha * hp
        prev = (go, gp, zg, ho, hp)
        value, a, backtracks, _restarted = s.ml_iteration(data, None, obj, probe, st, far, chi)
        assert backtracks == 0
        assert abs(a - alpha) < 2e-3 * abs(alpha)
        assert rel(obj, x_o) < 1e-4 and rel(probe, x_p) < 1e-4
        assert value < nll


def test_ml_never_increases_the_objective(case):
    s, pos, data = case["scan"], case["pos"], case["data"]
    obj = np.ones((H, W), np.complex64)
    probe = case["probe"] * np.complex64(1.3)
    far = np.empty((len(pos), MODES, N, N), np.complex64)
    chi = np.empty_like(far)
    st = _State()
    values = [s.ml_iteration(data, None, obj, probe, st, far, chi, start=True)[0]]
    for _ in range(25):
        values.append(s.ml_iteration(data, None, obj, probe, st, far, chi)[0])
    assert np.all(np.diff(values) <= 0)
    assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize("modes,refine", [(1, False), (2, True)])
def test_reconstruct_is_identical_for_1_and_2_threads(case, modes, refine):
    from tomofuse.ptycho import PositionRefinement, reconstruct

    args = (case["data"], case["pos"], case["probe"][0])
    kw = dict(object_shape=(H, W), engines=(("dm", 12), ("ml", 6)), probe_modes=modes,
              refine_positions=PositionRefinement(start=2, interval=3) if refine else False)
    a = reconstruct(*args, threads=1, **kw)
    b = reconstruct(*args, threads=2, **kw)
    np.testing.assert_array_equal(a.object, b.object)
    np.testing.assert_array_equal(a.probe, b.probe)
    np.testing.assert_array_equal(a.positions_px, b.positions_px)
    for (na, ea), (nb, eb) in zip(a.errors, b.errors):
        assert na == nb
        np.testing.assert_array_equal(ea, eb)


def test_core_rejects_bad_arguments(case):
    s = case["scan"]
    obj, probe = case["obj"], case["probe"]
    waves = np.empty((len(case["pos"]), MODES, N, N), np.complex64)
    with pytest.raises(ValueError, match="outside"):
        _core.PtychoScan(N, 1, (H, W), np.array([[40.0, 0.0]]))
    with pytest.raises(ValueError, match="empty"):
        _core.PtychoScan(N, 1, (H, W), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="not finite"):
        _core.PtychoScan(N, 1, (H, W), np.array([[np.nan, 0.0]]))
    with pytest.raises(TypeError, match="object"):
        s.exit_waves(obj.astype(np.complex128), probe, waves)
    with pytest.raises(ValueError, match="probe must have shape"):
        s.exit_waves(obj, probe[:1], waves)
    with pytest.raises(ValueError, match="shares memory"):
        s.ml_gradient(case["data"], None, obj, probe, waves, waves)
    with pytest.raises(ValueError, match="mask"):
        s.dm_iteration(np.sqrt(case["data"]), np.ones((N, N + 1), np.uint8), obj.copy(), probe.copy(), waves)
    with pytest.raises(ValueError, match="overlap_iterations"):
        s.dm_iteration(np.sqrt(case["data"]), None, obj.copy(), probe.copy(), waves, overlap_iterations=0)
    ro = obj.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        s.dm_iteration(np.sqrt(case["data"]), None, ro, probe.copy(), waves)


# ------------------------------------------------------------------ shifted-probe sub-pixel model


@pytest.fixture(scope="module")
def shift_case():
    from tomofuse import ptycho

    rng = np.random.default_rng(7)
    n, h = 32, 96
    probe = ptycho.focused_probe(n, object_pixel_size=20e-9, energy_kev=6.2)
    obj = (np.exp(1j * rng.uniform(-0.5, 0.5, (h, h))) * rng.uniform(0.9, 1.0, (h, h))).astype(np.complex64)
    pos = np.round(rng.uniform(-25, 25, (20, 2)) * 8) / 8  # on the 1/8-pixel grid: the model is exact
    return {"probe": probe, "obj": obj, "pos": pos, "n": n, "h": h}


def test_shifted_probe_model_matches_the_simulator(shift_case):
    """Exit-wave intensities of the core against tomofuse.acquire.ptycho_scan (scipy FFTs, its own shift)."""
    from tomofuse.acquire import ptycho_scan

    c = shift_case
    s = _core.PtychoScan(c["n"], 1, (c["h"], c["h"]), c["pos"], subpixel_steps=8)
    assert s.subpixel_steps == 8 and len(s.bin_shifts) <= 64
    np.testing.assert_array_equal(s.windows[1], 0)  # whole-pixel crops
    exit_ = np.empty((len(c["pos"]), 1, c["n"], c["n"]), np.complex64)
    s.exit_waves(c["obj"], c["probe"][None], exit_)
    model = np.abs(np.fft.fftshift(np.fft.fft2(exit_[:, 0], norm="ortho"), axes=(1, 2))) ** 2
    truth = ptycho_scan(c["obj"], c["probe"], c["pos"], photons=None)
    assert np.max(np.abs(model - truth)) < 1e-5 * truth.max()
    # the bilinear model is visibly different at these fractional positions
    b = _core.PtychoScan(c["n"], 1, (c["h"], c["h"]), c["pos"])
    b.exit_waves(c["obj"], c["probe"][None], exit_)
    bil = np.abs(np.fft.fftshift(np.fft.fft2(exit_[:, 0], norm="ortho"), axes=(1, 2))) ** 2
    assert np.max(np.abs(bil - truth)) > 1e-3 * truth.max()


@pytest.mark.parametrize("steps", [0, 8])
def test_gathers_are_the_adjoints_of_the_forward_model(shift_case, steps):
    """<A x, w> = <x, A^H w> for the object (probe fixed) and the probe (object fixed) maps."""
    c = shift_case
    rng = np.random.default_rng(1)
    modes, k, n = 2, len(c["pos"]), c["n"]
    s = _core.PtychoScan(n, modes, (c["h"], c["h"]), c["pos"] + 0.03, subpixel_steps=steps)

    def crandn(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)

    probe, obj, w = crandn(modes, n, n), crandn(c["h"], c["h"]), crandn(k, modes, n, n)
    ax = np.empty((k, modes, n, n), np.complex64)
    s.exit_waves(obj, probe, ax)                       # A_P(obj), linear in obj
    num, _ = s.object_gather(probe, w)                 # A_P^H w
    lhs, rhs = np.vdot(w, ax), np.vdot(num, obj)
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)
    pnum, _ = s.probe_gather(obj, w)                   # A_o^H w, with A_o(probe) = exit_waves(obj, probe)
    lhs, rhs = np.vdot(w, ax), np.vdot(pnum, probe)
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)


def test_shifted_model_ml_gradient_against_finite_differences(shift_case):
    c = shift_case
    n, k = c["n"], len(c["pos"])
    s = _core.PtychoScan(n, 1, (c["h"], c["h"]), c["pos"] + 0.05, subpixel_steps=8)
    obj = c["obj"]
    probe = (c["probe"] * 30)[None].astype(np.complex64)
    ex = np.empty((k, 1, n, n), np.complex64)
    s.exit_waves(obj * np.complex64(np.exp(0.3j)), probe * np.complex64(1.1), ex)
    data = np.random.default_rng(3).poisson(np.abs(np.fft.fft2(ex[:, 0], norm="ortho")) ** 2).astype(np.float32)
    far, chi = np.empty_like(ex), np.empty_like(ex)
    _, go, gp, _, _ = s.ml_gradient(data, None, obj, probe, far, chi)

    def nll(o, p):
        s.exit_waves(o.astype(np.complex64), p.astype(np.complex64), ex)
        im = np.abs(np.fft.fft2(ex[:, 0].astype(np.complex128), norm="ortho")) ** 2 + 1e-6
        d = data.astype(float)
        return float(np.sum(np.where(d > 0, im - d - d * np.log(im / np.where(d > 0, d, 1)), im)))

    rng = np.random.default_rng(4)
    ho = 0.01 * (rng.standard_normal(obj.shape) + 1j * rng.standard_normal(obj.shape))
    hp = 0.01 * (rng.standard_normal(probe.shape) + 1j * rng.standard_normal(probe.shape))
    # The exit waves are float32: below a ~ 1e-2 the difference quotient is rounding noise (0.8 % at
    # 3e-3, 0.24 % at 1e-2 with MKL's FFT), above 0.1 the O(a^2) term shows; 3e-2 sits between.
    a = 3e-2
    fd = (nll(obj + a * ho, probe + a * hp) - nll(obj - a * ho, probe - a * hp)) / (2 * a)
    directional = 2 * (np.vdot(go, ho).real + np.vdot(gp, hp).real)
    assert abs(fd - directional) < 2e-3 * abs(directional)


def test_line_cross_term_in_real_space_matches_transform(shift_case):
    """B2's cross term sum l' 2 Re(conj F(P o) F(h_P h_o)) from the back-propagated residuals in real space
    equals the transform's, for the shifted-probe model with two modes and invalid detector pixels, along
    directions that move the object only, the probe only, or both."""
    c = shift_case
    n, h, modes, k = c["n"], c["h"], 2, len(c["pos"])
    s = _core.PtychoScan(n, modes, (h, h), c["pos"] + 0.3, subpixel_steps=8)
    probe = np.stack([c["probe"] * 30, c["probe"] * np.complex64(3j)]).astype(np.complex64)
    ex = np.empty((k, modes, n, n), np.complex64)
    s.exit_waves(c["obj"], probe * np.complex64(1.1), ex)
    data = np.random.default_rng(8).poisson(np.sum(np.abs(np.fft.fft2(ex, norm="ortho")) ** 2, axis=1))
    data = data.astype(np.float32)
    mask = np.ones((n, n), np.uint8)
    mask[: n // 8] = 0
    # a point well off the data's (the model intensity ~2.6x the counts: residual weights l' near 0.6),
    # where the cross term is a sizeable part of B2
    obj = (c["obj"] * np.complex64(np.exp(0.2j))).astype(np.complex64)
    probe = (probe * np.complex64(1.6)).astype(np.complex64)
    far, chi = np.empty_like(ex), np.empty_like(ex)
    s.ml_gradient(data, mask, obj, probe, far, chi)
    rng = np.random.default_rng(9)
    # directions with a part along the point itself (f2 = F(h_P h_o) then correlates with F(P o)) and a
    # random part
    ho = (0.3 * obj + 0.1 * (rng.standard_normal((h, h)) + 1j * rng.standard_normal((h, h)))).astype(np.complex64)
    hp = (probe * (0.3 + 0.1 * (rng.standard_normal(probe.shape) + 1j * rng.standard_normal(probe.shape))))
    hp = hp.astype(np.complex64)
    for dirs in ((ho, hp), (ho, np.zeros_like(hp)), (np.zeros_like(ho), hp)):
        b1, b2 = s.ml_line_coefficients(data, mask, obj, probe, *dirs, far)
        c1, c2 = s.ml_line_coefficients(data, mask, obj, probe, *dirs, far, chi=chi)
        assert c1 == b1
        assert abs(c2 - b2) < 1e-5 * abs(b2), (c2, b2)
        # the cross term itself (B2 with a zero chi lacks it): 14 % of B2 when both move, none otherwise
        _, z2 = s.ml_line_coefficients(data, mask, obj, probe, *dirs, far, chi=np.zeros_like(chi))
        assert (abs(b2 - z2) > 0.1 * abs(b2)) if dirs[0].any() and dirs[1].any() else (z2 == c2)


def test_ml_workspace_changes_nothing(shift_case):
    """The workspace that the engine loop keeps (MLBuffers::shifted and its key) gives the same
    iterations bit for bit as calls that allocate their own, whatever it held before: also when the
    calls reuse it (``reuse_workspace``: the line search then reads the shifted probes of the previous
    call's end point) with the probe changed between calls, or updated by neither call
    (``update_probe=False``: every call reads them); a workspace of the wrong size is refused."""
    from types import SimpleNamespace

    c = shift_case
    n, h, modes, k = c["n"], c["h"], 2, len(c["pos"])
    s = _core.PtychoScan(n, modes, (h, h), c["pos"] + 0.05, subpixel_steps=8)
    assert len(s.bin_shifts) > 1
    assert s.ml_workspace_bytes > 2 * len(s.bin_shifts) * modes * n * n * 8
    probe0 = np.stack([c["probe"] * 30, c["probe"] * np.complex64(3j)]).astype(np.complex64)
    ex = np.empty((k, modes, n, n), np.complex64)
    s.exit_waves(c["obj"], probe0 * np.complex64(1.1), ex)
    model = np.sum(np.abs(np.fft.fft2(ex, norm="ortho")) ** 2, axis=1)
    data = np.random.default_rng(5).poisson(model).astype(np.float32)

    def run(workspace, reuse=False, update_probe=True, edit=None):
        z = np.complex64
        st = SimpleNamespace(grad_object=np.zeros((h, h), z), grad_probe=np.zeros((modes, n, n), z),
                             precond_object=np.zeros((h, h), np.float32), precond_probe=np.zeros((n, n), np.float32),
                             dir_object=np.zeros((h, h), z), dir_probe=np.zeros((modes, n, n), z),
                             prev_grad_object=np.zeros((h, h), z), prev_grad_probe=np.zeros((modes, n, n), z),
                             prev_zg=0.0, nll=0.0, alpha=0.0)
        obj, probe = np.ones((h, h), np.complex64), probe0.copy()
        far, chi = np.empty_like(ex), np.empty_like(ex)
        kw = dict(workspace=workspace, update_probe=update_probe, threads=2)
        steps = [s.ml_iteration(data, None, obj, probe, st, far, chi, start=True, **kw)]
        for i in range(4):
            if edit is not None and i == 2:
                # the probe changed between calls, the gradient recomputed for it (as the engine loop does)
                probe *= np.complex64(0.97)
                steps.append(s.ml_iteration(data, None, obj, probe, st, far, chi, start=True, reuse_workspace=reuse,
                                            **kw))
            steps.append(s.ml_iteration(data, None, obj, probe, st, far, chi, reuse_workspace=reuse, **kw))
        return steps, obj, probe, st.grad_probe

    ws = lambda fill: np.full(s.ml_workspace_bytes, fill, np.uint8)
    for update_probe in (True, False):
        for edit in (None, True):
            ref = run(None, update_probe=update_probe, edit=edit)
            assert ref[0][-1][1] > 0
            for workspace, reuse in ((ws(0xFF), False), (ws(0), True), (ws(0x7F), True)):
                got = run(workspace, reuse=reuse, update_probe=update_probe, edit=edit)
                assert got[0] == ref[0], (update_probe, edit, reuse)
                for a, b in zip(ref[1:], got[1:]):
                    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="workspace"):
        run(np.zeros(s.ml_workspace_bytes + 1, np.uint8))
    with pytest.raises(ValueError, match="workspace"):
        run(np.zeros((2, len(s.bin_shifts), modes, n, n), np.complex64))


@pytest.mark.parametrize("subpixel_steps", [8, 0])
def test_dm_workspace_changes_nothing(shift_case, subpixel_steps):
    """The scratch that the engine loop keeps for DM (shifted probes, per-bin sums, update terms) gives
    the same iterations bit for bit as calls that allocate their own, whatever it held before, for the
    shifted-probe and the bilinear model, also when the calls reuse its shifted probes
    (``reuse_workspace``) with the probe held and changed between calls; a workspace of the wrong size, or one sharing memory with an
    output, is refused."""
    c = shift_case
    n, h, modes, k = c["n"], c["h"], 2, len(c["pos"])
    s = _core.PtychoScan(n, modes, (h, h), c["pos"] + 0.05, subpixel_steps=subpixel_steps)
    assert (len(s.bin_shifts) > 1) == (subpixel_steps > 0)
    probe0 = np.stack([c["probe"] * 30, c["probe"] * np.complex64(3j)]).astype(np.complex64)
    ex = np.empty((k, modes, n, n), np.complex64)
    s.exit_waves(c["obj"], probe0 * np.complex64(1.1), ex)
    amp = np.sqrt(np.random.default_rng(6).poisson(np.sum(np.abs(np.fft.fft2(ex, norm="ortho")) ** 2, axis=1))
                  ).astype(np.float32)

    def run(workspace, iterations=4, reuse=False):
        # the probe is held for an iteration (its shifted probes unchanged from the call before: reused) and
        # changed in place between two calls (the workspace's no longer match it: recomputed)
        obj, probe, exit_ = np.ones((h, h), np.complex64), probe0.copy(), ex.copy()
        errors = []
        for it in range(iterations):
            if it == 2:
                probe *= np.complex64(0.9 + 0.1j)
            errors.append(s.dm_iteration(amp, None, obj, probe, exit_, overlap_iterations=2, model_error=True,
                                         update_probe=it != 1, workspace=workspace,
                                         reuse_workspace=reuse and it > 0, threads=2))
        return errors, obj, probe, exit_

    errors, obj, probe, exit_ = run(None)
    for reuse in (False, True):
        ws = np.random.default_rng(7).integers(0, 256, s.dm_workspace_bytes, dtype=np.uint8)
        errors_w, obj_w, probe_w, exit_w = run(ws, reuse=reuse)
        for (e, m), (e_w, m_w) in zip(errors, errors_w):
            np.testing.assert_array_equal(e, e_w)
            np.testing.assert_array_equal(m, m_w)
        for a, b in ((obj, obj_w), (probe, probe_w), (exit_, exit_w)):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(obj, np.ones_like(obj))
    with pytest.raises(ValueError, match="workspace"):
        run(np.zeros(s.dm_workspace_bytes + 1, np.uint8), iterations=1)
    with pytest.raises(ValueError, match="workspace"):
        run(np.zeros(s.dm_workspace_bytes, np.float32)[: s.dm_workspace_bytes // 4], iterations=1)
    shared = np.zeros(max(s.dm_workspace_bytes, h * h * 8), np.uint8)
    obj_view = shared[: h * h * 8].view(np.complex64).reshape(h, h)
    with pytest.raises(ValueError, match="workspace|share|overlap"):
        s.dm_iteration(amp, None, obj_view, probe0.copy(), ex.copy(), workspace=shared[: s.dm_workspace_bytes])


def _shifted_normal_equations(s, obj, waves):
    """The exact least-squares probe of the shifted-probe model for a fixed object (float64 CG)."""
    k, modes, n, _ = waves.shape
    shifts = np.asarray(s.bin_shifts)  # (bins, 2) fractions (y, x)
    bins = np.asarray(s.bins)
    f = np.fft.fftfreq(n)
    ramps = np.exp(-2j * np.pi * (f[None, :, None] * shifts[:, 0, None, None]
                                  + f[None, None, :] * shifts[:, 1, None, None]))
    crops = np.empty((k, modes, n, n), np.complex64)
    s.exit_waves(obj, np.ones((modes, n, n), np.complex64), crops)  # a constant probe: the object crops
    oc = crops[:, 0].astype(np.complex128)
    nb = np.zeros((len(shifts), modes, n, n), complex)
    db = np.zeros((len(shifts), n, n))
    np.add.at(nb, bins, np.conj(oc)[:, None] * waves)
    np.add.at(db, bins, np.abs(oc) ** 2)

    def shift(p):  # (modes, n, n) -> (bins, modes, n, n)
        return np.fft.ifft2(np.fft.fft2(p)[None] * ramps[:, None])

    def adjoint_sum(x):  # (bins, modes, n, n) -> (modes, n, n)
        return np.fft.ifft2((np.fft.fft2(x) * np.conj(ramps)[:, None]).sum(0))

    rhs = adjoint_sum(nb)
    x = np.zeros((modes, n, n), complex)
    r = rhs.copy()
    pr = 1.0 / db.sum(0)
    z = pr * r
    d = z.copy()
    rz = np.vdot(r, z)
    for _ in range(500):
        ad = adjoint_sum(db[:, None] * shift(d))
        a = rz / np.vdot(d, ad)
        x += a * d
        r -= a * ad
        if np.linalg.norm(r) < 1e-12 * np.linalg.norm(rhs):
            break
        z = pr * r
        rz2 = np.vdot(r, z)
        d = z + (rz2 / rz) * d
        rz = rz2
    return x


def test_shifted_probe_update_reaches_the_exact_least_squares_probe(shift_case):
    """The difference map's probe update with shifted probes, repeated on a fixed object and fixed exit
    waves, converges to the solution of the (non-diagonal) normal equations sum_k S_k^H |o_k|^2 S_k P =
    sum_k S_k^H conj(o_k) psi_k, solved here in float64 by conjugate gradients.  (The earlier heuristic
    -- the larger of the shifted and the plain denominators -- has another fixed point; on aberrated
    probes that mismatch made the difference map diverge.)"""
    c = shift_case
    n, k = c["n"], len(c["pos"])
    pos = c["pos"] + np.random.default_rng(5).uniform(0, 1, c["pos"].shape)  # every bin in use
    s = _core.PtychoScan(n, 1, (c["h"], c["h"]), pos, subpixel_steps=8)
    assert len(s.bin_shifts) > 10
    obj = c["obj"]
    rng = np.random.default_rng(6)
    waves = np.empty((k, 1, n, n), np.complex64)
    s.exit_waves(obj, (c["probe"] * 10)[None], waves)
    waves += (0.05 * (rng.standard_normal(waves.shape) + 1j * rng.standard_normal(waves.shape))).astype(np.complex64)
    exact = _shifted_normal_equations(s, obj, waves.astype(np.complex128))
    probe = (c["probe"] * 8)[None].astype(np.complex64)
    amp = np.ones((k, n, n), np.float32)
    for _ in range(30):
        w = waves.copy()  # the Fourier step of the iteration changes the waves: start each from the same ones
        s.dm_iteration(amp, None, obj.copy(), probe, w, update_object=False, update_probe=True)
    err = np.linalg.norm(probe - exact) / np.linalg.norm(exact)
    assert err < 1e-4, err
    # a single plain (diagonal) division, the old update, is visibly off
    num, den = s.probe_gather(obj, waves)
    assert np.linalg.norm(num / den - exact) / np.linalg.norm(exact) > 30 * err


def test_ml_deviance_matches_float64_reference():
    """The core's Poisson deviance (its own vectorizable logarithm) per pattern against NumPy's float64 sum
    over the same model intensities, for counts from 0 to ~1e7 (model / counts ratios over nine decades),
    two modes, with and without invalid pixels."""
    rng = np.random.default_rng(1)
    n, k, h = 32, 20, 96
    s = _core.PtychoScan(n, 2, (h, h), rng.uniform(-20, 20, (k, 2)), subpixel_steps=8)
    obj = np.exp(1j * rng.uniform(0, 2, (h, h))).astype(np.complex64)
    probe = (3 * (rng.standard_normal((2, n, n)) + 1j * rng.standard_normal((2, n, n)))).astype(np.complex64)
    data = (rng.poisson(5, (k, n, n)) * 10.0 ** rng.integers(-1, 6, (k, n, n))).astype(np.float32)
    data[rng.random(data.shape) < 0.2] = 0
    mask = (rng.random((n, n)) > 0.1).astype(np.uint8)
    far, chi = np.empty((k, 2, n, n), np.complex64), np.empty((k, 2, n, n), np.complex64)
    for m in (None, mask):
        nll = s.ml_gradient(data, m, obj, probe, far, chi)[0]
        power = far.real ** 2 + far.imag ** 2  # float32, as the core: mode 0, then + mode 1
        im = ((power[:, 0] + power[:, 1]) * np.float32(1.0 / (n * n)) + np.float32(1e-6)).astype(np.float64)
        counts = data.astype(np.float64)
        with np.errstate(divide="ignore"):
            terms = np.where(counts > 0, im - counts - counts * np.log(im / np.where(counts > 0, counts, 1)), im)
        if m is not None:
            terms = terms * (m[None] != 0)
        ref = terms.reshape(k, -1).sum(axis=1)
        assert np.ptp(np.log10(im[counts > 0] / counts[counts > 0])) > 9
        np.testing.assert_allclose(nll, ref, rtol=1e-13, atol=0)


def _textbook(a, b):
    """a b of complex64 arrays from their float32 parts, every product and sum rounded once (NumPy's float32
    operators): the formula the kernels use, without fused multiply-adds."""
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    out = np.empty(np.broadcast(a, b).shape, np.complex64)
    out.real = ar * br - ai * bi
    out.imag = ar * bi + ai * br
    return out


def test_complex_products_are_the_textbook_formula_in_every_clone():
    """The exit wave P o and the gathers' conj(P) w and conj(o) w, at a whole-pixel position (the window a copy of
    the object, no interpolation), equal the textbook products bit for bit.  Whatever instruction-set clone this
    machine runs: GCC 12 compiled std::complex's a * b in the AVX-512 clones into vfmaddsub (one rounding fewer)
    despite -ffp-contract=off, so those clones gave other bits than the AVX2 and baseline ones."""
    rng = np.random.default_rng(11)
    n, h = 16, 40
    obj = (rng.normal(size=(h, h)) + 1j * rng.normal(size=(h, h))).astype(np.complex64)
    probe = (rng.normal(size=(1, n, n)) + 1j * rng.normal(size=(1, n, n))).astype(np.complex64)
    waves = (rng.normal(size=(1, 1, n, n)) + 1j * rng.normal(size=(1, 1, n, n))).astype(np.complex64)
    s = _core.PtychoScan(n, 1, (h, h), np.array([[0.0, 0.0]]))
    origin, frac = s.windows
    assert np.all(np.asarray(frac) == 0)
    y0, x0 = (int(v) for v in np.asarray(origin)[0])
    crop = obj[y0:y0 + n, x0:x0 + n]
    ex = np.empty((1, 1, n, n), np.complex64)
    s.exit_waves(obj, probe, ex)
    np.testing.assert_array_equal(ex[0, 0], _textbook(probe[0], crop))
    num, _ = s.object_gather(probe, waves)
    np.testing.assert_array_equal(np.asarray(num)[y0:y0 + n, x0:x0 + n], _textbook(np.conj(probe[0]), waves[0, 0]))
    num, _ = s.probe_gather(obj, waves)
    np.testing.assert_array_equal(np.asarray(num)[0], _textbook(np.conj(crop), waves[0, 0]))
