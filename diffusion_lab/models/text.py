"""From a prompt to one vector per word: the tokenizer and the text encoder (chapter 06).

    "a small red circle in the top left"
        -> Tokenizer ->  [<start>, a, small, red, circle, in, the, top, left, <pad>, <pad>, <pad>]
        -> ids (B, L) int64                                    L = max_length, padded
        -> TextEncoder -> context (B, L, D): one D-dim vector per token, each aware of the others

The U-Net reads ``context`` through cross-attention (``attention.CrossAttention``). Stable Diffusion
does the same with CLIP's frozen text encoder (77 tokens, D = 768); here a two-layer transformer of
width 64 is trained together with the U-Net on the shapes captions, which use only 20 words.

The interface is what lets another encoder stand in: anything with a ``tokenizer`` attribute, a
``dim`` (D) and ``forward(ids (B, L)) -> (B, L, D)`` works, a frozen pretrained one included
(chapter 10 trains a CLIP-style encoder and plugs it in here).

Every sequence starts with ``<start>`` (CLIP's tokenizer does the same), so even the empty prompt
"" has one token to attend to. The empty prompt is the "no text" condition (the symbol ∅) of
classifier-free guidance; a learner's prompt may not be empty (``allow_empty=False``), because a
model asked for nothing draws whatever it likes and that is almost always a mistake.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PAD, START, UNK = "<pad>", "<start>", "<unk>"
SPECIAL_TOKENS = (PAD, START, UNK)
# Other spellings of a word, used when the vocabulary has the second but not the first.
ALIASES = {"center": "centre", "an": "a", "color": "colour", "gray": "grey"}


def _shown(text: object, limit: int = 60) -> str:
    """``repr(text)``, cut to about ``limit`` characters, so a long prompt does not fill the error message."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


class Tokenizer:
    """Splits prompts into known words and maps them to integer ids; pads every prompt to ``max_length``.

    ``unknown="error"`` (the default) rejects a word outside the vocabulary with a suggestion;
    ``unknown="unk"`` maps it to the ``<unk>`` token instead, which the model never saw in training.
    Ids 0, 1, 2 are ``<pad>``, ``<start>``, ``<unk>``; words follow in vocabulary order.
    """

    def __init__(self, vocabulary: Sequence[str], max_length: int = 12, unknown: str = "error") -> None:
        if isinstance(vocabulary, str) or not all(isinstance(w, str) and w for w in vocabulary):
            raise TypeError("vocabulary must be a sequence of non-empty words, e.g. data.shapes.caption_vocabulary()")
        if len(set(vocabulary)) != len(vocabulary) or set(vocabulary) & set(SPECIAL_TOKENS):
            raise ValueError(f"vocabulary words must be distinct and not one of {SPECIAL_TOKENS}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an int >= 2 (<start> and at least one word), got {max_length!r}")
        if unknown not in ("error", "unk"):
            raise ValueError(f'unknown must be "error" or "unk", got {unknown!r}')
        self.tokens: tuple[str, ...] = (*SPECIAL_TOKENS, *vocabulary)
        self.ids = {tok: i for i, tok in enumerate(self.tokens)}
        self.max_length = max_length
        self.unknown = unknown
        self.pad_id, self.start_id, self.unk_id = (self.ids[t] for t in SPECIAL_TOKENS)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.tokens[len(SPECIAL_TOKENS):]

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Tokenizer({len(self.vocabulary)} words, max_length={self.max_length}, unknown={self.unknown!r})"

    def words(self, prompt: str) -> list[str]:
        """Lower-case the prompt, drop punctuation, split on spaces and respell words by ``ALIASES`` where the
        vocabulary knows only the other spelling."""
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt must be a str, got {type(prompt).__name__} ({_shown(prompt)})")
        words = re.sub(r"[^\w\s]", " ", prompt.lower()).split()
        return [ALIASES[w] if w not in self.ids and ALIASES.get(w) in self.ids else w for w in words]

    def _token_id(self, word: str, prompt: str) -> int:
        if word in self.ids and word not in SPECIAL_TOKENS:
            return self.ids[word]
        if self.unknown == "unk":
            return self.unk_id
        close = difflib.get_close_matches(word, self.vocabulary, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown word {_shown(word)} in the prompt {_shown(prompt)}.{hint} This model knows only "
                         f"these words: {', '.join(self.vocabulary)}. (Tokenizer(..., unknown='unk') maps unknown "
                         f"words to {UNK} instead.)")

    def encode_one(self, prompt: str, *, allow_empty: bool = False) -> list[int]:
        """One prompt -> its ``max_length`` ids: <start>, one id per word, then <pad>s."""
        words = self.words(prompt)
        if not words and not allow_empty:
            raise ValueError(f"the prompt {_shown(prompt)} has no words; describe the picture, "
                             f"e.g. 'a small red circle in the top left'")
        if len(words) > self.max_length - 1:
            raise ValueError(f"the prompt {_shown(prompt)} has {len(words)} words but this model reads at most "
                             f"{self.max_length - 1}; shorten it")
        ids = [self.start_id] + [self._token_id(w, prompt) for w in words]
        return ids + [self.pad_id] * (self.max_length - len(ids))

    def encode(self, prompts: str | Sequence[str], *, allow_empty: bool = False) -> torch.Tensor:
        """A prompt or a list of B prompts -> ids (B, max_length) int64 (B = 1 for a single str).

        ``allow_empty=True`` lets "" through: that is the empty condition ∅ of classifier-free guidance.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, Sequence) or not prompts:
            raise TypeError(f"prompts must be a str or a non-empty list of str, got {prompts!r}")
        return torch.tensor([self.encode_one(p, allow_empty=allow_empty) for p in prompts], dtype=torch.int64)

    def empty(self, batch_size: int = 1) -> torch.Tensor:
        """Ids of the empty prompt "" (the ∅ of guidance), (batch_size, max_length)."""
        return self.encode([""] * batch_size, allow_empty=True)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Ids (B, L) -> the B prompts they spell, without <start> and <pad>."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
            raise ValueError(f"ids must be a (B, L) tensor, got {getattr(ids, 'shape', type(ids).__name__)}")
        skip = {self.pad_id, self.start_id}
        return [" ".join(self.tokens[i] for i in row.tolist() if i not in skip) for row in ids]

    def mask(self, ids: torch.Tensor) -> torch.Tensor:
        """True where a token is real, False at padding: (B, L) bool."""
        return ids != self.pad_id


@dataclass(frozen=True)
class TextEncoderConfig:
    """A small transformer over the tokens of ``vocabulary`` (the words of the data set's captions, passed
    in: e.g. ``data.shapes.caption_vocabulary()``): ``depth`` blocks of width ``width``."""

    vocabulary: tuple[str, ...]
    max_length: int = 12
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        for name in ("max_length", "width", "depth", "num_heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TextEncoderConfig.{name} must be a positive int, got {value!r}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        Tokenizer(self.vocabulary, self.max_length)  # checks the vocabulary


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + SelfAttention(LN(x)), then x + MLP(LN(x)); padding is never attended to."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) bool (True = real token) -> (B, L, D)."""
        B, L, D = x.shape
        nh = self.num_heads
        q, k, v = self.qkv(self.ln_1(x)).view(B, L, 3, nh, D // nh).permute(2, 0, 3, 1, 4)  # each (B, nh, L, hs)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, nh, L, hs)
        x = x + self.proj(h.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.ln_2(x))  # (B, L, D)


class TextEncoder(nn.Module):
    """ids (B, L) -> context (B, L, D): token embedding + learned position embedding, ``depth`` blocks, LayerNorm.

    ``tokenizer`` turns prompts into ids; ``dim`` is D, the ``context_dim`` the U-Net must be built with.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, TextEncoderConfig):
            raise TypeError(f"config must be a TextEncoderConfig, got {type(config).__name__}")
        self.config = c = config
        self.tokenizer = Tokenizer(c.vocabulary, c.max_length)
        self.dim = c.width
        self.token_embed = nn.Embedding(len(self.tokenizer), c.width)
        self.pos_embed = nn.Parameter(torch.zeros(c.max_length, c.width))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(c.width, c.num_heads, c.mlp_ratio, c.dropout)
                                    for _ in range(c.depth))
        self.ln_final = nn.LayerNorm(c.width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) int64 from ``tokenizer.encode`` -> one vector per token (B, L, D)."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[1] != self.config.max_length:
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be (B, {self.config.max_length}) token ids from model.tokenizer.encode(prompts), "
                             f"got {got}")
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"ids must be integer token ids, got dtype {ids.dtype}; use tokenizer.encode(prompts)")
        if ids.numel() and ids.device.type == "cpu" and (ids.min() < 0 or ids.max() >= len(self.tokenizer)):
            raise ValueError(f"token ids must lie in [0, {len(self.tokenizer) - 1}], "
                             f"got values in [{int(ids.min())}, {int(ids.max())}]")
        mask = self.tokenizer.mask(ids)  # (B, L)
        x = self.token_embed(ids) + self.pos_embed  # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_final(x)  # (B, L, D)
