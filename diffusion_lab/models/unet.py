"""A small U-Net that predicts the noise eps in x_t: eps_pred = eps_theta(x_t, t[, cond]) (chapter 03).

    x (B, C_in, 28, 28) -> conv_in
      down, level 0 (28x28): ResBlock x num_res_blocks  --------------- skip --------------+
        Downsample -> level 1 (14x14): ResBlock x num_res_blocks  ---- skip -----------+  |
          Downsample -> level 2 (7x7): ResBlock x num_res_blocks  - skip ---------+  |  |
            mid (7x7): ResBlock, SelfAttention, ResBlock                          |  |  |
          up, level 2 (7x7): ResBlock on [h, skip] x num_res_blocks  <------------+  |  |
        Upsample -> level 1 (14x14): ResBlock on [h, skip] x num_res_blocks  <---------+  |
      Upsample -> level 0 (28x28): ResBlock on [h, skip] x num_res_blocks  <--------------+
    GroupNorm -> SiLU -> conv_out -> eps_pred (B, C_out, 28, 28)

The shape of the network (levels, channels, attention) is a ``UNetConfig`` (``unet_config.py``).
Every ResBlock also reads the embedding of t (``embeddings.py``), plus a learned class embedding when
the model is class-conditional. A text model (chapter 06) also reads the prompt: cross-attention
blocks after the ResBlocks of the levels named in ``cross_attention_resolutions`` (and in the middle). Each ResBlock of the down path hands its output across to the
matching ResBlock of the up path (the skip connections), so fine detail need not squeeze through 7x7.

Designed for laptop CPUs, where time goes almost entirely into convolutions (``bench/unet_throughput.py``):
one residual block per level, self-attention only in the middle (``attention_resolutions`` adds more),
channel counts changed by the samplers (Downsample widens, Upsample narrows, so the costly 28x28
level only ever holds ``base_channels`` channels), and an Upsample that convolves before it enlarges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.attention import CrossAttention, SelfAttention
from diffusion_lab.models.blocks import Downsample, ResBlock, Upsample, zero_init
from diffusion_lab.models.embeddings import TimestepEmbedding
from diffusion_lab.models.unet_config import UNetConfig
from diffusion_lab.tensors import check_model_input


class Level(nn.Module):
    """One resolution of the down or up path: ``num_res_blocks`` x (ResBlock, then SelfAttention or
    nothing, then CrossAttention to the text or nothing), then a resampler (Downsample, Upsample, or
    nothing at the ends).
    """

    def __init__(self, res: list[ResBlock], attn: list[nn.Module], xattn: list[nn.Module], resample: nn.Module) -> None:
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.xattn = nn.ModuleList(xattn)
        self.resample = resample


def _read_text(block: nn.Module, h: torch.Tensor, context: torch.Tensor | None,
               context_mask: torch.Tensor | None) -> torch.Tensor:
    """Cross-attention where the config puts one (``block`` is a CrossAttention), else h unchanged."""
    return block(h, context, context_mask) if isinstance(block, CrossAttention) else h


class MidBlock(nn.Module):
    """The bottom of the U: ResBlock, SelfAttention (49 tokens at 7x7: the cheapest place for it),
    CrossAttention to the text (text models whose lowest resolution reads text), ResBlock."""

    def __init__(self, channels: int, emb_dim: int, config: UNetConfig) -> None:
        super().__init__()
        c = config
        self.res1 = ResBlock(channels, channels, emb_dim, c.num_groups, c.dropout)
        self.attn = SelfAttention(channels, c.num_heads, c.num_groups) if c.mid_attention else nn.Identity()
        reads_text = c.resolutions[-1] in c.cross_attention_resolutions
        self.xattn = (CrossAttention(channels, c.context_dim, c.num_heads, c.num_groups) if reads_text
                      else nn.Identity())
        self.res2 = ResBlock(channels, channels, emb_dim, c.num_groups, c.dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.attn(self.res1(h, emb))
        return self.res2(_read_text(self.xattn, h, context, context_mask), emb)  # (B, C, H, W)


class UNet(nn.Module):
    """eps_theta(x_t, t[, cond]): predicts the noise in x_t (B, C_in, H, W) at steps t (B,), cond the class (B,)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = c = config
        ch, emb_dim, n, levels = c.channels, c.time_embed_dim, c.num_res_blocks, len(c.channels)

        def res(in_channels: int, out_channels: int) -> ResBlock:
            return ResBlock(in_channels, out_channels, emb_dim, c.num_groups, c.dropout)

        def attention(level: int) -> nn.Module:
            if c.resolutions[level] in c.attention_resolutions:
                return SelfAttention(ch[level], c.num_heads, c.num_groups)
            return nn.Identity()

        def cross_attention(level: int) -> nn.Module:
            if c.resolutions[level] in c.cross_attention_resolutions:
                return CrossAttention(ch[level], c.context_dim, c.num_heads, c.num_groups)
            return nn.Identity()

        self.time_embed = TimestepEmbedding(c.base_channels, emb_dim)
        # num_classes + 1 rows: the last one is the null class (see UNetConfig).
        self.class_embed = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes is not None else None
        self.conv_in = nn.Conv2d(c.in_channels, ch[0], kernel_size=3, padding=1)
        self.down = nn.ModuleList(
            Level([res(ch[i], ch[i]) for _ in range(n)], [attention(i) for _ in range(n)],
                  [cross_attention(i) for _ in range(n)], Downsample(ch[i], ch[i + 1]) if i < levels - 1 else nn.Identity())
            for i in range(levels)
        )
        self.mid = MidBlock(ch[-1], emb_dim, c)
        # up[i] works at the same resolution as down[i]; forward runs them from the bottom up.
        # Each of its ResBlocks reads [h, skip] concatenated along channels, hence 2 * ch[i] inputs.
        self.up = nn.ModuleList(
            Level([res(2 * ch[i], ch[i]) for _ in range(n)], [attention(i) for _ in range(n)],
                  [cross_attention(i) for _ in range(n)], Upsample(ch[i], ch[i - 1]) if i > 0 else nn.Identity())
            for i in range(levels)
        )
        self.norm_out = nn.GroupNorm(c.num_groups, ch[0])
        self.conv_out = zero_init(nn.Conv2d(ch[0], c.out_channels, kernel_size=3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, *,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                extra_emb: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, H, W) float, t (B,) timesteps, cond (B,) int64 class indices or None -> eps_pred (B, C_out, H, W).

        On a class-conditional model, ``cond=None`` means "no label": every sample gets the null class
        ``num_classes`` (``null_condition``, the unconditional branch of classifier-free guidance).
        A text model (``context_dim`` set) needs ``context`` (B, L, context_dim), one vector per token
        from a text encoder, and takes ``context_mask`` (B, L) bool, False at padding.
        ``extra_emb`` (B, time_embed_dim) is added to the time embedding: how a model that wraps this one
        tells every ResBlock its own condition (chapter 10: an image embedding, an augmentation level).
        """
        self._check_inputs(x, t, cond)
        self._check_context(x, context, context_mask)
        emb = self.time_embed(t)  # (B, E)
        if self.class_embed is not None:
            cond = self.null_condition(x.shape[0]) if cond is None else cond  # (B,)
            emb = emb + self.class_embed(cond)  # (B, E)
        if extra_emb is not None:
            if not isinstance(extra_emb, torch.Tensor) or extra_emb.shape != emb.shape:
                got = tuple(extra_emb.shape) if isinstance(extra_emb, torch.Tensor) else type(extra_emb).__name__
                raise ValueError(f"extra_emb must be (B, time_embed_dim) = {tuple(emb.shape)}, got {got}")
            emb = emb + extra_emb  # (B, E)

        h = self.conv_in(x)  # (B, ch[0], H, W)
        skips = []
        for level in self.down:
            for res, attn, xattn in zip(level.res, level.attn, level.xattn):
                h = _read_text(xattn, attn(res(h, emb)), context, context_mask)  # (B, ch[i], H_i, W_i)
                skips.append(h)
            h = level.resample(h)  # (B, ch[i+1], H_i / 2, W_i / 2)
        h = self.mid(h, emb, context, context_mask)  # (B, ch[-1], H_min, W_min)
        for level in reversed(self.up):
            for res, attn, xattn in zip(level.res, level.attn, level.xattn):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))  # (B, 2 ch[i], ...) -> (B, ch[i], ...)
                h = _read_text(xattn, h, context, context_mask)
            h = level.resample(h)  # (B, ch[i-1], 2 H_i, 2 W_i)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out, H, W)

    def _check_context(self, x: torch.Tensor, context: torch.Tensor | None, context_mask: torch.Tensor | None) -> None:
        D = self.config.context_dim
        if D is None:
            if context is not None or context_mask is not None:
                raise ValueError("context given to a model without text conditioning; build it with "
                                 "UNetConfig(context_dim=..., cross_attention_resolutions=...) to read text")
            return
        B = x.shape[0]
        if not isinstance(context, torch.Tensor):
            raise ValueError(f"this model reads text: pass context=(B, L, {D}) token vectors from a text encoder "
                             f"(for 'no text', encode the empty prompt)")
        if context.ndim != 3 or context.shape[0] != B or context.shape[2] != D:
            raise ValueError(f"context must be (B, L, context_dim) = ({B}, L, {D}), got {tuple(context.shape)}")
        if context_mask is not None and (not isinstance(context_mask, torch.Tensor)
                                         or context_mask.shape != context.shape[:2]
                                         or context_mask.dtype != torch.bool):
            got = (f"{context_mask.dtype} {tuple(context_mask.shape)}" if isinstance(context_mask, torch.Tensor)
                   else type(context_mask).__name__)
            raise ValueError(f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])} "
                             f"(True = real token), got {got}")

    def null_condition(self, batch_size: int) -> torch.Tensor:
        """The null class ∅ for ``batch_size`` samples, (batch_size,) int64: row ``num_classes`` of the table."""
        if self.class_embed is None:
            raise ValueError("this U-Net is unconditional: it has no null condition; build it with "
                             "UNetConfig(num_classes=...) to condition on classes")
        return torch.full((batch_size,), self.config.num_classes, dtype=torch.long, device=self.conv_in.weight.device)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> None:
        c = self.config
        check_model_input(x, t, self.conv_in.weight, (c.in_channels, -1, -1))
        factor = 2 ** (len(c.channel_mults) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"H and W must be divisible by {factor} (the network halves them "
                             f"{len(c.channel_mults) - 1} times), got {x.shape[2]}x{x.shape[3]}")
        if cond is None:
            return
        B = x.shape[0]
        if self.class_embed is None:
            raise ValueError("cond (class labels) given to an unconditional model; "
                             "build it with UNetConfig(num_classes=...) to condition on classes")
        if not isinstance(cond, torch.Tensor) or cond.shape != (B,):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a tensor of class indices of shape (B,) = ({B},), got {got}")
        if cond.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"cond must be integer class indices (int64), got dtype {cond.dtype}")
        if cond.numel() and cond.device.type == "cpu" and (cond.min() < 0 or cond.max() > c.num_classes):
            raise ValueError(f"cond must be in [0, {c.num_classes}] ({c.num_classes} is the null class), "
                             f"got values in [{int(cond.min())}, {int(cond.max())}]")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, e.g. ``count_parameters(UNet(UNetConfig.mnist()))``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def shape_trace(model: UNet, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                **context: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Run ``model`` once and list (block name, output shape) for every block, in the order they run.

    For chapter 03's printed trace: ``("down.0.res.0", (2, 32, 28, 28))``, ..., ``("conv_out", ...)``.
    Uses forward hooks, so ``UNet.forward`` stays as it is; the hooks are removed afterwards.
    """
    trace: list[tuple[str, tuple[int, ...]]] = []

    def recorder(name: str):
        return lambda _module, _inputs, output: trace.append((name, tuple(output.shape)))

    handles = [
        module.register_forward_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, (ResBlock, SelfAttention, CrossAttention, Downsample, Upsample))
        or name in ("conv_in", "conv_out")
    ]
    try:
        with torch.no_grad():
            model(x, t, cond, **context)  # context=..., context_mask=... for a text model
    finally:
        for handle in handles:
            handle.remove()
    return trace
