"""The phase model a segmentation fits: levels, point-spread functions, noise and smoothness.

``PhaseModel`` is what ``segment`` reports in ``Segmentation.thresholds`` and takes back through
``thresholds=`` to fix every fitted quantity (e.g. to segment a second volume of the same
session identically).  All quantities are in the data's own units (the levels of each phase
in each channel) or in metres (point-spread functions), so a model never depends on the
scale or offset that a reconstruction chose.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from .._phase import Phase
from ..materials import cbd_material, phase_optical_constants

__all__ = ["CHANNELS", "PhaseModel", "physical_levels"]

#: Channel names of a fused volume, in order (``tomofuse.register.fuse``).
CHANNELS = ("pxct", "txtm")

_N = len(Phase)


def physical_levels(energies_kev=(6.2, 8.4), cbd=None) -> np.ndarray:
    """Expected level of every phase in each channel, in physical units.

    Channel 0 (PXCT) measures the refractive index decrement ``delta`` at the first
    energy, channel 1 (TXTM) the absorption index ``beta`` at the second (xraylib,
    ``tomofuse.materials.phase_optical_constants``; the CBD of the paper's recipe,
    ``tomofuse.materials.cbd_material``, unless ``cbd`` is given).  Only the
    ordering and the ratios matter to ``segment``; the data's scale and offset are
    fitted.

    Parameters
    ----------
    energies_kev : (2,) floats
        PXCT and TXTM photon energies, keV.
    cbd : tomofuse.materials.Material, optional
        The carbon-black/binder domain's material.

    Returns
    -------
    (2, 5) ndarray of float64
        ``[channel, Phase]``.
    """
    mat = cbd if cbd is not None else cbd_material()
    out = np.empty((2, _N))
    d = phase_optical_constants(float(energies_kev[0]), {Phase.CBD: mat})
    b = phase_optical_constants(float(energies_kev[1]), {Phase.CBD: mat})
    for p in Phase:
        out[0, int(p)] = d[p][0]
        out[1, int(p)] = b[p][1]
    return out


#: Keys of files written before the names lost their unit suffix.
_OLD_NAMES = {"psf_sigma_m": "psf_sigma", "sei_max_distance_m": "sei_max_distance"}


@dataclasses.dataclass(frozen=True, eq=False)
class PhaseModel:
    """Fitted model of a fused volume (``Segmentation.thresholds``).

    Attributes
    ----------
    levels : (2, 5) ndarray
        Level of each ``Phase`` (columns) in each channel (rows: PXCT, TXTM), in the
        channel's own units; NaN for a channel that was not used.  A phase that the
        segmentation does not use (SEI of a pristine electrode) repeats a neighbour's
        level.
    psf_sigma : (2, 3) ndarray
        Standard deviation of each channel's Gaussian point-spread function along
        (z, y, x), metres (FWHM = 2.3548 sigma); filtered back-projection blurs within
        slices more than along the rotation axis, so the two differ.
    noise : (2,) ndarray
        Standard deviation of each channel's noise, channel units.
    correlation_volume : (2,) ndarray
        Number of voxels over which each channel's noise is correlated (>= 1): the data
        terms are divided by it, so that correlated noise is not counted as independent
        evidence.
    smoothness : float
        Weight of a pair of unlike 6-neighbours, in units of the data term (one
        squared noise standard deviation per voxel).
    sei_max_distance : float
        SEI is only a layer on silicon: no voxel farther than this from silicon is SEI.
    """

    levels: np.ndarray
    psf_sigma: np.ndarray
    noise: np.ndarray
    correlation_volume: np.ndarray
    smoothness: float = 2.0
    sei_max_distance: float = 600e-9

    def __post_init__(self):
        lv = np.array(self.levels, dtype=np.float64)
        if lv.shape != (2, _N):
            raise ValueError(f"levels must have shape (2, {_N}) (channel, phase), got {lv.shape}")
        ps = np.array(self.psf_sigma, dtype=np.float64)
        if ps.shape != (2, 3) or not np.all(np.isfinite(ps)) or np.any(ps < 0):
            raise ValueError(f"psf_sigma must be a (2, 3) array of finite lengths >= 0 in metres, got {ps!r}")
        nz = np.array(self.noise, dtype=np.float64)
        cv = np.array(self.correlation_volume, dtype=np.float64)
        if nz.shape != (2,) or cv.shape != (2,):
            raise ValueError("noise and correlation_volume must have shape (2,)")
        for c in range(2):
            if np.all(np.isfinite(lv[c])):
                if not (nz[c] > 0 and math.isfinite(nz[c])):
                    raise ValueError(f"noise[{c}] must be positive and finite for a used channel, got {nz[c]!r}")
                if not (cv[c] >= 1 and math.isfinite(cv[c])):
                    raise ValueError(f"correlation_volume[{c}] must be >= 1, got {cv[c]!r}")
        if not (self.smoothness >= 0 and math.isfinite(self.smoothness)):
            raise ValueError(f"smoothness must be finite and >= 0, got {self.smoothness!r}")
        if not (self.sei_max_distance > 0 and math.isfinite(self.sei_max_distance)):
            raise ValueError(f"sei_max_distance must be a positive length in metres, got {self.sei_max_distance!r}")
        for name, value in (("levels", lv), ("psf_sigma", ps), ("noise", nz), ("correlation_volume", cv)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "smoothness", float(self.smoothness))
        object.__setattr__(self, "sei_max_distance", float(self.sei_max_distance))

    def __eq__(self, other) -> bool:
        if not isinstance(other, PhaseModel):
            return NotImplemented
        return (all(np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True)
                    for n in ("levels", "psf_sigma", "noise", "correlation_volume"))
                and self.smoothness == other.smoothness and self.sei_max_distance == other.sei_max_distance)

    __hash__ = None

    def used(self, channel: int) -> bool:
        """Whether a channel (0 PXCT, 1 TXTM) carries fitted levels."""
        return bool(np.all(np.isfinite(self.levels[channel])))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists and floats; NaN kept) for JSON and file attributes."""
        return {f.name: (getattr(self, f.name).tolist() if isinstance(getattr(self, f.name), np.ndarray)
                         else getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PhaseModel":
        """Inverse of ``to_dict``; unknown keys are an error."""
        if isinstance(values, PhaseModel):
            return values
        if not isinstance(values, Mapping):
            raise TypeError(f"thresholds must be a PhaseModel or a mapping, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        # files written before the unit suffixes left the names (tomofuse 0.1 segmentations)
        values = {_OLD_NAMES.get(k, k): v for k, v in values.items()}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"thresholds: unknown keys {sorted(unknown)}; expected {sorted(names)}")
        missing = {"levels", "psf_sigma", "noise", "correlation_volume"} - set(values)
        if missing:
            raise ValueError(f"thresholds: missing keys {sorted(missing)}")
        return cls(**{k: (np.asarray(v, dtype=np.float64) if k in ("levels", "psf_sigma", "noise",
                                                                     "correlation_volume") else v)
                      for k, v in values.items()})
