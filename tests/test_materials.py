"""X-ray optical constants (tomofuse.materials) against closed forms and mixing rules."""

from __future__ import annotations

import math

import numpy as np

import pytest

from tomofuse._phase import Phase
from tomofuse.materials import (
    MATERIALS,
    PHASE_MATERIALS,
    Component,
    Material,
    cbd_material,
    optical_constants,
    phase_optical_constants,
)
from tomofuse.phantom import Composition

# CODATA 2018 constants (exact or to the digits given).
R_E = 2.8179403262e-15  # classical electron radius, m
N_A = 6.02214076e23  # 1/mol
HC = 12.398419843320026e-10  # h*c in keV*m: lambda[m] = HC / E[keV]


def delta_free_electron(density_g_cm3, electrons, molar_mass_g_mol, energy_kev):
    """delta = r_e lambda^2 n_e / (2 pi), n_e = rho N_A Z / A (no anomalous scattering)."""
    lam = HC / energy_kev
    n_e = density_g_cm3 * 1e6 * N_A * electrons / molar_mass_g_mol  # electrons per m^3
    return R_E * lam**2 * n_e / (2.0 * math.pi)


def test_graphite_delta_matches_free_electron_closed_form():
    # graphite: Z = 6, A = 12.011 g/mol, rho = 2.26 g/cm^3.  At 6.2 keV the
    # anomalous (f') correction of carbon is far below 2 %.
    expected = delta_free_electron(2.26, 6, 12.011, 6.2)
    assert expected == pytest.approx(1.2194e-5, rel=1e-3, abs=0)  # the closed form itself
    delta, beta = optical_constants("graphite", 6.2)
    assert delta == pytest.approx(expected, rel=0.02, abs=0)
    assert 0 < beta < delta


@pytest.mark.parametrize(
    "name, density, electrons, molar_mass",
    [("graphite", 2.26, 6, 12.011), ("siox", 2.13, 14 + 8, 28.0855 + 15.999)],
)
def test_delta_far_above_edges_matches_closed_form(name, density, electrons, molar_mass):
    # At 20 keV, far above the Si and O K edges, the free-electron form holds to < 1 %.
    delta, _ = optical_constants(name, 20.0)
    assert delta == pytest.approx(delta_free_electron(density, electrons, molar_mass, 20.0), rel=0.01, abs=0)


def test_delta_scales_as_inverse_energy_squared():
    d1, _ = optical_constants("graphite", 10.0)
    d2, _ = optical_constants("graphite", 20.0)
    assert d1 / d2 == pytest.approx(4.0, rel=0.01, abs=0)


def test_graphite_and_siox_same_delta_different_beta():
    """The paper's motivation: PXCT (delta) cannot tell graphite from SiOx, TXTM (beta) can."""
    d_gr, _ = optical_constants("graphite", 6.2)
    d_si, _ = optical_constants("siox", 6.2)
    assert abs(d_si - d_gr) / d_gr < 0.10
    _, b_gr = optical_constants("graphite", 8.4)
    _, b_si = optical_constants("siox", 8.4)
    assert b_si / b_gr > 5.0


def test_cbd_is_the_volume_weighted_sum_of_its_components():
    # Default recipe by hand: V = wt / rho; the CBD solid (1 - nanoporosity = 0.5)
    # is shared by PVDF and carbon black by volume, half the carbon-black volume
    # being Cu nanoparticles.
    v_pvdf = 0.10 / 1780.0
    v_cb = 0.05 / 1800.0
    solid = 1.0 - 0.5
    phi = {
        "pvdf": solid * v_pvdf / (v_pvdf + v_cb),
        "carbon_black": solid * 0.5 * v_cb / (v_pvdf + v_cb),
        "copper": solid * 0.5 * v_cb / (v_pvdf + v_cb),
    }
    for energy in (6.2, 8.4):
        parts = {name: optical_constants(name, energy) for name in phi}  # bulk pure components
        delta = sum(phi[n] * parts[n][0] for n in phi)
        beta = sum(phi[n] * parts[n][1] for n in phi)
        d_cbd, b_cbd = optical_constants("cbd", energy)
        assert d_cbd == pytest.approx(delta, rel=1e-9, abs=0)
        assert b_cbd == pytest.approx(beta, rel=1e-9, abs=0)
        # the recipe's own CBD material is the same material
        assert optical_constants(Composition().cbd_material(), energy) == pytest.approx((d_cbd, b_cbd), rel=1e-12, abs=0)
    density = sum(phi[n] * MATERIALS[n].components[0].density for n in phi)
    assert MATERIALS["cbd"].density == pytest.approx(density, rel=1e-12, abs=0)


def test_mixture_linear_in_partial_density():
    # a half-dense graphite (50 % void) has half the delta and beta
    half = Material("half_graphite", (Component("C", 2260.0, 0.5),))
    d, b = optical_constants("graphite", 8.0)
    d2, b2 = optical_constants(half, 8.0)
    assert d2 == pytest.approx(0.5 * d, rel=1e-9, abs=0)
    assert b2 == pytest.approx(0.5 * b, rel=1e-9, abs=0)


def test_cbd_material_recipe_changes_constants():
    porous = cbd_material(porosity=0.8)
    dense = cbd_material(porosity=0.0)
    d_p, _ = optical_constants(porous, 6.2)
    d_d, _ = optical_constants(dense, 6.2)
    assert d_p == pytest.approx(0.2 * d_d, rel=1e-9, abs=0)
    no_cu = cbd_material(cu_fraction_of_carbon_black=0.0)
    assert [c.formula for c in no_cu.components] == ["C2H2F2", "C"]
    assert optical_constants(no_cu, 8.4)[1] < optical_constants("cbd", 8.4)[1]


def test_every_phase_has_a_material():
    table = phase_optical_constants(6.2)
    assert set(table) == set(Phase)
    assert PHASE_MATERIALS[Phase.SILICON] == "siox"
    assert PHASE_MATERIALS[Phase.GRAPHITE] == "graphite"
    for p, (d, b) in table.items():
        assert d > 0 and b > 0, p
        assert (d, b) == optical_constants(PHASE_MATERIALS[p], 6.2)
    # air is ~1000x thinner than the solids
    assert table[Phase.PORE][0] < 1e-3 * table[Phase.GRAPHITE][0]
    override = phase_optical_constants(6.2, {Phase.CBD: cbd_material(porosity=0.0)})
    assert override[Phase.CBD][0] > table[Phase.CBD][0]


def test_unknown_material_is_named():
    with pytest.raises(ValueError, match="unobtainium"):
        optical_constants("unobtainium", 6.2)


def test_material_of_wrong_type():
    with pytest.raises(TypeError, match="material"):
        optical_constants(3, 6.2)


@pytest.mark.parametrize("energy", [0, -1, 0.0, float("nan"), float("inf"), 1e4])
def test_bad_energy_value(energy):
    with pytest.raises(ValueError, match="energy_kev"):
        optical_constants("graphite", energy)


@pytest.mark.parametrize("energy", ["x", None, [6.2]])
def test_bad_energy_type(energy):
    with pytest.raises((TypeError, ValueError), match="energy_kev"):
        optical_constants("graphite", energy)


def test_bad_energy_in_phase_table():
    with pytest.raises(ValueError, match="energy_kev"):
        phase_optical_constants(-1)


@pytest.mark.parametrize(
    "components, match",
    [
        ((), "components"),
        ((Component("C", -1.0),), "density"),
        ((Component("C", 2260.0, 1.5),), "volume_fraction"),
        ((Component("C", 2260.0, 0.7), Component("Cu", 8960.0, 0.7)), "sum"),
    ],
)
def test_invalid_material(components, match):
    with pytest.raises(ValueError, match=match):
        Material("bad", components)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(porosity=1.0), "porosity"),
        (dict(pvdf_wt=-0.1), "pvdf_wt"),
        (dict(pvdf_wt=0.0, carbon_black_wt=0.0), "pvdf_wt \\+ carbon_black_wt"),
        (dict(cu_fraction_of_carbon_black=1.5), "cu_fraction_of_carbon_black"),
    ],
)
def test_invalid_cbd_recipe(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cbd_material(**kwargs)


@pytest.mark.parametrize("energy", ["6.2", True, None, [6.2]])
def test_energy_must_be_a_real_number(energy):
    with pytest.raises(TypeError, match="energy_kev"):
        optical_constants("graphite", energy)


def test_numpy_scalar_energy_is_accepted():
    assert optical_constants("graphite", np.float32(6.2)) == pytest.approx(optical_constants("graphite", 6.2), rel=1e-6)
