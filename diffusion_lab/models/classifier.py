"""A small MNIST classifier: the judge that scores generated digits (chapters 05 and 07).

Two conv blocks and a linear head. ``features`` returns the 128-dimensional activations before the
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


def train_classifier(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, *, steps: int = 1500,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """Train the judge with Adam on images (N, 1, 28, 28) in [-1, 1] and labels (N,); return the loss per step.

    Light augmentation (a random shift of up to 2 pixels) makes it robust to the small misplacements
    of generated digits.
    """
    from tqdm.auto import tqdm

    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    losses = []
    model.train()
    for _ in tqdm(range(steps), disable=not progress, desc="training the classifier"):
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
        x = torch.roll(images[idx], shifts=(dy, dx), dims=(2, 3))  # (B, 1, 28, 28), shifted
        loss = nn.functional.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
