"""Type stubs for tomofuse._core, the compiled C++ core (pybind11)."""

from typing import Literal

import numpy as np
import numpy.typing as npt

__version__: str

_Norm = Literal["backward", "ortho", "forward"] | None
_Complex64Array = npt.NDArray[np.complex64]

class Error(RuntimeError):
    """Failure inside the tomofuse core that is not caused by the arguments."""

class InvalidArgument(ValueError):
    """An argument has a bad value."""

class ShapeError(InvalidArgument):
    """An array argument has the wrong shape or memory layout."""

class DTypeError(InvalidArgument, TypeError):
    """An array argument has the wrong dtype."""

def version() -> str:
    """Version of the loaded libtomofuse_core."""

def default_threads() -> int:
    """Number of threads used when a function is called with threads=0."""

def set_default_threads(n: int) -> None:
    """Set the number of threads used for threads=0; n=0 restores the automatic default."""

def openmp_enabled() -> bool:
    """Whether the core was compiled with OpenMP."""

def fft2(
    a: _Complex64Array,
    *,
    inverse: bool = False,
    norm: _Norm = "backward",
    threads: int = 0,
    out: _Complex64Array | None = None,
) -> _Complex64Array:
    """2-D FFT over the last two axes of a C-contiguous complex64 array (ndim >= 2)."""

class FFTPlan2D:
    """Reusable 2-D complex64 FFT of a fixed frame shape (ny, nx)."""

    def __init__(
        self, ny: int, nx: int, *, rigor: Literal["estimate", "measure"] = "estimate"
    ) -> None: ...
    @property
    def ny(self) -> int: ...
    @property
    def nx(self) -> int: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def rigor(self) -> Literal["estimate", "measure"]: ...
    def forward(
        self,
        a: _Complex64Array,
        out: _Complex64Array | None = None,
        *,
        norm: _Norm = "backward",
        threads: int = 0,
    ) -> _Complex64Array:
        """Forward FFT of a (..., ny, nx) complex64 array."""
    def backward(
        self,
        a: _Complex64Array,
        out: _Complex64Array | None = None,
        *,
        norm: _Norm = "backward",
        threads: int = 0,
    ) -> _Complex64Array:
        """Inverse FFT of a (..., ny, nx) complex64 array."""
