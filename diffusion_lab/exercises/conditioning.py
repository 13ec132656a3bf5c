"""Checks for chapter 06: tokenizing a prompt, masked attention weights, cross-attention, one word's map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffusion_lab.data.shapes import caption_vocabulary
from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.models.attention import CrossAttention, attention_weights
from diffusion_lab.models.text import PAD, START, Tokenizer
from diffusion_lab.notebook.attention_maps import token_maps

_PROMPTS = ("a small red circle in the top left", "a large green triangle in the centre", "circle",
            "A Large Blue Square")


def _as_id_list(exercise: str, got: Any, prompt: str) -> list[int]:
    if isinstance(got, torch.Tensor):
        if got.is_floating_point() or got.ndim != 1:
            raise ExerciseFailed(exercise, f"for {prompt!r} return one row of integer ids (a list of ints or an int64 "
                                           f"tensor shaped (max_length,)), got {got.dtype} shaped {tuple(got.shape)}")
        return got.tolist()
    if not isinstance(got, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in got):
        raise ExerciseFailed(exercise, f"for {prompt!r} return a list of ints (or an int64 tensor), got {got!r}")
    return list(got)


def check_tokenize(fn: Callable[..., Any]) -> None:
    """6.1: tokenize(prompt, token_ids, max_length) -> [<start>, one id per lower-cased word, <pad>, ...]."""
    tokenizer = Tokenizer(caption_vocabulary())
    # The course's ids put <pad> at 0 and <start> at 1; a second, shuffled table catches fixed numbers.
    words = list(tokenizer.ids)
    shuffled = dict(zip(words, torch.randperm(len(words), generator=_gen(61)).tolist()))
    for token_ids, max_length in ((tokenizer.ids, 12), (tokenizer.ids, 6), (shuffled, 12)):
        for prompt in _PROMPTS:
            if len(prompt.split()) > max_length - 1:
                continue
            got = _as_id_list("6.1", _call("6.1", fn, prompt, dict(token_ids), max_length), prompt)
            ids = [token_ids[START]] + [token_ids[w] for w in prompt.lower().split()]
            want = ids + [token_ids[PAD]] * (max_length - len(ids))
            if got == want:
                continue
            if len(got) != max_length:
                raise ExerciseFailed("6.1", f"{prompt!r} with max_length={max_length} gave {len(got)} ids; every "
                                            f"prompt must be padded with <pad> to exactly max_length ids")
            if token_ids is shuffled:
                raise ExerciseFailed("6.1", f"with another id table, {prompt!r} gave {got}, expected {want}: look the "
                                            f"ids up in token_ids (token_ids['<pad>'], ...) rather than writing numbers")
            if got[0] != token_ids[START]:
                raise ExerciseFailed("6.1", f"{prompt!r} gave {got}: the first id must be <start>, "
                                            f"token_ids['<start>'] = {token_ids[START]}")
            raise ExerciseFailed("6.1", f"{prompt!r} with max_length={max_length} gave {got}, expected {want} "
                                        f"(<start>, one id per lower-cased word, then <pad> to the end)")
    _passed("6.1", "every prompt becomes a row of the same length, so a batch of prompts is one (B, L) tensor.")


def check_masked_attention_weights(fn: Callable[..., torch.Tensor]) -> None:
    """6.2: masked_attention_weights(q, k, mask): softmax(q k^T / sqrt(d)) with weight 0 on padded keys."""
    gen = _gen(62)
    q = torch.randn(2, 5, 8, generator=gen) * 2  # (B, N, d): five queries (pixels)
    k = torch.randn(2, 4, 8, generator=gen) * 2  # (B, L, d): four keys (tokens)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])  # (B, L): True = a real token
    got = _call("6.2", fn, q.clone(), k.clone(), mask.clone())
    want = attention_weights(q, k, mask[:, None, :])  # (B, N, L)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
        if (got.detach()[~mask[:, None, :].expand_as(got)].abs() > 1e-6).any():
            raise ExerciseFailed("6.2", "padded keys (mask False) still get some weight: set their scores to -inf "
                                        "before the softmax")
        if not torch.allclose(got.detach().sum(-1).double(), torch.ones(2, 5, dtype=torch.float64), atol=1e-5):
            raise ExerciseFailed("6.2", "each query's weights should sum to 1 over the keys (softmax over the last "
                                        "dimension, after masking)")
    _compare("6.2", got, want, "the weight matrix", atol=1e-5)
    _passed("6.2", "each pixel's weights sum to 1 over the real tokens; padding gets exactly 0.")


def _cross_attention_block(seed: int) -> CrossAttention:
    """A CrossAttention with every weight random, its output projection included (zero at initialisation)."""
    torch.manual_seed(seed)
    block = CrossAttention(channels=16, context_dim=12, num_heads=4, num_groups=4)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=_gen(seed + p.numel())) * 0.3)
    return block.eval()


def check_cross_attention(fn: Callable[..., torch.Tensor]) -> None:
    """6.3: cross_attention(block, x, context, context_mask) computes what ``block(x, context, context_mask)`` does."""
    block = _cross_attention_block(63)
    gen = _gen(63)
    x = torch.randn(2, 16, 4, 4, generator=gen)  # (B, C, H, W)
    context = torch.randn(2, 5, 12, generator=gen)  # (B, L, D)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])  # (B, L)
    with torch.no_grad():
        want = block(x, context, mask)
        got = _call("6.3", fn, block, x.clone(), context.clone(), mask.clone())
    if isinstance(got, torch.Tensor) and got.shape == want.shape:
        with torch.no_grad():
            residual = want - x
        if torch.allclose(got.detach().double(), residual.double(), atol=1e-4):
            raise ExerciseFailed("6.3", "you return only the attention branch: add the input x back (the block is "
                                        "residual: x + proj(...))")
    _compare("6.3", got, want, "the block's output", atol=1e-4)
    _passed("6.3", "the pixels ask, the words answer: that is all cross-attention is.")


def check_word_map(fn: Callable[..., torch.Tensor]) -> None:
    """6.4: word_map(weights, index) -> (B, h, w): one token's weight at every pixel, averaged over the heads."""
    gen = _gen(64)
    B, heads, h, L = 2, 4, 4, 6
    # Weights that differ between heads, rows and columns, so that every mix-up shows.
    weights = torch.rand(B, heads, h * h, L, generator=gen).softmax(dim=-1)  # (B, heads, h*w, L)
    for index in (2, 5):
        got = _call("6.4", fn, weights.clone(), index)
        want = token_maps({"block": [weights]}, size=None)[:, index]  # (B, h, w)
        _compare("6.4", got, want, f"the map of token {index}", atol=1e-6)
    _passed("6.4", "one token's column of the weights, back on the pixel grid, averaged over the heads.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "6.1": check_tokenize,
    "6.2": check_masked_attention_weights,
    "6.3": check_cross_attention,
    "6.4": check_word_map,
}
