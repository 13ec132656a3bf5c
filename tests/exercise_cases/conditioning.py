"""Right and wrong answers to the exercises of chapter 06 (text conditioning)."""

from __future__ import annotations

import math

import torch

from exercise_cases.cases import Cases

# ----- 6.1 tokenize(prompt, token_ids, max_length) -> ids ----------------------------------------


def tokenize(prompt, token_ids, max_length):
    ids = [token_ids["<start>"]] + [token_ids[w] for w in prompt.lower().split()]
    return ids + [token_ids["<pad>"]] * (max_length - len(ids))


def tokenize_tensor(prompt, token_ids, max_length):
    ids = torch.full((max_length,), token_ids["<pad>"], dtype=torch.int64)
    words = prompt.lower().split()
    ids[0] = token_ids["<start>"]
    ids[1:1 + len(words)] = torch.tensor([token_ids[w] for w in words])
    return ids


def tokenize_no_start(prompt, token_ids, max_length):
    ids = [token_ids[w] for w in prompt.lower().split()]
    return ids + [token_ids["<pad>"]] * (max_length - len(ids))


def tokenize_no_padding(prompt, token_ids, max_length):
    return [token_ids["<start>"]] + [token_ids[w] for w in prompt.lower().split()]


def tokenize_pads_first(prompt, token_ids, max_length):  # padding on the left
    ids = [token_ids["<start>"]] + [token_ids[w] for w in prompt.lower().split()]
    return [token_ids["<pad>"]] * (max_length - len(ids)) + ids


def tokenize_fixed_numbers(prompt, token_ids, max_length):  # <pad> = 0 and <start> = 1 written in
    ids = [1] + [token_ids[w] for w in prompt.lower().split()]
    return ids + [0] * (max_length - len(ids))


def tokenize_case_sensitive(prompt, token_ids, max_length):  # "A" is not a word of the vocabulary
    ids = [token_ids["<start>"]] + [token_ids.get(w, token_ids["<unk>"]) for w in prompt.split()]
    return ids + [token_ids["<pad>"]] * (max_length - len(ids))


def tokenize_not_lower_cased(prompt, token_ids, max_length):  # KeyError: 'A'
    ids = [token_ids["<start>"]] + [token_ids[w] for w in prompt.split()]
    return ids + [token_ids["<pad>"]] * (max_length - len(ids))


def tokenize_floats(prompt, token_ids, max_length):
    return torch.tensor(tokenize(prompt, token_ids, max_length), dtype=torch.float32)


# ----- 6.2 masked_attention_weights(q, k, mask) -> (B, N, L) ------------------------------------


def masked_attention_weights(q, k, mask):
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, N, L)
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1)


def masked_attention_weights_loop(q, k, mask):
    out = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
    for b in range(q.shape[0]):
        keep = mask[b]
        s = q[b] @ k[b, keep].T / q.shape[-1] ** 0.5
        out[b, :, keep] = s.softmax(dim=-1)
    return out


def masked_attention_weights_unscaled(q, k, mask):  # no 1 / sqrt(d)
    scores = (q @ k.transpose(1, 2)).masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(dim=-1)


def masked_attention_weights_no_mask(q, k, mask):
    return (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(dim=-1)


def masked_attention_weights_zero_after(q, k, mask):  # zeroes padding after the softmax: rows no longer sum to 1
    return (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(dim=-1) * mask[:, None, :]


def masked_attention_weights_inverted(q, k, mask):  # keeps only the padding
    scores = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(mask[:, None, :], float("-inf"))
    return scores.softmax(dim=-1).nan_to_num()


def masked_attention_weights_wrong_axis(q, k, mask):  # softmax over the queries
    scores = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(dim=1).nan_to_num()


# ----- 6.3 cross_attention(block, x, context, context_mask) -> (B, C, H, W) ----------------------


def cross_attention(block, x, context, context_mask):
    B, C, H, W = x.shape
    nh, hs = block.num_heads, C // block.num_heads
    pixels = block.norm(x).reshape(B, C, H * W).permute(0, 2, 1)  # (B, HW, C)
    q = block.to_q(pixels).reshape(B, H * W, nh, hs).permute(0, 2, 1, 3)  # (B, nh, HW, hs)
    k = block.to_k(context).reshape(B, -1, nh, hs).permute(0, 2, 1, 3)  # (B, nh, L, hs)
    v = block.to_v(context).reshape(B, -1, nh, hs).permute(0, 2, 1, 3)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(hs)).masked_fill(~context_mask[:, None, None, :], -math.inf)
    h = scores.softmax(-1) @ v  # (B, nh, HW, hs)
    h = block.proj(h.permute(0, 2, 1, 3).reshape(B, H * W, C))  # (B, HW, C)
    return x + h.permute(0, 2, 1).reshape(B, C, H, W)


def cross_attention_sdpa(block, x, context, context_mask):
    B, C, H, W = x.shape
    nh = block.num_heads
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2)).unflatten(-1, (nh, -1)).transpose(1, 2)
    k = block.to_k(context).unflatten(-1, (nh, -1)).transpose(1, 2)
    v = block.to_v(context).unflatten(-1, (nh, -1)).transpose(1, 2)
    h = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=context_mask[:, None, None, :])
    return x + block.proj(h.transpose(1, 2).flatten(2)).transpose(1, 2).reshape(B, C, H, W)


def _heads(block, x, context, context_mask, *, nh=None, residual=True, norm=True, mask=True, proj=True):
    B, C, H, W = x.shape
    nh = nh or block.num_heads
    hs = C // nh
    pixels = (block.norm(x) if norm else x).flatten(2).transpose(1, 2)
    q = block.to_q(pixels).unflatten(-1, (nh, hs)).transpose(1, 2)
    k = block.to_k(context).unflatten(-1, (nh, hs)).transpose(1, 2)
    v = block.to_v(context).unflatten(-1, (nh, hs)).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs)
    if mask:
        scores = scores.masked_fill(~context_mask[:, None, None, :], -math.inf)
    h = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)  # (B, HW, C)
    h = (block.proj(h) if proj else h).transpose(1, 2).reshape(B, C, H, W)
    return x + h if residual else h


def cross_attention_heads_scale(block, x, context, context_mask):  # scores / sqrt(heads), not sqrt(d)
    B, C, H, W = x.shape
    heads, d = block.num_heads, C // block.num_heads
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2)).view(B, -1, heads, d).transpose(1, 2)
    k = block.to_k(context).view(B, -1, heads, d).transpose(1, 2)
    v = block.to_v(context).view(B, -1, heads, d).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) / heads**0.5).masked_fill(~context_mask[:, None, None, :], -math.inf)
    h = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, H * W, C)
    return x + block.proj(h).transpose(1, 2).reshape(B, C, H, W)


def cross_attention_swapped_split(block, x, context, context_mask):  # view(B, -1, d, heads): d groups of heads
    B, C, H, W = x.shape
    heads, d = block.num_heads, C // block.num_heads
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2)).view(B, -1, d, heads).transpose(1, 2)
    k = block.to_k(context).view(B, -1, d, heads).transpose(1, 2)
    v = block.to_v(context).view(B, -1, d, heads).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) / d**0.5).masked_fill(~context_mask[:, None, None, :], -math.inf)
    h = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, H * W, C)
    return x + block.proj(h).transpose(1, 2).reshape(B, C, H, W)


def cross_attention_keys_from_to_v(block, x, context, context_mask):  # to_v where to_k belongs, and back
    B, C, H, W = x.shape
    heads, d = block.num_heads, C // block.num_heads
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2)).view(B, -1, heads, d).transpose(1, 2)
    k = block.to_v(context).view(B, -1, heads, d).transpose(1, 2)
    v = block.to_k(context).view(B, -1, heads, d).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) / d**0.5).masked_fill(~context_mask[:, None, None, :], -math.inf)
    h = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, H * W, C)
    return x + block.proj(h).transpose(1, 2).reshape(B, C, H, W)


def cross_attention_no_residual(block, x, context, context_mask):
    return _heads(block, x, context, context_mask, residual=False)


def cross_attention_no_norm(block, x, context, context_mask):
    return _heads(block, x, context, context_mask, norm=False)


def cross_attention_one_head(block, x, context, context_mask):
    return _heads(block, x, context, context_mask, nh=1)


def cross_attention_ignores_mask(block, x, context, context_mask):
    return _heads(block, x, context, context_mask, mask=False)


def cross_attention_no_proj(block, x, context, context_mask):
    return _heads(block, x, context, context_mask, proj=False)


# ----- 6.4 word_map(weights, index) -> (B, h, w) -------------------------------------------------


def word_map(weights, index):
    B, _, hw, _ = weights.shape
    side = math.isqrt(hw)
    return weights[..., index].mean(dim=1).reshape(B, side, side)


def word_map_sum_heads(weights, index):  # sums the heads instead of averaging them
    B, _, hw, _ = weights.shape
    side = math.isqrt(hw)
    return weights[..., index].sum(dim=1).reshape(B, side, side)


def word_map_first_head(weights, index):
    B, _, hw, _ = weights.shape
    side = math.isqrt(hw)
    return weights[:, 0, :, index].reshape(B, side, side)


def word_map_transposed(weights, index):  # pixels are stored row by row; this reads them column by column
    B, _, hw, _ = weights.shape
    side = math.isqrt(hw)
    return weights[..., index].mean(dim=1).reshape(B, side, side).transpose(1, 2)


def word_map_wrong_axis(weights, index):  # takes the index over the pixels, not the tokens
    B, _, hw, L = weights.shape
    return weights[:, :, index, :].mean(dim=1)


CASES: dict[str, Cases] = {
    "6.1": Cases([tokenize, tokenize_tensor],
                 [tokenize_no_start, tokenize_no_padding, tokenize_pads_first, tokenize_fixed_numbers,
                  tokenize_case_sensitive, tokenize_floats, tokenize_not_lower_cased]),
    "6.2": Cases([masked_attention_weights, masked_attention_weights_loop],
                 [masked_attention_weights_unscaled, masked_attention_weights_no_mask,
                  masked_attention_weights_zero_after, masked_attention_weights_inverted,
                  masked_attention_weights_wrong_axis]),
    "6.3": Cases([cross_attention, cross_attention_sdpa],
                 [cross_attention_no_residual, cross_attention_no_norm, cross_attention_one_head,
                  cross_attention_ignores_mask, cross_attention_no_proj, cross_attention_heads_scale,
                  cross_attention_swapped_split, cross_attention_keys_from_to_v]),
    "6.4": Cases([word_map], [word_map_sum_heads, word_map_first_head, word_map_transposed, word_map_wrong_axis]),
}
