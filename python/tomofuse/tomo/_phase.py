"""Post-processing of ptychographic phase projections: constant and linear phase removal."""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["remove_phase_ramp"]


def remove_phase_ramp(phase: np.ndarray, *, mask: Optional[np.ndarray] = None, wrap: bool = False,
                      return_ramps: bool = False):
    """Remove the constant and linear phase of each projection.

    Ptychography determines the phase only up to a constant and a linear ramp
    per projection (Müller et al., Experimental; Guizar-Sicairos et al., Opt.
    Express 19, 21345 (2011)).  The ramp is estimated on a reference region
    (air around the sample, or the whole frame) from the phase *differences*
    of ``exp(i phase)`` between neighboring pixels, ``slope = arg sum
    e^{i(phi(r+1) - phi(r))}``, so wrapped phase needs no unwrapping; the
    constant is the circular mean of the de-ramped phase there.

    Parameters
    ----------
    phase : (A, rows, cols) or (rows, cols) ndarray
        Phase in radians (wrapped or not).
    mask : (rows, cols) or (A, rows, cols) bool ndarray, optional
        True on the reference region (default: the whole frame).
    wrap : bool
        Wrap the result into (-pi, pi].
    return_ramps : bool
        Also return the removed parameters.

    Returns
    -------
    corrected : ndarray
        Same shape as ``phase``, float32 (float64 kept).
    ramps : (A, 3) ndarray
        ``(constant, slope_row, slope_col)`` in rad and rad/pixel; only if
        ``return_ramps``.  The removed phase is
        ``constant + slope_row * row + slope_col * col``.
    """
    if not isinstance(phase, np.ndarray):
        raise TypeError(f"phase must be a numpy.ndarray, got {type(phase).__name__}")
    single = phase.ndim == 2
    p = phase[None] if single else phase
    if p.ndim != 3 or min(p.shape) == 0:
        raise ValueError(f"phase must be (rows, cols) or (A, rows, cols), got shape {phase.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise TypeError(f"phase must be a real floating-point array, got dtype {p.dtype}")
    if not np.all(np.isfinite(p)):
        raise ValueError("phase must be finite (found NaN or inf)")
    if p.shape[1] < 2 or p.shape[2] < 2:
        raise ValueError(f"phase frames must be at least 2 x 2 pixels, got {p.shape[1:]}")
    if mask is None:
        m = np.ones(p.shape, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise TypeError(f"mask must be a bool array, got dtype {m.dtype}")
        if m.shape == p.shape[1:]:
            m = np.broadcast_to(m, p.shape)
        elif m.shape != p.shape:
            raise ValueError(f"mask must have shape {p.shape[1:]} or {p.shape}, got {m.shape}")
    pairs_r = m[:, 1:, :] & m[:, :-1, :]
    pairs_c = m[:, :, 1:] & m[:, :, :-1]
    if not (pairs_r.any(axis=(1, 2)).all() and pairs_c.any(axis=(1, 2)).all()):
        raise ValueError("mask must contain neighboring pixels along both axes in every projection")
    x = p.astype(np.float64)
    z = np.exp(1j * x)
    slope_r = np.angle(np.sum(np.where(pairs_r, z[:, 1:, :] * np.conj(z[:, :-1, :]), 0), axis=(1, 2)))
    slope_c = np.angle(np.sum(np.where(pairs_c, z[:, :, 1:] * np.conj(z[:, :, :-1]), 0), axis=(1, 2)))
    rows = np.arange(p.shape[1], dtype=np.float64)[None, :, None]
    cols = np.arange(p.shape[2], dtype=np.float64)[None, None, :]
    deramped = x - slope_r[:, None, None] * rows - slope_c[:, None, None] * cols
    constant = np.angle(np.sum(np.where(m, np.exp(1j * deramped), 0), axis=(1, 2)))
    out = deramped - constant[:, None, None]
    if wrap:
        out = np.angle(np.exp(1j * out))
    out = out.astype(np.float64 if phase.dtype == np.float64 else np.float32)
    if single:
        out = out[0]
    if return_ramps:
        return out, np.stack([constant, slope_r, slope_c], axis=1)
    return out
