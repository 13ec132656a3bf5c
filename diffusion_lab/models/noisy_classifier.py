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

About 0.53 M parameters with the defaults. ``training.NoisyClassifierObjective`` trains it;
``judges.noisy_accuracy.accuracy_by_timestep`` shows, for the chapter, how its accuracy falls as the
noise rises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.blocks import Downsample, ResBlock
from diffusion_lab.models.embeddings import TimestepEmbedding
from diffusion_lab.models.unet_config import Levels
from diffusion_lab.tensors import check_int, check_int_tuple, check_levels, check_model_input


@dataclass(frozen=True)
class NoisyClassifierConfig(Levels):
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

    def __post_init__(self) -> None:
        # Accept a list (from JSON, say) but store a tuple, so configs stay hashable and comparable.
        object.__setattr__(self, "channel_mults", check_int_tuple(self.channel_mults, "channel_mults"))
        for name in ("in_channels", "image_size", "base_channels", "num_groups", "num_classes"):
            check_int(getattr(self, name), name, low=1)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (a classifier needs classes to choose between), "
                             f"got {self.num_classes}")
        if not self.channel_mults:
            raise ValueError("channel_mults must be a non-empty tuple of positive ints such as (1, 2, 4), got ()")
        check_levels(self.image_size, len(self.channel_mults), self.channels, self.num_groups)


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
        check_model_input(x, t, self.conv_in.weight, (c.in_channels, c.image_size, c.image_size))
        if t.is_floating_point():
            raise TypeError(f"t must hold integer timesteps (int64), got dtype {t.dtype}")
