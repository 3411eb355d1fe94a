"""Raw beamline files simulated from a phantom, and the config that runs the pipeline on them.

The simulation is the forward model of the paper's two scans, written in the formats the
beamlines deliver, so that ``tomofuse run`` takes the same code path on them as on real data:

- PXCT: the phantom's projected phase at 6.2 keV (``tomofuse.acquire.pxct_phase``: exact line
  integrals of ``delta``, 40 nm blur, random sub-pixel positioning errors), turned into a
  transmission ``exp(i phi - mu)`` and scanned by a focused probe on a Fermat spiral
  (``tomofuse.acquire.ptycho_scan``, Poisson noise); one CXI file per projection
  (``tomofuse.io.write_cxi``) and a text file of the rotation angles (degrees).
- TXTM: Beer-Lambert projections at 8.4 keV with flat and dark fields and Poisson noise
  (``tomofuse.acquire.txtm``), the sample turned about the rotation axis relative to the PXCT
  scan, one Data Exchange file (``tomofuse.io.write_dxchange``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import _validate as check

__all__ = ["SimulatedScan", "simulate_raw"]

logger = logging.getLogger(__name__)

PXCT_ENERGY_KEV = 6.2
TXTM_ENERGY_KEV = 8.4
#: The paper's far-field geometry: 7.362 m to a detector of 172 um pixels.
DETECTOR_DISTANCE_M = 7.362
DETECTOR_PIXEL_M = 172e-6


@dataclass
class SimulatedScan:
    """What :func:`simulate_raw` wrote and the truth it knows.

    Attributes
    ----------
    config : Path
        The pipeline config written for the raw files.
    directory : Path
        Directory of the raw files (``ptycho/*.cxi``, ``ptycho/angles_deg.txt``, ``txtm.h5``).
    electrode : tomofuse.phantom.Electrode
        The phantom (its ``truth`` table, ``labels``, ``geometry``).
    phantom_file : Path
        The phantom saved next to the raw files (HDF5, ``Electrode.save``).
    truth : dict
        Acquisition truth: ``pxct_shifts_px`` (A, 2), ``txtm_turn_deg``, ``pxct_origin_m``,
        ``txtm_origin_m``, voxel and pixel sizes (m).
    """

    config: Path
    directory: Path
    electrode: Any
    phantom_file: Path
    truth: dict = field(default_factory=dict)


def _positions(rows: int, cols: int, step: float) -> np.ndarray:
    """Fermat-spiral positions (y, x), object pixels relative to the projection's center.

    The probe centers cover the projection plus half a step on each side, so that the
    illuminated field covers all of it.
    """
    from ..ptycho import fermat_spiral

    return fermat_spiral(step, (rows + step, cols + step)).astype(np.float64)


def simulate_raw(directory: str | os.PathLike, *, shape: Sequence[int] = (48, 64, 64), voxel_size: float = 21.4e-9,
                 cycled: bool = False, seed: int = 0, pxct_angles: Optional[int] = None,
                 txtm_angles: Optional[int] = None, probe_size: int = 16, overlap: float = 0.65,
                 photons: float = 1e6, txtm_photons: float = 1e5, txtm_pixel_size: float = 27.5e-9,
                 txtm_turn_deg: float = 3.0, shifts: float = 1.0, dm_iterations: int = 50,
                 ml_iterations: int = 30, output: str = "run", threads: Optional[int] = None,
                 phantom_options: Optional[dict] = None, overwrite: bool = False) -> SimulatedScan:
    """Simulate the raw files of a PXCT (ptychographic series) + TXTM study and write its config.

    Parameters
    ----------
    directory : str or path-like
        Where to write: ``config.toml``, ``phantom.h5`` and ``raw/`` (``raw/ptycho/proj_#####.cxi``,
        ``raw/ptycho/angles_deg.txt``, ``raw/txtm.h5``).  Created if missing.
    shape : (3,) sequence of int
        Phantom shape ``(z, y, x)`` in PXCT voxels.  The default is the demo size: about 12 s to
        simulate and 40 s to run the whole pipeline on two cores.
    voxel_size : float
        PXCT voxel (= ptychographic object pixel), meters; the detector distance follows from it
        (``lambda z / (N p)`` with the paper's 172 um pixels).
    cycled : bool
        Cycled electrode (SEI on silicon).
    seed : int
        Seed of the phantom and of every noise draw.
    pxct_angles, txtm_angles : int, optional
        Projections over 180 degrees; default about 1.6 times the sample width in pixels.
    probe_size : int
        ``N``, side of the diffraction patterns and of the probe array, pixels.
    overlap : float
        Linear overlap of neighboring probe positions, in (0, 1).
    photons : float
        Mean counts per diffraction pattern (Poisson).
    txtm_photons : float
        Flat-field counts per TXTM pixel (Poisson).
    txtm_pixel_size : float
        TXTM pixel at the sample, meters (paper: 27.5 nm).
    txtm_turn_deg : float
        Rotation of the sample about the tomographic axis between the two scans, degrees.
    shifts : float
        Largest random positioning error of a PXCT projection, pixels.
    dm_iterations, ml_iterations : int
        Iterations written into the config's ``[ptycho]`` section.
    output : str
        The config's run directory (relative to the config).
    threads : int, optional
        Threads of the simulation (and written into the config's ``[run]``).
    phantom_options : dict, optional
        Extra keyword arguments of ``tomofuse.phantom.electrode``.
    overwrite : bool
        Replace existing raw files.

    Returns
    -------
    SimulatedScan
    """
    from ..acquire import PXCTOptions, TXTMOptions, ptycho_scan, pxct_phase, txtm
    from ..io import atomic_path, read_dxchange, write_cxi, write_dxchange
    from ..phantom import electrode, refractive_volume
    from ..ptycho import focused_probe
    from ._config import template

    shape = check.ints(shape, "shape", length=3, minimum=8, expected="3 ints >= 8")
    v = check.positive_length(voxel_size, "voxel_size")
    seed = check.seed(seed)
    threads = check.threads(threads)
    n = check.integer(probe_size, "probe_size", minimum=8)
    overlap = check.number(overlap, "overlap", minimum=0.0, maximum=1.0, exclusive_minimum=True,
                           exclusive_maximum=True)
    root = Path(directory).expanduser().absolute()
    raw = root / "raw"
    (raw / "ptycho").mkdir(parents=True, exist_ok=True)

    e = electrode(shape, v, cycled=bool(cycled), seed=seed, truth_samples=20000, threads=threads,
                  **(phantom_options or {}))
    phantom_file = root / "phantom.h5"
    if overwrite or not phantom_file.exists():
        e.save(phantom_file)
    n_p = pxct_angles if pxct_angles is not None else int(round(1.6 * shape[1]))
    n_t = txtm_angles if txtm_angles is not None else int(round(1.6 * shape[1] * v / txtm_pixel_size))
    th_p = np.linspace(0, np.pi, n_p, endpoint=False)
    th_t = np.linspace(0, np.pi, n_t, endpoint=False)

    # --- PXCT: phase (and absorption) projections, then one ptychographic scan each
    acq = pxct_phase(e, th_p, options=PXCTOptions(energy_kev=PXCT_ENERGY_KEV, resolution=40e-9, noise=0.0,
                                                  phase_offsets=False, wrap=False, pixel_size=v),
                     shifts=shifts, seed=seed + 11, threads=threads)
    delta, beta = refractive_volume(e, PXCT_ENERGY_KEV)
    ratio = float(np.sum(beta)) / max(float(np.sum(delta)), 1e-30)  # mean beta/delta of the sample
    phase = acq.data.astype(np.float64)                              # phi = -2 pi / lambda int delta (< 0)
    obj_all = np.exp(1j * phase + ratio * phase)                     # amplitude exp(-k int beta) < 1
    a, rows, cols = phase.shape
    pad = n // 2 + 2
    distance = v * n * DETECTOR_PIXEL_M / (12.398419843320026e-10 / PXCT_ENERGY_KEV)  # z = dx N p / lambda
    probe = focused_probe(n, object_pixel_size=v, energy_kev=PXCT_ENERGY_KEV, diameter=0.5 * n * v)
    step = (1.0 - overlap) * 0.5 * n
    pos = _positions(rows, cols, step)
    angles_file = raw / "ptycho" / "angles_deg.txt"
    for i in range(a):
        path = raw / "ptycho" / f"proj_{i:05d}.cxi"
        if path.exists() and not overwrite:
            continue
        obj = np.pad(obj_all[i], pad, mode="edge")
        # the object's center index (H // 2, W // 2) vs the projection's center
        off = np.array([obj.shape[0] // 2 - (pad + rows / 2), obj.shape[1] // 2 - (pad + cols / 2)])
        pos_i = pos - off
        patterns = ptycho_scan(obj, probe, pos_i, photons=photons, seed=seed + 1000 + i)
        # CXI positions in meters; a stage offset that the pipeline removes (mean position)
        write_cxi(path, patterns.astype(np.float32), positions=(pos_i + 50.0) * v, energy_kev=PXCT_ENERGY_KEV,
                  distance=distance, pixel_size=DETECTOR_PIXEL_M, attrs={"rotation_angle_deg": float(np.degrees(th_p[i]))},
                  program="tomofuse.pipeline.simulate_raw", overwrite=True)
    with atomic_path(angles_file) as tmp:
        tmp.write_text("".join(f"{np.degrees(t):.12g}\n" for t in th_p))

    # --- TXTM
    txtm_file = raw / "txtm.h5"
    turn = math.radians(txtm_turn_deg)
    if overwrite or not txtm_file.exists():
        tacq = txtm(e, th_t + turn, options=TXTMOptions(energy_kev=TXTM_ENERGY_KEV, resolution=130e-9,
                                                        photons=txtm_photons, pixel_size=txtm_pixel_size,
                                                        distance=0.0), seed=seed + 23, threads=threads)
        t_origin = list(map(float, tacq.origin))
        # the detector grid's origin in the phantom's frame is simulation truth, kept with the scan so that
        # a rerun that finds the file (the demo resuming) still knows it
        write_dxchange(txtm_file, tacq.data, flat=tacq.flat, dark=tacq.dark, theta=th_t,
                       attrs={"energy_kev": TXTM_ENERGY_KEV, "pixel_size_m": txtm_pixel_size,
                              "simulated_origin_m": t_origin},
                       program="tomofuse.pipeline.simulate_raw", overwrite=True)
    else:
        stored = read_dxchange(txtm_file, rows=slice(0, 1)).attrs.get("simulated_origin_m")
        t_origin = None if stored is None else np.asarray(stored, dtype=np.float64).tolist()

    config = root / "config.toml"
    text = template("demo", values={
        ("run", "output"): output,
        ("run", "threads"): threads if threads is not None else 2,
        ("ptycho", "scans"): "raw/ptycho/proj_*.cxi",
        ("ptycho", "angles_file"): "raw/ptycho/angles_deg.txt",
        ("ptycho", "probe_diameter_m"): 0.5 * n * v,
        ("ptycho", "dm_iterations"): dm_iterations,
        ("ptycho", "ml_iterations"): ml_iterations,
        ("txtm", "scan"): "raw/txtm.h5",
        ("txtm", "pixel_size_m"): txtm_pixel_size,
        ("txtm", "energy_kev"): TXTM_ENERGY_KEV,
        ("segment", "cycled"): bool(cycled),
    })
    with atomic_path(config) as tmp:
        tmp.write_text(text)
    truth = {"pxct_shifts_px": acq.truth["shifts"], "pxct_origin_m": list(map(float, acq.origin)),
             "txtm_origin_m": t_origin, "txtm_turn_deg": float(txtm_turn_deg), "voxel_size_m": v,
             "txtm_pixel_size_m": float(txtm_pixel_size), "pxct_angles": n_p, "txtm_angles": n_t,
             "probe_size": n, "scan_points": int(len(pos)), "beta_over_delta": ratio}
    logger.info("simulated %d CXI scans (%d points of %dx%d) and a %d-projection TXTM scan in %s", n_p, len(pos),
                n, n, n_t, raw)
    return SimulatedScan(config=config, directory=raw, electrode=e, phantom_file=phantom_file, truth=truth)
