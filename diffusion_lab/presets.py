"""Named training recipes: what `python -m diffusion_lab train --preset NAME` trains (chapters 04-05).

Each preset fixes the model, the data, the noise schedule and the training settings, so that a
shipped checkpoint can be remade by anyone with one command. ``tiny`` exists for tests and quick mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from diffusion_lab.training import TrainConfig


@dataclass(frozen=True)
class Preset:
    """A recipe. ``kind`` is "unet", "mlp" or "classifier"; ``data`` is "mnist" or a 2-D toy's name."""

    name: str
    kind: str
    model_config: Any
    train: TrainConfig
    data: str
    schedule: str = "cosine"
    T: int = 1000
    conditional: bool = False
    description: str = ""

    def with_steps(self, steps: int) -> Preset:
        return dataclasses.replace(self, train=dataclasses.replace(self.train, steps=steps))


def _presets() -> dict[str, Preset]:
    from diffusion_lab.models.classifier import ClassifierConfig
    from diffusion_lab.models.mlp import MLPConfig
    from diffusion_lab.models.unet import UNetConfig

    return {p.name: p for p in [
        Preset("toy2d", "mlp", MLPConfig(), TrainConfig(steps=3000, batch_size=512, lr=1e-3, warmup_steps=100,
                                                        ema_decay=0.995, checkpoint_every=500),
               data="swiss_roll", description="the 2-D swiss-roll denoiser of chapter 04"),
        Preset("mnist", "unet", UNetConfig.mnist(), TrainConfig(steps=3000, batch_size=128, lr=5e-4,
                                                                checkpoint_every=250, bf16=True),
               data="mnist", description="unconditional MNIST digits"),
        Preset("mnist_cond", "unet", UNetConfig.mnist_conditional(),
               TrainConfig(steps=3000, batch_size=128, lr=5e-4, cond_drop_prob=0.1, checkpoint_every=250,
                           bf16=True),
               data="mnist", conditional=True,
               description="class-conditional MNIST, 10 % of labels dropped to the null class (for CFG)"),
        Preset("mnist_classifier", "classifier", ClassifierConfig(),
               TrainConfig(steps=1500, batch_size=128, lr=2e-3), data="mnist",
               description="the MNIST judge used by metrics.py"),
        Preset("tiny", "unet", UNetConfig.tiny(), TrainConfig(steps=20, batch_size=16, checkpoint_every=10,
                                                              log_every=5), data="mnist",
               description="a few seconds of training, for tests"),
    ]}


def get_preset(name: str) -> Preset:
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def preset_names() -> list[str]:
    return sorted(_presets())


def load_training_data(preset: Preset) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The preset's x_0 samples (N, ...) and, for conditional presets, labels (N,) int64."""
    from diffusion_lab.data import make_toy, mnist_tensors

    if preset.data == "mnist":
        images, labels = mnist_tensors("train")
        return images, labels if preset.conditional or preset.kind == "classifier" else None
    return make_toy(preset.data, 50_000, seed=0), None
