"""Run settings shared by every chapter: quick mode, device choice, seeding and CPU threads (chapter 00).

Quick mode is the one switch that makes chapters cheap enough for CI: set the environment
variable ``DIFFUSION_LAB_QUICK=1`` before starting Jupyter (or the tests), and every chapter
trains for fewer steps and draws fewer samples. Learners get the full mode by default.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch

QUICK_ENV = "DIFFUSION_LAB_QUICK"
DEVICE_ENV = "DIFFUSION_LAB_DEVICE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

T = TypeVar("T")


def quick_mode() -> bool:
    """True when ``DIFFUSION_LAB_QUICK`` asks for the short CI-sized runs.

    Read afresh on every call, so a notebook may flip it with ``os.environ`` mid-session.
    """
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{QUICK_ENV}={os.environ[QUICK_ENV]!r} is not understood: set it to 1 for quick mode "
        f"or 0 (or leave it unset) for the full course."
    )


def pick(full: T, quick: T) -> T:
    """Choose a setting by mode: ``n_steps = pick(full=2000, quick=50)``."""
    return quick if quick_mode() else full


def mode_name() -> str:
    """``"quick"`` or ``"full"``, for printing at the top of a chapter."""
    return "quick" if quick_mode() else "full"


def hosted_service() -> str | None:
    """``"Colab"`` or ``"Kaggle"`` when the course runs on one of those services, else None.

    The markers are the ones the chapters' set-up cell looks for (tools/cloud_cell.py): there the service's
    own PyTorch and notebook front end are used, not the course's pinned ones.
    """
    if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
        return "Colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "Kaggle"
    return None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to compute on: CUDA, then Apple's MPS, then the CPU.

    ``preferred`` (or the environment variable ``DIFFUSION_LAB_DEVICE``) overrides the
    choice, e.g. ``pick_device("cpu")`` to compare timings. Asking for a device this
    machine does not have is an error rather than a silent fallback.
    """
    choice = preferred if preferred is not None else os.environ.get(DEVICE_ENV) or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"{choice!r} is not a device name; use 'cpu', 'cuda', 'cuda:1' or 'mps'."
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} was asked for but this PyTorch sees no CUDA GPU; use 'cpu'.")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {choice!r} was asked for but Apple's MPS is not available here; use 'cpu'.")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"device {choice!r} is not supported by the course; use 'cpu', 'cuda' or 'mps'.")
    return device


def set_deterministic(on: bool = True) -> None:
    """Make results on a GPU repeatable bit for bit, at some cost in speed (or undo that with ``False``).

    On the CPU the course's results already repeat exactly for a given seed. On CUDA, by default,
    matrix products and convolutions use TF32 (10-bit mantissas) and may pick different algorithms from
    run to run, so the same seed gives samples that differ by a few grey levels. This turns TF32 off,
    asks cuDNN and PyTorch for deterministic algorithms, and sets the cuBLAS workspace they need.
    """
    torch.backends.cuda.matmul.allow_tf32 = not on
    torch.backends.cudnn.allow_tf32 = not on
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = on
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch for a reproducible run and return a CPU ``torch.Generator``.

    The course passes explicit generators to anything random it controls; seeding the
    global generators as well catches the rest (weight initialisation, dropout).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in 0..2**63 - 1, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` CPU threads for torch's operators, then restore the previous count.

    Splitting an operation across threads pays only when it is big: for the tiny tensors of a 2-D toy
    model (a few hundred points, layers of 256), starting and joining threads costs more than the work,
    and on a busy machine a second thread may wait for a core. ``with cpu_threads(1):`` around such loops
    makes them faster (``bench/results/cpu_threads.md``). It has no effect on GPU work.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (a number of threads), got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
