"""Numbers shared by several packages (package-internal; re-exported where they are public)."""

from __future__ import annotations

import math

__all__ = ["FWHM_PER_SIGMA"]

#: ``FWHM = 2 sqrt(2 ln 2) sigma`` of a Gaussian (2.3548...): every resolution in the package is a
#: Gaussian full width at half maximum, converted to a standard deviation with this one number.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
