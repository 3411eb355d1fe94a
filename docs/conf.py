"""Sphinx configuration of the tomofuse documentation (numpydoc API reference, Markdown pages by MyST).

Build: ``python -m sphinx -W -b html docs docs/_build/html`` with the package installed
(``pip install ".[test]"`` brings Sphinx, numpydoc and myst-parser); tests/test_docs.py builds it
without warnings.
"""

from __future__ import annotations

import tomofuse

project = "tomofuse"
author = "tomofuse developers"
copyright = "tomofuse developers, BSD-3-Clause"
release = tomofuse.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.extlinks",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# API reference: members in source order, documented from the public names of each
# subpackage's __all__; the compiled core's signatures come from pybind11.
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": False}
autodoc_typehints = "none"  # numpydoc's "Parameters" sections carry the types, with shapes
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# References in docstrings cite papers as :doi:`10.xxxx/yyyy`.
extlinks = {"doi": ("https://doi.org/%s", "doi:%s")}

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"tomofuse {release}"
html_static_path: list[str] = []
