"""Silicon particles as separate objects: connected components, touching ones split.

The distance-transform watershed of Gostick's SNOW idea (Phys. Rev. E 96, 023307 (2017)):
the Euclidean distance to the particle surface (``edt``) is smoothed, its peaks are the
candidate particle centers, and peaks that belong to one particle are merged before the
watershed: two peaks are one particle when one lies inside the other's inscribed sphere
(nearby peaks) or when the distance map stays high along the segment joining them
(no saddle: a lobe of an irregular particle, not a neck between two particles).  Touching
particles meet at a neck far thinner than either, so the distance map dips there.  The
distance map that seeds the split is that of the mask with its holes (specks of other phases
inside a particle, from noise) filled, so that they make no necks (``MASK_SMOOTHING``).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

from .._phase import Phase
from .._validate import positive_length
from .._validate import threads as _threads
from ._fit import blur, distance_transform, farther_than
from ._morphology import lookup

__all__ = ["label_particles", "NECK_RATIO", "MIN_PEAK_HEIGHT", "MASK_SMOOTHING", "FILL_DEPTH"]

logger = logging.getLogger(__name__)

#: Two peaks are one particle if the distance map along the segment joining them never falls
#: below ``NECK_RATIO`` times the lower peak (a neck narrower than that separates particles).
#: Where two particles touch, a segmentation of a blurred image fills the crease between them,
#: so the distance map dips to 0.6-0.75 of the smaller peak there, not to ~0; a lobe of one
#: irregular particle keeps it higher.  Chosen on the families of bench/particle_split_family.py
#: (partial volume: masks blurred by up to 1.2 voxels, thresholded at 1/2): touching pairs of
#: the phantom's star shapes split right 73 / 83 / 84 / 86 of 90 at 0.6 / 0.7 / 0.75 / 0.8; single
#: star particles of the phantom's range kept whole 400 / 400 up to 0.75 (397 at 0.8), rougher
#: ones 156 / 148 / 140 of 160 at 0.6 / 0.7 / 0.75; the segmented family of
#: bench/segment_family.py (PXCT noise 0-0.2) found the same particles with 0.6-0.75 but for one
#: more piece on one member at noise 0.2.
NECK_RATIO = 0.7
#: Smoothing of the distance map before peak finding (voxels).
SMOOTHING = 0.5
#: A peak of the smoothed distance map lower than this (voxels: the radius of the inscribed
#: sphere) seeds no particle of its own when a higher peak of the component does: a lobe that
#: thin is roughness of the labeled surface on the voxel scale, not a particle (the watershed
#: floods it from its neighbors).  On the family of bench/segment_family.py the four pieces cut
#: off from segmented silicon with peaks below 2 voxels (0.6-1.6) were 2 to 62 voxels of other
#: phases; the lowest peak of a true particle was 5.7 voxels.
MIN_PEAK_HEIGHT = 2.0
#: Holes of a noisy labeling -- specks and channels of another phase inside a particle -- lower
#: the distance map and give it necks where the particle has none (at PXCT noise 0.16 of the
#: pore-to-silicon span, 5 % of the voxels 4-8 deep in a family member's particles (m04) read as CBD, and
#: the watershed cut each particle into 2-5 pieces).  The distance map that seeds the split is
#: therefore taken of the mask with its holes filled: the voxels that lie deeper than
#: ``FILL_DEPTH`` voxels inside the mask smoothed by a Gaussian of ``MASK_SMOOTHING`` voxels
#: (thresholded at 1/2) join it.  The creases where two particles touch are filled by the
#: smoothing too, but only on the surface of the smoothed mask (less than ``FILL_DEPTH`` deep):
#: necks stay as they are.  The watershed floods the mask as labeled (no voxel changes phase).
#: Chosen on the family of bench/segment_family.py with PXCT noise added (10 electrodes; found /
#: true particles per member): noise 0 and 0.1 as without the fill, except that the 0.1
#: over-counts 8/7 and 9/8 are gone; noise 0.16 0.86-1.57x (without: 1.14-4.71x), 0.2 1.57-5.25x
#: (8-16x), matched at IoU >= 0.5 median 0.94 (0.15).  Smoothing 3 merged one of the constructed
#: touching pairs of tests/test_segment.py (radii 20 and 8, overlap 1 voxel); smoothing the mask
#: itself (without the depth rule) merged four of seven at 1.0.
MASK_SMOOTHING = 2.0
#: See ``MASK_SMOOTHING`` (voxels).
FILL_DEPTH = 2.0


def _check_labels(labels) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy.ndarray of Phase codes, got {type(labels).__name__}")
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (z, y, x) volume, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must hold integer Phase codes, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(Phase)):
        bad = sorted(set(np.unique(labels).tolist()) - {int(p) for p in Phase})
        raise ValueError(f"labels holds codes that are not tomofuse.Phase values: {bad[:10]}")
    return labels


def _segment_min(dt: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Minimum of ``dt`` sampled every half voxel along the segment a -> b (voxel indices)."""
    n = max(2, int(math.ceil(2 * np.linalg.norm(b - a))) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    p = np.rint(a[None] + t * (b - a)[None]).astype(np.int64)
    return float(dt[p[:, 0], p[:, 1], p[:, 2]].min())


def _split_component(mask: np.ndarray, dt: np.ndarray, neck_ratio: float, min_peak_height: float) -> np.ndarray:
    """Watershed labels (1..n) of one component's crop; 1 everywhere if it is one particle."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    dts = ndimage.gaussian_filter(dt, SMOOTHING, mode="nearest") if SMOOTHING > 0 else dt
    dts = np.where(mask, dts, 0.0)
    peaks = (ndimage.maximum_filter(dts, size=3, mode="constant") == dts) & mask & (dts > 0)
    # plateaus give several neighboring peak voxels: one per plateau
    plab, n = ndimage.label(peaks, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask.astype(np.int32)
    # per plateau: the mean position of its voxels and its value (ndimage.center_of_mass and .maximum
    # over the peak voxels only: the same sums in the same raster order, without sorting the crop)
    at = np.nonzero(peaks)
    which = plab[at] - 1
    size = np.bincount(which, minlength=n).astype(np.float64)
    pos = np.stack([np.bincount(which, weights=a.astype(np.float64), minlength=n) for a in at], axis=1) / size[:, None]
    pos_i = np.rint(pos).astype(np.int64)
    height = np.full(n, -np.inf)
    np.maximum.at(height, which, dts[at])
    order = np.argsort(-height, kind="stable")
    # greedy: visit peaks from the highest; a peak joins the first kept peak it is not separated from
    owner = -np.ones(n, np.int64)
    kept: list[int] = []
    for j in order:
        if kept and height[j] < min_peak_height:
            continue  # no seed: flooded from the others
        for k in kept:
            d = float(np.linalg.norm(pos[j] - pos[k]))
            lower = min(height[j], height[k])
            if d < max(height[j], height[k]) or _segment_min(dts, pos_i[j], pos_i[k]) >= neck_ratio * lower:
                owner[j] = k
                break
        if owner[j] < 0:
            owner[j] = j
            kept.append(j)
    if len(kept) == 1:
        return mask.astype(np.int32)
    ids = {k: i + 1 for i, k in enumerate(sorted(kept))}
    seed = np.zeros(n + 1, np.int32)  # plateau label -> marker id (0: no seed)
    seed[1:] = [ids[int(o)] if o >= 0 else 0 for o in owner]
    markers = seed[plab]
    out = watershed(-dts, markers=markers, mask=mask).astype(np.int32)
    # The flood is face-connected, the component 26-connected: voxels joined to the rest only
    # through edges or corners stay unreached (0); each takes the id of the nearest reached voxel.
    lost = mask & (out == 0)
    if lost.any():
        nearest = ndimage.distance_transform_edt(out == 0, return_distances=False, return_indices=True)
        out[lost] = out[tuple(i[lost] for i in nearest)]
    return out


def label_particles(labels, *, voxel_size, phase: Phase = Phase.SILICON, min_volume: Optional[float] = None,
                    split: bool = True, neck_ratio: float = NECK_RATIO, min_peak_height: float = MIN_PEAK_HEIGHT,
                    mask_smoothing: float = MASK_SMOOTHING, threads: Optional[int] = None) -> np.ndarray:
    """Label the particles of one phase, touching particles split.

    Connected components (26-connectivity) of ``labels == phase``; with ``split`` each
    component is cut by a watershed of its smoothed distance map from peaks merged as
    described in the module docstring, so that two touching particles become two and a
    single irregular (star-shaped) particle stays one.

    Parameters
    ----------
    labels : (z, y, x) integer ndarray
        ``tomofuse.Phase`` codes (e.g. ``Segmentation.labels``).
    voxel_size : float
        Voxel edge, meters.
    phase : Phase
        The phase whose particles are labeled (default silicon).
    min_volume : float, optional
        Particles smaller than this volume (m^3) get id 0 (they stay in ``labels``).
    split : bool
        Split touching particles (False: connected components only).
    neck_ratio : float
        In (0, 1): peaks joined by a distance map that never falls below this times the
        lower peak belong to one particle.
    min_peak_height : float
        Voxels (>= 0): a peak of the smoothed distance map lower than this seeds no particle
        of its own when the component has a higher one (0: every separated peak does).
    mask_smoothing : float
        Voxels (>= 0): the distance map that seeds the split is that of the mask with its
        holes filled, the voxels more than ``FILL_DEPTH`` voxels inside the mask smoothed by
        a Gaussian of this sigma (0: of the mask as it is); see ``MASK_SMOOTHING``.  Does not
        change which voxels are particles.
    threads : int, optional
        Threads of the distance transform and of the components' splits (None = all cores).

    Returns
    -------
    (z, y, x) ndarray of int32
        Particle ids 1..n in the order of their first voxel (raster order), 0 elsewhere.
    """
    import cc3d

    lab = _check_labels(labels)
    v = positive_length(voxel_size, "voxel_size")
    try:
        phase = Phase(phase)
    except ValueError:
        raise ValueError(f"phase must be a tomofuse.Phase, got {phase!r}") from None
    if min_volume is not None and not (isinstance(min_volume, (int, float)) and min_volume >= 0):
        raise ValueError(f"min_volume must be a volume >= 0 in m^3, got {min_volume!r}")
    if not (0 < neck_ratio < 1):
        raise ValueError(f"neck_ratio must be in (0, 1), got {neck_ratio!r}")
    if isinstance(min_peak_height, bool) or not isinstance(min_peak_height, (int, float, np.floating)) \
            or not (0 <= min_peak_height < math.inf):
        raise ValueError(f"min_peak_height must be a finite number >= 0 (voxels), got {min_peak_height!r}")
    if isinstance(mask_smoothing, bool) or not isinstance(mask_smoothing, (int, float, np.floating)) \
            or not (0 <= mask_smoothing < math.inf):
        raise ValueError(f"mask_smoothing must be a finite number >= 0 (voxels), got {mask_smoothing!r}")
    par = _threads(threads)
    mask = lab == int(phase)
    out = np.zeros(lab.shape, np.int32)
    if not mask.any():
        return out
    dt = None
    if split:
        seeds_of = mask
        if mask_smoothing > 0:
            smooth = blur(mask.view(np.uint8).astype(np.float32), float(mask_smoothing), threads=par)
            smooth = smooth > 0.5
            seeds_of = mask | farther_than(smooth, FILL_DEPTH, threads=par)
            del smooth
        dt = distance_transform(seeds_of, threads=par)
        del seeds_of
    comp = cc3d.connected_components(mask, connectivity=26)
    stats = cc3d.statistics(comp)
    boxes = stats["bounding_boxes"]
    next_id = 1
    min_vox = 0 if min_volume is None else min_volume / v ** 3
    # every piece's first voxel (flat index in the volume) and voxel count, from its component's box:
    # the raster order inside a box is the volume's
    first_of: list = []
    count_of: list = []

    def piece_ids(c):
        """The component's crop, its mask and its pieces' ids (1..k) there."""
        sl = tuple(slice(s.start, s.stop) for s in boxes[c])
        m = comp[sl] == c
        sub = _split_component(m, dt[sl], neck_ratio, float(min_peak_height)) if split else m.astype(np.int32)
        return sl, m, sub

    # the components' splits are independent: on `par` threads (the crops' filters, labeling and watershed
    # let another run beside them: 512^3, 2 threads, 10.5 vs 12.1 s), numbered in component order as one by one
    present = [c for c in range(1, len(boxes)) if boxes[c] is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(par, len(present)))) as pool:
        # (consumed in order as they come: a crop's arrays are dropped once it is placed)
        for sl, m, sub in pool.map(piece_ids, present):
            k = int(sub.max())  # (sub is 0 outside the component)
            region = out[sl]
            region[m] = sub[m] + (next_id - 1)
            # each id's voxel count (0: an id the split did not use, dropped below) and first voxel, without
            # sorting the crop (k is the few pieces of one component)
            flat = sub.reshape(-1)
            ck = np.bincount(flat, minlength=k + 1)[1:].astype(np.int64)
            first = np.array([int(np.argmax(flat == i)) for i in range(1, k + 1)], np.int64)
            fk = np.ravel_multi_index(tuple(a + s.start for a, s in zip(np.unravel_index(first, sub.shape), sl)),
                                      lab.shape).astype(np.int64)
            first_of.append(fk)
            count_of.append(ck)
            next_id += k
    # raster-order renumbering, volume filter
    first = np.concatenate(first_of) if first_of else np.zeros(0, np.int64)
    counts = np.concatenate(count_of) if count_of else np.zeros(0, np.int64)
    keep = (counts > 0) & (counts >= min_vox)
    new = np.zeros(next_id, np.int32)
    order = np.argsort(first[keep], kind="stable")
    new[1 + np.flatnonzero(keep)[order]] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    del dt, comp, mask
    return lookup(new, out)
