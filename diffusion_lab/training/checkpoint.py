"""Everything a run needs to continue, saved atomically and read back safely (chapter 04).

``checkpoint.pt`` holds the live weights, the EMA copy, the optimiser, the batch generator's state,
the step and the loss history, so a run that is killed and resumed continues exactly as if it had
not stopped. It is read with ``weights_only=True``: nothing in it is ever unpickled as code.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.ema import EMA
from diffusion_lab.training.history import LossHistory

# Settings a resumed run may change: that is how a run is extended and then cooled down.
MAY_CHANGE_ON_RESUME = ("steps", "cooldown_steps")


@dataclass
class TrainState:
    """A run in progress: the model, its EMA copy, the optimiser, the batch generator, the step reached."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    history: LossHistory = field(default_factory=LossHistory)
    total_steps: int = 0  # the step the run ends at (config.steps), for progress displays
    precision: str = "fp32"  # what the forward pass ran in: "fp32", "bf16" or "fp16" (precision.py)

    def state_dict(self, config: TrainConfig, meta: dict) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "step": self.step, "history": dataclasses.asdict(self.history),
                "train_config": dataclasses.asdict(config), "meta": meta}


def save_checkpoint(path: Path, state: TrainState, config: TrainConfig, meta: dict) -> None:
    """Write atomically (temporary file, then rename): a kill mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state.state_dict(config, meta), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, state: TrainState, config: TrainConfig, meta: dict) -> None:
    """Restore ``state`` in place from ``path``, after checking it was made for the same model, data and settings."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's own message is many lines and suggests weights_only=False: keep it in the chain only
        raise ValueError(f"cannot read the checkpoint {path}: it is damaged, truncated or not written by "
                         f"diffusion_lab.training ({type(err).__name__}); delete it to start afresh") from err
    if saved["meta"] != meta:
        raise ValueError(f"{path} was made for a different model or data ({saved['meta']}), not {meta}; "
                         f"use another --out folder or delete it")
    changed = {k for k, v in saved["train_config"].items()
               if k not in MAY_CHANGE_ON_RESUME and getattr(config, k, v) != v}
    if changed:
        raise ValueError(f"{path} was trained with different settings ({sorted(changed)}); resume with the same ones")
    if saved["step"] > config.steps:  # else its weights would be saved labelled with fewer steps than they had
        raise ValueError(f"{path} is already at step {saved['step']}, past the {config.steps} steps asked for: "
                         f"resume with --steps {saved['step']} or more, or use another --out to start afresh")
    state.model.load_state_dict(saved["model"])
    state.ema.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.generator.set_state(saved["generator"])
    state.step = saved["step"]
    state.history = LossHistory(**saved["history"])
