"""The core's segmentation kernels against the slow references of ``segment_reference.py``."""

import numpy as np
import pytest

import segment_reference as ref
from tomofuse import _core


@pytest.mark.parametrize("shape,sigma", [((7, 6, 5), (0.8, 1.1, 0.6)), ((12, 5, 9), (0.5, 0.0, 1.3)),
                                         ((3, 4, 2), (2.0, 2.0, 2.0))])
def test_gaussian_blur_matches_dense_operator(shape, sigma):
    rng = np.random.default_rng(1)
    v = rng.random(shape).astype(np.float32)
    for adjoint in (False, True):
        got = _core.gaussian_blur(v, sigma, adjoint=adjoint)
        np.testing.assert_allclose(got, ref.blur(v, sigma, adjoint), atol=1e-6)


def test_blur_adjoint_identity_and_constants():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 8, 7)).astype(np.float32)
    y = rng.normal(size=(9, 8, 7)).astype(np.float32)
    s = (0.9, 1.4, 0.7)
    lhs = float(np.dot(_core.gaussian_blur(x, s).ravel().astype(np.float64), y.ravel()))
    rhs = float(np.dot(x.ravel().astype(np.float64), _core.gaussian_blur(y, s, adjoint=True).ravel()))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    # replicated edges: a constant stays constant
    c = np.full((6, 7, 8), 3.25, np.float32)
    np.testing.assert_allclose(_core.gaussian_blur(c, s), c, rtol=1e-6)


def _icm_case(shape, sigma, seed):
    rng = np.random.default_rng(seed)
    lev = np.array([0.0, 1.0, 0.55, 0.62], np.float32)
    truth = rng.integers(0, 4, shape).astype(np.uint8)
    data = (ref.blur(lev[truth], sigma) + rng.normal(0, 0.1, shape)).astype(np.float32)
    start = rng.integers(0, 4, shape).astype(np.uint8)
    unary = rng.normal(0, 0.5, (1,) + shape).astype(np.float32)
    allowed = rng.integers(1, 16, shape).astype(np.uint8)
    return lev, data, start, unary, allowed


@pytest.mark.parametrize("shape,sigma,cell,origin", [((7, 6, 5), (0.8, 1.1, 0.6), 17, (0, 0, 0)),
                                                     ((16, 5, 6), (0.25, 0.0, 1.3), 0, (3, 9, 1)),
                                                     ((17, 7, 9), (0.25, 0.25, 0.25), 5, (2, 0, 7)),
                                                     ((11, 9, 10), (0.25, 0.25, 0.25), 0, (5, 14, 30))])
def test_icm_equals_reference_at_any_thread_count(shape, sigma, cell, origin):
    lev, data, start, unary, allowed = _icm_case(shape, sigma, 3)
    kw = dict(data_weight=3.0, smoothness=0.4, max_sweeps=5)
    want, changes = ref.icm(data, start, lev, sigma, allowed=allowed, pairs=[(1, 2)], unary=unary, cell=cell,
                            origin=origin, **kw)
    for threads in (1, 2):
        got = start.copy()
        rep = _core.icm(data, got, lev, sigma, allowed=allowed, pairs=np.array([[1, 2]], np.uint8), unary=unary,
                        cell=cell, origin=origin, threads=threads, **kw)
        np.testing.assert_array_equal(got, want)
        assert rep["changes"] == changes
        e = ref.energy(data, got, lev, sigma, pairs=[(1, 2)], unary=unary, data_weight=3.0, smoothness=0.4)
        assert rep["energy_after"] == pytest.approx(e, rel=1e-9)
        assert rep["energy_after"] <= rep["energy_before"]
        assert _core.icm_energy(data, got, lev, sigma, pairs=np.array([[1, 2]], np.uint8), unary=unary,
                                data_weight=3.0, smoothness=0.4) == pytest.approx(e, rel=1e-9)


@pytest.mark.parametrize("sigma,origin", [((0.8, 1.0, 0.9), (0, 0, 0)), ((0.0, 0.6, 1.3), (4, 9, 2))])
def test_icm_skipping_settled_voxels_equals_reference(sigma, origin):
    # phases in blocks, blurred and noisy, 8 % of the voxels flipped; two unary pairs and
    # restricted labels: most voxels settle after the first sweep and are skipped later (their
    # kept bound) -- the labels must still be those of the reference, which computes every
    # voxel's best move at every visit
    shape = (15, 14, 13)
    truth = np.zeros(shape, np.uint8)
    truth[2:13, 2:7, 2:11] = 1
    truth[2:13, 8:12, 2:11] = 2
    truth[5:10, 6:9, 4:9] = 3
    truth[0:3, 10:14, 0:5] = 4
    lev = np.array([0.0, 1.0, 0.8, 0.5, 0.55], np.float32)
    rng = np.random.default_rng(11)
    data = (ref.blur(lev[truth], sigma) + rng.normal(0, 0.04, shape)).astype(np.float32)
    start = truth.copy()
    flip = rng.random(shape) < 0.08
    start[flip] = rng.integers(0, 5, int(flip.sum()))
    unary = rng.normal(0, 0.3, (2,) + shape).astype(np.float32)
    allowed = np.full(shape, 0b11111, np.uint8)
    allowed[rng.random(shape) < 0.1] = 0b00111
    pairs = [(1, 2), (3, 4)]
    kw = dict(data_weight=1 / (2 * 0.04 ** 2), smoothness=1.5, max_sweeps=6)
    want, changes = ref.icm(data, start, lev, sigma, allowed=allowed, pairs=pairs, unary=unary, origin=origin, **kw)
    for threads in (1, 2):
        got = start.copy()
        rep = _core.icm(data, got, lev, sigma, allowed=allowed, pairs=np.array(pairs, np.uint8), unary=unary,
                        origin=origin, threads=threads, **kw)
        np.testing.assert_array_equal(got, want)
        assert rep["changes"] == changes
        ev = rep["evaluations"]
        assert len(ev) == rep["sweeps"] and ev[0] >= data.size
        # after a sweep that moved voxels, most are still skipped (measured: 228 and 23 of 2730)
        assert changes[1] > 0 and ev[2] < data.size / 4


def test_upsample_linear_equals_reference():
    rng = np.random.default_rng(21)
    for _ in range(80):
        f = int(rng.integers(1, 6))
        shape = tuple(int(n) for n in rng.integers(1, 25, 3))
        origin = tuple(int(o) for o in rng.integers(0, 60, 3))
        coarse = rng.normal(size=tuple(int(n) for n in rng.integers(1, 9, 3))).astype(np.float32)
        want = ref.upsample_linear(coarse, f, shape, origin)
        for threads in (1, 2):
            got = _core.upsample_linear(coarse, f, shape, origin=origin, threads=threads)
            np.testing.assert_array_equal(got, want)
        into = np.full((2,) + shape, np.nan, np.float32)
        _core.upsample_linear(coarse, f, shape, origin=origin, out=into[1])
        np.testing.assert_array_equal(into[1], want)
        assert np.isnan(into[0]).all()


def test_upsample_linear_reproduces_a_linear_field():
    # a field linear in the coarse centers is linear in the fine ones (inside the outer centers)
    f, origin = 3, (2, 0, 5)
    m = (5, 6, 7)
    c = [np.arange(n, dtype=np.float64) for n in m]
    coarse = (0.5 * c[0][:, None, None] - 0.25 * c[1][None, :, None] + 0.125 * c[2][None, None, :]).astype(np.float32)
    shape = tuple(f * n - o % f for n, o in zip(m, origin))
    got = _core.upsample_linear(coarse, f, shape, origin=origin)
    pos = [(np.arange(n) + o % f + 0.5) / f - 0.5 for n, o in zip(shape, origin)]
    want = 0.5 * pos[0][:, None, None] - 0.25 * pos[1][None, :, None] + 0.125 * pos[2][None, None, :]
    inside = np.ix_(*[(p >= 0) & (p <= n - 1) for p, n in zip(pos, m)])
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-5)
    # beyond the outer centers: the end values (a ramp along x, fine x from the lattice's start)
    ramp = np.broadcast_to(np.arange(7, dtype=np.float32) * 2 + 1, (2, 3, 7)).copy()
    fine = _core.upsample_linear(ramp, f, (2 * f, 3 * f, 7 * f))
    px = (np.arange(7 * f) + 0.5) / f - 0.5
    assert (px < 0).sum() == 1 and (px > 6).sum() == 1
    assert np.all(fine[..., px < 0] == 1.0) and np.all(fine[..., px > 6] == 13.0)
    np.testing.assert_allclose(fine[0, 0], np.clip(px, 0, 6) * 2 + 1, atol=1e-5)


def test_upsample_linear_bad_input():
    a = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="factor"):
        _core.upsample_linear(a, 0, (4, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        _core.upsample_linear(a, 2, (4, 0, 4))
    with pytest.raises(TypeError, match="origin"):
        _core.upsample_linear(a, 2, (4, 4, 4), origin=(0.5, 0, 0))
    with pytest.raises(ValueError, match="out"):
        _core.upsample_linear(a, 2, (4, 4, 4), out=np.zeros((4, 4, 5), np.float32))
    with pytest.raises((TypeError, ValueError), match="coarse"):
        _core.upsample_linear(np.zeros((2, 2), np.float32), 2, (4, 4, 4))


def test_icm_recovers_blurred_blocks():
    # two phases of close level separated by a third, blurred and noisy; 5 % of the voxels
    # start with a random label: the blurred model and the smoothness put them back
    shape = (24, 20, 22)
    truth = np.zeros(shape, np.uint8)
    truth[4:20, 3:10, 3:19] = 1
    truth[4:20, 12:18, 3:19] = 2
    truth[8:16, 9:13, 6:15] = 3
    lev = np.array([0.0, 1.0, 0.8, 0.5], np.float32)
    sigma = (0.8, 1.2, 1.2)
    rng = np.random.default_rng(5)
    data = (_core.gaussian_blur(lev[truth], sigma) + rng.normal(0, 0.03, shape)).astype(np.float32)
    labels = truth.copy()
    flip = rng.random(shape) < 0.05
    labels[flip] = rng.integers(0, 4, int(flip.sum()))
    before = np.mean(labels != truth)
    rep = _core.icm(data, labels, lev, sigma, data_weight=1 / (2 * 0.03 ** 2), smoothness=2.0, max_sweeps=20,
                    threads=2)
    assert before > 0.03 and np.mean(labels != truth) < 0.002
    assert rep["energy_after"] < rep["energy_before"]


def test_icm_moves_the_most_confident_voxel_first():
    # a blurred edge one voxel off: in raster order the first voxel of the misfit would take
    # the change (a wrong voxel); highest-confidence-first flips the right one
    truth = np.zeros((6, 7, 12), np.uint8)
    truth[:, :, 5:] = 1
    lev = np.array([0.0, 1.0], np.float32)
    data = _core.gaussian_blur(lev[truth], (0.0, 0.0, 1.0))
    labels = np.zeros_like(truth)
    labels[:, :, 6:] = 1
    _core.icm(data, labels, lev, (0.0, 0.0, 1.0), data_weight=10.0, max_sweeps=5)
    np.testing.assert_array_equal(labels, truth)


def test_icm_bad_input():
    data = np.zeros((8, 8, 8), np.float32)
    labels = np.zeros((8, 8, 8), np.uint8)
    lev = np.array([0, 1], np.float32)
    with pytest.raises(TypeError, match="data must have dtype float32"):
        _core.icm(data.astype(np.float64), labels, lev, (1, 1, 1))
    with pytest.raises(ValueError, match="labels must have shape"):
        _core.icm(data, labels[:4], lev, (1, 1, 1))
    with pytest.raises(ValueError, match="labels must be < n_labels"):
        _core.icm(data, labels + 2, lev, (1, 1, 1))
    with pytest.raises(ValueError, match="data must be finite"):
        bad = data.copy()
        bad[0, 0, 0] = np.nan
        _core.icm(bad, labels, lev, (1, 1, 1))
    with pytest.raises(ValueError, match="sigma"):
        _core.icm(data, labels, lev, (1, -1, 1))
    with pytest.raises(ValueError, match="writeable"):
        ro = labels.copy()
        ro.setflags(write=False)
        _core.icm(data, ro, lev, (1, 1, 1))
    with pytest.raises(ValueError, match="shares memory"):
        _core.icm(data, data.view(np.uint8).reshape(-1)[:512].reshape(8, 8, 8), lev, (1, 1, 1))
    with pytest.raises(ValueError, match="pairs and unary"):
        _core.icm(data, labels, lev, (1, 1, 1), pairs=np.array([[0, 1]], np.uint8))
    with pytest.raises(ValueError, match="cell"):
        _core.icm(data, labels, lev, (1.0, 1, 1), cell=3)
    with pytest.raises(ValueError, match="origin"):
        _core.icm(data, labels, lev, (1.0, 1, 1), origin=(0, -1, 0))


@pytest.mark.parametrize("seed,sigma", [(0, (0.8, 1.1, 0.9)), (1, (0.5, 0.0, 1.3)), (2, (1.2, 1.2, 1.2))])
def test_shell_moves_equal_the_crop_energy_reference(seed, sigma):
    # blurred spheres (label 2) with a one-voxel shell of label 1 and noise: shells (26-connected
    # components of label 1 next to label 2) are tried whole, in id order, by the exact energy change
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (20, 22, 24)
    truth = np.zeros(shape, np.uint8)
    z, y, x = np.indices(shape)
    for c in rng.uniform(4, 18, (4, 3)):
        truth[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= rng.uniform(2, 4) ** 2] = 2
    lev = np.array([0.0, 0.9, 1.0, 0.5], np.float32)
    data = (ref.blur(lev[truth], sigma) + rng.normal(0, 0.05, shape)).astype(np.float32)
    labels = truth.copy()
    shell = ndimage.binary_dilation(truth == 2) & (truth != 2)
    labels[shell] = 1
    labels[(truth == 2) & (rng.random(shape) < 0.1)] = 1
    # the candidates cut into pieces by 4-voxel cubes: many components, some next to each other
    # (the shell's and the inside's pieces apart: the inside ones should turn)
    piece = (z // 4) * 100 + (y // 4) * 10 + x // 4 + 1000 * (truth == 2)
    ids = np.unique(piece[labels == 1])
    comp = np.where(labels == 1, np.searchsorted(ids, piece) + 1, 0).astype(np.int32)
    n = len(ids)
    unary = rng.normal(0, 0.3, (1,) + shape).astype(np.float32)
    kw = dict(pairs=np.array([[1, 2]], np.uint8), unary=unary, data_weight=20.0, smoothness=0.3)
    want = labels.copy()
    n_want = ref.shell_moves(data, want, lev, sigma, comp, 2, **kw)
    got = labels.copy()
    n_got = _core.shell_moves(data, got, lev, sigma, comp, 2, threads=1, **kw)
    assert n > 20 and n_want > 0 and n_got == n_want  # some pieces turn, not all
    assert n_want < int((comp > 0).sum())
    np.testing.assert_array_equal(got, want)


def test_shell_moves_bad_input():
    data = np.zeros((8, 8, 8), np.float32)
    labels = np.zeros((8, 8, 8), np.uint8)
    lev = np.array([0, 1], np.float32)
    comp = np.zeros((8, 8, 8), np.int32)
    with pytest.raises(ValueError, match="components must have shape"):
        _core.shell_moves(data, labels, lev, (1, 1, 1), comp[:4], 1)
    with pytest.raises(TypeError, match="components must have dtype int32"):
        _core.shell_moves(data, labels, lev, (1, 1, 1), comp.astype(np.int64), 1)
    with pytest.raises(ValueError, match="target"):
        _core.shell_moves(data, labels, lev, (1, 1, 1), comp, 2)
    bad = comp.copy()
    bad[0, 0, 0] = -1
    with pytest.raises(ValueError, match="components must be >= 0"):
        _core.shell_moves(data, labels, lev, (1, 1, 1), bad, 1)
