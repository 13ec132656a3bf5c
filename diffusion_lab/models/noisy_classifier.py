"""A noise-aware MNIST classifier p(y | x_t, t), for classifier guidance (chapter 07).

Classifier guidance (Dhariwal & Nichol 2021, sec. 4) steers an unconditional sampler towards a class
y by adding the gradient of the classifier's log-probability to the model's score at every step:

    eps_guided = eps_theta(x_t, t) - s * sqrt(1 - alpha_bar_t) * grad_{x_t} log p_phi(y | x_t, t)

(their Algorithm 2, in the eps form of sec. 4.2, with guidance scale s). The gradient is taken at the
*noisy* sample x_t, at every t from T - 1 down to 0. The noise-free judge of ``classifier.py`` cannot
give it: it has only ever seen clean digits, so on x_t at large t its output, and hence its gradient,
is meaningless. This classifier is trained on x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
with t drawn uniformly from 0..T-1, and told t, exactly as the paper does (sec. 4, "we train a
classifier p_phi(y | x_t, t) on noisy images x_t").

The network is the paper's recipe shrunk for a CPU: the down (encoder) half of the U-Net of ``unet.py``
(same ``ResBlock`` reading the same timestep embedding, same ``Downsample``), then GroupNorm -> SiLU ->
global average pooling -> a linear head. (The paper pools with attention; the average is enough here.)

    x_t (B, 1, 28, 28), t (B,) -> conv_in -> (B, 32, 28, 28)
      level 0 (28x28): ResBlock(32)  -> Downsample -> (B, 64, 14, 14)
      level 1 (14x14): ResBlock(64)  -> Downsample -> (B, 128, 7, 7)
      level 2 (7x7):   ResBlock(128)
    GroupNorm -> SiLU -> mean over H, W -> (B, 128) -> Linear -> logits (B, 10)

About 0.53 M parameters with the defaults. ``train_noisy_classifier`` trains it; ``accuracy_by_timestep``
shows, for the chapter, how its accuracy falls as the noise rises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.blocks import Downsample, ResBlock
from diffusion_lab.models.embeddings import TimestepEmbedding
from diffusion_lab.schedules import NoiseSchedule


@dataclass(frozen=True)
class NoisyClassifierConfig:
    """What a ``NoisyClassifier`` looks like. The defaults are for MNIST (1x28x28, 10 digits).

    Level i works at resolution ``image_size // 2**i`` with ``base_channels * channel_mults[i]``
    channels, as in ``UNetConfig``; every ResBlock reads a timestep embedding of width
    ``4 * base_channels``.
    """

    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_groups: int = 8
    num_classes: int = 10

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels at each level, e.g. (32, 64, 128)."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Side length at each level, e.g. (28, 14, 7)."""
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mults)))

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep embedding every ResBlock reads: 4 * base_channels, as in the U-Net."""
        return 4 * self.base_channels

    def __post_init__(self) -> None:
        # Accept a list (from JSON, say) but store a tuple, so configs stay hashable and comparable.
        if isinstance(self.channel_mults, (str, bytes)) or not isinstance(self.channel_mults, Iterable):
            raise ValueError(f"channel_mults must be a tuple of positive ints such as (1, 2, 4), "
                             f"got {self.channel_mults!r}")
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        for name in ("in_channels", "image_size", "base_channels", "num_groups", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (a classifier needs classes to choose between), "
                             f"got {self.num_classes}")
        if not self.channel_mults or any(isinstance(m, bool) or not isinstance(m, int) or m < 1
                                         for m in self.channel_mults):
            raise ValueError(f"channel_mults must be a non-empty tuple of positive ints such as (1, 2, 4), "
                             f"got {self.channel_mults}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor != 0:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**(levels - 1) = {factor}: "
                f"{len(self.channel_mults)} levels halve it {len(self.channel_mults) - 1} times; "
                f"use fewer channel_mults or another image_size"
            )
        for c in self.channels:
            if c % self.num_groups != 0:
                raise ValueError(f"every level's channels {self.channels} must be divisible by "
                                 f"num_groups={self.num_groups} (GroupNorm); {c} is not")


class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t): x_t (B, C, H, W) noised to steps t (B,) -> class logits (B, num_classes)."""

    def __init__(self, config: NoisyClassifierConfig = NoisyClassifierConfig()) -> None:
        super().__init__()
        if not isinstance(config, NoisyClassifierConfig):
            raise TypeError(f"config must be a NoisyClassifierConfig, got {type(config).__name__}")
        self.config = c = config
        ch, emb_dim, levels = c.channels, c.time_embed_dim, len(c.channels)
        self.time_embed = TimestepEmbedding(c.base_channels, emb_dim)
        self.conv_in = nn.Conv2d(c.in_channels, ch[0], kernel_size=3, padding=1)
        self.res = nn.ModuleList(ResBlock(ch[i], ch[i], emb_dim, c.num_groups) for i in range(levels))
        # down[i] goes from level i to level i + 1; there is none after the last level.
        self.down = nn.ModuleList(Downsample(ch[i], ch[i + 1]) for i in range(levels - 1))
        self.norm_out = nn.GroupNorm(c.num_groups, ch[-1])
        self.head = nn.Linear(ch[-1], c.num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) float in [-1, 1], noised to steps t (B,) int64 -> logits (B, num_classes).

        For guidance, take ``torch.log_softmax(logits, dim=1)[range(B), y]`` and its gradient w.r.t. x.
        """
        self._check_inputs(x, t)
        emb = self.time_embed(t)  # (B, E)
        h = self.conv_in(x)  # (B, ch[0], H, W)
        for i, res in enumerate(self.res):
            h = res(h, emb)  # (B, ch[i], H_i, W_i)
            if i < len(self.down):
                h = self.down[i](h)  # (B, ch[i+1], H_i / 2, W_i / 2)
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))  # (B, ch[-1]): global average pool
        return self.head(h)  # (B, num_classes)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor) -> None:
        c = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a (B, C, H, W) tensor, got {got}; for one image use x[None]")
        B = x.shape[0]
        if x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"the classifier expects images shaped (B, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}), got {tuple(x.shape)}; build it with a NoisyClassifierConfig "
                             f"whose in_channels and image_size match the data")
        weight = self.conv_in.weight
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor in [-1, 1], got dtype {x.dtype}; "
                            f"use x.float() / 127.5 - 1 for raw 0..255 pixels")
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {weight.dtype}; "
                            f"convert one of them, e.g. x.to({weight.dtype}) or model.to({x.dtype})")
        if x.device != weight.device:
            raise ValueError(f"x is on {x.device} but the model is on {weight.device}; use x.to(device)")
        if not isinstance(t, torch.Tensor) or t.shape != (B,):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a tensor of shape (B,) = ({B},), one step per image, got {got}; "
                             "for one step for all, use torch.full((B,), t)")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold integer timesteps (int64), got dtype {t.dtype}")


def _check_data(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                schedule: NoiseSchedule) -> None:
    """Shared checks of ``train_noisy_classifier`` and ``accuracy_by_timestep``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module such as NoisyClassifier(), got {type(model).__name__}")
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, e.g. NoiseSchedule.from_name('cosine', 1000), "
                        f"got {type(schedule).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {got}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [-1, 1], got dtype {images.dtype}; "
                        f"mnist_tensors() returns them ready")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor (N,) of class indices, got {got}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be integer class indices (int64), got dtype {labels.dtype}; use labels.long()")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels; give one label per image")
    if images.shape[0] == 0:
        raise ValueError("images is empty; give at least one image")
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if num_classes is not None and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (the model has num_classes={num_classes}), "
                         f"got values from {int(labels.min())} to {int(labels.max())}")


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def train_noisy_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule,
                           *, steps: int = 3000, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                           progress: bool = True) -> list[float]:
    """Train p(y | x_t, t) on noisy images; return the cross-entropy of every step (a list of ``steps`` floats).

    Each step draws ``batch_size`` images (with replacement), shifts the batch by up to 2 pixels as
    ``train_classifier`` does, draws t ~ U{0..T-1} and eps ~ N(0, I), and classifies
    x_t = schedule.add_noise(x_0, eps, t). Indices, shifts, t and eps all come from one CPU
    ``torch.Generator`` seeded with ``seed``, so a run is repeatable whatever the device. AdamW with a
    one-cycle learning rate (warm-up to ``lr``, then cosine decay). The model is left in eval mode.

    images: (N, C, H, W) float in [-1, 1] on any device (batches are moved to the model's device);
    labels: (N,) int64 class indices.
    """
    from tqdm.auto import tqdm

    _check_data(model, images, labels, schedule)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} int, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number such as 1e-3, got {lr!r}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.01 or hi > 1.01:
        raise ValueError(f"images must be scaled to [-1, 1] (the range the diffusion model works in), got values "
                         f"in [{lo:.3g}, {hi:.3g}]; use mnist_tensors(), or x / 127.5 - 1 for 0..255 pixels")

    device = _model_device(model)
    schedule = schedule.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    losses: list[float] = []
    model.train()
    for _ in tqdm(range(steps), disable=not progress, desc="training the noisy classifier"):
        idx = torch.randint(len(images), (batch_size,), generator=gen)  # (B,)
        dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
        x0 = torch.roll(images[idx.to(images.device)], shifts=(dy, dx), dims=(2, 3)).to(device)  # (B, C, H, W)
        y = labels[idx.to(labels.device)].to(device)  # (B,)
        t = torch.randint(schedule.T, (batch_size,), generator=gen).to(device)  # (B,) in 0..T-1
        eps = torch.randn(x0.shape, generator=gen).to(device=device, dtype=x0.dtype)  # (B, C, H, W)
        x_t = schedule.add_noise(x0, eps, t)  # (B, C, H, W)
        loss = F.cross_entropy(model(x_t, t), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def accuracy_by_timestep(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule,
                         timesteps: Iterable[int] = (0, 250, 500, 750, 999), seed: int = 0,
                         *, batch_size: int = 500) -> dict[int, float]:
    """Accuracy (a fraction in [0, 1]) of ``model`` on ``images`` noised to each step in ``timesteps``.

    Returns ``{t: accuracy}`` in the order given. Every t uses the same noise eps per image (the
    generator is re-seeded with ``seed`` for each t), so the rows differ only in the noise level.
    images: (N, C, H, W) in [-1, 1] on any device, labels (N,) int64. The model's train/eval mode is
    restored afterwards.
    """
    _check_data(model, images, labels, schedule)
    if isinstance(timesteps, (int, torch.Tensor)):
        raise TypeError(f"timesteps must be a sequence of ints such as (0, 500, 999), got {timesteps!r}; "
                        f"for one step use (t,)")
    timesteps = [int(schedule.check_t(t)) for t in timesteps]
    if not timesteps:
        raise ValueError("timesteps is empty; give at least one step, e.g. (0, 500, 999)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")

    device = _model_device(model)
    schedule = schedule.to(device)
    was_training = model.training
    model.eval()
    result: dict[int, float] = {}
    try:
        for step in timesteps:
            gen = torch.Generator().manual_seed(seed)  # the same eps for every t
            correct = 0
            for start in range(0, len(images), batch_size):
                x0 = images[start:start + batch_size].to(device)  # (b, C, H, W)
                y = labels[start:start + batch_size].to(device)  # (b,)
                eps = torch.randn(x0.shape, generator=gen).to(device=device, dtype=x0.dtype)  # (b, C, H, W)
                t = torch.full((len(x0),), step, dtype=torch.long, device=device)  # (b,)
                pred = model(schedule.add_noise(x0, eps, t), t).argmax(dim=1)  # (b,)
                correct += int((pred == y).sum())
            result[step] = correct / len(images)
    finally:
        model.train(was_training)
    return result
