"""Peer check of the particle model against PyBaMM's single-particle model (issue 19).

A free sphere (no CBD, no SEI, an ideal electronic conductor) delithiated at
constant current with Butler-Volmer kinetics over its whole surface is the
single-particle model (SPM) of one electrode: radial Fick diffusion with a
flux boundary and one surface reaction.  PyBaMM (Sulzer et al., J. Open Res.
Softw. 9, 14 (2021) :doi:`10.5334/jors.309`) solves it with its own finite
volumes and DAE solver; here its negative electrode gets the same
diffusivity, c_max, OCP, radius and exchange current as tomofuse.

The mapping of the modeling differences:

* Exchange current: PyBaMM calls ``j0(c_e, c_s_surf, c_s_max, T)``; it is
  given tomofuse's law ``k c_e^0.5 c^0.5 (c_max - c)^0.5`` (``SiliconParameters
  .exchange_current_density``), not its own default.
* Kinetics: PyBaMM's symmetric Butler-Volmer ``2 j0 sinh(F eta / 2RT)`` is
  tomofuse's law with ``transfer_coefficient = 0.5``.
* Geometry: the voxel sphere is not a sphere.  PyBaMM's particle gets the
  radius ``3 V / A`` of the mesh (V its volume, A its area-correct surface),
  which gives both models the same surface current density and the same SOC
  rate at the same current per volume.
* Current: PyBaMM's cell current is set so that its particles' SOC falls at
  the same C-rate (``I = C A_cc L eps c_max F / 3600``); its electrolyte is
  uniform in the SPM, at tomofuse's electrolyte concentration.
* Surface SOC: tomofuse's is the area-weighted mean over the surface nodes,
  PyBaMM's the value at r = R; tomofuse's surface overpotential is its
  particle potential minus the OCP at that surface SOC.

Tolerances (issue 19): 1 % of the surface overpotential, 0.2 % (absolute
0.002) of SOC, over the whole run.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tomofuse.echem import FARADAY, Particle, SiliconParameters, simulate

pybamm = pytest.importorskip("pybamm")

# Slow diffusion (tau = R^2 / D = 400 s) so that the surface SOC departs from the mean by
# several percent, and a fast exchange current (the paper's order) so that the concentration
# part of the overpotential matters as much as the kinetic part.
PARAMS = dataclasses.replace(SiliconParameters(), diffusivity=2.5e-15,
                             exchange_rate_constant=40 * SiliconParameters().exchange_rate_constant)
RADIUS, VOXEL = 1e-6, 1e-6 / 12
C_RATE, SOC_START, SOC_END = 2.0, 0.8, 0.5


def _pybamm_spm(radius, params, t_eval):
    """PyBaMM SPM whose negative particle is tomofuse's silicon; returns (t, mean SOC, surface SOC, eta)."""
    c_max = params.c_max
    k = params.exchange_rate_constant

    def exchange_current(c_e, c_s_surf, c_s_max, T):
        return k * c_e ** 0.5 * c_s_surf ** 0.5 * (c_s_max - c_s_surf) ** 0.5

    # tomofuse's OCP is a degree-7 polynomial: a degree-7 fit through 50 of its points recovers it
    grid = np.linspace(0.0, 1.0, 50)
    ocp_coeffs = [float(c) for c in np.polyfit(grid, params.open_circuit_potential(grid), 7)]

    def ocp(sto):
        out = ocp_coeffs[0]
        for c in ocp_coeffs[1:]:
            out = out * sto + c
        return out

    model = pybamm.lithium_ion.SPM()
    model.events = []  # the positive electrode only closes the circuit: no cut-off may stop the run
    pv = pybamm.ParameterValues("Chen2020")
    eps, thickness, area = 0.5, 1e-4, 1.0
    current = C_RATE * area * thickness * eps * c_max * FARADAY / 3600.0  # A: the particle SOC falls at C_RATE
    pv.update({
        "Negative particle radius [m]": radius,
        "Negative particle diffusivity [m2.s-1]": params.diffusivity,
        "Maximum concentration in negative electrode [mol.m-3]": c_max,
        "Initial concentration in negative electrode [mol.m-3]": SOC_START * c_max,
        "Negative electrode exchange-current density [A.m-2]": exchange_current,
        "Negative electrode OCP [V]": ocp,
        "Negative electrode charge transfer coefficient": params.transfer_coefficient,
        "Negative electrode active material volume fraction": eps,
        "Negative electrode thickness [m]": thickness,
        "Electrode height [m]": 1.0,
        "Electrode width [m]": area,
        "Initial concentration in electrolyte [mol.m-3]": params.electrolyte_concentration,
        "Ambient temperature [K]": params.temperature,
        "Initial temperature [K]": params.temperature,
        "Reference temperature [K]": params.temperature,
        "Current function [A]": current,  # discharge: the negative particle delithiates
        "Lower voltage cut-off [V]": -100.0,
        "Upper voltage cut-off [V]": 100.0,
        "Open-circuit voltage at 0% SOC [V]": -100.0,
        "Open-circuit voltage at 100% SOC [V]": 100.0,
    }, check_already_exists=False)
    # the positive electrode only closes the circuit; it must not fill up during the run
    pv.update({"Positive electrode thickness [m]": 100 * thickness})
    sim = pybamm.Simulation(model, parameter_values=pv, var_pts={"r_n": 200, "r_p": 20, "x_n": 5, "x_s": 5, "x_p": 5},
                            solver=pybamm.IDAKLUSolver(rtol=1e-9, atol=1e-9))
    sol = sim.solve(t_eval=t_eval, t_interp=t_eval)
    mean = sol["Average negative particle stoichiometry"].entries
    surf = sol["X-averaged negative particle surface stoichiometry"].entries
    eta = sol["X-averaged negative electrode reaction overpotential [V]"].entries
    return sol.t, np.asarray(mean).ravel(), np.asarray(surf).ravel(), np.asarray(eta).ravel()


@pytest.fixture(scope="module")
def runs():
    p = Particle.sphere(RADIUS, VOXEL)
    res = simulate(p, c_rate=C_RATE, soc_start=SOC_START, soc_end=SOC_END, kinetics="butler-volmer",
                   electronic=False, params=PARAMS, time_step=5.0, n_saved=13, threads=1)
    d = res.discretization
    a_free = d.boundary(PARAMS, sei=False)[0]
    t = res.saved_times
    surf = res.soc_nodes @ a_free / a_free.sum()
    mean = res.mean_soc[res.saved_steps]
    u_mean = PARAMS.open_circuit_potential(mean)
    eta_surface = res.overpotential[res.saved_steps] + u_mean - PARAMS.open_circuit_potential(surf)
    r_eff = 3.0 * d.volume / p.area
    tb, mean_b, surf_b, eta_b = _pybamm_spm(r_eff, PARAMS, t)
    return dict(r_eff=r_eff, t=t, mean=mean, surf=surf, eta=eta_surface, mean_b=mean_b, surf_b=surf_b, eta_b=eta_b, tb=tb)


def test_pybamm_spm_matches_sphere(runs):
    r = runs
    np.testing.assert_allclose(r["tb"], r["t"], rtol=1e-9)
    later = r["t"] > 0  # at t = 0 both are the uniform initial state
    # the run means something: the surface departs from the mean by several percent
    assert np.max(r["mean"] - r["surf"]) > 0.01
    np.testing.assert_allclose(r["mean"][later], r["mean_b"][later], atol=2e-3)
    np.testing.assert_allclose(r["surf"][later], r["surf_b"][later], atol=2e-3)
    np.testing.assert_allclose(r["eta"][later], r["eta_b"][later], rtol=0.01)


def test_pybamm_peer_is_sensitive_to_the_exchange_current(runs):
    # the comparison can fail: a 10 % larger exchange current in PyBaMM moves eta by more than 1 %
    faster = dataclasses.replace(PARAMS, exchange_rate_constant=1.1 * PARAMS.exchange_rate_constant)
    _, _, _, eta_fast = _pybamm_spm(runs["r_eff"], faster, runs["t"])
    later = runs["t"] > 0
    assert np.max(np.abs(eta_fast[later] / runs["eta"][later] - 1)) > 0.01

