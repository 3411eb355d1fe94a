"""The paper's three numerical experiments (Müller et al., Fig. 3), as functions.

Each returns a dict with a ``table`` (pandas.DataFrame), the ``paper``'s
numbers beside it and the data for the figure.  ``electronic_vs_ionic`` and
``sei_effect`` run both ``SiliconParameters.paper()`` (the unpublished
parameters fitted to the paper's numbers, ``bench/fit_echem_paper.py``) and
the literature defaults unless ``params`` is given; ``soc_distribution``
uses ``SiliconParameters()`` unless given.

* ``soc_distribution`` (Fig. 3a-c): delithiation from 80 % at 0.4 and 1.2 C;
  SOC distribution at 70 % mean SOC; "tripling the c-rate ... leads to
  tripling the width of the 50 % probability interval".
* ``electronic_vs_ionic`` (Fig. 3d-f): steady-state limits of the electronic
  and the ionic path from 6 % SOC; paper: 1.3 C vs 0.9 C (ionically limited).
* ``sei_effect`` (Fig. 3g-i): delithiation from 80 % at 1.1-2.1 C with the
  particle's SEI and with the SEI removed; paper: 20 mV -> 30 mV at 1.1 C.

``paper_particle`` cuts a particle of the paper's size and coverage out of a
phantom electrode, the input these experiments were meant for.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from .. import _validate as check
from ._limits import limiting_currents
from ._parameters import SiliconParameters
from ._particle import Particle
from ._simulate import simulate

__all__ = ["PAPER", "PAPER_PARTICLE_DIAMETER", "electronic_vs_ionic", "paper_particle", "sei_effect",
           "soc_distribution"]

logger = logging.getLogger(__name__)

#: Volume-equivalent diameter of the paper's SiOx particles, m (derivation in ``paper_particle``).
PAPER_PARTICLE_DIAMETER = 4.5e-6

#: The paper's reported numbers.
PAPER = {
    "iqr_ratio_1.2C_over_0.4C": 3.0,
    "electronic_limit_c_rate": 1.3,
    "ionic_limit_c_rate": 0.9,
    "overpotential_1.1C_without_sei_V": 0.020,
    "overpotential_1.1C_with_sei_V": 0.030,
    "overpotential_2.1C_without_sei_V": 0.038,
    "overpotential_2.1C_with_sei_V": 0.060,
}


def paper_particle(*, cycled, seed=0, voxel_size=150e-9, diameter=PAPER_PARTICLE_DIAMETER, threads=None):
    """A SiOx particle of the paper's size cut, with its embedding, from a phantom electrode.

    The paper does not state its particle size; it follows from its numbers.
    Per imaged electrode "approximately 90 silicon particles" are analyzed
    (Müller et al., Fig. 2g) in a sample milled to a diameter "below 40 um"
    and imaged over a 20 um high field of view (PXCT, 48 x 20 um): a
    cylinder of ``pi (20 um)^2 x 20 um = 2.5e4 um^3``.  The recipe (30/55/10/5
    wt% SiOx/graphite/PVDF/carbon black, densities 2.13/2.26/1.78/1.8 g/cm^3,
    35 % porosity, the middle of the 30-40 % the paper cites; the CBD 50 %
    nanoporous, ``tomofuse.phantom.Composition.volume_fractions``) makes
    SiOx 16.6 % of the electrode, 4.2e3 um^3 in the cylinder, 46 um^3 per
    particle: a volume-equivalent diameter ``(6 x 46 / pi)^(1/3) = 4.5 um``
    (4.1-4.6 um for a 35-40 um sample and 30-40 % porosity).  The particle
    set by ``cycled`` then carries the paper's coverage, built into the
    phantom: pristine ~53 % free, 45 % CBD, 2 % contact; cycled ~53 % SEI of
    142-196 nm mean thickness, 32 % CBD.

    The phantom (``tomofuse.phantom.electrode`` with ``siox_d50=diameter``,
    no size rescaling) fills a cube of edge ``2.2 diameter``; of its
    particles lying whole inside, the one whose volume-equivalent diameter
    is closest to ``diameter`` (log scale) is cut with
    ``Particle.from_labels``.  The pristine and the cycled electrode of one
    ``seed`` hold the same particles, so ``cycled=True`` and ``False`` give
    the same particle with and without SEI.  Like the tests and the demo,
    this function brings a phantom to a method; the methods themselves
    never see it.

    Parameters
    ----------
    cycled : bool
        The cycled electrode (with SEI) or the pristine one.
    seed : int
        Seed of the phantom electrode.
    voxel_size : float
        Voxel edge, m (150 nm: ~30 voxels across a 4.5 um particle, 6-25 s
        per simulated (de)lithiation on one thread; the SEI, ~170 nm, is
        classified along rays and keeps its measured thickness).  Building
        the particle takes about a minute (the phantom's CBD web).
    diameter : float
        Target volume-equivalent diameter, m.
    threads : int, optional
        Threads of the phantom and the surface analysis.

    Returns
    -------
    Particle
        Its ``particle_id`` is the phantom's particle id.

    Raises
    ------
    ValueError
        If ``voxel_size`` leaves fewer than 8 voxels across the particle.

    References
    ----------
    Müller et al., "Multimodal Nanoscale Tomographic Imaging for Battery
    Electrodes" (the paper; Experimental section and Fig. 2g-h).
    """
    from ..phantom import electrode  # the phantom is an input here, as in the tests

    check.flag(cycled, "cycled")
    seed = check.seed(seed)
    v = check.positive_length(voxel_size, "voxel_size")
    d = check.positive_length(diameter, "diameter")
    if d / v < 8:
        raise ValueError(f"voxel_size={v:g} m leaves {d / v:.1f} voxels across a {d:g} m particle; use voxel_size "
                         f"<= {d / 8:g} m")
    threads = check.threads(threads)
    n = int(math.ceil(2.2 * d / v))
    e = electrode((n, n, n), v, seed=seed, cycled=bool(cycled), siox_d50=d, size_scale=1.0,
                  border_margin=4 * v, coverage_spread=0.0, truth_samples=4000, threads=threads)
    truth = e.truth[~e.truth["touches_border"].astype(bool)]
    present = set(np.unique(e.particles[e.particles > 0]).tolist())
    truth = truth[truth.index.isin(present)]
    if truth.empty:
        raise ValueError(f"seed={seed}: the phantom holds no whole particle; try another seed")
    d_eq = (6.0 * truth["volume_m3"] / math.pi) ** (1.0 / 3.0)
    pid = int(np.abs(np.log(d_eq / d)).idxmin())
    particle = Particle.from_labels(e.labels, e.particles, pid, voxel_size=v, threads=threads)
    logger.info("paper_particle: seed %d, particle %d of %d, equivalent diameter %.3g um, %r", seed, pid,
                len(truth), d_eq[pid] * 1e6, particle)
    return particle


def soc_distribution(particle, *, c_rates=(0.4, 1.2), soc_start=0.8, soc_mean=0.7, params=None, bins=40,
                     threads=None, callback=None):
    """SOC distribution in the particle at ``soc_mean`` after delithiation from ``soc_start`` (Fig. 3a-c).

    Returns
    -------
    dict
        ``table``: per C-rate the SOC quartiles, ``iqr`` (50 % interval) and
        the overpotential (V) at ``soc_mean``; ``iqr_ratio`` (last / first
        C-rate) beside ``paper`` (3.0); ``histograms``: bin edges and
        volume-weighted densities per C-rate; ``results``: the ``Result`` s.
    """
    results, rows = {}, []
    for k, rate in enumerate(c_rates):
        sub = None if callback is None else (lambda f, m, k=k: callback((k + f) / len(c_rates), m))
        res = simulate(particle, c_rate=rate, soc_start=soc_start, soc_end=soc_mean, params=params, n_saved=2,
                       threads=threads, callback=sub)
        q = res.soc_quantiles(q=(0.25, 0.5, 0.75))
        rows.append(dict(c_rate=rate, q25=q[0], median=q[1], q75=q[2], iqr=q[2] - q[0],
                         overpotential_V=res.overpotential[-1], terminated=res.terminated))
        results[rate] = res
    table = pd.DataFrame(rows).set_index("c_rate")
    values = {r: results[r].soc_voxels() for r in c_rates}
    lo = min(v.min() for v in values.values())
    hi = max(v.max() for v in values.values())
    edges = np.linspace(lo, hi, bins + 1)
    hist = {r: np.histogram(v, edges, density=True)[0] for r, v in values.items()}
    ratio = float(table["iqr"].iloc[-1] / table["iqr"].iloc[0])
    return dict(table=table, iqr_ratio=ratio, paper=PAPER["iqr_ratio_1.2C_over_0.4C"],
                histograms=dict(edges=edges, density=hist), results=results)


def _parameter_sets(params):
    """``{name: SiliconParameters}``: None -> the paper's fitted set and the literature defaults."""
    if params is None:
        return {"paper()": SiliconParameters.paper(), "literature": SiliconParameters()}
    if isinstance(params, SiliconParameters):
        return {"given": params}
    if isinstance(params, dict) and params and all(isinstance(v, SiliconParameters) for v in params.values()):
        return dict(params)
    raise TypeError("params must be None, a SiliconParameters or a non-empty dict of name -> SiliconParameters, "
                    f"got {type(params).__name__}")


def _wide_curve(curve):
    """A ``limiting_currents`` curve as columns ``c_rate``, ``ionic_overpotential``, ``electronic_overpotential``."""
    if "path" not in curve:
        return curve
    wide = curve.pivot_table(index="c_rate", columns="path", values="overpotential", aggfunc="first")
    wide = wide.reindex(columns=["ionic", "electronic"])
    return pd.DataFrame({"c_rate": wide.index.to_numpy(), "ionic_overpotential": wide["ionic"].to_numpy(),
                         "electronic_overpotential": wide["electronic"].to_numpy()})


def electronic_vs_ionic(particle, *, soc=0.06, max_overpotential=0.1, params=None, paths="separate",
                        snapshot_c_rate=1.0, snapshot_soc=0.055, threads=None):
    """Electronic vs ionic limitation of a delithiating particle from 6 % SOC (Fig. 3d-f).

    The paper's definition (Fig. 3f plots the overpotential of each path
    against the C-rate): each path's steady-state current limit with the
    other path ideal (``limiting_currents(paths="separate")``) -- the ionic
    path's within the voltage budget ``max_overpotential`` (its steady current
    peaks where the surface empties), the electronic path's where the cost
    of electronic transport (the overpotential above that of an ideal
    conductor, the particle uniformly at ``soc``) reaches the budget.
    Paper: electronic 1.3 C, ionic 0.9 C.  With the particle at 6 % that cost
    depends on the conductivity there alone, and 1.3 C needs about
    2.5e-5 S/m on the paper's particle, a non-metallic alloy: inside the
    literature ranges the electronic limit is far above the ionic one (see
    ``SiliconParameters.paper`` and ``docs/echem-parameters.md``).

    Parameters
    ----------
    particle : Particle
        Needs CBD contact and free or SEI surface.
    soc : float
        Mean SOC the limits are taken at.
    max_overpotential : float
        Voltage budget of each path, V.
    params : SiliconParameters or dict of str to SiliconParameters, optional
        None: both ``SiliconParameters.paper()`` (column ``"paper()"``) and
        the literature defaults (``"literature"``); one set: column ``"given"``.
    paths : {"separate", "coupled"}
        See ``limiting_currents``.
    snapshot_c_rate : float or None
        If given, also delithiate from ``soc`` to ``snapshot_soc`` at this
        C-rate with the first parameter set (Fig. 3e).
    snapshot_soc : float
    threads : int, optional

    Returns
    -------
    dict
        ``table``: the two limiting C-rates (rows) per parameter set
        (columns; ``"tomofuse"`` repeats the first set) beside the
        ``paper``'s; ``curve``: the first set's ``c_rate``,
        ``ionic_overpotential``, ``electronic_overpotential`` (V, NaN where
        a path was not evaluated); ``curves``: per set, the curve as
        ``limiting_currents`` returns it; ``ionically_limited``: per set,
        whether the ionic limit is the lower; ``snapshot``: the ``Result``
        of the snapshot run (SOC and electron-potential fields).
    """
    sets = _parameter_sets(params)
    index = pd.Index(["electronic_limit_c_rate", "ionic_limit_c_rate"], name="quantity")
    table = pd.DataFrame(index=index)
    curves, limited = {}, {}
    for name, p in sets.items():
        electronic, ionic, curve = limiting_currents(particle, soc=soc, max_overpotential=max_overpotential,
                                                     params=p, paths=paths, threads=threads, return_curve=True)
        table[name] = [electronic, ionic]
        curves[name] = curve
        limited[name] = bool(ionic < electronic)
    table.insert(0, "tomofuse", table[next(iter(sets))])  # the first set under the name the report reads
    table["paper"] = [PAPER["electronic_limit_c_rate"], PAPER["ionic_limit_c_rate"]]
    out = dict(table=table, curve=_wide_curve(curves[next(iter(sets))]), curves=curves,
               ionically_limited=limited)
    if snapshot_c_rate:
        out["snapshot"] = simulate(particle, c_rate=snapshot_c_rate, soc_start=soc, soc_end=snapshot_soc,
                                   params=next(iter(sets.values())), n_saved=3, threads=threads)
    return out


def sei_effect(particle, *, c_rates=(1.1, 1.6, 2.1), soc_start=0.8, soc_end=0.7, params=None, threads=None):
    """Overpotential with the particle's SEI and with the SEI removed (Fig. 3g-i).

    The paper's definition: delithiation from ``soc_start`` at each C-rate,
    the overpotential (terminal potential minus the OCV at the mean SOC) read
    at ``soc_end`` (70 %, where Fig. 3h shows the SOC), once with the SEI's
    ionic resistance and once with the SEI removed computationally.  Paper:
    20 -> 30 mV at 1.1 C, 38 -> 60 mV at 2.1 C.

    Parameters
    ----------
    particle : Particle
        A particle with SEI faces (e.g. ``paper_particle(cycled=True)``).
    c_rates : sequence of float
        C-rates, 1/h.
    soc_start, soc_end : float
        Initial and final mean SOC.
    params : SiliconParameters or dict of str to SiliconParameters, optional
        As in ``electronic_vs_ionic``.
    threads : int, optional

    Returns
    -------
    dict
        ``table``: the first parameter set's, indexed by ``c_rate``: the
        overpotential (V) at ``soc_end`` with and without SEI, their
        difference and the SOC interquartile ranges; ``tables``: the same for
        every set, indexed by (``parameters``, ``c_rate``); ``paper``: the
        paper's values at 1.1 C, ``paper_by_c_rate``: at 1.1 and 2.1 C;
        ``results``: the ``Result`` s by (set, C-rate, sei).
    """
    sets = _parameter_sets(params)
    rows, results = [], {}
    for name, p in sets.items():
        for rate in c_rates:
            r = {}
            for sei in (False, True):
                res = simulate(particle, c_rate=rate, soc_start=soc_start, soc_end=soc_end, sei=sei, params=p,
                               n_saved=2, threads=threads)
                r[sei] = res
                results[(name, rate, sei)] = res
            rows.append(dict(parameters=name, c_rate=rate, overpotential_without_sei_V=r[False].overpotential[-1],
                             overpotential_with_sei_V=r[True].overpotential[-1],
                             difference_V=r[True].overpotential[-1] - r[False].overpotential[-1],
                             iqr_without_sei=r[False].soc_iqr(), iqr_with_sei=r[True].soc_iqr()))
    tables = pd.DataFrame(rows).set_index(["parameters", "c_rate"])
    first = next(iter(sets))
    paper = {"without_sei_V": PAPER["overpotential_1.1C_without_sei_V"],
             "with_sei_V": PAPER["overpotential_1.1C_with_sei_V"]}
    by_rate = {1.1: dict(paper), 2.1: {"without_sei_V": PAPER["overpotential_2.1C_without_sei_V"],
                                       "with_sei_V": PAPER["overpotential_2.1C_with_sei_V"]}}
    return dict(table=tables.xs(first, level="parameters"), tables=tables, paper=paper, paper_by_c_rate=by_rate,
                results=results)
