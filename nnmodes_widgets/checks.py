"""Argument checks shared by the analyses: one wording for one kind of mistake."""

from __future__ import annotations

import operator


def check_int(value, what: str, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; TypeError for non-integers (bool included), ValueError
    below the minimum, both naming ``what``."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value
