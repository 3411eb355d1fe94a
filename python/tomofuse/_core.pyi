"""Type stubs for tomofuse._core, the compiled C++ core (pybind11)."""

from math import inf
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

def fft_backend() -> str:
    """The FFT library compiled into the core and its version."""

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

def filter_real_2d(
    frames: npt.NDArray[np.float32],
    response: npt.NDArray[np.float32],
    *,
    pad_ny: int,
    pad_nx: int,
    rigor: Literal["estimate", "measure"] = "estimate",
    threads: int = 0,
) -> npt.NDArray[np.float32]:
    """Edge-pad each (ny, nx) frame of (batch, ny, nx) float32 frames to (pad_ny, pad_nx), multiply its
    rfft2 spectrum by response (pad_ny, pad_nx // 2 + 1) float32, even in ky, inverse-transform and crop:
    a new (batch, ny, nx) float32 array."""

# ------------------------------------------------------------------------------------- tomography

_Real = np.float32 | np.float64
_RealArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def project(
    volume: _RealArray,
    angles: npt.NDArray[np.float64],
    *,
    n_cols: int,
    center_offset: float = 0.0,
    threads: int = 0,
) -> _RealArray:
    """Parallel-beam line integrals (exact intersection lengths, voxel units) of a (nz, ny, nx)
    float32/float64 volume at angles (radians) -> (n_angles, nz, n_cols), dtype of the volume."""

def backproject(
    projections: _RealArray,
    angles: npt.NDArray[np.float64],
    *,
    ny: int,
    nx: int,
    center_offset: float = 0.0,
    threads: int = 0,
) -> _RealArray:
    """The exact adjoint of project(): (n_angles, nz, n_cols) -> (nz, ny, nx)."""

def backproject_linear_row_kernel() -> str:
    """The kernel backproject_linear uses for a lone float32 row here: "avx512f", "avx2" or "portable"."""

def backproject_linear(
    projections: _RealArray,
    angles: npt.NDArray[np.float64],
    *,
    ny: int,
    nx: int,
    center_offset: float = 0.0,
    threads: int = 0,
) -> _RealArray:
    """Pixel-driven back-projection with linear interpolation (the FBP back-projector):
    (n_angles, nz, n_cols) -> (nz, ny, nx), unscaled sum over angles."""

def spread_rays_hermitian(
    samples: npt.NDArray[np.complex64] | npt.NDArray[np.complex128],
    steps: npt.NDArray[np.float64],
    kernel: npt.NDArray[np.float64],
    *,
    rows: int,
    cols: int,
    threads: int = 0,
    out: npt.NDArray[np.complex64] | npt.NDArray[np.complex128] | None = None,
) -> npt.NDArray[np.complex64] | npt.NDArray[np.complex128]:
    """Gridding of the Fourier back-projector: samples (n_rays, n_points) at k * steps[a] (cells;
    rows, columns) spread with the piecewise-polynomial kernel (width, degree + 1) onto the
    Hermitian half (rows/2 + 1, cols) of the grid (row r = frequency r, column c = frequency
    c - cols/2): (G + conj G(-r, -c)) / 2. Same bits for any thread count."""

# ------------------------------------------------------------------------- rasters and ray tracing

def points_in_spheres(
    points: _RealArray,
    centers: _RealArray,
    radii: _RealArray,
    *,
    threads: int = 0,
) -> npt.NDArray[np.bool_]:
    """(n,) whether each of the (n, 3) points lies inside any of the spheres (centers (m, 3),
    radii (m,), same dtype as points; distance <= radius)."""

def trace_rays(
    labels: npt.NDArray[np.uint8],
    particles: npt.NDArray[np.int32],
    origins: npt.NDArray[np.float64],
    directions: npt.NDArray[np.float64],
    self_ids: npt.NDArray[np.int32],
    *,
    max_length: float = inf,
    sei_label: int = 4,
    max_gap: float = 0.0,
    threads: int = 0,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Walk rays (origins, directions (n, 3), voxel coordinates) through a (z, y, x) label volume
    from a particle's surface: (hit_label (n,) uint8, 255 = left the grid or beyond max_length
    (default: no limit), hit_particle (n,) int32, sei_length (n,) float64, NaN if no SEI met)."""

def surface_elements(
    particles: npt.NDArray[np.int32],
    *,
    sigma: float = 2.0,
    threads: int = 0,
) -> tuple[
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int8],
]:
    """Area-correct surface of every particle, one element per voxel face between a particle and
    anything else: (particle (n,), center (n, 3) voxel coordinates, outward unit normal (n, 3),
    area (n,) voxel^2, axis (n,) signed face axis +-1 z, +-2 y, +-3 x)."""

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

# ----------------------------------------------------------------------------------- ptychography

_F32 = npt.NDArray[np.float32]
_U8 = npt.NDArray[np.uint8]

class PtychoScan:
    """Geometry of a far-field ptychographic scan and the DM / ML engines acting on it."""

    def __init__(self, n: int, modes: int, object_shape: tuple[int, int], positions: _F64, *,
                 subpixel_steps: int = 0) -> None: ...
    @property
    def n(self) -> int: ...
    @property
    def subpixel_steps(self) -> int: ...
    @property
    def bins(self) -> npt.NDArray[np.int64]:
        """(K,) probe-shift bin of each pattern."""
    @property
    def bin_shifts(self) -> _F32:
        """(bins, 2) (fy, fx) shift of each bin, pixels."""
    def shifted_probes(self, probe: _Complex64Array, *, threads: int = 0) -> _Complex64Array:
        """(bins, modes, n, n) probe seen by each bin."""
    @property
    def modes(self) -> int: ...
    @property
    def object_shape(self) -> tuple[int, int]: ...
    @property
    def windows(self) -> tuple[npt.NDArray[np.int64], _F32]:
        """(K, 2) window corners (y0, x0) and (K, 2) fractions (fy, fx)."""
    def __len__(self) -> int: ...
    def object_windows(self, object: _Complex64Array, *, threads: int = 0) -> _Complex64Array:
        """(K, n, n) object under each window as the model sees it."""
    def position_equations(self, object: _Complex64Array, probe: _Complex64Array, exit: _Complex64Array, *,
                           workspace: npt.NDArray[np.uint8] | None = None, threads: int = 0) -> _F64:
        """(K, 5) float64 (a11, a12, a22, b1, b2): each pattern's normal equations of a linearized position step."""
    def position_equations_modulus(self, intensities: _F32, mask: _U8 | None, object: _Complex64Array,
                                   probe: _Complex64Array, *, threads: int = 0) -> _F64:
        """(K, 5) float64 (a11, a12, a22, b1, b2): each pattern's Gauss-Newton equations of its position from the
        measured intensities (the far-field amplitude misfit)."""
    def illumination(self, probe: _Complex64Array, *, threads: int = 0) -> _F32:
        """(height, width) probe power summed over the scan."""
    def exit_waves(self, object: _Complex64Array, probe: _Complex64Array, out: _Complex64Array, *,
                   threads: int = 0) -> None: ...
    def dm_iteration(self, amplitudes: _F32, mask: _U8 | None, object: _Complex64Array, probe: _Complex64Array,
                     exit: _Complex64Array, *, update_object: bool = True, update_probe: bool = True,
                     overlap_iterations: int = 1, object_inertia: float = 1e-3, probe_inertia: float = 1e-3,
                     bound: _F64 | None = None, model_error: bool = False,
                     workspace: npt.NDArray[np.uint8] | None = None, reuse_workspace: bool = False,
                     threads: int = 0) -> _F64 | tuple[_F64, _F64]:
        """One difference-map iteration in place; (K,) errors (and model errors). ``workspace``: optional
        uint8 scratch of ``dm_workspace_bytes`` bytes, kept by the caller across iterations;
        ``reuse_workspace=True``: it is the previous call's, unmodified since (its shifted probes are reused
        when the probe and the shifts are those they were computed from; the same result)."""
    @property
    def dm_workspace_bytes(self) -> int: ...
    def object_gather(self, probe: _Complex64Array, waves: _Complex64Array, *,
                      threads: int = 0) -> tuple[_Complex64Array, _F32]: ...
    def probe_gather(self, object: _Complex64Array, waves: _Complex64Array, *,
                     threads: int = 0) -> tuple[_Complex64Array, _F32]: ...
    def ml_gradient(self, intensities: _F32, mask: _U8 | None, object: _Complex64Array, probe: _Complex64Array,
                    far: _Complex64Array, chi: _Complex64Array, *, intensity_floor: float = 1e-6,
                    threads: int = 0) -> tuple[_F64, _Complex64Array, _Complex64Array, _F32, _F32]: ...
    def ml_line_coefficients(self, intensities: _F32, mask: _U8 | None, object: _Complex64Array,
                             probe: _Complex64Array, h_object: _Complex64Array, h_probe: _Complex64Array,
                             far: _Complex64Array, *, chi: _Complex64Array | None = None,
                             intensity_floor: float = 1e-6, threads: int = 0) -> tuple[float, float]: ...
    def ml_iteration(self, intensities: _F32, mask: _U8 | None, object: _Complex64Array, probe: _Complex64Array,
                     state: object, far: _Complex64Array, chi: _Complex64Array, *, start: bool = False,
                     update_object: bool = True, update_probe: bool = True, intensity_floor: float = 1e-6,
                     precond_regularization: float = 1e-2, max_backtracks: int = 10, smoothness: float = 0.0,
                     workspace: npt.NDArray[np.uint8] | None = None, reuse_workspace: bool = False,
                     threads: int = 0) -> tuple[float, float, int, bool]:
        """One ML iteration in place: (objective, alpha, backtracks, restarted). ``workspace``: optional uint8
        scratch of ``ml_workspace_bytes`` bytes keeping the shifted probes' memory from call to call;
        ``reuse_workspace=True``: it is the previous call's, unmodified since (the line search reads the
        shifted probes of the previous call's end point when they are the probe's; the same result)."""
    @property
    def ml_workspace_bytes(self) -> int: ...

# ----------------------------------------------------------------------------------- segmentation

_U8Array = npt.NDArray[np.uint8]

def gaussian_blur(
    volume: npt.NDArray[np.float32],
    sigma: tuple[float, float, float] | list[float],
    *,
    adjoint: bool = False,
    threads: int = 0,
) -> npt.NDArray[np.float32]:
    """Separable sampled Gaussian blur H (or its adjoint) of a (z, y, x) float32 volume with replicated
    edges; sigma in voxels along z, y, x (0 = none). A new float32 array."""


def upsample_linear(
    coarse: npt.NDArray[np.float32],
    factor: int,
    shape: tuple[int, int, int],
    *,
    origin: tuple[int, int, int] = (0, 0, 0),
    out: npt.NDArray[np.float32] | None = None,
    threads: int = 0,
) -> npt.NDArray[np.float32]:
    """Linear interpolation of a field of ``factor``-cube means onto the fine grid of ``shape``: fine
    voxel i at coarse coordinate (i + origin % factor + 0.5) / factor - 0.5 along each axis, end values
    beyond the outer centers; float32, axes z, y, x in turn. Into ``out`` when given."""


def icm(
    data: npt.NDArray[np.float32],
    labels: _U8Array,
    levels: npt.NDArray[np.float32],
    sigma: tuple[float, float, float] | list[float],
    *,
    allowed: _U8Array | None = None,
    pairs: _U8Array | None = None,
    unary: npt.NDArray[np.float32] | None = None,
    data_weight: float = 1.0,
    smoothness: float = 0.0,
    max_sweeps: int = 10,
    min_changes: int = 0,
    cell: int = 0,
    origin: tuple[int, int, int] = (0, 0, 0),
    threads: int = 0,
) -> dict[str, object]:
    """Iterated conditional modes on labels (updated in place) minimizing
    data_weight * |data - H levels[labels]|^2 + smoothness * #unlike 6-neighbor pairs + pair unaries,
    in cells of edge ``cell`` (0 = automatic) on the lattice of a larger volume this one starts at
    ``origin`` of. Returns {'sweeps', 'changes', 'evaluations' (best moves a sweep computed; a voxel
    that moves counts twice: in the sweep's first look and in its cell's visit; the others' decisions
    provably stand), 'energy_before', 'energy_after'}."""

def icm_energy(
    data: npt.NDArray[np.float32],
    labels: _U8Array,
    levels: npt.NDArray[np.float32],
    sigma: tuple[float, float, float] | list[float],
    *,
    pairs: _U8Array | None = None,
    unary: npt.NDArray[np.float32] | None = None,
    data_weight: float = 1.0,
    smoothness: float = 0.0,
    threads: int = 0,
) -> float:
    """The energy icm minimizes, for given labels."""

def shell_moves(
    data: npt.NDArray[np.float32],
    labels: _U8Array,
    levels: npt.NDArray[np.float32],
    sigma: tuple[float, float, float] | list[float],
    components: npt.NDArray[np.int32],
    target: int,
    *,
    pairs: _U8Array | None = None,
    unary: npt.NDArray[np.float32] | None = None,
    data_weight: float = 1.0,
    smoothness: float = 0.0,
    threads: int = 0,
) -> int:
    """Components (int32 ids > 0, in increasing order) turned to ``target`` as a whole where that
    lowers the energy icm minimizes (labels updated in place). Returns the voxels changed."""
