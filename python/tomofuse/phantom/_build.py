"""Placement of the phantom's objects so that the asked fractions and coverages hold.

Volume fractions are tracked on a fixed scrambled-Sobol point set in the box
(meters, independent of any voxel grid), so the same seed and box give the
same electrode at any voxel size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import qmc

from .._core import points_in_spheres
from .._phase import Phase
from ._composition import Composition, Morphology
from ._geometry import Geometry, _overlapping
from ._shapes import Flake, Shell, SphericalField, StarParticle

__all__ = ["build_geometry", "SURFACE_EPS"]

logger = logging.getLogger(__name__)

#: Offset (m) from a surface sample to the points that tell its two sides apart.
SURFACE_EPS = 1e-10

_QMC_POINTS_LOG2 = 17
_LITE_SAMPLES = 4096


class _PatchThickness:
    """``t`` where ``field(u) >= threshold``, else 0 (a CBD coating patch)."""

    def __init__(self, field: SphericalField, threshold: float, thickness: float):
        self.field, self.threshold, self.thickness = field, float(threshold), float(thickness)

    def __call__(self, u):
        return np.where(self.field(u) >= self.threshold, self.thickness, 0.0)


class _SEIThickness:
    """Log-normal SEI thickness on patches; presence thresholds differ on pristine CBD.

    The SEI grows mostly where the pristine surface was free: a direction ``u``
    counts as CBD-covered if the particle's coating patch or a CBD web grain
    covers the surface point ``c + r(u) u``.
    """

    def __init__(self, particle, coat: SphericalField, coat_threshold, web_centers, web_radii,
                 presence, q_on_cbd, q_elsewhere, thickness: SphericalField, mean, log_sigma):
        self.particle = particle
        self.coat, self.coat_threshold = coat, float(coat_threshold)
        self.web_centers = np.ascontiguousarray(web_centers, dtype=np.float64)
        self.web_radii = np.ascontiguousarray(web_radii, dtype=np.float64)
        self.presence, self.q_on_cbd, self.q_elsewhere = presence, float(q_on_cbd), float(q_elsewhere)
        self.thick, self.mean, self.log_sigma = thickness, float(mean), float(log_sigma)

    def max_thickness(self) -> float:
        return self.mean * math.exp(self.log_sigma * self.thick.max - 0.5 * self.log_sigma**2)

    def pristine_cbd(self, u):
        covered = self.coat(u) >= self.coat_threshold
        if len(self.web_radii):
            p = self.particle.radius_at(u)[:, None] * u  # relative to the particle center
            covered |= points_in_spheres(p, self.web_centers - self.particle.center, self.web_radii, threads=1)
        return covered

    def __call__(self, u):
        g = self.presence(u)
        present = g >= max(self.q_on_cbd, self.q_elsewhere)
        undecided = np.flatnonzero(~present & (g >= min(self.q_on_cbd, self.q_elsewhere)))
        if len(undecided):  # only here does the pristine CBD matter
            q = np.where(self.pristine_cbd(u[undecided]), self.q_on_cbd, self.q_elsewhere)
            present[undecided] = g[undecided] >= q
        t = np.zeros(len(u))
        idx = np.flatnonzero(present)
        if len(idx):
            t[idx] = self.mean * np.exp(self.log_sigma * self.thick(u[idx]) - 0.5 * self.log_sigma**2)
        return t


@dataclass
class _Tracker:
    """Membership of the Sobol points in the placed objects."""

    points: np.ndarray
    tree: cKDTree

    def members(self, contains, center, radius) -> np.ndarray:
        idx = np.asarray(self.tree.query_ball_point(center, radius), dtype=np.intp)
        if len(idx) == 0:
            return idx
        return idx[contains(self.points[idx])]


def _random_unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    v = rng.normal(size=(3,) if n is None else (n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _weighted_threshold(values: np.ndarray, weights: np.ndarray, share: float) -> float:
    """Threshold ``q`` such that ``values >= q`` holds on ``share`` of the total weight."""
    if share <= 0 or len(values) == 0:
        return math.inf
    if share >= 1:
        return -math.inf
    order = np.argsort(-values, kind="stable")
    cum = np.cumsum(weights[order])
    k = int(np.searchsorted(cum, share * cum[-1]))
    return float(values[order][min(k, len(values) - 1)])


def _size_scale(extent: np.ndarray, morph: Morphology) -> float:
    if morph.size_scale != "auto":
        return float(morph.size_scale)
    return min(1.0, float(extent.min()) / (morph.particles_across * morph.siox_d50))


def build_geometry(extent, comp: Composition, morph: Morphology, *, seed: int, cycled: bool, progress=None):
    """Place SiOx particles, graphite flakes, the CBD (web + coatings) and the SEI.

    Returns
    -------
    geometry : Geometry
    info : dict
        Scales, counts, targets and the Sobol estimates of the fractions.
    """
    extent = np.asarray(extent, dtype=np.float64)
    report = progress or (lambda f, m: None)
    ss = np.random.SeedSequence(seed)
    r_qmc, r_si, r_gr, r_cbd, r_coat, r_sei = (np.random.default_rng(s) for s in ss.spawn(6))
    targets = comp.volume_fractions()
    scale = _size_scale(extent, morph)
    box_volume = float(np.prod(extent))
    L = float(extent.min())

    sobol = qmc.Sobol(d=3, scramble=True, seed=r_qmc)
    pts = sobol.random_base2(_QMC_POINTS_LOG2) * extent
    tracker = _Tracker(pts, cKDTree(pts))
    geo = Geometry(extent, cycled=cycled)
    info = {"size_scale": scale, "targets": {p.name.lower(): v for p, v in targets.items()}}

    # -- silicon -------------------------------------------------------------------
    report(0.0, "placing SiOx particles")
    wall = morph.border_margin
    r_med = 0.5 * morph.siox_d50 * scale
    r_min = 0.4 * r_med
    rough = morph.siox_roughness
    if L < 2.0 * (r_min * math.exp(4 * rough) + wall):
        raise ValueError(
            f"shape * voxel_size: the volume ({L * 1e6:.3g} um across) is too small for SiOx particles of "
            f"radius {r_min * 1e6:.3g} um plus a {wall * 1e9:.0f} nm border margin; use a larger volume or "
            "size_scale"
        )
    si_occ = np.zeros(len(pts), dtype=bool)
    lo_ov, hi_ov = morph.contact_overlap
    target = targets[Phase.SILICON]
    r_next = None
    while True:
        need = target - si_occ.mean()
        if need * box_volume < 0.5 * (4.0 / 3.0) * math.pi * r_min**3:
            break
        r = r_next or float(np.clip(r_med * math.exp(morph.siox_size_sigma * r_si.normal()), r_min, 2.5 * r_med))
        r_next = None
        if (4.0 / 3.0) * math.pi * r**3 > need * box_volume:
            r = max(r_min, (need * box_volume * 3.0 / (4.0 * math.pi)) ** (1.0 / 3.0))
        field = SphericalField(r_si, morph.field_terms, morph.field_wavenumber)
        placed = None
        for _ in range(400):
            if geo.silicon and r_si.random() < morph.contact_probability:
                k = int(r_si.integers(len(geo.silicon)))
                other = geo.silicon[k]
                depth = r_si.uniform(lo_ov, hi_ov) * min(r, other.radius)
                center = other.center + _random_unit(r_si) * (other.radius + r - depth)
            else:
                reach = r * math.exp(rough * field.max) + wall
                center = r_si.uniform(reach, extent - reach) if np.all(extent > 2 * reach) else None
                if center is None:
                    break
            cand = StarParticle(center, r, field, rough)
            if np.any(center - cand.r_max - wall < 0) or np.any(center + cand.r_max + wall > extent):
                continue
            ok = True
            for other in geo.silicon:
                depth = cand.radius + other.radius - float(np.linalg.norm(center - other.center))
                if depth > hi_ov * min(cand.radius, other.radius):
                    ok = False
                    break
            if ok:
                placed = cand
                break
        if placed is None:
            if r <= r_min * 1.0001:
                logger.warning("could not place more SiOx particles (fraction %.4f of %.4f)", si_occ.mean(), target)
                break
            r_next = max(r_min, 0.85 * r)
            continue
        geo.silicon.append(placed)
        si_occ[tracker.members(placed.contains, placed.center, placed.r_max)] = True
    geo.refresh()
    if not geo.silicon:
        raise ValueError("shape * voxel_size: no SiOx particle fits in the volume")

    # -- graphite ------------------------------------------------------------------
    report(0.15, "placing graphite flakes")
    gr_occ = np.zeros(len(pts), dtype=bool)
    d_med = min(morph.graphite_d50 * scale, morph.graphite_max_fraction_of_box * L)
    info["graphite_d50_m"] = d_med
    info["siox_d50_m"] = 2 * r_med
    target = targets[Phase.GRAPHITE]
    tilt_sigma = math.radians(morph.graphite_tilt_deg)
    si_centers = np.array([p.center for p in geo.silicon])
    si_lo, si_hi = geo.si_core_lo, geo.si_core_hi
    si_pts, si_w = zip(*[(s[0], s[2]) for s in (p.surface(1024) for p in geo.silicon)])
    size_factor = 1.0
    tol = 1e-3
    failures = 0
    while target - np.mean(gr_occ & ~si_occ) > tol:
        dia = float(np.clip(d_med * math.exp(morph.graphite_size_sigma * r_gr.normal()), 0.3 * d_med, L))
        dia *= size_factor
        semi = np.array([0.5 * dia / morph.graphite_aspect, 0.5 * dia * r_gr.uniform(0.8, 1.0), 0.5 * dia])
        theta = abs(r_gr.normal()) * tilt_sigma
        phi = r_gr.uniform(0, 2 * math.pi)
        normal = np.array([math.cos(theta), math.sin(theta) * math.sin(phi), math.sin(theta) * math.cos(phi)])
        v = _random_unit(r_gr)
        a1 = v - normal * (v @ normal)
        a1 /= np.linalg.norm(a1)
        rot = np.stack([normal, a1, np.cross(normal, a1)], axis=1)
        flake = None
        for _ in range(300):
            cand = Flake(r_gr.uniform(0, extent), rot, semi)
            if np.any(cand.approx_distance(si_centers) < 0):
                continue
            near = _overlapping(si_lo, si_hi, cand.center - cand.half_extent, cand.center + cand.half_extent)
            if any(np.dot(si_w[k], cand.contains(si_pts[k])) > morph.graphite_contact * si_w[k].sum()
                   for k in near):
                continue
            if any(f.contains(cand.center[None])[0] or cand.contains(f.center[None])[0] for f in geo.flakes):
                continue
            flake = cand
            break
        if flake is None:
            failures += 1
            size_factor *= 0.85
            if failures > 12:
                logger.warning("could not place more graphite (fraction %.4f of %.4f)",
                               np.mean(gr_occ & ~si_occ), target)
                break
            continue
        new = tracker.members(flake.contains, flake.center, float(semi.max()))
        trial = gr_occ.copy()
        trial[new] = True
        if np.mean(trial & ~si_occ) > target + tol:
            lo, hi = 0.3, 1.0  # shrink the last flake to land on the target
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                f = flake.scaled(mid)
                trial = gr_occ.copy()
                trial[tracker.members(f.contains, f.center, float(f.semi_axes.max()))] = True
                if np.mean(trial & ~si_occ) > target:
                    hi = mid
                else:
                    lo = mid
            flake = flake.scaled(lo)
            trial = gr_occ.copy()
            trial[tracker.members(flake.contains, flake.center, float(flake.semi_axes.max()))] = True
        geo.flakes.append(flake)
        gr_occ = trial
    geo.refresh()
    solid = si_occ | gr_occ

    # -- CBD web -------------------------------------------------------------------
    report(0.3, "growing the carbon-black/binder domain")
    target = targets[Phase.CBD]
    h_c = morph.cbd_coating_thickness
    coat_estimate = sum(4 * math.pi * p.radius**2 for p in geo.silicon) * morph.cbd_coverage * h_c / box_volume
    web_target = max(0.0, target - 0.8 * coat_estimate)
    cover = np.zeros(len(pts), dtype=np.int32)
    centers: list[np.ndarray] = []
    radii: list[np.ndarray] = []
    r_blob = morph.cbd_blob_radius

    def add_blobs(c, rr):
        for members in tracker.tree.query_ball_point(c, rr):
            cover[np.asarray(members, dtype=np.intp)] += 1
        centers.append(c)
        radii.append(rr)

    def cbd_fraction(coat_occ=None):
        occ = cover > 0 if coat_occ is None else (cover > 0) | coat_occ
        return float(np.mean(occ & ~solid))

    def candidates(n, away_from_silicon=False):
        c = r_cbd.uniform(0, 1, size=(n, 3)) * extent
        ph, _ = geo.classify(c, cbd=False)
        c = c[ph == Phase.PORE]
        rr = np.clip(r_blob * np.exp(morph.cbd_blob_sigma * r_cbd.normal(size=len(c))), 0.4 * r_blob, 3 * r_blob)
        d = np.sort(geo.solid_distances(c), axis=1)
        d2 = d[:, 1] if d.shape[1] > 1 else np.full(len(c), math.inf)
        p = np.maximum(np.exp(-np.maximum(d2, 0.0) / morph.cbd_neck_length), 0.02)
        keep = r_cbd.random(len(c)) < p
        if away_from_silicon and geo.silicon:
            dsi = np.stack([s.approx_distance(c) for s in geo.silicon], axis=1).min(axis=1)
            keep &= dsi > rr + h_c + 2 * r_blob
        return c[keep], rr[keep]

    def grow_web(goal, coat_occ=None, away_from_silicon=False):
        stalls = 0
        while cbd_fraction(coat_occ) < goal and stalls < 50:
            c, rr = candidates(8192, away_from_silicon)
            if len(c) == 0:
                stalls += 1
                continue
            for s in range(0, len(c), 16):
                add_blobs(c[s : s + 16], rr[s : s + 16])
                if cbd_fraction(coat_occ) >= goal:
                    return

    grow_web(web_target)
    geo.blob_centers = np.concatenate(centers) if centers else np.zeros((0, 3))
    geo.blob_radii = np.concatenate(radii) if radii else np.zeros(0)
    geo.refresh()

    # -- CBD coatings on the silicon ------------------------------------------------
    report(0.5, "coating SiOx particles with CBD")
    lite = []
    coat_occ = np.zeros(len(pts), dtype=bool)
    for j, particle in enumerate(geo.silicon):
        p, n, w, u = particle.surface(_LITE_SAMPLES)
        _, pid_in = geo.classify(p - SURFACE_EPS * n, cbd=False)
        own = pid_in == j + 1
        ph_out, _ = geo.classify(p + SURFACE_EPS * n)
        contact = own & np.isin(ph_out, (Phase.SILICON, Phase.GRAPHITE))
        web = own & (ph_out == Phase.CBD)
        coat_field = SphericalField(r_coat, morph.field_terms, morph.field_wavenumber)
        goal = float(np.clip(morph.cbd_coverage + morph.coverage_spread * r_coat.normal(), 0.02, 0.98))
        total = w[own].sum()
        cand = own & ~contact & ~web
        extra = (goal * total - w[web].sum()) / max(w[cand].sum(), 1e-300)
        q = _weighted_threshold(coat_field(u[cand]), w[cand], extra)
        geo.coatings[j] = Shell(particle, _PatchThickness(coat_field, q, h_c), h_c)
        lite.append((p, n, w, u, own, contact, web, coat_field, q))
        shell = geo.coatings[j]
        idx = np.asarray(tracker.tree.query_ball_point(particle.center, particle.r_max + h_c), dtype=np.intp)
        if len(idx):
            uu, rho = particle.polar(pts[idx])
            coat_occ[idx[shell.contains_polar(uu, rho, particle.radius_at(uu))]] = True
    geo.refresh()

    # top up or trim the web (away from the silicon) to land on the CBD fraction
    n_core = sum(len(c) for c in centers)
    grow_web(target, coat_occ, away_from_silicon=True)
    all_c = np.concatenate(centers) if centers else np.zeros((0, 3))
    all_r = np.concatenate(radii) if radii else np.zeros(0)
    keep = np.ones(len(all_c), dtype=bool)
    if cbd_fraction(coat_occ) > target + tol and geo.silicon and len(all_c):
        dsi = np.stack([s.approx_distance(all_c) for s in geo.silicon], axis=1).min(axis=1)
        removable = np.flatnonzero(dsi > all_r + h_c + 2 * r_blob)[::-1]
        members = tracker.tree.query_ball_point(all_c[removable], all_r[removable])
        for i, m in zip(removable, members):
            if cbd_fraction(coat_occ) <= target:
                break
            cover[np.asarray(m, dtype=np.intp)] -= 1
            keep[i] = False
    geo.blob_centers, geo.blob_radii = all_c[keep], all_r[keep]
    info["n_blobs"] = int(keep.sum())
    info["n_blobs_first_pass"] = n_core
    geo.refresh()

    # -- SEI (drawn always so that pristine and cycled share every other object) -----
    report(0.6, "growing SEI" if cycled else "drawing SEI fields")
    lo_s, hi_s = morph.sei_relative_std
    for j, particle in enumerate(geo.silicon):
        p, n, w, u, own, contact, _, coat_field, q = lite[j]
        d_web = particle.approx_distance(geo.blob_centers) if len(geo.blob_radii) else np.zeros(0)
        near = d_web <= 1.5 * geo.blob_radii + 2 * SURFACE_EPS
        presence = SphericalField(r_sei, morph.field_terms, morph.field_wavenumber)
        thick = SphericalField(r_sei, morph.field_terms, morph.field_wavenumber)
        mean = morph.sei_thickness_median * math.exp(morph.sei_thickness_log_sigma * r_sei.normal())
        rel = r_sei.uniform(lo_s, hi_s)
        sei = _SEIThickness(particle, coat_field, q, geo.blob_centers[near], geo.blob_radii[near],
                            presence, 0.0, 0.0, thick, mean, math.sqrt(math.log1p(rel**2)))
        cbd0 = own & ~contact & sei.pristine_cbd(u)
        free0 = own & ~contact & ~cbd0
        total = w[own].sum()
        k = w[contact].sum() / total
        c0, f0 = w[cbd0].sum() / total, w[free0].sum() / total
        s_goal = float(np.clip(morph.sei_coverage + morph.coverage_spread * r_sei.normal(), 0.0, 1.0))
        c_goal = float(np.clip(morph.sei_cbd_coverage + morph.coverage_spread * r_sei.normal(), 0.0, 1.0))
        shrink = min(1.0, (1.0 - k) / max(s_goal + c_goal, 1e-12))
        s_goal, c_goal = s_goal * shrink, c_goal * shrink
        pore_goal = max(0.0, 1.0 - k - s_goal - c_goal)
        # SEI on a share of the pristine CBD (pushing it away) and of the free surface
        sei.q_on_cbd = _weighted_threshold(presence(u[cbd0]), w[cbd0], 1.0 - c_goal / c0 if c0 > 0 else 0.0)
        sei.q_elsewhere = _weighted_threshold(presence(u[free0]), w[free0], 1.0 - pore_goal / f0 if f0 > 0 else 1.0)
        geo.seis[j] = Shell(particle, sei, sei.max_thickness())
    geo.refresh()

    info.update(
        n_silicon=len(geo.silicon),
        n_flakes=len(geo.flakes),
        sobol_fractions={
            "silicon": float(si_occ.mean()),
            "graphite": float(np.mean(gr_occ & ~si_occ)),
            "cbd": cbd_fraction(coat_occ),
        },
    )
    return geo, info
