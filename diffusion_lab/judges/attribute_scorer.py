"""The judge of text-to-image samples on the shapes data set (chapters 06-08, 10).

A prompt such as "a small red circle in the top left" asks for four attributes. ``AttributeScorer``
reads a 32 x 32 picture and guesses each of them, so ``metrics.attribute_accuracy`` can count how
often a generated picture shows what its caption asked for:

    x (B, 3, 32, 32) in [-1, 1]
      conv 3 -> w,    32 x 32, pool -> 16 x 16
      conv w -> 2w,   16 x 16, conv 2w -> 2w, pool -> 8 x 8
      conv 2w -> 4w,   8 x 8,  pool -> 4 x 4
      flatten (4w * 16) -> linear -> features (B, feature_dim)
        -> four linear heads: shape (B, 5), colour (B, 5), size (B, 2), position (B, 5)

The features are flattened rather than pooled over the image, so the heads still know WHERE things
are (position is one of the attributes). The scorer is trained on pictures from the generator
(``data/shapes.py``) with every combination, the held-out ones included: it judges the generator's
pictures, it is not a model whose generalisation we test. ``fit`` trains it with
``training.AttributeObjective`` (preset ``shapes_scorer``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffusion_lab.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES

ATTRIBUTE_NAMES: tuple[str, ...] = ("shape", "colour", "size", "position")  # columns of attribute_indices
ATTRIBUTE_SIZES: dict[str, int] = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES),
                                   "position": len(POSITIONS)}


@dataclass(frozen=True)
class AttributeScorerConfig:
    """Image size and channels the scorer expects, its conv width and the width of its features.

    The default is for the course's 3 x 32 x 32 shapes: about 0.4 M parameters.
    """

    in_channels: int = 3
    image_size: int = 32
    width: int = 32
    feature_dim: int = 128

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "width", "feature_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.image_size % 8:
            raise ValueError(f"image_size must be divisible by 8 (the scorer halves it three times), "
                             f"got {self.image_size}")


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class AttributeScorer(nn.Module):
    """x (B, 3, 32, 32) in [-1, 1] -> {"shape": (B, 5), "colour": (B, 5), "size": (B, 2), "position": (B, 5)} logits."""

    def __init__(self, config: AttributeScorerConfig = AttributeScorerConfig()) -> None:
        super().__init__()
        if not isinstance(config, AttributeScorerConfig):
            raise TypeError(f"config must be an AttributeScorerConfig, got {type(config).__name__}")
        self.config = c = config
        w = c.width
        self.body = nn.Sequential(
            *_conv(c.in_channels, w), nn.MaxPool2d(2),  # (B, w, S/2, S/2)
            *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, S/4, S/4)
            *_conv(2 * w, 4 * w), nn.MaxPool2d(2),  # (B, 4w, S/8, S/8)
        )
        side = c.image_size // 8
        self.to_features = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * side * side, c.feature_dim), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(c.feature_dim, n) for name, n in ATTRIBUTE_SIZES.items()})

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the scorer expects a tensor of images, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"the scorer expects images shaped (B, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}) in [-1, 1], got {tuple(x.shape)}; add a batch dimension "
                             f"with x[None] for a single image")
        if not x.is_floating_point():
            raise TypeError(f"the scorer expects float images in [-1, 1], got {x.dtype}; convert uint8 "
                            f"pictures with x.float() / 127.5 - 1")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, feature_dim): the activations the four heads read."""
        self._check(x)
        return self.to_features(self.body(x))  # (B, F)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)  # (B, F)
        return {name: head(h) for name, head in self.heads.items()}  # name -> (B, n_name)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 4) int64: the most likely (shape, colour, size, position) indices.

        Call ``model.eval()`` first (``fit`` leaves it so): in training mode the batch norms would use
        the statistics of this batch.
        """
        logits = self(x)
        return torch.stack([logits[name].argmax(dim=1) for name in ATTRIBUTE_NAMES], dim=1)  # (B, 4)
