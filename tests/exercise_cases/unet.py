"""Right and wrong answers to the exercises of chapter 03 (a small U-Net)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from exercise_cases.cases import Cases

# ----- 3.1 conv_output_size: floor((size + 2 p - k) / s) + 1 ---------------------------------------

def conv_output_size(size, kernel_size, stride, padding):
    return math.floor((size + 2 * padding - kernel_size) / stride) + 1


def conv_output_size_by_sliding(size, kernel_size, stride, padding):  # count the window positions
    return len(range(0, size + 2 * padding - kernel_size + 1, stride))


def conv_output_size_float(size, kernel_size, stride, padding):  # no floor: 14.0, and 13.5 for odd sizes
    return (size + 2 * padding - kernel_size) / stride + 1


def conv_output_size_ceil(size, kernel_size, stride, padding):
    return math.ceil((size + 2 * padding - kernel_size) / stride) + 1


def conv_output_size_one_side_padding(size, kernel_size, stride, padding):
    return (size + padding - kernel_size) // stride + 1


def conv_output_size_no_plus_one(size, kernel_size, stride, padding):
    return (size + 2 * padding - kernel_size) // stride


def conv_output_size_divide(size, kernel_size, stride, padding):  # "stride 2 halves it"
    return size // stride


# ----- 3.2 sinusoidal_embedding: [sin(t f_i), cos(t f_i)], f_i = 10000^(-i / half) ---------------

def sinusoidal_embedding(t, dim):
    half = dim // 2
    rows = []
    for step in t.tolist():
        args = [step * 10000 ** (-i / half) for i in range(half)]
        rows.append([math.sin(a) for a in args] + [math.cos(a) for a in args])
    return torch.tensor(rows, dtype=torch.float32)


def _args(t, dim, shift=0, base=10000.0, scale=1.0):
    half = dim // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64) / (half - shift))
    return (t.double() * scale)[:, None] * freqs[None, :]  # (B, half)


def sinusoidal_embedding_cos_first(t, dim):
    a = _args(t, dim)
    return torch.cat([a.cos(), a.sin()], dim=1)


def sinusoidal_embedding_interleaved(t, dim):
    a = _args(t, dim)
    return torch.stack([a.sin(), a.cos()], dim=2).flatten(1)


def sinusoidal_embedding_shifted(t, dim):  # divides by half - 1, diffusers' downscale_freq_shift=1
    a = _args(t, dim, shift=1)
    return torch.cat([a.sin(), a.cos()], dim=1)


def sinusoidal_embedding_scaled_t(t, dim):  # t / 1000 instead of t
    a = _args(t, dim, scale=1e-3)
    return torch.cat([a.sin(), a.cos()], dim=1)


def sinusoidal_embedding_growing_freqs(t, dim):  # 10000^(+i / half): frequencies grow
    half = dim // 2
    a = t.double()[:, None] * 10000 ** (torch.arange(half, dtype=torch.float64) / half)[None, :]
    return torch.cat([a.sin(), a.cos()], dim=1)


def sinusoidal_embedding_sin_only(t, dim):
    freqs = 10000 ** (-torch.arange(dim, dtype=torch.float64) / dim)
    return (t.double()[:, None] * freqs[None, :]).sin()


def sinusoidal_embedding_transposed(t, dim):  # (dim, B)
    a = _args(t, dim)
    return torch.cat([a.sin(), a.cos()], dim=1).T.contiguous()


# ----- 3.3 res_block: skip(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))) + emb_proj(emb)))) ---------

def res_block(block, x, emb):
    h = block.norm1(x)
    h = h * torch.sigmoid(h)  # SiLU by hand
    h = block.conv1(h)
    shift = block.emb_proj(emb)  # (B, C_out)
    h = h + shift.view(*shift.shape, 1, 1)
    h = block.norm2(h)
    h = block.conv2(block.dropout(h * torch.sigmoid(h)))
    return h + block.skip(x)


def res_block_no_skip(block, x, emb):
    h = block.conv1(F.silu(block.norm1(x))) + block.emb_proj(emb)[:, :, None, None]
    return block.conv2(F.silu(block.norm2(h)))


def res_block_no_time(block, x, emb):
    h = block.conv1(F.silu(block.norm1(x)))
    return block.skip(x) + block.conv2(F.silu(block.norm2(h)))


def res_block_time_at_the_end(block, x, emb):
    h = block.conv2(F.silu(block.norm2(block.conv1(F.silu(block.norm1(x))))))
    return block.skip(x) + h + block.emb_proj(emb)[:, :, None, None]


def res_block_plain_skip(block, x, emb):  # x + h: fails when the channel count changes
    h = block.conv1(F.silu(block.norm1(x))) + block.emb_proj(emb)[:, :, None, None]
    return x + block.conv2(F.silu(block.norm2(h)))


def res_block_relu(block, x, emb):
    h = block.conv1(F.relu(block.norm1(x))) + block.emb_proj(emb)[:, :, None, None]
    return block.skip(x) + block.conv2(F.relu(block.norm2(h)))


def res_block_norms_swapped(block, x, emb):  # norm2 where norm1 belongs (and the other way round)
    h = block.conv1(F.silu(block.norm2(x))) + block.emb_proj(emb)[:, :, None, None]
    return block.skip(x) + block.conv2(F.silu(block.norm1(h)))


def res_block_calls_the_block(block, x, emb):  # uses the package's answer
    return block(x, emb)


# ----- 3.4 conv_parameters: c_out * c_in * k^2 (+ c_out) --------------------------------------------

def conv_parameters(c_in, c_out, kernel_size, bias):
    weights = c_out * c_in * kernel_size**2
    return weights + (c_out if bias else 0)


def conv_parameters_by_counting(c_in, c_out, kernel_size, bias):
    count = 0
    for _ in range(c_out):
        count += c_in * kernel_size * kernel_size + int(bias)
    return count


def conv_parameters_no_bias(c_in, c_out, kernel_size, bias):
    return c_out * c_in * kernel_size**2


def conv_parameters_always_bias(c_in, c_out, kernel_size, bias):
    return c_out * c_in * kernel_size**2 + c_out


def conv_parameters_k_not_squared(c_in, c_out, kernel_size, bias):
    return c_out * c_in * kernel_size + (c_out if bias else 0)


def conv_parameters_no_c_in(c_in, c_out, kernel_size, bias):  # one k x k filter per output channel
    return c_out * kernel_size**2 + (c_out if bias else 0)


def conv_parameters_float(c_in, c_out, kernel_size, bias):
    return float(conv_parameters(c_in, c_out, kernel_size, bias))


# ----- the table ----------------------------------------------------------------------------------

CASES: dict[str, Cases] = {
    "3.1": Cases([conv_output_size, conv_output_size_by_sliding],
                 [conv_output_size_float, conv_output_size_ceil, conv_output_size_one_side_padding,
                  conv_output_size_no_plus_one, conv_output_size_divide]),
    "3.2": Cases([sinusoidal_embedding],
                 [sinusoidal_embedding_cos_first, sinusoidal_embedding_interleaved, sinusoidal_embedding_shifted,
                  sinusoidal_embedding_scaled_t, sinusoidal_embedding_growing_freqs, sinusoidal_embedding_sin_only,
                  sinusoidal_embedding_transposed]),
    "3.3": Cases([res_block],
                 [res_block_no_skip, res_block_no_time, res_block_time_at_the_end, res_block_plain_skip,
                  res_block_relu, res_block_norms_swapped, res_block_calls_the_block]),
    "3.4": Cases([conv_parameters, conv_parameters_by_counting],
                 [conv_parameters_no_bias, conv_parameters_always_bias, conv_parameters_k_not_squared,
                  conv_parameters_no_c_in, conv_parameters_float]),
}
