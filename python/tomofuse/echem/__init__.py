"""Electrochemistry of a single silicon particle in its real embedding (3-D finite elements).

The paper's simulations (Müller et al., "Simulating the electrochemical
behavior", Fig. 3): Li diffuses in a particle cut from the segmentation;
ionic transfer happens only over its free surface (and through the SEI,
electronically insulating, with an ionic resistance of 0.3 ohm cm^2 per nm);
electrons enter only where the CBD touches it, and below ~5.5 % SOC the
non-metallic Li-Si alloy makes them cross the particle.  Trilinear voxel
hexahedra assembled in the compiled core (``tomofuse._core.VoxelMesh``),
preconditioned conjugate gradients, Crank-Nicolson time stepping; the
boundary flux is weighted by each voxel face's true area share.
"""

from ._parameters import FARADAY, GAS_CONSTANT, SiliconParameters
from ._particle import Particle
from ._simulate import Result, simulate
from ._limits import limiting_currents, pseudo_steady_state
from . import scenarios

__all__ = [
    "FARADAY",
    "GAS_CONSTANT",
    "Particle",
    "Result",
    "SiliconParameters",
    "limiting_currents",
    "pseudo_steady_state",
    "scenarios",
    "simulate",
]
