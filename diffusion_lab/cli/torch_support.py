"""Which PyTorch versions the course supports, checked when ``diffusion_lab`` is imported (chapter 00's set-up).

The range is set once, in pyproject.toml (``[tool.diffusion_lab] supported-torch``); ``SUPPORTED_TORCH``
below is its copy for installed packages, and tests/test_cloud.py fails when the two differ. Installs pin
one tested version inside the range (``torch==2.13.0``: what the tests and ``course.py`` use); the range
says what else the code is written for:

- **at least 2.5**, for the newest APIs the package calls: ``torch.OutOfMemoryError`` (2.5),
  ``torch.is_autocast_enabled(device_type)`` (2.4), ``torch.amp.GradScaler(device)`` (2.3), and NumPy 2
  (the NumPy pin needs torch 2.3 or newer). Older versions lack these and would fail partway through a
  chapter rather than at the start.
- **below 3**: Google Colab and Kaggle ship their own, often newer, PyTorch, and the set-up cell keeps it
  (it is built for their GPUs). A bound at the next minor version would refuse their torch weeks after each
  release, for no measured reason; a new major version is where PyTorch announces breaking changes.

Versions inside the range other than the pin are accepted but not tested here. An unsupported version
stops ``import diffusion_lab`` with one line that says what was found, what is supported and how to fix
it; ``DIFFUSION_LAB_ANY_TORCH=1`` turns that into a warning, for people who want to try anyway.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys
import warnings

SUPPORTED_TORCH = ">=2.5,<3"
ANY_TORCH_ENV = "DIFFUSION_LAB_ANY_TORCH"
TESTED_TORCH = "2.13.0"  # the pin in pyproject.toml; tests/test_cloud.py keeps it equal

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")
_CLAUSE = re.compile(r"^\s*(>=|<)\s*(\d+(?:\.\d+)*)\s*$")


class UnsupportedTorchError(ImportError):
    """The installed PyTorch is outside the range the course supports (the message says how to fix it)."""


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: ``"2.13.0+cu126"`` -> ``(2, 13, 0)``, ``"2.14.0.dev1"`` -> ``(2, 14, 0)``."""
    m = _RELEASE.match(str(version))
    if m is None:
        raise ValueError(f"cannot read a version number from {version!r}; expected something like '2.13.0'")
    return tuple(int(n) for n in m.group(1).split("."))


def parse_range(spec: str) -> list[tuple[str, tuple[int, ...]]]:
    """``">=2.5,<3"`` -> ``[(">=", (2, 5)), ("<", (3,))]``; only ``>=`` and ``<`` clauses are allowed."""
    clauses = []
    for part in spec.split(","):
        m = _CLAUSE.match(part)
        if m is None:
            raise ValueError(f"cannot read {part.strip()!r} in the torch range {spec!r}; write it like '>=2.5,<3'")
        clauses.append((m.group(1), release(m.group(2))))
    return clauses


def _pad(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def is_supported(version: str, spec: str = SUPPORTED_TORCH) -> bool:
    """True when ``version``'s release numbers satisfy every clause of ``spec`` (3.0.0a0 is not below 3)."""
    have = release(version)
    for op, bound in parse_range(spec):
        left, right = _pad(have, bound)
        if (op == ">=" and left < right) or (op == "<" and left >= right):
            return False
    return True


def _escape_hatch() -> bool:
    value = os.environ.get(ANY_TORCH_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UnsupportedTorchError(f"{ANY_TORCH_ENV}={os.environ[ANY_TORCH_ENV]!r} is not understood: set it to 1 to "
                                f"use an unsupported PyTorch anyway, or unset it")


def check_torch_version(version: str, spec: str = SUPPORTED_TORCH) -> None:
    """Raise ``UnsupportedTorchError`` unless ``version`` is in ``spec``; with ``DIFFUSION_LAB_ANY_TORCH=1``, warn."""
    try:
        ok = is_supported(version, spec)
    except ValueError as err:
        raise UnsupportedTorchError(f"diffusion_lab cannot check the installed PyTorch: {err}") from None
    if ok:
        return
    message = (f"diffusion_lab supports torch {spec} and found torch {version}: install a supported version "
               f"(`python3 course.py lab` installs the tested {TESTED_TORCH}; with pip: pip install "
               f"'torch{spec}'), or set {ANY_TORCH_ENV}=1 to try this one anyway")
    if _escape_hatch():
        warnings.warn(f"torch {version} is outside the supported range {spec}; {ANY_TORCH_ENV} is set, so "
                      f"diffusion_lab goes on, untested: a chapter may fail or differ", stacklevel=2)
        return
    raise UnsupportedTorchError(message)


def installed_torch_version() -> str | None:
    """The PyTorch version in use: the imported module's, else the installed package's; None if there is none."""
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "__version__", None):
        return str(torch.__version__)
    try:
        return md.version("torch")
    except md.PackageNotFoundError:
        return None  # no torch at all: the first `import torch` says so itself


def check_installed_torch() -> None:
    """The check ``import diffusion_lab`` runs: the PyTorch in use must be in ``SUPPORTED_TORCH``."""
    version = installed_torch_version()
    if version is not None:
        check_torch_version(version)
