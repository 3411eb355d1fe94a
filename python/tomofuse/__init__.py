"""tomofuse: multimodal (PXCT + TXTM) nanotomography of battery electrodes.

The package implements the method of Müller et al., "Multimodal Nanoscale
Tomographic Imaging for Battery Electrodes": reconstruction of ptychographic
and transmission X-ray tomograms (``ptycho``, ``tomo``), their registration and
fusion (``register``), ray-traced particle-surface analysis (``analysis``) and
single-particle electrochemistry (``echem``); multiphase segmentation is the
stage being written.  Synthetic electrodes with ground truth (``phantom``) and
simulated acquisitions (``acquire``) test them; ``io`` reads and writes the
files, ``distributed`` runs stages on Dask clusters.  Hot loops live in the
compiled core ``tomofuse._core``.

Subpackages load on first use (Scientific Python SPEC 1): ``import tomofuse``
is fast and imports neither SimpleITK nor Dask; ``tomofuse.tomo.fbp`` imports
``tomofuse.tomo`` when it is first touched.
"""

from __future__ import annotations

import importlib as _importlib
import importlib.util as _importlib_util
import pkgutil as _pkgutil
from importlib import metadata as _metadata
from pathlib import Path as _Path

from ._phase import Phase

try:
    __version__ = _metadata.version("tomofuse")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["Phase", "__version__", "get_include", "get_cmake_dir"]


def _subpackages() -> list[str]:
    """Public subpackages and modules (``tomo``, ``register``, ...), found in the package directory."""
    here = str(_Path(__file__).resolve().parent)
    return sorted(m.name for m in _pkgutil.iter_modules([here]) if not m.name.startswith("_"))


def __getattr__(name: str):
    """Import a public subpackage the first time it is used (``tomofuse.tomo``)."""
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_subpackages()))


def get_include() -> str:
    """Directory holding the public C++ headers (``tomofuse/*.hpp``).

    Returns
    -------
    str
        Absolute path; add it to a compiler's include path.
    """
    return str(_Path(__file__).resolve().parent / "include")


def get_cmake_dir() -> str:
    """Directory holding ``tomofuseConfig.cmake`` of the installed core.

    A C++ program links the pip-installed core with::

        cmake -Dtomofuse_DIR=$(python -c "import tomofuse; print(tomofuse.get_cmake_dir())")
        # CMakeLists.txt: find_package(tomofuse CONFIG REQUIRED)
        #                 target_link_libraries(app PRIVATE tomofuse::core)

    Returns
    -------
    str
        Absolute path of ``<package>/lib/cmake/tomofuse``.
    """
    return str(_Path(__file__).resolve().parent / "lib" / "cmake" / "tomofuse")
