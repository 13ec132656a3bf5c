"""Self-attention over the pixels of a feature map: every position looks at every other (chapter 03).

A convolution only mixes a 3x3 neighbourhood; attention lets the U-Net relate distant parts of the
image at once (is this stroke the top of a 7 or of a 9?). It is quadratic in the number of pixels, so
the U-Net uses it only at its lowest resolutions (49 tokens at 7x7). Chapter 06 adds cross-attention,
where the queries still come from the pixels but the keys and values come from text tokens.

For each head, with d = C / num_heads channels:  Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V
(Vaswani et al. 2017, eq. 1), computed by ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.blocks import zero_init


class SelfAttention(nn.Module):
    """x + proj(MultiHeadAttention(GroupNorm(x))) over the H*W positions of x (B, C, H, W).

    Each pixel is a token with C features; the names follow nanoGPT's attention (``qkv``, ``proj``).
    """

    def __init__(self, channels: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)  # queries, keys and values for every token at once
        self.proj = zero_init(nn.Linear(channels, channels))  # residual branch starts at 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        nh, hs = self.num_heads, C // self.num_heads
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): one token per pixel
        qkv = self.qkv(tokens).view(B, H * W, 3, nh, hs)  # (B, HW, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, HW, hs)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hs)
        h = self.proj(h.transpose(1, 2).reshape(B, H * W, C))  # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
