"""Argument checks shared by the data modules (chapters 01-10 call them through the loaders).

Each check raises a ``TypeError`` or ``ValueError`` whose message names the argument, shows what was
given, and says what to pass instead, so that a learner's typo is explained where it happens.
"""

from __future__ import annotations

from collections.abc import Iterable


def check_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[low, high]``; raise a clear error otherwise.

    ``bool`` is rejected although it is a subclass of ``int``: ``make_toy("moons", True)`` is a bug.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}; pass a whole number.")
    if value < low or (high is not None and value > high):
        allowed = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {allowed}, got {value}.")
    return value


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise a ``ValueError`` listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; choose one of {valid}.")
    return value
