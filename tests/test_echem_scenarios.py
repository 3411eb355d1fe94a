"""The paper's three experiments (Fig. 3) on a phantom particle in its embedding (issue 7).

A phantom SiOx particle (seed 1, 64^3 voxels of 40 nm, particle 7: pristine
56 % free / 44 % CBD / 0.6 % contact; cycled, the same particle: 50 % SEI,
25 % CBD, 25 % free, SEI ~ 150 nm), cut with its surroundings and
classified by the surface analysis.  Trends checked against the paper:
the SOC interquartile range about triples from 0.4 to 1.2 C, the SEI raises
the overpotential, and with pristine coverage the ionic path limits the
steady current before the electronic one.
"""

from __future__ import annotations

import pytest

from tomofuse.echem import Particle, SiliconParameters, limiting_currents, scenarios
from tomofuse.phantom import electrode

PID = 7


@pytest.fixture(scope="module")
def particles():
    out = {}
    for cycled in (False, True):
        e = electrode((64, 64, 64), 40e-9, seed=1, cycled=cycled, truth_samples=1000, border_margin=200e-9)
        out[cycled] = Particle.from_labels(e.labels, e.particles, PID, voxel_size=e.voxel_size)
    return out


def test_phantom_particle_has_paper_like_coverage(particles):
    pristine, cycled = particles[False].coverage, particles[True].coverage
    assert 0.4 < pristine["free"] < 0.65 and 0.35 < pristine["cbd"] < 0.6
    assert 0.4 < cycled["sei"] < 0.65
    assert 100e-9 < particles[True].mean_sei_thickness < 250e-9


def test_soc_interquartile_range_about_triples(particles):
    out = scenarios.soc_distribution(particles[False], threads=1)
    t = out["table"]
    assert list(t.index) == [0.4, 1.2]
    assert out["iqr_ratio"] == pytest.approx(out["paper"], abs=0.3)
    assert (t["median"] - 0.7).abs().max() < 0.01
    assert t["overpotential_V"].iloc[1] > t["overpotential_V"].iloc[0]
    assert set(out["histograms"]["density"]) == {0.4, 1.2}


def test_sei_raises_overpotential(particles):
    out = scenarios.sei_effect(particles[True], c_rates=(1.1,), params=SiliconParameters(), threads=1)
    row = out["table"].loc[1.1]
    assert out["tables"].xs(("given", 1.1)).equals(row)
    assert row["overpotential_with_sei_V"] > row["overpotential_without_sei_V"] + 1e-3


def test_ionic_limit_below_electronic(particles):
    electronic, ionic = limiting_currents(particles[False], soc=0.06, max_overpotential=0.1,
                                          c_rate_bounds=(0.05, 20.0), rtol=0.1, threads=1)
    assert ionic < electronic
    assert 0.05 < ionic < 20.0


def test_limiting_currents_bad_input(particles):
    with pytest.raises(ValueError, match="soc"):
        limiting_currents(particles[False], soc=1.2)
    free = Particle.sphere(0.5e-6, 100e-9)
    with pytest.raises(ValueError, match="electrically isolated"):
        limiting_currents(free)


def test_electronic_vs_ionic_compares_parameter_sets(particles):
    sets = {"literature": SiliconParameters(), "slow electrons": SiliconParameters(conductivity_metallic=1e-6,
                                                                                   conductivity_insulating=1e-8)}
    out = scenarios.electronic_vs_ionic(particles[False], params=sets, snapshot_c_rate=None, threads=1)
    t = out["table"]
    assert list(t.columns) == ["tomofuse", "literature", "slow electrons", "paper"]
    assert list(out["curve"].columns) == ["c_rate", "ionic_overpotential", "electronic_overpotential"]
    # the electronic path alone, metallic: Ohm's law, the cost grows in proportion to the current (0.01 -> 100 C)
    cost = {name: c[c["path"] == "electronic"].set_index("c_rate")["overpotential"] for name, c in out["curves"].items()}
    assert cost["literature"][100.0] / cost["literature"][0.01] == pytest.approx(1e4, rel=0.02)
    # ten million times lower conductivity at 6 % SOC: a far higher cost; the ionic path does not see it
    assert cost["slow electrons"][100.0] > 100 * cost["literature"][100.0]
    assert t.loc["ionic_limit_c_rate", "slow electrons"] == pytest.approx(t.loc["ionic_limit_c_rate", "literature"])
    assert out["ionically_limited"]["literature"]
