"""Interface kinetics and the particle's electron potential (one state per simulation).

Sign convention: currents are anodic-positive (delithiation, Li leaves the
particle into the electrolyte).  ``phi`` is the particle's electron potential
vs the electrolyte (Li/Li+ reference), ``phi_cbd`` the potential of the CBD
that contacts it.  At an ionically active surface node

    i = i0(x) [exp(aa f eta) - exp(-ac f eta)],   eta = phi - U(x) - i R_sei,

and the reaction current leaves the particle there.  Electrons enter or leave
only over CBD faces (area-specific contact resistance), and inside the
particle ``div(sigma(x) grad phi) = 0``.  With ``phi = phi_cbd - psi`` the
discrete charge balance is

    (K_sigma + C) psi = J(phi_cbd - psi),     sum(J) = I,

K_sigma the conductivity-weighted stiffness matrix, C = diag(a_cbd / r_c),
J the nodal reaction currents.  It is solved by Newton's method on
(psi, phi_cbd) with the constraint by superposition (two CG solves per step).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Kinetics"]

_PRECONDITIONER = "jacobi+constant"


class KineticsError(RuntimeError):
    """The requested current cannot be delivered (e.g. a depleted surface)."""


class Kinetics:
    """Boundary kinetics and electronic transport of one discretized particle.

    Parameters
    ----------
    disc : Discretization
    params : SiliconParameters
    direction : str
        Selects the OCV branch.
    mode : {"butler-volmer", "uniform"}
    sei, electronic : bool
    threads : int
    """

    def __init__(self, disc, params, *, direction, mode, sei, electronic, threads=0):
        self.disc = disc
        self.p = params
        self.direction = direction
        self.mode = mode
        self.electronic = electronic
        self.threads = threads
        self.a_free, self.a_sei, self.r_sei, self.a_cbd = disc.boundary(params, sei=sei)
        self.a_active = self.a_free + self.a_sei
        if not self.a_active.sum() > 0:
            raise ValueError("particle has no ionically active surface (no free or SEI faces): no current can flow")
        if electronic and not self.a_cbd.sum() > 0:
            raise ValueError("particle has no CBD contact, it is electrically isolated; use electronic=False to "
                             "treat it as ideally connected")
        self.sei_nodes = np.flatnonzero((self.a_sei > 0) & (self.r_sei > 0))
        if len(self.sei_nodes) < np.count_nonzero(self.a_sei):
            # zero-thickness SEI faces conduct like free surface
            bare = (self.a_sei > 0) & ~(self.r_sei > 0)
            self.a_free = self.a_free + np.where(bare, self.a_sei, 0.0)
            self.a_sei = np.where(bare, 0.0, self.a_sei)
        self.contact = self.a_cbd / max(params.contact_resistance, 1e-12) if electronic else None
        self.f = params.f
        self.aa = params.transfer_coefficient
        self.ac = 1.0 - self.aa
        # warm starts
        self.phi = None
        self.psi = np.zeros(disc.n)
        self.u = np.zeros(disc.n)
        self.w = np.zeros(disc.n)

    # ------------------------------------------------------------------ local laws

    def bv(self, eta, i0):
        """Butler-Volmer current density (A/m^2) and its derivative d i / d eta (S/m^2)."""
        e1 = np.exp(np.clip(self.aa * self.f * eta, -80.0, 80.0))
        e2 = np.exp(np.clip(-self.ac * self.f * eta, -80.0, 80.0))
        return i0 * (e1 - e2), i0 * self.f * (self.aa * e1 + self.ac * e2)

    def bv_inverse(self, i, i0):
        """eta (V) with bv(eta, i0) = i (vectorized Newton on the monotone law)."""
        i = np.asarray(i, dtype=np.float64)
        eta = np.arcsinh(i / (2.0 * i0)) / (0.5 * self.f)  # exact for aa = 0.5
        if self.aa == 0.5:
            return eta
        for _ in range(100):
            b, db = self.bv(eta, i0)
            step = (b - i) / db
            eta = eta - np.clip(step, -0.05, 0.05)
            if np.max(np.abs(step)) < 1e-14:
                break
        return eta

    def sei_current(self, drive, i0, r):
        """Current density through an SEI: i = bv(drive - i r, i0); returns (i, di/d drive)."""
        lo = np.minimum(0.0, drive / r)
        hi = np.maximum(0.0, drive / r)
        i = np.clip(self.bv(drive, i0)[0], lo, hi)
        for _ in range(200):
            b, db = self.bv(drive - i * r, i0)
            g = i - b
            hi = np.where(g > 0, i, hi)
            lo = np.where(g < 0, i, lo)
            step = i - g / (1.0 + r * db)
            new = np.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
            done = np.abs(new - i) <= 1e-13 * np.maximum(np.abs(new), 1e-3)
            i = new
            if done.all():
                break
        b, db = self.bv(drive - i * r, i0)
        return i, db / (1.0 + r * db)

    def currents(self, phi, x):
        """Nodal reaction currents J (A) and dJ/dphi (S) at potential ``phi`` and SOC ``x``."""
        u = self.p.open_circuit_potential(x, self.direction)
        i0 = self.p.exchange_current_density(x)
        drive = phi - u
        i, g = self.bv(drive, i0)
        J = self.a_free * i
        G = self.a_free * g
        s = self.sei_nodes
        if len(s):
            d = drive if np.ndim(drive) else np.full(self.disc.n, drive)
            i_s, g_s = self.sei_current(d[s], i0[s], self.r_sei[s])
            J[s] += self.a_sei[s] * i_s
            G[s] += self.a_sei[s] * g_s
        return J, G

    # ------------------------------------------------------------------ solves

    def _uniform_phi(self, x, current):
        """Scalar particle potential with sum(J) = current (no electronic losses)."""
        p = self.p
        xbar = float(np.dot(self.disc.lumped, x) / self.disc.volume)
        phi = self.phi if self.phi is not None and np.ndim(self.phi) == 0 else float(p.open_circuit_potential(xbar, self.direction))
        lo, hi = -math.inf, math.inf
        tol = 1e-12 * abs(current) + 1e-300
        for _ in range(200):
            J, G = self.currents(phi, x)
            F = J.sum() - current
            if abs(F) <= tol:
                break
            if F > 0:
                hi = min(hi, phi)
            else:
                lo = max(lo, phi)
            dF = G.sum()
            step = max(-0.05, min(0.05, -F / dF if dF > 0 else -math.copysign(0.05, F)))
            if abs(step) <= 4.0 * np.finfo(float).eps * max(1.0, abs(phi)):
                # the residual is below what phi resolves: nodal currents that cancel (local exchange between
                # nodes at different SOC, large with a large exchange current) leave sum(J) a rounding noise
                # above the tolerance of a small requested current
                break
            new = phi + step
            if not lo < new < hi:
                # bisect a closed bracket; with one side open, step towards the closed one (never to +-inf)
                new = 0.5 * (lo + hi) if math.isfinite(lo) and math.isfinite(hi) else (
                    lo + 0.05 if math.isfinite(lo) else hi - 0.05)
            if abs(new - phi) < 1e-15:
                break
            phi = new
            if abs(phi - xbar) > 50:
                raise KineticsError("no particle potential delivers the current")
        else:
            raise KineticsError("particle potential did not converge")
        self.phi = float(phi)
        return J, float(phi)

    def _sigma(self, x):
        return self.p.conductivity(self.disc.voxel_values(x))

    def _electronic_newton(self, x, current):
        """psi, phi_cbd with (K_sigma + C) psi = J(phi_cbd - psi), sum J = I."""
        mesh = self.disc.mesh
        sigma = self._sigma(x)
        base = mesh.operator(stiffness=1.0, element_coefficient=sigma, node_diagonal=self.contact,
                             threads=self.threads)
        if self.phi is None or np.ndim(self.phi) != 0:
            self.psi[:] = 0.0
            _, phi_c = self._uniform_phi(x, current)
        else:
            phi_c = self.phi
        psi = self.psi
        tol_i = 1e-10 * abs(current) + 1e-300
        rtol = 1e-3
        for it in range(60):
            J, G = self.currents(phi_c - psi, x)
            residual = base.matvec(psi, threads=self.threads) - J
            S = mesh.operator(stiffness=1.0, element_coefficient=sigma, node_diagonal=self.contact + G,
                              threads=self.threads)
            # inexact Newton: far from the solution the corrections need only a few digits (rtol 1e-3), close
            # to it six (the steps below 1e-6 V that end the iteration are as accurate as before)
            self.u, _ = S.solve(-residual, self.u, rtol=rtol, preconditioner=_PRECONDITIONER, threads=self.threads)
            self.w, _ = S.solve(G, self.w, rtol=rtol, preconditioner=_PRECONDITIONER, threads=self.threads)
            sg = G.sum()
            denom = sg - np.dot(G, self.w)
            d_phi = (current - J.sum() + np.dot(G, self.u)) / denom
            d_psi = self.u + d_phi * self.w
            scale = min(1.0, 0.05 / max(abs(d_phi), np.max(np.abs(d_psi)), 1e-300))
            phi_c += scale * d_phi
            psi = psi + scale * d_psi
            step = max(abs(d_phi), np.max(np.abs(d_psi)))
            rtol = 1e-3 if step > 1e-6 else 1e-6
            if scale == 1.0 and step < 1e-9:
                J, G = self.currents(phi_c - psi, x)
                if abs(J.sum() - current) <= max(tol_i, 1e-7 * abs(current)):
                    break
        else:
            raise KineticsError("electronic Newton iteration did not converge")
        self.psi = psi
        self.phi = float(phi_c)
        return J, float(phi_c), psi

    def evaluate(self, x, current):
        """Reaction currents and potentials at SOC ``x`` under total ``current`` (A).

        Returns
        -------
        J : (n,) nodal reaction currents, A (sum = current)
        overpotential : float, V (terminal potential minus U(mean SOC))
        drop : float, V (current-weighted electronic drop, NaN if off)
        phi : (n,) nodal electron potential vs the electrolyte, V
        """
        p = self.p
        xbar = float(np.dot(self.disc.lumped, x) / self.disc.volume)
        u_bar = float(p.open_circuit_potential(xbar, self.direction))
        if self.mode == "uniform":
            J = current * self.a_active / self.a_active.sum()
            i = current / self.a_active.sum()
            act = self.a_active > 0
            xa = x[act]
            eta = self.bv_inverse(np.full(xa.shape, i), p.exchange_current_density(xa))
            r = np.where(self.a_sei[act] > 0, self.a_sei[act] * self.r_sei[act] / self.a_active[act], 0.0)
            local = np.full(self.disc.n, np.nan)
            local[act] = p.open_circuit_potential(xa, self.direction) + eta + i * r
            weights = J[act] / current
            terminal = float(np.dot(weights, local[act]))
            if self.electronic:
                sigma = self._sigma(x)
                S = self.disc.mesh.operator(stiffness=1.0, element_coefficient=sigma, node_diagonal=self.contact,
                                            threads=self.threads)
                self.psi, _ = S.solve(J, self.psi, rtol=1e-8, preconditioner=_PRECONDITIONER, threads=self.threads)
                drop = float(np.dot(J, self.psi) / current)
                phi = terminal + drop - self.psi
                return J, terminal + drop - u_bar, drop, phi
            return J, terminal - u_bar, math.nan, np.where(act, local, terminal)
        if self.electronic:
            J, phi_c, psi = self._electronic_newton(x, current)
            drop = float(np.dot(J, psi) / current)
            return J, phi_c - u_bar, drop, phi_c - psi
        J, phi = self._uniform_phi(x, current)
        return J, phi - u_bar, math.nan, np.full(self.disc.n, phi)
