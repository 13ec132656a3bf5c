"""A text-to-image denoiser: a text encoder and a U-Net that reads it, trained together (chapter 06).

    eps_theta(x_t, t, prompt) = UNet(x_t, t, context = TextEncoder(tokenizer(prompt)))

This is Stable Diffusion's arrangement in miniature. Chapter 06's ``shapes_text`` learns the small encoder of
``text.py`` from scratch beside the U-Net; chapter 11's ``tiny_sd`` does as Stable Diffusion does and takes a
CLIP's text encoder (chapter 10's ``clip_scenes``) pretrained and frozen. Any encoder with the same interface
(``tokenizer``, ``dim``, ``forward(ids) -> (B, L, dim)``) can be passed in with
``TextUNet(config, text_encoder=...)``; a preset's ``text_encoder`` does that, frozen, for training.

The condition passed around by training and sampling is the token ids (B, L): they batch, index and
concatenate like class labels, and the empty prompt's ids are the null condition ∅ of guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from diffusion_lab.models.text import TextEncoder, TextEncoderConfig, Tokenizer
from diffusion_lab.models.unet import UNet, UNetConfig


@dataclass(frozen=True)
class TextUNetConfig:
    """The U-Net and the text encoder. ``unet.context_dim`` must equal ``text.width``."""

    unet: UNetConfig
    text: TextEncoderConfig

    def __post_init__(self) -> None:
        # Accept plain dicts, as read back from a checkpoint's JSON.
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", TextEncoderConfig(**self.text))
        if not isinstance(self.unet, UNetConfig) or not isinstance(self.text, TextEncoderConfig):
            raise TypeError("TextUNetConfig needs a UNetConfig and a TextEncoderConfig")
        if self.unet.context_dim != self.text.width:
            raise ValueError(f"the U-Net reads context of width {self.unet.context_dim} but the text encoder writes "
                             f"width {self.text.width}; make UNetConfig.context_dim equal TextEncoderConfig.width")

    @classmethod
    def shapes(cls, vocabulary: Sequence[str]) -> TextUNetConfig:
        """The shapes text-to-image model of chapters 06-07: 32x32 RGB, a width-64 text encoder over
        ``vocabulary`` (``data.shapes.caption_vocabulary()``)."""
        return cls(UNetConfig.shapes_text(context_dim=64), TextEncoderConfig(tuple(vocabulary), width=64))


class TextUNet(nn.Module):
    """eps_theta(x_t, t, cond): x (B, C, H, W), t (B,), cond the prompts' token ids (B, L) int64 -> eps_pred (B, C, H, W)."""

    def __init__(self, config: TextUNetConfig, *, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(config, TextUNetConfig):
            raise TypeError(f"config must be a TextUNetConfig, got {type(config).__name__}")
        self.config = config
        self.text_encoder = text_encoder if text_encoder is not None else TextEncoder(config.text)
        if self.text_encoder.dim != config.unet.context_dim:
            raise ValueError(f"the text encoder writes vectors of width {self.text_encoder.dim} but the U-Net "
                             f"expects context_dim={config.unet.context_dim}")
        self.unet = UNet(config.unet)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.text_encoder.tokenizer

    def encode_prompts(self, prompts: str | Sequence[str], *, allow_empty: bool = False) -> torch.Tensor:
        """Prompts -> token ids (B, L) on the model's device; "" needs ``allow_empty=True`` (it is ∅)."""
        return self.tokenizer.encode(prompts, allow_empty=allow_empty).to(self.unet.conv_in.weight.device)

    def null_condition(self, batch_size: int = 1) -> torch.Tensor:
        """Token ids of the empty prompt, (batch_size, L): the ∅ of classifier-free guidance."""
        return self.tokenizer.empty(batch_size).to(self.unet.conv_in.weight.device)

    def context(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, L) -> (context (B, L, D), mask (B, L) bool) for the U-Net's cross-attention."""
        return self.text_encoder(token_ids), self.tokenizer.mask(token_ids)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The noise in x (B, C, H, W) at steps t (B,) given the prompts' token ids ``cond`` (B, L); None means ""."""
        if cond is None:
            cond = self.null_condition(x.shape[0])
        if not isinstance(cond, torch.Tensor) or cond.ndim != 2 or cond.shape[0] != x.shape[0]:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be token ids (B, L) with B = {x.shape[0]} (one prompt per image), got {got}; "
                             f"make them with model.encode_prompts(prompts)")
        context, mask = self.context(cond)
        return self.unet(x, t, context=context, context_mask=mask)  # (B, C, H, W)
