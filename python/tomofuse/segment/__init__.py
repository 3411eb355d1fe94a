"""Segmentation: the fused (PXCT, TXTM) volume into pore / graphite / silicon / CBD / SEI,
and silicon particles as separate objects.

``segment`` fits a model of what each modality sees (phase levels, point-spread functions,
noise; the phase ordering from physics) and labels every voxel so that the blurred labels
explain the PXCT while the TXTM decides graphite vs silicon and CBD vs SEI (Müller et al.,
"Multimodal Nanoscale Tomographic Imaging for Battery Electrodes", Fig. 1e-f).
``segment_blocks`` does the same block by block (with a halo, on Dask workers if given a
client) for volumes larger than memory. ``label_particles`` separates touching particles by a distance-transform watershed.
``confusion_matrix``, ``dice`` and ``match_particles`` measure a result against a reference.
"""

from ._blocks import segment_blocks
from ._classify import CHANNEL_CHOICES, segment
from ._metrics import confusion_matrix, dice, match_particles
from ._model import CHANNELS, PhaseModel, physical_levels
from ._particles import MASK_SMOOTHING, NECK_RATIO, label_particles
from ._result import Segmentation, load_segmentation, save_segmentation

__all__ = ["CHANNELS", "CHANNEL_CHOICES", "MASK_SMOOTHING", "NECK_RATIO", "PhaseModel", "Segmentation",
           "confusion_matrix", "dice", "label_particles", "load_segmentation", "match_particles", "physical_levels",
           "save_segmentation", "segment", "segment_blocks"]
