"""Pure computations on torch modules and tensors, one module per analysis family.

Nothing here imports Jupyter or the widget side: these functions work in a plain script.
"""

# relative weight change (WeightScale)
from .rwc import relative_weight_change, weight_snapshot

# layer clustering (WeightScale)
from .clustering import LayerClusters, cluster_layers

# what a model is given: positional and keyword inputs
from .inputs import ModelInputs

# a model outside what an analysis can compute
from .errors import UnsupportedModel

# weight pathways (Feng et al.)
from .pathways import (characteristic_maps, gated_radiograph, pathway_layers, static_radiograph,
                       static_radiographs)

# neuron transformation modes (Lin et al.)
from .neurons import LayerModes, NeuronModes, neuron_modes

# mode decomposition (Li & Huang)
from .powerlaw import PowerLawFit, fit_power_law, power_law_line
from .spectrum import Spectrum, mode_spectrum, mode_truncation_curve

# attraction basins, sharpness and weight alignment (network dynamics, SPEC 4.6)
from .basins import SampleBasins, sample_basins, sharpness, weight_alignment, weight_basins

# learning phases: change points of those series
from .phases import phase_changes

__all__ = [
    "weight_snapshot", "relative_weight_change",
    "cluster_layers", "LayerClusters",
    "pathway_layers", "static_radiograph", "static_radiographs", "gated_radiograph",
    "characteristic_maps",
    "neuron_modes", "NeuronModes", "LayerModes", "ModelInputs", "UnsupportedModel",
    "mode_spectrum", "Spectrum", "fit_power_law", "PowerLawFit", "power_law_line",
    "mode_truncation_curve",
    "sample_basins", "SampleBasins", "weight_basins", "sharpness", "weight_alignment",
    "phase_changes",
]
