"""Property-based fuzzing (hypothesis) of every binding in tomofuse._core and of the public functions
that reach one: random shapes with 0- and 1-sized axes, every dtype, non-contiguous, negative-stride,
Fortran-ordered, read-only and overlapping arrays, NaN/Inf, huge sizes. Every call must either
return the right result (checked against an oracle where one is cheap: NumPy's FFT, brute force,
shapes and dtypes, finiteness) or raise a clear Python exception (TypeError, ValueError or
MemoryError with a message). Each case runs in a worker process (tests/fuzz_worker.py) that a crash
cannot take down: a crash is counted and fails the case.

CI runs a fixed seed (derandomized) and TOMOFUSE_FUZZ_EXAMPLES examples per entry point (default
25); set TOMOFUSE_FUZZ_REPORT=path to write the per-entry counts as JSON (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz suite needs hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzz_worker import ArraySpec, Case, Runner  # noqa: E402

EXAMPLES = int(os.environ.get("TOMOFUSE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), print_blob=False)
ALLOWED = ("TypeError", "ValueError", "MemoryError")
DTYPES = [np.float32, np.float64, np.complex64, np.complex128, np.int64, np.int32, np.uint8, np.bool_, np.float16]
LAYOUTS = ["c"] * 8 + ["strided", "reversed", "fortran", "readonly"]
HUGE = [2**31, 2**40, 2**62]

COUNTS: dict[str, Counter] = defaultdict(Counter)
MESSAGES: dict[str, dict[str, str]] = defaultdict(dict)   # entry -> exception -> one message
RUNNER = None


def _runner():
    global RUNNER
    if RUNNER is None:
        RUNNER = Runner()
    return RUNNER


def teardown_module(module):
    if RUNNER is not None:
        RUNNER.close()
    path = os.environ.get("TOMOFUSE_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"counts": {k: dict(v) for k, v in sorted(COUNTS.items())},
                       "messages": {k: sorted(v.values()) for k, v in sorted(MESSAGES.items())}}, f, indent=1)


# -------------------------------------------------------------------------------------- strategies

@st.composite
def values(draw, shape, dtype, low=-1.0, high=1.0, special=True):
    """A C-contiguous array of `shape` and `dtype`, values from a seeded generator, maybe NaN/Inf."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.uniform(low, high, shape)
    if np.issubdtype(dtype, np.complexfloating):
        a = a + 1j * rng.uniform(low, high, shape)
    if special and a.size and draw(st.integers(0, 9)) == 0 and np.issubdtype(dtype, np.inexact):
        a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with np.errstate(all="ignore"):
        return np.ascontiguousarray(a.astype(dtype))


@st.composite
def array(draw, shape, dtype, low=-1.0, high=1.0, mutate=True, special=True):
    """An array argument: mostly the expected dtype and shape in some layout, sometimes mutated
    (another dtype, another number of dimensions, an axis of 0 or 1)."""
    kind = draw(st.integers(0, 19)) if mutate else 0
    shape = tuple(shape)
    if kind == 17:
        dtype = draw(st.sampled_from(DTYPES))
    elif kind == 18 and shape:
        shape = shape[:-1] if draw(st.booleans()) else shape + (draw(st.integers(1, 3)),)
    elif kind == 19 and shape:
        i = draw(st.integers(0, len(shape) - 1))
        shape = shape[:i] + (draw(st.sampled_from([0, 1])),) + shape[i + 1:]
    data = draw(values(shape, dtype, low, high, special))
    return ArraySpec(data, draw(st.sampled_from(LAYOUTS)))


class Gen:
    """Draws the arguments of one example. Half the examples are valid calls (expected dtypes,
    shapes, C layout, finite values, good scalars), so that every entry point's success path and
    its oracle run; the other half mutate every argument freely."""

    def __init__(self, data):
        self.data = data
        self.valid = data.draw(st.booleans(), label="valid")

    def arr(self, shape, dtype, low=-1.0, high=1.0, special=True):
        if self.valid:
            return ArraySpec(self.data.draw(values(tuple(shape), dtype, low, high, special=False)), "c")
        return self.data.draw(array(shape, dtype, low, high, special=special))

    def num(self, good, **kw):
        return good if self.valid else self.data.draw(scalar(good, **kw))

    def pick(self, good, bad):
        return good if self.valid else self.data.draw(st.sampled_from([good] + list(bad)))

    def dim(self, lo=1, hi=6):
        return self.data.draw(st.integers(max(lo, 1), hi) if self.valid else dim(lo, hi))

    def threads(self):
        return self.data.draw(st.sampled_from([0, 1, 2, 3] if self.valid else [0, 1, 2, -1]))


def dim(lo=1, hi=6):
    return st.one_of(*([st.integers(max(lo, 2), hi)] * 6), st.sampled_from([0, 1]))


def scalar(good, *, huge=True, negative=True):
    """A size or count: usually `good`, sometimes 0, negative or huge."""
    opts = [st.just(good)] * 12 + [st.just(0)]
    if negative:
        opts.append(st.just(-1))
    if huge:
        opts.append(st.sampled_from(HUGE))
    return st.one_of(*opts)


threads = st.sampled_from([0, 1, 2, 3, 0, 1, 2, -1])


# ----------------------------------------------------------------------------------- case runner

def run_case(case: Case, oracle=None):
    out = _runner().run(case)
    status = out[0]
    COUNTS[case.entry]["cases"] += 1
    if status == "crash":
        COUNTS[case.entry]["crashes"] += 1
        pytest.fail(f"{case.entry} crashed the worker: {out[1]}\ncase: {case!r}"[:4000])
    if status == "raised":
        _, name, mro, message, tb = out
        COUNTS[case.entry]["raised " + name] += 1
        MESSAGES[case.entry].setdefault(name + ": " + message[:50], message[:300])
        assert any(a in mro for a in ALLOWED), f"{case.entry} raised {name}: {message}\n{tb}"
        assert message.strip(), f"{case.entry} raised {name} without a message"
        return None
    COUNTS[case.entry]["returned"] += 1
    if oracle is not None:
        oracle(out[1], out[2])
    return out[1]


def _finite(*arrays):
    return all(np.all(np.isfinite(np.asarray(a))) for a in arrays)


# ------------------------------------------------------------------------------------------- FFT

def _close(result, ref):
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    np.testing.assert_allclose(result, ref, atol=1e-4 * scale, rtol=0)


@FUZZ
@given(st.data())
def test_fuzz_fft2(data):
    g = Gen(data)
    shape = [g.dim(1, 7) for _ in range(data.draw(st.integers(2, 4) if g.valid else st.integers(0, 4)))]
    a = g.arr(shape, np.complex64)
    inverse = data.draw(st.booleans())
    norm = g.pick(data.draw(st.sampled_from([None, "backward", "ortho", "forward"])), ["bogus"])
    with_out = data.draw(st.integers(0, 2))
    kwargs = dict(inverse=inverse, norm=norm, threads=g.threads())
    if with_out == 1:
        kwargs["out"] = ArraySpec(np.zeros(a.data.shape, np.complex64), g.pick("c", ["readonly", "strided"]))
    elif with_out == 2:
        kwargs["out"] = ArraySpec(np.zeros(a.data.shape, np.complex64), "alias:0")   # in place: out is a

    def oracle(result, made):
        x = a.data
        if not _finite(x) or x.ndim < 2:
            return
        n = {"backward": None, None: None, "ortho": "ortho", "forward": "forward"}[norm]
        _close(result, (np.fft.ifft2 if inverse else np.fft.fft2)(x.astype(np.complex128), norm=n))

    run_case(Case("fft2", [a], kwargs), oracle)


@pytest.mark.parametrize("which", ["__init__", "forward", "backward"])
@FUZZ
@given(st.data())
def test_fuzz_fft_plan(which, data):
    g = Gen(data)
    ny, nx = g.num(g.dim(1, 9)), g.num(g.dim(1, 9))
    setup = {"args": (ny, nx), "kwargs": {"rigor": g.pick(data.draw(st.sampled_from(["estimate", "measure"])),
                                                           ["slow"])}}
    if which == "__init__":
        run_case(Case("FFTPlan2D.__init__", setup=setup))
        return
    shape = (g.dim(1, 3), ny if 0 < ny < 64 else 4, nx if 0 < nx < 64 else 4)
    a = g.arr(shape, np.complex64)

    def oracle(result, made):
        if _finite(a.data):
            _close(result, (np.fft.fft2 if which == "forward" else np.fft.ifft2)(a.data.astype(np.complex128)))

    run_case(Case(f"FFTPlan2D.{which}", [a], {"threads": g.threads()}, setup), oracle)


@FUZZ
@given(st.data())
def test_fuzz_filter_real_2d(data):
    g = Gen(data)
    b, ny, nx = g.dim(1, 3), g.dim(), g.dim()
    py_ = ny + data.draw(st.integers(0, 4) if g.valid else st.integers(-1, 4))
    px = nx + data.draw(st.integers(0, 4) if g.valid else st.integers(-1, 4))
    frames = g.arr((b, ny, nx), np.float32)
    resp = g.arr((max(py_, 0), max(px, 0) // 2 + 1), np.float32, 0.0, 1.0)
    r = resp.data
    if isinstance(r, np.ndarray) and r.ndim == 2 and r.shape[0] > 0 and r.dtype.kind == "f":
        # even in ky, as a real filter is: otherwise the result depends on the FFT library's c2r
        r[...] = (r + r[(-np.arange(r.shape[0])) % r.shape[0]]) / 2
    kw = dict(pad_ny=g.num(py_), pad_nx=g.num(px), rigor=g.pick("estimate", ["measure", "x"]), threads=g.threads())

    def oracle(result, made):
        f, r = frames.data.astype(np.float64), resp.data.astype(np.float64)
        if not _finite(f, r):
            return
        top, left = (kw["pad_ny"] - ny) // 2, (kw["pad_nx"] - nx) // 2
        pad = np.pad(f, ((0, 0), (top, kw["pad_ny"] - ny - top), (left, kw["pad_nx"] - nx - left)), mode="edge")
        _close(result, np.fft.irfft2(np.fft.rfft2(pad) * r, s=pad.shape[1:])[:, top:top + ny, left:left + nx])

    run_case(Case("filter_real_2d", [frames, resp], kw), oracle)


# ------------------------------------------------------------------------------------ tomography

@FUZZ
@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_fuzz_project(data, dtype):
    g = Gen(data)
    nz, ny, nx, na = g.dim(), g.dim(), g.dim(), g.dim()
    vol = g.arr((nz, ny, nx), dtype, 0.0, 1.0)
    angles = g.arr((na,), np.float64, 0.0, np.pi)
    n_cols = g.num(g.dim(1, 8))
    kw = dict(n_cols=n_cols, center_offset=g.pick(0.5, [np.nan, 1e300, -3.0]), threads=g.threads())

    def oracle(result, made):
        assert result.shape == (na, nz, n_cols) and result.dtype == dtype
        if _finite(vol.data, angles.data):
            assert np.all(np.isfinite(result)) and np.all(result >= -1e-6)
            # no ray is longer than the slice's diagonal
            assert np.all(result <= np.hypot(ny, nx) * vol.data.max() * (1 + 1e-5) + 1e-6)

    run_case(Case("project", [vol, angles], kw), oracle)


@pytest.mark.parametrize("name", ["backproject", "backproject_linear"])
@FUZZ
@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_fuzz_backproject(name, data, dtype):
    g = Gen(data)
    na, nz, nc = g.dim(), g.dim(), g.dim()
    proj = g.arr((na, nz, nc), dtype)
    angles = g.arr((na,), np.float64, 0.0, np.pi)
    ny, nx = g.num(g.dim()), g.num(g.dim())
    kw = dict(ny=ny, nx=nx, center_offset=g.pick(1.5, [np.inf, -40.0]), threads=g.threads())

    def oracle(result, made):
        assert result.shape == (nz, ny, nx) and result.dtype == dtype
        if _finite(proj.data, angles.data):
            bound = na * float(np.max(np.abs(proj.data), initial=0.0)) * (np.hypot(ny, nx) if name == "backproject" else 1)
            assert np.all(np.isfinite(result)) and np.all(np.abs(result) <= bound * (1 + 1e-4) + 1e-6)

    run_case(Case(name, [proj, angles], kw), oracle)


@FUZZ
@given(st.data(), st.sampled_from([np.complex64, np.complex128]))
def test_fuzz_spread_rays_hermitian(data, dtype):
    g = Gen(data)
    width = data.draw(st.sampled_from([2, 4, 6, 8]) if g.valid else st.integers(0, 20))
    degree = data.draw(st.integers(0, 6))
    n_rays, n_points = g.dim(1, 5), g.dim(1, 7)
    rows = 2 * width + 4 + 2 * data.draw(st.integers(0, 4))
    cols = 2 * width + 4 + 2 * data.draw(st.integers(0, 4))
    samples = g.arr((n_rays, n_points), dtype)
    angles = data.draw(st.lists(st.floats(-np.pi, np.pi), min_size=n_rays, max_size=n_rays))
    reach = max(n_points - 1, 1)
    steps = ArraySpec(np.array([[rows / 2 * np.cos(t) / reach, cols / 2 * np.sin(t) / reach] for t in angles]
                               ).reshape(-1, 2) * (1.0 if g.valid else data.draw(st.sampled_from([1.0, 3.0, np.nan]))), "c")
    if not g.valid:
        steps = data.draw(st.sampled_from([steps, ArraySpec(steps.data.astype(np.float32), "c"),
                                           ArraySpec(steps.data[:, :1].copy(), "c")]))
    kernel = g.arr((width, degree + 1), np.float64, 0.0, 1.0)
    kw = dict(rows=g.num(rows), cols=g.num(cols), threads=g.threads())

    def oracle(result, made):
        assert result.shape == (kw["rows"] // 2 + 1, kw["cols"]) and result.dtype == dtype
        if _finite(samples.data, kernel.data):
            assert np.all(np.isfinite(result))
            # rows 0 and rows/2 are their own reflections: H(r, c) = conj H(r, -c)
            flip = (-np.arange(kw["cols"])) % kw["cols"]
            for r in (0, kw["rows"] // 2):
                np.testing.assert_allclose(result[r], np.conj(result[r, flip]), rtol=1e-5, atol=1e-5)

    run_case(Case("spread_rays_hermitian", [samples, steps, kernel], kw), oracle)


# ---------------------------------------------------------------------------- rasters, ray tracing

@FUZZ
@given(st.data(), st.sampled_from([np.float32, np.float64]))
def test_fuzz_points_in_spheres(data, dtype):
    g = Gen(data)
    n, m = g.dim(1, 30), g.dim(1, 8)
    pts, cen = g.arr((n, 3), dtype, 0, 5), g.arr((m, 3), dtype, 0, 5)
    rad = g.arr((m,), dtype, 0.0 if g.valid else -0.1, 1.5)

    def oracle(result, made):
        p, c, r = (x.data.astype(np.float64) for x in (pts, cen, rad))
        d2 = ((p[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        ref = (d2 <= (r ** 2)[None, :]).any(axis=1)
        near = np.isclose(d2, (r ** 2)[None, :], rtol=1e-5).any(axis=1)   # float32 ties on the sphere
        np.testing.assert_array_equal(result[~near], ref[~near])

    run_case(Case("points_in_spheres", [pts, cen, rad], {"threads": g.threads()}), oracle)


@FUZZ
@given(st.data())
def test_fuzz_trace_rays(data):
    g = Gen(data)
    shape = (g.dim(), g.dim(), g.dim())
    labels = g.arr(shape, np.uint8, 0, 5, special=False)
    parts = g.arr(shape, np.int32, 0, 3, special=False)
    n = g.dim(1, 10)
    origins, dirs = g.arr((n, 3), np.float64, 0, 5), g.arr((n, 3), np.float64)
    self_ids = g.arr((n,), np.int32, 0, 3, special=False)
    kw = dict(max_length=g.pick(np.inf, [5.0, 0.0, -1.0, np.nan]), sei_label=g.pick(4, [0, 255, -1, 300]),
              max_gap=g.pick(1.0, [0.0, -1.0, np.inf]), threads=g.threads())

    def oracle(result, made):
        label, particle, sei = result
        assert label.shape == particle.shape == sei.shape == (n,)
        hit = label != 255
        assert np.all(np.isin(label[hit], np.unique(labels.data)))
        assert np.all(np.isnan(sei[label != kw["sei_label"]]) | (sei[label != kw["sei_label"]] >= 0))

    run_case(Case("trace_rays", [labels, parts, origins, dirs, self_ids], kw), oracle)


@FUZZ
@given(st.data())
def test_fuzz_surface_elements(data):
    g = Gen(data)
    shape = (g.dim(), g.dim(), g.dim())
    parts = g.arr(shape, np.int32, 0, 3, special=False)
    kw = dict(sigma=g.pick(2.0, [0.5, 0.0, -1.0, 17.0, np.nan]), threads=g.threads())

    def oracle(result, made):
        particle, center, normal, area, axis = result
        p = parts.data
        faces = sum(int(((np.diff((p == q).astype(int), axis=a, prepend=0, append=0)) != 0).sum())
                    for q in np.unique(p[p > 0]) for a in range(3))
        assert len(area) == faces                      # one element per particle voxel face
        assert center.shape == normal.shape == (faces, 3) and np.all((area >= 0) & (area <= 1 + 1e-9))
        assert np.all(np.isin(np.abs(axis), [1, 2, 3]))

    run_case(Case("surface_elements", [parts], kw), oracle)


# ------------------------------------------------------------------------------- finite elements

@pytest.mark.parametrize("which", ["__init__", "assemble", "matvec", "solve"])
@FUZZ
@given(st.data())
def test_fuzz_voxel_mesh(which, data):
    g = Gen(data)
    shape = (g.dim(1, 4), g.dim(1, 4), g.dim(1, 4))
    m = np.ones(shape, np.uint8) if g.valid else None
    mask = ArraySpec(m, "c") if g.valid else g.arr(shape, np.uint8, 0, 1.6, special=False)
    setup = {"args": (mask,), "kwargs": {"voxel_size": g.pick(1e-6, [0.0, -1.0, np.nan]), "threads": g.threads()},
             "op_args": (g.pick(1.0, [0.0, np.inf]), 1.0)}
    nodes = int(np.prod([s + 1 for s in shape]))
    if which == "__init__":
        def oracle(result, made):
            if g.valid:
                assert result == (nodes, int(np.prod(shape)))
        run_case(Case("VoxelMesh.__init__", setup=setup), oracle)
    elif which == "assemble":
        run_case(Case("VoxelMesh.assemble", [1.0, 2.0], {"threads": g.threads()}, setup))
    else:
        x = g.arr((g.pick(nodes, [1, 0]),), np.float64)
        kw = {"threads": g.threads()}
        if which == "solve":
            kw.update(rtol=g.pick(1e-10, [0.0, -1.0, np.nan]),
                      preconditioner=g.pick(data.draw(st.sampled_from(["jacobi", "jacobi+constant", "multigrid",
                                                                        "cholesky", "none"])), ["ilu"]),
                      max_iterations=g.pick(1000, [0, -1]))

        def oracle(result, made):
            if which == "matvec" and g.valid:
                assert np.isclose(result.sum(), (x.data * 0).sum() + result.sum())   # shape only
                assert result.shape == (nodes,)
            if which == "solve" and g.valid:
                xs, info = result
                assert info["converged"] and xs.shape == (nodes,) and np.all(np.isfinite(xs))

        run_case(Case(f"VoxelMesh.{which}", [x], kw, setup), oracle)


def test_unit_element_matrices_are_symmetric_with_zero_row_sums():
    out = _runner().run(Case("unit_element_matrices"))
    COUNTS["unit_element_matrices"]["cases"] += 1
    assert out[0] == "ok", out
    COUNTS["unit_element_matrices"]["returned"] += 1
    mass, stiff = out[1]
    np.testing.assert_allclose(mass, mass.T)
    np.testing.assert_allclose(stiff.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(mass.sum(), 1.0)


@FUZZ
@given(st.integers(-3, 5))
def test_fuzz_set_default_threads(n):
    run_case(Case("set_default_threads", [n]))


# ---------------------------------------------------------------------------------- ptychography

PTYCHO_METHODS = ["__init__", "shifted_probes", "object_windows", "illumination", "exit_waves", "dm_iteration",
                  "object_gather", "probe_gather", "ml_gradient", "ml_line_coefficients", "ml_iteration",
                  "position_equations"]


@pytest.mark.parametrize("which", PTYCHO_METHODS)
@FUZZ
@given(st.data())
def test_fuzz_ptycho_scan(which, data):
    g = Gen(data)
    n = data.draw(st.sampled_from([4, 6, 1]))
    modes, k = data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 3]))
    h, w = n + 6, n + 7
    pos = g.arr((k, 2), np.float64, -2.5, 2.5)
    setup = {"args": (g.num(n), g.num(modes, huge=False), (g.num(h), w), pos),
             "kwargs": {"subpixel_steps": g.pick(data.draw(st.sampled_from([0, 4, 8])), [65, -1])}}
    obj = lambda: g.arr((h, w), np.complex64)  # noqa: E731
    probe = lambda: g.arr((modes, n, n), np.complex64)  # noqa: E731
    waves = lambda: g.arr((k, modes, n, n), np.complex64)  # noqa: E731
    frames = lambda: g.arr((k, n, n), np.float32, 0, 4)  # noqa: E731
    mask = None if data.draw(st.booleans()) else g.arr((n, n), np.uint8, 0, 1.5, special=False)
    t = {"threads": g.threads()}
    if which == "__init__":
        args, kw = [], {}
    elif which in ("shifted_probes", "illumination"):
        args, kw = [probe()], t
    elif which == "object_windows":
        args, kw = [obj()], t
    elif which == "exit_waves":
        args, kw = [obj(), probe(), waves()], t
    elif which == "position_equations":  # (a workspace of the wrong size, or none: the scan's is tested elsewhere)
        args, kw = [obj(), probe(), waves()], dict(t, workspace=g.pick(None, [np.zeros(7, np.uint8)]))
    elif which == "object_gather":
        args, kw = [probe(), waves()], t
    elif which == "probe_gather":
        args, kw = [obj(), waves()], t
    elif which == "dm_iteration":
        args = [frames(), mask, obj(), probe(), waves()]
        kw = dict(t, overlap_iterations=g.pick(2, [0]), object_inertia=g.pick(1e-3, [-1.0, np.nan]),
                  bound=None if data.draw(st.booleans()) else g.arr((k,), np.float64, 0, 2),
                  model_error=data.draw(st.booleans()))
    elif which == "ml_gradient":
        args = [frames(), mask, obj(), probe(), waves(), waves()]
        kw = dict(t, intensity_floor=g.pick(1e-6, [0.0, -1.0, np.inf]))
    elif which == "ml_line_coefficients":
        args = [frames(), mask, obj(), probe(), obj(), probe(), waves()]
        kw = dict(t, intensity_floor=g.pick(1e-6, [0.0]))
    else:  # ml_iteration: state arrays in a dict the worker turns into the state object
        hw, pr = (h, w), (modes, n, n)
        state = {"grad_object": (hw, np.complex64), "grad_probe": (pr, np.complex64),
                 "precond_object": (hw, np.float32), "precond_probe": ((n, n), np.float32),
                 "dir_object": (hw, np.complex64), "dir_probe": (pr, np.complex64),
                 "prev_grad_object": (hw, np.complex64), "prev_grad_probe": (pr, np.complex64)}
        state = {name: g.arr(shape, dtype) for name, (shape, dtype) in state.items()}
        args = [frames(), mask, obj(), probe()]
        kw = dict(t, state=state, far=waves(), chi=waves(), start=data.draw(st.booleans()),
                  max_backtracks=g.pick(3, [-1]), smoothness=g.pick(0.01, [-1.0, np.nan]),
                  workspace=g.pick(None, [np.zeros(7, np.uint8)]), reuse_workspace=data.draw(st.booleans()))

    def oracle(result, made):
        outs = result if isinstance(result, tuple) else (result,)
        inputs_finite = g.valid
        for r in outs:
            if isinstance(r, np.ndarray) and inputs_finite and r.dtype.kind in "fc":
                assert np.all(np.isfinite(r)), f"{which}: non-finite output from finite input"

    run_case(Case(f"PtychoScan.{which}", args, kw, setup), oracle)


# ------------------------------------------------------------------------- public stage functions

@pytest.mark.parametrize("name", ["tomo.fbp", "tomo.project", "tomo.backproject", "tomo.fbp_phase_derivative"])
@FUZZ
@given(st.data())
def test_fuzz_tomo_stage_functions(name, data):
    g = Gen(data)
    na, nz, nc = g.dim(2, 6), g.dim(1, 3), g.dim(2, 8)
    dtype = g.pick(np.float32, [np.float64, np.int64, np.complex64])
    angles = g.arr((na,), np.float64, 0, np.pi)
    kw = {"threads": g.pick(None, [1, 2, 0, -1])}
    if name == "tomo.project":
        args = [g.arr((nz, nc, nc), dtype, 0, 1), angles]
    else:
        args = [g.arr((na, nz, nc), dtype), angles]
        if name != "tomo.backproject":
            kw["center"] = g.pick(None, [nc / 2, -5.0, np.nan])

    def oracle(result, made):
        assert np.all(np.isfinite(np.asarray(result)))

    run_case(Case(name, args, kw), oracle)


@FUZZ
@given(st.data())
def test_fuzz_paganin(data):
    g = Gen(data)
    proj = g.arr((g.dim(1, 3), g.dim(2, 8), g.dim(2, 8)), np.float32, 0.1, 1)
    kw = dict(pixel_size=g.pick(27.5e-9, [0.0, -1.0, np.nan]), distance=g.pick(0.01, [0.0]),
              energy_kev=g.pick(6.2, [-1.0]), delta_beta=g.pick(0.028, [0.0, np.inf]))

    def oracle(result, made):
        assert result.shape == proj.data.shape and np.all(np.isfinite(result))

    run_case(Case("tomo.paganin", [proj], kw), oracle)


@FUZZ
@given(st.data())
def test_fuzz_surface_coverage(data):
    g = Gen(data)
    shape = (g.dim(2, 8), g.dim(2, 8), g.dim(2, 8))
    labels = g.arr(shape, np.uint8, 0, 5, special=False)
    parts = g.arr(shape, np.int32, 0, 3, special=False)
    if g.valid:   # particles lie on silicon voxels
        labels.data[parts.data > 0] = 2
        labels.data[(parts.data == 0) & (labels.data == 2)] = 0
    kw = dict(voxel_size=g.pick(20e-9, [0.0, -1.0, np.nan]), sigma=g.pick(1.0, [0.0, 30.0]),
              threads=g.pick(None, [1, 2]))

    def oracle(result, made):
        if len(result):
            fractions = result.select_dtypes("number").filter(like="fraction")
            assert np.all((fractions.to_numpy() >= -1e-12) & (fractions.to_numpy() <= 1 + 1e-12))

    run_case(Case("analysis.surface_coverage", [labels, parts], kw), oracle)


@settings(max_examples=max(3, EXAMPLES // 5), derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck), print_blob=False)
@given(st.data())
def test_fuzz_ptycho_reconstruct(data):
    g = Gen(data)
    n, k = 8, g.pick(5, [0, 1])
    intensities = g.arr((k, n, n), np.float32, 0, 20)
    pos = g.arr((k, 2), np.float64, -3, 3)
    probe = g.arr((n, n), np.complex64)
    kw = dict(object_shape=g.pick((20, 20), [(4, 4), (0, 20)]),
              engines=g.pick((("dm", 2), ("ml", 2)), [(("dm", 0),), (("xx", 1),), ()]),
              probe_modes=g.pick(1, [2, 0]), threads=g.pick(1, [2, None]))

    def oracle(result, made):
        assert result == "<Reconstruction>"

    run_case(Case("ptycho.reconstruct", [intensities, pos, probe], kw), oracle)


# ---------------------------------------------------------------------------------- segmentation

def _sigma(g, data):
    good = [float(data.draw(st.sampled_from([0.0, 0.6, 1.3]))) for _ in range(3)]
    return g.pick(good, [[1.0, 1.0], [-1.0, 0.0, 0.0], [np.nan, 0.0, 0.0], "abc", [1.0, "x", 0.0], 3.0])


@FUZZ
@given(st.data())
def test_fuzz_gaussian_blur(data):
    import segment_reference as ref

    g = Gen(data)
    vol = g.arr((g.dim(1, 6), g.dim(1, 6), g.dim(1, 6)), np.float32)
    sigma = _sigma(g, data)
    adjoint = data.draw(st.booleans())

    def oracle(result, made):
        assert result.shape == vol.data.shape and result.dtype == np.float32
        if g.valid and _finite(vol.data):
            _close(result, ref.blur(vol.data, sigma, adjoint=adjoint))

    run_case(Case("gaussian_blur", [vol, sigma], {"adjoint": adjoint, "threads": g.threads()}), oracle)


def _icm_args(g, data, with_labels_kind=True):
    shape = (g.dim(1, 5), g.dim(1, 5), g.dim(1, 5))
    k = data.draw(st.integers(2, 4))
    levels = g.arr((g.pick(k, [0, 9]),), np.float32, 0, 3)
    labels = ArraySpec(np.asarray(np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, k, shape),
                                  np.uint8), g.pick("c", ["readonly", "strided", "fortran", "alias:0"]))
    if not g.valid and data.draw(st.integers(0, 5)) == 0:
        labels = ArraySpec(np.full(shape, 200, np.uint8))   # labels out of range
    kw = dict(data_weight=g.pick(1.0, [0.0, -1.0, np.nan]), smoothness=g.pick(0.2, [-1.0, np.inf]),
              threads=g.threads())
    if data.draw(st.booleans()):   # one pair of labels with a signed evidence field
        kw["pairs"] = ArraySpec(np.array([[0, 1]], np.uint8), g.pick("c", ["strided"]))
        kw["unary"] = g.arr((1,) + shape, np.float32)
        if not g.valid and data.draw(st.booleans()):
            del kw["unary"]   # pairs without unary
    return g.arr(shape, np.float32, 0, 3), labels, levels, _sigma(g, data), kw


@FUZZ
@given(st.data())
def test_fuzz_icm(data):
    import segment_reference as ref

    g = Gen(data)
    vol, labels, levels, sigma, kw = _icm_args(g, data)
    kw.update(max_sweeps=g.pick(3, [-1]), min_changes=g.pick(0, [-1]), cell=g.pick(0, [-1, 1]))
    if data.draw(st.booleans()):
        kw["allowed"] = ArraySpec(np.full(vol.data.shape, 0b0111, np.uint8), g.pick("c", ["readonly", "reversed"]))

    start = labels.data.copy()

    def oracle(result, made):
        out = made[1]
        assert set(result) == {"sweeps", "changes", "evaluations", "energy_before", "energy_after"}
        assert result["energy_after"] <= result["energy_before"] * (1 + 1e-6) + 1e-9
        assert out.max(initial=0) < len(levels.data)
        if g.valid:   # the energy reported is the energy of the labels returned
            pairs = [(0, 1)] if "pairs" in kw else ()
            unary = kw["unary"].data if "pairs" in kw else None
            e = ref.energy(vol.data, out, levels.data, sigma, pairs=pairs, unary=unary, data_weight=1.0,
                           smoothness=0.2)
            assert np.isclose(result["energy_after"], e, rtol=1e-4, atol=1e-6)
            # and the labels are the reference's, which computes every voxel at every visit
            # (equal levels, zero sigmas, one-voxel volumes: the core's skipping must not matter)
            want, changes = ref.icm(vol.data, start, levels.data, sigma, pairs=pairs, unary=unary,
                                    allowed=kw["allowed"].data if "allowed" in kw else None, data_weight=1.0,
                                    smoothness=0.2, max_sweeps=3)
            np.testing.assert_array_equal(out, want)
            assert result["changes"] == changes

    run_case(Case("icm", [vol, labels, levels, sigma], kw), oracle)


@FUZZ
@given(st.data())
def test_fuzz_icm_energy(data):
    import segment_reference as ref

    g = Gen(data)
    vol, labels, levels, sigma, kw = _icm_args(g, data)

    def oracle(result, made):
        if g.valid:
            e = ref.energy(vol.data, labels.data, levels.data, sigma, pairs=[(0, 1)] if "pairs" in kw else (),
                           unary=kw["unary"].data if "pairs" in kw else None, data_weight=1.0, smoothness=0.2)
            assert np.isclose(result, e, rtol=1e-4, atol=1e-6)

    run_case(Case("icm_energy", [vol, labels, levels, sigma], kw), oracle)


@FUZZ
@given(st.data())
def test_fuzz_shell_moves(data):
    import segment_reference as ref

    g = Gen(data)
    vol, labels, levels, sigma, kw = _icm_args(g, data)
    shape = vol.data.shape
    comp = np.asarray(np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, 4, shape), np.int32)
    if not g.valid and comp.size and data.draw(st.integers(0, 4)) == 0:
        comp[(0,) * 3] = -1   # a negative id
    components = ArraySpec(comp, g.pick("c", ["strided", "fortran"]))
    target = g.pick(1, [-1, 9])

    def oracle(result, made):
        out = made[1]
        assert 0 <= result <= int((comp > 0).sum())
        assert out.max(initial=0) < len(levels.data)
        if g.valid and _finite(vol.data):   # the same turns as the crop-energy reference
            want = labels.data.copy()
            ref.shell_moves(vol.data, want, levels.data, sigma, comp, 1,
                            pairs=kw["pairs"].data if "pairs" in kw else None,
                            unary=kw["unary"].data if "pairs" in kw else None, data_weight=1.0, smoothness=0.2)
            np.testing.assert_array_equal(out, want)

    run_case(Case("shell_moves", [vol, labels, levels, sigma, components, target], kw), oracle)


def _blocky_fused(data, shape):
    """(2, z, y, x) volume of blocks of the five phases, both channels growing with density."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    coarse = rng.integers(0, 5, (3, 3, 3))
    idx = [np.minimum(np.arange(n) * 3 // n, 2) for n in shape]
    phases = coarse[np.ix_(*idx)]
    delta = np.array([0.0, 2.2, 2.3, 1.2, 1.5])[phases] + 0.05 * rng.standard_normal(shape)
    beta = np.array([0.0, 0.2, 2.0, 0.3, 0.4])[phases] + 0.05 * rng.standard_normal(shape)
    return np.stack([delta, beta]).astype(np.float32)


SEGMENT_CASES = ["valid", "arguments", "too small", "one channel", "infinite", "dtype", "phase units", "layout"]


@pytest.mark.parametrize("kind", SEGMENT_CASES)
@settings(max_examples=max(2, EXAMPLES // 8), derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck), print_blob=False)
@given(st.data())
def test_fuzz_segment(kind, data):
    """Each kind of input a fixed share of the examples (segment is the slowest entry point)."""
    shape = tuple(data.draw(st.integers(8, 12)) for _ in range(3))
    fused = _blocky_fused(data, shape)
    if kind == "too small":
        fused = fused[:, :, :, : data.draw(st.integers(0, 7))]
    elif kind == "one channel":
        fused = fused[data.draw(st.integers(0, 1))]
    elif kind == "infinite":
        fused.reshape(-1)[data.draw(st.integers(0, fused.size - 1))] = data.draw(st.sampled_from([np.inf, -np.inf]))
    elif kind == "dtype":
        fused = fused.astype(data.draw(st.sampled_from([np.int64, np.complex64, np.bool_, np.uint8])))
    elif kind == "valid":   # any float precision is accepted
        fused = fused.astype(data.draw(st.sampled_from([np.float32, np.float64, np.float16])))
    elif kind == "phase units":   # PXCT in phase units anticorrelates with TXTM
        fused[0] = -fused[0]
    layout = data.draw(st.sampled_from(["strided", "reversed", "fortran", "readonly"])) if kind == "layout" else "c"
    arr = ArraySpec(np.ascontiguousarray(fused), layout)
    channels = data.draw(st.sampled_from(["both", "pxct", "txtm"])) if kind == "valid" else "both"
    kw = dict(voxel_size=21.4e-9, cycled=data.draw(st.booleans()), channels=channels, energies_kev=(6.2, 8.4),
              threads=data.draw(st.sampled_from([1, 2, None])))
    if kind == "arguments":
        name = data.draw(st.sampled_from(["voxel_size", "channels", "energies_kev", "threads", "resolution",
                                          "thresholds", "cycled"]))
        kw[name] = data.draw(st.sampled_from({
            "voxel_size": [0.0, -1.0, np.nan, "x", np.inf], "channels": ["bogus", 3, None],
            "energies_kev": [(6.2,), (-1.0, 8.4), "ab", (np.nan, 8.4)], "threads": [0, -1, 2.5, "2"],
            "resolution": [(0.0, 1e-7), (1e-7,), -1.0], "thresholds": [{"levels": 1}, 3, "x"],
            "cycled": ["yes", 2]}[name]))

    def oracle(result, made):
        assert kind in ("valid", "layout"), f"{kind}: accepted"
        labels, valid = result
        assert labels.shape == shape and labels.dtype == np.uint8 and valid.shape == shape
        assert labels.max() <= 4

    run_case(Case("segment.segment", [arr], kw), oracle)


@FUZZ
@given(st.data())
def test_fuzz_label_particles(data):
    g = Gen(data)
    shape = tuple(g.dim(1, 10) for _ in "zyx")
    labels = g.arr(shape, np.uint8, 0, 5, special=False)   # Phase codes, silicon = 2
    kw = dict(voxel_size=g.pick(21.4e-9, [0.0, -1.0, np.nan]), split=data.draw(st.booleans()),
              min_volume=g.pick(None, [-1.0, 1e-30, np.nan, "x"]), neck_ratio=g.pick(0.7, [0.0, 1.0, np.nan]),
              threads=g.pick(None, [1, 2, 0, -1]))

    def oracle(result, made):
        assert result.shape == shape and result.dtype == np.int32
        lab = labels.data
        assert np.all(lab[result > 0] == 2)          # particles lie on silicon only
        if g.valid:
            assert np.all(result[lab == 2] > 0)      # every silicon voxel belongs to a particle
            ids = np.unique(result[result > 0])
            np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))

    run_case(Case("segment.label_particles", [labels], kw), oracle)


def test_no_case_crashed_the_worker():
    """Runs last in this module: the crash count over every case above (each also failed itself)."""
    runner = _runner()
    assert runner.crashes == [], f"crashes: {runner.crashes}"
