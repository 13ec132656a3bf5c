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


def _tokenize_hint(err: Exception) -> str | None:
    key = err.args[0] if isinstance(err, KeyError) and err.args else None
    if not isinstance(key, str):
        return None
    if key != key.lower():
        return "the vocabulary holds lower-case words only: lower-case the prompt first (prompt.lower())"
    if " " in key:
        return "look up one word at a time: prompt.lower().split() gives the words"
    return "look the special tokens up by their names, token_ids['<start>'] and token_ids['<pad>']"


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
            got = _as_id_list("6.1", _call("6.1", fn, prompt, dict(token_ids), max_length, hint=_tokenize_hint),
                              prompt)
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
    masks = (torch.tensor([[True, True, True, False], [True, True, False, False]]),  # (B, L): True = a real token
             torch.tensor([[True] * 6, [True, False, True, True, False, False], [True, True, True, True, True, False]]))
    for (B, N, L, d), mask in zip(((2, 5, 4, 8), (3, 3, 6, 5)), masks, strict=True):
        q = torch.randn(B, N, d, generator=gen) * 2  # (B, N, d): N queries (pixels)
        k = torch.randn(B, L, d, generator=gen) * 2  # (B, L, d): L keys (tokens)
        got = _call("6.2", fn, q.clone(), k.clone(), mask.clone())
        want = attention_weights(q, k, mask[:, None, :])  # (B, N, L)
        if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
            if (got.detach()[~mask[:, None, :].expand_as(got)].abs() > 1e-6).any():
                raise ExerciseFailed("6.2", "padded keys (mask False) still get some weight: set their scores to -inf "
                                            "before the softmax")
            if not torch.allclose(got.detach().sum(-1).double(), torch.ones(B, N, dtype=torch.float64), atol=1e-5):
                raise ExerciseFailed("6.2", "each query's weights should sum to 1 over the keys (softmax over the last "
                                            "dimension, after masking)")
        scores = (q @ k.transpose(1, 2)).masked_fill(~mask[:, None, :], float("-inf"))
        _compare("6.2", got, want, f"the weight matrix for d = {d}", atol=1e-5, mistakes={
            "divide the scores by sqrt(d), d = q.shape[-1]": scores.softmax(-1),
            "divide the scores by sqrt(d), not by d": (scores / d).softmax(-1)})
    _passed("6.2", "each pixel's weights sum to 1 over the real tokens; padding gets exactly 0.")


def _cross_attention_block(seed: int, channels: int, num_heads: int) -> CrossAttention:
    """A CrossAttention with every weight random, its output projection included (zero at initialisation)."""
    with torch.random.fork_rng(devices=[]):  # leave the learner's global random state as it was
        block = CrossAttention(channels=channels, context_dim=12, num_heads=num_heads, num_groups=4)
    gen = _gen(seed)  # one generator for all: to_k and to_v have the same shape but must differ
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return block.eval()


def _attend(block: CrossAttention, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, *,
            heads: int | None = None, scale: float | None = None, norm: bool = True, use_mask: bool = True,
            proj: bool = True, swap_kv: bool = False) -> torch.Tensor:
    """The block's output, or what a usual slip gives: ``heads`` groups of C // heads channels, ``scale``."""
    B, C, H, W = x.shape
    nh = heads or block.num_heads
    pixels = (block.norm(x) if norm else x).flatten(2).transpose(1, 2)  # (B, HW, C)
    to_k, to_v = (block.to_v, block.to_k) if swap_kv else (block.to_k, block.to_v)
    q, k, v = (lin(rows).unflatten(-1, (nh, C // nh)).transpose(1, 2)  # (B, nh, rows, C // nh)
               for lin, rows in ((block.to_q, pixels), (to_k, context), (to_v, context)))
    scores = q @ k.transpose(-1, -2) / (scale or (C // nh) ** 0.5)
    if use_mask:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    h = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)  # (B, HW, C)
    return x + (block.proj(h) if proj else h).transpose(1, 2).reshape(B, C, H, W)


def _cross_attention_mistakes(block: CrossAttention, *args: torch.Tensor) -> dict[str, torch.Tensor]:
    nh, d = block.num_heads, block.to_q.out_features // block.num_heads
    split = f"split the channels with .view(B, -1, heads, d), {nh} heads of d = {d} channels each"
    return {
        f"divide the scores by sqrt(d), d = C // heads = {d} the width of one head, not by sqrt(heads)":
            _attend(block, *args, scale=nh**0.5),
        f"divide the scores by sqrt(d) of one head (d = C // heads = {d}), not by sqrt(C)":
            _attend(block, *args, scale=(nh * d) ** 0.5),
        f"{split}; yours makes {d} heads of {nh} channels": _attend(block, *args, heads=d),
        f"{split}; .view(B, -1, d, heads) groups the channels differently": _attend(block, *args, heads=d, scale=d**0.5),
        f"use block.num_heads = {nh} heads, not one": _attend(block, *args, heads=1),
        "normalise the pixels first: the queries come from block.norm(x)": _attend(block, *args, norm=False),
        "the mask is ignored: padded tokens must get no weight (scores -inf where context_mask is False)":
            _attend(block, *args, use_mask=False),
        "the heads' outputs go through block.proj before they are added to x": _attend(block, *args, proj=False),
        "the keys come from block.to_k(context) and the values from block.to_v(context), not the other way round":
            _attend(block, *args, swap_kv=True),
    }


def check_cross_attention(fn: Callable[..., torch.Tensor]) -> None:
    """6.3: cross_attention(block, x, context, context_mask) computes what ``block(x, context, context_mask)`` does."""
    gen = _gen(63)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])  # (B, L)
    # head width d and head count differ, and in opposite directions, so swapping them shows
    for channels, num_heads in ((16, 2), (12, 4)):
        block = _cross_attention_block(63, channels, num_heads)
        x = torch.randn(2, channels, 4, 4, generator=gen)  # (B, C, H, W)
        context = torch.randn(2, 5, 12, generator=gen)  # (B, L, D)
        what = f"the block's output with C = {channels} channels in {num_heads} heads"
        with torch.no_grad():
            want = block(x, context, mask)
            got = _call("6.3", fn, block, x.clone(), context.clone(), mask.clone())
            if isinstance(got, torch.Tensor) and got.shape == want.shape:
                if torch.allclose(got.detach().double(), (want - x).double(), atol=1e-4):
                    raise ExerciseFailed("6.3", "you return only the attention branch: add the input x back (the "
                                                "block is residual: x + proj(...))")
            _compare("6.3", got, want, what, atol=1e-4,
                     mistakes=_cross_attention_mistakes(block, x, context, mask))
    _passed("6.3", "the pixels ask, the words answer: that is all cross-attention is.")


def check_word_map(fn: Callable[..., torch.Tensor]) -> None:
    """6.4: word_map(weights, index) -> (B, h, w): one token's weight at every pixel, averaged over the heads."""
    gen = _gen(64)
    for (B, heads, h, L), index in (((2, 4, 4, 6), 2), ((2, 4, 4, 6), 5), ((3, 2, 3, 5), 1)):
        # Weights that differ between heads, rows and columns, so that every mix-up shows.
        weights = torch.rand(B, heads, h * h, L, generator=gen).softmax(dim=-1)  # (B, heads, h*w, L)
        got = _call("6.4", fn, weights.clone(), index)
        want = token_maps({"block": [weights]}, size=None)[:, index]  # (B, h, w)
        _compare("6.4", got, want, f"the map of token {index} with {heads} heads on a {h}x{h} grid", atol=1e-6,
                 mistakes={"average the heads (mean over dim 1), not sum them": want * heads,
                           "use every head, averaged, not only the first": weights[:, 0, :, index].reshape(B, h, h),
                           "rows and columns are swapped: the pixels were flattened row by row, so reshape(B, h, w) "
                           "puts them back without a transpose": want.transpose(1, 2)})
    _passed("6.4", "one token's column of the weights, back on the pixel grid, averaged over the heads.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "6.1": check_tokenize,
    "6.2": check_masked_attention_weights,
    "6.3": check_cross_attention,
    "6.4": check_word_map,
}
