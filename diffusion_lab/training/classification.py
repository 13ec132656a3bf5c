"""The judges' objectives: cross-entropy on labelled pictures, with augmentation that keeps every label
true (chapters 05-07). ``fit`` trains the MNIST classifier, the noise-aware classifier and the shapes
attribute scorer with these, as it trains the denoisers with ``DiffusionObjective``.

Each draws, from the run's generator and in this order: indices (B,), one shift (dx, dy) for the whole
batch, then what its augmentation needs. Shifts of a few pixels make a judge robust to the small
misplacements of generated pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_finite_data, check_images, check_number
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.objective import Batch, Objective


def _check_labels(images: torch.Tensor, labels: torch.Tensor, sizes: dict[str, int]) -> None:
    """images (N, C, H, W) in [-1, 1]; labels (N,) for one label per image or (N, K) for K of them, column k
    one of the ``sizes`` values of the k-th name (one name: labels is (N,))."""
    check_finite_data(check_images(images, "images"), "the training images")
    if (not isinstance(labels, torch.Tensor) or labels.ndim != (1 if len(sizes) == 1 else 2)
            or (labels.ndim == 2 and labels.shape[1] != len(sizes))):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        want = "a 1-D tensor (N,) of class indices" if len(sizes) == 1 else f"shaped (N, {len(sizes)})"
        raise ValueError(f"labels must be {want}, got {got}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be integer class indices (int64), got dtype {labels.dtype}; use labels.long()")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels; give one label per image")
    for k, (name, n) in enumerate(sizes.items()):
        column = labels if labels.ndim == 1 else labels[:, k]
        if int(column.min()) < 0 or int(column.max()) >= n:
            which = "labels" if labels.ndim == 1 else f"column {k} ({name}) of the labels"
            raise ValueError(f"{which} must lie in 0..{n - 1}, got values from {int(column.min())} "
                             f"to {int(column.max())}")


def _shifted(images: torch.Tensor, idx: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """images[idx] (B, C, H, W), all rolled by one (dy, dx) drawn from -max_shift..max_shift."""
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    return torch.roll(images[idx], shifts=(dy, dx), dims=(2, 3))


@dataclass
class ClassifierObjective(Objective):
    """p(y | x) on clean pictures: images (N, C, H, W) in [-1, 1], labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    max_shift: int = 2

    def __post_init__(self) -> None:
        _check_labels(self.images, self.labels, {"class": self.num_classes})

    def describe(self) -> dict:
        return {"data_shape": list(self.images.shape)}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        idx = torch.randint(len(self.images), (config.batch_size,), generator=generator)  # (B,)
        return {"x": _shifted(self.images, idx, generator, self.max_shift), "y": self.labels[idx]}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch["x"]), batch["y"], reduction="none")  # (B,)


@dataclass
class NoisyClassifierObjective(Objective):
    """p(y | x_t, t) for classifier guidance (chapter 07): each picture is noised to a step t ~ U{0..T-1},
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, and the classifier is told t (Dhariwal &
    Nichol 2021, sec. 4)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    schedule: NoiseSchedule
    max_shift: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, e.g. NoiseSchedule.from_name('cosine', 1000), "
                            f"got {type(self.schedule).__name__}")
        _check_labels(self.images, self.labels, {"class": self.num_classes})

    def describe(self) -> dict:
        return {"data_shape": list(self.images.shape), "schedule": self.schedule.name, "T": self.schedule.T}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        B = config.batch_size
        idx = torch.randint(len(self.images), (B,), generator=generator)  # (B,)
        x0 = _shifted(self.images, idx, generator, self.max_shift)  # (B, C, H, W)
        t = torch.randint(self.schedule.T, (B,), generator=generator)  # (B,) in 0..T-1
        eps = torch.randn(x0.shape, generator=generator)  # (B, C, H, W)
        return {"xt": self.schedule.add_noise(x0, eps, t), "t": t, "y": self.labels[idx]}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch["xt"], batch["t"]), batch["y"], reduction="none")  # (B,)

    def groups(self, batch: Batch) -> torch.Tensor:
        return batch["t"] * 10 // self.schedule.T  # (B,): which tenth of the steps


@dataclass
class AttributeObjective(Objective):
    """Several attributes read from one picture (the shapes scorer): images (N, C, H, W) in [-1, 1] and
    attributes (N, K) int64, column k one of ``sizes[name_k]`` values; the model returns a dict
    name -> logits (B, sizes[name]). The loss is the sum of the K cross-entropies.

    Besides the shift (``max_shift``, 1 pixel: positions are 8 apart, so no shape moves to another),
    each picture gets Gaussian noise with a standard deviation drawn from [0, ``noise_std``] and a
    brightness lift drawn from [0, ``max_lift``], so slightly noisy samples, and the lighter
    backgrounds a briefly trained generator draws, are still read right.
    """

    images: torch.Tensor
    attributes: torch.Tensor
    sizes: dict[str, int]
    max_shift: int = 1
    noise_std: float = 0.1
    max_lift: float = 0.35

    def __post_init__(self) -> None:
        _check_labels(self.images, self.attributes, self.sizes)
        check_number(self.noise_std, "noise_std")
        if check_number(self.max_lift, "max_lift") >= 1:
            raise ValueError(f"max_lift must be a number in [0, 1) (0 turns the lift off), got {self.max_lift!r}")

    def describe(self) -> dict:
        return {"data_shape": list(self.images.shape)}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        B = config.batch_size
        idx = torch.randint(len(self.images), (B,), generator=generator)  # (B,)
        x = _shifted(self.images, idx, generator, self.max_shift)  # (B, C, H, W)
        std = torch.rand(B, 1, 1, 1, generator=generator) * self.noise_std  # (B, 1, 1, 1)
        x = x + std * torch.randn(x.shape, generator=generator)
        x = (x + torch.rand(B, 1, 1, 1, generator=generator) * self.max_lift).clamp(max=1.0)  # lighter pictures
        return {"x": x, "y": self.attributes[idx]}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits = model(batch["x"])  # name -> (B, n_name)
        return sum(F.cross_entropy(logits[name], batch["y"][:, i], reduction="none")
                   for i, name in enumerate(self.sizes))  # (B,)
