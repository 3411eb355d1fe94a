"""Options of the reconstruction engines: difference map, maximum likelihood, position refinement.

Small frozen dataclasses, checked when made (``TypeError`` for a wrong type,
``ValueError`` for a wrong value), passed to :func:`tomofuse.ptycho.reconstruct` as
``dm=``, ``ml=`` and ``refine_positions=``.  Change one field with
``dataclasses.replace(DMOptions(), fourier_bound=0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import _validate as check

__all__ = ["DMOptions", "MLOptions", "PositionRefinement"]


@dataclass(frozen=True)
class DMOptions:
    """Difference-map engine (Thibault et al., Ultramicroscopy 109, 338 (2009)).

    Attributes
    ----------
    probe_update_start : int
        First DM iteration (0-based) that updates the probe; before it only the
        object is updated.
    overlap_iterations : int
        Alternating object / probe updates per DM iteration (>= 1).
    fourier_bound : float
        Relaxed modulus constraint (the power bound of Thibault et al. 2009), in
        units of the expected Poisson noise of each pattern, ``sum_q min(1/4,
        I_q)`` (the variance of ``sqrt(I)`` is 1/4 for counts >> 1 and below ``I``
        for small counts): a pattern whose amplitude error is below the bound is
        left alone, others move only down to it.  This keeps DM from fitting the
        noise (its iterate drifts and the object degrades otherwise); 0 gives the
        strict constraint.
    fourier_bound_ramp : int
        The bound grows linearly from 0 over this many DM iterations: the strict
        constraint converges fastest while the model is far from the data, the
        bound then stops the noise fitting (0: full bound at once).
    defocus_search : int, optional
        Before the first DM stage, try the initial probe refocused so that its
        beam is 25 %, 50 % and 75 % wider and narrower (a quadratic phase on its
        pupil, Fresnel propagation), run this many DM iterations from each, and
        start from the one with the lowest Fourier error if it beats the probe
        as given by at least 2 %; 0 turns the search off.  None (default): 20
        iterations when the first DM stage has at least 100 (the search then
        adds at most 140 % of DM 100, 9 % of the paper's DM 800 + ML 800), off
        for shorter runs such as previews.  A wrong defocus of
        the initial probe is common (the sample-to-focus distance is rarely
        known to better than tens of percent) and DM does not recover from a
        large one: on the robustness family (``bench/ptycho_family.py``) the
        lowest DM error after 20 iterations picked the best or a near-best
        trial by the object error on every member tried (a guess 40 % too
        small: 0.94 -> 0.35 after DM 20; one 40 % too large: 0.43 -> 0.28).
        Costs 7 x this many DM iterations.
    error_interval : int
        The Fourier error of the model (``Reconstruction.errors``) is computed
        at a stage's first and last iteration and every this many iterations
        (NaN in between); 1 computes it at every iteration.  It costs one more
        FFT per pattern and mode: measured with ``bench/compare_ptycho.py``
        (one thread), 0.094-0.104 s per DM iteration with it every iteration
        and 0.073-0.075 with the default (419 x 128^2), 0.377 and 0.308 at
        400^2.  The engine itself does not read it.
    """

    probe_update_start: int = 1
    overlap_iterations: int = 1
    fourier_bound: float = 1.0
    fourier_bound_ramp: int = 40
    defocus_search: Optional[int] = None
    error_interval: int = 10

    def __post_init__(self):
        check.integer(self.probe_update_start, "DMOptions.probe_update_start", minimum=0)
        check.integer(self.overlap_iterations, "DMOptions.overlap_iterations", minimum=1)
        object.__setattr__(self, "fourier_bound", check.number(self.fourier_bound, "DMOptions.fourier_bound",
                                                               minimum=0.0))
        check.integer(self.fourier_bound_ramp, "DMOptions.fourier_bound_ramp", minimum=0)
        if self.defocus_search is not None:
            check.integer(self.defocus_search, "DMOptions.defocus_search (or None)", minimum=0)
        check.integer(self.error_interval, "DMOptions.error_interval", minimum=1)


@dataclass(frozen=True)
class MLOptions:
    """Maximum-likelihood engine (Thibault & Guizar-Sicairos, New J. Phys. 14, 063004 (2012)).

    Attributes
    ----------
    smoothness : float
        Weight of the Gaussian smoothness prior on the object (sec. 3.4 of the
        paper), relative to the mean illumination of the scanned region (the
        diagonal curvature of the likelihood): ``mu = smoothness * mean(sum_k
        |P|^2) + smoothness_counts``.  ML then minimizes the Poisson negative
        log-likelihood plus the prior, which decreases monotonically; 0 (and
        ``smoothness_counts=0``) gives plain maximum likelihood (the likelihood
        itself is then monotone).
    smoothness_counts : float
        Part of the prior's weight that does not follow the illumination,
        photons per object pixel.  A prior on the object's gradients has a
        fixed weight in a Bayesian sense, whatever the dose; the relative term
        alone leaves it negligible at low doses, where ML then fits the noise
        (the error rises with ML iterations).  It matters below about 1e4
        photons per object pixel (summed over the scan; ``mean(sum_k |P|^2)``
        is logged).  Chosen on the robustness family of
        ``bench/ptycho_family.py`` (DM 100 + ML 100; 0, 8, 25, 60, 100 and
        150 tried): with 100 instead of 0 the member with 85 photons per pixel
        went from an object error of 4.59 to 2.12, the one with 350 from 0.647
        to 0.610, the family's median from 0.213 to 0.203; a textured natural
        image at 3.2e3 photons per pixel lost detail (0.573 -> 0.590, 0.571 with
        25), members above 1e4 photons per pixel by -0.006 to 0.000.  On the
        real Velociprobe scan (994 photons per pixel) the noise that two
        half-scan reconstructions do not share fell from 0.0135 to 0.0076 at
        the same Fourier ring resolution (3.90 / 3.87 px).
    update_probe : bool
        Whether ML refines the probe as well as the object (DM always does).  On
        by default: on the family of independent simulated scans of
        ``bench/ptycho_family.py`` (aberrated probes started from an
        unaberrated guess with the wrong defocus, 1-3 modes, 1e4-1e8 photons,
        position errors) refining the probe gave a lower object error than
        keeping DM's probe on every member measured (e.g. 0.348 -> 0.325,
        1.244 -> 1.199, 0.270 -> 0.266 after DM 100 + ML 100), and on the real
        Velociprobe scan it cut the high-frequency noise that the two half-scan
        reconstructions do not share by a third at the same Fourier ring
        resolution.  (The phantom case the engines were first tuned on, with
        the exact probe as the start, is the exception: there it is neutral.)
    """

    smoothness: float = 0.003
    smoothness_counts: float = 100.0
    update_probe: bool = True

    def __post_init__(self):
        object.__setattr__(self, "smoothness", check.number(self.smoothness, "MLOptions.smoothness", minimum=0.0))
        object.__setattr__(self, "smoothness_counts", check.number(self.smoothness_counts,
                                                                   "MLOptions.smoothness_counts", unit="photons",
                                                                   minimum=0.0))
        check.flag(self.update_probe, "MLOptions.update_probe")


@dataclass(frozen=True)
class PositionRefinement:
    """Refinement of the scan positions during DM and ML.

    DM: every ``interval`` DM iterations from ``start``, each pattern's position
    is moved by a linearized least-squares fit of its exit wave (the model in
    use: the probe shifted over the fixed object crop, or the bilinear object
    window under the probe); the mean shift (a translation of the whole object,
    not observable) is removed and steps are clipped to ``max_step``.  These
    steps are small (the real-space fit also weighs the parts of the exit
    wave's change that the measured moduli do not see), so DM moves positions
    slowly: after DM 100 the rms errors of four family members went 1.33 ->
    1.33, 1.17 -> 1.15, 2.07 -> 1.94 and 1.55 -> 1.09 px.

    ML (off by default; ``ml_start=100`` turns it on): every ``ml_interval``
    ML iterations from ``ml_start``, each position
    takes a Gauss-Newton step of the misfit between the measured and the model
    far-field amplitudes (``PtychoScan.position_equations_modulus``); the part
    of the steps that an affine map of the whole scan explains (translation,
    scale, rotation, shear: weakly determined by the data, they drift) is
    removed and steps are clipped to ``max_step``.  With the exact object and
    probe these steps bring 1-px position errors to the noise level in two or
    three rounds; with a model that is still wrong they can absorb its errors,
    so ML refines positions only with held-out patterns (:class:`HoldOut`) to
    judge it: a pattern moves only when its step predicts a decrease of the
    misfit above the 99 % point of what two parameters fitted to noise give,
    and when the held-out deviance at the next refinement is not below the
    one before the last refinement, that refinement is undone (positions,
    object and probe) and ML refines positions no more.  On the robustness
    family of ``bench/ptycho_family.py`` with ``ml_start=100`` (DM 100 + ML
    300, object error without -> with it) 0.424 -> 0.228, 0.544 -> 0.390,
    0.139 -> 0.098, 0.045 -> 0.022, 0.038 -> 0.030, 0.554 -> 0.521 on members
    with 0.5-2 px position errors, the other six within +0.002 / -0.003.
    Not the default: on a
    scan with exact positions (``bench/ptycho_case.py`` "small") DM 200 + ML
    200 ended 2 % worse (0.0597 -> 0.0611: a refinement undone at ML 110, the
    restarted conjugate directions end elsewhere), and from ML 50 instead of
    100 one family member was worse at ML 100 (0.236 -> 0.315)
    (``bench/ptycho_family_results.txt``).

    Attributes
    ----------
    start : int
        First DM iteration (0-based) that refines positions.
    interval : int
        DM iterations between refinements (>= 1).
    max_step : float
        Largest step per refinement along each axis, object pixels (> 0).
    ml_start : int or None
        First ML iteration (counted from 1 in each ML stage) after which
        positions are refined; None (default): not in ML.
    ml_interval : int
        ML iterations between refinements, a multiple of 10 (the held-out
        patterns are evaluated every 10 iterations).
    """

    start: int = 10
    interval: int = 5
    max_step: float = 0.5
    ml_start: Optional[int] = None
    ml_interval: int = 10

    def __post_init__(self):
        check.integer(self.start, "PositionRefinement.start", minimum=0)
        check.integer(self.interval, "PositionRefinement.interval", minimum=1)
        if self.ml_start is not None:
            check.integer(self.ml_start, "PositionRefinement.ml_start (or None)", minimum=0)
        check.integer(self.ml_interval, "PositionRefinement.ml_interval", minimum=10)
        if self.ml_interval % 10:
            raise ValueError(f"PositionRefinement.ml_interval must be a multiple of 10, got {self.ml_interval}")
        object.__setattr__(self, "max_step", check.number(self.max_step, "PositionRefinement.max_step",
                                                          unit="object pixels", minimum=0.0,
                                                          exclusive_minimum=True))


@dataclass(frozen=True)
class HoldOut:
    """Patterns held out of the engines, whose likelihood chooses the result and stops ML.

    ``max(5, floor(share * K))`` of the ``K`` patterns, evenly spread in scan
    order, are kept out of every engine (none when that is more than 5 % of
    the scan: fewer than 100 patterns).  Every 10 iterations their Poisson
    deviance under the current object and probe is evaluated; their
    positions are aligned to the object and probe before each evaluation in
    DM and once at the start of ML (as the engines refine the others'; not
    with ``refine_positions=False``).

    - ML: the result is the latest iterate whose deviance is not
      significantly above the lowest (the sum of the per-pattern excesses at
      most one standard error of that sum): ML's iterates converge, and a
      deviance that wobbles by less than its own noise should not pick an
      earlier, less converged iterate.  ML stops once no iterate has been
      taken for ``patience`` iterations: at low doses ML (its probe
      refinement most) fits the noise of the patterns it sees, and the
      deviance of those it does not see rises with the object error.
    - DM, when it is the run's last stage: the result is its iterate of the
      lowest held-out deviance.  DM's iterates do not converge at realistic
      doses; the object error wanders (on the robustness family by up to
      50 % between checkpoints) and the held-out deviance with it.  A DM
      stage followed by another hands on its last iterate: its positions are
      the most refined, and DM's object error can rise while they still
      improve (ML does not refine positions).

    The price is the held-out patterns' information.  Chosen on the
    robustness family of ``bench/ptycho_family.py``
    (``bench/ptycho_family_results.txt``).

    Attributes
    ----------
    share : float
        Share of the patterns held out (0 < share <= 0.5).
    patience : int
        ML iterations without a new result candidate after which ML stops (>= 1).
    """

    share: float = 0.025
    patience: int = 50

    def __post_init__(self):
        object.__setattr__(self, "share", check.number(self.share, "HoldOut.share", minimum=0.0,
                                                       exclusive_minimum=True, maximum=0.5))
        check.integer(self.patience, "HoldOut.patience", minimum=1)
