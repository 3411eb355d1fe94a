"""The real synchrotron scans in ``../shared/realdata`` (development workspace only; see its README):
readers shared by the tests, which skip with a reason when the data are not there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
I13 = ROOT / "i13-savu-24737"
VELOCIPROBE = ROOT / "velociprobe-siemens-star" / "siemens-star-small.npz.bz2"


def i13_scan():
    """Diamond I13-2 scan 24737: ``(raw (91, 135, 160) uint16, flat (1, ...), dark (1, ...), theta (91,) rad)``.

    The 91 projections match lines 11-101 of ``angles.txt`` (the first and last 10 lines belong to the
    flat and dark frames of the original file).  Skips the calling test when the data are absent.
    """
    if not I13.is_dir():
        pytest.skip(f"the real data ({I13}) are not here (only in the development workspace)")
    import tifffile

    raw = np.stack([tifffile.imread(I13 / "tiffs" / f"raw_{i:05d}.tiff") for i in range(91)])
    flat = tifffile.imread(I13 / "flat_00001.tiff")[None]
    dark = tifffile.imread(I13 / "dark_00001.tiff")[None]
    theta = np.radians(np.loadtxt(I13 / "angles.txt")[10:101])
    return raw, flat, dark, theta


def velociprobe_scan():
    """APS Velociprobe Siemens-star scan (tike's test data): ``(patterns (516, 128, 128) float32 counts with the
    zero frequency at the pattern center, positions (516, 2) (y, x) object pixels about their mean, probe
    (128, 128) complex64 initial guess)``, in the conventions of ``tomofuse.ptycho.reconstruct``.

    The file stores the patterns with the zero frequency at the array corner (shifted here) and the
    positions with an arbitrary origin.  Skips the calling test when the data are absent.
    """
    if not VELOCIPROBE.is_file():
        pytest.skip(f"the real data ({VELOCIPROBE}) are not here (only in the development workspace)")
    import bz2
    import io

    with bz2.open(VELOCIPROBE) as f:
        d = np.load(io.BytesIO(f.read()))
        patterns = np.fft.fftshift(d["data"][0], axes=(-2, -1)).astype(np.float32)
        positions = d["scan"][0].astype(np.float64)
        probe = d["probe"][0, 0, 0, 0].astype(np.complex64)
    return patterns, positions - positions.mean(axis=0), probe
