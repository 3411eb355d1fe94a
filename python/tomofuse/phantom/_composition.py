"""Electrode recipe (mass fractions) -> phase volume fractions, and morphology."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from .._phase import Phase
from ..materials import DENSITIES, Material, cbd_material

__all__ = ["Composition", "Morphology", "split_options"]


def _require(cond: bool, name: str, expected: str, value: Any) -> None:
    """``ValueError`` if ``cond`` fails for a number (or numbers), ``TypeError`` if ``value`` is none."""
    if not cond:
        items = value if isinstance(value, (tuple, list)) else (value,)
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
            raise TypeError(f"{name} must be {expected}, got {value!r}")
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _finite(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Composition:
    """The electrode recipe of the paper (Experimental section).

    Attributes
    ----------
    siox_wt, graphite_wt, pvdf_wt, carbon_black_wt : float
        Mass fractions of the dry electrode (paper: 0.30, 0.55, 0.10, 0.05);
        they must sum to 1.
    cu_fraction_of_carbon_black : float
        Volume share of the carbon black replaced by carbon-coated Cu
        nanoparticles (paper: 0.5).
    porosity : float
        Volume fraction of resolved pore space (paper's electrode: 30-40 %).
    cbd_porosity : float
        Unresolved nanoporosity inside the carbon-black/binder domain.
    siox_density, graphite_density, pvdf_density, carbon_black_density, cu_density : float
        Bulk densities in kg/m^3.
    """

    siox_wt: float = 0.30
    graphite_wt: float = 0.55
    pvdf_wt: float = 0.10
    carbon_black_wt: float = 0.05
    cu_fraction_of_carbon_black: float = 0.5
    porosity: float = 0.35
    cbd_porosity: float = 0.5
    siox_density: float = DENSITIES["siox"]
    graphite_density: float = DENSITIES["graphite"]
    pvdf_density: float = DENSITIES["pvdf"]
    carbon_black_density: float = DENSITIES["carbon_black"]
    cu_density: float = DENSITIES["copper"]

    def __post_init__(self):
        wts = ("siox_wt", "graphite_wt", "pvdf_wt", "carbon_black_wt")
        for name in wts:
            v = getattr(self, name)
            _require(_finite(v) and 0.0 <= v <= 1.0, name, "a mass fraction in [0, 1]", v)
        total = sum(getattr(self, n) for n in wts)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"composition: mass fractions siox_wt + graphite_wt + pvdf_wt + carbon_black_wt "
                f"must sum to 1, got {total:.6g}"
            )
        _require(self.siox_wt > 0, "siox_wt", "positive (the phantom measures silicon particles)", self.siox_wt)
        _require(
            self.pvdf_wt + self.carbon_black_wt > 0,
            "pvdf_wt + carbon_black_wt",
            "positive",
            self.pvdf_wt + self.carbon_black_wt,
        )
        v = self.cu_fraction_of_carbon_black
        _require(_finite(v) and 0.0 <= v <= 1.0, "cu_fraction_of_carbon_black", "in [0, 1]", v)
        _require(_finite(self.porosity) and 0.0 < self.porosity < 1.0, "porosity", "in (0, 1)", self.porosity)
        _require(
            _finite(self.cbd_porosity) and 0.0 <= self.cbd_porosity < 1.0,
            "cbd_porosity",
            "in [0, 1)",
            self.cbd_porosity,
        )
        for name in ("siox_density", "graphite_density", "pvdf_density", "carbon_black_density", "cu_density"):
            v = getattr(self, name)
            _require(_finite(v) and v > 0, name, "a positive density in kg/m^3", v)

    def volume_fractions(self) -> dict[Phase, float]:
        """Volume fraction of each phase in the electrode.

        The arithmetic:

        1. Volume per unit mass of each solid: ``V_i = w_i / rho_i``.
        2. The CBD domain holds PVDF and carbon black (part of whose volume is
           Cu nanoparticles; replacing volume by volume leaves the volume
           unchanged) and is nanoporous:
           ``V_cbd = (V_pvdf + V_cb) / (1 - cbd_porosity)``.
        3. The resolved solid space ``1 - porosity`` is shared by SiOx,
           graphite and the CBD domain in proportion to
           ``V_siox : V_graphite : V_cbd``.

        For the paper's recipe (30/55/10/5 wt%, densities 2.13, 2.26, 1.78,
        1.8 g/cm^3, CBD nanoporosity 0.5, porosity 0.35): V = 14.08, 24.34,
        (5.62 + 2.78)/0.5 = 16.79 cm^3 per 100 g, so SiOx 25.5 %, graphite
        44.1 %, CBD 30.4 % of the solid space, i.e. 16.6 / 28.7 / 19.8 % of
        the electrode, and 35 % pores.

        Returns
        -------
        dict
            ``{Phase: fraction}`` summing to 1; ``Phase.SEI`` is 0 (SEI grows
            during cycling, see ``Morphology``).
        """
        v_si = self.siox_wt / self.siox_density
        v_gr = self.graphite_wt / self.graphite_density
        v_cbd = (self.pvdf_wt / self.pvdf_density + self.carbon_black_wt / self.carbon_black_density) / (
            1.0 - self.cbd_porosity
        )
        solid = 1.0 - self.porosity
        total = v_si + v_gr + v_cbd
        return {
            Phase.PORE: self.porosity,
            Phase.GRAPHITE: solid * v_gr / total,
            Phase.SILICON: solid * v_si / total,
            Phase.CBD: solid * v_cbd / total,
            Phase.SEI: 0.0,
        }

    def cbd_material(self) -> Material:
        """The CBD as a ``Material`` (for optical constants) from this recipe."""
        return cbd_material(
            pvdf_wt=self.pvdf_wt,
            carbon_black_wt=self.carbon_black_wt,
            cu_fraction_of_carbon_black=self.cu_fraction_of_carbon_black,
            porosity=self.cbd_porosity,
            pvdf_density=self.pvdf_density,
            carbon_black_density=self.carbon_black_density,
            cu_density=self.cu_density,
        )


@dataclass(frozen=True)
class Morphology:
    """Shapes and sizes of the phantom's phases (lengths in meters).

    Attributes
    ----------
    graphite_d50 : float
        Median flake diameter (Timrex SLP30: d50 ~ 16 um).
    graphite_aspect : float
        Flake diameter / thickness (platelets, 3-5).
    graphite_size_sigma : float
        Log-normal sigma of the flake diameter.
    graphite_tilt_deg : float
        Standard deviation of the flake normal's tilt from the z axis (the
        electrode's thickness direction; flakes lie in the electrode plane).
    graphite_max_fraction_of_box : float
        Flakes are capped at this fraction of the smallest box edge so that a
        small volume still holds several of them.
    siox_d50 : float
        Median SiOx particle diameter (a few um).
    siox_size_sigma : float
        Log-normal sigma of the SiOx diameter (polydispersity).
    siox_roughness : float
        Relative amplitude of the smooth radial perturbation of the particles
        (0 = spheres).
    size_scale : float or "auto"
        Factor applied to particle sizes.  ``"auto"`` scales the SiOx size so
        that about ``particles_across`` particles fit along the smallest box
        edge (never enlarging): small demo volumes then still hold a
        representative mix.  CBD and SEI sizes are nanoscale and not scaled.
    particles_across : float
        Used by ``size_scale="auto"``.
    border_margin : float
        Least distance (m) between a SiOx particle and the volume's faces:
        particles are whole inside the volume (their CBD and SEI layers may
        be cut by a face; the truth flags such particles ``touches_border``).
    contact_probability : float
        Probability that a new SiOx particle is placed touching an earlier one.
    contact_overlap : tuple of float
        Range of the overlap depth of touching particles, relative to the
        smaller radius (sets the particle-contact area, paper: ~2 %).
    graphite_contact : float
        Largest share of a SiOx particle's surface a graphite flake may cover.
    cbd_blob_radius : float
        Median radius of the CBD web's grains (m).
    cbd_blob_sigma : float
        Log-normal sigma of the grain radii.
    cbd_neck_length : float
        Length scale (m) of the CBD's preference for necks between particles.
    cbd_coating_thickness : float
        Thickness of the CBD patches coating the SiOx surfaces (m).
    cbd_coverage : float
        Mean share of the SiOx surface covered by CBD (pristine; paper 0.45).
    coverage_spread : float
        Particle-to-particle standard deviation of coverage targets.
    sei_coverage : float
        Mean share of the SiOx surface covered by SEI after cycling (paper 0.53).
    sei_cbd_coverage : float
        Mean CBD coverage after cycling: SEI pushes CBD away (paper 0.32).
    sei_thickness_median : float
        Median over particles of the per-particle mean SEI thickness (m).
    sei_thickness_log_sigma : float
        Log-normal sigma of the per-particle mean thickness (paper's
        interquartile 142-196 nm ~ median 170 nm, sigma 0.25).
    sei_relative_std : tuple of float
        Range of the within-particle thickness std / mean.
    field_terms : int
        Number of plane waves in the smooth random fields on particle surfaces.
    field_wavenumber : tuple of float
        Range of the fields' angular wavenumbers (rad per unit of u . d).
    """

    graphite_d50: float = 16e-6
    graphite_aspect: float = 4.0
    graphite_size_sigma: float = 0.25
    graphite_tilt_deg: float = 12.0
    graphite_max_fraction_of_box: float = 0.6
    siox_d50: float = 5e-6
    siox_size_sigma: float = 0.25
    siox_roughness: float = 0.06
    size_scale: float | str = "auto"
    particles_across: float = 3.2
    border_margin: float = 0.0
    contact_probability: float = 0.2
    contact_overlap: tuple[float, float] = (0.02, 0.08)
    graphite_contact: float = 0.01
    cbd_blob_radius: float = 60e-9
    cbd_blob_sigma: float = 0.3
    cbd_neck_length: float = 150e-9
    cbd_coating_thickness: float = 70e-9
    cbd_coverage: float = 0.45
    coverage_spread: float = 0.08
    sei_coverage: float = 0.53
    sei_cbd_coverage: float = 0.32
    sei_thickness_median: float = 170e-9
    sei_thickness_log_sigma: float = 0.25
    sei_relative_std: tuple[float, float] = (0.25, 0.45)
    field_terms: int = 16
    field_wavenumber: tuple[float, float] = (2.0, 6.0)

    def __post_init__(self):
        pos = (
            "graphite_d50",
            "graphite_aspect",
            "siox_d50",
            "particles_across",
            "cbd_blob_radius",
            "cbd_neck_length",
            "cbd_coating_thickness",
            "sei_thickness_median",
        )
        for name in pos:
            v = getattr(self, name)
            _require(_finite(v) and v > 0, name, "a positive number", v)
        nonneg = ("border_margin", "graphite_size_sigma", "graphite_tilt_deg", "siox_size_sigma", "cbd_blob_sigma",
                  "coverage_spread", "sei_thickness_log_sigma")
        for name in nonneg:
            v = getattr(self, name)
            _require(_finite(v) and v >= 0, name, "a non-negative number", v)
        _require(_finite(self.siox_roughness) and 0 <= self.siox_roughness <= 0.2,
                 "siox_roughness", "in [0, 0.2]", self.siox_roughness)
        for name in ("cbd_coverage", "sei_coverage", "sei_cbd_coverage", "contact_probability",
                     "graphite_max_fraction_of_box", "graphite_contact"):
            v = getattr(self, name)
            _require(_finite(v) and 0.0 <= v <= 1.0, name, "in [0, 1]", v)
        if self.sei_coverage + self.sei_cbd_coverage > 1.0:
            raise ValueError(
                "sei_coverage + sei_cbd_coverage must not exceed 1, got "
                f"{self.sei_coverage + self.sei_cbd_coverage:.3g}"
            )
        if self.sei_cbd_coverage > self.cbd_coverage:
            raise ValueError(
                f"sei_cbd_coverage ({self.sei_cbd_coverage}) cannot exceed cbd_coverage "
                f"({self.cbd_coverage}): SEI pushes CBD away, it does not add CBD"
            )
        if isinstance(self.size_scale, str) and self.size_scale != "auto":
            raise ValueError(f'size_scale must be "auto" or a positive number, got {self.size_scale!r}')
        if self.size_scale != "auto":
            _require(_finite(self.size_scale) and self.size_scale > 0, "size_scale",
                     '"auto" or a positive number', self.size_scale)
        for name in ("contact_overlap", "sei_relative_std", "field_wavenumber"):
            lo, hi = getattr(self, name)
            _require(_finite(lo) and _finite(hi) and 0 <= lo <= hi, name, "a (low, high) range with 0 <= low <= high",
                     getattr(self, name))
        _require(isinstance(self.field_terms, int) and self.field_terms >= 1, "field_terms",
                 "a positive integer", self.field_terms)


def split_options(options: Mapping[str, Any]) -> tuple[Composition, Morphology]:
    """Split ``**composition`` keyword arguments into the two option objects.

    Raises
    ------
    TypeError
        For a keyword that is neither a ``Composition`` nor a ``Morphology`` field.
    """
    comp_fields = {f.name for f in dataclasses.fields(Composition)}
    morph_fields = {f.name for f in dataclasses.fields(Morphology)}
    unknown = sorted(set(options) - comp_fields - morph_fields)
    if unknown:
        raise TypeError(
            f"electrode() got unknown option(s) {unknown}; composition options: {sorted(comp_fields)}; "
            f"morphology options: {sorted(morph_fields)}"
        )
    comp = Composition(**{k: v for k, v in options.items() if k in comp_fields})
    morph_kw = {k: v for k, v in options.items() if k in morph_fields}
    for k in ("contact_overlap", "sei_relative_std", "field_wavenumber"):
        if k in morph_kw:
            morph_kw[k] = tuple(morph_kw[k])
    return comp, Morphology(**morph_kw)

