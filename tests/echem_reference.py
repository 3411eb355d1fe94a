"""Independent references for the electrochemistry tests (issue 7).

* ``reference_fe_matrices``: slow NumPy/SciPy assembly of the trilinear voxel
  mass and stiffness matrices, with element matrices from 2x2x2 Gauss
  quadrature of the shape functions (not from the closed-form tensor
  products of the core).
* ``crank_sphere``: the analytic series for a sphere with constant surface
  flux (Crank, *The Mathematics of Diffusion*, 2nd ed., 1975, Sec. 6.3.3,
  eq. 6.60 with the roots of ``a cot a = 1``).
* ``RadialFV``: a 1-D spherical finite-volume solver (cell-centered shells,
  implicit Euler) with uniform or Butler-Volmer boundary flux, written
  independently of the 3-D code (only the parameter object is shared).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.optimize import brentq


# --------------------------------------------------------------------------- FE reference

def _shape_gradients(xi):
    """Trilinear shape functions and gradients at local point xi=(z, y, x) in [0,1]^3, local a = 4bz+2by+bx."""
    n = np.empty(8)
    g = np.empty((8, 3))
    for a in range(8):
        b = ((a >> 2) & 1, (a >> 1) & 1, a & 1)
        f = [xi[d] if b[d] else 1.0 - xi[d] for d in range(3)]
        df = [1.0 if b[d] else -1.0 for d in range(3)]
        n[a] = f[0] * f[1] * f[2]
        g[a] = (df[0] * f[1] * f[2], f[0] * df[1] * f[2], f[0] * f[1] * df[2])
    return n, g


def gauss_element_matrices():
    """(mass, stiffness) of the unit cube by 2-point Gauss quadrature per axis (exact for these integrands)."""
    pts = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))
    m = np.zeros((8, 8))
    k = np.zeros((8, 8))
    for z in pts:
        for y in pts:
            for x in pts:
                n, g = _shape_gradients((z, y, x))
                w = 1.0 / 8.0
                m += w * np.outer(n, n)
                k += w * g @ g.T
    return m, k


def reference_fe_matrices(mask, h, coefficient=None):
    """Slow reference: (M, K) scipy CSR matrices of trilinear elements on ``mask`` voxels, voxel edge ``h``.

    Nodes are the used corner points in C order of the (nz+1, ny+1, nx+1) grid.
    ``coefficient`` (per element, elements in C order of voxels) scales K.
    """
    m_e, k_e = gauss_element_matrices()
    shape = np.array(mask.shape)
    g = shape + 1
    vox = np.argwhere(mask)
    corners = np.empty((len(vox), 8), dtype=np.int64)
    for a in range(8):
        off = np.array([(a >> 2) & 1, (a >> 1) & 1, a & 1])
        p = vox + off
        corners[:, a] = (p[:, 0] * g[1] + p[:, 1]) * g[2] + p[:, 2]
    used, local = np.unique(corners, return_inverse=True)
    local = local.reshape(corners.shape)
    c = np.ones(len(vox)) if coefficient is None else np.asarray(coefficient)
    rows = np.repeat(local, 8, axis=1).ravel()
    cols = np.tile(local, (1, 8)).ravel()
    mv = np.tile(m_e.ravel(), len(vox)) * h ** 3
    kv = (c[:, None] * k_e.ravel()[None, :]).ravel() * h
    n = len(used)
    M = sp.coo_matrix((mv, (rows, cols)), shape=(n, n)).tocsr()
    K = sp.coo_matrix((kv, (rows, cols)), shape=(n, n)).tocsr()
    return M, K, used


# --------------------------------------------------------------------------- Crank series

def _roots(n):
    """First n positive roots of a cot a = 1 (tan a = a), in ((k + 1/2) pi - ..., (k + 1/2) pi)."""
    out = []
    for k in range(1, n + 1):
        lo, hi = k * math.pi + 1e-9, (k + 0.5) * math.pi - 1e-9
        out.append(brentq(lambda a: math.tan(a) - a, lo, hi))
    return np.array(out)


def crank_sphere(r, t, *, radius, flux, diffusivity, c0=0.0, terms=400):
    """Concentration in a sphere losing ``flux`` (per unit area and time) uniformly from c0 at t=0.

    c = c0 - (F a / D) [3 D t / a^2 + r^2 / (2 a^2) - 3/10
                        - 2 sum_n exp(-D a_n^2 t / a^2) sin(a_n r / a) / (a_n^2 (r / a) sin a_n)]
    (Crank 1975, eq. 6.60, outward flux), a_n the positive roots of a_n cot a_n = 1.
    """
    a = float(radius)
    r = np.asarray(r, dtype=np.float64)
    rho = r / a
    tau = diffusivity * t / (a * a)
    al = _roots(terms)
    # sin(al rho) / rho, with its limit al at rho = 0
    s = np.where(rho[..., None] > 1e-12, np.sin(al * rho[..., None]) / np.maximum(rho[..., None], 1e-300),
                 al * np.ones_like(rho[..., None]))
    series = np.sum(np.exp(-al * al * tau) * s / (al * al * np.sin(al)), axis=-1)
    bracket = 3.0 * tau + rho * rho / 2.0 - 0.3 - 2.0 * series
    return c0 - flux * a / diffusivity * bracket


# --------------------------------------------------------------------------- radial finite volumes

class RadialFV:
    """1-D spherical diffusion by cell-centered finite volumes and implicit Euler.

    SOC ``x`` in ``n`` equal shells of a sphere of radius ``radius``; the
    surface loses Li at the rate set by ``current`` (A, anodic positive), either
    uniformly (``kinetics="uniform"``) or through Butler-Volmer kinetics with
    the parameters' OCV and exchange current (``"butler-volmer"``, ideal
    electronic conduction, no SEI), the potential found by root finding so that
    the total current is ``current``.
    """

    def __init__(self, radius, n, params, *, direction="delithiation"):
        self.a = radius
        self.n = n
        self.p = params
        self.direction = direction
        self.dr = radius / n
        faces = np.arange(n + 1) * self.dr
        self.r = 0.5 * (faces[:-1] + faces[1:])
        self.vol = 4.0 / 3.0 * math.pi * (faces[1:] ** 3 - faces[:-1] ** 3)
        self.area = 4.0 * math.pi * faces ** 2  # at faces
        self.capacity = params.c_max * 96485.33212  # C/m^3 ... per SOC unit

    def surface_soc(self, x, j):
        """Surface SOC extrapolated from the outer cell with the boundary gradient (j = outward SOC flux)."""
        return x[-1] - j * (0.5 * self.dr) / self.p.diffusivity

    def _bv_phi(self, xs, current):
        p = self.p
        f = 96485.33212 / (8.314462618 * p.temperature)
        aa = p.transfer_coefficient
        i0 = p.exchange_current_density(xs)
        u = p.open_circuit_potential(xs, self.direction)
        i = current / self.area[-1]
        eta = brentq(lambda e: i0 * (math.exp(aa * f * e) - math.exp(-(1 - aa) * f * e)) - i, -3.0, 3.0, xtol=1e-15)
        return u + eta

    def run(self, x0, current, t_end, n_steps, *, kinetics="uniform"):
        """Return (times, mean SOC, profiles (n_steps+1, n), overpotential or None)."""
        p = self.p
        D = p.diffusivity
        dt = t_end / n_steps
        n = self.n
        # conductances between cells i and i+1 through face i+1
        g = D * self.area[1:-1] / self.dr
        main = self.vol / dt
        diag = main.copy()
        diag[:-1] += g
        diag[1:] += g
        A = sp.diags([diag, -g, -g], [0, 1, -1], format="csc")
        from scipy.sparse.linalg import splu
        lu = splu(A)
        j = current / (96485.33212 * p.c_max * self.area[-1])  # outward SOC flux, m/s
        x = np.full(n, float(x0))
        prof = [x.copy()]
        eta = []
        if kinetics == "butler-volmer":
            xs = self.surface_soc(x, j)
            eta.append(self._bv_phi(xs, current) - p.open_circuit_potential(np.dot(self.vol, x) / self.vol.sum(),
                                                                          self.direction))
        for _ in range(n_steps):
            rhs = main * x
            rhs[-1] -= j * self.area[-1]
            x = lu.solve(rhs)
            prof.append(x.copy())
            if kinetics == "butler-volmer":
                xs = self.surface_soc(x, j)
                mean = np.dot(self.vol, x) / self.vol.sum()
                eta.append(self._bv_phi(xs, current) - p.open_circuit_potential(mean, self.direction))
        prof = np.array(prof)
        times = np.arange(n_steps + 1) * dt
        means = prof @ self.vol / self.vol.sum()
        return times, means, prof, (np.array(eta) if eta else None)
