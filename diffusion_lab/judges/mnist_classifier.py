"""A small MNIST classifier: the judge that scores generated digits (chapters 05 and 07).

Two conv blocks and a linear head, trained by ``fit`` with ``training.ClassifierObjective`` (preset
``mnist_classifier``). ``features`` returns the 128-dimensional activations before the
head: ``metrics.py`` computes its FID on them, the way the usual FID uses Inception's features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ClassifierConfig:
    """Image size and channels it expects, hidden width and classes. The default is for MNIST."""

    in_channels: int = 1
    image_size: int = 28
    width: int = 32
    feature_dim: int = 128
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x poolings), got {self.image_size}")


class MNISTClassifier(nn.Module):
    """x (B, 1, 28, 28) in [-1, 1] -> logits (B, 10)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        w = config.width

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(config.in_channels, w), block(w, 2 * w))
        side = config.image_size // 4
        self.to_features = nn.Sequential(nn.Flatten(), nn.Dropout(0.3),
                                         nn.Linear(2 * w * side * side, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"the classifier expects images shaped (B, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}) in [-1, 1], got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> (B, feature_dim): the penultimate activations."""
        self._check(x)
        return self.to_features(self.body(x))  # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes)
