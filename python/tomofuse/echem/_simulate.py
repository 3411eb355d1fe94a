"""Galvanostatic (de)lithiation of one particle: 3-D diffusion + boundary kinetics."""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .._memory import check_memory
from .._progress import Progress
from .. import _validate as check
from ._fem import Discretization
from ._kinetics import Kinetics, KineticsError
from ._parameters import FARADAY, SiliconParameters
from ._particle import Particle
from ._relax import aitken

__all__ = ["Result", "simulate"]

logger = logging.getLogger(__name__)

DIRECTIONS = {"delithiation": 1.0, "lithiation": -1.0}
_MULTIGRID_NODES = 20000  # from this size on the diffusion steps use the multigrid preconditioner
_RTOL = 1e-9  # CG tolerance of the diffusion steps (relative to the right-hand side; Li is then put back exactly)
KINETICS = ("butler-volmer", "uniform")


@dataclass(eq=False)
class Result:
    """Outcome of ``simulate``.

    Attributes
    ----------
    particle : Particle
    params : SiliconParameters
    c_rate : float
        Applied C-rate (1/h), positive.
    direction : str
    current : float
        Applied current, A (anodic positive: delithiation > 0).
    time : (n_steps + 1,) ndarray
        Times, s.
    mean_soc : (n_steps + 1,) ndarray
        Volume-averaged SOC.
    overpotential : (n_steps + 1,) ndarray
        Terminal (CBD, or particle when ``electronic=False``) potential minus
        the OCV at the mean SOC, V: kinetic + SEI + concentration + electronic
        losses (positive when delithiating).
    electronic_drop : (n_steps + 1,) ndarray
        Current-weighted electron-potential drop from the CBD to the reacting
        surface, V (NaN when ``electronic=False``).
    lithium : (n_steps + 1,) ndarray
        Lithium in the particle, mol.
    saved_steps : (k,) ndarray of int
        Steps whose fields are kept (indices into ``time``).
    soc_nodes : (k, n_nodes) ndarray
        SOC at the mesh nodes at the saved steps.
    potential_nodes : (k, n_nodes) ndarray
        Electron potential vs the electrolyte at the nodes, V.
    terminated : str or None
        Why the run stopped early (e.g. the overpotential limit), or None.
    options : dict
        ``kinetics``, ``sei``, ``electronic``, ``time_steps`` (s).
    """

    particle: Particle
    params: SiliconParameters
    c_rate: float
    direction: str
    current: float
    time: np.ndarray
    mean_soc: np.ndarray
    overpotential: np.ndarray
    electronic_drop: np.ndarray
    lithium: np.ndarray
    saved_steps: np.ndarray
    soc_nodes: np.ndarray
    potential_nodes: np.ndarray
    terminated: Optional[str] = None
    options: dict = field(default_factory=dict)
    _disc: Optional[Discretization] = field(default=None, repr=False)

    @property
    def saved_times(self) -> np.ndarray:
        """Times (s) of the saved fields."""
        return self.time[self.saved_steps]

    @property
    def discretization(self) -> Discretization:
        """The finite-element discretization (mesh, node positions, boundary areas)."""
        return self._disc

    def _index(self, step):
        k = len(self.saved_steps)
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not -k <= step < k:
            raise IndexError(f"step must index the {k} saved fields (-{k}..{k - 1}), got {step!r}")
        return int(step)

    def soc_field(self, step=-1) -> np.ndarray:
        """SOC per voxel of the particle's mask (mean of the voxel's 8 nodes), NaN outside."""
        return self._disc.field(self.soc_nodes[self._index(step)])

    def potential_field(self, step=-1) -> np.ndarray:
        """Electron potential vs the electrolyte per voxel (V), NaN outside."""
        return self._disc.field(self.potential_nodes[self._index(step)])

    def soc_voxels(self, step=-1) -> np.ndarray:
        """SOC of every particle voxel (equal volumes), (n_voxels,)."""
        return self._disc.voxel_values(self.soc_nodes[self._index(step)])

    def soc_quantiles(self, step=-1, q=(0.25, 0.5, 0.75)) -> np.ndarray:
        """Volume-weighted quantiles of the SOC distribution at a saved step.

        Every voxel of the particle has the same volume, so these are the
        quantiles of the voxel SOCs (linear interpolation).
        """
        return np.quantile(self.soc_voxels(step), q)

    def soc_iqr(self, step=-1) -> float:
        """Width of the 50 % interval (interquartile range) of the SOC distribution."""
        lo, hi = self.soc_quantiles(step, (0.25, 0.75))
        return float(hi - lo)


def _check_fraction(value, name):
    return check.number(value, f"{name} (an SOC)", minimum=0.0, maximum=1.0)


def _step_sizes(t_end, first, largest):
    """Steps growing by 1.25 from ``first`` to at most ``largest``, summing to ``t_end``."""
    first = min(first, largest)
    sizes = []
    h, t = first, 0.0
    while t < t_end * (1 - 1e-12):
        h = min(h, largest)
        sizes.append(h)
        t += h
        h *= 1.25
    sizes = np.array(sizes)
    sizes *= t_end / sizes.sum()  # the last steps stretch a little to end exactly
    if len(sizes) < 2:
        sizes = np.full(2, t_end / 2)
    return sizes


def _characteristic_time(particle, params):
    """L^2 / D with L = 3 V / A (the radius for a sphere), s."""
    length = 3.0 * particle.volume / particle.area
    return length * length / params.diffusivity


def simulate(particle, *, c_rate, soc_start, soc_end=None, duration=None, direction="delithiation", sei=True,
             electronic=True, kinetics="butler-volmer", params=None, time_step=None, n_saved=11,
             max_overpotential=1.0, threads=None, callback=None) -> Result:
    """Galvanostatic (de)lithiation of a particle in its embedding, by 3-D finite elements.

    Li diffuses in the particle (Fick, Neumann boundaries); charge transfer
    (Butler-Volmer) happens over the ionically active surface only -- the
    free surface and, through its thickness-dependent resistance, the SEI --
    and electrons enter or leave only where CBD touches the particle, so
    below ~5.5 % SOC (non-metallic Li-Si) they must cross the particle
    (Müller et al., "Simulating the electrochemical behavior").  Trilinear
    hexahedra on the particle's voxels, assembled in the compiled core; the
    boundary flux is spread over each face's true area share, bilinearly to
    its corners.  Time stepping: Crank-Nicolson with two backward-Euler
    half-steps at the start (Rannacher), kinetics coupled by Picard
    iteration within each step.

    Parameters
    ----------
    particle : Particle
    c_rate : float
        Current in C (1/h; 1 C empties the particle's capacity in one hour).
    soc_start : float
        Initial, uniform SOC in [0, 1].
    soc_end : float, optional
        Stop at this mean SOC (exact: the current is constant).
    duration : float, optional
        Or stop after this time, s.  Give exactly one of the two.
    direction : {"delithiation", "lithiation"}
    sei : bool
        Keep the SEI's ionic resistance (False: the SEI is removed
        computationally, its faces become free surface).
    electronic : bool
        Solve for the electron potential in the particle (False: the
        particle is an ideal conductor).
    kinetics : {"butler-volmer", "uniform"}
        ``"uniform"``: the current density is uniform over the ionically
        active surface (validation against analytic solutions).
    params : SiliconParameters, optional
    time_step : float, optional
        Constant step, s.  Default: steps growing geometrically (x 1.25) from
        ``0.05 L^2 / D`` (L = 3 V / A, the radius of a sphere) to ``duration / 40``
        (Crank-Nicolson is accurate with long steps once the start transient
        has decayed).
    n_saved : int
        Number of evenly spaced steps whose fields are kept (>= 2; first and last included).
    max_overpotential : float
        Stop early (``Result.terminated``) when the magnitude of the overpotential exceeds this, V.
    threads : int, optional
    callback : callable, optional
        ``callback(fraction, message)``.

    Returns
    -------
    Result
    """
    if not isinstance(particle, Particle):
        raise TypeError(f"particle must be a tomofuse.echem.Particle, got {type(particle).__name__}")
    params = SiliconParameters() if params is None else params
    if not isinstance(params, SiliconParameters):
        raise TypeError(f"params must be a SiliconParameters, got {type(params).__name__}")
    check.number(c_rate, "c_rate", unit="1/h", minimum=0.0, exclusive_minimum=True)
    check.choice(direction, "direction", tuple(DIRECTIONS))
    check.choice(kinetics, "kinetics", KINETICS)
    check.flag(sei, "sei")
    check.flag(electronic, "electronic")
    x0 = _check_fraction(soc_start, "soc_start")
    sign = DIRECTIONS[direction]
    if (soc_end is None) == (duration is None):
        raise ValueError("give exactly one of soc_end and duration")
    if soc_end is not None:
        x1 = _check_fraction(soc_end, "soc_end")
        if sign * (x0 - x1) <= 0:
            raise ValueError(f"soc_end={x1} must be {'below' if sign > 0 else 'above'} soc_start={x0} for {direction}")
        t_end = abs(x0 - x1) * 3600.0 / c_rate
    else:
        t_end = check.number(duration, "duration", unit="seconds", minimum=0.0, exclusive_minimum=True)
        x1 = x0 - sign * c_rate * t_end / 3600.0
        if not 0.0 <= x1 <= 1.0:
            raise ValueError(f"duration={duration} s at {c_rate} C would take the mean SOC from {x0} to {x1:.4g}, "
                             "outside [0, 1]")
    check.integer(n_saved, "n_saved", minimum=2)
    check.number(max_overpotential, "max_overpotential", unit="V", minimum=0.0, exclusive_minimum=True)
    if time_step is None:
        sizes = _step_sizes(t_end, 0.05 * _characteristic_time(particle, params), t_end / 40.0)
    else:
        check.number(time_step, "time_step", unit="seconds", minimum=0.0, exclusive_minimum=True)
        n_steps = max(2, int(math.ceil(t_end / float(time_step) - 1e-9)))
        sizes = np.full(n_steps, t_end / n_steps)
    n_steps = len(sizes)
    dt = float(sizes[0])
    threads = check.threads(threads)
    progress = Progress(callback, logger)
    progress.stage(0.0, 0.05, "meshing")

    # Peak memory: the mesh (~140 bytes per node-grid point), the operators on its 27-point pattern
    # (~2 x 27 x 12 bytes per node) and the saved fields, for the particle's bounding box.
    grid = float(np.prod([s + 1 for s in particle.mask.shape]))
    check_memory(grid * (140 + 2 * 27 * 12) + 16.0 * n_saved * particle.mask.size, stage="tomofuse.echem.simulate",
                 detail=f"a particle box of {particle.mask.shape} voxels",
                 remedy="simulate on a coarser grid (resample the labels to larger voxels) or a smaller particle "
                        "embedding (margin)")
    disc = Discretization(particle, threads=threads)
    kin = Kinetics(disc, params, direction=direction, mode=kinetics, sei=bool(sei), electronic=bool(electronic),
                   threads=threads)
    q = params.volumetric_capacity * disc.volume  # C
    current = sign * c_rate * q / 3600.0  # A
    D = params.diffusivity
    to_flux = -1.0 / (FARADAY * params.c_max)  # nodal current (A) -> SOC source (m^3/s)
    logger.info("simulate: %d nodes, %d elements, %d steps of %.4g-%.4g s, I = %.4g A", disc.n,
                disc.mesh.num_elements, n_steps, sizes.min(), sizes.max(), current)

    mesh = disc.mesh
    ops = {}

    def operator(kind, h):
        """Assembled once per step size (assembly is cheap; only the current size is kept)."""
        key = (kind, h)
        if key not in ops:
            for old in [k for k in ops if k[1] != h]:
                del ops[old]
            if kind == "cn_lhs":
                ops[key] = mesh.operator(mass=1.0 / h, stiffness=0.5 * D, threads=threads)
            elif kind == "cn_rhs":
                ops[key] = mesh.operator(mass=1.0 / h, stiffness=-0.5 * D, threads=threads)
            elif kind == "be_lhs":
                ops[key] = mesh.operator(mass=1.0 / h, stiffness=D, threads=threads)
            elif kind == "be_rhs":
                ops[key] = mesh.operator(mass=1.0 / h, threads=threads)
        return ops[key]

    x = np.full(disc.n, x0)
    ends = np.concatenate([[0.0], np.cumsum(sizes)])
    save_at = set(np.unique(np.searchsorted(ends, np.linspace(0, t_end, n_saved) - 1e-9 * t_end)).tolist())
    times, means, etas, drops, lithium = [0.0], [], [], [], []
    saved_steps, soc_saved, phi_saved = [], [], []

    def record(step, J, eta, drop, phi):
        means.append(float(np.dot(disc.lumped, x) / disc.volume))
        etas.append(eta)
        drops.append(drop)
        lithium.append(float(np.dot(disc.lumped, x)) * params.c_max)
        if step in save_at:
            saved_steps.append(step)
            soc_saved.append(x.copy())
            phi_saved.append(np.asarray(phi, dtype=np.float64).copy())

    terminated = None
    try:
        J, eta, drop, phi = kin.evaluate(x, current)
    except KineticsError as exc:
        raise ValueError(f"the particle cannot carry {c_rate} C at SOC {x0}: {exc}") from None
    record(0, J, eta, drop, phi)
    f_old = to_flux * J
    # Rannacher start: the first interval as two backward-Euler half steps.
    schedule = [("be", 0.5 * dt), ("be", 0.5 * dt)] + [("cn", float(h)) for h in sizes[1:]]
    t = 0.0
    progress.stage(0.05, 1.0, "time stepping")
    step = 0
    x_prev, h_prev = None, dt
    precond = "multigrid" if disc.n >= _MULTIGRID_NODES else "jacobi"
    for k, (kind, h) in enumerate(schedule):
        if kind == "cn":
            rhs0 = operator("cn_rhs", h).matvec(x, threads=threads) + 0.5 * f_old
            lhs, w_new = operator("cn_lhs", h), 0.5
            li_target = float(disc.lumped @ x) + h * 0.5 * float(f_old.sum())
        else:
            rhs0 = operator("be_rhs", h).matvec(x, threads=threads)
            lhs, w_new = operator("be_lhs", h), 1.0
            li_target = float(disc.lumped @ x)
        # predictor: linear extrapolation of the last two steps
        guess = x + (x - x_prev) * (h / h_prev) if (kind == "cn" and k > 2) else x.copy()
        omega, r_prev = 1.0, None
        for it in range(30):
            try:
                J, eta, drop, phi = kin.evaluate(guess, current)
            except KineticsError as exc:
                terminated = f"t = {t:.4g} s: {exc}"
                break
            f_new = to_flux * J
            if kinetics == "butler-volmer":
                # the boundary's linearized source on the diagonal (the local part of Newton's method, set once
                # per step): plain Picard diverges when a large exchange current meets the steep OCV of
                # lithium-poor silicon
                if it == 0:
                    _, G = kin.currents(phi, guess)
                    c = w_new * abs(to_flux) * G * np.abs(params.open_circuit_slope(guess, direction))
                    system = mesh.operator(mass=1.0 / h, stiffness=w_new * D, node_diagonal=c, threads=threads)
                new, info = system.solve(rhs0 + w_new * f_new + c * guess, guess, rtol=_RTOL, preconditioner=precond,
                                         threads=threads)
            else:
                new, info = lhs.solve(rhs0 + w_new * f_new, guess, rtol=_RTOL, preconditioner=precond,
                                      threads=threads)
            if not info["converged"]:
                logger.warning("CG did not converge at t = %.4g s: %s", t, info)
            # The exact discrete solution conserves Li (1^T K = 0): put the CG
            # error's share along the constant vector back (a shift < rtol).
            target = li_target + h * w_new * float(f_new.sum())
            new += (target - float(disc.lumped @ new)) / disc.volume
            r = new - guess
            change = float(np.max(np.abs(r)))
            if kinetics == "uniform" or change < 1e-9:
                guess = new
                break
            # Picard with Aitken's dynamic relaxation: faster on a monotone contraction, damped where it
            # oscillates (e.g. at the conductivity's steep step at the metallic transition)
            omega = aitken(omega, r, r_prev, largest=2.0)
            guess = guess + omega * r
            r_prev = r
        else:
            logger.warning("kinetics/diffusion coupling did not converge at t = %.4g s (last change %.3g)", t, change)
        if terminated:
            break
        x_prev, x, h_prev = x, guess, h
        f_old = f_new
        t += h
        if kind == "be" and k == 0:
            continue  # the half step is not an output step
        step += 1
        times.append(t)
        record(step, J, eta, drop, phi)
        progress.update(step / n_steps, f"t = {t:.4g} s, mean SOC {means[-1]:.4f}")
        if abs(eta) > max_overpotential:
            terminated = f"t = {t:.4g} s: |overpotential| {abs(eta):.3g} V exceeds max_overpotential"
            break
    if terminated:
        logger.warning("simulation stopped early: %s", terminated)
        if saved_steps[-1] != step:
            saved_steps.append(step)
            soc_saved.append(x.copy())
            phi_saved.append(np.asarray(phi, dtype=np.float64).copy())
    return Result(particle=particle, params=params, c_rate=float(c_rate), direction=direction, current=current,
                  time=np.array(times), mean_soc=np.array(means), overpotential=np.array(etas),
                  electronic_drop=np.array(drops), lithium=np.array(lithium), saved_steps=np.array(saved_steps),
                  soc_nodes=np.array(soc_saved), potential_nodes=np.array(phi_saved), terminated=terminated,
                  options={"kinetics": kinetics, "sei": bool(sei), "electronic": bool(electronic),
                           "time_steps": sizes},
                  _disc=disc)
