"""``segment``: the fused (PXCT, TXTM) volume into pore / graphite / silicon / CBD / SEI.

The method (Müller et al., "Multimodal Nanoscale Tomographic Imaging for Battery
Electrodes": "thresholding and simple morphological operations" on the fused volume),
made quantitative by modeling what each modality sees:

1. *Initial labels* from physics: the PXCT histogram is fitted by a mixture whose means are
   an affine image of the phases' ``delta`` (``physical_levels``), which gives pore /
   CBD-SEI / graphite-silicon thresholds in the data's units; graphite and silicon
   (``delta`` 5 % apart) are told apart by the TXTM (``beta`` ~10x apart).
2. *Forward model* of each channel: the level field of the labels blurred by the
   channel's point-spread function (anisotropic Gaussian, fitted to the data) plus
   noise (measured on the residual).  The levels of every phase in every channel are
   fitted by least squares, so no threshold depends on units.
3. *Partial volumes*: a voxel between two phases takes an intermediate value that a
   plain threshold reads as a third phase (a false CBD rim on every particle).  Voxels of
   an intermediate label between a lower and a higher one are first given to the nearer
   of the two, then iterated conditional modes (``_core.icm``) minimize
   ``|PXCT - H m[L]|^2 / (2 s^2 v) + smoothness * #unlike neighbors + TXTM evidence``,
   the TXTM evidence being the local silicon (CBD) fraction of the graphite-silicon
   (CBD-SEI) voxels that the blurred TXTM implies, given the PXCT geometry.  ICM moves one
   voxel at a time, so a one-to-two-voxel graphite layer on a silicon particle (its edge,
   which the PXCT cannot tell from graphite and the blurred TXTM splits off) is a local
   minimum; after each round such shells are tried whole and turned to silicon where the
   energy goes down (``_shell_moves``).
4. *Morphology*: SEI only within ``sei_max_distance`` of silicon and only in
   components touching it; components below ``min_voxels`` join their neighbors.
5. *Silicon lobes* (``_lobes``, both channels): every piece of the particle watershed is
   judged whole with the TXTM as a blurred data term; graphite next to a silicon particle
   that the TXTM's local fraction read as silicon goes back to graphite (it would otherwise
   be counted as a particle of its own).  This step runs on the whole volume's labels, also
   after ``segment_blocks``, reading only crops around the pieces.

Two stages make it work on volumes larger than memory with the same result: ``fit_model``
runs steps 1-3 on the central ``FIT_REGION`` cube (all of a smaller volume) and keeps only
the model (levels, PSFs, noise) and its path (the initial cuts and each round's model);
``label_region`` then labels every voxel by replaying that path (its first and last rounds)
with fixed numbers -- steps that are each local and placed on the whole volume's lattice (``origin``):
thresholds at the model's levels, the TXTM evidence on coarse cubes of that lattice, ICM in
cells of it with a fixed number of sweeps, shells judged within crops, morphology within
bounded reach.  ``segment`` runs ``label_region`` on the whole volume, ``segment_blocks`` on
blocks with a halo; their labels are equal bit for bit.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Optional, Sequence

import numpy as np

from .. import _core
from .._memory import check_memory
from .._phase import Phase
from .._progress import Progress, ProgressCallback
from .._validate import flag, positive_length
from .._validate import threads as _threads
from ._cleanup import clean_labels
from ._fit import (FWHM_PER_SIGMA, MIXTURE_UNIFORM_MAX, affine_mixture, blur, distance_transform, farther_than,
                   fit_levels, fit_psf, measure_noise, sample_blocks)
from ._lobes import silicon_lobes
from ._model import PhaseModel, physical_levels
from ._morphology import box3_extrema, lookup, within_ball
from ._result import Segmentation

__all__ = ["segment", "CHANNEL_CHOICES", "FIT_REGION", "fit_box", "fit_model", "label_region"]

logger = logging.getLogger(__name__)
_BYTES_PER_VOXEL = 96  # peak memory of segment beyond its input, per voxel (see segment)

#: ``channels`` of ``segment``: both modalities, or one alone (the single-modality baselines).
CHANNEL_CHOICES = ("both", "pxct", "txtm")

PORE, GRAPHITE, SILICON, CBD, SEI = (int(p) for p in Phase)

#: Smoothness (Potts weight per unlike pair of 6-neighbors, in units of the data term).
SMOOTHNESS = 2.0
#: Outer iterations (levels, noise and TXTM evidence refitted, then ICM).
OUTER_ITERATIONS = 3
#: Rounds (TXTM evidence from the labels, ICM, shells) of the labeling with the fitted model.
LABEL_ROUNDS = 3
#: The fit's rounds ``label_region`` replays (indices into its schedule; the last is the model). Chosen on
#: the family of bench/segment_family.py: the first round's model takes the labels to a better local
#: minimum of the CBD/SEI split than the last round's alone (two cycled members lost 0.05 and 0.04 CBD Dice
#: without it); the middle round changed no Dice by more than 0.004 (median 0.000) and cost a third of
#: the labeling.
REPLAYED_ROUNDS = (0, -1)
#: ICM sweeps per round (the fit stops a round earlier once < 1e-4 of the voxels change; the labeling runs
#: them all: a count over the volume would make a block's result depend on the block).
ICM_SWEEPS = 8
#: Graphite within this many voxels of silicon is tried as a whole shell for silicon (``_shell_moves``).
#: Chosen on the demo chain (real ptychography; 48x96x96 and 40x64x64, pristine and cycled) and on
#: the family of bench/segment_family.py: 2 gave the highest silicon and graphite Dice on the larger
#: demo members without loss on the smaller; CBD shells are never accepted as a whole (not tried).
SHELL_DISTANCE = 2.0
#: Gaussian sigma (voxels) of the smoothing of the main channel that the physics mixture, and the
#: labels the TXTM's PSF and graphite/silicon cut are fitted to, are read from (the initial labels,
#: the model's other fits and the ICM read the channel as it is).  From the raw channel, once the
#: PXCT noise reached 0.13-0.16 of the pore-to-silicon span, the mixture's levels came out 20-30 %
#: high and its thresholds speckled, the TXTM PSF fitted to the speckle too wide and the
#: graphite/silicon cut above the silicon: silicon was lost altogether (Dice 0.00-0.01 on 6 of the
#: 10 members of bench/segment_family.py at 0.16, ``--noise``).  With 1.0 (and
#: ``MIXTURE_UNIFORM_MAX``, ``SPLIT_CORE_DEPTH``) every member keeps its silicon up to 0.2 (Dice
#: 0.84-0.96); without added noise every Dice is within +-0.003 of before but one cycled member's
#: (CBD / SEI +0.03 / +0.05) and the noisiest's (-0.009 / -0.006).
INITIAL_SMOOTHING = 1.0
#: Depth (voxels) inside the dense class of the voxels whose TXTM values Otsu splits into graphite and
#: silicon.  The core was the voxels whose neighborhood, blurred by the fitted TXTM PSF, is 80 % dense;
#: that PSF is fitted while graphite and silicon are still one class and came out 8-10 voxels wide on
#: noisy scans, which left the core to the large graphite flakes and put the cut above the silicon
#: (the noisiest cycled member of bench/segment_family.py lost its silicon at PXCT noise 0.16).
#: Depth 2 or 3 gave the same Dice within 0.003 on the members tried; 2 kept silicon on all 10 at
#: noise 0.13-0.2 (Dice 0.84-0.96).
SPLIT_CORE_DEPTH = 2.0
#: Components of a phase smaller than this many voxels join their neighbors.
MIN_VOXELS = 5
#: Edge of the central cube the model is fitted on (voxels; the whole of a smaller volume).
FIT_REGION = 160
#: Voxels per chunk of ``_pair_unary`` (its work rows -- three float64, one float32 -- and the chunks of its
#: inputs stay in the L2 cache: 2^12..2^16 measured 0.17, 0.13, 0.12, 0.12, 0.11 s per call at 256^3).
_PAIR_CHUNK = 1 << 14
#: Judge the PXCT PSF on the initial labels' pore/dense edges only (True) or on all voxels of
#: the labels once graphite and silicon are split, refitted after the first round (False).
#: Chosen on the family of bench/segment_family.py: False gave higher CBD Dice on all 8
#: members compared (e.g. 0.756 vs 0.673, 0.804 vs 0.679 on two cycled members) and no loss
#: on another phase.
_PSF_FROM_CLEAN_EDGES = False
#: Isotropic PSF sigma grids (voxels) searched for each channel.
_PSF_GRID = {0: (0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5), 1: (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0)}


def _check_fused(fused, channels: str, orientation: bool = True):
    if not isinstance(fused, np.ndarray):
        raise TypeError(f"fused must be a numpy.ndarray (2, z, y, x), got {type(fused).__name__}")
    if fused.ndim != 4 or fused.shape[0] != 2:
        raise ValueError(f"fused must have shape (2, z, y, x) (channel 0 PXCT, channel 1 TXTM) as "
                         f"tomofuse.register.fuse returns it, got shape {fused.shape}")
    if not np.issubdtype(fused.dtype, np.floating):
        raise TypeError(f"fused must be a float array, got dtype {fused.dtype}")
    if min(fused.shape[1:]) < 8:
        raise ValueError(f"fused must have at least 8 voxels along every axis, got shape {fused.shape}")
    pxct, txtm = fused[0], fused[1]  # views: _standardize makes the working copies
    _check_finite(pxct, txtm, channels)
    if channels in ("both", "pxct") and not np.ptp(pxct) > 0:
        raise ValueError("fused[0] (PXCT) is constant: nothing to segment")
    valid = np.isfinite(txtm)
    if channels in ("both", "txtm"):
        if not valid.any():
            raise ValueError("fused[1] (TXTM) is NaN everywhere (no voxel inside the TXTM field of view); "
                             "use channels='pxct'")
        if not np.ptp(txtm[valid]) > 0:
            raise ValueError("fused[1] (TXTM) is constant inside its field of view: nothing to segment")
    if channels == "both" and orientation:
        _check_orientation(pxct, txtm, valid)
    return pxct, txtm, valid


def _check_finite(pxct: np.ndarray, txtm: np.ndarray, channels: str) -> None:
    """The PXCT finite where it is used; the TXTM finite or NaN (outside its field of view)."""
    if channels in ("both", "pxct") and not np.all(np.isfinite(pxct)):
        raise ValueError("fused[0] (PXCT) must be finite everywhere (NaN marks only voxels outside the "
                         "TXTM field of view, in fused[1])")
    if np.any(np.isinf(txtm)):
        raise ValueError("fused[1] (TXTM) holds infinite values; only NaN (outside the TXTM field of view) "
                         "is allowed")


def _check_orientation(pxct: np.ndarray, txtm: np.ndarray, valid: np.ndarray) -> None:
    """Both channels must grow with density: in every phase of the electrode delta and beta rise
    together (pore lowest, silicon / graphite highest), so the two channels correlate positively.
    A PXCT volume in phase units (``-2 pi delta / wavelength`` per voxel, as
    ``tomo.fbp_phase_derivative`` returns it) anticorrelates and is refused with advice."""
    idx = np.flatnonzero(valid.reshape(-1))
    if idx.size > 200_000:
        idx = np.random.default_rng(0).choice(idx, 200_000, replace=False)
    a = pxct.reshape(-1)[idx].astype(np.float64)
    b = txtm.reshape(-1)[idx].astype(np.float64)
    if a.size < 2 or not (a.std() > 0 and b.std() > 0):
        return
    r = float(np.corrcoef(a, b)[0, 1])
    if r < 0:
        raise ValueError(f"fused[0] (PXCT) anticorrelates with fused[1] (TXTM) (r = {r:.2f}): both channels "
                         "must grow with density. A PXCT reconstruction in phase units (-2 pi delta / "
                         "wavelength per voxel, as tomo.fbp_phase_derivative returns it) must be negated "
                         "(or converted to delta) before segmentation")


def _standardize(fused: np.ndarray, channel: int) -> tuple[np.ndarray, float, float]:
    """A new float32 ``(fused[channel] - center) / scale``, computed slice by slice in
    float64, with the channel's median and 1-99 % percentile spread (finite voxels): every
    later step works on numbers of order one, so the result does not depend on the channel's
    units or offset (float32 arithmetic on, e.g., 3000 + 1e-3 variations would). Returns
    ``(standardized, center, scale)``."""
    src = fused[channel]
    out = np.empty(src.shape, np.float32)
    idx = np.flatnonzero(np.isfinite(src).reshape(-1))
    if idx.size == 0:
        out[...] = src
        return out, 0.0, 1.0
    if idx.size > 400_000:
        idx = np.sort(np.random.default_rng(0).choice(idx, 400_000, replace=False))
    zi, rest = np.divmod(idx, out.shape[1] * out.shape[2])
    yi, xi = np.divmod(rest, out.shape[2])
    sample = np.asarray(src[zi, yi, xi], dtype=np.float64)
    center = float(np.median(sample))
    lo, hi = np.percentile(sample, [1.0, 99.0])
    scale = float(hi - lo)
    if not scale > 0:
        scale = float(np.ptp(sample)) or 1.0
    for z in range(out.shape[0]):
        out[z] = (np.asarray(src[z], dtype=np.float64) - center) / scale
    return out, center, scale


def _check_pair(value, name: str, unit: str, *, allow_none: bool = False) -> tuple:
    """Two positive finite numbers (``unit``), or with ``allow_none`` each of them None."""
    what = f"a pair of numbers ({unit}{', or None' if allow_none else ''})"
    try:
        pair = tuple(value)
        if len(pair) != 2:
            raise TypeError
        pair = tuple(None if allow_none and x is None else float(x) for x in pair)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {value!r}") from None
    for x in pair:
        if x is not None and not (math.isfinite(x) and x > 0):
            raise ValueError(f"{name} must hold positive finite numbers ({unit}), got {value!r}")
    return pair


def _check_resolution(value) -> Optional[tuple]:
    """``resolution`` of ``segment``: None, or a pair whose entries are FWHM in meters or None (that
    channel's PSF fitted to the data); None when both entries are."""
    if value is None:
        return None
    res = _check_pair(value, "resolution", "meters, FWHM", allow_none=True)
    return None if res == (None, None) else res


def _initial_labels(data: np.ndarray, smooth: np.ndarray, valid: Optional[np.ndarray], physical: np.ndarray,
                    cycled: bool, channel: int):
    """Labels from physics-mapped thresholds of one channel (graphite/silicon not split for PXCT):
    ``(labels, edges, codes)``.  The mixture is fitted to ``smooth`` (the channel blurred by
    ``INITIAL_SMOOTHING``), the thresholds applied to ``data``."""
    used = np.array([True, True, True, True, cycled])
    sample = smooth[valid] if valid is not None else smooth.ravel()
    if sample.size > 100_000:
        sample = sample[np.random.default_rng(0).choice(sample.size, 100_000, replace=False)]
    a, g = affine_mixture(sample, physical, used, uniform_max=MIXTURE_UNIFORM_MAX)
    lv = a + g * physical
    labels = np.zeros(data.shape, np.uint8)
    if channel == 0:
        # pore | CBD (| SEI) | graphite + silicon (one class, split by the TXTM)
        medium = [CBD, SEI] if cycled else [CBD]
        high = 0.5 * (lv[GRAPHITE] + lv[SILICON])
        cuts = sorted([(lv[k], k) for k in [PORE] + medium] + [(high, GRAPHITE)])
    else:
        cuts = sorted((lv[k], k) for k in range(5) if used[k])
    vals = np.array([c[0] for c in cuts])
    codes = np.array([c[1] for c in cuts], np.uint8)
    edges = 0.5 * (vals[1:] + vals[:-1])
    labels = lookup(codes, _bin(data, edges))
    return labels, edges, codes


def _bin(data: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.searchsorted(edges, data)`` for finite data and a few sorted edges, as uint8: the count
    of edges below each value, one comparison pass per edge (several times faster)."""
    out = np.zeros(data.shape, np.uint8)
    for e in np.asarray(edges, dtype=np.float64):  # float64 scalars: compared in float64, as searchsorted does
        out += data > e
    return out


def _beyond(values: np.ndarray, cut: float, order: float) -> np.ndarray:
    """``(values - cut) * order > 0`` (bool, the shape of ``values``) without its float64 temporaries: the
    sign of a difference of two floats is that of their comparison, made here in float64 as the
    difference was; ``order`` counts by its sign (0 or NaN: nothing is beyond)."""
    sig = (np.float64, np.float64, np.bool_)
    if order > 0:
        return np.greater(values, cut, signature=sig)
    if order < 0:
        return np.less(values, cut, signature=sig)
    return np.zeros(np.shape(values), bool)


def _split_graphite(labels: np.ndarray, values: np.ndarray, cut: float, order: float,
                    valid: Optional[np.ndarray] = None) -> None:
    """In place: graphite voxels (inside ``valid``) whose ``values`` lie beyond ``cut`` in the
    direction ``order`` (``_beyond``) become silicon -- the graphite/silicon split of the fit, of
    its replay and of a fixed model."""
    split = (labels == GRAPHITE) & _beyond(values, cut, order)
    if valid is not None:
        split &= valid
    labels[split] = SILICON


def _pxct_psf(pxct: np.ndarray, labels: np.ndarray, blocks, threads: int):
    """PXCT PSF from the initial (threshold) labels where only pore and the dense phases meet.

    Thresholds at the midpoint of two levels put a two-phase edge where it is for any
    symmetric PSF, so there the initial labels are unbiased; labels refined by the model
    would instead adapt to whatever PSF they were refined with.  The levels are fitted on
    all voxels, the PSF judged on those clean edges.
    """
    from scipy import ndimage

    medium = (labels == CBD) | (labels == SEI)
    clean = ~ndimage.maximum_filter(medium, size=7, mode="nearest")
    n_clean = sum(int(clean[sl].sum()) for sl in blocks)
    n_all = sum(int(np.prod([x.stop - x.start for x in sl])) for sl in blocks)
    if n_clean < 0.05 * n_all:
        clean = None
    return fit_psf(pxct, labels, [PORE, GRAPHITE, CBD, SEI], blocks, isotropic=_PSF_GRID[0], score=clean,
                   threads=threads)


def _split_high(txtm: np.ndarray, valid: np.ndarray, labels: np.ndarray, threads: int) -> Optional[float]:
    """Graphite vs silicon inside the high-delta class (``labels == GRAPHITE``) by the TXTM: Otsu's
    cut of the class's voxels at least ``SPLIT_CORE_DEPTH`` voxels inside it (None if too few)."""
    from skimage.filters import threshold_otsu

    high = labels == GRAPHITE
    core = high & valid & (distance_transform(high, threads=threads) >= SPLIT_CORE_DEPTH)
    if core.sum() < 50:
        core = high & valid
    if core.sum() < 2:
        return None
    return float(threshold_otsu(txtm[core]))


def _remove_rims(data: np.ndarray, labels: np.ndarray, levels: np.ndarray) -> int:
    """Voxels of an intermediate level between a lower and a higher one (26-neighborhood)
    go to whichever of the two their value is nearer (a partial-volume edge, not a phase)."""
    order = np.argsort(levels, kind="stable")
    rank = np.empty(len(levels), np.uint8)
    rank[order] = np.arange(len(levels))
    r = lookup(rank, labels)
    lo, hi = box3_extrema(r)
    rim = (lo < r) & (hi > r)
    if not rim.any():
        return 0
    a = order[lo[rim]]
    b = order[hi[rim]]
    new = np.where(data[rim] > 0.5 * (levels[a] + levels[b]), b, a).astype(np.uint8)
    changed = int(np.count_nonzero(new != labels[rim]))
    labels[rim] = new
    return changed


def _shell_moves(data, labels, levels32, sigma, pairs, unary, weight, smooth, *, phases, max_distance, threads):
    """Flip whole shells to silicon where that lowers the energy (escapes ICM's local minima).

    ICM changes one voxel at a time.  A layer one or two voxels thick of another phase around a
    silicon particle (its partial-volume edge, labeled graphite -- which the PXCT cannot tell
    from silicon -- or CBD) is then stable even when silicon explains the data better: turning
    one voxel of the layer costs unlike pairs with all its neighbors in the layer.  Here each
    26-connected component of ``phases`` voxels within ``max_distance`` voxels of silicon is
    turned into silicon as a whole when the energy ``_core.icm`` minimizes (blurred PXCT model,
    smoothness, TXTM evidence) goes down -- ``_core.shell_moves``, components in the order of
    their first voxel, the exact energy change on the support of the blurred change.
    """
    import cc3d

    si = labels == SILICON
    if not si.any():
        return 0
    near = within_ball(si, max_distance)
    del si
    of_phases = labels == phases[0]
    for ph in phases[1:]:
        of_phases |= labels == ph
    near &= of_phases
    del of_phases
    # ids in raster order of the components' first voxels (as scipy.ndimage.label numbers them)
    comp = cc3d.connected_components(near, connectivity=26, out_dtype=np.uint32).view(np.int32)
    del near  # the core's residual needs the memory
    if not comp.any():
        return 0
    return int(_core.shell_moves(data, labels, levels32, tuple(sigma), comp, SILICON, pairs=pairs, unary=unary,
                                 data_weight=weight, smoothness=smooth, threads=threads))


def _pad_to_lattice(a: np.ndarray, f: int, origin=(0, 0, 0)) -> np.ndarray:
    """``a`` (starting at ``origin`` of the whole volume's lattice of ``f``-cubes) edge-padded to
    whole cubes of that lattice."""
    pre = [int(o) % f for o in origin]
    shape = [-(-(n + p) // f) * f for n, p in zip(a.shape, pre)]
    widths = [(p, s_ - n - p) for s_, n, p in zip(shape, a.shape, pre)]
    if not any(w for pair in widths for w in pair):
        return a  # already whole cubes (read only by the callers: no copy)
    return np.pad(a, widths, mode="edge")


def _downsample(a: np.ndarray, f: int, origin=(0, 0, 0)) -> np.ndarray:
    """Means over the ``f``-cubes of the whole volume's lattice (``a`` starts at ``origin`` of it;
    edge-replicated where a cube sticks out of ``a``), summed in a fixed order so that a
    cube's mean does not depend on where ``a`` was cut."""
    if f == 1:
        return a.astype(np.float32)
    # float32 and bool add into the float32 sums as they are (bool as 0.0 / 1.0): no float32 copy
    b = _pad_to_lattice(a if a.dtype in (np.float32, np.bool_) else a.astype(np.float32), f, origin)
    acc = np.zeros([n // f for n in b.shape], np.float32)
    for i in range(f):
        for j in range(f):
            for k in range(f):
                acc += b[i::f, j::f, k::f]
    return acc / np.float32(f ** 3)


def _phase_fractions(labels: np.ndarray, f: int, n_phases: int, origin=(0, 0, 0)) -> list:
    """``[_downsample(labels == k, f, origin) for k in range(n_phases)]``, the same float32 values
    (a cube's count of 0/1 values is exact in float32), counted on the edge-padded labels once
    instead of a float copy and a padded copy of the volume per phase."""
    if f == 1:
        return [(labels == k).astype(np.float32) for k in range(n_phases)]
    b = _pad_to_lattice(labels, f, origin)
    counts = [np.zeros([n // f for n in b.shape], np.uint8) for _ in range(n_phases)]  # f^3 <= 64 fits
    for i in range(f):
        for j in range(f):
            for k in range(f):
                sub = b[i::f, j::f, k::f]
                for ph in range(n_phases):
                    counts[ph] += sub == ph
    return [c.astype(np.float32) / np.float32(f ** 3) for c in counts]


def _upsample(a: np.ndarray, f: int, shape, origin=(0, 0, 0), out=None, threads: int = 1) -> np.ndarray:
    """Linear interpolation of a field of ``f``-cube means (``_downsample``) back onto the fine grid
    (into ``out``, float32 of ``shape``, when given): fine voxel i sits at coarse coordinate
    ``(i + origin % f + 0.5) / f - 0.5`` along each axis, so the weights depend only on the place
    on the lattice (``_core.upsample_linear``)."""
    if f == 1:
        if out is None:
            return a
        out[...] = a
        return out
    return _core.upsample_linear(np.ascontiguousarray(a, dtype=np.float32), int(f), tuple(int(n) for n in shape),
                                 origin=tuple(int(o) for o in origin), out=out, threads=threads)


def _icm_round(data, labels, lev32, weight, sig, noise, corr, levels, *, main, use, txtm, valid, allowed_bits,
               cycled, sei_max, smooth, first, info, min_changes, origin, threads, coarse=None):
    """One ICM round of the fit and of the labeling (in place on ``labels``): on the first round the rims
    are removed, then the phases each voxel may take (SEI only within ``sei_max`` voxels of silicon), the
    TXTM evidence of the pairs ``txtm_pairs(cycled)``, ICM and the whole-shell moves.
    ``coarse``: the TXTM's ``_coarse_txtm`` fields by factor (then ``txtm`` may be None).  Returns the
    ICM report."""
    if first:
        info["rim_voxels"] = _remove_rims(data, labels, levels[main])
    allowed = np.full(labels.shape, allowed_bits, np.uint8)
    if cycled:
        # distances in voxels (exact integers under the root): the same in a block and the whole
        far = farther_than(labels != SILICON, sei_max, threads=threads)
        allowed[far] &= np.uint8(~(1 << SEI) & 0xFF)
        del far
    pairs = unary = None
    origin = (0, 0, 0) if origin is None else origin
    if main == 0 and 1 in use:
        unary = _txtm_evidence(txtm, valid, labels, levels[1], sig[1], noise[1], corr[1], cycled, threads,
                               origin=origin, coarse=coarse)
        # (the CBD/SEI pair only where SEI exists: a zero unary adds exactly nothing, same energies)
        pairs = txtm_pairs(cycled)
    rep = _core.icm(data, labels, lev32, tuple(sig[main]), allowed=allowed, pairs=pairs, unary=unary,
                    data_weight=weight, smoothness=smooth, max_sweeps=ICM_SWEEPS, min_changes=min_changes,
                    origin=origin, threads=threads)
    del allowed  # the whole-shell moves set the peak memory of the labeling (their components, the core's doubles)
    if unary is not None:
        n_shell = _shell_moves(data, labels, lev32, sig[main], pairs, unary, weight, smooth, phases=(GRAPHITE,),
                               max_distance=SHELL_DISTANCE, threads=threads)
        info.setdefault("shell_voxels", []).append(n_shell)
        logger.info("%d voxels of graphite shells on silicon turned to silicon", n_shell)
    return rep


def _coarse_factor(sigma_t) -> int:
    """The factor by which ``_txtm_evidence`` coarsens the grid for a TXTM PSF of ``sigma_t`` voxels."""
    f = max(1, int(min(np.asarray(sigma_t, dtype=np.float64)) // 1.5))
    return min(f, 4)


def _coarse_txtm(txtm, valid, f, origin=(0, 0, 0)):
    """The TXTM (0 outside its field of view) and the field-of-view fraction as ``f``-cube means
    (``_downsample``): what ``_txtm_evidence`` reads of the TXTM."""
    return _downsample(np.where(valid, txtm, 0.0), f, origin), _downsample(valid, f, origin)


def txtm_pairs(cycled: bool) -> np.ndarray:
    """The label pairs ``(a, b)`` the TXTM evidence decides, in the order of ``_txtm_evidence``'s
    unaries: graphite/silicon, (cycled) CBD/SEI, and CBD/silicon."""
    return np.array([[GRAPHITE, SILICON]] + ([[CBD, SEI]] if cycled else []) + [[CBD, SILICON]], np.uint8)


def _txtm_evidence(txtm, valid, labels, levels_t, sigma_t, noise_t, corr_t, cycled, threads, origin=(0, 0, 0),
                   coarse=None):
    """Pair unaries of ``txtm_pairs(cycled)`` from the TXTM, ``(n_pairs, z, y, x)`` float32.

    For a voxel of the graphite/silicon class, the TXTM around it, minus what the other
    classes contribute (their blurred indicators times their levels), divided by the
    blurred graphite/silicon indicator, gives the local silicon fraction ``s`` with
    standard error ``noise / (dm * frac)``; the unary for silicon over graphite is
    ``w (1 - 2 s)`` with ``w = (dm frac)^2 / (2 noise^2 corr)``.  Likewise the CBD
    fraction ``c`` of the CBD/SEI class decides CBD vs SEI, and the silicon fraction of
    the CBD/silicon class CBD vs silicon: the PXCT tells these two apart by 0.4 of its
    pore-to-silicon span, the TXTM by its largest contrast, and on noisy PXCT (0.16 of
    that span) 5 % of the voxels 4-8 deep inside a family member's particles (m04) read as CBD
    without it (bench/segment_family_results.txt, stop 37: silicon Dice +0.004..+0.018
    at that noise, within -0.000..+0.001 without added noise).  Computed on a grid
    coarsened by ``f`` (the TXTM is smooth on that scale) and interpolated back.  ``coarse``
    (``{f: _coarse_txtm(...)}``) saves recomputing the coarse TXTM; ``txtm`` may then be None.
    """
    s = np.asarray(sigma_t, dtype=np.float64)
    f = _coarse_factor(s)
    shape = labels.shape
    t, v = coarse[f] if coarse is not None and f in coarse else _coarse_txtm(txtm, valid, f, origin)
    frac = {k: blur(fr, s / f, threads=threads) for k, fr in enumerate(_phase_fractions(labels, f, 5, origin))}
    vb = blur(v, s / f, threads=threads)
    tb = t  # the TXTM is already blurred by its PSF: its value is the model's prediction
    lv = levels_t
    var = noise_t ** 2 * corr_t
    out = np.zeros((len(txtm_pairs(cycled)),) + shape, np.float32)
    # (v > 0.5) * clip(vb, 0, 1): the weights' factors for the TXTM's field of view (0 or 1 times a value)
    okc = (v > 0.5) * np.clip(vb, 0, 1)
    # graphite (a) vs silicon (b)
    d_hi = _pair_unary(tb, frac, lv, GRAPHITE, SILICON, (PORE, CBD, SEI), var, okc)
    _upsample(d_hi, f, shape, origin, out=out[0], threads=threads)
    if cycled:
        # unary for SEI (b) over CBD (a): evidence against SEI grows with the CBD fraction
        d_med = _pair_unary(tb, frac, lv, SEI, CBD, (PORE, GRAPHITE, SILICON), var, okc)
        np.negative(d_med, out=d_med)
        _upsample(d_med, f, shape, origin, out=out[1], threads=threads)
        del d_med
    # CBD (a) vs silicon (b)
    d_si = _pair_unary(tb, frac, lv, CBD, SILICON, (PORE, GRAPHITE, SEI), var, okc)
    _upsample(d_si, f, shape, origin, out=out[-1], threads=threads)
    np.copyto(out, np.float32(0.0), where=~valid)
    return out


def _pair_unary(tb, frac, lv, a, b, others, var, okc) -> np.ndarray:
    """``w (1 - 2 s)`` (float32) of ``_txtm_evidence`` for the class of phases ``a`` and ``b`` on the coarse
    grid: ``s`` the local fraction of ``b`` in it, clipped to [-1, 2], ``w = (dm h)^2 / (2 var)`` times
    ``okc``, where ``h`` is the class's blurred fraction and ``dm = lv[b] - lv[a]``. The operations and their
    order are those of the expressions ``(tb - rest - lv[a] * h) / max(dm h, eps)`` and
    ``(dm h)^2 / (2 var) * ok * clip(vb)``, in float64 (``dm == 0``: ``s = 0``), run over chunks of
    ``_PAIR_CHUNK`` voxels whose work arrays stay in cache: element by element the same operations,
    hence the same values, as on whole arrays (those went through memory ~15 times: 0.25 s per call at
    256^3 on warm pages, 1.45 s on fresh ones; 0.12 s in chunks)."""
    dm = lv[b] - lv[a]
    flat = [np.ravel(x) for x in (tb, frac[a], frac[b], okc)]
    terms = [(lv[k], np.ravel(frac[k])) for k in others]
    out = np.empty(tb.shape, np.float32)
    out_flat = out.reshape(-1)
    n = out_flat.size
    step = min(_PAIR_CHUNK, n)
    h_all = np.empty(step, np.result_type(frac[a], frac[b]))  # h in the fractions' precision, as frac[a] + frac[b]
    wk, tmp, rest = (np.empty(step, np.float64) for _ in range(3))
    floor = 1e-30 * abs(dm) + 1e-30
    for i0 in range(0, n, step):
        i1 = min(i0 + step, n)
        m = i1 - i0
        tb_, fa, fb, ok_ = (x[i0:i1] for x in flat)
        h, w_, t_, r_ = h_all[:m], wk[:m], tmp[:m], rest[:m]
        np.add(fa, fb, out=h)
        np.multiply(terms[0][0], terms[0][1][i0:i1], out=w_, dtype=np.float64)
        w_ += 0.0  # sum() starts from 0: -0.0 becomes 0.0
        for lk, fk in terms[1:]:
            np.multiply(lk, fk[i0:i1], out=t_, dtype=np.float64)
            w_ += t_
        np.multiply(dm, h, out=t_, dtype=np.float64)  # dm h
        if dm != 0:
            np.subtract(tb_, w_, out=r_, dtype=np.float64)
            np.multiply(lv[a], h, out=w_, dtype=np.float64)
            np.subtract(r_, w_, out=r_)  # tb - rest - lv[a] h
            np.maximum(t_, floor, out=w_)
            np.divide(r_, w_, out=r_)  # s
        else:
            r_.fill(0.0)
        np.square(t_, out=t_)
        np.divide(t_, 2 * var, out=t_)
        np.multiply(t_, ok_, out=t_)  # w
        np.clip(r_, -1, 2, out=r_)
        np.multiply(2, r_, out=r_)
        np.subtract(1, r_, out=r_)
        np.multiply(t_, r_, out=r_)
        out_flat[i0:i1] = r_
    return out


def fit_box(shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The central cube (edge ``FIT_REGION``, clipped to the volume) the model is fitted on: ``(lo, hi)``."""
    lo = tuple(max(0, (int(n) - FIT_REGION) // 2) for n in shape)
    hi = tuple(min(int(n), a + FIT_REGION) for n, a in zip(shape, lo))
    return lo, hi


def segment(fused, *, voxel_size, cycled: bool = False, energies_kev=(6.2, 8.4), resolution=None,
            channels: str = "both", thresholds=None, threads: Optional[int] = None,
            callback: Optional[ProgressCallback] = None) -> Segmentation:
    """Segment a fused (PXCT, TXTM) volume into pore, graphite, silicon, CBD and SEI.

    Neither modality can do it alone: PXCT resolves pores, CBD and thin SEI but sees
    graphite and SiOx within ~5 % in ``delta`` at 6.2 keV; TXTM tells graphite from SiOx
    (``beta`` ~10x apart at 8.4 keV) but blurs everything below ~130 nm (Müller et al.,
    "Multimodal Nanoscale Tomographic Imaging for Battery Electrodes", Fig. 1).  The
    method is described in ``tomofuse.segment._classify``'s module docstring: physics
    thresholds, a blurred forward model of each channel fitted to the data (levels, PSF,
    noise), partial-volume edges resolved by iterated conditional modes, then
    morphology.

    Two stages: the model is fitted on the central cube of the volume (``FIT_REGION``
    voxels per axis at most: the whole of a small volume), then every voxel is labeled with
    that fixed model by steps that each look only at a bounded neighborhood on the
    volume's own lattice -- so ``segment_blocks`` (blocks with a halo) gives the same labels.

    Parameters
    ----------
    fused : (2, z, y, x) ndarray of float
        As ``tomofuse.register.fuse`` returns it: channel 0 PXCT (delta-like: larger is
        denser), channel 1 TXTM (beta- or mu-like: larger absorbs more), each in any
        units (a positive scale and any offset; the result does not depend on them).
        NaN in channel 1 marks voxels outside the TXTM field of view.
    voxel_size : float
        Voxel edge of the fused grid, meters.
    cycled : bool
        The electrode was cycled: an SEI phase exists (as a layer on silicon).
    energies_kev : (2,) floats
        PXCT and TXTM photon energies, keV (paper: 6.2 and 8.4 keV).
    resolution : (2,) floats, optional
        FWHM (meters) of the PXCT and TXTM point-spread functions on the fused grid, e.g.
        from the Fourier shell correlation; by default both are fitted to the data
        (anisotropic: filtered back-projection blurs slices more than the rotation axis). An
        entry may be None: that channel's is fitted (e.g. where its FSC did not cross the
        threshold, which bounds the resolution by the Nyquist limit but does not measure it).
    channels : {"both", "pxct", "txtm"}
        Use both channels, or one alone (the single-modality baselines; same code path).
    thresholds : PhaseModel or mapping, optional
        A model from an earlier ``Segmentation.thresholds`` (or its ``to_dict()``): every
        fitted quantity is taken from it instead, and the labeling follows the fit's path
        (``PhaseModel.fit_path``), so that the model given back to the volume it was fitted on
        gives that segmentation's labels again, voxel for voxel.
    threads : int, optional
        Threads of the core (None = tomofuse default).
    callback : callable, optional
        ``callback(fraction, message)`` progress reports.

    Returns
    -------
    Segmentation
        ``labels`` (z, y, x) uint8 ``Phase`` codes on the fused grid, ``valid`` (voxels
        inside the TXTM field of view, where graphite and silicon are told apart by
        absorption), ``thresholds`` (the fitted ``PhaseModel``), ``info``.
    """
    if channels not in CHANNEL_CHOICES:
        raise ValueError(f"channels must be one of {CHANNEL_CHOICES}, got {channels!r}")
    v = positive_length(voxel_size, "voxel_size")
    energies = _check_pair(energies_kev, "energies_kev", "keV")
    res = _check_resolution(resolution)
    th = _threads(threads)
    cycled = flag(cycled, "cycled")
    model = None if thresholds is None else given_model(thresholds)
    _check_fused(fused, channels, orientation=model is None)
    # Peak memory beyond the input, measured with ru_maxrss at 96^3 and 128^3 voxels for every
    # channel choice: 80-91 bytes per voxel (float64 standardized channels, float32 working
    # copies, blurred label indicators, the pair unaries, the distance transforms); 96 with margin.
    check_memory(_BYTES_PER_VOXEL * int(np.prod(fused.shape[1:])), stage="tomofuse.segment.segment",
                 detail=f"a {fused.shape[1:]} volume, ~{_BYTES_PER_VOXEL} bytes per voxel",
                 remedy="segment it in blocks with tomofuse.segment.segment_blocks (block=, halo=; one haloed "
                        "block in memory per worker, client= distributes them)")
    progress = Progress(callback, logger)
    t0 = time.perf_counter()
    info: dict = {"channels": channels, "cycled": cycled}
    if model is None:
        progress.stage(0.0, 0.4, "fitting the model")
        lo, hi = fit_box(fused.shape[1:])
        box = (slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi))
        model, info["fit"] = fit_model(fused[box], voxel_size=v, cycled=cycled, energies_kev=energies,
                                       resolution=res, channels=channels, threads=th, callback=progress.update)
        info["fit"]["region"] = (lo, hi)
    progress.stage(0.4 if thresholds is None else 0.0, 1.0, "labeling with the model")
    labels, valid, lab_info = label_region(fused, model, voxel_size=v, cycled=cycled, channels=channels,
                                           threads=th, callback=progress.update)
    if channels == "both":
        info["lobes"] = silicon_lobes(fused, labels, model, voxel_size=v, threads=th)
    info.update(lab_info, seconds=time.perf_counter() - t0)
    progress.update(1.0, "done")
    return Segmentation(labels=labels, valid=valid, thresholds=model, channels=channels, voxel_size=v,
                        cycled=cycled, info=info)


def given_model(thresholds) -> PhaseModel:
    """``thresholds=`` as a ``PhaseModel``, with a warning when the labeling cannot follow its fit's path."""
    model = PhaseModel.from_dict(thresholds)
    if model.fit_path is None:
        logger.warning("segment: the given model carries no fit path (made by hand, or read from a file written "
                       "before models carried it); the labels start from the midpoints between its levels and can "
                       "differ from those of its fit")
    elif not model.replays_fit():
        logger.warning("segment: the given model was changed after its fit; the labels start from the midpoints "
                       "between its levels, not along the fit's path")
    return model


def fit_model(fused: np.ndarray, *, voxel_size: float, cycled: bool, energies_kev, resolution, channels: str,
              threads: int, callback=None) -> tuple[PhaseModel, dict]:
    """The ``PhaseModel`` of a (validated) fused volume and a report: physics thresholds, then
    rounds of point-spread functions, levels and noise fitted to the labels, between which ICM
    refines the labels (the labels themselves are not returned: ``label_region`` makes them)."""
    v = voxel_size
    e_p, e_t = energies_kev
    res = resolution
    th = threads
    progress = Progress(callback, logger)
    # every channel to numbers of order one (the model is converted back at the end)
    pxct, c0, s0 = _standardize(fused, 0)
    txtm, c1, s1 = _standardize(fused, 1)
    valid = np.isfinite(txtm)
    units = np.array([[c0, s0], [c1, s1]])  # (center, scale) per channel
    phys = physical_levels((e_p, e_t))
    use = {"both": (0, 1), "pxct": (0,), "txtm": (1,)}[channels]
    main = use[0]  # the channel whose blurred model the ICM fits voxel by voxel
    data_valid = None if main == 0 else valid
    if main == 0:
        data = pxct
    else:
        fill = float(np.median(txtm[valid]))
        data = np.where(valid, txtm, fill).astype(np.float32)
    ks = [PORE, GRAPHITE, SILICON, CBD] + ([SEI] if cycled else [])
    blocks = sample_blocks(pxct.shape)
    psf_blocks = sample_blocks(pxct.shape, block=48, count=4, seed=1)
    info: dict = {}

    progress.stage(0.0, 0.1, "initial labels from physics")
    smooth = blur(data, INITIAL_SMOOTHING, threads=th) if INITIAL_SMOOTHING > 0 else data
    labels, edges, codes = _initial_labels(data, smooth, data_valid, phys[main], cycled, main)
    # the path of the fit, replayed by label_region: initial cuts, then each round's model
    start = {"edges": edges * units[main, 1] + units[main, 0], "codes": codes, "split": None}

    # --- point-spread functions (voxels)
    progress.stage(0.1, 0.35, "point-spread functions")
    sig = {}
    given = (None, None) if res is None else res  # per channel: FWHM (m), or None: fitted
    for c in (0, 1):
        if given[c] is not None:
            s = given[c] / FWHM_PER_SIGMA / v
            sig[c] = (s, s, s)
    if main == 0 and 0 not in sig and _PSF_FROM_CLEAN_EDGES:
        sig[0] = _pxct_psf(pxct, labels, psf_blocks, th)
    if main == 0 and 1 in use:
        # TXTM PSF (on the three-class labels, thresholds of the smoothed channel), then graphite/silicon
        # from the TXTM
        clean = lookup(codes, _bin(smooth, edges))
        if 1 not in sig:
            kt = [PORE, GRAPHITE, CBD] + ([SEI] if cycled else [])
            sig[1] = fit_psf(txtm, clean, kt, psf_blocks, isotropic=_PSF_GRID[1], valid=valid, threads=th)
        t = _split_high(txtm, valid, clean, th)
        del clean
        if t is not None:
            _split_graphite(labels, txtm, t, 1.0, valid)
            start["split"] = (1, t * units[1, 1] + units[1, 0], 1.0)
    elif main == 0:
        # PXCT alone: graphite vs silicon by their (close) delta
        high = labels == GRAPHITE
        a, g = affine_mixture(pxct[high][:400_000] if high.any() else pxct.ravel()[:1000],
                              phys[0, [GRAPHITE, SILICON]], np.array([True, True]))
        del high
        cut = a + g * 0.5 * (phys[0, GRAPHITE] + phys[0, SILICON])
        order = np.sign(phys[0, SILICON] - phys[0, GRAPHITE])
        _split_graphite(labels, pxct, cut, order)
        start["split"] = (0, cut * units[0, 1] + units[0, 0], float(order))
    del smooth
    if main not in sig:
        sig[main] = fit_psf(data, labels, ks, psf_blocks, isotropic=_PSF_GRID[main], valid=data_valid, threads=th)
    if main == 1:
        sig[1] = (0.0, 0.0, 0.0)  # TXTM alone: thresholds and smoothing, no deblurring

    # --- rounds: levels and noise fitted to the labels, then (but for the last) evidence and ICM
    levels = np.full((2, 5), np.nan)
    noise = np.full(2, np.nan)
    corr = np.full(2, np.nan)
    smooth = SMOOTHNESS
    sei_max = 600e-9
    allowed_bits = sum(1 << k for k in ks)
    n_outer = OUTER_ITERATIONS
    icm_reports = []
    rounds = []
    for it in range(n_outer):
        progress.stage(0.35 + 0.65 * it / n_outer, 0.35 + 0.65 * (it + 1) / n_outer,
                       f"fitting the model (round {it + 1} of {n_outer})")
        for c in use:
            d_c = pxct if c == 0 else np.where(valid, txtm, 0).astype(np.float32)
            val_c = None if c == 0 else valid
            if it > 0 and given[c] is None and main == 0 and (c == 1 or not _PSF_FROM_CLEAN_EDGES):
                # the PSFs again on the refined labels, each from the one fitted before -- but for the TXTM's
                # first refit: its first fit saw graphite and silicon as one class, a start that a single
                # alternation does not recover from (bench/segment_family.py m01)
                psf_start = sig[c] if (c == 0 or it > 1) else None
                sig[c] = fit_psf(d_c, labels, ks, psf_blocks, isotropic=_PSF_GRID[c], valid=val_c, start=psf_start,
                                 threads=th)
            lv, _ = fit_levels(d_c, labels, ks, sig[c], blocks, valid=val_c, threads=th)
            full = np.full(5, np.nan)
            full[ks] = lv
            _fill_missing(full, phys[c], ks)
            if not cycled:
                full[SEI] = full[CBD]
            levels[c] = full
            noise[c], corr[c] = measure_noise(d_c, labels, full, sig[c], blocks, valid=val_c, threads=th)
        rounds.append({"levels": levels * units[:, 1:] + units[:, :1], "noise": noise * units[:, 1],
                       "correlation_volume": corr.copy(),
                       "psf_sigma": np.array([np.asarray(sig.get(c, (0.0, 0.0, 0.0))) * v for c in (0, 1)])})
        if it == n_outer - 1:
            break  # the levels and noise of this round are the model; its labels would be discarded
        w = 1.0 / (2.0 * noise[main] ** 2 * corr[main])
        lev32 = np.nan_to_num(levels[main], nan=0.0).astype(np.float32)
        rep = _icm_round(data, labels, lev32, w, sig, noise, corr, levels, main=main, use=use, txtm=txtm,
                         valid=valid, allowed_bits=allowed_bits, cycled=cycled, sei_max=sei_max / v, smooth=smooth,
                         first=it == 0, info=info, min_changes=int(1e-4 * labels.size), origin=None, threads=th)
        icm_reports.append(rep)
        logger.info("fit, ICM round %d: %s changes per sweep", it + 1, rep["changes"])

    info["psf_sigma_voxels"] = {c: list(sig[c]) for c in sig}
    info["icm"] = icm_reports
    logger.info("PSF sigma (voxels): %s", info["psf_sigma_voxels"])
    psf_m = np.array([np.asarray(sig.get(c, (0.0, 0.0, 0.0))) * v for c in (0, 1)])
    for c in (0, 1):
        if c not in use:
            levels[c] = np.nan
            noise[c], corr[c] = 1.0, 1.0
    end = {"levels": levels * units[:, 1:] + units[:, :1], "psf_sigma": psf_m,
           "noise": np.where(np.isfinite(levels).all(axis=1), noise * units[:, 1], noise),
           "correlation_volume": corr}
    model = PhaseModel(**end, smoothness=smooth, sei_max_distance=sei_max,
                       fit_path={"start": start, "rounds": rounds, "model": end})
    return model, info


def _model_units(model: PhaseModel, ks: Sequence[int]) -> np.ndarray:
    """``(center, scale)`` per channel from the model alone (mean and spread of its levels), so
    that a block and the whole volume standardize every voxel identically."""
    units = np.array([[0.0, 1.0], [0.0, 1.0]])
    for c in (0, 1):
        lv = np.asarray(model.levels[c], dtype=np.float64)[list(ks)]
        if np.all(np.isfinite(lv)):
            units[c, 0] = float(np.mean(lv))
            span = float(np.ptp(lv))
            units[c, 1] = span if span > 0 else 1.0
    return units


def label_region(fused: np.ndarray, model: PhaseModel, *, voxel_size: float, cycled: bool, channels: str,
                 origin: Sequence[int] = (0, 0, 0), threads: int = 1, callback=None):
    """Labels of a fused volume -- or of a block of a larger one starting at ``origin`` -- with a
    fixed model: ``(labels, valid, info)``.

    Every step is local: thresholds, the TXTM evidence (blurs, and means over ``f``-cubes of the
    whole volume's lattice), ICM in cells of the whole volume's lattice (``_core.icm`` with
    ``origin``, a fixed number of sweeps), shells turned whole within crops around them, and the
    morphology (components, distances to silicon).  A voxel's label therefore depends only on
    the data around it, and a block read with a halo that holds that reach gives the whole
    volume's labels.

    A model that carries the fit's path (``PhaseModel.fit_path``, not edited since:
    ``PhaseModel.replays_fit``) is labeled along it: its initial cuts and, for the rounds
    ``REPLAYED_ROUNDS`` (its first and its last), the levels, noise and PSFs it had then (the
    labels reach a better local minimum of the CBD/SEI split than from the final model's cuts;
    measured on the family of bench/segment_family.py), so that a model given back labels a
    volume as the fit did.  Without it every round uses ``model``, from the midpoints between its
    levels.
    """
    v = voxel_size
    th = threads
    progress = Progress(callback, logger)
    ks = [PORE, GRAPHITE, SILICON, CBD] + ([SEI] if cycled else [])
    use = {"both": (0, 1), "pxct": (0,), "txtm": (1,)}[channels]
    main = use[0]
    units = _model_units(model, ks)
    src = fused
    pxct = np.empty(src.shape[1:], np.float32)
    txtm = np.empty(src.shape[1:], np.float32)
    buf = np.empty(src.shape[2:], np.float64)  # a plane in float64, reused
    for c, out in ((0, pxct), (1, txtm)):
        for z in range(out.shape[0]):
            np.subtract(np.asarray(src[c, z]), units[c, 0], out=buf, dtype=np.float64)
            np.divide(buf, units[c, 1], out=buf)
            out[z] = buf
    del out  # (the loop's name would keep the TXTM alive after the rounds drop it)
    valid = np.isfinite(txtm)
    levels = (np.asarray(model.levels, dtype=np.float64) - units[:, :1]) / units[:, 1:]
    noise = np.where(np.isfinite(model.noise), np.asarray(model.noise, dtype=np.float64) / units[:, 1],
                     model.noise)
    corr = np.asarray(model.correlation_volume, dtype=np.float64)
    data = pxct if main == 0 else np.where(valid, txtm, 0.0).astype(np.float32)
    sig = {c: tuple(float(x) for x in np.asarray(model.psf_sigma[c]) / v) for c in (0, 1)}
    smooth = model.smoothness
    sei_max = model.sei_max_distance
    info: dict = {"psf_sigma_voxels": {c: list(sig[c]) for c in use}}
    origin = tuple(int(o) for o in origin)

    progress.stage(0.0, 0.1, "initial labels from the model")
    rounds = None
    schedule = model.fit_path if model.replays_fit() else None
    if schedule is not None:
        st = schedule["start"]
        rounds = [{"levels": (np.asarray(rd["levels"], dtype=np.float64) - units[:, :1]) / units[:, 1:],
                   "noise": np.asarray(rd["noise"], dtype=np.float64) / units[:, 1],
                   "corr": np.asarray(rd["correlation_volume"], dtype=np.float64),
                   "sig": {c: tuple(float(x) for x in np.asarray(rd["psf_sigma"][c]) / v) for c in (0, 1)}}
                  for rd in _replayed(schedule["rounds"])]
        edges = (np.asarray(st["edges"], dtype=np.float64) - units[main, 0]) / units[main, 1]
        labels = lookup(np.asarray(st["codes"], np.uint8), _bin(data, edges))
        if st["split"] is not None:
            c, cut, order = st["split"]
            cut = (cut - units[c, 0]) / units[c, 1]
            _split_graphite(labels, txtm if c == 1 else pxct, cut, order, valid if c == 1 else None)
    else:
        lv = levels[main]
        vals = np.array([lv[k] for k in ks])
        srt = np.argsort(vals, kind="stable")
        edges = 0.5 * (vals[srt][1:] + vals[srt][:-1])
        labels = lookup(np.array(ks, np.uint8)[srt], _bin(data, edges))
    if main == 0 and schedule is None:
        labels[labels == SILICON] = GRAPHITE
        # graphite vs silicon by the channel that tells them apart, at the midpoint of their levels
        c = 1 if 1 in use else 0
        cut = 0.5 * (levels[c, GRAPHITE] + levels[c, SILICON])
        order = np.sign(levels[c, SILICON] - levels[c, GRAPHITE])
        _split_graphite(labels, txtm if c == 1 else pxct, cut, order, valid if c == 1 else None)

    allowed_bits = sum(1 << k for k in ks)
    n_outer = LABEL_ROUNDS if rounds is None else len(rounds)
    icm_reports = []
    final = (levels, noise, corr, sig)
    coarse = None
    if main == 0 and 1 in use:
        # the rounds read the TXTM only as cube means: keep those, not the volume
        coarse = {}
        for it in range(n_outer):
            f = _coarse_factor((rounds[it]["sig"] if rounds is not None else sig)[1])
            if f not in coarse:
                coarse[f] = _coarse_txtm(txtm, valid, f, origin)
        txtm = None
    for it in range(n_outer):
        progress.stage(0.1 + 0.8 * it / n_outer, 0.1 + 0.8 * (it + 1) / n_outer,
                       f"ICM (round {it + 1} of {n_outer})")
        if rounds is not None:
            rd = rounds[it]
            levels, noise, corr, sig = rd["levels"], rd["noise"], rd["corr"], rd["sig"]
        w = 1.0 / (2.0 * noise[main] ** 2 * corr[main])
        lev32 = np.nan_to_num(levels[main], nan=0.0).astype(np.float32)
        # a fixed number of sweeps (stopping at a count of changes would depend on the block)
        rep = _icm_round(data, labels, lev32, w, sig, noise, corr, levels, main=main, use=use, txtm=txtm,
                         valid=valid, allowed_bits=allowed_bits, cycled=cycled, sei_max=sei_max / v, smooth=smooth,
                         first=it == 0, info=info, min_changes=0, origin=origin, threads=th, coarse=coarse)
        icm_reports.append(rep)
        logger.info("ICM round %d: %s changes per sweep (%s voxels evaluated), energy %.6g -> %.6g", it + 1,
                    rep["changes"], rep["evaluations"], rep["energy_before"], rep["energy_after"])

    progress.stage(0.9, 1.0, "morphology")
    levels, noise, corr, sig = final
    # silicon is told from graphite by the TXTM: a silicon speck smaller than a sphere of the
    # TXTM's FWHM is not supported by it
    min_si = 0.0
    if 1 in use and main == 0:
        fwhm = FWHM_PER_SIGMA * float(np.mean(sig[1]))
        min_si = 4.0 / 3.0 * math.pi * (0.5 * fwhm) ** 3
    info["cleanup"] = clean_labels(labels, cycled=cycled, min_voxels=MIN_VOXELS, min_silicon_voxels=min_si,
                                   sei_max_distance=sei_max / v, threads=th)
    info["icm"] = icm_reports
    return labels, (valid if 1 in use else np.ones_like(valid)), info


def _replayed(rounds: list) -> list:
    """The rounds of a fit's schedule that ``label_region`` replays (``REPLAYED_ROUNDS``, each once, in
    the fit's order)."""
    picked = sorted({i % len(rounds) for i in REPLAYED_ROUNDS}) if rounds else []
    return [rounds[i] for i in picked]


def _fill_missing(levels: np.ndarray, physical: np.ndarray, ks: Sequence[int]) -> None:
    """Levels of phases absent from the data, from the physics through the fitted affine map."""
    have = [k for k in ks if np.isfinite(levels[k])]
    missing = [k for k in ks if not np.isfinite(levels[k])]
    if not missing:
        return
    if len(have) >= 2:
        A = np.stack([np.ones(len(have)), physical[have]], axis=1)
        (a, g), *_ = np.linalg.lstsq(A, levels[have], rcond=None)
    else:
        a, g = (levels[have[0]] if have else 0.0), 0.0
    for k in missing:
        levels[k] = a + g * physical[k]
