"""A test helper: wake a freshly built network whose zero-initialised layers would hide its inputs."""

from __future__ import annotations

import torch


def awake(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give every all-zero parameter small random weights (``std``), in place; returns ``model``.

    At initialisation the course's U-Nets zero their residual branches' last layers and the output conv, so
    nothing but the skip paths reaches the output: a test that needs the output to depend on an input (a
    condition, an embedding, a low-res picture) wakes them first.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model
