"""Composition (recipe -> volume fractions) and option validation, without building phantoms."""

from __future__ import annotations

import dataclasses

import numpy as np

import pytest

from tomofuse._phase import Phase
from tomofuse.phantom import Composition, Morphology, electrode
from tomofuse.phantom._composition import split_options

SHAPE = (64, 64, 64)
VOXEL = 40e-9


def by_hand(siox_wt, graphite_wt, pvdf_wt, carbon_black_wt, porosity, cbd_porosity,
            rho_siox=2.13, rho_graphite=2.26, rho_pvdf=1.78, rho_cb=1.80):
    """Volume fractions of the electrode, per 100 g of dry electrode (densities in g/cm^3)."""
    v_si = 100 * siox_wt / rho_siox  # cm^3
    v_gr = 100 * graphite_wt / rho_graphite
    v_pvdf = 100 * pvdf_wt / rho_pvdf
    v_cb = 100 * carbon_black_wt / rho_cb
    v_cbd = (v_pvdf + v_cb) / (1.0 - cbd_porosity)  # nanoporous CBD domain
    total = v_si + v_gr + v_cbd
    solid = 1.0 - porosity  # resolved solid space, shared in proportion to volume
    return {
        Phase.PORE: porosity,
        Phase.GRAPHITE: solid * v_gr / total,
        Phase.SILICON: solid * v_si / total,
        Phase.CBD: solid * v_cbd / total,
        Phase.SEI: 0.0,
    }


def test_default_volume_fractions_by_hand():
    # 30/55/10/5 wt%, 2.13/2.26/1.78/1.80 g/cm^3, CBD nanoporosity 0.5, porosity 0.35:
    #   V_siox = 30/2.13 = 14.085, V_gr = 55/2.26 = 24.336 cm^3 per 100 g
    #   V_cbd = (10/1.78 + 5/1.80)/(1 - 0.5) = (5.618 + 2.778)/0.5 = 16.792
    #   total 55.213 -> SiOx 25.5 %, graphite 44.1 %, CBD 30.4 % of the solid 0.65
    v_si, v_gr = 30 / 2.13, 55 / 2.26
    v_cbd = (10 / 1.78 + 5 / 1.80) / 0.5
    assert (round(v_si, 2), round(v_gr, 2), round(v_cbd, 2)) == (14.08, 24.34, 16.79)
    total = v_si + v_gr + v_cbd
    expected = {
        Phase.PORE: 0.35,
        Phase.GRAPHITE: 0.65 * v_gr / total,
        Phase.SILICON: 0.65 * v_si / total,
        Phase.CBD: 0.65 * v_cbd / total,
        Phase.SEI: 0.0,
    }
    got = Composition().volume_fractions()
    assert set(got) == set(Phase)
    for p in Phase:
        assert got[p] == pytest.approx(expected[p], abs=1e-12), p
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)
    # the docstring's rounded numbers: 16.6 / 28.7 / 19.8 % of the electrode
    assert round(100 * got[Phase.SILICON], 1) == 16.6
    assert round(100 * got[Phase.GRAPHITE], 1) == 28.7
    assert round(100 * got[Phase.CBD], 1) == 19.8


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(porosity=0.3, siox_wt=0.4, graphite_wt=0.45),
        dict(siox_wt=0.2, graphite_wt=0.7, pvdf_wt=0.06, carbon_black_wt=0.04, porosity=0.45, cbd_porosity=0.0),
        dict(cbd_porosity=0.7, porosity=0.25),
    ],
)
def test_volume_fractions_by_hand(kwargs):
    comp = Composition(**kwargs)
    expected = by_hand(comp.siox_wt, comp.graphite_wt, comp.pvdf_wt, comp.carbon_black_wt,
                       comp.porosity, comp.cbd_porosity)
    got = comp.volume_fractions()
    for p in Phase:
        assert got[p] == pytest.approx(expected[p], abs=1e-12), p
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(v >= 0 for v in got.values())


def test_densities_enter_the_fractions():
    heavy = Composition(siox_density=4260.0)  # twice as dense -> half the volume per gram
    expected = by_hand(0.30, 0.55, 0.10, 0.05, 0.35, 0.5, rho_siox=4.26)
    assert heavy.volume_fractions()[Phase.SILICON] == pytest.approx(expected[Phase.SILICON], abs=1e-12)
    assert heavy.volume_fractions()[Phase.SILICON] < Composition().volume_fractions()[Phase.SILICON]


def test_cu_replacement_keeps_volume():
    # replacing carbon black by Cu volume by volume leaves the fractions unchanged
    a = Composition(cu_fraction_of_carbon_black=0.0).volume_fractions()
    b = Composition(cu_fraction_of_carbon_black=1.0).volume_fractions()
    assert a == b


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(siox_wt=0.5), "sum to 1"),  # 0.5 + 0.55 + 0.10 + 0.05 = 1.2
        (dict(graphite_wt=0.45), "sum to 1"),  # 0.9
        (dict(siox_wt=-0.1, graphite_wt=0.95), "siox_wt"),
        (dict(pvdf_wt=-0.05, carbon_black_wt=0.2), "pvdf_wt"),
        (dict(graphite_wt=1.5, siox_wt=-0.65), "graphite_wt|siox_wt"),
        (dict(siox_wt=0.0, graphite_wt=0.85), "siox_wt"),
        (dict(porosity=0), "^porosity"),
        (dict(porosity=1), "^porosity"),
        (dict(porosity=1.2), "^porosity"),
        (dict(porosity=-0.1), "^porosity"),
        (dict(porosity=float("nan")), "^porosity"),
        (dict(cbd_porosity=1), "cbd_porosity"),
        (dict(cbd_porosity=-0.2), "cbd_porosity"),
        (dict(cu_fraction_of_carbon_black=2.0), "cu_fraction_of_carbon_black"),
        (dict(siox_density=0.0), "siox_density"),
        (dict(cu_density=-1.0), "cu_density"),
    ],
)
def test_impossible_composition(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Composition(**kwargs)
    # the same through electrode(): rejected before anything is built
    with pytest.raises(ValueError, match=match):
        electrode(SHAPE, VOXEL, **kwargs)


def test_unknown_keyword():
    with pytest.raises(TypeError, match="porostiy"):
        Composition(porostiy=0.3)
    with pytest.raises(TypeError, match="porostiy") as info:
        electrode(SHAPE, VOXEL, porostiy=0.3)
    msg = str(info.value)
    # the message lists the valid options
    for name in ("porosity", "siox_wt", "cbd_coverage", "sei_thickness_median"):
        assert name in msg
    with pytest.raises(TypeError, match="porostiy"):
        split_options({"porostiy": 0.3})


def test_split_options():
    comp, morph = split_options({"porosity": 0.3, "cbd_coverage": 0.4, "contact_overlap": [0.01, 0.02]})
    assert comp == Composition(porosity=0.3)
    assert morph.cbd_coverage == 0.4
    assert morph.contact_overlap == (0.01, 0.02)
    assert dataclasses.replace(morph, cbd_coverage=0.45, contact_overlap=(0.02, 0.08)) == Morphology()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sei_coverage=0.8, sei_cbd_coverage=0.3), "sei_coverage \\+ sei_cbd_coverage"),
        (dict(cbd_coverage=0.2), "sei_cbd_coverage"),
        (dict(siox_d50=0.0), "siox_d50"),
        (dict(siox_roughness=0.5), "siox_roughness"),
        (dict(size_scale="big"), "size_scale"),
        (dict(contact_overlap=(0.1, 0.05)), "contact_overlap"),
        (dict(field_terms=0), "field_terms"),
        (dict(border_margin=-1e-9), "border_margin"),
    ],
)
def test_impossible_morphology(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Morphology(**kwargs)


def test_numpy_scalars_are_accepted():
    c = Composition(porosity=np.float32(0.3), siox_wt=np.float64(0.3))
    assert c.volume_fractions()[Phase.PORE] == pytest.approx(0.3, rel=1e-6)
