"""Fourier-domain back-projection (the ``method="fourier"`` path of ``fbp``), on finufft.

By the Fourier slice theorem the back-projection of filtered projections ``q_a`` is

    b(x, y) = sum_a q_a(x cos t_a + y sin t_a)
            = sum_a sum_k w_k Q_a(k / L) exp(2 pi i (k / L)(x cos t_a + y sin t_a)) / L   (real part)

with ``Q_a`` the DFT of ``q_a`` zero-padded to ``L`` samples (trigonometric instead of linear
interpolation on the detector).  The double sum is a type-1 non-uniform FFT from the polar
points ``2 pi (k / L)(sin t_a, cos t_a)`` onto the pixel grid: O(A L + N^2 log N) per slice
instead of the O(A N^2) of the direct back-projector (Dowd et al., Proc. SPIE 3772 (1999),
"gridrec"; here the gridding is finufft's exponential-of-semicircle spreading, Barnett et al.,
SIAM J. Sci. Comput. 41, C479 (2019)).

The type-1 transform is assembled from its three steps: finufft spreads the points onto an
upsampled grid (``spreadinterponly``), scipy.fft transforms it, and the result is divided by
the spreading kernel's Fourier transform, which is measured from finufft's own kernel (sampled
at sub-cell offsets and integrated).  Doing the FFT here, rather than inside finufft, lets the
fine grid be a size that scipy.fft handles well (finufft's FFTW plans with FFTW_ESTIMATE, which
at 1280^2 took 30 ms against 8 ms here) and keeps every step deterministic for one thread.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.fft

logger = logging.getLogger(__name__)

#: Relative accuracy requested from finufft's spreader, per precision, and the grid upsampling.
#: float32 asks 1e-4: measured 7e-5 relative RMS on random data (1e-3 would save ~10 % of a
#: slice's time for 1.2e-3 RMS, 4e-3 of the maximum); float64 asks 1e-9.  The 1.25x grid keeps
#: the FFT small (2x costs 2.5x more per slice).
EPS = {np.float32: 1e-4, np.float64: 1e-9}
UPSAMPLING = 1.25


def _kernel_transform(eps: float, dtype, sub: int = 16):
    """``Phi(nu) = integral phi(t) exp(i nu t) dt`` of finufft's spreading kernel ``phi``
    (``t`` in fine-grid cells, ``nu`` in radians per cell), from the kernel itself.

    ``sub`` unit points, each ``sub``-th of a cell further off the grid and far apart from
    each other, are spread onto a probe grid: that samples ``phi`` every ``1 / sub`` cell,
    and the sum of those samples is a quadrature whose error (aliasing at ``sub`` times the
    grid's frequency) is negligible for the smooth, compact kernel.
    """
    import finufft

    cell = 32  # cells between probes: more than the kernel's width at any accuracy
    n = cell * sub
    probe = finufft.Plan(1, (cell, n), n_trans=1, eps=eps, isign=1, dtype=np.dtype(dtype).name, nthreads=1,
                         modeord=0, upsampfac=UPSAMPLING, spreadinterponly=1)
    step = 2 * math.pi / n
    centers = (np.arange(sub) - sub // 2) * cell
    real = np.float64 if np.dtype(dtype) == np.complex128 else np.float32
    probe.setpts(np.zeros(sub, real), ((centers + np.arange(sub) / sub) * step).astype(real))
    row = probe.execute(np.ones(sub, dtype=dtype)).real.astype(np.float64)[cell // 2]  # y = 0: phi(0) = 1 times phi(x)
    offsets = np.arange(-cell // 2, cell // 2)
    t = np.concatenate([offsets - s / sub for s in range(sub)])
    v = np.concatenate([row[n // 2 + c + offsets] for c in centers])
    t, v = t[v != 0], v[v != 0]  # the kernel's support
    return lambda nu: np.cos(np.multiply.outer(nu, t)) @ v / sub


class FourierBackprojector:
    """Back-projection of filtered detector rows for fixed angles and geometry (see
    ``backproject_fourier``); the points, the spreading plan and the deconvolution are made once."""

    def __init__(self, angles: np.ndarray, *, cols: int, center_offset: float, ny: int, nx: int, dtype,
                 threads: int = 0):
        import finufft

        self.real = np.float64 if dtype == np.float64 else np.float32
        self.cplx = np.complex128 if self.real is np.float64 else np.complex64
        self.ny, self.nx, self.threads = ny, nx, threads
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
        powers *= amplitude
        self.point_factor = powers.astype(self.cplx).reshape(-1)
        radius = (2 * math.pi * omega).astype(self.real)
        px = np.multiply.outer(np.cos(angles).astype(self.real), radius)
        py = np.multiply.outer(np.sin(angles).astype(self.real), radius)
        eps = EPS[self.real]
        # the fine grid: at least UPSAMPLING x the slice and twice the kernel's width (finufft's
        # rule; 32 covers every accuracy), even (finufft centers it at m/2)
        self.my = _fast_even(max(32, int(math.ceil(UPSAMPLING * ny))))
        self.mx = _fast_even(max(32, int(math.ceil(UPSAMPLING * nx))))
        self.plan = finufft.Plan(1, (self.my, self.mx), n_trans=1, eps=eps, isign=1, dtype=np.dtype(self.cplx).name,
                                 nthreads=int(threads), modeord=0, upsampfac=UPSAMPLING, spreadinterponly=1)
        self.plan.setpts(py.reshape(-1), px.reshape(-1))
        # the grid is centered (index m/2 at the origin): transforming it without a shift
        # multiplies mode k by (-1)^k; that sign and the kernel's transform are divided out
        phi = _kernel_transform(eps, self.cplx)
        ky = np.arange(ny) - ny // 2
        kx = np.arange(nx) - nx // 2
        fx = phi(2 * math.pi * kx / self.mx) * np.where(kx % 2, -1.0, 1.0)
        fy = fx if (ny, self.my) == (nx, self.mx) else phi(2 * math.pi * ky / self.my) * np.where(ky % 2, -1.0, 1.0)
        self.deconv = np.multiply.outer((1.0 / fy).astype(self.real), (1.0 / fx).astype(self.real))
        # mode k sits at index k mod m of the transformed grid: the negative modes wrap to its end
        self.pieces = [(oy, sy, ox, sx) for oy, sy in _wrapped(ny, self.my) for ox, sx in _wrapped(nx, self.mx)]

    def __call__(self, rows: np.ndarray, out: np.ndarray) -> None:
        """``rows``: (A, cols) filtered detector rows of one slice; ``out``: (ny, nx) result."""
        spectrum = scipy.fft.rfft(rows, n=self.length, axis=1)
        strengths = spectrum.astype(self.cplx, copy=False).reshape(-1) * self.point_factor
        grid = self.plan.execute(strengths)
        modes = scipy.fft.ifft2(grid, norm="forward", workers=max(1, int(self.threads)), overwrite_x=True)
        for oy, sy, ox, sx in self.pieces:
            np.multiply(modes[sy, sx].real, self.deconv[oy, ox], out=out[oy, ox])


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
        finufft and scipy.fft threads (0 = finufft's default, one for scipy.fft).  Spreading
        sums in thread-dependent order, so results may differ in the last bits between
        thread counts.

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
