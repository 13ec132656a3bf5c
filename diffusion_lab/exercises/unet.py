"""Checks for chapter 03: convolution sizes, the timestep embedding, a residual block, parameter counts."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.models.blocks import ResBlock
from diffusion_lab.models.embeddings import timestep_embedding


def _as_int(exercise: str, got: Any, what: str) -> int:
    """An int (or anything with ``__index__``, such as a NumPy integer), but not a bool or a float."""
    if isinstance(got, bool):
        raise ExerciseFailed(exercise, f"{what} should be an int, got a bool")
    try:
        return operator.index(got)
    except TypeError:
        raise ExerciseFailed(exercise, f"{what} should be an int, got {type(got).__name__} {got!r}") from None


# ----- chapter 03: a small U-Net -----------------------------------------------------------------

def check_conv_output_size(fn: Callable[[int, int, int, int], int]) -> None:
    """3.1: side length after a convolution, floor((size + 2 padding - kernel_size) / stride) + 1."""
    cases = [  # (size, kernel_size, stride, padding)
        (28, 3, 1, 1),  # a U-Net's 3x3 conv: same size
        (28, 3, 2, 1),  # Downsample: 28 -> 14
        (7, 3, 2, 1),  # 7 is odd: 4, not 3.5
        (28, 5, 1, 0),  # no padding: the border is lost
        (28, 3, 2, 0),
        (14, 4, 2, 1),
        (28, 1, 1, 0),  # a 1x1 conv
        (9, 3, 3, 0),
    ]
    answers = []
    for size, k, s, p in cases:
        got = _call("3.1", fn, size, k, s, p)
        if isinstance(got, float):
            raise ExerciseFailed("3.1", f"the output size should be an int (a number of pixels), got {got!r}; "
                                        "`//` divides and rounds down in one go")
        answers.append(_as_int("3.1", got, "the output size"))
    slips = {  # a slip is named only when it explains every answer
        "round down (//), not up": lambda n, k, s, p: -(-(n + 2 * p - k) // s) + 1,
        "padding adds p pixels on both sides: size + 2 * padding": lambda n, k, s, p: (n + p - k) // s + 1,
        "count the window's first position too: + 1": lambda n, k, s, p: (n + 2 * p - k) // s,
        "the kernel size and the padding matter too, not only the stride": lambda n, k, s, p: n // s,
    }
    for (size, k, s, p), got in zip(cases, answers, strict=True):
        want = (size + 2 * p - k) // s + 1
        if got != want:
            why = next((m for m, f in slips.items() if all(f(*c) == a for c, a in zip(cases, answers))), None)
            raise ExerciseFailed("3.1", f"size={size}, kernel_size={k}, stride={s}, padding={p}: "
                                        f"you gave {got}, expected {want}" + (f": {why}" if why else ""))
    _passed("3.1", "a stride-2 3x3 conv with padding 1 halves 28 -> 14 -> 7, and 7 -> 4 would not come back")


def _embedding_mix_up(got: torch.Tensor, t: torch.Tensor, dim: int) -> str | None:
    """Name the usual mix-up when ``got`` is another implementation's sinusoidal embedding, else None."""
    half = dim // 2
    want = timestep_embedding(t.double(), dim)  # (B, dim)
    sin, cos = want[:, :half], want[:, half:]
    ddpm_args = t.double()[:, None] * 10000.0 ** (-torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
    growing_args = t.double()[:, None] * 10000.0 ** (torch.arange(half, dtype=torch.float64) / half)
    mix_ups = {
        "you put the cosines first; the course's convention is all the sines, then all the cosines":
            torch.cat([cos, sin], dim=1),
        "you interleaved sin and cos (sin f_0, cos f_0, sin f_1, ...); the course's convention is "
        "all the sines, then all the cosines": torch.stack([sin, cos], dim=2).flatten(1),
        "your exponents are i / (h - 1), as in DDPM's original code; the course uses "
        "w_i = 10000^(-i / h) with h = dim // 2": torch.cat([ddpm_args.sin(), ddpm_args.cos()], dim=1),
        "use the step t itself, not t / 1000": timestep_embedding(t.double() / 1000, dim),
        "the frequencies must fall, 10000^(-i / h): mind the minus sign":
            torch.cat([growing_args.sin(), growing_args.cos()], dim=1),
    }
    got64 = got.detach().double().cpu()
    if torch.allclose(got64, want, atol=1e-3):
        return None
    return next((message for message, other in mix_ups.items() if torch.allclose(got64, other, atol=1e-3)), None)


def check_timestep_embedding(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """3.2: sinusoidal embedding (B,) -> (B, dim): [sin(t f_0..f_{h-1}), cos(t f_0..f_{h-1})], f_i = 10000^(-i/h)."""
    t = torch.tensor([0, 1, 7, 250, 999])
    for dim in (8, 32):
        got = _call("3.2", fn, t.clone(), dim)
        want = timestep_embedding(t.double(), dim)  # (B, dim), computed in float64
        if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
            mix_up = _embedding_mix_up(got, t, dim)
            if mix_up:
                raise ExerciseFailed("3.2", mix_up)
        _compare("3.2", got, want, f"the embedding for dim={dim}", atol=1e-3, rtol=0)
    _passed("3.2", "fast frequencies tell neighbouring steps apart, slow ones say roughly where in the chain t is")


def _random_res_block(in_channels: int, out_channels: int, seed: int) -> ResBlock:
    """A ResBlock with every weight random (not zero-initialised) and its normal forward disabled."""
    with torch.random.fork_rng(devices=[]):  # leave the learner's global random state as it was
        block = ResBlock(in_channels, out_channels, emb_dim=12, num_groups=4).eval()
    gen = _gen(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        for norm in (block.norm1, block.norm2):  # scales near 1, shifts near 0, but not exactly
            norm.weight.copy_(1 + 0.3 * torch.randn(norm.weight.shape, generator=gen))

    def forbidden(*args: Any) -> None:
        raise ExerciseFailed("3.3", "build the forward pass from the block's layers (block.norm1, block.conv1, "
                                    "...); calling block(x, emb) uses the package's answer")

    block.forward = forbidden  # instance attribute: nn.Module.__call__ now reaches it
    return block


def _res_block_hint(err: Exception) -> str | None:
    if "size of tensor" in str(err):
        return ("x has C_in channels and the branch C_out; block.skip(x) (a 1x1 conv when they differ) makes them "
                "match, and the (B, C_out) time embedding needs [:, :, None, None] to reach every pixel")
    return None


def _res_block_mistakes(block: ResBlock, x: torch.Tensor, emb: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the usual slips give, so that the check can name them."""
    silu = torch.nn.functional.silu
    shift = block.emb_proj(emb)[:, :, None, None]  # (B, C_out, 1, 1)
    h = block.conv1(silu(block.norm1(x)))
    branch = block.conv2(silu(block.norm2(h + shift)))
    return {
        "the skip path is missing: add block.skip(x) to the branch": branch,
        "the time embedding is missing: add block.emb_proj(emb), shaped (B, C, 1, 1), after conv1":
            block.skip(x) + block.conv2(silu(block.norm2(h))),
        "the time embedding goes in after conv1, before norm2, not at the end":
            block.skip(x) + block.conv2(silu(block.norm2(h))) + shift,
        "the activation is SiLU (F.silu), not ReLU":
            block.skip(x) + block.conv2(torch.relu(block.norm2(block.conv1(torch.relu(block.norm1(x))) + shift))),
    }


def check_res_block(fn: Callable[[ResBlock, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """3.3: a ResBlock's forward from its layers: skip(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))) + emb_proj(emb))))."""
    for in_channels, out_channels, seed in [(8, 16, 20), (8, 8, 21)]:
        block = _random_res_block(in_channels, out_channels, seed)
        x = torch.randn(2, in_channels, 6, 6, generator=_gen(seed + 10))  # (B, C_in, H, W)
        emb = torch.randn(2, 12, generator=_gen(seed + 20))  # (B, emb_dim)
        with torch.no_grad():
            got = _call("3.3", fn, block, x, emb, hint=_res_block_hint)
            want = ResBlock.forward(block, x, emb)  # the class's forward, not the instance's `forbidden`
            _compare("3.3", got, want, f"the output for {in_channels} -> {out_channels} channels", atol=1e-4,
                     mistakes=_res_block_mistakes(block, x, emb))
    _passed("3.3", "the branch learns a correction to x, and the time embedding shifts every channel")


def check_conv_parameters(fn: Callable[[int, int, int, bool], int]) -> None:
    """3.4: parameters of nn.Conv2d(c_in, c_out, k, bias=bias): c_out * c_in * k * k (+ c_out biases)."""
    for c_in, c_out, k, bias in [(1, 32, 3, True), (32, 64, 3, True), (64, 128, 1, True), (128, 128, 3, False),
                                 (3, 16, 5, True)]:
        got = _as_int("3.4", _call("3.4", fn, c_in, c_out, k, bias), "the parameter count")
        conv = nn.Conv2d(c_in, c_out, k, bias=bias, device="meta")  # shapes only: no memory, no random init
        want = sum(p.numel() for p in conv.parameters())
        if got != want:
            weights = c_out * c_in * k * k
            why = {weights: "bias=True adds one bias per output channel, c_out of them",
                   weights + c_out: "bias=False means no biases at all",
                   c_out * c_in * k + c_out * bias: "each filter is k x k: kernel_size ** 2 weights per input channel",
                   c_out * k * k + c_out * bias: "each filter spans all c_in input channels"}.get(got)
            raise ExerciseFailed("3.4", f"Conv2d({c_in}, {c_out}, kernel_size={k}, bias={bias}): "
                                        f"you gave {got:,}, expected {want:,}" + (f": {why}" if why else ""))
    _passed("3.4", "every output channel has a c_in x k x k filter and one bias")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "3.1": check_conv_output_size,
    "3.2": check_timestep_embedding,
    "3.3": check_res_block,
    "3.4": check_conv_parameters,
}
