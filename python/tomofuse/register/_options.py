"""Options of ``register``: which stages, the B-spline grid, the resolution, the acceptance rule, the backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .. import _validate as check

__all__ = ["BACKENDS", "HOLDOUTS", "RegistrationOptions", "STAGES"]

STAGES = ("rigid", "bspline")
BACKENDS = ("simpleitk", "elastix")
HOLDOUTS = ("mattes", "edges")


def _names(value, name: str, options: Sequence[str], *, ordered: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {options}, got {value!r}") from None
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{name} must be a sequence of {options}, got {value!r}")
    bad = (not names or any(n not in options for n in names) or len(set(names)) != len(names)
           or (ordered and list(names) != sorted(names, key=options.index)))
    if bad:
        kind = "ordered " if ordered else ""
        raise ValueError(f"{name} must be a non-empty {kind}subset of {options}, got {value!r}")
    return names


@dataclass(frozen=True)
class RegistrationOptions:
    """How ``register`` registers: stages, B-spline grid, moving resolution, acceptance rule, backend.

    Change one field with ``dataclasses.replace(RegistrationOptions(), stages=("rigid",))``.

    Attributes
    ----------
    stages : sequence of {"rigid", "bspline"}
        Stages to run, in this order.
    bspline_grid : float, optional
        B-spline control-point spacing in meters.  Default: the larger of 5x the
        moving resolution (FWHM) and the smallest edge of the fixed field of view
        (one cell: finer grids let mutual information fit the structures only one
        modality shows, see bench/compare_registration.py); never finer than 4x
        the moving resolution (a finer request is raised to it with a warning).
        A finer grid than the default is less well guarded by the held-out
        rule: on two members of bench/registration_family.py (warps of 35-40 nm
        at 1-4 um wavelengths) 640 nm grids were kept and took the TRE from
        17.8 / 17.5 nm (rigid) to 19.6 / 30.6 nm, where elastix reaches 10.5 /
        12.3 nm with that grid; check such a result against landmarks.
    moving_resolution : float, optional
        Moving (TXTM) resolution as a Gaussian FWHM in meters.  Default:
        estimated from the blur that best matches the fixed image to the moving
        one after the rigid stage (assuming a PXCT FWHM of ~2 fixed voxels).
    holdout : sequence of {"mattes", "edges"}
        Held-out similarities whose relative changes, summed, must exceed 0.01 for
        the B-spline stage to be kept: Mattes MI of the intensities and the
        correlation of edge strengths (gradient magnitudes).  Both by default: on
        simulated pairs a B-spline fitted on MI also raises the held-out MI when
        there is no deformation at all (moving points by ~5 nm), while it lowers
        the edge correlation more; ``("mattes",)`` is the looser rule.
    backend : {"simpleitk", "elastix"}
        ``"elastix"`` (the paper's tool) needs the optional ``itk-elastix``
        package; it runs after the same automatic start.
    """

    stages: tuple = STAGES
    bspline_grid: Optional[float] = None
    moving_resolution: Optional[float] = None
    holdout: tuple = HOLDOUTS
    backend: str = "simpleitk"

    def __post_init__(self):
        object.__setattr__(self, "stages", _names(self.stages, "stages", STAGES, ordered=True))
        object.__setattr__(self, "holdout", _names(self.holdout, "holdout", HOLDOUTS, ordered=False))
        check.choice(self.backend, "backend", BACKENDS)
        for name in ("bspline_grid", "moving_resolution"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check.positive_length(value, name))
