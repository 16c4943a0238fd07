"""Brute-force references shared by the tests: explicit loops, exactly summed."""

import math

import torch


def ref_rwc(before: torch.Tensor, after: torch.Tensor, kind: str = "l1") -> float:
    """RWC by an explicit loop over the elements in Python floats (float64), exactly summed."""
    b = before.detach().double().flatten().tolist()
    a = after.detach().double().flatten().tolist()
    if kind == "elementwise":
        terms = [abs(y - x) / abs(x) for x, y in zip(b, a) if x != 0]
        return math.fsum(terms) / len(terms) if terms else math.nan
    if kind == "l1":
        num, den = math.fsum(abs(y - x) for x, y in zip(b, a)), math.fsum(abs(x) for x in b)
    else:
        num = math.sqrt(math.fsum((y - x) ** 2 for x, y in zip(b, a)))
        den = math.sqrt(math.fsum(x * x for x in b))
    return num / den if den != 0 else math.nan
