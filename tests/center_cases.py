"""A family of simulated parallel-beam scans with rings, for ``find_center`` and ``remove_rings``.

The truth is built here, in closed form (``analytic_sinograms``), not by tomofuse's
projector: each member is a few detector rows (slices) of a sample made of a soft
container (a smooth ellipse) filled with hard particles, measured over 179-181 or 360
degrees with the rotation axis anywhere within +-40 % of the detector half-width from the
detector center, by a detector whose columns carry the defects that make rings:

- narrow full stripes (1-3 columns, a gain error between the scan and the flat field),
- wide stripes (10-80 columns, a smooth gain profile: a scintillator or optics defect),
- partial stripes (a column that changes gain during part of the scan),
- unresponsive columns (a pixel that reads the same value whatever the sample),

with Poisson noise of 200-5000 photons per pixel in the flat field (low SNR), applied to the
transmission before ``-log``.  Each member also returns the same scan without detector
defects (same noise) and without noise, for the ring error of ``remove_rings``.

``case(seed)`` draws one member; ``family(n, seed)`` a list of them.
"""

from __future__ import annotations

import math

import numpy as np

import analytic_sinograms as asg

WIDTHS = (512, 768, 1024, 1260, 1536, 2048)
RANGES_DEG = (179.0, 179.5, 180.0, 181.0, 360.0)


def _angles(rng, range_deg: float, n: int) -> np.ndarray:
    start = rng.uniform(-math.pi, math.pi)
    if range_deg == 179.5:  # the half-turn without its end point: [0, 180) in n steps
        return start + np.linspace(0, math.pi, n, endpoint=False)
    if range_deg == 360.0:
        return start + np.linspace(0, 2 * math.pi, n, endpoint=False)
    return start + np.radians(np.linspace(0.0, range_deg, n))  # end points included


def _sample(rng, cols: int, radius: float, n_particles: int):
    """One slice: a container (soft ellipse) and hard particles inside it, around the axis (0, 0)."""
    a = radius * rng.uniform(0.85, 1.0)
    b = a * rng.uniform(0.7, 1.0)
    dx, dy = rng.uniform(-0.05, 0.05, 2) * radius
    scale = 1.0 / radius  # line integrals of order 1 whatever the detector width
    ellipses = [(dx, dy, a, b, rng.uniform(0, math.pi), rng.uniform(0.3, 0.8) * scale)]
    disks = []
    tries = 0
    while len(disks) < n_particles and tries < 50 * n_particles:
        tries += 1
        r = radius * math.exp(rng.uniform(math.log(0.01), math.log(0.08)))
        rho = math.sqrt(rng.uniform(0, 1)) * (0.9 * b - r)
        phi = rng.uniform(0, 2 * math.pi)
        x, y = dx + rho * math.cos(phi), dy + rho * math.sin(phi)
        if rho > 0 and all(math.hypot(x - u, y - v) > r + rr + 1 for u, v, rr, _ in disks):
            disks.append((x, y, r, rng.uniform(0.5, 3.0) * scale))
    return ellipses, disks


def _detector(rng, cols: int, n_angles: int, rows: int, strong: bool):
    """Multiplicative gain error (A, rows, cols) of the scan against the flat field, dead columns."""
    log_gain = np.zeros((n_angles, rows, cols))
    amp = 0.05 if strong else 0.015
    x = np.arange(cols)
    stripes = []
    for _ in range(rng.integers(cols // 100, cols // 25 + 1)):  # narrow full stripes
        w = int(rng.integers(1, 4))
        c = int(rng.integers(0, cols - w))
        log_gain[:, :, c:c + w] += rng.choice([-1, 1]) * amp * rng.uniform(0.1, 1.0)
        stripes.append(("narrow", c, w))
    for _ in range(rng.integers(1, 5)):  # wide stripes: smooth bumps
        w = rng.uniform(10, 80)
        c = rng.uniform(0.1, 0.9) * cols
        profile = np.exp(-0.5 * ((x - c) / (w / 2.355)) ** 2)
        log_gain += rng.choice([-1, 1]) * amp * rng.uniform(0.2, 1.0) * profile
        stripes.append(("wide", int(c), int(w)))
    for _ in range(rng.integers(0, 6)):  # partial stripes
        w = int(rng.integers(1, 4))
        c = int(rng.integers(0, cols - w))
        a0, a1 = sorted(rng.integers(0, n_angles, 2))
        log_gain[a0:a1 + 1, :, c:c + w] += rng.choice([-1, 1]) * amp * rng.uniform(0.3, 1.0)
        stripes.append(("partial", c, w))
    dead = rng.choice(cols, int(rng.integers(0, 4)), replace=False)
    return np.exp(log_gain), dead, stripes


def case(seed: int, *, cols=None, range_deg=None, n_angles=None, rows: int = 3) -> dict:
    """One member of the family, drawn with ``seed`` (optionally with some parameters fixed).

    Returns a dict: ``projections`` (A, rows, cols) float32 line integrals with detector defects
    and noise, ``clean`` the same photons without the
    detector's gain errors and dead columns, ``ideal`` noise-free without defects,
    ``angles`` (A,) radians, ``center`` (the true axis column, ``fbp`` convention), and the
    parameters (``cols``, ``range_deg``, ``photons``, ``strong``, ``stripes``, ``dead``).
    """
    rng = np.random.default_rng(seed)
    cols = int(rng.choice(WIDTHS)) if cols is None else int(cols)
    range_deg = float(rng.choice(RANGES_DEG)) if range_deg is None else float(range_deg)
    if n_angles is None:
        per_turn = int(rng.integers(max(180, cols // 4), max(361, int(0.75 * cols)) + 1))
        n_angles = 2 * per_turn if range_deg == 360.0 else per_turn
    offset = rng.uniform(-0.4, 0.4) * cols / 2
    center = cols / 2 + offset
    fov = min(center, cols - center)  # the largest radius seen at every angle
    radius = fov * rng.uniform(0.55, 0.97)
    photons = math.exp(rng.uniform(math.log(200), math.log(5000)))
    strong = bool(rng.uniform() < 0.5)
    th = _angles(rng, range_deg, n_angles)
    slices = [_sample(rng, cols, radius, int(rng.integers(15, 60))) for _ in range(rows)]
    ideal = asg.projections(th, cols, slices, offset=offset)
    gain, dead, stripes = _detector(rng, cols, n_angles, rows, strong)
    clean_counts = rng.poisson(photons * np.exp(-ideal)).astype(np.float64)
    flat = rng.poisson(photons * 20, size=(rows, cols)) / 20.0  # a flat field averaged over 20 frames
    counts = clean_counts * gain  # the same photons, seen with the scan's gain errors
    for c in dead:  # reads a fixed fraction of the flat whatever the sample
        counts[:, :, c] = rng.uniform(0.3, 1.0) * photons
    floor = 0.5 / photons

    def mu(n):
        return (-np.log(np.maximum(n / flat, floor))).astype(np.float32)

    return dict(projections=mu(counts), clean=mu(clean_counts), ideal=ideal.astype(np.float32),
                angles=th, center=float(center), cols=cols, range_deg=range_deg, n_angles=n_angles,
                photons=photons, strong=strong, stripes=stripes, dead=[int(c) for c in dead], seed=seed)


def family(n: int = 40, seed: int = 2026) -> list[int]:
    """Seeds of ``n`` members (draw each with ``case(seed)``)."""
    return [seed * 1000 + i for i in range(n)]
