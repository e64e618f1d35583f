"""Argument checks shared by every module.

Each check raises :class:`ValueError` with a message that names the argument, the value it got,
and what to change, so that a reader who mistypes a notebook cell learns how to fix it.
"""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value, *, minimum: int | None = None, hint: str = "") -> int:
    """Return ``value`` as an ``int`` after checking it is a whole number ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if minimum is not None and value < minimum:
        extra = f" {hint}" if hint else ""
        raise ValueError(f"{name} must be >= {minimum}, got {value}.{extra}")
    return value


def check_positive_int(name: str, value, hint: str = "") -> int:
    """A whole number >= 1 (a sequence length, a batch size, a width)."""
    return check_int(name, value, minimum=1, hint=hint)


def check_positive_float(name: str, value, hint: str = "") -> float:
    """A finite real number > 0 (a memory budget, a spectral radius); ``inf`` and ``nan`` are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value):
        extra = f" {hint}" if hint else ""
        raise ValueError(f"{name} must be a finite number > 0, got {value}.{extra}")
    if not value > 0:
        extra = f" {hint}" if hint else ""
        raise ValueError(f"{name} must be > 0, got {value}.{extra}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    """One of a fixed set of names (a model family, a padding mode).

    A value that cannot be looked up at all (an unhashable list or dict) is a ``ValueError`` too, not
    the ``TypeError`` that ``value in a_set`` would raise.
    """
    try:
        found = value in choices
    except TypeError:
        found = False
    if not found:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}.")
    return value


def check_heads(d_model, heads) -> tuple[int, int]:
    """``(d_model, heads)`` checked: positive integers, and ``heads`` divides ``d_model`` (each head has
    ``d_model / heads`` channels). The one check of the package for every attention width."""
    d_model = check_positive_int("d_model", d_model)
    heads = check_positive_int("heads", heads, hint="heads is the number of attention heads, e.g. heads=1.")
    if d_model % heads:
        divisors = [h for h in range(1, min(d_model, 16) + 1) if d_model % h == 0]
        raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads}): each head has d_model/heads "
                         f"channels; heads that divide it: {divisors}.")
    return d_model, heads
