"""Pure computations on torch modules and tensors, one module per analysis family.

Nothing here imports Jupyter or the widget side: these functions work in a plain script. The
names load when first used (PEP 562), so that the torch-free modules here (``modes``, ``esd``)
serve a process that reads stored runs without torch.
"""

from importlib import import_module

# public name -> the module that defines it
_WHERE = {
    # relative weight change (WeightScale)
    "relative_weight_change": "rwc", "weight_snapshot": "rwc",
    # layer clustering (WeightScale)
    "cluster_layers": "clustering", "LayerClusters": "clustering",
    # what a model is given: positional and keyword inputs
    "ModelInputs": "inputs",
    # a model outside what an analysis can compute
    "UnsupportedModel": "errors",
    # weight pathways (Feng et al.)
    "pathway_layers": "pathways", "static_radiograph": "pathways", "static_radiographs": "pathways",
    "gated_radiograph": "pathways", "characteristic_maps": "pathways",
    # neuron transformation modes (Lin et al.)
    "neuron_modes": "neurons", "NeuronModes": "neurons", "LayerModes": "neurons",
    # mode decomposition (Li & Huang)
    "fit_power_law": "powerlaw", "PowerLawFit": "powerlaw", "power_law_line": "powerlaw",
    "mode_spectrum": "spectrum", "Spectrum": "spectrum", "mode_truncation_curve": "spectrum",
    # heavy tails of the spectra (WeightWatcher's alpha)
    "tail_exponent": "esd",
    # attraction basins, sharpness and weight alignment (network dynamics, SPEC 4.6)
    "sample_basins": "basins", "SampleBasins": "basins", "weight_basins": "basins",
    "sharpness": "basins", "weight_alignment": "basins",
    # learning phases: change points of those series
    "phase_changes": "phases",
}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'nnmodes_widgets.analysis' has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value      # once loaded, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
