"""Silicon lobes that the TXTM does not support, turned back to graphite.

The TXTM evidence that splits the dense class (``_classify._txtm_evidence``) is the local
silicon fraction over the TXTM's blur: graphite within about one TXTM PSF width of a large
silicon particle reads as silicon there.  ICM then leaves lobes of graphite, tens to a few
hundred voxels, labeled silicon and joined to the particle by a thin neck; the particle
watershed (``label_particles``) cuts them off as particles of their own (on the family of
``bench/segment_family.py``: 6 of 13 particles found on one member, every one of them
graphite in the truth).

Each piece of the particle watershed is therefore tested as a whole: the change of the
energy when all its voxels turn to graphite, with the TXTM as a *data* term -- the blurred
forward model ``H_T levels_T[labels]`` against the data, so the neighbor's own blur explains
its spill-over -- plus the PXCT data term and the smoothness of ``_core.icm``.  A piece is
turned when that change is negative.  A real particle, even a small one, is kept: its
absorption is not explained by anything else.
"""

from __future__ import annotations

import logging
import math
import numpy as np

from .._phase import Phase
from ._fit import blur, read_region
from ._model import PhaseModel
from ._morphology import lookup
from ._particles import label_particles

__all__ = ["silicon_lobes"]

logger = logging.getLogger(__name__)

GRAPHITE, SILICON = int(Phase.GRAPHITE), int(Phase.SILICON)
#: A piece is tested only where at least this share of its voxels lies inside the TXTM field of
#: view (outside it the PXCT cannot tell graphite from silicon and the piece is left as it is).
MIN_VALID_SHARE = 0.5


def _radius(sigma: float) -> int:
    # the core's Gaussian kernel radius (tomofuse::segment::kernel_radius)
    return int(math.ceil(3.5 * sigma)) if sigma > 0 else 0


def _like_pair_change(labels: np.ndarray, piece: np.ndarray) -> int:
    """Change of the number of unlike 6-neighbor pairs when ``piece`` (silicon) turns graphite."""
    pad_l = np.pad(labels, 1, mode="constant", constant_values=255)
    pad_p = np.pad(piece, 1, mode="constant", constant_values=False)
    change = 0
    inner = (slice(1, -1),) * 3
    for axis in range(3):
        for step in (1, -1):
            nb = [slice(1, -1)] * 3
            nb[axis] = slice(1 + step, pad_l.shape[axis] - 1 + step)
            other = pad_l[tuple(nb)][pad_p[inner]]
            outside = ~pad_p[tuple(nb)][pad_p[inner]]
            change += int(np.count_nonzero(outside & (other == SILICON)))
            change -= int(np.count_nonzero(outside & (other == GRAPHITE)))
    return change


def silicon_lobes(fused, labels: np.ndarray, model: PhaseModel, *, voxel_size: float, threads: int = 1) -> dict:
    """Turn pieces of silicon that the TXTM does not support to graphite (``labels`` in place).

    Parameters
    ----------
    fused : (2, z, y, x) float array (NumPy, h5py, Zarr or Dask)
        Channel 0 PXCT, channel 1 TXTM with NaN outside its field; only crops around the
        pieces are read.
    labels : (z, y, x) uint8 ndarray
        Phase codes of the whole volume; changed in place.
    model : PhaseModel
        The fitted model (levels, PSFs, noise of both channels, smoothness).
    voxel_size : float
        Meters.
    threads : int

    Returns
    -------
    dict
        ``tested`` pieces, ``turned`` pieces and ``voxels`` turned to graphite.
    """
    out = {"tested": 0, "turned": 0, "voxels": 0}
    levels = np.asarray(model.levels, dtype=np.float64)
    noise = np.asarray(model.noise, dtype=np.float64)
    corr = np.asarray(model.correlation_volume, dtype=np.float64)
    if not (np.all(np.isfinite(levels[:, [GRAPHITE, SILICON]])) and np.all(np.isfinite(noise))
            and np.all(noise > 0)):
        return out  # a single-channel model: nothing to test with
    sig = [np.asarray(model.psf_sigma[c], dtype=np.float64) / voxel_size for c in (0, 1)]
    weight = 1.0 / (2.0 * noise ** 2 * corr)
    reach = [_radius(float(s)) for s in np.maximum(sig[0], sig[1])]
    # every separated peak seeds a piece: a thin lobe is tested on its own
    pieces = label_particles(labels, voxel_size=voxel_size, min_peak_height=0.0, mask_smoothing=0.0,
                             threads=threads)
    if not pieces.any():
        return out
    from scipy import ndimage

    shape = labels.shape
    # the blurred model of every channel, once for the whole volume (relative to silicon's level:
    # a channel in units with a large offset keeps its digits through the float32 blur); after a
    # piece turns, refreshed where its change reaches
    lut = [np.nan_to_num(levels[c] - levels[c, SILICON]).astype(np.float32) for c in (0, 1)]
    preds = [blur(lookup(lut[c], labels), sig[c], threads=threads) for c in (0, 1)]

    def region(box, k):
        lo = tuple(max(0, b.start - k * r) for b, r in zip(box, reach))
        hi = tuple(min(n_, b.stop + k * r) for b, n_, r in zip(box, shape, reach))
        return lo, hi, tuple(slice(a, b) for a, b in zip(lo, hi))

    for pid, box in enumerate(ndimage.find_objects(pieces), start=1):
        if box is None:
            continue
        # the change's support: the box +- one kernel radius
        lo, hi, sl = region(box, 1)
        lab = labels[sl]
        piece = (pieces[sl] == pid) & (lab == SILICON)
        if not piece.any():
            continue
        data = read_region(fused, lo, hi).astype(np.float64)
        valid = np.isfinite(data[1])
        if np.count_nonzero(valid & piece) < MIN_VALID_SHARE * np.count_nonzero(piece):
            continue
        out["tested"] += 1
        delta = 0.0
        for c in (0, 1):
            ref = levels[c, SILICON]
            d = (np.where(valid, data[c], ref) if c == 1 else data[c]) - ref
            pred = preds[c][sl].astype(np.float64)
            # the piece is a kernel radius inside its crop: the crop's edge replication sees zeros
            dp = blur(piece * (levels[c, GRAPHITE] - ref), sig[c], threads=threads).astype(np.float64)
            terms = dp * dp - 2.0 * dp * (d - pred)
            if c == 1:
                terms = np.where(valid, terms, 0.0)
            delta += weight[c] * float(terms.sum())
        delta += model.smoothness * _like_pair_change(lab, piece)
        if delta < 0:
            lab[piece] = GRAPHITE
            out["turned"] += 1
            out["voxels"] += int(np.count_nonzero(piece))
            # the model where the change reaches, from a crop one more radius wide (its inner part
            # is what the whole volume's blur gives)
            lo2, _, sl2 = region(box, 2)
            inner = tuple(slice(a - b, a - b + (s_.stop - s_.start)) for a, b, s_ in zip(lo, lo2, sl))
            for c in (0, 1):
                preds[c][sl] = blur(lut[c][labels[sl2]], sig[c], threads=threads)[inner]
    if out["turned"]:
        logger.info("%d of %d silicon pieces (%d voxels) not supported by the TXTM turned to graphite",
                    out["turned"], out["tested"], out["voxels"])
    return out
