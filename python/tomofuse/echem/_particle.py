"""A single particle cut from a segmentation, with its classified boundary."""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass

import numpy as np

from .. import _validate as check
from .._phase import Phase
from ..analysis import CATEGORIES, surface_coverage

__all__ = ["Particle"]

logger = logging.getLogger(__name__)

FREE, CBD, CONTACT, SEI = range(4)


@dataclass(frozen=True, eq=False)
class Particle:
    """A particle's voxels and its boundary faces, classified by what lies beyond.

    Build with ``Particle.from_labels`` (a particle of a segmented volume in
    its embedding) or ``Particle.sphere`` (validation).  Each boundary voxel
    face is a surface element weighted by its *true* area share
    ``|n . face axis| h^2`` (``n`` the normal of the smoothed particle), not
    by the face's ``h^2``: on a staircase sphere the face count overestimates
    the area up to sqrt(3) on diagonal orientations and a flux spread
    per face never converges.

    Attributes
    ----------
    mask : (z, y, x) ndarray of bool
        The particle's voxels in its crop (at least one empty voxel on every side).
    voxel_size : float
        Voxel edge, m.
    face_voxel : (n,) ndarray of int64
        Flat index (C order of ``mask``) of the particle voxel owning each face.
    face_axis : (n,) ndarray of int8
        Signed outward axis of each face: +-1 z, +-2 y, +-3 x.
    face_area : (n,) ndarray of float64
        Area the face stands for, m^2.
    face_category : (n,) ndarray of int8
        Index into ``tomofuse.analysis.CATEGORIES``: 0 free, 1 cbd, 2 contact, 3 sei.
    face_thickness : (n,) ndarray of float64
        SEI thickness along the normal (m) for SEI faces, NaN elsewhere.
    origin : (3,) tuple of int
        Index in the source volume of ``mask[0, 0, 0]``.
    particle_id : int
        Id in the source volume (0 for synthetic particles).
    center : (3,) tuple of float or None
        ``Particle.sphere`` only: the sphere's center in voxel coordinates of
        ``mask`` (voxel ``i`` spans ``[i, i+1)``); a mesh node sits there.
    """

    mask: np.ndarray
    voxel_size: float
    face_voxel: np.ndarray
    face_axis: np.ndarray
    face_area: np.ndarray
    face_category: np.ndarray
    face_thickness: np.ndarray
    origin: tuple = (0, 0, 0)
    particle_id: int = 0
    center: tuple | None = None

    @property
    def volume(self) -> float:
        """Particle volume, m^3 (voxel count x h^3)."""
        return float(np.count_nonzero(self.mask)) * self.voxel_size ** 3

    @property
    def equivalent_diameter(self) -> float:
        """Diameter of the sphere of the particle's volume, m."""
        return (6.0 * self.volume / math.pi) ** (1.0 / 3.0)

    @property
    def area(self) -> float:
        """Surface area, m^2 (sum of the area-correct face weights)."""
        return float(self.face_area.sum())

    @property
    def coverage(self) -> dict:
        """Area fraction of each boundary class (``free``, ``cbd``, ``contact``, ``sei``)."""
        total = self.face_area.sum()
        return {name: float(self.face_area[self.face_category == k].sum() / total) for k, name in enumerate(CATEGORIES)}

    @property
    def mean_sei_thickness(self) -> float:
        """Area-weighted mean SEI thickness (m), NaN without SEI."""
        sei = self.face_category == SEI
        if not sei.any():
            return math.nan
        return float(np.average(self.face_thickness[sei], weights=self.face_area[sei]))

    def __repr__(self):
        c = self.coverage
        return (f"Particle(id={self.particle_id}, voxels={int(np.count_nonzero(self.mask))}, "
                f"voxel_size={self.voxel_size:.3g} m, volume={self.volume:.3g} m^3, "
                + ", ".join(f"{k}={v:.2f}" for k, v in c.items()) + ")")

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_labels(cls, labels, particles, particle_id, *, voxel_size, margin=3, sigma=2.0, threads=None):
        """Cut particle ``particle_id`` and its surroundings out of a segmentation.

        The boundary is classified by ``tomofuse.analysis.surface_coverage``
        (a ray along each face's normal meets pore -> free, CBD -> cbd,
        graphite or another particle -> contact, SEI -> sei with the SEI
        thickness along the ray; Müller et al., Fig. 2g-h).  Ionic transfer
        happens over free and SEI faces, electronic transfer over CBD faces.

        Parameters
        ----------
        labels : (z, y, x) ndarray of int
            ``tomofuse.Phase`` codes.
        particles : (z, y, x) ndarray of int
            Silicon particle ids (0 = none).
        particle_id : int
            The particle to cut.
        voxel_size : float
            Voxel edge, m.
        margin : int
            Voxels kept around the particle's bounding box (>= 1); the
            particle must lie at least this far from the volume's faces.
        sigma : float
            Smoothing (voxels) of the surface normals.
        threads : int, optional
            Threads of the core.

        Returns
        -------
        Particle

        Raises
        ------
        ValueError
            If the id is absent, or the particle lies closer than ``margin``
            voxels to the volume's faces (its surroundings are unknown).
        """
        labels = np.asarray(labels)
        particles = np.asarray(particles)
        for name, a in (("labels", labels), ("particles", particles)):
            if a.ndim != 3:
                raise ValueError(f"{name} must be a 3-D (z, y, x) volume, got shape {a.shape}")
            if not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
        if labels.shape != particles.shape:
            raise ValueError(f"labels and particles must have the same shape, got {labels.shape} and {particles.shape}")
        check.integer(particle_id, "particle_id", minimum=1)
        check.integer(margin, "margin", minimum=1, unit="voxels")
        v = check.positive_length(voxel_size, "voxel_size")
        pid = int(particle_id)
        inside = particles == pid
        if not inside.any():
            present = np.unique(particles[particles > 0])
            raise ValueError(f"particle_id {pid} is not in particles (ids present: {present[:20].tolist()}"
                             f"{'...' if len(present) > 20 else ''})")
        lo = np.array([np.flatnonzero(inside.any(axis=tuple(b for b in range(3) if b != a))).min() for a in range(3)])
        hi = np.array([np.flatnonzero(inside.any(axis=tuple(b for b in range(3) if b != a))).max() for a in range(3)])
        shape = np.array(labels.shape)
        if np.any(lo - margin < 0) or np.any(hi + margin >= shape):
            raise ValueError(
                f"particle {pid} spans voxels {lo.tolist()}..{hi.tolist()} of a volume of shape {labels.shape}: it lies "
                f"closer than margin={margin} voxels to the volume's faces, so its surroundings are unknown (the "
                "particle touches the crop border); crop a larger volume or lower the margin")
        a, b = lo - margin, hi + margin + 1
        crop = tuple(slice(int(s), int(e)) for s, e in zip(a, b))
        lab = np.ascontiguousarray(labels[crop])
        own = particles[crop] == pid
        ids = np.where(own, pid, 0).astype(np.int32)
        # Other particles stay silicon in the labels: rays meeting them count as contact.
        _, surface = surface_coverage(lab, ids, voxel_size=v, sigma=sigma, threads=threads, return_surface=True)
        return cls._from_surface(own, v, surface, lab, origin=tuple(int(x) for x in a), particle_id=pid)

    @classmethod
    def _from_surface(cls, mask, voxel_size, surface, labels, *, origin, particle_id):
        center = surface.position / voxel_size
        normal = surface.normal
        # Recover each face's voxel and signed axis from its center: the face's
        # coordinate is integral along its axis, half-integral along the others.
        frac = np.abs(center - np.floor(center) - 0.5)
        axis_dim = np.argmax(frac, axis=1)
        n = len(center)
        rows = np.arange(n)
        plane = np.rint(center[rows, axis_dim]).astype(np.int64)
        vox = np.floor(center).astype(np.int64)
        # The inside voxel along the axis is on the side opposite to the normal.
        positive = normal[rows, axis_dim] > 0
        vox[rows, axis_dim] = np.where(positive, plane - 1, plane)
        flat = np.ravel_multi_index(vox.T, mask.shape)
        if not mask.ravel()[flat].all():
            raise RuntimeError("internal error: surface elements do not match the particle's voxels")
        sign = np.where(positive, 1, -1)
        axis = (sign * (axis_dim + 1)).astype(np.int8)
        category = surface.category.astype(np.int8).copy()
        thickness = surface.thickness.copy()
        border = category < 0
        if border.any():
            # Rays that left the crop before meeting anything: classify by the voxel across the face.
            out = vox[border].copy()
            out[np.arange(border.sum()), axis_dim[border]] += sign[border]
            beyond = labels[tuple(out.T)]
            category[border] = np.select(
                [beyond == Phase.CBD, (beyond == Phase.GRAPHITE) | (beyond == Phase.SILICON), beyond == Phase.SEI],
                [CBD, CONTACT, SEI], FREE).astype(np.int8)
            thickness[border] = np.where(category[border] == SEI, voxel_size, np.nan)
            logger.debug("%d of %d faces classified by their neighbor voxel (ray left the crop)", border.sum(), n)
        order = np.lexsort((axis, flat))
        return cls(mask=np.ascontiguousarray(mask, dtype=bool), voxel_size=float(voxel_size),
                   face_voxel=flat[order].astype(np.int64), face_axis=axis[order],
                   face_area=surface.area[order].astype(np.float64), face_category=category[order],
                   face_thickness=thickness[order].astype(np.float64), origin=origin, particle_id=int(particle_id))

    @classmethod
    def sphere(cls, radius, voxel_size, *, cbd_fraction=0.0, sei_thickness=0.0, sigma=2.0, threads=None):
        """A spherical particle in pore space, for validation.

        The sphere is centered on a node of the voxel grid (so a mesh node sits
        at its center) and rendered at voxel centers.  Optionally a CBD cap
        covers the fraction ``cbd_fraction`` of the surface around +z
        (electronic contact) and an SEI shell of ``sei_thickness`` covers
        the rest.

        Parameters
        ----------
        radius : float
            Sphere radius, m.
        voxel_size : float
            Voxel edge, m (radius / voxel_size voxels across the radius, >= 3).
        cbd_fraction : float
            Surface fraction in [0, 1) covered by a CBD cap (0 = fully free).
        sei_thickness : float
            SEI thickness (m) over the non-CBD surface (0 = none).
        sigma, threads
            As in ``from_labels``.

        Returns
        -------
        Particle
        """
        r_m = check.positive_length(radius, "radius")
        v = check.positive_length(voxel_size, "voxel_size")
        r = r_m / v
        if r < 3:
            raise ValueError(f"radius / voxel_size must be >= 3 voxels, got {r:.3g}")
        if not (isinstance(cbd_fraction, numbers.Real) and 0 <= cbd_fraction < 1):
            raise ValueError(f"cbd_fraction must be in [0, 1), got {cbd_fraction!r}")
        if not (isinstance(sei_thickness, numbers.Real) and sei_thickness >= 0 and math.isfinite(sei_thickness)):
            raise ValueError(f"sei_thickness must be a non-negative length in meters, got {sei_thickness!r}")
        t = sei_thickness / v
        shell = max(3.0, t + 2.0)
        margin = int(math.ceil(shell)) + 1
        half = int(math.ceil(r + shell)) + 3
        n = 2 * half
        c = np.arange(n) + 0.5 - half
        z, y, x = np.meshgrid(c, c, c, indexing="ij")
        rr = np.sqrt(x * x + y * y + z * z)
        labels = np.full((n, n, n), Phase.PORE, dtype=np.uint8)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_t = np.where(rr > 0, z / rr, 1.0)
        in_cap = cos_t >= 1.0 - 2.0 * cbd_fraction
        if t > 0:
            labels[(rr >= r) & (rr < r + t) & ~in_cap] = Phase.SEI
        if cbd_fraction > 0:
            labels[(rr >= r) & (rr < r + 2.0) & in_cap] = Phase.CBD
        inside = rr < r
        labels[inside] = Phase.SILICON
        particles = inside.astype(np.int32)
        p = cls.from_labels(labels, particles, 1, voxel_size=v, margin=margin, sigma=sigma, threads=threads)
        center = tuple(float(half - o) for o in p.origin)
        return cls(mask=p.mask, voxel_size=p.voxel_size, face_voxel=p.face_voxel, face_axis=p.face_axis,
                   face_area=p.face_area, face_category=p.face_category, face_thickness=p.face_thickness,
                   origin=(0, 0, 0), particle_id=0, center=center)
