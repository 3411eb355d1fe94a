"""Exact ground truth of the silicon particle surfaces, from the continuous geometry.

Each particle's surface is sampled with area-weighted quasi-uniform points on
its exact (star-shaped) surface; the phase just outside each sample (0.1 nm
along the normal) gives its coverage class, and the SEI thickness is the
length of the SEI run along the outward normal, found by marching and
bisection in the continuous geometry.  No voxel is involved.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.stats import qmc

from .._phase import Phase
from ._build import SURFACE_EPS
from ._geometry import OUTSIDE, Geometry

__all__ = ["compute_truth", "TRUTH_COLUMNS"]

TRUTH_COLUMNS = (
    "volume_m3",
    "area_m2",
    "free",
    "cbd",
    "contact",
    "sei",
    "sei_mean_m",
    "sei_std_m",
    "touches_border",
)

_STEP = 4e-9  # SEI marching step (m); bisection refines to < 1e-3 nm
_BISECT = 10


def _sei_run_length(geo: Geometry, start: np.ndarray, dirs: np.ndarray, max_len: float) -> np.ndarray:
    """Length of the SEI segment along each ray ``start + s*dirs``, ``s > 0``."""
    n = len(start)
    lo = np.full(n, SURFACE_EPS)
    hi = np.full(n, max_len)
    active = np.ones(n, dtype=bool)
    s = _STEP
    while active.any() and s < max_len:
        idx = np.flatnonzero(active)
        ph, _ = geo.classify(start[idx] + s * dirs[idx], cbd=False)
        out = ph != Phase.SEI
        hi[idx[out]] = s
        lo[idx[~out]] = s
        active[idx[out]] = False
        s += _STEP
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        ph, _ = geo.classify(start + mid[:, None] * dirs, cbd=False)
        inside = ph == Phase.SEI
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return 0.5 * (lo + hi)


def _overlap_volume(geo: Geometry, j: int, seed: int) -> float:
    """Volume of particle ``j``'s star shape claimed by higher-priority particles (m^3)."""
    me = geo.silicon[j]
    higher = [
        k
        for k in range(j)
        if np.linalg.norm(geo.silicon[k].center - me.center) < geo.silicon[k].r_max + me.r_max
    ]
    if not higher:
        return 0.0
    lo = me.center - me.r_max
    hi = me.center + me.r_max
    pts = qmc.Sobol(d=3, scramble=True, seed=seed).random_base2(16) * (hi - lo) + lo
    inside = me.contains(pts)
    claimed = np.zeros(len(pts), dtype=bool)
    for k in higher:
        claimed |= geo.silicon[k].contains(pts)
    return float(np.mean(inside & claimed) * np.prod(hi - lo))


def compute_truth(geo: Geometry, *, samples: int = 131072, thickness_stride: int = 8, seed: int = 0,
                  threads: int = 1, progress=None) -> pd.DataFrame:
    """Per-particle exact surface truth.

    Parameters
    ----------
    geo : Geometry
    samples : int
        Surface samples per particle (>= 1e5 for the stated accuracy).
    thickness_stride : int
        Every ``thickness_stride``-th SEI sample is ray-marched for thickness.
    seed : int
        Seed of the volume-overlap quadrature.
    threads : int
        Particles evaluated concurrently.
    progress : callable, optional
        ``progress(fraction)``.

    Returns
    -------
    pandas.DataFrame
        Indexed by particle id, columns ``TRUTH_COLUMNS``.  Fractions are of the
        particle's surface inside the volume and sum to 1; ``sei_mean_m`` and
        ``sei_std_m`` are area-weighted over the SEI-covered surface (NaN
        without SEI).
    """
    cache: dict[int, tuple] = {}

    def surface(k):
        if k not in cache:
            cache[k] = geo.silicon[k].surface(samples)
        return cache[k]

    max_len = min(2.0 * max([s.max_thickness for s in geo.seis if s is not None] + [_STEP]),
                  float(np.linalg.norm(geo.extent)))
    def one(j):
        particle = geo.silicon[j]
        pid = j + 1
        p, n, w, _ = surface(j)
        _, pid_in = geo.classify(p - SURFACE_EPS * n, cbd=False)
        own = pid_in == pid
        ph_out, pid_out = geo.classify(p + SURFACE_EPS * n)
        own &= pid_out != pid
        area = {
            "free": w[own & (ph_out == Phase.PORE)].sum(),
            "cbd": w[own & (ph_out == Phase.CBD)].sum(),
            "contact": w[own & np.isin(ph_out, (Phase.SILICON, Phase.GRAPHITE))].sum(),
            "sei": w[own & (ph_out == Phase.SEI)].sum(),
        }
        outside_area = w[own & (ph_out == OUTSIDE)].sum()
        # interfaces that a higher-priority particle cuts into this one
        for k in range(j):
            other = geo.silicon[k]
            if np.linalg.norm(other.center - particle.center) >= other.r_max + particle.r_max:
                continue
            pk, nk, wk, _ = surface(k)
            _, pid_k = geo.classify(pk + SURFACE_EPS * nk, cbd=False)
            area["contact"] += wk[pid_k == pid].sum()
        total = sum(area.values())
        sei_mask = own & (ph_out == Phase.SEI)
        sei_idx = np.flatnonzero(sei_mask)[:: max(1, thickness_stride)]
        ray_left_box = False
        if len(sei_idx):
            t = _sei_run_length(geo, p[sei_idx], n[sei_idx], max_len)
            ends = p[sei_idx] + (t + 2 * _STEP)[:, None] * n[sei_idx]
            ray_left_box = bool(np.any((ends < 0) | (ends > geo.extent)))
            ww = w[sei_idx]
            mean = float(np.sum(ww * t) / ww.sum())
            std = float(math.sqrt(np.sum(ww * (t - mean) ** 2) / ww.sum()))
        else:
            mean = std = math.nan
        border = bool(outside_area > 0 or ray_left_box)
        return pid, {
            "volume_m3": particle.volume() - _overlap_volume(geo, j, seed + j),
            "area_m2": float(total),
            **{key: float(v / total) for key, v in area.items()},
            "sei_mean_m": mean,
            "sei_std_m": std,
            "touches_border": border,
        }
    rows = {}
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        for done, (pid, row) in enumerate(pool.map(one, range(len(geo.silicon))), start=1):
            rows[pid] = row
            if progress is not None:
                progress(done / len(geo.silicon))
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(TRUTH_COLUMNS))
    df.index.name = "particle"
    df.index = df.index.astype(np.int32)
    df["touches_border"] = df["touches_border"].astype(bool)
    return df
