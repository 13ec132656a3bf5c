"""What ``fit`` trains towards: an objective draws a batch and scores the model on it (chapter 04).

One training loop serves every model in the course; what differs between a denoiser, a classifier
and, later, an autoencoder or a CLIP is only *what a batch is* and *what the loss is*. An objective
supplies exactly those two things:

    batch = objective.draw(generator, config)     # the whole global batch, on the CPU
    per_sample = objective.loss(model, batch)     # (B,): one loss per sample; fit averages it

Every random number comes from ``generator``, in an order each objective fixes, so a run is
repeatable and a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusion_lab.training.config import TrainConfig

Batch = dict[str, torch.Tensor]  # name -> tensor with the batch first, (B, ...)


class Objective:
    """The interface ``fit`` relies on. Subclasses implement ``draw`` and ``loss``."""

    def describe(self) -> dict:
        """What the data look like, saved in training checkpoints: resuming with other data is refused."""
        return {}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        """The global batch of ``config.batch_size`` samples, every tensor on the CPU, batch first."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """One loss per sample, (B,), for a batch already on the model's device."""
        raise NotImplementedError

    def to(self, device: torch.device) -> Objective:
        """This objective with whatever it computes with (a noise schedule, say) on ``device``."""
        return self

    def finish(self, model: nn.Module) -> dict:
        """Work done once on the trained weights before they are saved (the autoencoder measures its
        latent scale here); returns what to record beside the checkpoint, {} when nothing."""
        return {}

    def groups(self, batch: Batch) -> torch.Tensor | None:
        """Which of 10 groups each sample's loss is recorded under in the history (B,), or None."""
        return None
