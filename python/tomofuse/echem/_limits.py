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
from ._relax import aitken
from ._simulate import DIRECTIONS

__all__ = ["limiting_currents", "pseudo_steady_state"]

logger = logging.getLogger(__name__)

def pseudo_steady_state(disc, kin, soc, current, params, *, x0=None, threads=None, max_iterations=400, tol=1e-8):
    """The SOC field that a constant current keeps in shape (pseudo-steady state).

    After the transient, every point's SOC falls at the mean rate ``I / Q``:
    ``D K x = f(x) - (sum f / V) m`` with ``f`` the boundary source of the
    reaction currents ``J(x)`` (Butler-Volmer etc.), ``m`` the nodal volumes
    and the mean SOC fixed.  Solved by damped fixed-point iteration (a
    pseudo-time step ``1 / mu``): ``(mu M + D K) y_new = mu M y + f(x) - ...``.
    Plain Picard (``mu -> 0``) diverges once the boundary's linearized
    source ``|dJ/dx| / (F c_max)`` outgrows the particle's slowest diffusion
    mode -- a large exchange current on the steep OCV of lithium-poor
    silicon; ``mu`` is set from that source so the iteration contracts.

    Parameters
    ----------
    disc : Discretization
    kin : Kinetics
    soc : float
        Mean SOC.
    current : float
        A, anodic positive.
    params : SiliconParameters
    x0 : (n,) ndarray, optional
        Starting SOC field (e.g. the steady state at a nearby current).
    threads : int, optional
    max_iterations : int
    tol : float
        Stop when no nodal SOC changes by more than this in one iteration.

    Returns
    -------
    x : (n,) nodal SOC
    J, overpotential, drop, phi : as ``Kinetics.evaluate``
    """
    threads = check.threads(threads)
    D = params.diffusivity
    length = 3.0 * disc.volume / disc.particle.area
    x = np.full(disc.n, float(soc)) if x0 is None else x0.copy()
    to_flux = -1.0 / (FARADAY * params.c_max)
    y = x - soc
    y -= np.dot(disc.lumped, y) / disc.volume
    x = soc + y
    floor = 1e-6 * D / length ** 2 * disc.lumped
    damping = 1.0
    change = math.inf
    omega, r_prev = 1.0, None
    for it in range(max_iterations):
        J, eta, drop, phi = kin.evaluate(x, current)
        # the boundary's linearized source per node, 1/s x m^3: |dJ/dphi| |dU/dx| / (F c_max)
        _, G = kin.currents(phi, x)
        c = damping * G * np.abs(params.open_circuit_slope(x, kin.direction)) * abs(to_flux) + floor
        op = disc.mesh.operator(stiffness=D, node_diagonal=c, threads=threads)
        f = to_flux * J
        rhs = f - f.sum() * disc.lumped / disc.volume + c * y
        y_new, info = op.solve(rhs, y, rtol=1e-10, preconditioner="jacobi+constant", threads=threads)
        y_new -= np.dot(disc.lumped, y_new) / disc.volume
        r = y_new - y
        new_change = float(np.max(np.abs(r)))
        if it > 3 and new_change > change:
            damping *= 2.0  # not contracting: damp harder
            r_prev = None   # and restart the relaxation
            omega = 1.0
        change = new_change
        omega = aitken(omega, r, r_prev, largest=4.0)  # relaxation of the (damped) fixed-point map
        y = y + omega * r
        r_prev = r
        x = soc + y
        if change < tol:
            break
        if x.min() < -0.05 or x.max() > 1.05:
            raise KineticsError(f"no steady state: the SOC field leaves [0, 1] ({x.min():.3g}..{x.max():.3g})")
    else:
        logger.warning("pseudo-steady state: iteration did not converge (last change %.3g)", change)
    J, eta, drop, phi = kin.evaluate(x, current)
    return x, J, eta, drop, phi


def electronic_cost(disc, params, soc, current, *, direction="delithiation", sei=True, threads=None) -> float:
    """The cost of electronic transport: the overpotential above that of an ideal conductor, V.

    Both at the same SOC, uniform at ``soc`` (Li transport ideal), under the
    same ``current`` (A, anodic positive): the electron-potential drop plus
    the kinetic cost of the reaction crowding towards the CBD contacts, which
    the drop alone misses.  Signed as the overpotential (positive when
    delithiating).  Raises ``KineticsError`` when no state delivers the current.
    """
    threads = check.threads(threads)
    uniform = np.full(disc.n, float(soc))
    eta = [Kinetics(disc, params, direction=direction, mode="butler-volmer", sei=sei, electronic=e,
                    threads=threads).evaluate(uniform, current)[1] for e in (True, False)]
    return eta[0] - eta[1]


PATHS = ("coupled", "separate")


def limiting_currents(particle, *, soc=0.06, direction="delithiation", max_overpotential=0.1, sei=True,
                      params=None, c_rate_bounds=(0.01, 100.0), rtol=0.02, paths="coupled", threads=None,
                      return_curve=False):
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

    ``paths="separate"`` evaluates each path with the other one ideal, the
    way the paper's Fig. 3f plots one curve per path: the *ionic* limit is
    the largest C-rate with a pseudo-steady state of the particle as an
    ideal electronic conductor whose ionic overpotential stays within the
    budget (the steady ionic current peaks where the surface empties); the
    *electronic* limit is the C-rate at which the cost of electronic
    transport -- the overpotential above that of an ideal conductor -- reaches
    the budget with Li transport ideal (the particle uniformly at ``soc``,
    its conductivity ``params.conductivity(soc)`` everywhere).  That cost is
    the electron-potential drop plus the kinetic cost of the reaction
    crowding towards the CBD contacts, which the drop alone misses.  With ``"coupled"`` both
    come from the same pseudo-steady states, so neither limit can exceed the
    C-rate at which the steady state is lost.

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
    paths : {"coupled", "separate"}
        Evaluate both paths on the same pseudo-steady states, or each with
        the other ideal (the paper's Fig. 3f).
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
    check.choice(paths, "paths", PATHS)
    threads = check.threads(threads)
    disc = Discretization(particle, threads=threads)
    # the coupled kinetics (built first on both paths: it checks the CBD contact before any search)
    kin = Kinetics(disc, params, direction=direction, mode="butler-volmer", sei=bool(sei), electronic=True,
                   threads=threads)
    q = params.volumetric_capacity * disc.volume
    sign = DIRECTIONS[direction]
    cache = {}
    if paths == "separate":
        return _separate(disc, params, soc=soc, sign=sign, q=q, sei=bool(sei), direction=direction,
                         max_overpotential=max_overpotential, bounds=(lo_b, hi_b), rtol=rtol, threads=threads,
                         return_curve=return_curve)

    fields = {}

    def evaluate(c):
        if c not in cache:
            current = sign * c * q / 3600.0
            x0 = _nearest_start(fields, c, soc)
            try:
                x, J, eta, drop, _ = pseudo_steady_state(disc, kin, soc, current, params, x0=x0, threads=threads)
                fields[c] = x
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

    ionic = _bisect(lambda c: exceeds(c, "ionic_overpotential"), lo_b, hi_b, rtol)
    electronic = _bisect(lambda c: exceeds(c, "electronic_overpotential"), lo_b, hi_b, rtol)
    logger.info("limiting currents at SOC %.3g: electronic %.3g C, ionic %.3g C", soc, electronic, ionic)
    if return_curve:
        curve = pd.DataFrame(sorted(cache.values(), key=lambda r: r["c_rate"]))
        return electronic, ionic, curve
    return electronic, ionic


def _nearest_start(fields, c, soc):
    """Start field for C-rate ``c``: the steady state of the nearest solved C-rate, deviation scaled by the rate."""
    good = [k for k, x in fields.items() if np.all((x >= 0) & (x <= 1))]
    if not good:
        return None
    near = min(good, key=lambda k: abs(math.log(k / c)))
    return np.clip(soc + (fields[near] - soc) * (c / near), 0.0, 1.0)


def _bisect(exceeds, lo, hi, rtol):
    """Largest C-rate in [lo, hi] that does not exceed (bisection in log C-rate; lo or hi at the ends)."""
    if exceeds(lo):
        return lo
    if not exceeds(hi):
        return hi
    while hi / lo > 1.0 + rtol:
        mid = math.sqrt(lo * hi)
        if exceeds(mid):
            hi = mid
        else:
            lo = mid
    return math.sqrt(lo * hi)


def _separate(disc, params, *, soc, sign, q, sei, direction, max_overpotential, bounds, rtol, threads,
              return_curve):
    """``limiting_currents(paths="separate")``: each path with the other ideal."""
    ideal = Kinetics(disc, params, direction=direction, mode="butler-volmer", sei=sei, electronic=False,
                     threads=threads)
    ionic_rows, electronic_rows = {}, {}

    fields = {}

    def ionic_exceeds(c):
        if c not in ionic_rows:
            current = sign * c * q / 3600.0
            try:
                x, _, eta, _, _ = pseudo_steady_state(disc, ideal, soc, current, params,
                                                      x0=_nearest_start(fields, c, soc), threads=threads)
                fields[c] = x
                steady = bool(np.all((x >= 0) & (x <= 1)))
                ionic_rows[c] = dict(c_rate=c, path="ionic", overpotential=sign * eta, min_soc=float(x.min()),
                                     max_soc=float(x.max()), steady=steady)
            except KineticsError as exc:
                logger.debug("no ionic steady state at %.4g C: %s", c, exc)
                ionic_rows[c] = dict(c_rate=c, path="ionic", overpotential=math.inf, min_soc=math.nan,
                                     max_soc=math.nan, steady=False)
            ideal.phi = None
        r = ionic_rows[c]
        return (not r["steady"]) or r["overpotential"] > max_overpotential

    def electronic_exceeds(c):
        if c not in electronic_rows:
            current = sign * c * q / 3600.0
            try:
                cost = electronic_cost(disc, params, soc, current, direction=direction, sei=sei, threads=threads)
                electronic_rows[c] = dict(c_rate=c, path="electronic", overpotential=sign * cost,
                                          min_soc=float(soc), max_soc=float(soc), steady=True)
            except KineticsError as exc:
                logger.debug("no electronic solution at %.4g C: %s", c, exc)
                electronic_rows[c] = dict(c_rate=c, path="electronic", overpotential=math.inf, min_soc=float(soc),
                                          max_soc=float(soc), steady=False)
        r = electronic_rows[c]
        return (not r["steady"]) or r["overpotential"] > max_overpotential

    lo_b, hi_b = bounds
    ionic = _bisect(ionic_exceeds, lo_b, hi_b, rtol)
    electronic = _bisect(electronic_exceeds, lo_b, hi_b, rtol)
    logger.info("limiting currents (separate paths) at SOC %.3g: electronic %.3g C, ionic %.3g C", soc, electronic,
                ionic)
    if return_curve:
        rows = sorted(list(ionic_rows.values()) + list(electronic_rows.values()), key=lambda r: (r["path"], r["c_rate"]))
        return electronic, ionic, pd.DataFrame(rows)
    return electronic, ionic
