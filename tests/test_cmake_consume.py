"""Build and run a C++ program against the installed tomofuse CMake package.

The consumer project lives in tests/cmake_consume/. It uses
``find_package(tomofuse CONFIG REQUIRED)`` with ``tomofuse_DIR`` from
``tomofuse.get_cmake_dir()``, links ``tomofuse::core`` and checks the batched
FFT against a naive DFT. This proves the installed headers, the exported
target and the relocatable library layout inside the Python package work for
an embedding C++ program that knows nothing of FFTW or Python.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import tomofuse

from _cmake_tools import _cxx_compiler, _tool, build_against_installed

CONSUMER_SOURCE = Path(__file__).resolve().parent / "cmake_consume"


def test_installed_cmake_package_layout() -> None:
    cmake_dir = Path(tomofuse.get_cmake_dir())
    include_dir = Path(tomofuse.get_include())
    assert (cmake_dir / "tomofuseConfig.cmake").is_file(), (
        f"no tomofuseConfig.cmake in {cmake_dir}; is tomofuse imported from an installed "
        f"wheel (it was imported from {tomofuse.__file__})?"
    )
    assert (cmake_dir / "tomofuseConfigVersion.cmake").is_file()
    assert (cmake_dir / "tomofuseTargets.cmake").is_file()
    for header in ("fft.hpp", "errors.hpp", "parallel.hpp", "export.hpp", "version.hpp"):
        assert (include_dir / "tomofuse" / header).is_file(), header
    # FFTW is an implementation detail of the core: its header is not shipped.
    assert not list(include_dir.rglob("fftw3*.h"))


def test_cmake_consume(tmp_path: Path) -> None:
    cmake = _tool("cmake")
    if cmake is None:
        pytest.skip("no `cmake` executable (pip install 'tomofuse[test]' provides one)")
    if _cxx_compiler() is None:
        pytest.skip("no C++ compiler found (looked at $CXX, c++, g++, clang++)")

    build = tmp_path / "build"
    build_against_installed(CONSUMER_SOURCE, build, tmp_path)

    exe = build / "tomofuse_consume"
    assert exe.is_file(), f"consumer executable not found in {build}"
    proc = subprocess.run(
        [str(exe)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"consumer failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.startswith("OK max_err="), proc.stdout
