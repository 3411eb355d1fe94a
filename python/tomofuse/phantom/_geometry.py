"""The phantom's continuous geometry: which phase occupies a point (in meters).

One function, ``Geometry.classify_block``, decides the phase of any point; the
voxel labels are that function evaluated at voxel centers and the ground truth
is that function evaluated next to the exact particle surfaces, so labels and
truth describe the same object.

Priority (higher wins where shapes overlap): silicon (lower particle index
first) > graphite > SEI > CBD (coating and web) > pore.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .. import _validate as check
from .._core import points_in_spheres
from .._phase import Phase

__all__ = ["Geometry", "OUTSIDE"]

#: Phase code returned for points outside the volume.
OUTSIDE = 255

_PORE, _GRAPHITE, _SILICON, _CBD, _SEI = (int(p) for p in Phase)


def _overlapping(lo: np.ndarray, hi: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> np.ndarray:
    """Indices of boxes ``[lo, hi]`` (rows) that intersect ``[box_lo, box_hi]``."""
    if len(lo) == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.all(lo <= box_hi, axis=1) & np.all(hi >= box_lo, axis=1))


def _in_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((points >= lo) & (points <= hi), axis=1)


@dataclass
class Geometry:
    """Implicit description of a phantom electrode in a box ``[0, extent]`` (meters).

    Attributes
    ----------
    extent : (3,) ndarray
        Box size (z, y, x) in meters.
    silicon : list of StarParticle
        SiOx particles; particle id = index + 1.
    flakes : list of Flake
        Graphite flakes.
    blob_centers : (M, 3) ndarray
        Centers of the CBD web's grains (spheres), meters.
    blob_radii : (M,) ndarray
        Their radii, meters.
    coatings : list of (Shell or None)
        CBD coating of each silicon particle.
    seis : list of (Shell or None)
        SEI of each silicon particle (used when ``cycled``).
    cycled : bool
        Whether the SEI is present.
    """

    extent: np.ndarray
    silicon: list = field(default_factory=list)
    flakes: list = field(default_factory=list)
    blob_centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    blob_radii: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coatings: list = field(default_factory=list)
    seis: list = field(default_factory=list)
    cycled: bool = False

    def __post_init__(self):
        self.extent = np.asarray(self.extent, dtype=np.float64).reshape(3)
        self.refresh()

    # -- bounding boxes -------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute bounding boxes after objects were added or changed."""
        n = len(self.silicon)
        while len(self.coatings) < n:
            self.coatings.append(None)
        while len(self.seis) < n:
            self.seis.append(None)
        reach = np.zeros(n)
        for j, p in enumerate(self.silicon):
            t = 0.0
            if self.coatings[j] is not None:
                t = max(t, self.coatings[j].max_thickness)
            if self.cycled and self.seis[j] is not None:
                t = max(t, self.seis[j].max_thickness)
            reach[j] = p.r_max + t
        centers = np.array([p.center for p in self.silicon]).reshape(-1, 3)
        self.si_lo = centers - reach[:, None]
        self.si_hi = centers + reach[:, None]
        self.si_core_lo = centers - np.array([p.r_max for p in self.silicon]).reshape(-1, 1)
        self.si_core_hi = centers + np.array([p.r_max for p in self.silicon]).reshape(-1, 1)
        fc = np.array([f.center for f in self.flakes]).reshape(-1, 3)
        fh = np.array([f.half_extent for f in self.flakes]).reshape(-1, 3)
        self.flake_lo, self.flake_hi = fc - fh, fc + fh
        self.blob_centers = np.asarray(self.blob_centers, dtype=np.float64).reshape(-1, 3)
        self.blob_radii = np.asarray(self.blob_radii, dtype=np.float64).reshape(-1)
        self.blob_lo = self.blob_centers - self.blob_radii[:, None]
        self.blob_hi = self.blob_centers + self.blob_radii[:, None]

    # -- point classification -------------------------------------------------------
    def classify_block(
        self, points: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, cbd: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Phase and silicon particle id of ``points`` lying inside the box ``[lo, hi]``.

        Parameters
        ----------
        points : (n, 3) ndarray
            Meters, (z, y, x).
        lo, hi : (3,) ndarray
            A box containing all ``points`` (used to select candidate objects).
        cbd : bool
            If False, skip the CBD (for queries that only need solids and SEI).

        Returns
        -------
        phase : (n,) uint8
            ``Phase`` codes, ``OUTSIDE`` (255) outside the volume.
        particle : (n,) int32
            Silicon particle id (index + 1), 0 elsewhere.
        """
        n = len(points)
        phase = np.full(n, _PORE, dtype=np.uint8)
        pid = np.zeros(n, dtype=np.int32)
        if n == 0:
            return phase, pid
        if cbd:
            self._paint_blobs(points, lo, hi, phase)
        polar = []  # (j, idx, u, rho, r): points in the annulus r_min < rho <= reach of particle j
        core = []  # (j, idx): points with rho <= r_min, certainly inside particle j
        for j in _overlapping(self.si_lo, self.si_hi, lo, hi):
            idx = np.flatnonzero(_in_box(points, self.si_lo[j], self.si_hi[j]))
            if len(idx) == 0:
                continue
            particle = self.silicon[j]
            u, rho = particle.polar(points[idx])
            reach = self.si_hi[j, 0] - particle.center[0]
            deep = rho <= particle.r_min
            ring = ~deep & (rho <= reach)
            core.append((j, idx[deep]))
            polar.append((j, idx[ring], u[ring], rho[ring], particle.radius_at(u[ring])))
        if polar and (cbd or self.cycled):
            # A layer grows only in its particle's territory: the points whose
            # nearest particle (by radial distance) it is, so that one
            # particle's coating or SEI never covers another particle.
            nearest = np.full(n, np.inf)
            owner = np.full(n, -1)
            for j, idx, u, rho, r in polar:
                d = rho - r
                closer = d < nearest[idx]
                nearest[idx[closer]] = d[closer]
                owner[idx[closer]] = j
            layers = ([self.coatings] if cbd else []) + ([self.seis] if self.cycled else [])
            codes = ([_CBD] if cbd else []) + ([_SEI] if self.cycled else [])
            for shells, code in zip(layers, codes):
                for j, idx, u, rho, r in polar:
                    if shells[j] is not None:
                        mine = owner[idx] == j
                        if mine.any():
                            hit = shells[j].contains_polar(u[mine], rho[mine], r[mine])
                            phase[idx[mine][hit]] = code
        for k in _overlapping(self.flake_lo, self.flake_hi, lo, hi):
            idx = np.flatnonzero(_in_box(points, self.flake_lo[k], self.flake_hi[k]))
            if len(idx):
                phase[idx[self.flakes[k].contains(points[idx])]] = _GRAPHITE
        inside = {j: [idx] for j, idx in core}
        for j, idx, u, rho, r in polar:
            inside[j].append(idx[rho <= r])
        for j in sorted(inside, reverse=True):  # lower index wins where particles overlap
            for idx in inside[j]:
                phase[idx] = _SILICON
                pid[idx] = j + 1
        outside = ~_in_box(points, np.zeros(3), self.extent)
        phase[outside] = OUTSIDE
        pid[outside] = 0
        return phase, pid

    def _paint_blobs(self, points, lo, hi, phase) -> None:
        sel = _overlapping(self.blob_lo, self.blob_hi, lo, hi)
        if len(sel):
            hit = points_in_spheres(points - lo, self.blob_centers[sel] - lo, self.blob_radii[sel], threads=1)
            phase[hit] = _CBD

    def classify(self, points: np.ndarray, *, cbd: bool = True, cell: Optional[float] = None):
        """Phase and particle id of arbitrary points (binned into cells internally).

        Parameters
        ----------
        points : (n, 3) ndarray
            Meters, (z, y, x).
        cbd : bool
            See ``classify_block``.
        cell : float, optional
            Bin size in meters (default: 1/16 of the smallest box edge).

        Returns
        -------
        phase : (n,) uint8
        particle : (n,) int32
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        n = len(points)
        phase = np.empty(n, dtype=np.uint8)
        pid = np.empty(n, dtype=np.int32)
        if n == 0:
            return phase, pid
        if cell is None:
            # solids and SEI are few objects: one block; the CBD web has many grains: bin
            cell = self.extent.min() / 16.0 if cbd else math.inf
        if not math.isfinite(cell):
            return self.classify_block(points, points.min(axis=0), points.max(axis=0), cbd=cbd)
        cell = float(cell)
        origin = points.min(axis=0)
        ijk = np.floor((points - origin) / cell).astype(np.int64)
        dims = ijk.max(axis=0) + 1
        key = (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        for grp in np.split(order, bounds):
            pts = points[grp]
            ph, pi = self.classify_block(pts, pts.min(axis=0), pts.max(axis=0), cbd=cbd)
            phase[grp] = ph
            pid[grp] = pi
        return phase, pid

    # -- rendering ------------------------------------------------------------------
    def render(
        self,
        shape: Sequence[int],
        voxel_size: float,
        *,
        threads: Optional[int] = None,
        block: int = 32,
        progress: Optional[Callable[[float], None]] = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels and particle ids at the centers of a voxel grid.

        Parameters
        ----------
        shape : (3,) ints
            Grid shape (z, y, x); the grid covers ``[0, shape * voxel_size]``.
        voxel_size : float
            Meters.
        threads : int, optional
            Worker threads (NumPy releases the GIL in the array operations; None = the
            package default); the result does not depend on it.
        block : int
            Edge of the voxel blocks evaluated at once.
        progress : callable, optional
            ``progress(fraction)``.

        Returns
        -------
        labels : (z, y, x) uint8
        particles : (z, y, x) int32
        """
        shape = tuple(int(s) for s in shape)
        labels = np.empty(shape, dtype=np.uint8)
        particles = np.empty(shape, dtype=np.int32)
        starts = [range(0, s, block) for s in shape]
        jobs = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
        v = float(voxel_size)

        def work(start):
            sl = tuple(slice(s, min(s + block, n)) for s, n in zip(start, shape))
            axes = [(np.arange(a.start, a.stop) + 0.5) * v for a in sl]
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
            lo = np.array([a[0] for a in axes])
            hi = np.array([a[-1] for a in axes])
            ph, pi = self.classify_block(grid, lo, hi)
            bshape = tuple(a.stop - a.start for a in sl)
            labels[sl] = ph.reshape(bshape)
            particles[sl] = pi.reshape(bshape)

        with ThreadPoolExecutor(max_workers=check.threads(threads)) as pool:
            for done, _ in enumerate(pool.map(work, jobs), start=1):
                if progress is not None:
                    progress(done / len(jobs))
        return labels, particles

    # -- helpers used by placement and truth ------------------------------------------
    def solid_distances(self, points: np.ndarray) -> np.ndarray:
        """Approximate distances (m) from points to every solid particle, ``(n, S + F)``."""
        cols = [p.approx_distance(points) for p in self.silicon]
        cols += [f.approx_distance(points) for f in self.flakes]
        if not cols:
            return np.full((len(points), 0), math.inf)
        return np.stack(cols, axis=1)

