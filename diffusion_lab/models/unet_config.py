"""What a U-Net looks like: ``UNetConfig`` and its named presets (chapter 03).

A frozen dataclass, so a chapter tweaks a preset with ``dataclasses.replace(UNetConfig.mnist(), ...)``
and a checkpoint stores it as JSON. Its checks run when it is made, one line each, so a bad shape is
a clear error before any layer is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diffusion_lab.tensors import check_fraction, check_int, check_int_tuple, check_levels


class Levels:
    """What a network of levels works out from its config: level i has side ``image_size // 2**i`` and
    ``base_channels * channel_mults[i]`` channels. Shared by the U-Net and the noise-aware classifier."""

    base_channels: int
    image_size: int
    channel_mults: tuple[int, ...]

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


@dataclass(frozen=True)
class UNetConfig(Levels):
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
    classifier-free guidance (chapter 07) and whenever ``cond`` is None.

    Parameter counts of the presets: ``tiny()`` 199 k, ``mnist()`` 1.97 M, ``mnist_conditional()`` the
    same plus the class table, 11 x 4 * base_channels (``tests/test_models_unet.py`` checks them).
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
        """Unconditional MNIST (1x28x28), the defaults: channels (32, 64, 128) at 28, 14 and 7 pixels,
        sized for a laptop CPU (speeds in ``bench/results/unet_throughput.md``)."""
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

    def __post_init__(self) -> None:
        # Accept lists (from JSON, say) but store tuples, so configs stay hashable and comparable.
        object.__setattr__(self, "channel_mults", check_int_tuple(self.channel_mults, "channel_mults"))
        for name in ("attention_resolutions", "cross_attention_resolutions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("in_channels", "out_channels", "image_size", "base_channels", "num_res_blocks", "num_heads",
                     "num_groups"):
            check_int(getattr(self, name), name, low=1)
        if not self.channel_mults:
            raise ValueError("channel_mults must be a non-empty tuple of positive ints, got ()")
        check_levels(self.image_size, len(self.channel_mults), self.channels, self.num_groups)
        for kind, resolutions in (("attention", self.attention_resolutions),
                                  ("cross-attention", self.cross_attention_resolutions)):
            for r in resolutions:
                if r not in self.resolutions:
                    raise ValueError(f"{kind} resolution {r} is never reached: this network works at "
                                     f"resolutions {self.resolutions}")
        heads = [self.channels[self.resolutions.index(r)]
                 for r in self.attention_resolutions + self.cross_attention_resolutions]
        for c in heads + ([self.channels[-1]] if self.mid_attention else []):
            if c % self.num_heads != 0:
                raise ValueError(f"{c} channels (at a level with attention) cannot be split into "
                                 f"num_heads={self.num_heads} heads")
        if (self.context_dim is None) != (not self.cross_attention_resolutions):
            raise ValueError("context_dim and cross_attention_resolutions go together: a text model needs both "
                             f"(got context_dim={self.context_dim}, "
                             f"cross_attention_resolutions={self.cross_attention_resolutions})")
        if self.context_dim is not None:
            check_int(self.context_dim, "context_dim", low=1)
        if not isinstance(self.mid_attention, bool):
            raise ValueError(f"mid_attention must be True or False, got {self.mid_attention!r}")
        check_fraction(self.dropout, "dropout")
        if self.num_classes is not None:
            check_int(self.num_classes, "num_classes", low=1)
