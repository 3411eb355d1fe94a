"""The documentation site (docs/: Sphinx + numpydoc + MyST) builds without a single warning.

The API reference is generated from the installed package's docstrings, so a docstring that
numpydoc or docutils cannot parse (a malformed table, an unknown role, a broken reference) fails
here; the tour is the README's and the conventions page is CONTRIBUTING.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    for module in ("sphinx", "numpydoc", "myst_parser"):
        pytest.importorskip(module, reason=f"the docs need {module} (pip install '.[test]')")
    if not (DOCS / "conf.py").is_file():
        pytest.skip(f"no documentation sources at {DOCS}")
    out = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-W", "--keep-going",
                          str(DOCS), str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"sphinx-build reported:\n{out.stderr}\n{out.stdout}"
    api = (tmp_path / "html" / "api" / "ptycho.html").read_text()
    # the reference holds the public API, options objects included, with their numpydoc sections
    for name in ("tomofuse.ptycho.reconstruct", "tomofuse.ptycho.DMOptions", "tomofuse.ptycho.reconstruct_series"):
        assert f'id="{name}"' in api
    assert "Parameters" in api and "Attributes" in api
    conventions = (tmp_path / "html" / "conventions.html").read_text()
    assert "voxel_size" in conventions and "object_pixel_size" in conventions
