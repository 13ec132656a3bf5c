"""Sampling many at once (chapter 05): in batches, with the memory a request needs said up front, and a
stop with the step where the samples stopped being numbers.

A pipeline runs the sampling loop over ``batch_size`` samples at a time, so the model's working memory
stays that of one batch however many samples are asked for; only the samples themselves (num x the size
of one) grow with ``num``. ``check_memory`` compares that with the memory there is before any work.
``FiniteWatch`` notes, on the device and without waiting for it, the first step whose samples hold NaN or
inf, and reads it once at the end of a batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from diffusion_lab.sampling import Callback

# The samples (float32) and what writing them out needs besides (the CLI's uint8 conversion makes copies).
SAMPLE_COPIES = 3


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: the GPU's free memory, or the machine's available RAM
    (Linux; the total RAM elsewhere). None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(num: int, sample_shape: Sequence[int], device: torch.device) -> None:
    """Raise a one-line ValueError when ``num`` samples of ``sample_shape`` clearly cannot fit on ``device``."""
    per_sample = math.prod(sample_shape) * 4  # float32 bytes
    need = num * per_sample * SAMPLE_COPIES
    have = available_memory(device)
    if have is not None and need > have:
        most = max(1, have // (per_sample * SAMPLE_COPIES))
        raise ValueError(f"{num:,} samples of shape {tuple(sample_shape)} need about {_gib(need)} of memory "
                         f"({_gib(num * per_sample)} for the samples alone) but this {device.type} has "
                         f"{_gib(have)} free: ask for at most about {most:,} at a time and run again with "
                         f"other seeds for more")


class FiniteWatch:
    """A ``sample`` callback that records, without waiting for the device, whether the samples are finite
    after each step, then passes the step on to ``callback``. ``first_bad()`` reads it once: the first loop
    index whose samples hold NaN or inf, or None; ``timesteps`` keeps the step t of each (fractional for the
    samplers of chapter 09)."""

    def __init__(self, callback: Callback | None = None) -> None:
        self.callback = callback
        self.finite: list[torch.Tensor] = []  # one 0-d bool per step, on the device
        self.timesteps: list[float] = []  # the step t each loop index started from

    @property
    def steps(self) -> int:
        """How many steps were watched."""
        return len(self.finite)

    def __call__(self, i: int, t: float, xt: torch.Tensor, pred_x0: torch.Tensor) -> None:
        self.finite.append(torch.isfinite(xt).all())
        self.timesteps.append(t)
        if self.callback is not None:
            self.callback(i, t, xt, pred_x0)

    def first_bad(self) -> int | None:
        if not self.finite:
            return None
        bad = (~torch.stack(self.finite)).nonzero()  # the one read from the device
        return int(bad[0]) if len(bad) else None
