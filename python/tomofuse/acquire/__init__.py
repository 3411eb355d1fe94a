"""Forward models: simulated TXTM and PXCT acquisitions of phantom electrodes, with their truth.

``txtm`` renders flat/dark-field transmission images (Beer-Lambert with the
phantom's ``beta``, optics blur, optional Fresnel propagation, Poisson noise);
``pxct_phase`` renders the phase projections ptychography delivers (projected
``delta``, blur, random sub-pixel shifts, random constant + linear phase,
wrapped); ``ptycho_scan`` the far-field diffraction patterns of a
ptychographic scan (sub-pixel positions, Poisson noise).  Tests and the demo
use them; stage packages never import them.
"""

from .._constants import FWHM_PER_SIGMA
from ._common import Acquisition
from ._options import PXCTOptions, TXTMOptions
from ._ptycho import ptycho_scan
from ._pxct import pxct_phase
from ._txtm import txtm

__all__ = ["Acquisition", "FWHM_PER_SIGMA", "PXCTOptions", "TXTMOptions", "ptycho_scan", "pxct_phase", "txtm"]
