"""A small CLIP: an image encoder and a text encoder that map matching pictures and captions to nearby unit
vectors (chapter 10).

    images (B, 3, 32, 32) --ImageEncoder--> (B, F) --image_proj--> L2-normalise --> image_emb (B, D)
    ids (B, L)  --TextEncoder--> (B, L, W), <start> token (B, W) --text_proj--> L2-normalise --> text_emb (B, D)
    logits = exp(logit_scale) * image_emb @ text_emb.T     (B, B): image i against caption j

Radford et al. 2021 (CLIP) train both encoders so that each picture's own caption has the highest cosine
similarity in its batch (``training/contrastive.py``). Here the text encoder is chapter 06's transformer
(``text.py``) and the image encoder a small CNN. Its last feature map (4 x 4 cells for a 32 x 32 picture)
is flattened, not pooled, so the embedding still knows *where* things are: the captions name positions
("in the top left") and relations ("to the left of"), and a global average would throw that away (the
attribute scorer, ``judges/attribute_scorer.py``, flattens for the same reason).

The caption is read at its ``<start>`` token. The encoder has no causal mask, so that token attends to every
word and learns what to collect, as BERT's [CLS] does; it sits at the same place in every caption. (OpenAI's
causal text transformer reads the last token instead, the only one that has seen the whole caption.) A mean
over the words would weigh each equally, while meaning here is in which colour goes with which shape.

The temperature is learned as in CLIP: ``logit_scale`` stores log(1 / tau), starts at log(1 / 0.07), and
the scale exp(logit_scale) is clamped at 100 so the logits cannot grow without bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.text import TextEncoder, TextEncoderConfig, Tokenizer
from diffusion_lab.tensors import check_int, check_model_input, check_number

MAX_LOGIT_SCALE = 100.0  # CLIP's cap on exp(logit_scale)


@dataclass(frozen=True)
class CLIPConfig:
    """The text encoder (``text``, its vocabulary passed in), the picture size and channels the image encoder
    reads, its conv ``width`` (channels w, 2w, 4w; a multiple of ``num_groups``), the shared embedding width
    ``embed_dim`` D and the initial temperature ``init_temperature`` (CLIP's 0.07)."""

    text: TextEncoderConfig
    image_size: int = 32
    in_channels: int = 3
    width: int = 32
    embed_dim: int = 64
    num_groups: int = 8
    init_temperature: float = 0.07

    def __post_init__(self) -> None:
        if isinstance(self.text, dict):  # as read back from a checkpoint's JSON
            object.__setattr__(self, "text", TextEncoderConfig(**self.text))
        if not isinstance(self.text, TextEncoderConfig):
            raise TypeError(f"CLIPConfig.text must be a TextEncoderConfig, got {type(self.text).__name__}")
        for name in ("image_size", "in_channels", "width", "embed_dim", "num_groups"):
            check_int(getattr(self, name), f"CLIPConfig.{name}", low=1)
        if self.image_size % 8:
            raise ValueError(f"CLIPConfig.image_size must be divisible by 8 (the image encoder halves it three "
                             f"times), got {self.image_size}")
        if self.width % self.num_groups:
            raise ValueError(f"CLIPConfig.width {self.width} must be divisible by num_groups {self.num_groups} "
                             f"(GroupNorm)")
        if not 1 / MAX_LOGIT_SCALE <= check_number(self.init_temperature, "CLIPConfig.init_temperature",
                                                   positive=True) <= 1:
            raise ValueError(f"CLIPConfig.init_temperature must be in [0.01, 1] (CLIP starts at 0.07), "
                             f"got {self.init_temperature}")

    @classmethod
    def scenes(cls, vocabulary: Sequence[str]) -> CLIPConfig:
        """Chapter 10's CLIP for 32x32 scenes: conv width 32, a width-64 two-layer text encoder over
        ``vocabulary`` (``data.scenes.scene_vocabulary()``), 64-d embeddings; about 0.5 M parameters."""
        return cls(TextEncoderConfig(tuple(vocabulary), width=64, depth=2, num_heads=4))

    @classmethod
    def tiny(cls, vocabulary: Sequence[str]) -> CLIPConfig:
        """About 24,000 parameters, for tests: 16x16 pictures, width 8, a one-layer width-16 text encoder."""
        return cls(TextEncoderConfig(tuple(vocabulary), width=16, depth=1, num_heads=2), image_size=16, width=8,
                   embed_dim=16)


def _conv(c_in: int, c_out: int, groups: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU()]


class ImageEncoder(nn.Module):
    """x (B, C, S, S) in [-1, 1] -> features (B, 4w (S/8)^2): a stem that halves the picture at once (4 x 4
    patches, stride 2: no pixel is skipped, and full-resolution layers would double the cost), then two stages
    that each widen and halve; flattened.

    GroupNorm rather than BatchNorm: a picture's embedding must not depend on the other pictures of its
    batch, or contrastive training can learn from batch statistics instead of from the picture.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        w, g = config.width, config.num_groups
        self.body = nn.Sequential(
            *_conv(config.in_channels, w, g, kernel=4, stride=2),  # (B, w, S/2, S/2)
            *_conv(w, 2 * w, g), *_conv(2 * w, 2 * w, g, stride=2),  # (B, 2w, S/4, S/4)
            *_conv(2 * w, 4 * w, g), *_conv(4 * w, 4 * w, g, stride=2),  # (B, 4w, S/8, S/8)
            nn.Flatten(),  # (B, 4w * (S/8)^2): each cell keeps its place
        )
        self.dim = 4 * w * (config.image_size // 8) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, F)


class CLIP(nn.Module):
    """Contrastive image and text encoders with a shared embedding space of width ``config.embed_dim``.

    ``encode_image(images)`` and ``encode_text(ids)`` give unit vectors (B, D); ``forward(images, ids)`` the
    scaled cosine similarities (B_images, B_texts); ``tokenizer`` turns captions into ids:

        clip.encode_text(clip.tokenizer.encode(["a red circle to the left of a blue square"]))
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        if not isinstance(config, CLIPConfig):
            raise TypeError(f"config must be a CLIPConfig, got {type(config).__name__}")
        self.config = c = config
        self.image_encoder = ImageEncoder(c)
        self.text_encoder = TextEncoder(c.text)
        self.image_proj = nn.Linear(self.image_encoder.dim, c.embed_dim, bias=False)
        self.text_proj = nn.Linear(self.text_encoder.dim, c.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)))  # log(1 / tau)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.text_encoder.tokenizer

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, S, S) in [-1, 1] -> image_emb (B, D), unit vectors."""
        c = self.config
        check_model_input(images, None, self.image_proj.weight, (c.in_channels, c.image_size, c.image_size))
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=-1)  # (B, D)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) from ``tokenizer.encode(captions)`` -> text_emb (B, D), unit vectors."""
        tokens = self.text_encoder(ids)  # (B, L, W); checks the ids
        return F.normalize(self.text_proj(tokens[:, 0]), dim=-1)  # the <start> token -> (B, D)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale) = 1 / temperature, clamped at 100: a 0-d tensor."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B_images, B_texts): scale * cos(image i, caption j). Rows read image -> text; transpose for
        text -> image."""
        image_emb, text_emb = self.encode_image(images), self.encode_text(ids)  # (B, D) each
        with torch.autocast(image_emb.device.type, enabled=False):  # bf16 keeps 3 digits: too coarse at scale 100
            return self.scale() * image_emb.float() @ text_emb.float().t()  # (B_images, B_texts)
