"""Closed-form parallel-beam sinograms of disks and ellipses (not produced by tomofuse's projector).

Geometry of ``tomofuse.tomo.project``/``fbp``: at angle theta the detector axis is
(cos theta, sin theta); detector pixel c is centered at u = c + 0.5 - cols/2 - offset
from the rotation axis (``offset`` = axis position - cols/2, in pixels).
"""

from __future__ import annotations

import numpy as np


def _u(cols, offset):
    return np.arange(cols) + 0.5 - cols / 2 - offset


def disk_sinogram(angles, cols, disks, offset=0.0):
    """Hard disks (x0, y0, radius, value): line integral 2 value sqrt(R^2 - t^2)."""
    angles = np.asarray(angles, dtype=np.float64)
    u = _u(cols, offset)
    out = np.zeros((angles.size, cols))
    for x0, y0, r, mu in disks:
        t = u[None, :] - (x0 * np.cos(angles) + y0 * np.sin(angles))[:, None]
        out += 2 * mu * np.sqrt(np.clip(r * r - t * t, 0, None))
    return out


def soft_ellipse_sinogram(angles, cols, ellipses, offset=0.0):
    """Ellipses (x0, y0, a, b, alpha, value) with density value (1 - rho^2), rho the elliptic radius.

    Line integral (4/3) value (a b / w) (1 - t^2 / w^2)^(3/2) with half-width
    w^2 = a^2 cos^2(theta - alpha) + b^2 sin^2(theta - alpha): smooth (C1), so the
    phase of such objects has bounded gradients even when it reaches tens of radians.
    """
    angles = np.asarray(angles, dtype=np.float64)
    u = _u(cols, offset)
    out = np.zeros((angles.size, cols))
    for x0, y0, a, b, alpha, mu in ellipses:
        s = x0 * np.cos(angles) + y0 * np.sin(angles)
        w = np.sqrt((a * np.cos(angles - alpha)) ** 2 + (b * np.sin(angles - alpha)) ** 2)
        t = (u[None, :] - s[:, None]) / w[:, None]
        out += (4.0 / 3.0) * mu * (a * b / w)[:, None] * np.clip(1 - t * t, 0, None) ** 1.5
    return out


def image(n, ellipses=(), disks=(), sub=4):
    """The same objects on an n x n pixel grid (pixel averages from sub x sub samples), (y, x)."""
    g = (np.arange(n * sub) + 0.5) / sub - n / 2
    yy, xx = np.meshgrid(g, g, indexing="ij")
    img = np.zeros_like(xx)
    for x0, y0, a, b, alpha, mu in ellipses:
        dx, dy = xx - x0, yy - y0
        xr = dx * np.cos(alpha) + dy * np.sin(alpha)
        yr = -dx * np.sin(alpha) + dy * np.cos(alpha)
        img += mu * np.clip(1 - (xr / a) ** 2 - (yr / b) ** 2, 0, None)
    for x0, y0, r, mu in disks:
        img += mu * ((xx - x0) ** 2 + (yy - y0) ** 2 <= r * r)
    return img.reshape(n, sub, n, sub).mean(axis=(1, 3))


def projections(angles, cols, slices, offset=0.0):
    """(A, rows, cols) projections, one row per slice given as (ellipses, disks)."""
    return np.stack([soft_ellipse_sinogram(angles, cols, e, offset) + disk_sinogram(angles, cols, d, offset)
                     for e, d in slices], axis=1)
