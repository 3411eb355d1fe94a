"""Implicit shapes of the phantom, defined in meters with exact surfaces.

All point and direction arrays are ``(n, 3)`` in the volumes' ``(z, y, x)``
axis order.  Nothing here depends on a voxel grid.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fibonacci_sphere", "SphericalField", "StarParticle", "Shell", "Flake"]

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` quasi-uniform unit vectors, each the center of an equal-area cell.

    Each vector stands for solid angle ``4*pi/n``.

    Returns
    -------
    (n, 3) ndarray of float64
    """
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = i * _GOLDEN_ANGLE
    return np.stack([z, rho * np.sin(phi), rho * np.cos(phi)], axis=1)


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of ``v`` and their norms (zero vectors map to +z)."""
    norm = np.sqrt(np.einsum("ij,ij->i", v, v))
    safe = np.where(norm > 0, norm, 1.0)
    u = v / safe[:, None]
    u[norm == 0] = (1.0, 0.0, 0.0)
    return u, norm


class SphericalField:
    """A smooth random function on the unit sphere, standardized to mean 0, std 1.

    ``g(u) = (sum_k cos(kappa_k u.d_k + phi_k) - mu) / sd`` with random
    directions ``d_k``, wavenumbers ``kappa_k`` and phases ``phi_k``;
    ``mu`` and ``sd`` are measured on a dense Fibonacci lattice so that the
    realized field has unit variance over the sphere.

    Parameters
    ----------
    rng : numpy.random.Generator
    terms : int
    wavenumber : (low, high)
        Range of ``kappa`` (larger = shorter correlation length on the sphere).
    """

    _LATTICE = 16384

    def __init__(self, rng: np.random.Generator, terms: int, wavenumber: tuple[float, float]):
        d = rng.normal(size=(terms, 3))
        d /= np.linalg.norm(d, axis=1)[:, None]
        kappa = rng.uniform(wavenumber[0], wavenumber[1], terms)
        self._phase = rng.uniform(0.0, 2.0 * math.pi, terms)
        self._kd = (d * kappa[:, None]).T.copy()  # (3, terms)
        self._mu = 0.0
        self._sd = 1.0
        lattice = fibonacci_sphere(self._LATTICE)
        raw = self(lattice)
        self._mu = float(raw.mean())
        self._sd = float(raw.std()) or 1.0
        values = self(lattice)
        # Lipschitz bound of g w.r.t. the chord distance, for rigorous extrema.
        self.lipschitz = float(kappa.sum()) / self._sd
        spacing = math.sqrt(4.0 * math.pi / self._LATTICE)
        self.max = float(values.max()) + self.lipschitz * spacing
        self.min = float(values.min()) - self.lipschitz * spacing

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return (np.cos(u @ self._kd + self._phase).sum(axis=1) - self._mu) / self._sd

    def surface_gradient(self, u: np.ndarray) -> np.ndarray:
        """Gradient of ``g`` tangent to the sphere at ``u``, ``(n, 3)``."""
        s = -np.sin(u @ self._kd + self._phase) / self._sd  # (n, terms)
        grad = s @ self._kd.T
        return grad - np.einsum("ij,ij->i", grad, u)[:, None] * u


class StarParticle:
    """A rounded, star-shaped particle ``r(u) = R exp(a g(u))``.

    Parameters
    ----------
    center : (3,) array
        Center in meters (z, y, x).
    radius : float
        Base radius ``R`` in meters.
    field : SphericalField
        Shape perturbation ``g``.
    amplitude : float
        Relative roughness ``a`` (0 = sphere).
    """

    def __init__(self, center, radius: float, field: SphericalField, amplitude: float):
        self.center = np.asarray(center, dtype=np.float64).reshape(3)
        self.radius = float(radius)
        self.field = field
        self.amplitude = float(amplitude)
        self.r_max = self.radius * math.exp(self.amplitude * field.max)
        self.r_min = self.radius * math.exp(self.amplitude * field.min)

    def radius_at(self, u: np.ndarray) -> np.ndarray:
        """Surface radius in direction ``u`` (unit vectors), meters."""
        if self.amplitude == 0:
            return np.full(len(u), self.radius)
        return self.radius * np.exp(self.amplitude * self.field(u))

    def polar(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Directions ``u`` and distances ``rho`` of points from the center."""
        return _unit(points - self.center)

    def contains(self, points: np.ndarray) -> np.ndarray:
        u, rho = self.polar(points)
        return rho <= self.radius_at(u)

    def approx_distance(self, points: np.ndarray) -> np.ndarray:
        """Radial distance to the surface (negative inside); an upper bound of |distance|."""
        u, rho = self.polar(points)
        return rho - self.radius_at(u)

    def surface(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Area-weighted quasi-uniform samples of the exact surface.

        For ``x(u) = r(u) u`` the outward normal is ``(r u - grad_S r)`` normalized
        and the area element ``dA = r sqrt(r^2 + |grad_S r|^2) dOmega``
        (``grad_S`` the surface gradient on the unit sphere).

        Returns
        -------
        points : (n, 3) ndarray
            Surface points, meters.
        normals : (n, 3) ndarray
            Outward unit normals.
        weights : (n,) ndarray
            Surface area each sample stands for, m^2 (they sum to the area).
        directions : (n, 3) ndarray
            The unit directions ``u`` of the samples.
        """
        u = fibonacci_sphere(n)
        r = self.radius_at(u)
        if self.amplitude == 0:
            grad = np.zeros_like(u)
        else:
            grad = (self.amplitude * r)[:, None] * self.field.surface_gradient(u)
        nvec = r[:, None] * u - grad
        nnorm = np.sqrt(np.einsum("ij,ij->i", nvec, nvec))
        normals = nvec / nnorm[:, None]
        weights = (4.0 * math.pi / n) * r * nnorm
        return self.center + r[:, None] * u, normals, weights, u

    def volume(self, n: int = 65536) -> float:
        """Volume ``integral r^3/3 dOmega`` (quasi-Monte-Carlo on the sphere), m^3."""
        r = self.radius_at(fibonacci_sphere(n))
        return float((4.0 * math.pi / n) * np.sum(r**3) / 3.0)


class Shell:
    """A layer on a ``StarParticle``: ``{c + rho u : r(u) < rho <= r(u) + t(u)}``.

    Parameters
    ----------
    particle : StarParticle
    thickness : callable
        ``thickness(u) -> (n,)`` in meters, 0 where the layer is absent.
    max_thickness : float
        Upper bound of ``thickness`` (for bounding boxes).
    """

    def __init__(self, particle: StarParticle, thickness, max_thickness: float):
        self.particle = particle
        self.thickness = thickness
        self.max_thickness = float(max_thickness)

    def contains_polar(self, u: np.ndarray, rho: np.ndarray, r: np.ndarray) -> np.ndarray:
        out = (rho > r) & (rho <= r + self.max_thickness)
        idx = np.flatnonzero(out)
        if len(idx):
            out[idx] = rho[idx] <= r[idx] + self.thickness(u[idx])
        return out


class Flake:
    """A graphite flake: an ellipsoid with semi-axes ``s`` along the columns of ``rotation``.

    Parameters
    ----------
    center : (3,) array
        Meters (z, y, x).
    rotation : (3, 3) array
        Orthonormal; column ``k`` is the direction of semi-axis ``k``.
    semi_axes : (3,) array
        Meters; the first is the flake's half thickness.
    """

    def __init__(self, center, rotation, semi_axes):
        self.center = np.asarray(center, dtype=np.float64).reshape(3)
        self.rotation = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        self.semi_axes = np.asarray(semi_axes, dtype=np.float64).reshape(3)
        self.half_extent = np.sqrt(((self.rotation * self.semi_axes) ** 2).sum(axis=1))

    def scaled(self, factor: float) -> "Flake":
        return Flake(self.center, self.rotation, self.semi_axes * factor)

    def _local(self, points: np.ndarray) -> np.ndarray:
        return ((points - self.center) @ self.rotation) / self.semi_axes

    def contains(self, points: np.ndarray) -> np.ndarray:
        y = self._local(points)
        return np.einsum("ij,ij->i", y, y) <= 1.0

    def approx_distance(self, points: np.ndarray) -> np.ndarray:
        """Distance to the surface along the line to the center (negative inside)."""
        y = self._local(points)
        q = np.sqrt(np.einsum("ij,ij->i", y, y))
        d = np.linalg.norm(points - self.center, axis=1)
        safe = np.where(q > 0, q, 1.0)
        return np.where(q > 0, d * (q - 1.0) / safe, -self.semi_axes.min())
