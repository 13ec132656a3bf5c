"""unCLIP's decoder: a U-Net that draws a picture from a CLIP image embedding (chapter 10).

    eps_theta(x_t, t, e_image) = UNet(x_t, t, extra_emb = W_e e_image, context = K tokens from W_c e_image)

DALL-E 2 (Ramesh et al. 2022, sec. 2.1) builds its decoder from GLIDE's U-Net (Nichol et al. 2022) and
reads the image embedding e_image twice: projected and *added to the time embedding* that every
ResBlock reads, and projected into K extra *context tokens* (four in the paper) that the U-Net's
cross-attention reads. The first is a global nudge everywhere; the second lets each pixel ask for the
part of the embedding it needs. Here the K tokens are the whole context (the paper's decoder also read
the caption through GLIDE's text encoder; this one reads the embedding alone).

The condition ``cond`` is the embedding itself, (B, D) float, so training (``DiffusionObjective``) and
classifier-free guidance (``guidance.py``) handle it like class labels or token ids. Its null
condition is the zero vector; the paper drops embeddings "to zero (or a learned embedding) 10% of the
time". Zero rather than learned: a real embedding is a unit vector, so 0 is never mistaken for one;
the projections' biases still learn what "no picture in mind" means; and, unlike a learned null
vector, zero cannot drift away from the copy that condition dropout keeps for the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.tensors import check_int


@dataclass(frozen=True)
class EmbeddingUNetConfig:
    """The U-Net and the embedding it reads. ``unet`` needs ``context_dim`` and ``cross_attention_resolutions``
    (the tokens are read there) and no class table; ``embed_dim`` is D, the width of e_image; ``num_tokens``
    is K, how many context tokens one embedding becomes."""

    unet: UNetConfig
    embed_dim: int = 64
    num_tokens: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):  # as read back from a checkpoint's JSON
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if not isinstance(self.unet, UNetConfig):
            raise TypeError(f"EmbeddingUNetConfig needs a UNetConfig, got {type(self.unet).__name__}")
        if self.unet.context_dim is None:
            raise ValueError("the decoder reads its embedding through cross-attention: give the UNetConfig "
                             "context_dim=... and cross_attention_resolutions=... (see EmbeddingUNetConfig.scenes)")
        if self.unet.num_classes is not None:
            raise ValueError("the decoder's condition is the embedding, not a class: build its UNetConfig "
                             f"with num_classes=None (got {self.unet.num_classes})")
        check_int(self.embed_dim, "embed_dim", low=1)
        check_int(self.num_tokens, "num_tokens", low=1)

    @classmethod
    def scenes(cls, embed_dim: int = 64) -> EmbeddingUNetConfig:
        """The 32x32 RGB decoder of chapter 10: ``UNetConfig.shapes_text``'s widths (32, 64, 64) at 32, 16
        and 8 pixels, cross-attention to 4 tokens at 16 and 8, for CLIP embeddings of width ``embed_dim``."""
        return cls(UNetConfig.shapes_text(context_dim=64), embed_dim=embed_dim, num_tokens=4)

    @classmethod
    def tiny(cls, embed_dim: int = 16) -> EmbeddingUNetConfig:
        """For tests: ``UNetConfig.tiny``'s widths on 16x16 RGB, 2 tokens of width 16 read at 4x4."""
        unet = UNetConfig(in_channels=3, out_channels=3, image_size=16, base_channels=16, channel_mults=(1, 2, 2),
                          num_groups=4, num_heads=2, cross_attention_resolutions=(4,), context_dim=16)
        return cls(unet, embed_dim=embed_dim, num_tokens=2)


class EmbeddingUNet(nn.Module):
    """eps_theta(x_t, t, cond): x (B, C, H, W), t (B,), cond image embeddings (B, D) or None -> eps_pred (B, C, H, W)."""

    def __init__(self, config: EmbeddingUNetConfig) -> None:
        super().__init__()
        if not isinstance(config, EmbeddingUNetConfig):
            raise TypeError(f"config must be an EmbeddingUNetConfig, got {type(config).__name__}")
        self.config = c = config
        self.unet = UNet(c.unet)
        self.embed_proj = nn.Linear(c.embed_dim, c.unet.time_embed_dim)  # e_image -> added to the time embedding
        self.token_proj = nn.Linear(c.embed_dim, c.num_tokens * c.unet.context_dim)  # e_image -> K tokens

    def null_condition(self, batch_size: int = 1) -> torch.Tensor:
        """The zero embedding (batch_size, D): the ∅ of classifier-free guidance (see the module docstring)."""
        weight = self.embed_proj.weight
        return torch.zeros(check_int(batch_size, "batch_size", low=1), self.config.embed_dim,
                           dtype=weight.dtype, device=weight.device)

    def tokens(self, cond: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) -> the K context tokens the cross-attention reads, (B, K, context_dim)."""
        B, K = cond.shape[0], self.config.num_tokens
        return self.token_proj(cond).view(B, K, self.config.unet.context_dim)  # (B, K, C_ctx)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The noise in x (B, C, H, W) at steps t (B,) given image embeddings ``cond`` (B, D); None means ∅."""
        cond = self.null_condition(x.shape[0]) if cond is None else self._check_cond(x, cond)
        extra_emb = self.embed_proj(cond)  # (B, time_embed_dim)
        return self.unet(x, t, context=self.tokens(cond), extra_emb=extra_emb)  # (B, C, H, W)

    def _check_cond(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        D = self.config.embed_dim
        B = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim else None  # a bad x is the U-Net's to report
        if not isinstance(cond, torch.Tensor) or cond.ndim != 2 or cond.shape[1] != D \
                or B is not None and cond.shape[0] != B:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be image embeddings shaped (B, embed_dim) = ({B}, {D}), one per image, "
                             f"got {got}; for one embedding for all, use cond.expand(B, -1)")
        if not cond.is_floating_point():
            raise TypeError(f"cond must be float embeddings (a CLIP image embedding), got dtype {cond.dtype}; "
                            f"class labels belong to a UNet with num_classes")
        return cond.to(self.embed_proj.weight.dtype)
