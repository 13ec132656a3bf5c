"""Mixed precision chosen from what the device really supports (chapter 04).

A preset asks for mixed precision (``TrainConfig.mixed_precision``); the device decides which:

    CPU            bf16 autocast (the shipped CPU checkpoints were trained so)
    CUDA, Ampere+  bf16: native bf16 tensor cores, no loss scaling needed
    older CUDA     fp16 with a gradient scaler: these GPUs report bf16 but only emulate it, with no
                   bf16 convolutions
    Apple MPS      fp32: bf16 needs macOS 14, and fp16 training there is not reliable yet

The choice is recorded in the checkpoint manifest. Weights always stay float32; only the forward
pass runs in the lower precision.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")


def choose_precision(device: torch.device, mixed: bool) -> str:
    """"fp32", "bf16" or "fp16" for training on ``device``, when ``mixed`` precision is wanted."""
    if not mixed:
        return "fp32"
    if device.type == "cpu":
        return "bf16"
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (whose small gradients would underflow without it)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
