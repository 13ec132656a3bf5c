"""The U-Net's building blocks: residual block with a time embedding, down- and upsampling (chapter 03).

Every block keeps the spatial layout (B, C, H, W). Normalisation is GroupNorm (Wu & He 2018), which,
unlike BatchNorm, does not depend on the batch, so training and sampling behave the same.

Zero initialisation: the last conv of every residual branch starts at zero, so each ``ResBlock`` (and
each attention block) starts as the identity, ``x + 0``. The network then begins as a short,
well-behaved path from input to output and grows its branches during training. The recipe comes from
Ho et al.'s DDPM code (``init_scale=0.`` on a block's last conv) and OpenAI's guided-diffusion
(``zero_module``); diffusers' ``ResnetBlock2D`` does not zero-initialise by default. Goyal et al. 2017 do
the same for ResNets with the last BatchNorm's scale ("zero-gamma").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def zero_init(module: nn.Module) -> nn.Module:
    """Set a layer's weight and bias to zero and return it (see the module docstring for why)."""
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class ResBlock(nn.Module):
    """x -> GroupNorm -> SiLU -> conv -> + time embedding -> GroupNorm -> SiLU -> dropout -> conv -> + x.

    The embedding ``emb`` (B, emb_dim) holds the timestep (plus the class, when there is one); a linear
    layer turns it into one shift per channel, added to every pixel. When the channel count changes,
    the skip path gets a 1x1 conv so that the two branches can be added. With ``emb_dim=None`` the block
    reads no embedding (the autoencoder of chapter 08 has no timestep) and is called ``block(x)``.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int | None, num_groups: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels)) if emb_dim is not None else None
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        if self.emb_proj is not None:
            h = h + self.emb_proj(emb)[:, :, None, None]  # (B, C_out, 1, 1) broadcast over H, W
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, C_out, H, W)
        return self.skip(x) + h  # (B, C_out, H, W)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 conv (learned, unlike pooling); may change the channel count."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H, W) -> (B, C_out, H/2, W/2)


class Upsample(nn.Module):
    """Double H and W: a 3x3 conv at the coarse resolution (may change the channel count), then
    nearest-neighbour repeat.

    The textbook order is the other one (repeat, then conv, as in DDPM and diffusers). Convolving
    first sees the same 3x3 neighbourhood of coarse pixels but costs a quarter of the multiply-adds,
    which matters on a CPU: the 28x28 level is the most expensive part of the network. The 2x2 blocks
    it leaves are smoothed by the ResBlock that follows, whose first conv also mixes in the skip.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C_out, H, W)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C_out, 2H, 2W)
