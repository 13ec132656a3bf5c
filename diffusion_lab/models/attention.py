"""Self-attention over the pixels of a feature map: every position looks at every other (chapter 03).

A convolution only mixes a 3x3 neighbourhood; attention lets the U-Net relate distant parts of the
image at once (is this stroke the top of a 7 or of a 9?). It is quadratic in the number of pixels, so
the U-Net uses it only at its lowest resolutions (49 tokens at 7x7). Chapter 06 adds cross-attention,
where the queries still come from the pixels but the keys and values come from text tokens.

For each head, with d = C / num_heads channels:  Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V
(Vaswani et al. 2017, eq. 1), computed by ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) with masked-out keys given weight 0: q (..., N, d), k (..., L, d) -> (..., N, L).

    ``mask`` (..., 1, L) or broadcastable, True where a key may be attended to. This is what
    ``F.scaled_dot_product_attention`` computes internally; chapter 06 draws it.
    """
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (..., N, L)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


class CrossAttention(nn.Module):
    """x + proj(MultiHeadAttention(Q from GroupNorm(x), K and V from the text)) (chapter 06).

    The queries come from the H*W pixels of x (B, C, H, W); the keys and values from ``context``
    (B, L, D), one vector per token from a text encoder. Each pixel asks "which words are about me?"
    and takes a mix of their values: that is how the prompt reaches every position of every block
    (Rombach et al. 2022, §3.3; the names follow diffusers' ``to_q``, ``to_k``, ``to_v``).

    ``context_mask`` (B, L) bool, True for real tokens, keeps padding out of the mix. Set
    ``keep_weights = True`` (or use ``record_cross_attention``) to keep each call's attention weights
    (B, num_heads, H*W, L) in ``recorded`` for drawing.
    """

    def __init__(self, channels: int, context_dim: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.context_dim = context_dim
        self.norm = nn.GroupNorm(num_groups, channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(context_dim, channels, bias=False)
        self.to_v = nn.Linear(context_dim, channels, bias=False)
        self.proj = zero_init(nn.Linear(channels, channels))  # residual branch starts at 0
        self.keep_weights = False
        self.recorded: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        L = context.shape[1]
        nh, hs = self.num_heads, C // self.num_heads
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): one query per pixel
        q = self.to_q(tokens).view(B, H * W, nh, hs).transpose(1, 2)  # (B, nh, HW, hs)
        k = self.to_k(context).view(B, L, nh, hs).transpose(1, 2)  # (B, nh, L, hs): one key per token
        v = self.to_v(context).view(B, L, nh, hs).transpose(1, 2)  # (B, nh, L, hs)
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, L)
        # Written out rather than F.scaled_dot_product_attention: with a dozen keys the two matmuls are
        # cheap, while the fused CPU kernel's backward pass is several times slower (measured, bf16).
        weights = attention_weights(q, k, mask)  # (B, nh, HW, L): how much each pixel reads each token
        if self.keep_weights:
            self.recorded.append(weights.detach().float().cpu())
        h = weights.to(v.dtype) @ v  # (B, nh, HW, hs)
        h = self.proj(h.transpose(1, 2).reshape(B, H * W, C))  # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)


@contextmanager
def record_cross_attention(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Inside ``with record_cross_attention(model) as maps:``, every CrossAttention of ``model`` keeps
    its weights: ``maps[name]`` lists one (B, num_heads, H*W, L) tensor per call, on the CPU, in call
    order (so one per sampling step). Recording stops, and the modules forget, on leaving the block.
    """
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, CrossAttention)}
    if not blocks:
        raise ValueError("this model has no cross-attention: it is not a text-conditioned model")
    maps: dict[str, list[torch.Tensor]] = {}
    for name, block in blocks.items():
        block.keep_weights, block.recorded = True, []
        maps[name] = block.recorded
    try:
        yield maps
    finally:
        for block in blocks.values():
            block.keep_weights, block.recorded = False, []
