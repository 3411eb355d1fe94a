"""tomofuse.ptycho geometry and probe: pixel size, Fermat spiral, focused probe (against closed forms)."""

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from tomofuse import ptycho
from tomofuse.materials import wavelength

PLANCK = 6.62607015e-34
LIGHT = 299792458.0
CHARGE = 1.602176634e-19


def test_pixel_size_reproduces_the_paper():
    dx = ptycho.object_pixel_size(6.2, 7.362, 172e-6, 400)
    assert round(dx * 1e9, 1) == 21.4
    lam = PLANCK * LIGHT / (6.2e3 * CHARGE)  # from SI constants, not the module's hc
    assert dx == pytest.approx(lam * 7.362 / (400 * 172e-6), rel=1e-12)
    # lambda z / (n p): twice the pixels -> half the object pixel
    assert ptycho.object_pixel_size(6.2, 7.362, 172e-6, 800) == pytest.approx(dx / 2, rel=1e-14)


@pytest.mark.parametrize("args, exc", [((0.0, 7.3, 172e-6, 400), ValueError), ((6.2, -1.0, 172e-6, 400), ValueError),
                                       ((6.2, 7.3, 172e-6, 0), ValueError), (("6", 7.3, 172e-6, 400), TypeError),
                                       ((6.2, 7.3, float("nan"), 400), ValueError)])
def test_pixel_size_bad_input(args, exc):
    with pytest.raises(exc):
        ptycho.object_pixel_size(*args)


def test_fermat_spiral_nearest_neighbors_and_coverage():
    step, extent = 1.3e-6, (20e-6, 48e-6)
    pos = ptycho.fermat_spiral(step, extent)
    assert pos.ndim == 2 and pos.shape[1] == 2 and pos.dtype == np.float64
    # all inside the (height, width) field, centered
    assert np.all(np.abs(pos[:, 0]) <= extent[0] / 2) and np.all(np.abs(pos[:, 1]) <= extent[1] / 2)
    assert np.allclose(pos[0], 0.0)
    d_nn, _ = cKDTree(pos).query(pos, k=2)
    d_nn = d_nn[:, 1]
    assert np.mean(d_nn) == pytest.approx(step, rel=0.03)
    assert np.percentile(d_nn, 10) > 0.9 * step and np.percentile(d_nn, 90) < 1.1 * step
    density = len(pos) / (extent[0] * extent[1])
    assert 1 / density == pytest.approx(math.pi * (step / 1.70) ** 2, rel=0.05)
    # coverage: every point of the field away from its rim is within 0.85 step of a scan position
    # (a hexagonal lattice of spacing `step` would give 0.58 step; the corners, beyond the spiral's last ring
    # inside the field, are farther)
    gy, gx = np.meshgrid(np.linspace(-extent[0] / 2, extent[0] / 2, 81),
                         np.linspace(-extent[1] / 2, extent[1] / 2, 193), indexing="ij")
    grid = np.column_stack([gy.ravel(), gx.ravel()])
    d_cover, _ = cKDTree(pos).query(grid)
    inner = (np.abs(grid[:, 0]) <= extent[0] / 2 - step / 2) & (np.abs(grid[:, 1]) <= extent[1] / 2 - step / 2)
    assert d_cover[inner].max() < 0.85 * step
    assert d_cover.max() < 1.5 * step
    # scaling: half the step -> four times the points (within the rim's fluctuations)
    assert len(ptycho.fermat_spiral(step / 2, extent)) / len(pos) == pytest.approx(4.0, rel=0.05)


def test_fermat_spiral_is_isotropic():
    pos = ptycho.fermat_spiral(1e-6, (40e-6, 40e-6))
    assert np.std(pos[:, 0]) == pytest.approx(np.std(pos[:, 1]), rel=0.03)
    assert abs(np.mean(pos[:, 0])) < 0.3e-6 and abs(np.mean(pos[:, 1])) < 0.3e-6


@pytest.mark.parametrize("step, extent", [(0.0, (1e-6, 1e-6)), (1e-6, (1e-6,)), (1e-6, (1e-6, -1.0)),
                                          (1e-6, (float("inf"), 1e-6)), (1e-12, (1e-3, 1e-3))])
def test_fermat_spiral_bad_input(step, extent):
    with pytest.raises(ValueError):
        ptycho.fermat_spiral(step, extent)


def test_focused_probe_in_focus_is_an_airy_spot():
    n, dx, e = 128, 21.4e-9, 6.2
    lam = wavelength(e)
    na = lam / (8 * dx)  # pupil radius n/8 frequency pixels; Airy first zero 0.61 lambda / NA = 4.88 px
    p = ptycho.focused_probe(n, object_pixel_size=dx, energy_kev=e, diameter=0.0, numerical_aperture=na)
    assert p.dtype == np.complex64 and p.shape == (n, n)
    i = np.abs(p.astype(np.complex128)) ** 2
    assert i.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.unravel_index(np.argmax(i), i.shape) == (n // 2, n // 2)
    y, x = np.indices(i.shape) - n // 2
    r = np.hypot(y, x)
    r0 = 0.61 * lam / na / dx
    # Airy: 83.8 % of the power inside the first dark ring, 91.0 % inside the second (1.117 lambda / NA)
    assert i[r <= r0].sum() == pytest.approx(0.838, abs=0.01)
    assert i[r <= 1.117 * lam / na / dx].sum() == pytest.approx(0.910, abs=0.01)


def test_focused_probe_defocused_disc():
    n, dx, e = 128, 20e-9, 6.2
    d = 40 * dx
    p = ptycho.focused_probe(n, object_pixel_size=dx, energy_kev=e, diameter=d)
    i = np.abs(p.astype(np.complex128)) ** 2
    assert i.sum() == pytest.approx(1.0, rel=1e-5)
    y, x = np.indices(i.shape) - n // 2
    r = np.hypot(y, x) * dx
    # a geometric disc of diameter d, nearly uniform (a uniform disc has 36 % of its power within 0.3 d and
    # 100 % within 0.5 d), with Fresnel fringes spilling a little beyond its edge
    assert i[r <= 0.5 * d].sum() > 0.85
    assert i[r <= 0.7 * d].sum() > 0.95
    assert i[r <= 0.3 * d].sum() == pytest.approx(0.36, abs=0.05)
    # a central stop removes the low frequencies: the diffraction pattern has a hole
    ps = ptycho.focused_probe(n, object_pixel_size=dx, energy_kev=e, diameter=d, central_stop=0.4)
    far = np.abs(np.fft.fft2(np.fft.ifftshift(ps))) ** 2
    assert far[0, 0] < 1e-6 * far.max()


@pytest.mark.parametrize("kwargs", [dict(n=4), dict(diameter=-1.0), dict(diameter=1e-3), dict(central_stop=1.0),
                                    dict(numerical_aperture=1.0), dict(numerical_aperture=0.0)])
def test_focused_probe_bad_input(kwargs):
    args = dict(n=64, object_pixel_size=20e-9, energy_kev=6.2)
    args.update(kwargs)
    with pytest.raises(ValueError):
        ptycho.focused_probe(args.pop("n"), **args)
