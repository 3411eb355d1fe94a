"""The installed distribution carries its license: GPL-3.0-or-later (FFTW is linked statically) with
the GPL text, the third-party notices and the license texts of FFTW, Eigen and pybind11."""

from __future__ import annotations

from importlib import metadata


def test_license_metadata_and_files_are_installed():
    meta = metadata.metadata("tomofuse")
    assert meta["License-Expression"] == "GPL-3.0-or-later"
    declared = set(meta.get_all("License-File") or [])
    assert {"LICENSE", "THIRD_PARTY_NOTICES.md", "LICENSES/GPL-2.0.txt", "LICENSES/MPL-2.0.txt",
            "LICENSES/BSD-3-Clause-pybind11.txt"} <= declared
    files = {str(f): f for f in metadata.files("tomofuse")}
    license_file = next(f for name, f in files.items() if name.endswith("licenses/LICENSE"))
    assert "GNU GENERAL PUBLIC LICENSE" in license_file.read_text() and "Version 3" in license_file.read_text()
    notices = next(f for name, f in files.items() if name.endswith("licenses/THIRD_PARTY_NOTICES.md"))
    text = notices.read_text()
    for component in ("FFTW", "Eigen", "pybind11"):
        assert component in text
    gpl2 = next(f for name, f in files.items() if name.endswith("licenses/LICENSES/GPL-2.0.txt"))
    assert "Version 2" in gpl2.read_text()
