"""The simulated instruments: options of ``txtm`` and ``pxct_phase`` (frozen, checked when made)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import _validate as check

__all__ = ["PXCTOptions", "TXTMOptions"]


def _put(options, name: str, value) -> None:
    """Store a checked (converted) value in a frozen dataclass."""
    object.__setattr__(options, name, value)


@dataclass(frozen=True)
class TXTMOptions:
    """A full-field transmission X-ray microscope, as ``txtm`` simulates it.

    Attributes
    ----------
    energy_kev : float
        Photon energy, keV (the paper's TXTM: 8.4 and 7.7 keV).
    resolution : float
        FWHM of the Gaussian point-spread function of the optics, meters (0 =
        none); ``sigma = resolution / FWHM_PER_SIGMA``.
    photons : float or None
        Mean photons per detector pixel and frame in the flat field (> 0); None
        gives the noise-free expected counts.
    distance : float
        Propagation (defocus) distance, meters (0 = contact image).
    pixel_size : float, optional
        Detector pixel at the sample, meters, >= the phantom voxel (default:
        the voxel size).  Paper: 27.5 nm.
    n_flats, n_darks : int
        Number of flat (beam, no sample) and dark (no beam) frames (>= 1).
    dark_counts : float
        Mean dark counts per pixel and frame (>= 0; the per-pixel mean varies by
        10 % around it, a fixed pattern).
    beam_variation : float
        Peak relative variation of the smooth beam profile, in [0, 1) (0 = uniform).
    """

    energy_kev: float = 8.4
    resolution: float = 130e-9
    photons: Optional[float] = 1e4
    distance: float = 0.0
    pixel_size: Optional[float] = None
    n_flats: int = 10
    n_darks: int = 10
    dark_counts: float = 100.0
    beam_variation: float = 0.1

    def __post_init__(self):
        _put(self, "energy_kev", check.energy_kev(self.energy_kev, "TXTMOptions.energy_kev"))
        _put(self, "resolution", check.number(self.resolution, "TXTMOptions.resolution", unit="m", minimum=0.0))
        if self.photons is not None:
            _put(self, "photons", check.number(self.photons, "TXTMOptions.photons", minimum=0.0,
                                               exclusive_minimum=True))
        _put(self, "distance", check.number(self.distance, "TXTMOptions.distance", unit="m", minimum=0.0))
        if self.pixel_size is not None:
            _put(self, "pixel_size", check.positive_length(self.pixel_size, "TXTMOptions.pixel_size"))
        _put(self, "n_flats", check.integer(self.n_flats, "TXTMOptions.n_flats", minimum=1))
        _put(self, "n_darks", check.integer(self.n_darks, "TXTMOptions.n_darks", minimum=1))
        _put(self, "dark_counts", check.number(self.dark_counts, "TXTMOptions.dark_counts", minimum=0.0))
        _put(self, "beam_variation", check.number(self.beam_variation,
                                                  "TXTMOptions.beam_variation (a relative variation)",
                                                  minimum=0.0, maximum=1.0, exclusive_maximum=True))


@dataclass(frozen=True)
class PXCTOptions:
    """What a ptychographic tomography scan delivers, as ``pxct_phase`` simulates it.

    Attributes
    ----------
    energy_kev : float
        Photon energy, keV (paper: 6.2 keV).
    resolution : float
        FWHM of the Gaussian point-spread function, meters (the ptychographic
        resolution, paper ~40 nm; 0 = none).
    pixel_size : float, optional
        Pixel of the phase projections (the ptychographic object pixel), meters,
        >= the phantom voxel (default: the voxel size).  Paper: 21.4 nm.
    noise : float
        Standard deviation of additive Gaussian phase noise, rad (>= 0).
    phase_offsets : bool
        Add a random constant (uniform in (-pi, pi)) and linear phase (slopes
        uniform in +-``max_slope`` rad/pixel along rows and columns) per
        projection, as ptychography fixes neither.
    max_slope : float
        See ``phase_offsets``, rad per pixel (>= 0).
    wrap : bool
        Wrap the phase into (-pi, pi] as ptychography delivers it; False keeps
        it unwrapped (offsets included).
    """

    energy_kev: float = 6.2
    resolution: float = 40e-9
    pixel_size: Optional[float] = None
    noise: float = 0.0
    phase_offsets: bool = True
    max_slope: float = 0.02
    wrap: bool = True

    def __post_init__(self):
        _put(self, "energy_kev", check.energy_kev(self.energy_kev, "PXCTOptions.energy_kev"))
        _put(self, "resolution", check.number(self.resolution, "PXCTOptions.resolution", unit="m", minimum=0.0))
        if self.pixel_size is not None:
            _put(self, "pixel_size", check.positive_length(self.pixel_size, "PXCTOptions.pixel_size"))
        _put(self, "noise", check.number(self.noise, "PXCTOptions.noise", unit="rad", minimum=0.0))
        check.flag(self.phase_offsets, "PXCTOptions.phase_offsets")
        _put(self, "max_slope", check.number(self.max_slope, "PXCTOptions.max_slope", unit="rad/pixel", minimum=0.0))
        check.flag(self.wrap, "PXCTOptions.wrap")
