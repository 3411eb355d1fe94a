"""The real synchrotron scans in ``../shared/realdata`` (development workspace only; see its README):
readers shared by the tests, which skip with a reason when the data are not there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
I13 = ROOT / "i13-savu-24737"


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
