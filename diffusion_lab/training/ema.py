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
        """Move the average one step towards ``model``'s current weights (buffers are copied).

        One batched update for all parameters (``torch._foreach_lerp_``: one kernel launch on a GPU
        rather than one per tensor; on the CPU the same per-tensor arithmetic).
        """
        avg, live = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        avg_buffers, live_buffers = list(self.model.buffers()), list(model.buffers())
        if len(avg) != len(live) or len(avg_buffers) != len(live_buffers):
            raise ValueError(f"the model has {len(live)} parameter tensors and {len(live_buffers)} buffers, its EMA "
                             f"copy {len(avg)} and {len(avg_buffers)}: update the EMA of the model it was made from")
        torch._foreach_lerp_(avg, live, 1 - self.current_decay())
        if avg_buffers:
            torch._foreach_copy_(avg_buffers, live_buffers)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
        self.decay = state["decay"]
