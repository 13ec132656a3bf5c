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
pictures, it is not a model whose generalisation we test.
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

        Call ``model.eval()`` first (``train_attribute_scorer`` leaves it so): in training mode the
        batch norms would use the statistics of this batch.
        """
        logits = self(x)
        return torch.stack([logits[name].argmax(dim=1) for name in ATTRIBUTE_NAMES], dim=1)  # (B, 4)


def _check_training_data(model: AttributeScorer, images: torch.Tensor, attribute_indices: torch.Tensor) -> None:
    if not isinstance(model, AttributeScorer):
        raise TypeError(f"model must be an AttributeScorer, got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or not isinstance(attribute_indices, torch.Tensor):
        raise TypeError("images and attribute_indices must be tensors, e.g. make_shapes(...).images and "
                        "make_shapes(...).attribute_indices")
    model._check(images)
    if attribute_indices.shape != (images.shape[0], len(ATTRIBUTE_NAMES)):
        raise ValueError(f"attribute_indices must be shaped (N, {len(ATTRIBUTE_NAMES)}) = one row of "
                         f"{ATTRIBUTE_NAMES} per image; {images.shape[0]} images but attribute_indices "
                         f"shaped {tuple(attribute_indices.shape)}")
    if attribute_indices.dtype != torch.int64:
        raise TypeError(f"attribute_indices must be int64 class indices, got {attribute_indices.dtype}")
    for column, name in enumerate(ATTRIBUTE_NAMES):
        values = attribute_indices[:, column]
        if values.min() < 0 or values.max() >= ATTRIBUTE_SIZES[name]:
            raise ValueError(f"column {column} ({name}) of attribute_indices must lie in "
                             f"[0, {ATTRIBUTE_SIZES[name] - 1}], got values from {values.min().item()} "
                             f"to {values.max().item()}")


def train_attribute_scorer(model: AttributeScorer, images: torch.Tensor, attribute_indices: torch.Tensor, *,
                           steps: int = 600, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                           noise_std: float = 0.1, max_lift: float = 0.35, progress: bool = True) -> list[float]:
    """Train the scorer with Adam (one-cycle learning rate); return the loss per step.

    ``images`` (N, 3, 32, 32) in [-1, 1] and ``attribute_indices`` (N, 4) int64, columns as in
    ``ATTRIBUTE_NAMES``: take both from ``make_shapes(..., split="all")``. The loss is the sum of the
    four cross-entropies. Augmentation that keeps every label true: Gaussian pixel noise with a
    standard deviation drawn per image from [0, ``noise_std``] (so slightly noisy samples are still
    read), a brightness lift of every pixel drawn per image from [0, ``max_lift``] (a briefly trained
    generator draws the dark background lighter: about +0.2 for shapes_text after 3,000 steps), and a
    shift of the whole batch by at most one pixel (positions are 8 pixels apart, so this cannot move a
    shape to another position). Leaves the model in eval mode.

    The defaults, on ``make_shapes(20_000, split="all")``, train the default scorer in about 3 minutes
    on one CPU thread and read 100 % of 2,000 fresh pictures right, all four attributes at once.
    """
    from tqdm.auto import tqdm

    _check_training_data(model, images, attribute_indices)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} int, got {value!r}")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(noise_std, int | float) or isinstance(noise_std, bool) or noise_std < 0:
        raise ValueError(f"noise_std must be a number >= 0 (0 turns the noise off), got {noise_std!r}")
    if not isinstance(max_lift, int | float) or isinstance(max_lift, bool) or not 0 <= max_lift < 1:
        raise ValueError(f"max_lift must be a number in [0, 1) (0 turns the lift off), got {max_lift!r}")

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    losses = []
    model.train()
    for _ in tqdm(range(steps), disable=not progress, desc="training the attribute scorer"):
        idx = torch.randint(len(images), (batch_size,), generator=gen)
        dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
        x = torch.roll(images[idx], shifts=(dy, dx), dims=(2, 3))  # (B, 3, 32, 32), shifted by <= 1 pixel
        std = torch.rand(batch_size, 1, 1, 1, generator=gen) * noise_std  # (B, 1, 1, 1)
        x = x + std * torch.randn(x.shape, generator=gen)
        x = (x + torch.rand(batch_size, 1, 1, 1, generator=gen) * max_lift).clamp(max=1.0)  # lighter pictures
        x, y = x.to(device), attribute_indices[idx].to(device)  # (B, 3, 32, 32), (B, 4)
        logits = model(x)
        loss = sum(nn.functional.cross_entropy(logits[name], y[:, i]) for i, name in enumerate(ATTRIBUTE_NAMES))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
