"""tomofuse: multimodal (PXCT + TXTM) nanotomography of battery electrodes.

The package implements the method of Müller et al., "Multimodal Nanoscale
Tomographic Imaging for Battery Electrodes": reconstruction of ptychographic
and transmission X-ray tomograms, their registration and fusion, multiphase
segmentation, ray-traced particle-surface analysis and single-particle
electrochemistry.  Hot loops live in the compiled core ``tomofuse._core``.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from pathlib import Path as _Path

from ._phase import Phase

try:
    __version__ = _metadata.version("tomofuse")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["Phase", "__version__", "get_include", "get_cmake_dir"]


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
