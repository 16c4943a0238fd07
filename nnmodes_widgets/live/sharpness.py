"""Sharpness as a background analysis: the top eigenvalue of the loss Hessian (SPEC 4.6,
``analysis.sharpness``) on part of the probe, for the edge-of-stability finding (SPEC 15, after
Cohen et al. 2021, arXiv 2103.00065): plain gradient descent at learning rate lr cannot keep the
sharpness above 2 / lr. On by default only under SGD, where that rule applies, and only where
its cost fits the budget."""

from __future__ import annotations

import torch

from ..analysis.basins import sharpness
from ..analysis.inputs import as_inputs, call_model, first_tensor
from .dynamics_jobs import BASIN_SAMPLES, cross_entropy
from .jobs import NOTES, Job, class_labels

ITERATIONS = 10              # power iterations live (the function's default is 20)


def sharpness_run(job: Job) -> dict:
    """The top Hessian eigenvalue of the cross-entropy of the first ``BASIN_SAMPLES`` probe
    samples (against their labels, else the classes the model predicts), with respect to the
    parameters the optimizer trains: "sharpness", key "sharpness"."""
    x, y = job.probe if isinstance(job.probe, tuple) else (job.probe, None)
    inputs = as_inputs(x, job.model).rows(0, BASIN_SAMPLES)
    labels = class_labels(y)
    if labels is None:
        with torch.no_grad():
            targets = first_tensor(call_model(job.model, inputs)).argmax(-1)
    else:
        targets = labels[: inputs.batch]
    trained = set((job.optimizer or {}).get("params") or ())
    params = dict(job.model.named_parameters())
    try:        # the copy's parameters are frozen; the optimizer's ones count here
        for name, p in params.items():
            p.requires_grad_(name in trained or not trained)
        value = sharpness(job.model, cross_entropy, (inputs, targets), iters=ITERATIONS)
    finally:
        for p in params.values():
            p.requires_grad_(False)
    whose = "labels" if labels is not None else "predicted classes"
    return {"sharpness": {"sharpness": value},
            NOTES: {"": f"live: sharpness of the cross-entropy of the first {inputs.batch} probe "
                        f"samples ({whose}), {ITERATIONS} power iterations"}}


def sharpness_ready(monitor) -> bool:
    """Under SGD only: the edge-of-stability rule is about (momentum) gradient descent."""
    return (monitor.optimizer_settings or {}).get("class") == "SGD"

