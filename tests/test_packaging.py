"""The installed distribution carries its licenses: BSD-3-Clause for tomofuse's own code, and the
notices and license texts of what the compiled core contains (MKL or FFTW, Eigen, pybind11)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from tomofuse import _core


def _installed(files, suffix):
    return next(f for name, f in files.items() if name.endswith(suffix))


def test_license_metadata_and_files_are_installed():
    meta = metadata.metadata("tomofuse")
    assert meta["License-Expression"] == "BSD-3-Clause AND MPL-2.0 AND LicenseRef-Intel-Simplified-Software-License"
    declared = set(meta.get_all("License-File") or [])
    assert {"LICENSE", "THIRD_PARTY_NOTICES.md", "LICENSES/GPL-2.0.txt", "LICENSES/MPL-2.0.txt",
            "LICENSES/BSD-3-Clause-pybind11.txt", "LICENSES/Intel-Simplified-Software-License.txt"} <= declared
    files = {str(f): f for f in metadata.files("tomofuse")}
    assert "BSD 3-Clause License" in _installed(files, "licenses/LICENSE").read_text()
    text = _installed(files, "licenses/THIRD_PARTY_NOTICES.md").read_text()
    for component in ("Intel oneMKL", "FFTW", "Eigen", "pybind11"):
        assert component in text
    assert "Version 2" in _installed(files, "licenses/LICENSES/GPL-2.0.txt").read_text()
    assert "Intel Simplified Software License" in _installed(
        files, "licenses/LICENSES/Intel-Simplified-Software-License.txt").read_text()


def test_the_fft_backend_is_the_one_the_build_promises():
    """pip's default build on x86-64 Linux links MKL (a SIMD FFT for every x86-64 CPU); elsewhere
    FFTW. A build that silently fell back to the scalar FFTW would pass every accuracy test."""
    backend = _core.fft_backend()
    files = {str(f): f for f in metadata.files("tomofuse")}
    if backend.startswith("Intel oneMKL"):
        notices = _installed(files, "tomofuse/licenses/mkl/third-party-programs.txt").read_text()
        assert "Third Party" in notices or "third party" in notices.lower()
    else:
        assert backend.startswith("FFTW fftw-3"), backend
    # A build made with FFTW on purpose (-Ccmake.define.TOMOFUSE_FFT=FFTW) says so with TOMOFUSE_TEST_FFT=FFTW.
    if sys.platform == "linux" and platform.machine() == "x86_64" and os.environ.get("TOMOFUSE_TEST_FFT") != "FFTW":
        assert backend.startswith("Intel oneMKL"), backend
