"""Steady-state current limits of the ionic and the electronic path (paper, Fig. 3d-f)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from .. import _validate as check
from ._fem import Discretization
from ._kinetics import Kinetics, KineticsError
from ._parameters import FARADAY, SiliconParameters
from ._particle import Particle
from ._simulate import DIRECTIONS

__all__ = ["limiting_currents", "pseudo_steady_state"]

logger = logging.getLogger(__name__)

def pseudo_steady_state(disc, kin, soc, current, params, *, x0=None, threads=None, max_iterations=60):
    """The SOC field that a constant current keeps in shape (pseudo-steady state).

    After the transient, every point's SOC falls at the mean rate ``I / Q``:
    ``D K x = f(x) - (sum f / V) m`` with ``f`` the boundary source of the
    reaction currents ``J(x)`` (Butler-Volmer etc.), ``m`` the nodal volumes
    and the mean SOC fixed.  Solved by under-relaxed Picard iteration.

    Returns
    -------
    x : (n,) nodal SOC
    J, overpotential, drop, phi : as ``Kinetics.evaluate``
    """
    D = params.diffusivity
    length = 3.0 * disc.volume / disc.particle.area
    op = disc.mesh.operator(mass=1e-6 * D / length ** 2, stiffness=D, threads=threads)
    x = np.full(disc.n, float(soc)) if x0 is None else x0.copy()
    to_flux = -1.0 / (FARADAY * params.c_max)
    y = x - soc
    for it in range(max_iterations):
        J, eta, drop, phi = kin.evaluate(x, current)
        f = to_flux * J
        rhs = f - f.sum() * disc.lumped / disc.volume
        y, info = op.solve(rhs, y, rtol=1e-9, preconditioner="jacobi+constant", threads=threads)
        y -= np.dot(disc.lumped, y) / disc.volume
        new = soc + y
        change = float(np.max(np.abs(new - x)))
        x = new if it < 3 else 0.5 * (x + new)
        if change < 1e-9:
            break
        if x.min() < -0.05 or x.max() > 1.05:
            raise KineticsError(f"no steady state: the SOC field leaves [0, 1] ({x.min():.3g}..{x.max():.3g})")
    else:
        logger.warning("pseudo-steady state: Picard iteration did not converge (last change %.3g)", change)
    J, eta, drop, phi = kin.evaluate(x, current)
    return x, J, eta, drop, phi

def limiting_currents(particle, *, soc=0.06, direction="delithiation", max_overpotential=0.1, sei=True,
                      params=None, c_rate_bounds=(0.01, 100.0), rtol=0.02, threads=None, return_curve=False):
    """Largest steady currents the electronic and the ionic path can carry.

    At mean SOC ``soc`` the particle is held in its pseudo-steady state under
    a constant current (Butler-Volmer kinetics over the free/SEI surface,
    electrons through the CBD contacts and the particle's SOC-dependent
    conductivity).  The overpotential splits into the *electronic* part (the
    current-weighted drop of the electron potential from the CBD to the
    reacting surface) and the *ionic* part (charge transfer, SEI and the
    concentration overpotential of solid diffusion).  Each path's limit is
    the C-rate at which its part reaches ``max_overpotential`` (or no steady
    state exists), found by bisection in log C-rate.  Müller et al. report
    1.3 C (electronic) vs 0.9 C (ionic) from 6 % SOC: the particle is
    ionically limited as long as it stays connected to the CBD.

    Parameters
    ----------
    particle : Particle
        Needs CBD contact (the electronic path) and free or SEI surface.
    soc : float
        Mean SOC, (0, 1).
    direction : {"delithiation", "lithiation"}
    max_overpotential : float
        Voltage budget of each path, V.
    sei : bool
        Keep the SEI's resistance.
    params : SiliconParameters, optional
    c_rate_bounds : (float, float)
        Search range of C-rates.
    rtol : float
        Relative accuracy of the limits.
    threads : int, optional
    return_curve : bool
        Also return every evaluated point.

    Returns
    -------
    electronic_c_rate, ionic_c_rate : float
        ``c_rate_bounds[1]`` (inf-like) if the budget is never reached.
    curve : pandas.DataFrame
        Only if ``return_curve``: ``c_rate``, ``ionic_overpotential``,
        ``electronic_overpotential``, ``overpotential`` (V), ``min_soc``,
        ``max_soc``, ``steady`` (False where no steady state was found).
    """
    if not isinstance(particle, Particle):
        raise TypeError(f"particle must be a tomofuse.echem.Particle, got {type(particle).__name__}")
    params = SiliconParameters() if params is None else params
    if not isinstance(params, SiliconParameters):
        raise TypeError(f"params must be a SiliconParameters, got {type(params).__name__}")
    check.number(soc, "soc", minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True)
    check.choice(direction, "direction", tuple(DIRECTIONS))
    check.number(max_overpotential, "max_overpotential", unit="V", minimum=0.0, exclusive_minimum=True)
    check.flag(sei, "sei")
    lo_b, hi_b = (float(c) for c in c_rate_bounds)
    if not 0 < lo_b < hi_b:
        raise ValueError(f"c_rate_bounds must be (low, high) with 0 < low < high, got {c_rate_bounds!r}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    threads = check.threads(threads)
    disc = Discretization(particle, threads=threads)
    kin = Kinetics(disc, params, direction=direction, mode="butler-volmer", sei=bool(sei), electronic=True,
                   threads=threads)
    q = params.volumetric_capacity * disc.volume
    sign = DIRECTIONS[direction]
    cache = {}

    def evaluate(c):
        if c not in cache:
            current = sign * c * q / 3600.0
            try:
                x, J, eta, drop, _ = pseudo_steady_state(disc, kin, soc, current, params, threads=threads)
                steady = bool(np.all((x >= 0) & (x <= 1)))
                cache[c] = dict(c_rate=c, ionic_overpotential=sign * (eta - drop), electronic_overpotential=sign * drop,
                                overpotential=sign * eta, min_soc=float(x.min()), max_soc=float(x.max()),
                                steady=steady)
            except KineticsError as exc:
                logger.debug("no steady state at %.4g C: %s", c, exc)
                cache[c] = dict(c_rate=c, ionic_overpotential=math.inf, electronic_overpotential=math.inf,
                                overpotential=math.inf, min_soc=math.nan, max_soc=math.nan, steady=False)
            kin.phi = None  # fresh start for the next current
            kin.psi[:] = 0.0
        return cache[c]

    def exceeds(c, key):
        e = evaluate(c)
        return (not e["steady"]) or e[key] > max_overpotential

    def limit(key):
        lo, hi = lo_b, hi_b
        if exceeds(lo, key):
            return lo
        if not exceeds(hi, key):
            return hi
        while hi / lo > 1.0 + rtol:
            mid = math.sqrt(lo * hi)
            if exceeds(mid, key):
                hi = mid
            else:
                lo = mid
        return math.sqrt(lo * hi)

    ionic = limit("ionic_overpotential")
    electronic = limit("electronic_overpotential")
    logger.info("limiting currents at SOC %.3g: electronic %.3g C, ionic %.3g C", soc, electronic, ionic)
    if return_curve:
        curve = pd.DataFrame(sorted(cache.values(), key=lambda r: r["c_rate"]))
        return electronic, ionic, curve
    return electronic, ionic
