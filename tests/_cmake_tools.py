"""Helpers of the tests that build C++ programs against the installed tomofuse with CMake
(test_cmake_consume.py, test_cpp_core.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomofuse


def _tool(name: str) -> str | None:
    """Find an executable, looking next to the running interpreter first.

    The ``cmake`` and ``ninja`` packages from PyPI (the ``test`` extra) put
    their launchers in the environment's ``bin`` directory, which need not be
    on PATH when the tests run with an explicit interpreter path.
    """
    bindir = Path(sys.executable).parent
    for candidate in (bindir / name, bindir / f"{name}.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _cxx_compiler() -> str | None:
    env = os.environ.get("CXX")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"command failed with exit code {proc.returncode}: {' '.join(cmd)}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    return proc


def build_against_installed(source: Path, build: Path, cwd: Path, *defines: str) -> None:
    """Configure `source` with tomofuse_DIR of the installed package (Ninja when available) and
    build it into `build`."""
    cmake = _tool("cmake")
    configure = [cmake, "-S", str(source), "-B", str(build), f"-Dtomofuse_DIR={tomofuse.get_cmake_dir()}",
                 "-DCMAKE_BUILD_TYPE=Release", *defines]
    ninja = _tool("ninja")
    if ninja is not None:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    _run(configure, cwd, timeout=300)
    _run([cmake, "--build", str(build), "--parallel", "2"], cwd, timeout=900)
