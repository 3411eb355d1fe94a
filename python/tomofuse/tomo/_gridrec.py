"""Fourier-domain back-projection (the ``method="fourier"`` path of ``fbp``).

By the Fourier slice theorem the back-projection of filtered projections ``q_a`` is

    b(x, y) = sum_a q_a(x cos t_a + y sin t_a)
            = sum_a sum_k w_k Q_a(k / L) exp(2 pi i (k / L)(x cos t_a + y sin t_a)) / L   (real part)

with ``Q_a`` the DFT of ``q_a`` zero-padded to ``L`` samples (trigonometric instead of linear
interpolation on the detector).  The double sum is a type-1 non-uniform FFT from the polar
points ``2 pi (k / L)(sin t_a, cos t_a)`` onto the pixel grid: O(A L + N^2 log N) per slice
instead of the O(A N^2) of the direct back-projector (Dowd et al., Proc. SPIE 3772 (1999),
"gridrec"; the gridding kernel is the exponential of semicircle of Barnett, Magland &
af Klinteberg, SIAM J. Sci. Comput. 41, C479 (2019)).

The transform is assembled from three steps:

1. the core spreads the polar points onto the Hermitian half of a grid 1.25x the slice
   (``_core.spread_rays_hermitian``: the image is real, so half the plane carries it all, and
   the angles of [0, pi) need no other half);
2. scipy.fft transforms it, complex along y and complex-to-real along x (half the work of a
   complex 2-D transform, and only the rows the slice needs take the second step);
3. the result is divided by the kernel's Fourier transform, integrated from the very
   polynomials the core evaluates.

At 1024^2 x 1024 angles the spreading takes 9 ms per slice against 21-26 ms in finufft's
spreader (finufft 2.5.1, same points, 1e-4), and a float32 slice is 1.4-2.7x more accurate
than finufft's type-1 transform at 1e-4 (3e-5 relative RMS, finufft's own float32 floor).
Every step sums in a fixed order: identical results for any thread count.
"""

from __future__ import annotations

import functools
import logging
import math
import threading

import numpy as np
import scipy.fft

from .. import _core

logger = logging.getLogger(__name__)

#: The spreading kernel per precision: taps per axis (even), and the grid upsampling.  The
#: exponential of semicircle of width W on a grid UPSAMPLING x the slice has errors near
#: exp(-beta), beta = 0.97 pi W (1 - 1 / (2 UPSAMPLING)) (Barnett, Magland & af Klinteberg 2019,
#: Sec. 4): 4e-7 for float32's 8 taps (6 taps, 2e-5, measured 5e-4 relative RMS on a 256^2
#: slice for 5 % less time: the row of 8 complex taps is one AVX-512 vector either way), 2e-13
#: for float64's 16.  The 1.25x grid keeps the FFT small (2x costs 2.5x more per slice).
WIDTH = {np.float32: 8, np.float64: 16}
UPSAMPLING = 1.25


@functools.lru_cache(maxsize=None)
def _kernel(width: int):
    """The spreading kernel as the core evaluates it, and its Fourier transform.

    ``phi(t) = exp(beta (sqrt(1 - (2 t / width)^2) - 1))`` for ``|t| < width / 2``, cut into
    ``width`` one-cell pieces, each a polynomial in ``z = 2 f - 1`` (``f``: the fractional part
    of the sample's position; piece ``j`` is ``phi(j - width/2 + 1 - f)``), interpolated at
    Chebyshev nodes; the degree is the smallest even one whose error is within 2x of the
    kernel's own cut-off ``exp(-beta)`` (the edge of the support, where no polynomial does better).

    Returns
    -------
    coef : (width, degree + 1) float64 ndarray
        Monomial coefficients, highest power first (the core's Horner order).
    transform : callable
        ``Phi(nu) = integral phi(t) cos(nu t) dt`` of the polynomial pieces (``nu``: radians per
        cell), by 25-point Clenshaw-Curtis quadrature on each piece (exact to rounding for these
        smooth integrands).
    """
    from numpy.polynomial import chebyshev

    beta = 0.97 * math.pi * width * (1.0 - 1.0 / (2.0 * UPSAMPLING))
    floor = math.exp(-beta)

    def phi(t):
        x = np.clip(2.0 * t / width, -1.0, 1.0)
        return np.where(np.abs(2.0 * t / width) < 1.0, np.exp(beta * (np.sqrt(1.0 - x * x) - 1.0)), 0.0)

    def offsets(j, z):
        return j - width / 2 + 1 - (z + 1.0) / 2.0

    check = np.linspace(-1.0, 1.0, 1001)
    exact = np.array([phi(offsets(j, check)) for j in range(width)])
    for degree in range(4, 64, 2):
        # Chebyshev interpolation at the n = degree + 1 first-kind nodes cos(theta_i):
        # c_k = (2 - [k = 0]) / n sum_i f(cos theta_i) cos(k theta_i)
        theta = math.pi * (np.arange(degree + 1) + 0.5) / (degree + 1)
        basis = np.cos(np.multiply.outer(np.arange(degree + 1), theta)) * (2.0 / (degree + 1))
        basis[0] /= 2.0
        coef = np.zeros((width, degree + 1))
        for j in range(width):
            mono = chebyshev.cheb2poly((basis * phi(offsets(j, np.cos(theta)))).sum(axis=1))
            coef[j, degree + 1 - mono.size:] = mono[::-1]
        if np.abs(np.array([np.polyval(c, check) for c in coef]) - exact).max() <= 2.0 * floor:
            break
    z, w = _clenshaw_curtis(24)
    t = np.concatenate([offsets(j, z) for j in range(width)])
    v = np.concatenate([np.polyval(c, z) * w / 2.0 for c in coef])  # df = dz / 2

    def transform(nu):
        # (a sum, not a BLAS product: no BLAS threads spinning for a small vector)
        return (np.cos(np.multiply.outer(nu, t)) * v).sum(axis=1)

    coef.flags.writeable = False  # cached: one design per width and process
    return coef, transform


class FourierBackprojector:
    """Back-projection of filtered detector rows for fixed angles and geometry (see
    ``backproject_fourier``); the points, the kernel and the deconvolution are made once."""

    def __init__(self, angles: np.ndarray, *, cols: int, center_offset: float, ny: int, nx: int, dtype,
                 threads: int = 0):
        self.real = np.float64 if dtype == np.float64 else np.float32
        self.cplx = np.complex128 if self.real is np.float64 else np.complex64
        self.threads = int(threads)
        # zero padding: a voxel's position u lies within R = hypot(ny, nx)/2 of the center; the
        # periodic interpolant must not bring the detector's next period within reach of any
        # voxel: L > R + cols/2 + |offset| (+ 2 pixels of margin)
        reach = math.hypot(ny, nx) / 2 + abs(center_offset) + 2
        self.length = scipy.fft.next_fast_len(int(math.ceil(max(cols, cols / 2 + reach))), real=True)
        n_freq = self.length // 2 + 1
        omega = np.arange(n_freq) / self.length  # cycles per pixel
        weight = np.full(n_freq, 2.0)
        weight[0] = 1.0
        if self.length % 2 == 0:
            weight[-1] = 1.0
        # column c (center c + 0.5) sits at u = c + 0.5 - cols/2 - center_offset: the DFT over c
        # becomes the transform over u by this phase
        u0 = 0.5 - cols / 2 - center_offset
        # linear interpolation on the detector (the direct method) multiplies the spectrum by the
        # triangle kernel's transform sinc^2; the same response here gives the same resolution
        # (without it, the trigonometric interpolant keeps the full band: Gibbs ripple, lower PSNR)
        amplitude = weight * np.sinc(omega) ** 2 / self.length
        # output modes k run over [-n//2, n - n//2); pixel coordinate = k + (n//2 + 0.5 - n/2)
        sx, sy = nx // 2 + 0.5 - nx / 2, ny // 2 + 0.5 - ny / 2
        # with that shift the point (angle a, frequency k / L) carries the phase
        # exp(2 pi i (k / L) d_a), d_a = sx cos + sy sin - u0: powers of one number per angle
        # (a running product: 4x faster than exp of every point, error ~1e-13)
        d = sx * np.cos(angles) + sy * np.sin(angles) - u0
        powers = np.empty((len(angles), n_freq), dtype=np.complex128)
        powers[:, 0] = 1.0
        powers[:, 1:] = np.exp(2j * math.pi * d / self.length)[:, None]
        np.cumprod(powers, axis=1, out=powers)
        self.point_factor = np.empty(powers.shape, dtype=self.cplx)
        np.multiply(powers, amplitude, out=self.point_factor, casting="same_kind")
        self.kernel, phi = _kernel(WIDTH[self.real])
        # the fine grid: at least UPSAMPLING x the slice and what the core's spreader needs, even
        smallest = max(32, 2 * WIDTH[self.real] + 4)
        self.my = _fast_even(max(smallest, int(math.ceil(UPSAMPLING * ny))))
        self.mx = _fast_even(max(smallest, int(math.ceil(UPSAMPLING * nx))))
        # the point (angle a, frequency k / L) sits at k * steps[a] on the fine grid (cells; rows
        # along x, columns along y): the core spreads it onto the Hermitian half of the grid, x
        # frequencies 0 .. mx/2, y frequencies centered
        self.steps = np.stack([self.mx * np.cos(angles), self.my * np.sin(angles)], axis=1) / self.length
        # rows transform in FFT order; columns are centered (index m/2 at the origin), which
        # multiplies mode k by (-1)^k: that sign and the kernel's transform are divided out
        kx = np.arange(nx) - nx // 2
        ky = np.arange(ny) - ny // 2
        fx = phi(2 * math.pi * kx / self.mx)
        fy = (fx if (ny, self.my) == (nx, self.mx) else phi(2 * math.pi * ky / self.my)) * np.where(ky % 2, -1.0, 1.0)
        self.deconv = np.multiply.outer((1.0 / fy).astype(self.real), (1.0 / fx).astype(self.real))
        # mode k sits at index k mod m of a transformed axis: the negative modes wrap to its end
        self.x_pieces = _wrapped(nx, self.mx)
        self.y_pieces = _wrapped(ny, self.my)
        # work arrays reused slice after slice, and call after call by this thread (fresh ones cost
        # their page faults every time: ~20 % of a 1024^2 slice, and 0.1 s for the 26 MB grid of
        # a 2048^2 slice where the kernel must first compact memory for huge pages)
        self._samples, self._half, self._crossed = _workspace(
            (self.point_factor.shape, (self.mx // 2 + 1, self.my), (ny, self.mx // 2 + 1)), self.cplx)

    def __call__(self, rows: np.ndarray, out: np.ndarray) -> None:
        """``rows``: (A, cols) filtered detector rows of one slice; ``out``: (ny, nx) result."""
        workers = max(1, self.threads)
        spectrum = scipy.fft.rfft(rows, n=self.length, axis=1, workers=workers)
        np.multiply(spectrum, self.point_factor, out=self._samples)
        half = _core.spread_rays_hermitian(self._samples, self.steps, self.kernel, rows=self.mx, cols=self.my,
                                           threads=self.threads, out=self._half)
        # complex transform along y (the columns), then the real one along x
        along_y = scipy.fft.ifft(half, axis=1, norm="forward", workers=workers, overwrite_x=True)
        for oy, sy in self.y_pieces:
            self._crossed[oy] = along_y[:, sy].T
        image = scipy.fft.irfft(self._crossed, n=self.mx, axis=1, norm="forward", workers=workers)
        for ox, sx in self.x_pieces:
            np.multiply(image[:, sx], self.deconv[:, ox], out=out[:, ox])


_WORKSPACE = threading.local()


def _workspace(shapes, dtype) -> list:
    """Arrays of ``shapes`` and ``dtype`` for the calling thread: those of its previous call when
    the shapes are the same (one set per thread is kept), else new ones."""
    key = (tuple(tuple(s) for s in shapes), np.dtype(dtype).str)
    cached = getattr(_WORKSPACE, "arrays", None)
    if cached is None or cached[0] != key:
        _WORKSPACE.arrays = cached = (key, [np.empty(s, dtype=dtype) for s in shapes])
    return cached[1]


def _clenshaw_curtis(n: int):
    """Nodes ``cos(k pi / n)``, k = 0..n, and weights of Clenshaw-Curtis quadrature on [-1, 1]
    (``n`` even; closed form, no linear algebra: no BLAS threads for a small design)."""
    k = np.arange(n + 1)
    j = np.arange(1, n // 2 + 1)
    b = np.where(j == n // 2, 1.0, 2.0)
    w = 1.0 - (b / (4.0 * j * j - 1.0) * np.cos(2.0 * np.multiply.outer(k, j) * math.pi / n)).sum(axis=1)
    w *= np.where((k == 0) | (k == n), 1.0, 2.0) / n
    return np.cos(k * math.pi / n), w


def _wrapped(n: int, m: int) -> list:
    """(output, grid) slice pairs along one axis: modes [-n//2, 0) at the end of a length-m grid,
    modes [0, n - n//2) at its start."""
    h = n // 2
    return [(slice(0, h), slice(m - h, m)), (slice(h, n), slice(0, n - h))]


def _fast_even(n: int) -> int:
    """The smallest size >= n that scipy.fft transforms fast and that is even."""
    m = scipy.fft.next_fast_len(n)
    while m % 2:
        m = scipy.fft.next_fast_len(m + 1)
    return m


def backproject_fourier(filtered: np.ndarray, angles: np.ndarray, *, center_offset: float, ny: int, nx: int,
                        threads: int = 0) -> np.ndarray:
    """``sum_a q_a(x cos t_a + y sin t_a)`` for every slice, by a type-1 NUFFT.

    Same geometry as the core's ``backproject_linear`` (voxel center ``(y, x)`` at
    ``u = (x - nx/2) cos t + (y - ny/2) sin t``, detector column ``u - 0.5 + cols/2 +
    center_offset``, zero beyond the detector).

    Parameters
    ----------
    filtered : (A, rows, cols) float32 or float64 ndarray
    angles : (A,) float64 ndarray, radians
    center_offset : float
        Rotation axis minus ``cols / 2``, pixels.
    ny, nx : int
        Slice size.
    threads : int
        Threads of the core's spreading (0 = the package default) and of scipy.fft (at least
        one); the result does not depend on them.

    Returns
    -------
    (rows, ny, nx) ndarray of the input's precision
    """
    n_angles, rows, cols = filtered.shape
    bp = FourierBackprojector(angles, cols=cols, center_offset=center_offset, ny=ny, nx=nx,
                               dtype=filtered.dtype, threads=threads)
    out = np.empty((rows, ny, nx), dtype=bp.real)
    for z in range(rows):
        bp(filtered[:, z, :], out[z])
    return out
