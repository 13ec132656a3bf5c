"""A small U-Net that predicts the noise eps in x_t: eps_pred = eps_theta(x_t, t[, class]) (chapter 03).

    x (B, C_in, 28, 28) -> conv_in
      down, level 0 (28x28): ResBlock x num_res_blocks  --------------- skip --------------+
        Downsample -> level 1 (14x14): ResBlock x num_res_blocks  ---- skip -----------+  |
          Downsample -> level 2 (7x7): ResBlock x num_res_blocks  - skip ---------+  |  |
            mid (7x7): ResBlock, SelfAttention, ResBlock                          |  |  |
          up, level 2 (7x7): ResBlock on [h, skip] x num_res_blocks  <------------+  |  |
        Upsample -> level 1 (14x14): ResBlock on [h, skip] x num_res_blocks  <---------+  |
      Upsample -> level 0 (28x28): ResBlock on [h, skip] x num_res_blocks  <--------------+
    GroupNorm -> SiLU -> conv_out -> eps_pred (B, C_out, 28, 28)

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

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.attention import CrossAttention, SelfAttention
from diffusion_lab.models.blocks import Downsample, ResBlock, Upsample, zero_init
from diffusion_lab.models.embeddings import TimestepEmbedding


@dataclass(frozen=True)
class UNetConfig:
    """What a ``UNet`` looks like. Tweak a preset with ``dataclasses.replace(UNetConfig.mnist(), ...)``.

    Level i works at resolution ``image_size // 2**i`` with ``base_channels * channel_mults[i]``
    channels. Self-attention sits between the two ResBlocks of the middle block (``mid_attention``);
    ``attention_resolutions`` names resolutions (in pixels, e.g. 14 for 14x14) where every ResBlock of
    the down and up paths is followed by self-attention as well (DDPM used 16 on 32x32 CIFAR-10).
    Each attention block splits its channels into ``num_heads`` heads.

    Text conditioning (chapter 06): with ``context_dim = D`` the model reads one D-dim vector per
    prompt token (``forward(..., context=...)``) through cross-attention after every ResBlock at the
    ``cross_attention_resolutions``, and in the middle block when the lowest resolution is among them.

    Class conditioning: with ``num_classes = K`` the model learns K + 1 class embeddings. Rows 0..K-1
    are the classes; row K is the "null" class (no label), used for the 10 % label dropout of
    classifier-free guidance (chapter 07) and whenever ``class_labels`` is None.

    Parameter counts of the presets (``tests/test_models_unet.py`` checks these ranges):
    ``tiny()`` 0.05-0.2 M (199 k), ``mnist()`` 1-4 M (1.97 M), ``mnist_conditional()`` the same plus the
    class table, 11 x 4 * base_channels.
    """

    in_channels: int = 1
    out_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    mid_attention: bool = True
    attention_resolutions: tuple[int, ...] = ()
    cross_attention_resolutions: tuple[int, ...] = ()
    num_heads: int = 4
    num_groups: int = 8
    dropout: float = 0.0
    num_classes: int | None = None
    context_dim: int | None = None

    @classmethod
    def tiny(cls) -> UNetConfig:
        """For tests and quick mode: seconds to train a few steps, not good for real samples."""
        return cls(base_channels=16, channel_mults=(1, 2, 2), num_groups=4, num_heads=2)

    @classmethod
    def mnist(cls) -> UNetConfig:
        """Unconditional MNIST (1x28x28), the defaults: channels (32, 64, 128) at 28, 14 and 7 pixels.

        Sized for 30-60 minutes of training on a laptop CPU (``bench/results/unet_throughput.md``).
        """
        return cls()

    @classmethod
    def mnist_conditional(cls) -> UNetConfig:
        """``mnist()`` plus a class label (digits 0-9, and the null class 10)."""
        return dataclasses.replace(cls.mnist(), num_classes=10)

    @classmethod
    def shapes_text(cls, context_dim: int = 64) -> UNetConfig:
        """RGB 32x32 shapes read through text: channels (32, 64, 64) at 32, 16 and 8 pixels,
        cross-attention to the prompt at 16 and 8 (256 and 64 queries against 12 tokens)."""
        return cls(in_channels=3, out_channels=3, image_size=32, channel_mults=(1, 2, 2),
                   cross_attention_resolutions=(16, 8), context_dim=context_dim)

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
        """Width of the time (and class) embedding that every ResBlock reads: 4 * base_channels, as in DDPM."""
        return 4 * self.base_channels

    def __post_init__(self) -> None:
        # Accept lists (from JSON, say) but store tuples, so configs stay hashable and comparable.
        for name in ("channel_mults", "attention_resolutions", "cross_attention_resolutions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("in_channels", "out_channels", "image_size", "base_channels", "num_res_blocks",
                     "num_heads", "num_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.channel_mults or any(isinstance(m, bool) or not isinstance(m, int) or m < 1
                                         for m in self.channel_mults):
            raise ValueError(f"channel_mults must be a non-empty tuple of positive ints, got {self.channel_mults}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor != 0:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**(levels - 1) = {factor}: "
                f"{len(self.channel_mults)} levels halve it {len(self.channel_mults) - 1} times"
            )
        for c in self.channels:
            if c % self.num_groups != 0:
                raise ValueError(f"every level's channels {self.channels} must be divisible by "
                                 f"num_groups={self.num_groups}; {c} is not")
        for r in self.attention_resolutions:
            if r not in self.resolutions:
                raise ValueError(f"attention resolution {r} is never reached: this network works at "
                                 f"resolutions {self.resolutions}")
        attention_channels = [self.channels[self.resolutions.index(r)] for r in self.attention_resolutions]
        for c in attention_channels + ([self.channels[-1]] if self.mid_attention else []):
            if c % self.num_heads != 0:
                raise ValueError(f"{c} channels (at a level with attention) cannot be split into "
                                 f"num_heads={self.num_heads} heads")
        for r in self.cross_attention_resolutions:
            if r not in self.resolutions:
                raise ValueError(f"cross-attention resolution {r} is never reached: this network works at "
                                 f"resolutions {self.resolutions}")
        if (self.context_dim is None) != (not self.cross_attention_resolutions):
            raise ValueError("context_dim and cross_attention_resolutions go together: a text model needs both "
                             f"(got context_dim={self.context_dim}, "
                             f"cross_attention_resolutions={self.cross_attention_resolutions})")
        if self.context_dim is not None and (isinstance(self.context_dim, bool)
                                             or not isinstance(self.context_dim, int) or self.context_dim < 1):
            raise ValueError(f"context_dim must be None or a positive int, got {self.context_dim!r}")
        cross_channels = [self.channels[self.resolutions.index(r)] for r in self.cross_attention_resolutions]
        for c in cross_channels:
            if c % self.num_heads != 0:
                raise ValueError(f"{c} channels (at a level with cross-attention) cannot be split into "
                                 f"num_heads={self.num_heads} heads")
        if not isinstance(self.mid_attention, bool):
            raise ValueError(f"mid_attention must be True or False, got {self.mid_attention!r}")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_classes is not None and (isinstance(self.num_classes, bool)
                                             or not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"num_classes must be None (unconditional) or a positive int, got {self.num_classes!r}")


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
    """eps_theta(x_t, t[, class_labels]): predicts the noise in x_t (B, C_in, H, W) at steps t (B,)."""

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

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None, *,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, H, W) float, t (B,) timesteps, class_labels (B,) int64 or None -> eps_pred (B, C_out, H, W).

        On a class-conditional model, ``class_labels=None`` means "no label": every sample gets the
        null class ``num_classes`` (the unconditional branch of classifier-free guidance).
        A text model (``context_dim`` set) needs ``context`` (B, L, context_dim), one vector per token
        from a text encoder, and takes ``context_mask`` (B, L) bool, False at padding.
        """
        self._check_inputs(x, t, class_labels)
        self._check_context(x, context, context_mask)
        emb = self.time_embed(t)  # (B, E)
        if self.class_embed is not None:
            if class_labels is None:
                class_labels = torch.full_like(t, self.config.num_classes, dtype=torch.long)  # (B,) null class
            emb = emb + self.class_embed(class_labels)  # (B, E)

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

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None) -> None:
        c = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a (B, C, H, W) tensor, got {got}")
        B, C, H, W = x.shape
        if C != c.in_channels:
            raise ValueError(f"x has {C} channels but the model expects in_channels={c.in_channels}")
        factor = 2 ** (len(c.channel_mults) - 1)
        if H % factor or W % factor:
            raise ValueError(f"H and W must be divisible by {factor} (the network halves them "
                             f"{len(c.channel_mults) - 1} times), got {H}x{W}")
        weight = self.conv_in.weight
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; use x.float()")
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
            raise TypeError(f"t must hold integer (or real) timesteps, got dtype {t.dtype}")
        if class_labels is None:
            return
        if self.class_embed is None:
            raise ValueError("class_labels given to an unconditional model; "
                             "build it with UNetConfig(num_classes=...) to condition on classes")
        if not isinstance(class_labels, torch.Tensor) or class_labels.shape != (B,):
            got = tuple(class_labels.shape) if isinstance(class_labels, torch.Tensor) else type(class_labels).__name__
            raise ValueError(f"class_labels must be a tensor of shape (B,) = ({B},), got {got}")
        if class_labels.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"class_labels must be integer class indices (int64), got dtype {class_labels.dtype}")
        if class_labels.numel() and (class_labels.min() < 0 or class_labels.max() > c.num_classes):
            raise ValueError(f"class_labels must be in [0, {c.num_classes}] ({c.num_classes} is the null class), "
                             f"got values in [{int(class_labels.min())}, {int(class_labels.max())}]")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, e.g. ``count_parameters(UNet(UNetConfig.mnist()))``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def shape_trace(model: UNet, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
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
            model(x, t, class_labels, **context)  # context=..., context_mask=... for a text model
    finally:
        for handle in handles:
            handle.remove()
    return trace
