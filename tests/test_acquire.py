"""tomofuse.acquire: simulated TXTM and PXCT acquisitions checked against closed forms.

Ground truth the simulators did not produce: xraylib cross-sections and refractive
indices (Beer-Lambert ``exp(-mu L)`` with ``mu = rho sigma_total``, phase ``-2 pi delta L /
lambda``), path lengths through hand-made blocks, Poisson statistics, the Gaussian PSF's
FWHM measured on an edge, the Fresnel-propagated Gaussian beam, and the phantom's own
geometry seen through a reconstruction.
"""

import math

import numpy as np
import pandas as pd
import pytest
import xraylib

from tomofuse import Phase
from tomofuse.acquire import FWHM_PER_SIGMA, Acquisition, PXCTOptions, TXTMOptions, pxct_phase, txtm
from tomofuse.acquire._common import filter_frames
from tomofuse.acquire._txtm import fresnel_transfer
from tomofuse.materials import MATERIALS, wavelength
from tomofuse.phantom import Electrode
from tomofuse.tomo import fbp, minus_log, normalize

HC_KEV_NM = 1.23984198  # h c in keV nm


def block_electrode(shape, voxel, blocks):
    """An Electrode whose labels are air (PORE) with axis-aligned blocks ``(phase, z0, z1, y0, y1, x0, x1)``."""
    labels = np.zeros(shape, dtype=np.uint8)
    for phase, z0, z1, y0, y1, x0, x1 in blocks:
        labels[z0:z1, y0:y1, x0:x1] = int(phase)
    return Electrode(labels=labels, particles=np.zeros(shape, np.int32), voxel_size=voxel, seed=0, cycled=False,
                     parameters={}, truth=pd.DataFrame())


def mu_xraylib(name, energy_kev):
    """Linear attenuation (1/m) of a MATERIALS entry: sum of rho_i * sigma_total(E) of its compounds."""
    return sum(xraylib.CS_Total_CP(c.formula, energy_kev) * c.density * 1e-3 * c.volume_fraction * 100.0
               for c in MATERIALS[name].components)


def delta_xraylib(name, energy_kev):
    return sum(1.0 - xraylib.Refractive_Index_Re(c.formula, energy_kev, c.density * 1e-3 * c.volume_fraction)
               for c in MATERIALS[name].components)


# A 24 x 32 x 32 box at 20 nm: a SiOx block 24 voxels deep in y and 12 wide in x, rows 6..18.
SHAPE, VOXEL = (24, 32, 32), 20e-9
BLOCK = (Phase.SILICON, 6, 18, 4, 28, 10, 22)


@pytest.fixture(scope="module")
def block():
    return block_electrode(SHAPE, VOXEL, [BLOCK])


def columns_of(ds, x0, x1, ratio=1.0):
    """Detector columns (theta = 0) whose pixels lie inside voxel columns [x0, x1) (box not cylinder)."""
    cols = ds.data.shape[2]
    u = (np.arange(cols) + 0.5 - cols / 2.0) * ratio + SHAPE[2] / 2.0  # voxel x of the pixel center
    return np.flatnonzero((u - ratio / 2 >= x0) & (u + ratio / 2 <= x1))


def test_wavelength():
    assert wavelength(6.2) == pytest.approx(HC_KEV_NM / 6.2 * 1e-9, rel=1e-8)


def test_txtm_transmission_is_beer_lambert(block):
    energy = 8.4
    ds = txtm(block, [0.0, np.pi / 2], options=TXTMOptions(energy_kev=energy, resolution=0.0, photons=None,
                                                           beam_variation=0.2), cylinder=False)
    assert isinstance(ds, Acquisition) and ds.modality == "txtm"
    t = normalize(ds.data, ds.flat, ds.dark).astype(np.float64)
    mu_si, mu_air = mu_xraylib("siox", energy), mu_xraylib("air", energy)
    rows = slice(6, 18)
    # theta = 0: rays along y, 24 voxels of SiOx and 8 of air
    cols = columns_of(ds, 10, 22)
    expected = math.exp(-(24 * mu_si + 8 * mu_air) * VOXEL)
    np.testing.assert_allclose(t[0, rows][:, cols], expected, rtol=2e-5)
    # rows outside the block see 32 voxels of air
    np.testing.assert_allclose(t[0, 0:6][:, cols], math.exp(-32 * mu_air * VOXEL), rtol=2e-5)
    # theta = 90 deg: rays along x through 12 voxels of SiOx and 20 of air, for y in [4, 28)
    cols90 = columns_of(ds, 4, 28)
    expected90 = math.exp(-(12 * mu_si + 20 * mu_air) * VOXEL)
    np.testing.assert_allclose(t[1, rows][:, cols90], expected90, rtol=2e-5)
    # the attenuation itself, -ln T = mu L, to 0.5 % (T is only 0.4 % below 1 at this size)
    np.testing.assert_allclose(-np.log(t[0, rows][:, cols]), (24 * mu_si + 8 * mu_air) * VOXEL, rtol=5e-3)
    assert ds.truth["mu_m"]["silicon"] == pytest.approx(mu_si, rel=1e-6)
    # the air mask sees only beam
    np.testing.assert_allclose(t[:, ds.air_mask], 1.0, atol=1e-5)


def test_pxct_phase_is_projected_delta(block):
    energy = 6.2
    ds = pxct_phase(block, [0.0], options=PXCTOptions(energy_kev=energy, resolution=0.0, phase_offsets=False,
                                                      wrap=False), shifts=0.0, cylinder=False)
    lam = HC_KEV_NM / energy * 1e-9
    d_si, d_air = delta_xraylib("siox", energy), delta_xraylib("air", energy)
    cols = columns_of(ds, 10, 22)
    expected = -2 * math.pi / lam * (24 * d_si + 8 * d_air) * VOXEL
    np.testing.assert_allclose(ds.data[0, 6:18][:, cols], expected, rtol=2e-5)
    assert ds.flat is None and ds.dark is None
    np.testing.assert_allclose(ds.data[0][ds.air_mask], 0.0, atol=1e-6)


def test_poisson_statistics(block):
    photons, dark = 4000.0, 50.0
    ds = txtm(block, [0.0], options=TXTMOptions(resolution=0.0, photons=photons, dark_counts=dark, beam_variation=0.0,
                                                n_flats=40, n_darks=40), cylinder=False, seed=5)
    pattern = ds.truth["dark_pattern"].astype(np.float64)
    # flats: Poisson(photons) + Poisson(dark pattern): mean and variance both photons + pattern
    flat = ds.flat.astype(np.float64)
    mean = flat.mean(axis=0)
    var = flat.var(axis=0, ddof=1)
    np.testing.assert_allclose(np.mean(mean - pattern), photons, rtol=2e-3)
    assert np.mean(var) == pytest.approx(photons + pattern.mean(), rel=0.03)
    # darks: Poisson(pattern) per pixel
    dk = ds.dark.astype(np.float64)
    assert np.mean(dk.mean(axis=0) - pattern) == pytest.approx(0.0, abs=0.05)
    assert np.mean(dk.var(axis=0, ddof=1) / np.maximum(pattern, 1e-9)) == pytest.approx(1.0, rel=0.03)
    # counts behind the block: photons T + dark, with that variance, and integer-valued
    t = math.exp(-(24 * mu_xraylib("siox", 8.4) + 8 * mu_xraylib("air", 8.4)) * VOXEL)
    cols = columns_of(ds, 10, 22)
    behind = ds.data[0, 6:18][:, cols].astype(np.float64) - pattern[6:18][:, cols]
    assert behind.mean() == pytest.approx(photons * t, rel=0.01)
    assert np.all(ds.data == np.round(ds.data))
    # normalized transmission scatters by ~sqrt(N)/N around T
    tn = normalize(ds.data, ds.flat, ds.dark)[0, 6:18][:, cols]
    assert float(np.std(tn)) == pytest.approx(math.sqrt(photons * t + pattern.mean()) / photons, rel=0.25)


def test_blur_fwhm_measured_on_an_edge():
    # 10 nm voxels, 130 nm FWHM: sigma = 5.52 px; an edge of a wide block at theta = 0, at 3 keV
    # so that the step (T ~ 0.8) stands far above the single-precision FFT's rounding (~1e-6)
    voxel, fwhm = 10e-9, 130e-9
    e = block_electrode((8, 96, 128), voxel, [(Phase.SILICON, 0, 8, 0, 96, 64, 128)])
    ds = txtm(e, [0.0], options=TXTMOptions(resolution=fwhm, photons=None, energy_kev=3.0), cylinder=False)
    t = normalize(ds.data, ds.flat, ds.dark)[0, 4].astype(np.float64)
    cols = ds.data.shape[2]
    edge = cols / 2.0  # voxel x = 64 is the volume center = detector center
    lsf = -np.diff(t)  # between pixel centers c and c+1, located at c + 1
    pos = np.arange(1, cols) - edge
    sel = np.abs(pos) < 40
    w = lsf[sel] / lsf[sel].sum()
    center = np.sum(w * pos[sel])
    # the blurred sampled step differences to the sampled Gaussian (variance sigma^2, no pixel box)
    var = np.sum(w * (pos[sel] - center) ** 2)
    measured = FWHM_PER_SIGMA * math.sqrt(var) * voxel
    assert abs(center) < 0.02
    assert measured == pytest.approx(fwhm, rel=3e-3)
    assert t[: cols // 2 - 40].min() > 0.999 and t[cols // 2 + 40: cols // 2 + 50].max() < 0.9  # a real step
    assert ds.truth["psf_sigma_m"] == pytest.approx(fwhm / 2.3548, rel=1e-4)


def test_fresnel_propagates_a_gaussian_beam():
    """exp(-c0 r^2 / 2) -> exp(-c_z r^2 / 2) with 1/c_z = 1/c0 + i z / k (paraxial, exp(i(kz - wt))).

    With a thin converging lens, t = exp(-i k r^2 / (2 f)) (the sign of the phase ``-k int delta``
    the simulators use), c0 = 1/w0^2 + i k/f and the beam narrows towards the focus; without
    it, it spreads: intensity variance w0^2 (1 + (z/zR)^2) / 2.  Units: pixels.
    """
    n, pixel, lam = 128, 20e-9, wavelength(8.4)
    k = 2 * math.pi * pixel / lam
    r = np.arange(n) + 0.5 - n / 2
    r2 = r[:, None] ** 2 + r[None, :] ** 2
    for w0, focal in ((4.0, None), (12.0, 20000.0)):
        c0 = 1 / w0**2 + (1j * k / focal if focal else 0)
        psi0 = np.exp(-c0 * r2 / 2)
        z_r = k * w0**2  # Rayleigh range 2 pi w0^2 / lambda, pixels
        for z in (0.5 * z_r, z_r) if focal is None else (0.25 * focal, 0.5 * focal):
            psi = filter_frames(psi0[None].astype(np.complex64), fresnel_transfer(lam, z * pixel, pixel),
                                pad=(16, 16), keep_complex=True)[0]
            inten = np.abs(psi.astype(np.complex128)) ** 2
            var_x = np.sum(inten * r[None, :] ** 2) / inten.sum()
            c_z = 1.0 / (1.0 / c0 + 1j * z / k)
            assert var_x == pytest.approx(1.0 / (2 * c_z.real), rel=1e-3)
            assert inten.sum() == pytest.approx(np.sum(np.abs(psi0) ** 2), rel=1e-4)  # unitary
            if focal:
                assert var_x < 0.8 * w0**2 / 2  # converging
            else:
                assert var_x == pytest.approx(w0**2 * (1 + (z / z_r) ** 2) / 2, rel=1e-3)


def test_txtm_propagation_conserves_intensity_and_adds_fringes(block):
    kw = dict(cylinder=False, margin=12)
    contact = txtm(block, [0.0], options=TXTMOptions(resolution=0.0, photons=None), **kw)
    far = txtm(block, [0.0], options=TXTMOptions(resolution=0.0, photons=None, distance=20e-6), **kw)
    tc = normalize(contact.data, contact.flat, contact.dark).astype(np.float64)
    tf = normalize(far.data, far.flat, far.dark).astype(np.float64)
    assert tf.sum() == pytest.approx(tc.sum(), rel=2e-4)
    assert np.max(np.abs(tf - tc)) > 1e-3  # edge-enhancement fringes
    assert np.max(tf) > 1.0  # a bright fringe on the air side of the edges


def test_detector_pixels_integrate_the_fine_image(block):
    opt = dict(resolution=0.0, photons=None, beam_variation=0.0, dark_counts=0.0)
    fine = txtm(block, [0.3], margin=7, options=TXTMOptions(**opt), cylinder=False)
    assert fine.data.shape[1:] == (24, 60) and 60 % 3 == 0  # 1.5-voxel pixels tile it exactly
    coarse = txtm(block, [0.3], margin=7, options=TXTMOptions(pixel_size=1.5 * VOXEL, **opt), cylinder=False)
    assert coarse.data.shape[1:] == (16, 40)
    assert coarse.pixel_size == pytest.approx(1.5 * VOXEL)
    # reference: split every fine pixel in 2 x 2, average blocks of 3 x 3 half pixels
    half = np.repeat(np.repeat(fine.data[0].astype(np.float64), 2, axis=0), 2, axis=1)
    ref = half.reshape(16, 3, 40, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(coarse.data[0], ref, rtol=1e-5)


def test_pxct_shift_convention_and_offsets(block):
    shifts = np.array([[2.0, -3.0], [0.0, 1.0], [-2.0, 4.0]])
    angles = [0.0, 1.0, 2.0]
    kw = dict(margin=10, cylinder=False)
    ref = pxct_phase(block, angles, shifts=0.0, options=PXCTOptions(resolution=0.0, wrap=False, phase_offsets=False),
                     **kw)
    ds = pxct_phase(block, angles, shifts=shifts, seed=4,
                    options=PXCTOptions(resolution=0.0, wrap=False, phase_offsets=True, max_slope=0.03), **kw)
    crop = ds.truth["row_crop_voxels"]
    assert crop == 2 and ds.data.shape[1] == SHAPE[0] - 4
    assert ds.origin[0] == pytest.approx(crop * VOXEL)
    np.testing.assert_array_equal(ds.truth["shifts"], shifts)
    ramps = ds.truth["phase_ramps"]
    rr = np.arange(ds.data.shape[1])[:, None]
    cc = np.arange(ds.data.shape[2])[None, :]
    for a, (dy, dx) in enumerate(shifts.astype(int)):
        c0, sr, sc = ramps[a]
        assert -math.pi <= c0 <= math.pi and abs(sr) <= 0.03 and abs(sc) <= 0.03
        obj = ds.data[a] - (c0 + sr * rr + sc * cc)
        # data[a, r, c] = ideal[r + crop - dy, c - dx] (integer shifts: exact, away from the ends)
        expect = np.roll(ref.data[a], (dy, dx), axis=(0, 1))[crop:SHAPE[0] - crop]
        np.testing.assert_allclose(obj[:, 5:-5], expect[:, 5:-5], atol=2e-5)


def test_pxct_wraps_and_offsets_are_random(block):
    ds = pxct_phase(block, np.linspace(0, np.pi, 8, endpoint=False), options=PXCTOptions(resolution=0.0), seed=1)
    assert np.all(ds.data > -math.pi - 1e-6) and np.all(ds.data <= math.pi + 1e-6)
    unwrapped = pxct_phase(block, np.linspace(0, np.pi, 8, endpoint=False), seed=1,
                           options=PXCTOptions(resolution=0.0, wrap=False))
    np.testing.assert_allclose(np.angle(np.exp(1j * (unwrapped.data - ds.data))), 0.0, atol=1e-5)
    assert np.ptp(ds.truth["phase_ramps"][:, 0]) > 1.0
    assert np.max(np.abs(ds.truth["shifts"])) <= 5.0 and np.ptp(ds.truth["shifts"]) > 2.0


def test_reconstruction_lands_on_the_phantom_through_origin():
    # an off-center SiOx block in a cylinder; the delta map reconstructed from noise-free PXCT phase
    # at a coarser pixel must put the block where the phantom has it (origin + pixel_size)
    voxel, energy = 20e-9, 6.2
    e = block_electrode((12, 48, 48), voxel, [(Phase.SILICON, 0, 12, 26, 38, 14, 22)])
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    ds = pxct_phase(e, theta, shifts=0.0, options=PXCTOptions(energy_kev=energy, resolution=0.0, phase_offsets=False,
                                                              wrap=False, pixel_size=1.25 * voxel))
    p = ds.pixel_size
    delta = fbp(ds.data, theta) / (-2 * math.pi / ds.wavelength * p)
    img = delta[ds.data.shape[1] // 2].astype(np.float64)
    n = img.shape[0]
    yc = ds.origin[1] + (np.arange(n) + 0.5) * p
    xc = ds.origin[2] + (np.arange(n) + 0.5) * p
    # signed centroid over a window reaching 4 pixels beyond the block (26..38 x 14..22 voxels)
    win = ((yc[:, None] > 22 * voxel) & (yc[:, None] < 42 * voxel)
           & (xc[None, :] > 10 * voxel) & (xc[None, :] < 26 * voxel))
    w = np.where(win, img, 0.0)
    cy = np.sum(w * yc[:, None]) / w.sum()
    cx = np.sum(w * xc[None, :]) / w.sum()
    assert cy == pytest.approx(32 * voxel, abs=0.05 * voxel)
    assert cx == pytest.approx(18 * voxel, abs=0.05 * voxel)
    inside = (np.abs(yc[:, None] - 32 * voxel) < 4 * voxel) & (np.abs(xc[None, :] - 18 * voxel) < 2 * voxel)
    assert np.median(img[inside]) == pytest.approx(delta_xraylib("siox", energy), rel=0.03)


def test_deterministic_for_a_seed(block):
    a = txtm(block, [0.0, 1.0], seed=3)
    b = txtm(block, [0.0, 1.0], seed=3)
    c = txtm(block, [0.0, 1.0], seed=4)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.flat, b.flat)
    assert not np.array_equal(a.data, c.data)
    p = pxct_phase(block, [0.0, 1.0], seed=3)
    q = pxct_phase(block, [0.0, 1.0], seed=3)
    np.testing.assert_array_equal(p.data, q.data)


def test_default_txtm_is_usable_for_minus_log(block):
    ds = txtm(block, np.linspace(0, np.pi, 6, endpoint=False), options=TXTMOptions(pixel_size=27.5e-9))
    lines = minus_log(normalize(ds.data, ds.flat, ds.dark))
    assert lines.shape == ds.data.shape and np.all(np.isfinite(lines))
    assert ds.data.dtype == np.float32 and ds.flat.shape[0] == 10 and ds.dark.shape[0] == 10
    assert ds.air_mask.shape == ds.data.shape[1:] and ds.air_mask.any()


@pytest.mark.parametrize(
    "func, kwargs, exc, match",
    [
        (txtm, dict(electrode=np.zeros((8, 8, 8))), TypeError, "electrode must be"),
        (txtm, dict(angles=[]), ValueError, "angles must not be empty"),
        (txtm, dict(angles=[np.nan]), ValueError, "finite"),
        (txtm, dict(options=dict(pixel_size=10e-9)), ValueError, "pixel_size must not be finer"),
        (txtm, dict(options=dict(resolution=-1e-9)), ValueError, "resolution"),
        (txtm, dict(options=dict(photons=0)), ValueError, "photons"),
        (txtm, dict(options=dict(energy_kev=500.0)), ValueError, "energy_kev"),
        (txtm, dict(options=dict(n_flats=0)), ValueError, "n_flats"),
        (txtm, dict(options=dict(beam_variation=1.5)), ValueError, "beam_variation"),
        (txtm, dict(options=PXCTOptions()), TypeError, "TXTMOptions"),
        (txtm, dict(threads=0), ValueError, "threads"),
        (pxct_phase, dict(shifts=np.zeros((3, 2))), ValueError, r"shifts must be a number or an \(2, 2\)"),
        (pxct_phase, dict(shifts=11.0), ValueError, "leaves no rows"),
        (pxct_phase, dict(options=dict(noise=-0.1)), ValueError, "noise"),
        (pxct_phase, dict(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input(block, func, kwargs, exc, match):
    args = dict(electrode=block, angles=[0.0, 1.0])
    args.update(kwargs)
    electrode = args.pop("electrode")
    angles = args.pop("angles")
    with pytest.raises(exc, match=match):
        if isinstance(args.get("options"), dict):  # the options object checks its own fields
            args["options"] = (TXTMOptions if func is txtm else PXCTOptions)(**args["options"])
        func(electrode, angles, **args)
