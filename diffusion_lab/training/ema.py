"""An exponential moving average of a model's weights, the copy we sample from (chapter 04).

After each optimiser step: ema = decay * ema + (1 - decay) * weights. The average smooths out the
noise of individual steps, and samples from the EMA weights are usually visibly cleaner. Early in
training the decay is warmed up, min(decay, (1 + n) / (10 + n)) after n updates, so the average
is not dominated by the random initial weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds ``.model``, a frozen copy of a model whose weights track the live model's average."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights (buffers are copied)."""
        d = self.current_decay()
        for avg, live in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(live.detach(), 1 - d)
        for avg, live in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(live)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
        self.decay = state["decay"]
