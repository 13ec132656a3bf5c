"""One exercise's test answers: reference solutions written independently of the package, and wrong ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cases:
    right: list[Callable[..., Any]]
    wrong: list[Callable[..., Any]] = field(default_factory=list)
