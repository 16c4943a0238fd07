"""The network-dynamics analyses the monitor runs in the background (SPEC 4.6, after Lin et al.,
arXiv 2501.02436; the quantities as defined in ``analysis.basins`` and ``analysis.phases``):
weight alignment, attraction basins in sample and weight space, and the learning phases found
in the series the monitor records.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis.basins import sample_basins, weight_alignment, weight_basins
from ..analysis.errors import UnsupportedModel
from ..analysis.inputs import as_inputs, call_model, first_tensor
from ..analysis.neurons import MODES, mode_code
from ..analysis.phases import phase_changes
from .jobs import NOTES, REDUCED, STEP, Job, class_labels, live

# Live runs take part of the probe and fewer directions than the functions' defaults, so that
# a run stays a small share of training (the functions called directly take what they are given)
BASIN_SAMPLES = 32           # probe samples whose basins are measured
SAMPLE_DIRECTIONS = 16       # random directions per sample (input space)
WEIGHT_DIRECTIONS = 8        # random filter-normalised directions per layer (weight space)
ALIGNMENT_UNITS = 512        # neurons per layer whose pairs a smaller size samples at full
MAX_PHASES = 16              # phase changes recorded at most (the first ones)
PHASE_MIN_SAMPLES = 8        # samples of a series before it takes part in the phases
# what the phases are found in: (analysis, how its record becomes scalar series)
PHASE_SERIES = ("neuron_modes", "weight_alignment", "sample_basins", "weight_basins")


def alignment(job: Job) -> dict:
    """Mean |cos| between the incoming weight vectors of each layer's neurons: over all pairs at
    full size; at a smaller one, over the pairs of a fixed random sample of ``ALIGNMENT_UNITS``
    x size neurons of each larger layer (an unbiased estimate, said in a note)."""
    if job.size >= 1:
        return {"weight_alignment": weight_alignment(job.model)}
    units = live(ALIGNMENT_UNITS, job.size, 16)
    out = {"weight_alignment": weight_alignment(job.model, units=units)}
    out[NOTES] = {"": f"live: mean |cos| over the pairs of at most {units} neurons of each layer "
                      f"(a fixed random sample; {REDUCED})"}
    return out


def basins(job: Job) -> dict:
    """Over the first ``BASIN_SAMPLES`` probe samples: for one floating-point input, the
    sample-space basin radii, their median per class ("sample_basins", keys "class 0", ...);
    for any input, the weight-space basin radius of each weight layer and of all of them
    ("weight_basins", key "*"), for the cross-entropy against the classes. The classes are the
    probe's labels, else the model's predictions (class scores [B, C])."""
    x, y = job.probe if isinstance(job.probe, tuple) else (job.probe, None)
    inputs = as_inputs(x, job.model).rows(0, live(BASIN_SAMPLES, job.size, 4))
    sample_directions = live(SAMPLE_DIRECTIONS, job.size, 2)
    weight_directions = live(WEIGHT_DIRECTIONS, job.size, 2)
    labels = class_labels(y)
    if labels is not None:
        labels = labels[: inputs.batch]
    out = {}
    images = not inputs.kwargs and len(inputs.args) == 1 and inputs.args[0].is_floating_point()
    if images:      # the input space can be perturbed: sample basins
        samples = sample_basins(job.model, inputs.args[0], labels, directions=sample_directions)
        out["sample_basins"] = {f"class {c}": r for c, r in samples.class_median.items()}
        predicted = torch.tensor(samples.predicted)      # a copy: the result is read-only
    else:           # token ids: only the weights are perturbed
        with torch.no_grad():
            scores = first_tensor(call_model(job.model, inputs))
        if labels is None and (scores is None or scores.ndim not in (2, 3) or scores.shape[-1] < 2):
            raise UnsupportedModel("basins need classes: give probe=(x, y), or a model whose "
                                   "output is class scores [B, C] or next-token logits [B, T, V]")
        predicted = scores.argmax(-1) if scores is not None else None
    targets = labels if labels is not None else predicted
    out["weight_basins"] = weight_basins(job.model, cross_entropy, (inputs, targets),
                                         directions=weight_directions)
    whose = "labels" if labels is not None else "predicted classes"
    space = (f"{sample_directions} directions in input space and " if images else "")
    reduced = f" ({REDUCED})" if job.size < 1 else ""
    out[NOTES] = {"": f"live: basins of the first {inputs.batch} probe samples ({whose}), "
                      f"{space}{weight_directions} per layer in weight space{reduced}; radii as "
                      "defined in SPEC 4.6"}
    return out


def cross_entropy(output, targets) -> torch.Tensor:
    """Cross-entropy of class scores [B, C] (or per-position scores [B, T, V]: next tokens) of a
    model's output (a tensor, or the first tensor of what it returns) against ``targets``."""
    scores = first_tensor(output)
    return F.cross_entropy(scores.flatten(0, -2), targets.flatten())


def dynamics_series(history, step: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The scalar series the phases are found in, up to ``step``: each layer's linear and dead
    neuron shares, weight alignment, the sample-basin median of each class, the weight-basin
    radius of each layer; those with at least ``PHASE_MIN_SAMPLES`` samples."""
    series = {}
    for analysis in PHASE_SERIES:
        for layer in history.layers(analysis):
            steps, values = history.get(analysis, layer)
            if step is not None:
                keep = steps <= step
                steps, values = steps[keep], values[keep]
            if len(steps) < PHASE_MIN_SAMPLES:
                continue
            if analysis == "neuron_modes":
                code = mode_code(values)
                for mode in ("linear", "dead"):
                    share = (code == MODES.index(mode)).mean(axis=1)
                    series[f"{analysis}/{layer}/{mode}"] = (steps, share)
            else:
                series[f"{analysis}/{layer}"] = (steps, values)
    return series


def phases(job: Job) -> dict:
    """The steps where a new phase begins ("phases", key "*": ``MAX_PHASES`` values, NaN after
    the last), from ``phase_changes`` of ``dynamics_series``; recorded at the newest step of
    those series."""
    series = dynamics_series(job.history)
    if not series:
        return {}
    changes = phase_changes(series)[:MAX_PHASES]
    marks = np.full(MAX_PHASES, np.nan)
    marks[: len(changes)] = changes
    newest = max(int(steps[-1]) for steps, _ in series.values())
    return {"phases": {"*": marks}, STEP: newest}


def phases_ready(monitor) -> bool:
    history = monitor.history
    return any(history.count(a) >= PHASE_MIN_SAMPLES for a in PHASE_SERIES)

