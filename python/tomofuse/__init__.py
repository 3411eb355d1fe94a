"""tomofuse: multimodal (PXCT + TXTM) nanotomography of battery electrodes.

The package implements the method of Müller et al., "Multimodal Nanoscale
Tomographic Imaging for Battery Electrodes": reconstruction of ptychographic
and transmission X-ray tomograms (``ptycho``, ``tomo``), their registration and
fusion (``register``), segmentation into pore / graphite / silicon / CBD / SEI
and silicon particles (``segment``), ray-traced particle-surface analysis
(``analysis``) and single-particle electrochemistry (``echem``); ``pipeline``
runs them from raw files to a report (``report``).  Synthetic electrodes with
ground truth (``phantom``) and simulated acquisitions (``acquire``) test them;
``io`` reads and writes the files, ``distributed`` runs stages on Dask clusters.
Hot loops live in the compiled core ``tomofuse._core``.

Subpackages load on first use (Scientific Python SPEC 1): ``import tomofuse``
is fast and imports neither SimpleITK nor Dask (nor NumPy); ``tomofuse.tomo.fbp``
imports ``tomofuse.tomo`` when it is first touched.
"""

from __future__ import annotations

import importlib as _importlib
from pathlib import Path as _Path

from ._phase import PHASE_COLORS, Phase

__all__ = ["PHASE_COLORS", "Phase", "__version__", "get_include", "get_cmake_dir"]

_HERE = _Path(__file__).resolve().parent


def _subpackages() -> list[str]:
    """Public subpackages and modules (``tomo``, ``register``, ...), found in the package directory."""
    names = []
    for p in _HERE.iterdir():
        if p.name.startswith("_"):
            continue
        if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()):
            names.append(p.stem)
    return sorted(names)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tomofuse")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def __getattr__(name: str):
    """``__version__`` and the public subpackages, made the first time they are used (``tomofuse.tomo``)."""
    if name == "__version__":
        globals()["__version__"] = version = _version()
        return version
    if not name.startswith("_") and name in _subpackages():
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_subpackages()) | {"__version__"})


def get_include() -> str:
    """Directory holding the public C++ headers (``tomofuse/*.hpp``).

    Returns
    -------
    str
        Absolute path; add it to a compiler's include path.
    """
    return str(_HERE / "include")


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
    return str(_HERE / "lib" / "cmake" / "tomofuse")
