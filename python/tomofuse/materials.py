"""X-ray optical constants of the electrode's materials, from xraylib [1]_.

The complex refractive index is ``n = 1 - delta + i beta``.  Phase contrast
(PXCT) measures ``delta``, absorption contrast (TXTM) measures ``beta``.  Both
are linear in the partial densities of a mixture's components, so a mixture's
constants are the sums of its components' constants at their partial
densities (volume fraction times bulk density).

Shared by the phantom, the forward models and the segmentation; it knows no
phantom.  Densities are in kg/m^3 (SI); xraylib takes g/cm^3, converted here.

References
----------
.. [1] T. Schoonjans et al., "The xraylib library for X-ray-matter
   interactions. Recent developments", Spectrochim. Acta B 66, 776 (2011).
   :doi:`10.1016/j.sab.2011.09.011`
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from ._phase import Phase
from . import _validate as check

__all__ = [
    "DENSITIES",
    "HC_KEV_M",
    "Component",
    "Material",
    "MATERIALS",
    "PHASE_MATERIALS",
    "cbd_material",
    "optical_constants",
    "phase_optical_constants",
    "wavelength",
]


@dataclass(frozen=True)
class Component:
    """One compound of a material.

    Attributes
    ----------
    formula : str
        Chemical formula as xraylib parses it (``"C"``, ``"SiO"``, ``"C2H2F2"``).
    density : float
        Bulk density of the compound in kg/m^3.
    volume_fraction : float
        Share of the material's volume the compound fills, in [0, 1]; the
        fractions of a material may sum to less than 1 (the rest is void,
        e.g. the nanopores of the carbon-black/binder domain).
    """

    formula: str
    density: float
    volume_fraction: float = 1.0


@dataclass(frozen=True)
class Material:
    """A named material: a mixture of compounds by volume.

    Attributes
    ----------
    name : str
        Identifier used in ``optical_constants``.
    components : tuple of Component
        Compounds with their volume fractions.
    description : str
        Where the composition and densities come from.
    """

    name: str
    components: tuple[Component, ...]
    description: str = ""

    def __post_init__(self):
        if not self.components:
            raise ValueError(f"material {self.name!r}: components must not be empty")
        total = 0.0
        for c in self.components:
            if not (c.density > 0 and math.isfinite(c.density)):
                raise ValueError(
                    f"material {self.name!r}: density of {c.formula!r} must be positive, got {c.density!r}"
                )
            if not (0.0 <= c.volume_fraction <= 1.0):
                raise ValueError(
                    f"material {self.name!r}: volume_fraction of {c.formula!r} must be in [0, 1], "
                    f"got {c.volume_fraction!r}"
                )
            total += c.volume_fraction
        if total > 1.0 + 1e-9:
            raise ValueError(f"material {self.name!r}: volume fractions sum to {total:.6g} > 1")

    @property
    def density(self) -> float:
        """Mass density of the mixture in kg/m^3 (voids count as empty)."""
        return sum(c.density * c.volume_fraction for c in self.components)


#: Bulk densities (kg/m^3) of the electrode's compounds: graphite 2.26 g/cm^3
#: (theoretical; Timrex SLP30), SiO (x ~ 1) 2.13 g/cm^3 (CRC Handbook), PVDF
#: 1.78 g/cm^3 (Kynar HSV900 datasheet), carbon black 1.8 g/cm^3 (Super C60), Cu.
DENSITIES: Mapping[str, float] = {
    "graphite": 2260.0,
    "siox": 2130.0,
    "pvdf": 1780.0,
    "carbon_black": 1800.0,
    "copper": 8960.0,
}


def cbd_material(
    *,
    pvdf_wt: float = 0.10,
    carbon_black_wt: float = 0.05,
    cu_fraction_of_carbon_black: float = 0.5,
    porosity: float = 0.5,
    pvdf_density: float = DENSITIES["pvdf"],
    carbon_black_density: float = DENSITIES["carbon_black"],
    cu_density: float = DENSITIES["copper"],
) -> Material:
    """The carbon-black/binder domain (CBD) of the paper's electrode.

    The recipe's PVDF and carbon black are converted to volumes
    (``V = wt / rho``); ``cu_fraction_of_carbon_black`` of the carbon-black
    volume is replaced by carbon-coated Cu nanoparticles (paper: 50 vol%),
    and the solid is diluted by the domain's unresolved nanoporosity.

    Parameters
    ----------
    pvdf_wt, carbon_black_wt : float
        Mass fractions of PVDF binder and carbon black in the electrode recipe.
    cu_fraction_of_carbon_black : float
        Volume share of the carbon black replaced by Cu nanoparticles, [0, 1].
    porosity : float
        Nanoporosity of the CBD (void volume / domain volume), [0, 1).
    pvdf_density, carbon_black_density, cu_density : float
        Bulk densities in kg/m^3 (PVDF Kynar HSV900 1.78 g/cm^3, Super C60
        carbon black ~1.8 g/cm^3, Cu 8.96 g/cm^3).

    Returns
    -------
    Material
        Named ``"cbd"``.
    """
    for name, value in (("pvdf_wt", pvdf_wt), ("carbon_black_wt", carbon_black_wt)):
        check.number(value, name, minimum=0.0)
    if pvdf_wt + carbon_black_wt <= 0:
        raise ValueError("pvdf_wt + carbon_black_wt must be positive")
    check.number(cu_fraction_of_carbon_black, "cu_fraction_of_carbon_black", minimum=0.0, maximum=1.0)
    check.number(porosity, "porosity", minimum=0.0, maximum=1.0, exclusive_maximum=True)
    for name, value in (("pvdf_density", pvdf_density), ("carbon_black_density", carbon_black_density),
                        ("cu_density", cu_density)):
        check.positive_number(value, name, "kg/m^3")
    v_pvdf = pvdf_wt / pvdf_density
    v_cb = carbon_black_wt / carbon_black_density
    v_solid = v_pvdf + v_cb
    solid = 1.0 - porosity
    parts = (
        Component("C2H2F2", pvdf_density, solid * v_pvdf / v_solid),
        Component("C", carbon_black_density, solid * (1 - cu_fraction_of_carbon_black) * v_cb / v_solid),
        Component("Cu", cu_density, solid * cu_fraction_of_carbon_black * v_cb / v_solid),
    )
    return Material(
        "cbd",
        tuple(p for p in parts if p.volume_fraction > 0),
        "PVDF + carbon black with carbon-coated Cu nanoparticles (paper, Experimental), "
        f"nanoporosity {porosity:g}",
    )


#: The materials of the paper's electrode (bulk densities from ``DENSITIES``).  The SEI is a mix of its common inorganic
#: (LiF 2.64, Li2CO3 2.11 g/cm^3) and organic (lithium ethylene dicarbonate,
#: C4H4Li2O6, ~1.6 g/cm^3) constituents with 20 % porosity (Peled & Menkin,
#: J. Electrochem. Soc. 164, A1703 (2017)).  Pores are dry air.
MATERIALS: Mapping[str, Material] = {
    m.name: m
    for m in (
        Material("graphite", (Component("C", DENSITIES["graphite"]),), "graphite (Timrex SLP30)"),
        Material("siox", (Component("SiO", DENSITIES["siox"]),), "silicon monoxide SiOx, x ~ 1 (BASF)"),
        Material("pvdf", (Component("C2H2F2", DENSITIES["pvdf"]),), "PVDF binder (Kynar HSV900)"),
        Material("carbon_black", (Component("C", DENSITIES["carbon_black"]),), "carbon black (Super C60)"),
        Material("copper", (Component("Cu", DENSITIES["copper"]),), "copper"),
        cbd_material(),
        Material(
            "sei",
            (
                Component("LiF", 2640.0, 0.25),
                Component("Li2CO3", 2110.0, 0.25),
                Component("C4H4Li2O6", 1600.0, 0.30),
            ),
            "solid-electrolyte interphase: LiF / Li2CO3 / lithium ethylene dicarbonate, 20 % porous",
        ),
        Material(
            "air",
            (
                Component("N2", 1.165, 0.7808),
                Component("O2", 1.331, 0.2095),
                Component("Ar", 1.662, 0.0093),
            ),
            "dry air at 20 C, 1 atm",
        ),
    )
}

#: Material of each phase of a label volume.
PHASE_MATERIALS: Mapping[Phase, str] = {
    Phase.PORE: "air",
    Phase.GRAPHITE: "graphite",
    Phase.SILICON: "siox",
    Phase.CBD: "cbd",
    Phase.SEI: "sei",
}


#: h c in keV m (CODATA 2018): a photon of E keV has the wavelength HC_KEV_M / E meters.
HC_KEV_M = 12.398419843320026e-10


def wavelength(energy_kev: float) -> float:
    """Photon wavelength ``h c / E`` in meters for a photon energy in keV (6.2 keV -> 0.19998 nm)."""
    return HC_KEV_M / check.positive_number(energy_kev, "energy_kev", "keV")


@lru_cache(maxsize=512)
def _component_constants(formula: str, density: float, energy_kev: float) -> tuple[float, float]:
    import xraylib

    rho = density * 1e-3  # kg/m^3 -> g/cm^3
    delta = 1.0 - xraylib.Refractive_Index_Re(formula, energy_kev, rho)
    beta = xraylib.Refractive_Index_Im(formula, energy_kev, rho)
    return float(delta), float(beta)


def optical_constants(material: str | Material, energy_kev: float) -> tuple[float, float]:
    """Refractive index decrement ``delta`` and absorption index ``beta``.

    Parameters
    ----------
    material : str or Material
        A name from ``MATERIALS`` (``"graphite"``, ``"siox"``, ``"pvdf"``,
        ``"carbon_black"``, ``"copper"``, ``"cbd"``, ``"sei"``, ``"air"``) or a
        ``Material``.
    energy_kev : float
        Photon energy in keV.

    Returns
    -------
    delta, beta : float
        Dimensionless; ``n = 1 - delta + i*beta``.  The phase shift through
        thickness ``t`` is ``-2*pi*delta*t/lambda`` and the intensity
        transmission ``exp(-4*pi*beta*t/lambda)``.

    Notes
    -----
    Graphite and SiOx have nearly equal ``delta`` at 6.2 keV (PXCT cannot tell
    them apart) while their ``beta`` differ about tenfold (TXTM can); the
    paper's motivation for fusing the two modalities.
    """
    e = check.energy_kev(energy_kev)
    if isinstance(material, str):
        try:
            material = MATERIALS[material]
        except KeyError:
            raise ValueError(
                f"material: unknown material {material!r}; known: {sorted(MATERIALS)}"
            ) from None
    elif not isinstance(material, Material):
        raise TypeError(f"material must be a str or Material, got {type(material).__name__}")
    delta = beta = 0.0
    for c in material.components:
        if c.volume_fraction == 0:
            continue
        d, b = _component_constants(c.formula, c.density * c.volume_fraction, e)
        delta += d
        beta += b
    return delta, beta


def phase_optical_constants(
    energy_kev: float, materials: Mapping[Phase, str | Material] | None = None
) -> dict[Phase, tuple[float, float]]:
    """``(delta, beta)`` for every ``Phase``.

    Parameters
    ----------
    energy_kev : float
        Photon energy in keV.
    materials : mapping, optional
        Phase -> material overrides (defaults: ``PHASE_MATERIALS``).

    Returns
    -------
    dict
        ``{Phase: (delta, beta)}``.
    """
    table = dict(PHASE_MATERIALS)
    if materials:
        table.update({Phase(k): v for k, v in materials.items()})
    return {p: optical_constants(table[p], energy_kev) for p in Phase}
