"""The phase model a segmentation fits: levels, point-spread functions, noise and smoothness.

``PhaseModel`` is what ``segment`` reports in ``Segmentation.thresholds`` and takes back through
``thresholds=`` to fix every fitted quantity (e.g. to segment a second volume of the same
session identically).  All quantities are in the data's own units (the levels of each phase
in each channel) or in meters (point-spread functions), so a model never depends on the
scale or offset that a reconstruction chose.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Mapping, Optional

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
        segmentation does not use (SEI of a pristine electrode) repeats a neighbor's
        level.
    psf_sigma : (2, 3) ndarray
        Standard deviation of each channel's Gaussian point-spread function along
        (z, y, x), meters (FWHM = 2.3548 sigma); filtered back-projection blurs within
        slices more than along the rotation axis, so the two differ.
    noise : (2,) ndarray
        Standard deviation of each channel's noise, channel units.
    correlation_volume : (2,) ndarray
        Number of voxels over which each channel's noise is correlated (>= 1): the data
        terms are divided by it, so that correlated noise is not counted as independent
        evidence.
    smoothness : float
        Weight of a pair of unlike 6-neighbors, in units of the data term (one
        squared noise standard deviation per voxel).
    sei_max_distance : float
        SEI is only a layer on silicon: no voxel farther than this from silicon is SEI.
    fit_path : dict or None
        How the fit reached the model, which the labeling replays so that a model given back
        labels a volume exactly as the fit did: ``start`` (the initial cuts of the main
        channel, ``edges`` in its units and the phase ``codes`` between them, and ``split``,
        ``[channel, cut, order]`` of graphite vs silicon, or None), ``rounds`` (per fitting
        round its ``levels``, ``psf_sigma``, ``noise`` and ``correlation_volume``, as above)
        and ``model`` (those four of the final model).  A model whose four quantities no
        longer equal ``model`` (edited by hand) is labeled without its path, as is one
        without a path: from the midpoints between its levels.
    """

    levels: np.ndarray
    psf_sigma: np.ndarray
    noise: np.ndarray
    correlation_volume: np.ndarray
    smoothness: float = 2.0
    sei_max_distance: float = 600e-9
    fit_path: Optional[Mapping[str, Any]] = None

    def __post_init__(self):
        lv = np.array(self.levels, dtype=np.float64)
        if lv.shape != (2, _N):
            raise ValueError(f"levels must have shape (2, {_N}) (channel, phase), got {lv.shape}")
        ps = np.array(self.psf_sigma, dtype=np.float64)
        if ps.shape != (2, 3) or not np.all(np.isfinite(ps)) or np.any(ps < 0):
            raise ValueError(f"psf_sigma must be a (2, 3) array of finite lengths >= 0 in meters, got {ps!r}")
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
            raise ValueError(f"sei_max_distance must be a positive length in meters, got {self.sei_max_distance!r}")
        for name, value in (("levels", lv), ("psf_sigma", ps), ("noise", nz), ("correlation_volume", cv)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "smoothness", float(self.smoothness))
        object.__setattr__(self, "sei_max_distance", float(self.sei_max_distance))
        if self.fit_path is not None:
            object.__setattr__(self, "fit_path", _canonical_path(self.fit_path))

    def __eq__(self, other) -> bool:
        if not isinstance(other, PhaseModel):
            return NotImplemented
        return (all(np.array_equal(getattr(self, n), getattr(other, n), equal_nan=True)
                    for n in _FITTED)
                and self.smoothness == other.smoothness and self.sei_max_distance == other.sei_max_distance
                and _same_values(self.fit_path, other.fit_path))

    __hash__ = None

    def used(self, channel: int) -> bool:
        """Whether a channel (0 PXCT, 1 TXTM) carries fitted levels."""
        return bool(np.all(np.isfinite(self.levels[channel])))

    def replays_fit(self) -> bool:
        """Whether the labeling replays ``fit_path``: there is one and the model is still the one it
        reached (not edited since)."""
        if self.fit_path is None:
            return False
        end = self.fit_path["model"]
        return all(np.array_equal(getattr(self, n), np.asarray(end[n], dtype=np.float64), equal_nan=True)
                   for n in _FITTED)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists and floats; NaN kept) for JSON and file attributes."""
        return {f.name: (getattr(self, f.name).tolist() if isinstance(getattr(self, f.name), np.ndarray)
                         else copy.deepcopy(getattr(self, f.name))) for f in dataclasses.fields(self)}

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
        missing = set(_FITTED) - set(values)
        if missing:
            raise ValueError(f"thresholds: missing keys {sorted(missing)}")
        return cls(**{k: (np.asarray(v, dtype=np.float64) if k in _FITTED else v) for k, v in values.items()})


#: The fitted array quantities of a ``PhaseModel`` (and of each round of its ``fit_path``).
_FITTED = ("levels", "psf_sigma", "noise", "correlation_volume")
_FITTED_SHAPES = {"levels": (2, _N), "psf_sigma": (2, 3), "noise": (2,), "correlation_volume": (2,)}


def _canonical_path(path: Mapping[str, Any]) -> dict[str, Any]:
    """``fit_path`` checked and as plain values (lists of floats, NaN kept), whatever it was given as
    (arrays from the fit, lists from JSON, None for NaN from a file)."""
    try:
        return _canonical_path_of(path)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        raise ValueError(text if text.startswith("fit_path") else f"fit_path: malformed ({text})") from None


def _canonical_path_of(path: Mapping[str, Any]) -> dict[str, Any]:
    def floats(v, shape, what):
        a = np.array(v, dtype=np.float64)  # None (a file's NaN) becomes NaN
        if a.shape != shape:
            raise ValueError(f"fit_path: {what} must have shape {shape}, got {a.shape}")
        return a.tolist()

    def fitted(d, what):
        if not isinstance(d, Mapping) or set(d) != set(_FITTED):
            raise ValueError(f"fit_path: {what} must be a mapping of {list(_FITTED)}")
        return {n: floats(d[n], _FITTED_SHAPES[n], f"{what}.{n}") for n in _FITTED}

    if not isinstance(path, Mapping) or set(path) != {"start", "rounds", "model"}:
        raise ValueError("fit_path must be a mapping of 'start', 'rounds' and 'model' (PhaseModel.fit_path), "
                         f"got {path!r:.200}")
    st = path["start"]
    if not isinstance(st, Mapping) or set(st) != {"edges", "codes", "split"}:
        raise ValueError("fit_path: start must be a mapping of 'edges', 'codes' and 'split'")
    edges = np.asarray(st["edges"], dtype=np.float64).ravel()
    codes = [int(c) for c in np.ravel(st["codes"])]
    if len(codes) != edges.size + 1 or not all(0 <= c < _N for c in codes) or not np.all(np.isfinite(edges)):
        raise ValueError(f"fit_path: start needs finite edges and one phase code more than edges, got "
                         f"{edges.size} edges and codes {codes}")
    split = st["split"]
    if split is not None:
        if len(split) != 3 or int(split[0]) not in (0, 1) or not math.isfinite(float(split[1])):
            raise ValueError(f"fit_path: start.split must be None or [channel 0/1, cut, order], got {split!r}")
        split = [int(split[0]), float(split[1]), float(split[2])]
    rounds = path["rounds"]
    if not isinstance(rounds, (list, tuple)) or not rounds:
        raise ValueError("fit_path: rounds must be a non-empty list")
    return {"start": {"edges": edges.tolist(), "codes": codes, "split": split},
            "rounds": [fitted(r, f"rounds[{i}]") for i, r in enumerate(rounds)],
            "model": fitted(path["model"], "model")}


def _same_values(a, b) -> bool:
    """Nested plain values equal, NaN equal to NaN."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same_values(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_values(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    return a == b
