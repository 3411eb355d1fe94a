"""The C++ tests of the core (cpp/tests/, GoogleTest), built against the installed package and run
with ctest: kernels against slow references, moves and lifetimes, thread counts, concurrent solves
and allocation failures inside parallel regions.

GoogleTest comes from the system (Debian: ``apt-get install libgtest-dev``; .ci/run installs it).
Where it is missing the test is skipped with that reason -- except under CI (``CI`` set), where a
missing GoogleTest is a failure, so that the C++ tests cannot silently stop running.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from _cmake_tools import _cxx_compiler, _tool, build_against_installed

SOURCE = Path(__file__).resolve().parents[1] / "cpp" / "tests"


def _gtest_available() -> bool:
    roots = [Path("/usr/lib"), Path("/usr/lib64"), Path("/usr/local/lib"), Path("/usr/share")]
    return any(list(r.glob("**/cmake/GTest/GTestConfig.cmake"))[:1] for r in roots if r.is_dir())


def test_cpp_core_tests(tmp_path: Path) -> None:
    missing = []
    if _tool("cmake") is None:
        missing.append("cmake")
    if _cxx_compiler() is None:
        missing.append("a C++ compiler")
    if not _gtest_available():
        missing.append("GoogleTest (apt-get install libgtest-dev)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail("CI must run the C++ tests; missing: " + ", ".join(missing))
        pytest.skip("cannot build the C++ tests; missing: " + ", ".join(missing))
    build = tmp_path / "build"
    build_against_installed(SOURCE, build, tmp_path)
    ctest = str(Path(_tool("cmake")).with_name("ctest"))
    proc = subprocess.run([ctest, "--test-dir", str(build), "--output-on-failure", "--timeout", "600"],
                          capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, f"ctest failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert re.search(r"100% tests passed(, 0 tests failed)? out of [1-9]", proc.stdout), proc.stdout[-3000:]
