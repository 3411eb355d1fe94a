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

# --------------------------------------------------------------------------- finite elements

_F64 = npt.NDArray[np.float64]
_Preconditioner = Literal["jacobi", "jacobi+constant", "multigrid", "cholesky", "none"]

class SparseOperator:
    """Symmetric sparse matrix on a voxel mesh's CSR pattern; y = A x and a PCG solve."""

    @property
    def rows(self) -> int: ...
    @property
    def nnz(self) -> int: ...
    def matvec(self, x: _F64, *, threads: int = 0) -> _F64:
        """y = A x for x of shape (rows,)."""
    def diagonal(self) -> _F64:
        """The diagonal of A."""
    def csr(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], _F64]:
        """(indptr, indices, data) copies of the matrix in CSR form."""
    def solve(
        self,
        b: _F64,
        x0: _F64 | None = None,
        *,
        rtol: float = 1e-10,
        atol: float = 0.0,
        max_iterations: int = 10000,
        preconditioner: _Preconditioner = "jacobi",
        threads: int = 0,
    ) -> tuple[_F64, dict]:
        """Solve A x = b by preconditioned CG; returns (x, {iterations, residual_norm, rhs_norm, converged})."""

class VoxelMesh:
    """Trilinear hexahedral elements on the nonzero voxels of a (z, y, x) uint8 mask."""

    def __init__(self, mask: npt.NDArray[np.uint8], *, voxel_size: float, threads: int = 0) -> None: ...
    @property
    def shape(self) -> tuple[int, int, int]: ...
    @property
    def voxel_size(self) -> float: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_elements(self) -> int: ...
    @property
    def nnz(self) -> int: ...
    def node_grid(self) -> npt.NDArray[np.int64]:
        """Flat index of each node in the (nz+1, ny+1, nx+1) node grid."""
    def node_id(self) -> npt.NDArray[np.int32]:
        """Node id per node-grid point, -1 where no element touches it."""
    def element_voxel(self) -> npt.NDArray[np.int64]:
        """Flat voxel index of each element."""
    def element_nodes(self) -> npt.NDArray[np.int32]:
        """(num_elements, 8) node ids; local node 4 bz + 2 by + bx."""
    def lumped_mass(self) -> _F64:
        """Volume (m^3) per node: row sums of the consistent mass matrix."""
    def pattern(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
        """(indptr, indices) of the mesh's CSR pattern."""
    def assemble(
        self,
        mass: float = 0.0,
        stiffness: float = 0.0,
        *,
        element_coefficient: _F64 | None = None,
        node_diagonal: _F64 | None = None,
        threads: int = 0,
    ) -> _F64:
        """CSR values of mass * M + stiffness * K (+ diag(node_diagonal))."""
    def operator(
        self,
        mass: float = 0.0,
        stiffness: float = 0.0,
        *,
        element_coefficient: _F64 | None = None,
        node_diagonal: _F64 | None = None,
        threads: int = 0,
    ) -> SparseOperator:
        """The SparseOperator mass * M + stiffness * K (+ diag(node_diagonal))."""

def unit_element_matrices() -> tuple[_F64, _F64]:
    """(mass, stiffness) 8 x 8 matrices of the unit-cube trilinear element."""
