"""The paper-sized particle and the steady states behind the paper's limits (issue 19).

* ``PAPER_PARTICLE_DIAMETER`` follows from the paper's own numbers (about 90
  silicon particles in a sample below 40 um across and a 20 um high field of
  view, the recipe's SiOx volume fraction); the test redoes the arithmetic.
* ``pseudo_steady_state`` converges where plain Picard iteration diverges (a
  large exchange current on the steep OCV of lithium-poor silicon) and gives
  the analytic pseudo-steady profile of a sphere under uniform flux
  (Crank, *The Mathematics of Diffusion*, 1975, eq. 6.60 at long times).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest

from tomofuse import Phase
from tomofuse.echem import Particle, SiliconParameters, pseudo_steady_state, scenarios
from tomofuse.phantom import Composition


def test_paper_particle_diameter_follows_from_the_paper():
    silicon = Composition().volume_fractions()[Phase.SILICON]   # 30/55/10/5 wt%, 35 % porosity
    imaged = math.pi * (20e-6) ** 2 * 20e-6                     # 40 um sample, 20 um field of view
    d = (6.0 * silicon * imaged / 90 / math.pi) ** (1.0 / 3.0)  # 90 particles
    assert scenarios.PAPER_PARTICLE_DIAMETER == pytest.approx(d, rel=0.02)


def test_paper_particle_rejects_a_grid_too_coarse_for_it():
    # (building the particle takes about a minute -- the phantom's nanoscale CBD web in a 10 um box -- so its
    # size and coverage are measured by bench/fit_echem_paper.py and reported in docs/echem-parameters.md)
    with pytest.raises(ValueError, match="voxels across"):
        scenarios.paper_particle(cycled=False, voxel_size=1e-6)
    with pytest.raises(TypeError, match="cycled"):
        scenarios.paper_particle(cycled=1)


def test_pseudo_steady_state_converges_with_a_large_exchange_current(caplog):
    # i0 x 40 (the paper's order) at 6 % SOC, slow diffusion: the boundary's linearized source outgrows the
    # slowest diffusion mode, where plain Picard iteration diverges
    base = SiliconParameters()
    params = dataclasses.replace(base, diffusivity=1.5e-15, exchange_rate_constant=40 * base.exchange_rate_constant)
    p = Particle.sphere(1e-6, 100e-9)
    disc = scenarios_discretization(p)
    kin = kinetics(disc, params)
    soc, c_rate = 0.06, 1.0
    current = c_rate * params.volumetric_capacity * disc.volume / 3600.0
    with caplog.at_level(logging.WARNING):
        x, J, eta, drop, _ = pseudo_steady_state(disc, kin, soc, current, params, threads=1)
    assert "did not converge" not in caplog.text
    assert np.dot(disc.lumped, x) / disc.volume == pytest.approx(soc, abs=1e-12)
    # analytic: x - mean = -(j a / D) (r^2 / (2 a^2) - 3/10), j the SOC flux out of a sphere of the mesh's volume
    a = (3.0 * disc.volume / (4.0 * math.pi)) ** (1.0 / 3.0)
    j = c_rate * a / (3.0 * 3600.0)
    r = np.linalg.norm((disc.node_positions() - np.array(p.center)) * p.voxel_size, axis=1)
    exact = soc - j * a / params.diffusivity * (r * r / (2 * a * a) - 0.3)
    span = j * a / params.diffusivity * 0.5
    inside = r < a - p.voxel_size
    assert np.max(np.abs(x[inside] - exact[inside])) < 0.03 * span


def scenarios_discretization(particle):
    from tomofuse.echem._fem import Discretization  # the test drives the solver's building blocks
    return Discretization(particle, threads=1)


def kinetics(disc, params):
    from tomofuse.echem._kinetics import Kinetics
    return Kinetics(disc, params, direction="delithiation", mode="butler-volmer", sei=False, electronic=False,
                    threads=1)


def test_paper_parameters_stay_in_their_literature_ranges():
    p = SiliconParameters.paper()
    i0 = float(p.exchange_current_density(0.5))
    assert 0.019 <= i0 <= 60.0                                   # A/m^2 at 50 % SOC
    assert 1e-18 <= p.diffusivity <= 1.67e-14                    # m^2/s
    assert 1e2 <= p.conductivity_metallic <= 1e5                 # S/m
    assert 1e-9 <= p.conductivity_insulating <= 4.3e-4           # S/m
    assert p.sei_resistance(1e-9) == pytest.approx(0.3e-4)       # 0.3 ohm cm^2 per nm
    assert p != SiliconParameters()


def test_particle_potential_found_when_nodal_currents_cancel():
    # half the particle at 5 %, half at 7 % SOC, the paper's exchange current: ~3e-10 A circulate between the
    # halves while the requested net current is 1e-14 A; the sum of the nodal currents then carries a rounding
    # noise larger than the solver's tolerance, and the old search bisected towards an open bracket (to -inf) and
    # gave up ("no particle potential delivers the current") -- as it did on a demo particle at 0.01 C
    params = SiliconParameters.paper()
    p = Particle.sphere(1e-6, 125e-9)
    disc = scenarios_discretization(p)
    kin = kinetics(disc, params)
    z = disc.node_positions()[:, 0]
    x = np.where(z < np.median(z), 0.05, 0.07)
    for current in (1e-18, 1e-16, 1e-14, 1e-12):
        kin.phi = None
        J, eta, _, _ = kin.evaluate(x, current)
        assert abs(J.sum() - current) <= 1e-12 * np.abs(J).sum() + 1e-9 * current
        assert np.abs(J).sum() > 1e3 * current or current == 1e-12  # the currents do cancel


def test_pseudo_steady_state_takes_default_threads():
    params = SiliconParameters.paper()
    p = Particle.sphere(1e-6, 125e-9)
    disc = scenarios_discretization(p)
    current = 0.5 * params.volumetric_capacity * disc.volume / 3600.0
    x, *_ = pseudo_steady_state(disc, kinetics(disc, params), 0.3, current, params)  # threads=None
    assert np.dot(disc.lumped, x) / disc.volume == pytest.approx(0.3, abs=1e-12)
