"""Simulated far-field ptychography cases for the reconstruction benchmarks (pty-chi and tomofuse).

A weak phase object from the battery-electrode phantom, a focused (defocused zone-plate)
probe, a Fermat-spiral scan and Poisson-noisy far-field patterns (``tomofuse.acquire.ptycho_scan``):

- object: a 64^3-voxel electrode (``tomofuse.phantom.electrode``, seed ``seed``) with voxels of
  ``H / 64`` object pixels (at most 8: a larger object is the 512^2 one drawn larger, because the
  phantom's cost grows with its physical volume -- its particles have physical sizes -- and a
  64^3 box of 342 nm voxels takes many minutes), its ``delta`` and ``beta`` at 6.2 keV projected along z
  (``sum delta * voxel``), upsampled to ``H x W`` by cubic interpolation (``scipy.ndimage.zoom``),
  and turned into the transmission ``exp(i k delta t - k beta t)`` with the effective thickness
  scaled so that the phase spans ``PHASE_RANGE`` (0.8 rad peak to peak); the amplitude contrast
  follows from beta / delta (~ 2.5 %).  (A 2-D slice of an ``H x W`` phantom would be closer to a
  projection of real data but costs minutes to build.)
- pixel: 21.4 nm (the paper's 6.2 keV, 7.362 m, 400 x 172 um detector); the probe array is
  ``N x N`` (``tomofuse.ptycho.focused_probe``, beam diameter ``beam * N`` pixels).
- scan: ``tomofuse.ptycho.fermat_spiral`` with step ``(1 - overlap) * beam diameter`` (linear
  overlap 65 %) over the whole field the probe array can reach inside the object
  (``H - N - 1`` pixels), positions ``(y, x)`` in object pixels relative to ``(H // 2, W // 2)``.
- patterns: ``1e6`` photons per pattern on average, Poisson; zero frequency at the pattern center.
- mask: the well-scanned region, where the summed probe intensity ``sum_k |P(r - p_k)|^2`` is at
  least 30 % of its maximum.

Sizes (``SIZES``): "small" = 256^2 object, 64^2 probe, beam 0.5 N, 266 positions; "bench" =
512^2 object, 128^2 probe, beam 0.4 N (so that the same 65 % overlap gives more points: 419);
"paper" = 1024^2 object, the paper's 400^2 patterns, beam 0.4 N (~120 positions: the paper has
520 per projection over a wider field; per-pattern costs are what it measures).
Building takes ~15 s ("small") to ~2 min ("bench", on a loaded machine), mostly the phantom.

Run from the repository root::

    python bench/ptycho_case.py small /tmp/small.npz [--seed 0]

``make_case(size, seed)`` returns the dict of arrays that is saved (importable from other benches).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import scipy.ndimage

from tomofuse import acquire, phantom, ptycho

ENERGY_KEV = 6.2
#: Object pixel, meters: the paper's far-field geometry (21.4 nm).
PIXEL = ptycho.object_pixel_size(6.2, 7.362, 172e-6, 400)
PHASE_RANGE = 0.8
PHOTONS = 1e6
OVERLAP = 0.65
MASK_LEVEL = 0.3
PHANTOM_VOXELS = 64

#: size -> (object side H = W, probe side N, beam diameter as a fraction of N)
SIZES = {"small": (256, 64, 0.5), "bench": (512, 128, 0.4), "paper": (1024, 400, 0.4)}


def weak_phase_object(side: int, seed: int) -> np.ndarray:
    """``(side, side)`` complex128 transmission of a projected electrode, phase spanning PHASE_RANGE."""
    zoom = side / PHANTOM_VOXELS
    # The phantom's voxel is capped at that of the 512^2 object (171 nm, see the module docstring).
    voxel = min(side, 512) / PHANTOM_VOXELS * PIXEL
    el = phantom.electrode((PHANTOM_VOXELS,) * 3, voxel, seed=seed, truth_samples=1000, threads=1)
    delta, beta = phantom.refractive_volume(el, ENERGY_KEV)
    d2 = scipy.ndimage.zoom(delta.astype(np.float64).sum(axis=0), zoom, order=3, mode="grid-wrap", grid_mode=True)
    b2 = scipy.ndimage.zoom(beta.astype(np.float64).sum(axis=0), zoom, order=3, mode="grid-wrap", grid_mode=True)
    b2 = np.maximum(b2, 0.0)
    span = float(d2.max() - d2.min())
    if span <= 0:
        raise RuntimeError("the phantom projection is flat")
    k_t = PHASE_RANGE / span  # k * effective thickness (per unit of summed delta)
    return np.exp(1j * k_t * (d2 - d2.min()) - k_t * b2)


def scan_positions(side: int, n: int, beam: float) -> np.ndarray:
    """Fermat-spiral positions (y, x) in object pixels relative to the object center."""
    step = (1.0 - OVERLAP) * beam * n
    field = side - n - 1
    return ptycho.fermat_spiral(step, (field, field))  # meters or pixels alike: unit-free here


def well_scanned(shape, probe: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Mask where the summed probe intensity reaches MASK_LEVEL of its maximum (whole-pixel positions)."""
    h, w = shape
    n = probe.shape[0]
    illum = np.zeros(shape)
    p2 = np.abs(probe.astype(np.complex128)) ** 2
    for y, x in np.floor(positions).astype(int):
        y0, x0 = h // 2 + y - n // 2, w // 2 + x - n // 2
        illum[y0:y0 + n, x0:x0 + n] += p2
    return illum >= MASK_LEVEL * illum.max()


def make_case(size: str, seed: int = 0) -> dict:
    """Arrays of one case: intensities, positions_px, probe, probe_true, object_shape, truth, mask and metadata.

    ``probe`` (the initial guess handed to reconstructions) is the exact model probe scaled to
    the data: ``sum |P|^2`` equals the mean counts per pattern divided by the mean of
    ``|O|^2`` (so a unitary-FFT forward model with the truth reproduces the counts).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    side, n, beam = SIZES[size]
    truth = weak_phase_object(side, seed)
    probe = ptycho.focused_probe(n, object_pixel_size=PIXEL, energy_kev=ENERGY_KEV, diameter=beam * n * PIXEL)
    pos = scan_positions(side, n, beam)
    intensities = acquire.ptycho_scan(truth, probe, pos, photons=PHOTONS, seed=seed + 1)
    scale = math.sqrt(PHOTONS / float(np.mean(np.abs(truth) ** 2)))
    mask = well_scanned(truth.shape, probe, pos)
    return {
        "intensities": intensities,
        "positions_px": pos.astype(np.float64),
        "probe": (probe * scale).astype(np.complex64),
        "probe_true": probe.astype(np.complex64),
        "object_shape": np.array(truth.shape, dtype=np.int64),
        "truth": truth.astype(np.complex64),
        "mask": mask,
        "pixel_size_m": np.float64(PIXEL),
        "energy_kev": np.float64(ENERGY_KEV),
        "photons": np.float64(PHOTONS),
        "overlap": np.float64(OVERLAP),
        "seed": np.int64(seed),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", choices=sorted(SIZES))
    ap.add_argument("out", help="output .npz")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    case = make_case(args.size, args.seed)
    np.savez(args.out, **case)
    ph = np.angle(case["truth"])
    print(f"{args.size}: object {tuple(int(v) for v in case['object_shape'])}, probe {case['probe'].shape}, "
          f"{len(case['positions_px'])} positions, phase {np.ptp(ph):.3f} rad p-p, |O| in "
          f"[{np.abs(case['truth']).min():.4f}, {np.abs(case['truth']).max():.4f}], mask {case['mask'].mean():.2f} "
          f"of the object, {time.perf_counter() - t0:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
