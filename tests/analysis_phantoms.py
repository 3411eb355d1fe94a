"""Analytic phantoms for the surface analysis (issue 6): spheres with closed-form truth.

Everything is in continuous voxel coordinates ``(z, y, x)`` (voxel ``(i, j, k)``
spans ``[i, i+1) x [j, j+1) x [k, k+1)``, center at ``+0.5``) and rendered by
evaluating the geometry at voxel centers, like ``tomofuse.phantom``.  Truth is
of the continuous geometry, in voxel units and (times ``voxel_size``) in SI.

Geometry
--------
* **Silicon spheres** ``Sphere(center, radius, caps, sei)``; particle id = index + 1.
  Overlapping spheres are split either by **priority** (the lower id owns the
  overlap, as in ``tomofuse.phantom``; the interface is the lower id's spherical
  cap) or by the **radical plane** (``split="plane"``; the interface is the flat
  disc of radius ``a``).
* **Graphite balls** ``Ball(center, radius)`` (silicon wins where they overlap).
* **Caps** ``Cap(axis, theta, thickness, phase)``: the shell ``R < r <= R + h``
  over the directions ``u`` with ``u . axis >= cos(theta)``, phase CBD (or PORE,
  GRAPHITE).  On the sphere it covers ``2 pi R^2 (1 - cos theta)``, a fraction
  ``(1 - cos theta) / 2`` of the sphere, exactly.
* **SEI shells** ``SEIShell(t0, t1, e, axis, theta)``: ``R < r <= R + t(u)``,
  ``t(u) = t0 + t1 (u . e)`` (``|e| = 1``), over the cap ``u . axis >= cos(theta)``
  (``theta = pi``: the whole sphere).  On a sphere the outward normal is radial,
  so the SEI thickness along the normal at ``u`` is ``t(u)`` exactly.  With
  ``c = cos(theta)``, ``k = e . axis``, and ``s = u . axis`` uniform on ``[c, 1]``
  over the cap's area (Archimedes):

      E[u.e]     = k (1 + c) / 2
      E[(u.e)^2] = k^2 m2 + (1 - k^2) (1 - m2) / 2,      m2 = (1 + c + c^2) / 3
      mean       = t0 + t1 E[u.e]
      std        = t1 sqrt(E[(u.e)^2] - E[u.e]^2)

  Whole sphere: ``mean = t0``, ``std = t1 / sqrt(3)``; cap with ``e = axis``:
  ``mean = t0 + t1 (1 + c) / 2``, ``std = t1 (1 - c) / sqrt(12)``.

Contacts (centers ``d`` apart, radii ``Ra``, ``Rb``, ``n`` from a to b)
----------------------------------------------------------------------
``x_a = (d^2 + Ra^2 - Rb^2) / (2 d)`` is the distance from a's center to the
plane of the intersection circle (the radical plane), ``x_b = d - x_a``, the
circle's radius ``a = sqrt(Ra^2 - x_a^2)``, a's sphere inside b is the cap
``u . n > x_a / Ra`` of area ``S_a = 2 pi Ra (Ra - x_a)``.

* priority (a < b): a keeps its whole sphere, area ``4 pi Ra^2``, contact ``S_a``;
  b has ``4 pi Rb^2 - 2 pi Rb (Rb - x_b) + S_a``, contact ``S_a``; volumes
  ``4/3 pi Ra^3`` and ``4/3 pi Rb^3 - V_cap(Rb, Rb - x_b)``,
  ``V_cap(R, h) = pi h^2 (3 R - h) / 3``.
* plane: each keeps its sphere outside the other, plus the disc:
  ``4 pi R^2 - 2 pi R (R - x) + pi a^2``, contact ``pi a^2``; volume
  ``4/3 pi R^3 - V_cap(R, R - x)``.
* graphite ball: the silicon keeps its sphere, contact ``2 pi R (R - x)`` with
  ``x`` computed as ``x_a`` with ``Rb`` the ball's radius.

Every feature lies on the part of the sphere that is the particle's free surface
(checked: features keep an angular margin from each other and from contact
cones, and their shells keep ``margin`` voxels from all other bodies), so the
fractions are exact: ``free = 1 - cbd - contact - sei``.

Builders
--------
``spheres_with_caps``  explicit list of spheres (and graphite balls)
``single_sphere``      one sphere (area/volume convergence)
``half_space``         a tilted plane (normals and area)
``random_spheres``     many particles with random caps, contacts and SEI
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Ball",
    "Cap",
    "SEIShell",
    "Sphere",
    "AnalyticPhantom",
    "spheres_with_caps",
    "single_sphere",
    "half_space",
    "random_spheres",
    "cap_fraction",
    "sei_shell_stats",
    "TRUTH_COLUMNS",
]

PORE, GRAPHITE, SILICON, CBD, SEI = 0, 1, 2, 3, 4

TRUTH_COLUMNS = ("radius_vox", "volume_vox", "area_vox2", "area_m2", "free", "cbd", "contact", "sei",
                 "sei_mean_vox", "sei_std_vox", "sei_mean_m", "sei_std_m", "touches_border")


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    if n == 0:
        raise ValueError("zero direction")
    return v / n


@dataclass
class Cap:
    """Shell ``R < r <= R + thickness`` over the cone ``u . axis >= cos(theta)`` (phase, default CBD)."""

    axis: Sequence[float]
    theta: float
    thickness: float = 3.0
    phase: int = CBD

    def __post_init__(self):
        self.axis = _unit(self.axis)


@dataclass
class SEIShell:
    """SEI of thickness ``t0 + t1 (u . e)`` over the cone ``u . axis >= cos(theta)`` (theta=pi: all)."""

    t0: float
    t1: float = 0.0
    e: Sequence[float] = (1.0, 0.0, 0.0)
    axis: Sequence[float] = (1.0, 0.0, 0.0)
    theta: float = math.pi

    def __post_init__(self):
        self.e, self.axis = _unit(self.e), _unit(self.axis)
        if self.t0 - abs(self.t1) <= 0:
            raise ValueError(f"SEI thickness must stay positive: t0={self.t0}, t1={self.t1}")

    @property
    def max_thickness(self) -> float:
        return self.t0 + abs(self.t1)


@dataclass
class Ball:
    """Graphite ball (silicon wins where they overlap)."""

    center: Sequence[float]
    radius: float

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=np.float64)


@dataclass
class Sphere:
    """Silicon sphere with CBD caps and an optional SEI shell (voxel units)."""

    center: Sequence[float]
    radius: float
    caps: list = field(default_factory=list)
    sei: Optional[SEIShell] = None

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=np.float64)
        self.caps = list(self.caps)

    @property
    def shell(self) -> float:
        """Thickest feature on the sphere (voxels)."""
        t = [c.thickness for c in self.caps] + ([self.sei.max_thickness] if self.sei else [])
        return max(t, default=0.0)


def cap_fraction(theta: float) -> float:
    """Area fraction of a sphere within polar angle ``theta`` of an axis: ``(1 - cos theta) / 2``."""
    return (1.0 - math.cos(theta)) / 2.0


def sei_shell_stats(sei: SEIShell) -> tuple[float, float]:
    """Closed-form area-weighted mean and std of ``t(u)`` over the SEI cap (voxels)."""
    c = math.cos(sei.theta)
    k = float(np.dot(sei.e, sei.axis))
    m1 = k * (1 + c) / 2
    m2s = (1 + c + c * c) / 3
    m2 = k * k * m2s + (1 - k * k) * (1 - m2s) / 2
    return sei.t0 + sei.t1 * m1, abs(sei.t1) * math.sqrt(max(m2 - m1 * m1, 0.0))


def _v_cap(r, h):
    return math.pi * h * h * (3 * r - h) / 3


@dataclass
class AnalyticPhantom:
    """Rendered labels/particles with the closed-form truth.

    Attributes
    ----------
    labels : (z, y, x) uint8, Phase codes.
    particles : (z, y, x) int32, particle id (sphere index + 1), 0 elsewhere.
    voxel_size : float, meters.
    spheres, balls : the geometry.
    truth : DataFrame indexed by particle id, ``TRUTH_COLUMNS``.
    """

    labels: np.ndarray
    particles: np.ndarray
    voxel_size: float
    spheres: list
    balls: list
    split: str
    truth: pd.DataFrame

    def inner(self) -> pd.DataFrame:
        """Truth of the particles not touching the border."""
        return self.truth[~self.truth["touches_border"]]


def _contacts(spheres, balls, split):
    """Per sphere: list of (direction, cos of the removed/claimed cone) and area bookkeeping."""
    n = len(spheres)
    area = np.array([4 * math.pi * s.radius**2 for s in spheres])
    contact = np.zeros(n)
    volume = np.array([4 / 3 * math.pi * s.radius**3 for s in spheres])
    cones = [[] for _ in range(n)]  # cones on the sphere that are not free surface: (axis, cos)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = spheres[i], spheres[j]
            dv = b.center - a.center
            d = float(np.linalg.norm(dv))
            if d >= a.radius + b.radius:
                continue
            if d <= abs(a.radius - b.radius):
                raise ValueError(f"sphere {j + 1} and {i + 1}: one inside the other")
            nv = dv / d
            xa = (d * d + a.radius**2 - b.radius**2) / (2 * d)
            xb = d - xa
            disc = math.pi * (a.radius**2 - xa * xa)
            sa = 2 * math.pi * a.radius * (a.radius - xa)
            sb = 2 * math.pi * b.radius * (b.radius - xb)
            cones[i].append((nv, xa / a.radius))
            cones[j].append((-nv, xb / b.radius))
            if split == "priority":
                area[j] += -sb + sa
                contact[i] += sa
                contact[j] += sa
                volume[j] -= _v_cap(b.radius, b.radius - xb)
            else:
                area[i] += -sa + disc
                area[j] += -sb + disc
                contact[i] += disc
                contact[j] += disc
                volume[i] -= _v_cap(a.radius, a.radius - xa)
                volume[j] -= _v_cap(b.radius, b.radius - xb)
        for g in balls:
            dv = g.center - spheres[i].center
            d = float(np.linalg.norm(dv))
            r = spheres[i].radius
            if d >= r + g.radius:
                continue
            if d <= abs(r - g.radius):
                raise ValueError(f"graphite ball and sphere {i + 1}: one inside the other")
            x = (d * d + r * r - g.radius**2) / (2 * d)
            cones[i].append((dv / d, x / r))
            contact[i] += 2 * math.pi * r * (r - x)
    return area, contact, volume, cones


def _features(s: Sphere):
    out = [(c.axis, math.cos(c.theta)) for c in s.caps]
    if s.sei is not None:
        out.append((s.sei.axis, math.cos(s.sei.theta)))
    return out


def _cones_disjoint(c1, c2, margin) -> bool:
    (a1, cos1), (a2, cos2) = c1, c2
    t1, t2 = math.acos(min(1.0, max(-1.0, cos1))), math.acos(min(1.0, max(-1.0, cos2)))
    ang = math.acos(min(1.0, max(-1.0, float(np.dot(a1, a2)))))
    return ang >= t1 + t2 + margin


def _sample_cone(rng, axis, cos_theta, n):
    c = rng.uniform(cos_theta, 1.0, n)
    phi = rng.uniform(0, 2 * math.pi, n)
    # orthonormal frame around axis
    helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    s = np.sqrt(np.clip(1 - c * c, 0, None))
    return c[:, None] * axis + (s * np.cos(phi))[:, None] * e1 + (s * np.sin(phi))[:, None] * e2


def _shell_clear(s, idx, axis, cos_theta, thickness, spheres, balls, margin, rng, n=3000):
    """Whether the shell of thickness ``thickness`` over the cone keeps ``margin`` from every other body
    (other spheres grown by their own features)."""
    u = _sample_cone(rng, axis, cos_theta, n)
    r = s.radius + rng.uniform(0, thickness + margin, n)
    pts = s.center + r[:, None] * u
    for j, o in enumerate(spheres):
        if j == idx:
            continue
        if np.any(np.linalg.norm(pts - o.center, axis=1) < o.radius + o.shell + margin):
            return False
    for g in balls:
        if np.any(np.linalg.norm(pts - g.center, axis=1) < g.radius + margin):
            return False
    return True


def validate(spheres, balls, split="priority", margin=1.5, seed=0):
    """Raise ValueError if a feature is not on free surface (the truth would not be exact)."""
    rng = np.random.default_rng(seed)
    _, _, _, cones = _contacts(spheres, balls, split)
    for i, s in enumerate(spheres):
        feats = _features(s)
        ang_margin = margin / s.radius
        for a in range(len(feats)):
            for b in list(range(a + 1, len(feats))):
                if not _cones_disjoint(feats[a], feats[b], ang_margin):
                    raise ValueError(f"sphere {i + 1}: features {a} and {b} overlap")
            for cone in cones[i]:
                if not _cones_disjoint(feats[a], cone, ang_margin):
                    raise ValueError(f"sphere {i + 1}: feature {a} overlaps a contact")
        things = [(c.axis, math.cos(c.theta), c.thickness) for c in s.caps]
        if s.sei is not None:
            things.append((s.sei.axis, math.cos(s.sei.theta), s.sei.max_thickness))
        for a, (ax, ct, h) in enumerate(things):
            if not _shell_clear(s, i, ax, ct, h, spheres, balls, margin, rng):
                raise ValueError(f"sphere {i + 1}: feature {a} comes within {margin} voxels of another body")


def _render(shape, spheres, balls, split):
    shape = tuple(int(n) for n in shape)
    labels = np.zeros(shape, np.uint8)
    particles = np.zeros(shape, np.int32)
    power = np.full(shape, np.inf, np.float32) if split == "plane" else None

    def box(c, r):
        lo = np.maximum(np.floor(c - r - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + r + 1).astype(int), shape)
        if np.any(hi <= lo):
            return None, None
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        grids = np.meshgrid(*[np.arange(a, b) + 0.5 for a, b in zip(lo, hi)], indexing="ij", sparse=True)
        return sl, grids

    # features first (lowest priority): CBD caps, then SEI over them
    for s in spheres:
        sl, (z, y, x) = box(s.center, s.radius + s.shell)
        if sl is None:
            continue
        dz, dy, dx = z - s.center[0], y - s.center[1], x - s.center[2]
        r = np.sqrt(dz * dz + dy * dy + dx * dx)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = [dz / r, dy / r, dx / r]
        outside = r > s.radius
        for c in s.caps:
            cosang = u[0] * c.axis[0] + u[1] * c.axis[1] + u[2] * c.axis[2]
            m = outside & (r - s.radius <= c.thickness) & (cosang >= math.cos(c.theta))
            labels[sl][m] = c.phase
        if s.sei is not None:
            e, ax = s.sei.e, s.sei.axis
            t = s.sei.t0 + s.sei.t1 * (u[0] * e[0] + u[1] * e[1] + u[2] * e[2])
            cosang = u[0] * ax[0] + u[1] * ax[1] + u[2] * ax[2]
            m = outside & (r - s.radius <= t) & (cosang >= math.cos(s.sei.theta))
            labels[sl][m] = SEI
    for g in balls:
        sl, (z, y, x) = box(g.center, g.radius)
        if sl is None:
            continue
        m = (z - g.center[0]) ** 2 + (y - g.center[1]) ** 2 + (x - g.center[2]) ** 2 < g.radius**2
        labels[sl][m] = GRAPHITE
    order = range(len(spheres) - 1, -1, -1) if split == "priority" else range(len(spheres))
    for i in order:
        s = spheres[i]
        sl, (z, y, x) = box(s.center, s.radius)
        if sl is None:
            continue
        r2 = (z - s.center[0]) ** 2 + (y - s.center[1]) ** 2 + (x - s.center[2]) ** 2
        m = r2 < s.radius**2
        if split == "plane":
            pw = (r2 - s.radius**2).astype(np.float32)
            m &= pw < power[sl]
            power[sl][m] = pw[m]
        labels[sl][m] = SILICON
        particles[sl][m] = i + 1
    return labels, particles


def spheres_with_caps(shape, spheres, *, balls=(), split="priority", voxel_size=1.0, check=True,
                      margin=1.5) -> AnalyticPhantom:
    """Render silicon spheres with CBD caps, SEI shells, contacts and graphite balls, with exact truth.

    Parameters
    ----------
    shape : (3,) ints
        Volume shape (z, y, x).
    spheres : sequence of Sphere or (center, radius[, caps[, sei]]) tuples
        Centers/radii in voxels; particle id = position + 1 (the priority order).
    balls : sequence of Ball or (center, radius)
        Graphite balls.
    split : "priority" or "plane"
        How overlapping spheres share the lens (see the module docstring).
    voxel_size : float
        Meters per voxel for the SI truth columns.
    check : bool
        Validate that every feature lies on free surface (``validate``).

    Returns
    -------
    AnalyticPhantom
        ``truth`` per particle: ``area_vox2 = area_sphere - removed caps + interfaces``
        (see the module docstring), ``cbd = sum (1 - cos theta_i) / 2 * 4 pi R^2 / area``,
        ``sei = (1 - cos theta_s) / 2 * 4 pi R^2 / area``, ``contact`` from the contact
        formulas, ``free = 1 - cbd - contact - sei``, SEI mean/std from ``sei_shell_stats``;
        ``touches_border`` when the sphere or its features come within 1 voxel of the
        grid's faces (fractions of those are not the closed form of the visible part).
    """
    if split not in ("priority", "plane"):
        raise ValueError(f"split must be 'priority' or 'plane', got {split!r}")
    sph = [s if isinstance(s, Sphere) else Sphere(*s) for s in spheres]
    bl = [b if isinstance(b, Ball) else Ball(*b) for b in balls]
    if check:
        validate(sph, bl, split, margin=margin)
    labels, particles = _render(shape, sph, bl, split)
    area, contact, volume, _ = _contacts(sph, bl, split)
    rows = {}
    shape_a = np.asarray(shape, dtype=np.float64)
    for i, s in enumerate(sph):
        sphere_area = 4 * math.pi * s.radius**2
        cbd = sum(cap_fraction(c.theta) for c in s.caps if c.phase == CBD) * sphere_area
        contact_caps = sum(cap_fraction(c.theta) for c in s.caps if c.phase == GRAPHITE) * sphere_area
        sei = cap_fraction(s.sei.theta) * sphere_area if s.sei is not None else 0.0
        if s.sei is not None:
            mean, std = sei_shell_stats(s.sei)
        else:
            mean = std = math.nan
        reach = s.radius + s.shell + 1.0
        border = bool(np.any(s.center - reach < 0) or np.any(s.center + reach > shape_a))
        con = contact[i] + contact_caps
        rows[i + 1] = {
            "radius_vox": s.radius,
            "volume_vox": volume[i],
            "area_vox2": area[i],
            "area_m2": area[i] * voxel_size**2,
            "free": 1.0 - (cbd + con + sei) / area[i],
            "cbd": cbd / area[i],
            "contact": con / area[i],
            "sei": sei / area[i],
            "sei_mean_vox": mean,
            "sei_std_vox": std,
            "sei_mean_m": mean * voxel_size,
            "sei_std_m": std * voxel_size,
            "touches_border": border,
        }
    truth = pd.DataFrame.from_dict(rows, orient="index", columns=list(TRUTH_COLUMNS))
    truth.index.name = "particle"
    truth.index = truth.index.astype(np.int32)
    truth["touches_border"] = truth["touches_border"].astype(bool)
    return AnalyticPhantom(labels, particles, float(voxel_size), sph, bl, split, truth)


def single_sphere(radius, *, shape=None, offset=(0.1, 0.27, 0.38), caps=(), sei=None, voxel_size=1.0):
    """One sphere of ``radius`` voxels centered near the middle of a cube (``offset`` off the lattice).

    Truth: area ``4 pi r^2``, volume ``4/3 pi r^3``; caps and SEI as in ``spheres_with_caps``.
    """
    if shape is None:
        pad = max([c.thickness for c in caps] + ([sei.max_thickness] if sei else []) + [0.0])
        n = int(2 * math.ceil(radius + pad) + 8)
        shape = (n, n, n)
    center = np.asarray(shape, dtype=np.float64) / 2 + np.asarray(offset)
    return spheres_with_caps(shape, [Sphere(center, radius, list(caps), sei)], voxel_size=voxel_size)


def half_space(shape, normal, point=None):
    """Particle 1 = the half-space ``{x : (x - point) . normal < 0}`` at voxel centers (outward ``normal``).

    Returns ``(labels, particles, normal, point)``.  The true area of the plane over a
    window ``W`` of the plane's projection along axis ``a`` is ``|W| / |normal_a|``.
    """
    n = _unit(normal)
    shape = tuple(int(s) for s in shape)
    if point is None:
        point = np.asarray(shape, dtype=np.float64) / 2 + 0.123
    point = np.asarray(point, dtype=np.float64)
    z, y, x = np.meshgrid(*[np.arange(s) + 0.5 for s in shape], indexing="ij", sparse=True)
    m = (z - point[0]) * n[0] + (y - point[1]) * n[1] + (x - point[2]) * n[2] < 0
    particles = m.astype(np.int32)
    labels = np.where(m, SILICON, PORE).astype(np.uint8)
    return labels, particles, n, point


def random_spheres(shape, n_particles, *, seed=0, radius=(8.0, 14.0), voxel_size=1.0, split="priority",
                   pair_fraction=0.35, graphite_fraction=0.15, sei_fraction=0.5, full_sei_fraction=0.25,
                   cbd_caps=(0, 3), cbd_theta=(0.25, 0.8), cbd_thickness=(2.5, 4.0),
                   sei_t0=(2.5, 5.0), sei_t1=(0.0, 1.5), sei_theta=(0.6, 1.6), margin=2.0,
                   border_margin=2.0, max_tries=20000) -> AnalyticPhantom:
    """Many particles with random CBD caps, contacts (pairs, graphite balls) and SEI shells.

    Units (a single sphere, an overlapping pair, or a sphere touching a graphite ball)
    are placed without overlap (``margin`` voxels plus the thickest feature apart) and
    ``border_margin`` voxels inside the box; then each sphere gets up to ``cbd_caps``
    CBD caps (polar angle in ``cbd_theta`` rad, thickness ``cbd_thickness``) and, with
    probability ``sei_fraction``, an SEI shell (``t0``, ``t1`` in voxels; a whole-sphere
    shell with probability ``full_sei_fraction`` when the sphere has no contact, else a
    cap of angle ``sei_theta`` with ``e`` = its axis), each placed by rejection so that
    the truth stays exact (``validate``).  Truth formulas as in ``spheres_with_caps``.
    """
    rng = np.random.default_rng(seed)
    shape_a = np.asarray(shape, dtype=np.float64)
    max_shell = max(cbd_thickness[1], sei_t0[1] + sei_t1[1])
    units = []  # (bounding center, bounding radius, [spheres], [balls])
    tries = 0
    n_spheres = 0
    while n_spheres < n_particles:
        tries += 1
        if tries > max_tries:
            raise RuntimeError(f"placed only {n_spheres} of {n_particles} particles in {shape}")
        ra = rng.uniform(*radius)
        kind = rng.choice(["single", "pair", "graphite"],
                          p=[1 - pair_fraction - graphite_fraction, pair_fraction, graphite_fraction])
        if kind == "pair" and n_spheres + 2 > n_particles:
            kind = "single"
        u = _unit(rng.normal(size=3))
        members, balls = [(np.zeros(3), ra)], []
        if kind == "pair":
            rb = rng.uniform(*radius)
            d = rng.uniform(0.75, 0.9) * (ra + rb)
            d = max(d, abs(ra - rb) + 0.5 * min(ra, rb))
            members.append((d * u, rb))
        elif kind == "graphite":
            rg = rng.uniform(1.0, 1.6) * ra
            d = rng.uniform(0.8, 0.92) * (ra + rg)
            balls.append((d * u, rg))
        pts = [(c, r) for c, r in members + balls]
        bc = sum(c * r**3 for c, r in pts) / sum(r**3 for c, r in pts)
        brad = max(np.linalg.norm(c - bc) + r for c, r in pts) + max_shell
        lo = brad + border_margin
        if np.any(shape_a - 2 * lo <= 0):
            continue
        center = rng.uniform(lo, shape_a - lo)
        if any(np.linalg.norm(center - c) < brad + b + margin for c, b, _, _ in units):
            continue
        shift = center - bc
        units.append((center, brad, [Sphere(c + shift, r) for c, r in members],
                      [Ball(c + shift, r) for c, r in balls]))
        n_spheres += len(members)
    spheres = [s for _, _, ss, _ in units for s in ss]
    balls = [b for _, _, _, bb in units for b in bb]
    # features, by rejection, sphere by sphere
    _, _, _, cones = _contacts(spheres, balls, split)
    # while placing, other spheres count with the largest possible shell (they are not decorated yet)
    for i, s in enumerate(spheres):
        ang_margin = margin / s.radius
        taken = list(cones[i])
        caps = []
        for _ in range(int(rng.integers(cbd_caps[0], cbd_caps[1] + 1))):
            for _attempt in range(50):
                cap = Cap(_unit(rng.normal(size=3)), float(rng.uniform(*cbd_theta)),
                          float(rng.uniform(*cbd_thickness)))
                cone = (cap.axis, math.cos(cap.theta))
                if all(_cones_disjoint(cone, t, ang_margin) for t in taken) and _clear_of_others(
                        s, i, cone, cap.thickness, spheres, balls, margin, max_shell, rng):
                    caps.append(cap)
                    taken.append(cone)
                    break
        sei = None
        if rng.uniform() < sei_fraction:
            t0 = float(rng.uniform(*sei_t0))
            t1 = float(rng.uniform(*sei_t1)) * float(rng.choice([-1, 1]))
            if not cones[i] and not caps and rng.uniform() < full_sei_fraction / max(sei_fraction, 1e-9):
                cand = [SEIShell(t0, t1, _unit(rng.normal(size=3)), (1, 0, 0), math.pi)]
            else:
                cand = []
                for _attempt in range(50):
                    ax = _unit(rng.normal(size=3))
                    cand.append(SEIShell(t0, t1, ax, ax, float(rng.uniform(*sei_theta))))
            for sh in cand:
                cone = (sh.axis, math.cos(sh.theta))
                if (sh.theta >= math.pi or all(_cones_disjoint(cone, t, ang_margin) for t in taken)) and \
                        _clear_of_others(s, i, cone, sh.max_thickness, spheres, balls, margin, max_shell, rng):
                    sei = sh
                    break
        s.caps, s.sei = caps, sei
    return spheres_with_caps(shape, spheres, balls=balls, split=split, voxel_size=voxel_size, margin=margin)


def _clear_of_others(s, idx, cone, thickness, spheres, balls, margin, max_shell, rng):
    axis, cos_theta = cone
    u = _sample_cone(rng, axis, cos_theta, 3000)
    r = s.radius + rng.uniform(0, thickness + margin, len(u))
    pts = s.center + r[:, None] * u
    for j, o in enumerate(spheres):
        if j != idx and np.any(np.linalg.norm(pts - o.center, axis=1) < o.radius + max_shell + margin):
            return False
    return all(not np.any(np.linalg.norm(pts - g.center, axis=1) < g.radius + margin) for g in balls)


def random_label_grid(shape=(24, 24, 24), *, seed=0, blob=1.6, border_particles=True):
    """A random small label grid for core-vs-reference checks (no truth).

    Particles are the connected components of a thresholded smooth random field
    (ids ascending in C order of first voxel, some touching the grid border unless
    ``border_particles`` is False); the other voxels get PORE, GRAPHITE, CBD or SEI
    in smooth blobs, with SEI enriched next to the particles so that SEI runs occur.
    Returns ``(labels uint8, particles int32)``.
    """
    from scipy.ndimage import binary_dilation, gaussian_filter, label

    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    f = gaussian_filter(rng.normal(size=shape), blob, mode="wrap")
    mask = f > np.quantile(f, 0.72)
    if not border_particles:
        mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1] = (False,) * 6
    particles, n = label(mask)
    particles = particles.astype(np.int32)
    g = np.stack([gaussian_filter(rng.normal(size=shape), blob, mode="wrap") for _ in range(4)])
    near = binary_dilation(mask, iterations=2) & ~mask
    g[3][near] += 0.3  # SEI near the particles
    phases = np.array([PORE, GRAPHITE, CBD, SEI], np.uint8)
    labels = phases[np.argmax(g, axis=0)]
    labels[mask] = SILICON
    return labels, particles


def sei_shell_spheres(*, voxel_size=1.0) -> AnalyticPhantom:
    """Eight isolated spheres (r = 12-16 voxels) with whole SEI shells ``t0 = 2.5 ... 6.7``
    voxels, ``t1 = 0 ... 2`` along random directions, in a (52, 100, 196) volume."""
    rng = np.random.default_rng(7)
    spheres = []
    for i in range(8):
        t0 = 2.5 + 0.6 * i
        t1 = float(rng.uniform(0, min(2.0, t0 - 1.5)))
        c = np.array([24 + 48 * (i % 4), 24 + 48 * (i // 4), 26.0]) + rng.uniform(0, 1, 3)
        spheres.append(Sphere(c[[2, 1, 0]], float(rng.uniform(12, 16)),
                              sei=SEIShell(t0, t1, _unit(rng.normal(size=3)))))
    return spheres_with_caps((52, 100, 196), spheres, voxel_size=voxel_size)
