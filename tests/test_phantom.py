"""Phantom labels: composition, phases, particles, reproducibility, voxel-size independence,
input validation and refractive volumes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from conftest import CUSTOM, SHAPE, VOXEL

from tomofuse._phase import Phase
from tomofuse.phantom import Composition, Electrode, electrode, optical_constants, refractive_volume

SOLIDS = (Phase.PORE, Phase.GRAPHITE, Phase.SILICON, Phase.CBD)


def label_fractions(labels):
    counts = np.bincount(labels.ravel(), minlength=256)
    return {p: counts[p] / labels.size for p in Phase}


def assert_fractions_close(labels, asked, tol=0.03):
    got = label_fractions(labels)
    bad = {p.name: (round(got[p], 4), round(asked[p], 4)) for p in Phase if abs(got[p] - asked[p]) > tol}
    assert not bad, f"label fraction off by more than {tol:.0%} (got, asked): {bad}"


# -- arrays and types ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["pristine", "cycled"])
def test_arrays(request, name):
    e = request.getfixturevalue(name)
    assert isinstance(e, Electrode)
    assert e.labels.shape == SHAPE and e.particles.shape == SHAPE
    assert e.labels.dtype == np.uint8 and e.particles.dtype == np.int32
    assert e.shape == SHAPE
    assert e.voxel_size == VOXEL and e.seed == 1 and e.cycled is (name == "cycled")
    assert set(np.unique(e.labels)) <= {int(p) for p in Phase}  # no OUTSIDE (255) code
    # particle ids exactly on the silicon voxels
    np.testing.assert_array_equal(e.particles > 0, e.labels == Phase.SILICON)
    fr = e.phase_fractions()
    assert fr == pytest.approx(label_fractions(e.labels), abs=0)
    assert sum(fr.values()) == pytest.approx(1.0)


# -- composition of the rendered labels (acceptance 3) -------------------------------


@pytest.mark.parametrize("name", ["pristine", "pristine_seed2"])
def test_label_fractions_default_recipe(request, name):
    e = request.getfixturevalue(name)
    asked = Composition().volume_fractions()
    assert_fractions_close(e.labels, asked)
    assert abs(label_fractions(e.labels)[Phase.PORE] - 0.35) <= 0.03
    assert e.parameters["volume_fractions"] == {p.name.lower(): v for p, v in asked.items()}


@pytest.mark.parametrize("seed", [1, 2])
def test_label_fractions_custom_recipe(custom_electrodes, seed):
    e = custom_electrodes[seed]
    asked = Composition(**CUSTOM).volume_fractions()
    # the recipe really is different from the default (SiOx 23.7 % vs 16.6 %)
    assert asked[Phase.SILICON] - Composition().volume_fractions()[Phase.SILICON] > 0.05
    assert e.parameters["options"] == CUSTOM
    assert_fractions_close(e.labels, asked)
    assert abs(label_fractions(e.labels)[Phase.PORE] - 0.30) <= 0.03


def test_cycled_has_all_five_phases_and_sei_only_there(pristine, cycled):
    fc = label_fractions(cycled.labels)
    for p in Phase:
        assert fc[p] > 0.01, f"{p.name} missing from the cycled electrode: {fc[p]:.4f}"
    assert label_fractions(pristine.labels)[Phase.SEI] == 0.0
    # SEI grows into pore and CBD space only: the solids and particle ids are unchanged
    for p in (Phase.SILICON, Phase.GRAPHITE):
        np.testing.assert_array_equal(cycled.labels == p, pristine.labels == p)
    np.testing.assert_array_equal(cycled.particles, pristine.particles)
    grown = cycled.labels == Phase.SEI
    assert np.all(np.isin(pristine.labels[grown], (Phase.PORE, Phase.CBD)))
    # the SEI grows on the SiOx: every SEI voxel lies within the thickest SEI shell
    # (plus a voxel diagonal) of a silicon voxel, most of them much closer
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(cycled.labels != Phase.SILICON)[grown] * VOXEL
    thickest = max(s.max_thickness for s in cycled.geometry.seis if s is not None)
    assert dist.max() <= thickest + math.sqrt(3) * VOXEL
    assert np.median(dist) <= 2 * cycled.parameters["morphology"]["sei_thickness_median"]


def test_several_silicon_particles(pristine):
    ids = set(np.unique(pristine.particles)) - {0}
    assert len(ids) >= 4
    assert ids == set(pristine.truth.index)
    assert pristine.parameters["derived"]["n_silicon"] == len(ids)
    # voxel volumes against the exact volumes (40 nm voxels on ~0.25-0.75 um particles)
    counts = np.bincount(pristine.particles.ravel())
    voxel_volume = counts[pristine.truth.index] * VOXEL**3
    exact = pristine.truth["volume_m3"].to_numpy()
    assert voxel_volume.sum() == pytest.approx(exact.sum(), rel=0.02, abs=0)
    np.testing.assert_allclose(voxel_volume, exact, rtol=0.10)


# -- reproducibility (acceptance 4) ----------------------------------------------------


def test_same_seed_same_electrode(coarse_extent):
    from conftest import COARSE, EXTENT_SAMPLES, EXTENT_SEED

    shape, voxel = COARSE
    again = electrode(shape, voxel, seed=EXTENT_SEED, truth_samples=EXTENT_SAMPLES)
    np.testing.assert_array_equal(again.labels, coarse_extent.labels)
    np.testing.assert_array_equal(again.particles, coarse_extent.particles)
    pd.testing.assert_frame_equal(again.truth, coarse_extent.truth, check_exact=True)
    assert again.parameters == coarse_extent.parameters


def test_different_seed_different_electrode(pristine, pristine_seed2):
    differ = np.mean(pristine.labels != pristine_seed2.labels)
    assert differ > 0.3
    assert not np.array_equal(pristine.particles, pristine_seed2.particles)
    assert not pristine.truth.equals(pristine_seed2.truth)


def test_same_extent_any_voxel_size(fine_extent, coarse_extent):
    assert np.allclose(np.array(fine_extent.shape) * fine_extent.voxel_size,
                       np.array(coarse_extent.shape) * coarse_extent.voxel_size, rtol=0, atol=0)
    # truth is computed on the continuous geometry: identical
    pd.testing.assert_frame_equal(fine_extent.truth, coarse_extent.truth, check_exact=True)
    assert fine_extent.parameters["derived"] == coarse_extent.parameters["derived"]
    # phase fractions agree
    ff, fc = label_fractions(fine_extent.labels), label_fractions(coarse_extent.labels)
    for p in Phase:
        assert abs(ff[p] - fc[p]) <= 0.01, p
    # coarse voxel (i, j, k) has its center at (i + 1/2) 75 nm = (3 i + 3/2) 25 nm,
    # the center of fine voxel 3 i + 1: the labels there must agree
    sub = (slice(1, None, 3),) * 3
    assert fine_extent.labels[sub].shape == coarse_extent.labels.shape
    agree = np.mean(fine_extent.labels[sub] == coarse_extent.labels)
    assert agree > 0.999, agree
    assert np.mean(fine_extent.particles[sub] == coarse_extent.particles) > 0.999


# -- bad input (acceptance 9) -----------------------------------------------------------


@pytest.mark.parametrize(
    "shape, exc",
    [
        ((64, 64), ValueError),
        ((64, 64, 64, 64), ValueError),
        ((0, 64, 64), ValueError),
        ((64, -64, 64), ValueError),
        ((64, 64, 4), ValueError),
        ((64.0, 64, 64), TypeError),
        ((64, 64, 64.5), TypeError),
        ((64, "64", 64), TypeError),
        ((True, 64, 64), TypeError),
        (64, TypeError),
        (None, TypeError),
    ],
)
def test_bad_shape(shape, exc):
    with pytest.raises(exc, match="shape"):
        electrode(shape, VOXEL)


@pytest.mark.parametrize(
    "voxel_size, exc",
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1, ValueError),
        (-40e-9, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (40, ValueError),  # nanometers passed as meters
        ("1e-9", TypeError),
        (None, TypeError),
        (True, TypeError),
        ([40e-9], TypeError),
    ],
)
def test_bad_voxel_size(voxel_size, exc):
    with pytest.raises(exc, match="voxel_size"):
        electrode(SHAPE, voxel_size)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(truth_samples=10), "truth_samples"),
        (dict(threads=0), "threads"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        electrode(SHAPE, VOXEL, **kwargs)


@pytest.mark.parametrize("options", [dict(size_scale=1.0), dict(border_margin=1.2e-6)])
def test_volume_too_small_for_particles(options):
    # 5 um particles in a 0.32 um box; a 1.2 um border margin in a 2.56 um box
    shape = (8, 8, 8) if "size_scale" in options else SHAPE
    with pytest.raises(ValueError, match="shape \\* voxel_size"):
        electrode(shape, VOXEL, **options)


# -- refractive volumes (acceptance 10) --------------------------------------------------


@pytest.mark.parametrize("energy", [6.2, 8.4])
def test_refractive_volume_per_phase(cycled, energy):
    delta, beta = refractive_volume(cycled, energy)
    for vol in (delta, beta):
        assert vol.dtype == np.float32
        assert vol.shape == cycled.labels.shape
    expected = {
        Phase.PORE: optical_constants("air", energy),
        Phase.GRAPHITE: optical_constants("graphite", energy),
        Phase.SILICON: optical_constants("siox", energy),
        Phase.CBD: optical_constants(Composition().cbd_material(), energy),
        Phase.SEI: optical_constants("sei", energy),
    }
    for p, (d, b) in expected.items():
        m = cycled.labels == p
        assert m.any(), p
        assert np.all(delta[m] == np.float32(d)), p
        assert np.all(beta[m] == np.float32(b)), p


def test_refractive_volume_uses_the_electrodes_cbd_recipe():
    labels = np.array([[[Phase.PORE, Phase.CBD], [Phase.SILICON, Phase.GRAPHITE]]] * 2, dtype=np.uint8)
    comp = Composition(cbd_porosity=0.2)  # denser CBD than the default 0.5
    e = Electrode(labels=labels, particles=(labels == Phase.SILICON).astype(np.int32), voxel_size=1e-7,
                  seed=0, cycled=False, parameters={"composition": dataclasses.asdict(comp)},
                  truth=pd.DataFrame())
    delta, beta = refractive_volume(e, 6.2)
    d, b = optical_constants(comp.cbd_material(), 6.2)
    assert delta[labels == Phase.CBD] == pytest.approx(np.float32(d), rel=0, abs=0)
    assert beta[labels == Phase.CBD] == pytest.approx(np.float32(b), rel=0, abs=0)
    assert d == pytest.approx(1.6 * optical_constants("cbd", 6.2)[0], rel=1e-9, abs=0)  # 0.8 / 0.5 solid


def test_refractive_volume_bad_input(pristine):
    with pytest.raises(TypeError, match="electrode"):
        refractive_volume(pristine.labels, 6.2)
    with pytest.raises(ValueError, match="energy_kev"):
        refractive_volume(pristine, 0)


def test_auto_scaled_particles_must_be_resolvable():
    # an 8^3 volume would shrink SiOx to a couple of voxels: refuse rather than mislead
    with pytest.raises(ValueError, match="voxels across"):
        electrode((8, 8, 8), 40e-9)
