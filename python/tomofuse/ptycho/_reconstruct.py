"""Ptychographic reconstruction: difference map then maximum likelihood, resumable from checkpoints.

The engines themselves are in the compiled core (``tomofuse._core.PtychoScan``);
this module checks the input once, prepares the data layout, runs the engine
stages (``_Run._difference_map``, ``_Run._maximum_likelihood``), refines probe modes
and positions, and writes / resumes checkpoints.  The engines' options are the
dataclasses of ``_options.py``.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .. import _core
from .. import _validate as check
from .._memory import check_memory
from .._progress import Progress, ProgressCallback
from ._options import DMOptions, HoldOut, MLOptions, PositionRefinement

__all__ = ["Reconstruction", "reconstruct", "default_object_shape", "defocus_search", "refocus_probe"]

logger = logging.getLogger(__name__)

_ENGINES = ("dm", "ml")
_CHECKPOINT_FORMAT = 1
#: Relative changes of the beam diameter that the defocus search tries (DMOptions.defocus_search).
DEFOCUS_TRIALS = (-0.75, -0.5, -0.25, 0.25, 0.5, 0.75)
#: A refocused initial probe is taken only if its DM error is below (1 - margin) x the given probe's.
DEFOCUS_MARGIN = 0.02
#: DMOptions.defocus_search=None: this many DM iterations per trial when the first DM stage has DEFOCUS_MIN_DM or more.
DEFOCUS_ITERATIONS = 20
DEFOCUS_MIN_DM = 100
#: HoldOut: held-out likelihood evaluated every this many DM or ML iterations; at least this many patterns
#: held out, and at most this share of the scan; alignment rounds of their positions before each evaluation.
HOLDOUT_INTERVAL = 10
HOLDOUT_MIN_PATTERNS = 5
HOLDOUT_MAX_SHARE = 0.05
HOLDOUT_ALIGN_ROUNDS = 10
#: ML's position refinement moves a pattern only when its Gauss-Newton step predicts a decrease of the amplitude
#: misfit above this many times the amplitude noise variance per pixel (the 99 % point of chi-square with 2 degrees
#: of freedom: what fitting two parameters to noise alone exceeds once in a hundred patterns).
POSITION_SIGNIFICANCE = 9.21


def _aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array whose data start on a 64-byte boundary.

    The engines' frame buffers (exit waves, far fields, shifted probes, the DM workspace): the core
    transforms a frame whose alignment differs from that of its FFT plans through an aligned copy, and
    NumPy's large arrays start 16 bytes past a 64-byte boundary (+14 % on a batch of 400^2 transforms).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes == 0:  # (NumPy does not offset the data of an empty slice; nothing to align)
        return np.empty(shape, dtype)
    raw = np.empty(nbytes + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _dm_workspace(scan, work: Optional[np.ndarray]) -> tuple[np.ndarray, bool]:
    """``(workspace, reuse)`` for ``scan.dm_iteration``: ``work`` again if it has this scan's size (``reuse``: the
    core reads its shifted probes only where its key says they are this call's), else a new one."""
    if work is not None and work.size == scan.dm_workspace_bytes:
        return work, True
    return _aligned_empty(scan.dm_workspace_bytes, np.uint8), False


def held_out(count: int, fraction: float) -> Optional[np.ndarray]:
    """Which of ``count`` patterns :class:`HoldOut` ``share=fraction`` sets aside, or None for none.

    ``max(HOLDOUT_MIN_PATTERNS, floor(fraction * count))`` patterns evenly spread in scan order
    (every ``count // held``-th, starting half a period in); none when that would be more than
    ``HOLDOUT_MAX_SHARE`` of the scan.
    """
    if fraction <= 0:
        return None
    held = max(HOLDOUT_MIN_PATTERNS, int(fraction * count))
    if held > HOLDOUT_MAX_SHARE * count:
        return None
    step = count // held
    out = np.zeros(count, bool)
    out[step // 2 + step * np.arange(held)] = True
    return out


@dataclass
class Reconstruction:
    """Result of :func:`reconstruct`.

    Attributes
    ----------
    object : (H, W) ndarray of complex64
        Object transmission; pixels the scan never illuminated keep the
        initial value 1.
    probe : (modes, N, N) ndarray of complex64
        Probe modes on the object grid, centered at ``N // 2``, orthogonal and
        sorted by decreasing power; scaled so that the model intensities are in
        the units of the data (unitary DFT).
    positions_px : (K, 2) ndarray of float64
        Final scan positions ``(y, x)``, object pixels relative to the object
        center (refined when ``refine_positions`` was set).
    errors : list of (str, ndarray)
        Per engine stage, its name and the error after each iteration: for
        ``"dm"`` the Fourier (amplitude) error of the model after the
        iteration's overlap projection, ``sum (|F(P o_k)| - sqrt(I))^2 / sum I``
        over valid pixels (its floor is the Poisson noise, about
        ``#pixels / 4 / sum I``), NaN at the iterations where it was not
        computed (``DMOptions.error_interval``); for ``"ml"`` the objective per valid detector pixel: the Poisson deviance
        (negative log-likelihood minus its minimum) plus the smoothness prior
        (see ``ml_smoothness``). ML stops early, with fewer entries, once two
        iterations in a row find no decrease (converged to float32 precision).
    illumination : (H, W) ndarray of float32
        Summed probe power over the scan, ``sum_k |P|^2`` placed at each
        window; use ``illumination > 0.1 * illumination.max()`` for the
        well-scanned region.
    held_out : (K,) ndarray of bool, optional
        The patterns held out of the engines (:class:`HoldOut`); None when
        none were.
    validation : list of (E, 3) ndarray
        Per engine stage (as ``errors``), rows ``(iteration, held-out
        patterns' mean Poisson deviance per valid detector pixel, 1 if the
        rule took that iterate as the stage's result candidate else 0)``; the
        result of a stage is its last candidate.  Empty for a DM stage
        followed by another (it hands on its last iterate) and without
        held-out patterns.
    """

    object: np.ndarray
    probe: np.ndarray
    positions_px: np.ndarray
    errors: list = field(default_factory=list)
    illumination: Optional[np.ndarray] = None
    held_out: Optional[np.ndarray] = None
    validation: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------- checks


def _engines(engines) -> list[tuple[str, int]]:
    try:
        stages = [tuple(e) for e in engines]
    except TypeError:
        raise TypeError(f"engines must be a sequence of (name, iterations) pairs, got {engines!r}") from None
    if not stages:
        raise ValueError("engines must name at least one stage, e.g. (('dm', 100), ('ml', 100))")
    out = []
    for stage in stages:
        if len(stage) != 2 or stage[0] not in _ENGINES:
            raise ValueError(f"engines: each stage is (name, iterations) with name in {_ENGINES}, got {stage!r}")
        out.append((str(stage[0]), check.integer(stage[1], f"engines: iterations of {stage[0]!r}", minimum=0)))
    return out


def default_object_shape(positions_px, n: int, *, margin: int = 2) -> tuple[int, int]:
    """Smallest even object shape whose windows (with sub-pixel interpolation) hold every position.

    Parameters
    ----------
    positions_px : (K, 2) array_like
        Probe-center positions ``(y, x)``, object pixels relative to the object center.
    n : int
        Pattern (probe) side, pixels.
    margin : int
        Extra pixels on every side.

    Returns
    -------
    (int, int)
        ``(H, W)``.
    """
    pos = np.asarray(positions_px, dtype=np.float64)
    fl = np.floor(pos)
    shape = []
    for a in range(2):
        need = max(n // 2 - fl[:, a].min(), fl[:, a].max() - n // 2 + n + 1) + margin
        shape.append(int(2 * need))
    return shape[0], shape[1]


def _check_inputs(intensities, positions_px, probe, mask):
    if not isinstance(intensities, np.ndarray) or intensities.dtype.kind not in "fiu":
        raise TypeError("intensities must be a real numpy.ndarray (K, N, N) of counts")
    if intensities.ndim != 3 or intensities.shape[1] != intensities.shape[2]:
        raise ValueError(f"intensities must have shape (K, N, N), got {intensities.shape}")
    k, n = intensities.shape[0], intensities.shape[1]
    if k == 0 or n == 0:
        raise ValueError(f"intensities must not be empty (empty scan), got shape {intensities.shape}")
    if not np.all(np.isfinite(intensities)):
        raise ValueError("intensities must be finite (found NaN or inf)")
    if intensities.min() < 0:
        raise ValueError(f"intensities must be non-negative counts, found minimum {intensities.min()}")
    try:
        pos = np.array(positions_px, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("positions_px must be a (K, 2) array of (y, x) pixels") from None
    if pos.shape != (k, 2):
        raise ValueError(f"positions_px must have shape (K, 2) = ({k}, 2) to match intensities, got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions_px must be finite")
    if not isinstance(probe, np.ndarray) or probe.dtype.kind not in "fc":
        raise TypeError("probe must be a complex numpy.ndarray (N, N) or (modes, N, N)")
    p = probe[None] if probe.ndim == 2 else probe
    if p.ndim != 3 or p.shape[1:] != (n, n):
        raise ValueError(f"probe must have shape (N, N) or (modes, N, N) with N = {n} (the pattern size), "
                         f"got {probe.shape}")
    if not np.all(np.isfinite(p)) or not np.any(p):
        raise ValueError("probe must be finite and not all zero")
    m = None
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise TypeError(f"mask must be a bool array (True = valid pixel), got dtype {m.dtype}")
        if m.shape != (n, n):
            raise ValueError(f"mask must be a bool (N, N) = ({n}, {n}) array (True = valid pixel), got shape {m.shape}")
        if not m.any():
            raise ValueError("mask marks no detector pixel valid")
    return pos, p, m


# --------------------------------------------------------------------------------------- helpers


def orthogonalize_modes(probe: np.ndarray, *waves: np.ndarray) -> np.ndarray:
    """Orthogonal probe modes sorted by decreasing power (in place), the same unitary mix applied to ``waves``.

    Parameters
    ----------
    probe : (M, N, N) complex ndarray
        Modified in place.
    *waves : (K, M, N, N) complex ndarrays
        Per-mode exit waves, mixed with the same unitary matrix (in place), so
        that the incoherent model ``sum_m |F(P_m o)|^2`` is unchanged.

    Returns
    -------
    (M, M) ndarray
        The unitary matrix ``U`` with ``new = U @ old`` over the mode axis.
    """
    m = probe.shape[0]
    flat = probe.reshape(m, -1).astype(np.complex128)
    gram = flat.conj() @ flat.T
    w, v = np.linalg.eigh(gram)
    order = np.argsort(w)[::-1]
    u = v[:, order].T  # rows: new modes in terms of old
    probe[...] = (u @ flat).reshape(probe.shape).astype(probe.dtype)
    for wv in waves:
        kk = wv.shape[0]
        wv[...] = np.einsum("ij,kjq->kiq", u, wv.reshape(kk, m, -1).astype(np.complex128)) \
            .reshape(wv.shape).astype(wv.dtype)
    return u


def _refine_positions(scan, obj, probe, exit_, positions, *, max_step: float, remove_mean: bool = True,
                      workspace: Optional[np.ndarray] = None, threads: int = 0) -> np.ndarray:
    """Least-squares position update from the residual between exit waves and ``P o_k``.

    Linearizes the exit wave in the position (``P (o_k + dy d_y o_k + dx d_x o_k)`` for
    the bilinear model, ``(P_k - dy d_y P_k - dx d_x P_k) o_k`` for shifted probes ``P_k``)
    and solves the 2 x 2 normal equations per pattern; the mean shift (a translation of the
    whole object, not observable) is removed (``remove_mean``; not for patterns aligned to an
    object that stays fixed) and steps are clipped to ``max_step``.

    The normal equations come from the core (``PtychoScan.position_equations``: pattern by pattern on
    ``threads``, sums over pixels in double; the same at any thread count); the same equations as
    :func:`_refine_positions_reference`.  ``workspace``: the scan's ``dm_iteration`` workspace as the last
    iteration left it (its shifted probes are used when they are ``probe``'s).
    """
    eq = scan.position_equations(obj, probe, exit_, workspace=workspace, threads=threads)
    return _position_step(positions, *eq.T, max_step=max_step, remove_mean=remove_mean)


def _refine_positions_modulus(scan, intensities, mask, obj, probe, positions, *, max_step: float,
                              noise: Optional[np.ndarray] = None, threads: int = 0) -> np.ndarray:
    """Gauss-Newton position step from the measured intensities (engine layout) and the model's far-field
    amplitudes (``PtychoScan.position_equations_modulus``), the affine part of the steps removed, clipped to
    ``max_step``.  ``noise``: each pattern's amplitude noise variance per pixel (:func:`_amplitude_noise` / valid
    pixels); with it a pattern moves only when its unclipped step predicts a decrease of the misfit above
    ``POSITION_SIGNIFICANCE`` times it (what fitting two parameters to noise alone exceeds once in a hundred)."""
    eq = scan.position_equations_modulus(intensities, mask, obj, probe, threads=threads)
    moved = _position_step(positions, *eq.T, max_step=max_step, remove_mean=False, remove_affine=True)
    if noise is None:
        return moved
    a11, a12, a22, b1, b2 = eq.T
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        det = a11 * a22 - a12 * a12
        gain = (a22 * b1 * b1 - 2.0 * a12 * b1 * b2 + a11 * b2 * b2) / det
    keep = np.isfinite(gain) & (det > 0) & (gain > POSITION_SIGNIFICANCE * noise)
    return np.where(keep[:, None], moved, positions)


def _amplitude_noise(data: np.ndarray, valid: Optional[np.ndarray]) -> np.ndarray:
    """(K,) float64: each pattern's expected squared amplitude error from Poisson noise, the sum over valid pixels
    of min(1/4, I) (the variance of sqrt(I) is 1/4 for counts >> 1 and below I for small counts)."""
    noise = np.minimum(data, np.float32(0.25))
    if valid is not None:
        noise *= valid[None]
    return noise.sum(axis=(1, 2), dtype=np.float64)


def _position_equations_modulus_reference(scan, intensities, mask, obj, probe) -> np.ndarray:
    """``PtychoScan.position_equations_modulus`` written out over whole arrays in double (slow, obvious; for the
    tests)."""
    o = scan.object_windows(obj).astype(np.complex128)
    seen = scan.shifted_probes(probe)[scan.bins].astype(np.complex128)  # (K, modes, N, N)
    gy, gx = np.gradient(o, axis=(1, 2))
    far = np.fft.fft2(seen * o[:, None], norm="ortho")
    amp = np.sqrt((np.abs(far) ** 2).sum(axis=1))
    lit = amp > 0
    if mask is not None:
        lit &= np.asarray(mask, bool)[None]
    safe = np.where(lit, amp, 1.0)
    jy = np.where(lit, np.real(np.conj(far) * np.fft.fft2(seen * gy[:, None], norm="ortho")).sum(axis=1) / safe, 0)
    jx = np.where(lit, np.real(np.conj(far) * np.fft.fft2(seen * gx[:, None], norm="ortho")).sum(axis=1) / safe, 0)
    r = np.where(lit, np.sqrt(np.maximum(intensities, 0.0)) - amp, 0.0)
    return np.stack([(jy * jy).sum(axis=(1, 2)), (jy * jx).sum(axis=(1, 2)), (jx * jx).sum(axis=(1, 2)),
                     (jy * r).sum(axis=(1, 2)), (jx * r).sum(axis=(1, 2))], axis=1)


def _refine_positions_reference(scan, obj, probe, exit_, positions, *, max_step: float) -> np.ndarray:
    """:func:`_refine_positions` written out over whole arrays (slow, obvious; for the tests)."""
    o = scan.object_windows(obj)
    seen = scan.shifted_probes(probe)[scan.bins]  # (K, modes, N, N): the probe each pattern sees
    phi = seen * o[:, None]
    r = exit_ - phi
    if scan.subpixel_steps > 0:
        gy, gx = np.gradient(seen, axis=(2, 3))
        py = -gy * o[:, None]
        px = -gx * o[:, None]
    else:
        gy, gx = np.gradient(o, axis=(1, 2))
        py = seen * gy[:, None]
        px = seen * gx[:, None]

    def dot(a, b):
        return np.real(np.sum(np.conj(a).astype(np.complex128) * b, axis=(1, 2, 3)))

    return _position_step(positions, dot(py, py), dot(py, px), dot(px, px), dot(py, r), dot(px, r),
                          max_step=max_step)


def _position_step(positions, a11, a12, a22, b1, b2, *, max_step: float, remove_mean: bool = True,
                   remove_affine: bool = False) -> np.ndarray:
    """Positions moved by the solutions of the per-pattern 2 x 2 normal equations, mean (or the least-squares
    affine map of the positions, ``remove_affine``) removed, clipped."""
    with np.errstate(over="ignore", invalid="ignore"):
        det = a11 * a22 - a12 * a12
        ok = np.isfinite(det) & np.isfinite(b1) & np.isfinite(b2) & (det > 1e-12 * np.maximum(a11 * a22, 1e-30))
        dy = np.where(ok, (a22 * b1 - a12 * b2) / np.where(ok, det, 1), 0.0)
        dx = np.where(ok, (a11 * b2 - a12 * b1) / np.where(ok, det, 1), 0.0)
    step = np.stack([dy, dx], axis=1)
    step[~np.all(np.isfinite(step), axis=1)] = 0.0  # a diverged exit wave does not move its position
    if remove_affine:
        design = np.column_stack([positions - positions.mean(axis=0), np.ones(len(positions))])
        coef, *_ = np.linalg.lstsq(design, step, rcond=None)
        step -= design @ coef
    elif remove_mean:
        step -= step.mean(axis=0)
    step = np.clip(step, -max_step, max_step)
    return positions + step


def _refocused(probe: np.ndarray, fractions) -> list:
    """The probe modes refocused so that the beam diameter changes by each fraction, ``[(fraction, probe)]``.

    Fresnel propagation is a quadratic phase ``exp(-i pi a |u|^2)`` on the pupil (``u`` in cycles per
    pixel); it widens a beam by ``2 a u_p`` pixels, ``u_p`` the pupil radius (the radius holding 95 % of
    the probe's spectral power).  The beam diameter ``d`` is ``2 sqrt(2)`` times the rms radius of the
    probe's intensity (exact for a uniform disc); ``a = fraction d / (2 u_p)``.  Either sign of ``a``
    moves the sample further from or closer to the focus, whichever side it is on.
    """
    n = probe.shape[-1]
    spec = np.fft.fft2(np.fft.ifftshift(probe.astype(np.complex128), axes=(-2, -1)))
    u = np.fft.fftfreq(n)
    u2 = u[:, None] ** 2 + u[None, :] ** 2
    power = np.sum(np.abs(spec) ** 2, axis=0)
    order = np.argsort(u2, axis=None, kind="stable")
    cum = np.cumsum(power.ravel()[order])
    u_pupil = math.sqrt(float(u2.ravel()[order][np.searchsorted(cum, 0.95 * cum[-1])]))
    q = np.sum(np.abs(probe.astype(np.complex128)) ** 2, axis=0)
    y, x = np.mgrid[:n, :n]
    cy, cx = float((q * y).sum() / q.sum()), float((q * x).sum() / q.sum())
    d = 2.0 * math.sqrt(2.0) * math.sqrt(float((q * ((y - cy) ** 2 + (x - cx) ** 2)).sum() / q.sum()))
    out = []
    for f in fractions:
        a = f * d / (2.0 * max(u_pupil, 1.0 / n))
        p = np.fft.fftshift(np.fft.ifft2(spec * np.exp(-1j * math.pi * a * u2)), axes=(-2, -1))
        out.append((float(f), p.astype(np.complex64)))
    return out


def refocus_probe(probe: np.ndarray, fraction: float) -> np.ndarray:
    """A probe propagated so that its beam diameter changes by ``fraction`` (the defocus search's step).

    Fresnel propagation as a quadratic phase on the pupil, the same for every mode; the distance is
    chosen from the probe's own beam diameter and pupil radius (``DMOptions.defocus_search``).

    Parameters
    ----------
    probe : (N, N) or (M, N, N) complex ndarray
        Probe (modes), object pixels.
    fraction : float
        Relative change of the beam diameter (e.g. -0.25 narrows a beam by a quarter).

    Returns
    -------
    (N, N) or (M, N, N) ndarray of complex64
        The refocused probe, same shape and total power.
    """
    p = np.asarray(probe)
    return _refocused(p.reshape((-1,) + p.shape[-2:]), [float(fraction)])[0][1].reshape(p.shape)


def defocus_search(intensities: np.ndarray, positions_px, probe: np.ndarray, **options) -> float:
    """The defocus search of :func:`reconstruct` alone: which refocused initial probe it would start from.

    ``reconstruct(..., probe=refocus_probe(probe, f), dm=replace(dm, defocus_search=0))`` then starts
    from the probe the searching call would (up to rounding for one probe mode; for several, the extra
    modes are grown from the refocused first one). :func:`reconstruct_series` uses it to search once
    per series.

    Parameters
    ----------
    intensities, positions_px, probe
        As for :func:`reconstruct`.
    **options
        Keyword options of :func:`reconstruct` (``engines``, ``dm``, ``object_shape``, ...);
        ``checkpoint`` and ``callback`` are ignored.

    Returns
    -------
    float
        Relative change of the beam diameter of the chosen start (0.0: the probe as given, also where
        ``reconstruct`` would not search: ``DMOptions.defocus_search``).
    """
    args = inspect.signature(reconstruct).bind(intensities, positions_px, probe, **options)
    args.apply_defaults()
    kw = dict(args.arguments)
    for name in ("checkpoint", "callback"):
        kw[name] = None
    run = _Run(kw.pop("intensities"), kw.pop("positions_px"), kw.pop("probe"), **kw)
    if not run._search_iterations():
        return 0.0
    run._search_defocus()
    return float(run.defocus_fraction)


def _hash_inputs(intensities, positions, probe, mask, params) -> str:
    import hashlib
    import json

    from ..io import array_sha256

    parts = [array_sha256(a) for a in (intensities, positions, probe) + (() if mask is None else (mask,))]
    parts.append(json.dumps(params, sort_keys=True))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass
class _MLState:
    grad_object: np.ndarray
    grad_probe: np.ndarray
    precond_object: np.ndarray
    precond_probe: np.ndarray
    dir_object: np.ndarray
    dir_probe: np.ndarray
    prev_grad_object: np.ndarray
    prev_grad_probe: np.ndarray
    prev_zg: float = 0.0
    nll: float = 0.0
    alpha: float = 0.0

    _ARRAYS = ("dir_object", "dir_probe", "prev_grad_object", "prev_grad_probe")

    @classmethod
    def empty(cls, object_shape, probe_shape):
        c = np.complex64
        return cls(np.zeros(object_shape, c), np.zeros(probe_shape, c), np.zeros(object_shape, np.float32),
                   np.zeros(probe_shape[1:], np.float32), np.zeros(object_shape, c), np.zeros(probe_shape, c),
                   np.zeros(object_shape, c), np.zeros(probe_shape, c))


# ----------------------------------------------------------------------------------- checkpoints


# ML's scalars in a checkpoint: its conjugate-gradient state, the prior's weight, and its position refinement's
# held-out deviance before the last refinement and whether it was turned off
_ML_SCALARS = ("prev_zg", "nll", "alpha", "mu", "positions_deviance", "positions_off")


def _save_checkpoint(path: Path, state: dict) -> None:
    import h5py

    from ..io import atomic_path, provenance, set_h5_attrs

    with atomic_path(path, argument="checkpoint") as tmp:
        with h5py.File(tmp, "w") as f:
            set_h5_attrs(f, provenance(parameters=state["params"], inputs={"scan": state["hash"]},
                                        program="tomofuse.ptycho.reconstruct (checkpoint)"))
            f.attrs["format"] = _CHECKPOINT_FORMAT
            f.attrs["hash"] = state["hash"]
            f.attrs["stage"] = state["stage"]
            f.attrs["iteration"] = state["iteration"]
            f.attrs["done"] = state["done"]
            for key in _ML_SCALARS:
                f.attrs["ml_" + key] = float(state.get("ml_" + key, 0.0))
            for key, value in state["arrays"].items():
                f.create_dataset(key, data=value)
            g = f.create_group("errors")
            for i, (name, errs) in enumerate(state["errors"]):
                d = g.create_dataset(str(i), data=np.asarray(errs, dtype=np.float64))
                d.attrs["engine"] = name


def _load_checkpoint(path: Path, expected_hash: str) -> Optional[dict]:
    import h5py

    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        if int(f.attrs.get("format", -1)) != _CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {path} has an unknown format; remove it to start afresh")
        if str(f.attrs["hash"]) != expected_hash:
            raise ValueError(f"checkpoint {path} belongs to different data or parameters; "
                             "remove it or pass another checkpoint path")
        state = {"stage": int(f.attrs["stage"]), "iteration": int(f.attrs["iteration"]),
                 "done": bool(f.attrs["done"]),
                 "arrays": {k: f[k][()] for k in f.keys() if k != "errors"},
                 "errors": [(str(f["errors"][str(i)].attrs["engine"]), list(f["errors"][str(i)][()]))
                            for i in range(len(f["errors"]))]}
        for key in _ML_SCALARS:
            state["ml_" + key] = float(f.attrs.get("ml_" + key, 0.0))
    return state


# ------------------------------------------------------------------------------------ reconstruct


def reconstruct(intensities: np.ndarray, positions_px, probe: np.ndarray, *,
                object_shape: Optional[Sequence[int]] = None,
                engines=(("dm", 800), ("ml", 800)),
                probe_modes: int = 1,
                subpixel_steps: int = 8,
                mask: Optional[np.ndarray] = None,
                dm: DMOptions = DMOptions(),
                ml: MLOptions = MLOptions(),
                refine_positions: Union[bool, PositionRefinement] = True,
                holdout: Union[bool, HoldOut] = True,
                checkpoint: Optional[str | os.PathLike] = None,
                checkpoint_every: int = 50,
                callback: Optional[ProgressCallback] = None,
                threads: Optional[int] = None,
                seed: int = 0) -> Reconstruction:
    """Reconstruct object and probe from a far-field ptychographic scan.

    Engine stages run in order, each continuing from the previous one:

    - ``"dm"``: difference map (Thibault et al., Ultramicroscopy 109, 338
      (2009)): alternating object / probe overlap updates, then the Fourier
      modulus constraint on ``2 P o_k - psi_k``; options in ``dm``.
    - ``"ml"``: maximum likelihood with a Poisson noise model (Thibault &
      Guizar-Sicairos, New J. Phys. 14, 063004 (2012)): preconditioned
      Polak-Ribiere conjugate gradients with the polynomial line search, step
      halved until the likelihood does not decrease (monotone); options in ``ml``.

    A few patterns (2.5 %, at least 5, in scans of 100 patterns or more) are
    held out of both engines by default (``holdout``); their likelihood
    decides when ML stops and which of its iterates is the result (and which
    of DM's, when DM is the last stage), so that long runs such as the paper's
    800 + 800 do not return an ML iterate fitted to the noise.

    Both run in the compiled core, with OpenMP over patterns and sums in a
    fixed order (results do not depend on ``threads``).  Sub-pixel positions
    are modeled by shifted probes (``subpixel_steps > 0``, the default) or by
    bilinear interpolation of the object (``subpixel_steps=0``).

    Parameters
    ----------
    intensities : (K, N, N) ndarray
        Diffraction patterns (counts) as the detector records them, zero
        frequency at the pattern center (index ``N // 2``).
    positions_px : (K, 2) array_like
        Probe-center positions ``(y, x)`` in object pixels relative to the
        object array's center (index ``H // 2, W // 2``); sub-pixel allowed.
    probe : (N, N) or (M, N, N) complex ndarray
        Initial probe (object pixels, centered at ``N // 2``), e.g.
        :func:`tomofuse.ptycho.focused_probe`. It is rescaled to the data's
        mean total count. Missing modes start as the first mode times low-order
        polynomials (x, y, xy, ...), 5 % of its power each.
    object_shape : (int, int), optional
        Object array shape ``(H, W)``, object pixels; default
        :func:`default_object_shape`.
    engines : sequence of (str, int)
        Stages ``(name, iterations)``, names ``"dm"`` or ``"ml"``.
    probe_modes : int
        Number of mutually incoherent probe modes (mixed state), kept
        orthogonal and sorted by power.
    subpixel_steps : int
        Sub-pixel model. ``B > 0`` (default 8): each pattern's window is the
        whole-pixel crop of the object and the probe is shifted by the
        position's fraction, rounded to ``1/B`` pixel, with a Fourier phase
        ramp (exact for a band-limited probe; at most ``B^2`` shifted probes
        per probe update). ``0``: bilinear interpolation of the object
        instead (no extra transforms, but it blurs the object by up to half
        a pixel, which limits the accuracy and lets a probe refined by ML
        absorb the interpolation error).  At most 64.
    mask : (N, N) bool ndarray, optional
        True where a detector pixel is valid and used (as ``CXIScan.mask``);
        False pixels are not constrained.  Default: all pixels are used.
    dm : DMOptions
        Difference-map options (probe update start, overlap iterations, the
        relaxed Fourier constraint).
    ml : MLOptions
        Maximum-likelihood options (smoothness prior, probe refinement).
    refine_positions : bool or PositionRefinement
        Refine the positions during DM: a :class:`PositionRefinement` (when,
        how often, largest step), True (default) for its defaults, False for
        none.  On by default: scan positions are rarely known to better than
        a pixel, and on the robustness family of ``bench/ptycho_family.py``
        (position errors 0-2 px) it lowered the object error after DM 100 +
        ML 100 from 1.23 to 0.41 on the member with 1.5 px errors and 52 %
        overlap, and changed the others by -0.014 to +0.010; on the real
        Velociprobe scan the half-scan Fourier ring resolution and noise were
        unchanged within 4 %.  Costs about 5 % of the DM time.
    holdout : bool or HoldOut
        Patterns held out of the engines to stop ML and choose the result: a
        :class:`HoldOut` (share, ML's patience), True (default) for its
        defaults, False for none (every pattern used, every iteration run,
        the last iterate returned).
    checkpoint : path, optional
        HDF5 file written atomically every ``checkpoint_every`` iterations and
        at the end of each stage. If it exists, the run resumes from it and
        gives bit for bit the result of an uninterrupted run; a finished
        checkpoint returns at once. A checkpoint of other data or parameters
        raises ValueError.
    checkpoint_every : int
        Iterations between checkpoints (>= 1).
    callback : callable, optional
        ``callback(fraction, message)`` progress.
    threads : int, optional
        Threads of the core (None = the package default); results do not depend on it.
    seed : int
        Seed of the initial extra probe modes.

    Returns
    -------
    Reconstruction
    """
    run = _Run(intensities, positions_px, probe, object_shape=object_shape, engines=engines,
               probe_modes=probe_modes, subpixel_steps=subpixel_steps, mask=mask, dm=dm, ml=ml,
               refine_positions=refine_positions, holdout=holdout, checkpoint=checkpoint,
               checkpoint_every=checkpoint_every, callback=callback, threads=threads, seed=seed)
    return run.run()


def _options_or_flag(value, cls, name: str):
    """An option given as an options object or a flag: ``value`` if it is a ``cls``, ``cls()`` for True, None for
    False."""
    if isinstance(value, cls):
        return value
    return cls() if check.flag(value, f"{name} (a bool or a {cls.__name__})") else None


class _Run:
    """One call of :func:`reconstruct`: the checked problem, the iterate, the stages and the checkpoints."""

    def __init__(self, intensities, positions_px, probe, *, object_shape, engines, probe_modes, subpixel_steps,
                 mask, dm, ml, refine_positions, holdout, checkpoint, checkpoint_every, callback, threads, seed):
        pos, p_init, valid_mask = _check_inputs(intensities, positions_px, probe, mask)
        bad = None if valid_mask is None else ~valid_mask
        self.stages = _engines(engines)
        self.modes = check.integer(probe_modes, "probe_modes", minimum=1)
        self.subpixel_steps = check.integer(subpixel_steps, "subpixel_steps", minimum=0, maximum=64)
        if not isinstance(dm, DMOptions):
            raise TypeError(f"dm must be a tomofuse.ptycho.DMOptions, got {type(dm).__name__}")
        if not isinstance(ml, MLOptions):
            raise TypeError(f"ml must be a tomofuse.ptycho.MLOptions, got {type(ml).__name__}")
        self.refine = _options_or_flag(refine_positions, PositionRefinement, "refine_positions")
        self.dm, self.ml = dm, ml
        self.checkpoint_every = check.integer(checkpoint_every, "checkpoint_every", minimum=1)
        self.seed = check.seed(seed)
        self.threads = check.threads(threads)
        # patterns held out of every engine, to stop ML and choose the result (HoldOut)
        self.holdout = _options_or_flag(holdout, HoldOut, "holdout")
        self.held = None if self.holdout is None else held_out(intensities.shape[0], self.holdout.share)
        self.train = np.ones(intensities.shape[0], bool) if self.held is None else ~self.held
        self.k, self.n = int(self.train.sum()), intensities.shape[1]
        if object_shape is None:
            self.shape = default_object_shape(pos, self.n)
        else:
            self.shape = tuple(int(s) for s in object_shape)
            if len(self.shape) != 2 or min(self.shape) < self.n:
                raise ValueError(f"object_shape must be (H, W) with H, W >= N = {self.n}, got {object_shape!r}")
        # Peak memory: the patterns (float32, and their amplitudes), exit waves and the ML far-field
        # and residual buffers (complex64, K x modes x N^2 each), the object and its ML state.
        waves = 8.0 * self.k * self.modes * self.n * self.n
        check_memory(8.0 * self.k * self.n * self.n + 3 * waves + 64.0 * self.shape[0] * self.shape[1],
                     stage="tomofuse.ptycho.reconstruct",
                     detail=f"{self.k} patterns of {self.n}x{self.n}, {self.modes} probe mode(s), a "
                            f"{self.shape[0]}x{self.shape[1]} object",
                     remedy="reconstruct fewer patterns per call (a smaller field of view) or distribute the "
                            "projections of a series (tomofuse.ptycho.reconstruct_series with a Dask client)")
        self.scan = self._scan(pos, "positions_px: {}")  # every position checked, held-out ones included
        if self.held is not None:
            self.scan = self._scan(pos[self.train], "positions_px: {}")
        self.progress = Progress(callback, logger)
        self._inputs = (intensities, pos, valid_mask)

        # What a checkpoint must match (kept as it was before the options objects, so that
        # older checkpoints still resume).
        refine = self.refine or PositionRefinement()
        self.params = {"engines": self.stages, "probe_modes": self.modes,
                       "refine_positions": self.refine is not None, "object_shape": list(self.shape),
                       "probe_update_start": dm.probe_update_start, "overlap_iterations": dm.overlap_iterations,
                       "position_interval": refine.interval, "position_start": refine.start,
                       "subpixel_steps": self.subpixel_steps, "max_position_step": float(refine.max_step),
                       "seed": self.seed, "ml_update_probe": bool(ml.update_probe),
                       "fourier_bound": float(dm.fourier_bound), "fourier_bound_ramp": dm.fourier_bound_ramp,
                       "ml_smoothness": float(ml.smoothness)}
        if ml.smoothness_counts:  # absent when 0 (the weight before the option existed): older checkpoints resume
            self.params["ml_smoothness_counts"] = float(ml.smoothness_counts)
        if dm.defocus_search is not None:  # absent at its default, so that older checkpoints still resume
            self.params["defocus_search"] = dm.defocus_search
        if self.refine is not None and refine.ml_start is not None:  # ML's position refinement
            self.params["ml_position_start"] = int(refine.ml_start)
            self.params["ml_position_interval"] = int(refine.ml_interval)
        if self.held is not None:  # absent when no pattern is held out
            self.params["holdout_share"] = float(self.holdout.share)
            self.params["holdout_patience"] = int(self.holdout.patience)
        # only a checkpoint needs it (hashing every pattern is not free, and the defocus search makes 7 runs)
        self.digest = _hash_inputs(intensities, pos, p_init, bad, self.params) if checkpoint is not None else None

        # Data in the engines' layout: zero frequency at index 0, float32.
        def layout(a):
            return np.ascontiguousarray(np.fft.ifftshift(a, axes=(1, 2)), dtype=np.float32)

        self.data = layout(intensities if self.held is None else intensities[self.train])
        self.data_held = None if self.held is None else layout(intensities[self.held])
        self.valid = None if bad is None else np.ascontiguousarray(~np.fft.ifftshift(bad), dtype=np.uint8)
        self.valid_pixels = self.k * (self.n * self.n if self.valid is None else int(self.valid.sum()))
        self.total = float(self.data.sum(dtype=np.float64)) if self.valid is None else float(
            (self.data * self.valid[None]).sum(dtype=np.float64))

        # Initial iterate.
        self.obj = np.ones(self.shape, np.complex64)
        self.probe = _initial_probe(p_init, self.modes, self.n, self.total / self.k, self.seed)
        self.positions = pos[self.train].copy()
        self.held_positions = None if self.held is None else pos[self.held].copy()
        self.held_scan = None  # the core's scan of held_positions, built when first needed after they move
        self.errors: list[tuple[str, list]] = []
        self.validation: dict[int, list] = {}  # stage index -> rows of Reconstruction.validation
        self.exit_waves = None
        self.start_stage, self.start_iter = 0, 0
        self.ml_resume = None
        self.rule_resume = None  # the held-out rule's state in a checkpoint taken inside a stage
        self.ckpt = Path(checkpoint) if checkpoint is not None else None

    def _scan(self, positions, message: str):
        try:
            return _core.PtychoScan(self.n, self.modes, self.shape, positions, subpixel_steps=self.subpixel_steps)
        except ValueError as e:
            raise ValueError(message.format(e)) from None

    # -- checkpoints
    def _resume(self) -> None:
        saved = _load_checkpoint(self.ckpt, self.digest)
        if saved is None:
            return
        arrays = saved["arrays"]
        self.obj, self.probe = arrays["object"], arrays["probe"]
        self.positions = arrays["positions"][self.train]
        if self.held is not None:
            self.held_positions, self.held_scan = arrays["positions"][self.held], None
        self.validation = {int(key[len("validation"):]): [tuple(row) for row in arrays[key]]
                           for key in arrays if key.startswith("validation")}
        self.errors = saved["errors"]
        self.start_stage, self.start_iter = saved["stage"], saved["iteration"]
        exit_ = arrays.get("exit")
        if exit_ is not None:  # (into aligned memory, as the run that saved it had them)
            self.exit_waves = _aligned_empty(exit_.shape, np.complex64)
            self.exit_waves[...] = exit_
        else:
            self.exit_waves = None
        self.rule_resume = arrays if "held_iterations" in arrays else None
        if "dir_object" in arrays:
            self.ml_resume = saved
        logger.info("resuming from %s at stage %d iteration %d", self.ckpt, self.start_stage, self.start_iter)
        if saved["done"]:
            self.start_stage = len(self.stages)
        self.scan = _core.PtychoScan(self.n, self.modes, self.shape, self.positions,
                                     subpixel_steps=self.subpixel_steps)

    def _save(self, stage: int, iteration: int, done: bool = False, extra=None) -> None:
        if self.ckpt is None:
            return
        arrays = {"object": self.obj, "probe": self.probe, "positions": self._all_positions()}
        arrays.update({f"validation{si}": np.asarray(v, dtype=np.float64).reshape(-1, 3)
                       for si, v in self.validation.items()})
        st = {"params": self.params, "hash": self.digest, "stage": stage, "iteration": iteration, "done": done,
              "errors": self.errors, "arrays": arrays}
        if extra:
            arrays.update(extra.get("arrays", {}))
            st.update({key: v for key, v in extra.items() if key != "arrays"})
        _save_checkpoint(self.ckpt, st)

    def _all_positions(self) -> np.ndarray:
        """(K, 2) positions of every pattern, held-out ones included."""
        if self.held is None:
            return self.positions
        out = np.empty((len(self.held), 2))
        out[self.train], out[self.held] = self.positions, self.held_positions
        return out

    # -- the stages
    def run(self) -> Reconstruction:
        if self.ckpt is not None:
            self._resume()
        if self.start_stage == 0 and self.start_iter == 0 and self._search_iterations():
            self._search_defocus()
        all_iters = max(1, sum(it for _, it in self.stages))
        done_iters = sum(it for _, it in self.stages[:self.start_stage]) + self.start_iter
        for si in range(self.start_stage, len(self.stages)):
            name, iters = self.stages[si]
            first = self.start_iter if si == self.start_stage else 0
            if first == 0 or len(self.errors) <= si:
                self.errors.append((name, []))
            self.progress.stage(done_iters / all_iters, min(1.0, (done_iters + iters - first) / all_iters),
                                f"{name} {iters} iterations")
            if name == "dm":
                self._difference_map(si, first, iters)
            else:
                self._maximum_likelihood(si, first, iters)
            done_iters += iters - first
            self._save(si + 1, 0, done=si + 1 == len(self.stages))
        if self.modes > 1:
            orthogonalize_modes(self.probe)
        illum = self.scan.illumination(self.probe, threads=self.threads)
        return Reconstruction(object=self.obj, probe=self.probe, positions_px=self._all_positions(),
                              errors=[(nm, np.asarray(e, dtype=np.float64)) for nm, e in self.errors],
                              illumination=illum, held_out=None if self.held is None else self.held.copy(),
                              validation=[np.asarray(self.validation.get(si, []), dtype=np.float64).reshape(-1, 3)
                                          for si in range(len(self.errors))])

    def _search_iterations(self) -> int:
        """DM iterations per trial of the defocus search (0 = none: also when the first stage is not DM),
        DMOptions.defocus_search resolved."""
        if self.stages[0][0] != "dm":
            return 0
        if self.dm.defocus_search is not None:
            return self.dm.defocus_search
        return DEFOCUS_ITERATIONS if self.stages[0][1] >= DEFOCUS_MIN_DM else 0

    def _search_defocus(self) -> None:
        """DMOptions.defocus_search: start from the refocused initial probe with the lowest DM error."""
        from dataclasses import replace

        intensities, pos, mask = self._inputs
        if self.held is not None:  # the held-out patterns stay out of everything but the stopping rule
            intensities, pos = intensities[self.train], pos[self.train]
        iters = self._search_iterations()
        dm = replace(self.dm, defocus_search=0)
        errors = {}
        trials = [(0.0, self.probe)] + _refocused(self.probe, DEFOCUS_TRIALS)
        self.progress.stage(0.0, 0.0, "defocus search")  # messages only: the stages' fractions follow
        for i, (frac, p) in enumerate(trials):
            self.progress.update(i / len(trials), f"defocus search {i + 1}/{len(trials)}")
            r = _Run(intensities, pos, p, object_shape=self.shape, engines=(("dm", iters),), probe_modes=self.modes,
                     subpixel_steps=self.subpixel_steps, mask=mask, dm=dm, ml=self.ml, refine_positions=False,
                     holdout=False, checkpoint=None, checkpoint_every=self.checkpoint_every, callback=None,
                     threads=self.threads, seed=self.seed).run()
            errors[frac] = float(r.errors[0][1][-1])
        best = min(errors, key=lambda f: (errors[f], abs(f)))
        logger.info("defocus search (beam diameter change: DM error after %d iterations): %s", iters,
                    ", ".join(f"{f:+.2f}: {e:.4g}" for f, e in errors.items()))
        self.defocus_fraction = 0.0
        if best != 0.0 and errors[best] < (1.0 - DEFOCUS_MARGIN) * errors[0.0]:
            self.probe = dict(trials)[best]
            self.defocus_fraction = best
            logger.info("defocus search: starting from the probe refocused by %+.2f of its beam diameter", best)

    def _difference_map(self, si: int, first: int, iters: int) -> None:
        """DM iterations ``first .. iters - 1`` of stage ``si`` (with position refinement if asked)."""
        dm, refine, errs = self.dm, self.refine, self.errors[si][1]
        amp = np.sqrt(self.data)
        bound = float(dm.fourier_bound) * _amplitude_noise(self.data, self.valid)
        if self.exit_waves is None or first == 0:
            self.exit_waves = _aligned_empty((self.k, self.modes, self.n, self.n), np.complex64)
            self.scan.exit_waves(self.obj, self.probe, self.exit_waves, threads=self.threads)
        # DM's iterate of the lowest held-out deviance is the result only of a run's last stage: a later stage
        # continues from the last iterate, whose positions are the most refined (DM's object error may rise while
        # the positions still improve, and ML does not refine them)
        rule = self._rule(si, first, tolerance=0.0) if si == len(self.stages) - 1 else None
        # The iterations' scratch (shifted probes, per-bin sums, update terms), kept from one iteration to the
        # next: allocated per call, its largest parts (~200 MB at 400^2 patterns) go back to the system and are
        # zeroed by the kernel again at every iteration (17-32 % of a DM iteration at 400^2).  The position
        # refinement reads its shifted probes, and the workspace is kept for the refined scan when its size is
        # the same (the same bins: the core reads its shifted probes only where its key, the bins' shifts and
        # the probe, says they are the new scan's too), and through the held-out checks (their own scratch is
        # that of a few patterns).
        work = None
        for it in range(first, iters):
            refine_now = refine is not None and it >= refine.start and (it - refine.start) % refine.interval == 0
            validate_now = rule is not None and (it + 1) % HOLDOUT_INTERVAL == 0
            work, reuse = _dm_workspace(self.scan, work)  # new at the first iteration, or for other bins
            ramp = min(1.0, it / dm.fourier_bound_ramp) if dm.fourier_bound_ramp else 1.0
            # the model's error at the stage's first (0) and last iteration and every error_interval -- the same
            # iterations in a resumed run (an FFT per pattern more; nothing in the engine reads it)
            report = it == 0 or it + 1 == iters or (it + 1) % dm.error_interval == 0
            out = self.scan.dm_iteration(amp, self.valid, self.obj, self.probe, self.exit_waves,
                                         update_probe=it >= dm.probe_update_start,
                                         overlap_iterations=dm.overlap_iterations, bound=bound * ramp,
                                         model_error=report, workspace=work, reuse_workspace=reuse,
                                         threads=self.threads)
            errs.append(float(out[1].sum()) / max(self.total, 1e-30) if report else math.nan)
            if self.modes > 1 and it >= dm.probe_update_start:
                orthogonalize_modes(self.probe, self.exit_waves)
            if refine_now:
                # (the workspace's shifted probes are read when they are the probe's: not after orthogonalize_modes)
                self.positions = _refine_positions(self.scan, self.obj, self.probe, self.exit_waves, self.positions,
                                                   max_step=refine.max_step, workspace=work, threads=self.threads)
                self.scan = self._scan(self.positions, "position refinement moved a window off the object ({}); "
                                                       "pass a larger object_shape")
            if validate_now:
                self._validate(si, it + 1, rule, align=True)
            self.progress.update((it + 1 - first) / max(1, iters - first), f"dm {it + 1}/{iters}")
            if (it + 1) % self.checkpoint_every == 0 and it + 1 < iters:
                arrays = {"exit": self.exit_waves}
                if rule is not None:
                    arrays.update(rule.arrays())
                self._save(si, it + 1, extra={"arrays": arrays})
        del work
        self.exit_waves = None
        if rule is not None:
            self._take(si, iters, rule)

    def _align_held(self) -> None:
        """Align the held-out patterns' positions to the current object and probe (which stay fixed), from where
        they were last aligned.

        Each round projects their model exit waves onto their measured moduli and moves each position by
        the linearized least-squares step of :func:`_refine_positions` (whole-scan mean kept: the object
        does not move with them).
        """
        amp = np.sqrt(self.data_held)
        exit_ = _aligned_empty((len(self.held_positions), self.modes, self.n, self.n), np.complex64)
        pos, scan = self.held_positions, self._held_scan()
        work = None  # the DM workspace, whose shifted probes the refinement reads (as in _difference_map)
        for _ in range(HOLDOUT_ALIGN_ROUNDS):
            scan.exit_waves(self.obj, self.probe, exit_, threads=self.threads)
            work, reuse = _dm_workspace(scan, work)
            # from exit = P o, a DM iteration without overlap updates is the Fourier projection of P o
            scan.dm_iteration(amp, self.valid, self.obj, self.probe, exit_, update_object=False,
                              update_probe=False, workspace=work, reuse_workspace=reuse, threads=self.threads)
            moved = _refine_positions(scan, self.obj, self.probe, exit_, pos, max_step=self.refine.max_step,
                                      remove_mean=False, workspace=work, threads=self.threads)
            try:
                scan = _core.PtychoScan(self.n, self.modes, self.shape, moved, subpixel_steps=self.subpixel_steps)
            except ValueError:  # a step took a window off the object: keep the last positions that fit
                break
            pos = moved
        self.held_positions, self.held_scan = pos, scan
        logger.debug("%d held-out patterns aligned (largest move from the given positions %.3g px)",
                     len(pos), np.abs(self._inputs[1][self.held] - pos).max(initial=0.0))

    def _held_scan(self):
        """The core's scan of the held-out positions, built when first needed after they were set."""
        if self.held_scan is None:
            self.held_scan = _core.PtychoScan(self.n, self.modes, self.shape, self.held_positions,
                                              subpixel_steps=self.subpixel_steps)
        return self.held_scan

    def _held_nll(self) -> np.ndarray:
        """(held,) Poisson deviance of each held-out pattern per valid pixel under the current object and probe."""
        far = _aligned_empty((len(self.held_positions), self.modes, self.n, self.n), np.complex64)
        chi = _aligned_empty(far.shape, np.complex64)
        nll = self._held_scan().ml_gradient(self.data_held, self.valid, self.obj, self.probe, far, chi,
                                         threads=self.threads)[0]
        return np.asarray(nll, dtype=np.float64) / (self.valid_pixels / self.k)  # per valid pixel of one pattern

    def _rule(self, si: int, first: int, *, tolerance: float) -> Optional["_HeldOutRule"]:
        """The held-out rule of stage ``si`` starting at iteration ``first`` (its state from the checkpoint when the
        stage resumes mid-way), or None without held-out patterns."""
        if self.held is None:
            return None
        if first > 0 and si == self.start_stage:
            self.validation.setdefault(si, [])
            if self.rule_resume is not None:
                return _HeldOutRule.from_arrays(self.rule_resume, tolerance=tolerance)
            return _HeldOutRule(tolerance=tolerance)  # checkpointed before the first evaluation
        self.validation[si] = []
        return _HeldOutRule(tolerance=tolerance)

    def _validate(self, si: int, iteration: int, rule: "_HeldOutRule", *, align: bool) -> None:
        """Evaluate the held-out deviance of the current iterate and offer it to the rule; ``align``: align the
        held-out patterns' positions first (each evaluation in DM, whose positions move; at the start of ML)."""
        if align and self.refine is not None:  # positions are trusted as given otherwise
            self._align_held()
        deviance = self._held_nll()
        taken = rule.offer(iteration, deviance, self.obj, self.probe, self.positions)
        self.validation[si].append((iteration, float(deviance.mean()), float(taken)))
        logger.debug("%s %d: held-out deviance per pixel %.8g%s", self.stages[si][0], iteration, deviance.mean(),
                     " (the candidate)" if taken else "")

    def _take(self, si: int, last: int, rule: "_HeldOutRule") -> None:
        """End of stage ``si`` after iteration ``last``: evaluate the last iterate if not done, then make the rule's
        candidate the current iterate."""
        if not self.validation[si] or self.validation[si][-1][0] != last:
            self._validate(si, last, rule, align=self.stages[si][0] == "dm")
        chosen = rule.chosen[0]
        if chosen != last:
            logger.info("%s: the result is the iterate of iteration %d (by the held-out likelihood)",
                        self.stages[si][0].upper(), chosen)
            _, self.obj[...], self.probe[...], positions = rule.chosen
            if not np.array_equal(positions, self.positions):
                self.positions = positions.copy()
                self.scan = self._scan(self.positions, "held-out rule: {}")

    def _ml_restart(self, scan, state: "_MLState", far: np.ndarray, chi: np.ndarray, work, mu: float):
        """ML's state after its positions moved to ``scan``'s: that scan, the shifted probes' memory for its bins
        (returned), and the gradient at the current iterate, conjugate directions dropped."""
        ml = self.ml
        self.scan = scan
        reuse = True  # (the core reads the workspace's shifted probes only where its key says they are these)
        if work is not None and work.size != self.scan.ml_workspace_bytes:
            work, reuse = _aligned_empty(self.scan.ml_workspace_bytes, np.uint8), False
        state.prev_zg = 0.0
        self.scan.ml_iteration(self.data, self.valid, self.obj, self.probe, state, far, chi, start=True,
                               smoothness=mu, update_probe=bool(ml.update_probe), workspace=work,
                               reuse_workspace=reuse, threads=self.threads)
        return work

    def _maximum_likelihood(self, si: int, first: int, iters: int) -> None:
        """ML iterations ``first .. iters - 1`` of stage ``si``; stops once two find no decrease, or by the
        held-out likelihood (HoldOut)."""
        ml, errs = self.ml, self.errors[si][1]
        far = _aligned_empty((self.k, self.modes, self.n, self.n), np.complex64)
        chi = _aligned_empty(far.shape, np.complex64)
        # the shifted probes' memory, kept for the whole stage (allocated per call it is handed back
        # to the system and zeroed by the kernel again at every iteration); each call after the first
        # reuses it: the line search reads the shifted probes of the previous call's end point when they
        # are the probe's
        work = _aligned_empty(self.scan.ml_workspace_bytes, np.uint8) if self.subpixel_steps else None
        state = _MLState.empty(self.shape, self.probe.shape)
        # The prior's weight follows the illumination at the stage's start point (saved for a resume).
        resume = self.ml_resume
        rule = self._rule(si, first, tolerance=1.0)
        # ML's position refinement, judged by the held-out patterns: the iterate before the last refinement
        # (positions, held-out deviance, object, probe), and whether it has been turned off for this stage
        moves = self.refine if (self.refine is not None and self.refine.ml_start is not None and rule is not None) \
            else None
        before, off = None, False
        noise = _amplitude_noise(self.data, self.valid) / (self.valid_pixels / self.k) if moves is not None else None
        if resume is not None and si == self.start_stage and first > 0:
            for key in _MLState._ARRAYS:
                getattr(state, key)[...] = resume["arrays"][key]
            state.prev_zg = resume["ml_prev_zg"]
            state.alpha = resume["ml_alpha"]
            mu = resume["ml_mu"]
            if "ml_positions_before" in resume["arrays"]:
                arrays = resume["arrays"]
                before = (arrays["ml_positions_before"], float(resume["ml_positions_deviance"]),
                          arrays["ml_object_before"], arrays["ml_probe_before"])
            off = bool(resume["ml_positions_off"])
        else:
            ill = self.scan.illumination(self.probe, threads=self.threads)
            lit = ill[ill > 0.1 * ill.max()]
            dose = float(lit.mean()) if lit.size else 0.0
            mu = float(ml.smoothness) * dose + float(ml.smoothness_counts)
            logger.info("ml: illumination %.4g photons per object pixel, prior weight %.4g", dose, mu)
        self.scan.ml_iteration(self.data, self.valid, self.obj, self.probe, state, far, chi, start=True,
                               smoothness=mu, update_probe=bool(ml.update_probe), workspace=work,
                               threads=self.threads)
        if rule is not None and first == 0:
            self._validate(si, 0, rule, align=True)
        stalled, last = 0, first
        for it in range(first, iters):
            nll, alpha, backtracks, restarted = self.scan.ml_iteration(
                self.data, self.valid, self.obj, self.probe, state, far, chi, smoothness=mu,
                update_probe=bool(ml.update_probe), workspace=work, reuse_workspace=True, threads=self.threads)
            errs.append(float(nll) / self.valid_pixels)
            logger.debug("ml %d: nll %.6g alpha %.3g backtracks %d restarted %s", it, nll, alpha, backtracks,
                         restarted)
            last = it + 1
            stalled = stalled + 1 if alpha == 0.0 else 0
            if stalled >= 2:  # no decrease along the gradient either: converged (float32)
                logger.info("ML converged after %d iterations (no decrease twice in a row)", it + 1)
                break
            if rule is not None and (it + 1) % HOLDOUT_INTERVAL == 0:
                self._validate(si, it + 1, rule, align=False)
                if it + 1 - rule.chosen[0] >= self.holdout.patience:
                    logger.info("ML stopped after %d iterations: no better held-out likelihood since iteration %d",
                                it + 1, rule.chosen[0])
                    break
                if (moves is not None and not off and (it + 1) % moves.ml_interval == 0 and it + 1 >= moves.ml_start
                        and it + 1 < iters):
                    deviance = self.validation[si][-1][1]
                    if before is not None and deviance >= before[1]:
                        logger.info("ML %d: held-out deviance %.8g not below %.8g before the last position "
                                    "refinement: positions, object and probe restored to that iterate, no more "
                                    "refinement in this stage", it + 1,
                                    deviance, before[1])
                        self.positions = before[0]
                        self.obj[...], self.probe[...] = before[2], before[3]
                        before, off = None, True
                        work = self._ml_restart(self._scan(self.positions, "ML's positions: {}"), state, far, chi,
                                                work, mu)
                    else:
                        before = None  # the last refinement (if any) stood: judged, it is not judged again
                        moved = _refine_positions_modulus(
                            self.scan, self.data, self.valid, self.obj, self.probe, self.positions,
                            max_step=moves.max_step, noise=noise, threads=self.threads)
                        if not np.array_equal(moved, self.positions):  # (no step may stand out of the noise)
                            try:
                                scan = _core.PtychoScan(self.n, self.modes, self.shape, moved,
                                                        subpixel_steps=self.subpixel_steps)
                            except ValueError:  # a window would leave the object: positions kept
                                logger.info("ML %d: a position step would take a window off the object: no "
                                            "more refinement in this stage", it + 1)
                                off = True
                            else:
                                before = (self.positions.copy(), deviance, self.obj.copy(), self.probe.copy())
                                self.positions = moved
                                work = self._ml_restart(scan, state, far, chi, work, mu)
            self.progress.update((it + 1 - first) / max(1, iters - first), f"ml {it + 1}/{iters}")
            if (it + 1) % self.checkpoint_every == 0 and it + 1 < iters:
                extra = {"arrays": {key: getattr(state, key) for key in _MLState._ARRAYS},
                         "ml_prev_zg": state.prev_zg, "ml_alpha": state.alpha, "ml_nll": state.nll, "ml_mu": mu,
                         "ml_positions_off": off}
                if before is not None:
                    extra["arrays"].update(ml_positions_before=before[0], ml_object_before=before[2],
                                           ml_probe_before=before[3])
                    extra["ml_positions_deviance"] = before[1]
                if rule is not None:
                    extra["arrays"].update(rule.arrays())
                self._save(si, it + 1, extra=extra)
        if rule is not None:
            self._take(si, last, rule)


class _HeldOutRule:
    """Which iterate of a stage is its result under :class:`HoldOut`.

    The candidate is the latest evaluated iterate whose held-out deviance is not significantly above the lowest so
    far: the sum of its per-pattern excess over the lowest iterate's is at most ``tolerance`` standard errors of that
    sum (``sqrt(n)`` times the excesses' standard deviation).  ``tolerance=0`` takes the lowest (DM, whose iterates
    wander); 1 prefers later iterates unless the held-out patterns say they are worse (ML, whose iterates converge:
    a deviance that wobbles by less than its own noise does not pick an earlier, less converged iterate).
    """

    def __init__(self, *, tolerance: float):
        self.tolerance = tolerance
        self.lowest: Optional[tuple[np.ndarray, int]] = None  # per-pattern deviance, iteration
        self.chosen: Optional[tuple] = None  # iteration, object, probe, positions

    def offer(self, iteration: int, deviance: np.ndarray, obj: np.ndarray, probe: np.ndarray,
              positions: np.ndarray) -> bool:
        if self.lowest is None or deviance.sum() < self.lowest[0].sum():
            self.lowest = (deviance.copy(), iteration)
        else:
            excess = deviance - self.lowest[0]
            if excess.sum() > self.tolerance * math.sqrt(excess.size) * float(np.std(excess, ddof=1)):
                return False
        self.chosen = (iteration, obj.copy(), probe.copy(), positions.copy())
        return True

    def arrays(self) -> dict:
        if self.lowest is None:
            return {}
        return {"held_lowest": self.lowest[0], "held_iterations": np.array([self.lowest[1], self.chosen[0]]),
                "held_object": self.chosen[1], "held_probe": self.chosen[2], "held_chosen_positions": self.chosen[3]}

    @classmethod
    def from_arrays(cls, arrays: dict, *, tolerance: float) -> "_HeldOutRule":
        rule = cls(tolerance=tolerance)
        lowest_it, chosen_it = (int(i) for i in arrays["held_iterations"])
        rule.lowest = (np.asarray(arrays["held_lowest"]), lowest_it)
        rule.chosen = (chosen_it, np.asarray(arrays["held_object"]), np.asarray(arrays["held_probe"]),
                       np.asarray(arrays["held_chosen_positions"]))
        return rule


def _initial_probe(p_init: np.ndarray, modes: int, n: int, mean_count: float, seed: int) -> np.ndarray:
    """The starting probe: the given modes, extra ones grown from the first, scaled to the data's mean count."""
    pr = np.zeros((modes, n, n), np.complex64)
    given = min(modes, p_init.shape[0])
    pr[:given] = p_init[:given]
    rng = np.random.default_rng(seed)
    if given < modes:
        # Extra modes: the first mode times low-order Hermite-like polynomials of the centered
        # coordinates (x, y, xy, x^2 - y^2, ...) plus a little seeded noise, each with 5 % of its
        # power; smooth and nearly orthogonal to it, so the engines can grow them.
        c = (np.arange(n) - n // 2) / (n / 4)
        yy, xx = np.meshgrid(c, c, indexing="ij")
        shapes = [xx, yy, xx * yy, xx ** 2 - yy ** 2, xx ** 2 + yy ** 2 - 1]
        p0 = pr[0].astype(np.complex128)
        p0_power = float(np.sum(np.abs(p0) ** 2))
        for m in range(given, modes):
            noise = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
            mode = p0 * (shapes[(m - 1) % len(shapes)] + 0.1 * noise)
            mode *= math.sqrt(0.05 * p0_power / max(float(np.sum(np.abs(mode) ** 2)), 1e-300))
            pr[m] = mode.astype(np.complex64)
    power = float(np.sum(np.abs(pr) ** 2, dtype=np.float64))
    pr *= np.float32(math.sqrt(mean_count / power))  # unitary DFT: sum |F P|^2 = sum |P|^2 per pattern
    if modes > 1:
        orthogonalize_modes(pr)
    return pr
