"""What the analyses raise when a model is outside what they can compute, or its values are."""

from __future__ import annotations

__all__ = ["UnsupportedModel", "NonFiniteValues"]


class UnsupportedModel(ValueError):
    """The model is outside what an analysis can compute exactly, whatever its weights: no
    weight layer, no elementwise activation the forward calls, no input to differentiate,
    normalisation by batch statistics, no classes to average over, ... The message says why.

    A ValueError, so that callers of the analysis functions catch it as before. The monitor
    switches an analysis off for the model when it raises this, and only then: any other
    exception is a fault (a bug, an out-of-memory) that it reports and retries."""


class NonFiniteValues(ValueError):
    """NaN or inf where an analysis needs finite numbers (weights gone bad, or such inputs). The
    monitor flags non-finite weights itself; then this is that condition, not a fault."""
