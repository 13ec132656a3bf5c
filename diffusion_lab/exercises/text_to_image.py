"""Checks for chapter 11 (a mini Stable Diffusion): dynamic thresholding, the latent mask, RePaint's blend.

    11.1  dynamic_threshold(x0, percentile, data_range)             Imagen's s per sample, clamp to [-s, s], times r / s
    11.2  latent_mask(mask, f)                                      a pixel mask (H, W) -> (H/f, W/f), max over blocks
    11.3  inpaint_blend(x_unknown, x0, mask, alpha_bar_prev, eps)   redraw where mask = 1, keep the noised x0 elsewhere
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from diffusion_lab.exercises.clip import _deterministic
from diffusion_lab.exercises.core import (
    ExerciseFailed,
    _call,
    _check_signature,
    _close,
    _compare,
    _gen,
    _passed,
)
from diffusion_lab.sampling.thresholding import dynamic_threshold

THRESHOLD, LATENT_MASK, BLEND = "11.1", "11.2", "11.3"  # the exercises' numbers in chapter 11


# ----- 11.1 dynamic thresholding ----------------------------------------------------------------------------------

def _threshold_hint(err: Exception) -> str | None:
    if "q must be in the range [0, 1]" in str(err):
        return "torch.quantile takes a fraction from 0 to 1: the percentile 99.5 is q = percentile / 100"
    if "Boolean value of Tensor" in str(err):
        return "s holds one value per sample: take max(s, r) with s.clamp(min=data_range), not Python's max"
    if isinstance(err, RuntimeError) and "size of tensor" in str(err):
        return "s has shape (B,): broadcast it with append_dims(s, x0.ndim), which fits guesses of any shape (B, ...)"
    return None


def _guesses(seed: int, shape: tuple[int, ...], spreads: list[float], offsets: list[float]) -> torch.Tensor:
    """Guesses of x_0 (B, ...), sample i spread[i] randn + offsets[i]: some inside the range, some far out."""
    view = (-1, *[1] * (len(shape) - 1))
    return torch.tensor(spreads).view(view) * torch.randn(shape, generator=_gen(seed)) + torch.tensor(offsets).view(view)


# (shape, spreads, offsets, percentile, r): each sample has N values, N - 1 a multiple of 1000, so that at these
# percentiles every way of reading one (torch.quantile's interpolation, kthvalue, sorting) gives the same value
_GUESSES = [((4, 3, 23, 29), [0.6, 3.0, 0.5, 1.1], [0.0, 0.0, 5.0, 0.0], 99.5, 2.5),
            ((3, 7, 11, 13), [0.5, 2.0, 1.0], [0.0, 1.0, -3.0], 90.0, 1.5),
            ((2, 3, 23, 29), [0.3, 2.0], [0.0, 0.0], 99.5, 1.0),  # pixels: Imagen's r = 1
            ((3, 2001), [0.4, 1.5, 3.0], [0.0, -2.0, 0.0], 99.5, 2.0)]  # vectors (B, D): no fixed 4-D view


def _threshold_mistakes(x0: torch.Tensor, p: float, r: float) -> dict[str, torch.Tensor]:
    """What the usual slips give, keyed by the message that names each."""
    flat = x0.abs().flatten(1)  # (B, N)

    def shrink(s: torch.Tensor, scale: bool = True, times_r: bool = True) -> torch.Tensor:
        s = s.view(-1, *[1] * (x0.ndim - 1)) if s.ndim == 1 else s
        out = torch.maximum(torch.minimum(x0, s), -s)
        return out * ((r if times_r else 1.0) / s) if scale else out

    q = flat.quantile(p / 100, dim=1)  # (B,)
    s = q.clamp(min=r)
    mistakes = {
        "one s for the whole batch: s is per sample, the percentile of |x0| over that sample's values alone "
        "(x0.abs().flatten(1), dim=1)": shrink(flat.flatten().quantile(p / 100).clamp(min=r)),
        "s = max(percentile, r) was forgotten: without the max a sample already inside [-r, r] is stretched out to "
        "it; thresholding must leave it alone": shrink(q),
        "clamped to [-s, s] but not rescaled: multiply by r / s so that the sample lands inside [-r, r]":
            shrink(s, scale=False),
        "divided by s but not multiplied by r: that brings the sample into [-1, 1], but the data's range is [-r, r]":
            shrink(s, times_r=False),
        "the percentile is read as a ratio: percentile is given from 0 to 100 (e.g. 99.5), torch.quantile wants "
        "percentile / 100 and np.percentile the percentile itself": shrink(flat.quantile(p / 10000, dim=1).clamp(min=r)),
        "take the percentile of |x0|, the absolute values, not of x0": shrink(x0.flatten(1).quantile(p / 100, 1).clamp(min=r)),
        "that is static clipping to [-r, r]: dynamic thresholding clamps at each sample's own s and rescales by r / s":
            x0.clamp(-r, r),
    }
    if x0.ndim == 4:
        per_channel = x0.abs().flatten(2).quantile(p / 100, dim=2).clamp(min=r)[..., None, None]  # (B, C, 1, 1)
        mistakes["one s per channel: s is one number per sample, over all of its values together"] = shrink(per_channel)
    return mistakes


def check_dynamic_threshold(fn: Callable[[torch.Tensor, float, float], torch.Tensor]) -> None:
    """11.1: dynamic_threshold(x0, percentile, data_range) for guesses (B, ...): per sample s = max(percentile-th
    percentile of |x0|, r), then clamp(x0, -s, s) * r / s, x0's shape, as ``sampling.thresholding`` does."""
    for seed, (shape, spreads, offsets, p, r) in enumerate(_GUESSES, start=150):
        x0 = _guesses(seed, shape, spreads, offsets)
        got = _call(THRESHOLD, fn, x0.clone(), p, r, hint=_threshold_hint)
        wide = isinstance(got, torch.Tensor) and got.ndim > x0.ndim  # a fixed view of s that does not fit x0
        _compare(THRESHOLD, got, dynamic_threshold(x0, p, r), f"the result for guesses {shape} at percentile {p}, "
                 f"data_range {r}", per_sample=True, mistakes=_threshold_mistakes(x0, p, r),
                 shape_hint="one s per sample (B,), broadcast with append_dims(s, x0.ndim), which fits guesses of any "
                            "shape (B, ...)" if wide else "x0's shape: each sample is shrunk as a whole")
    _passed(THRESHOLD, "a guess inside the data's range is left alone; one pushed out is shrunk back whole, not cut.")


# ----- 11.2 the latent mask ----------------------------------------------------------------------------------------

def _pool_hint(err: Exception) -> str | None:
    if "not implemented for 'Bool'" in str(err):
        return "pooling takes floats: pool mask.float(), True -> 1.0"
    if "3D or 4D" in str(err):
        return "F.max_pool2d wants (N, C, H, W): pool mask[None, None] and take [0, 0] of the result"
    return None


def _as_runtime_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn, but torch's NotImplementedError ("max_pool2d" not implemented for 'Bool') is raised as a RuntimeError:
    it is a slip in the learner's code, not the stub's `raise NotImplementedError`."""
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except NotImplementedError as err:
            if "not implemented for" not in str(err):
                raise
            raise RuntimeError(str(err)).with_traceback(err.__traceback__) from None

    return call


def _pixel_mask(h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


_MASKS = [  # (H, W, f, boxes): no box lines up with the f x f blocks, so many blocks are only partly covered
    (16, 16, 4, [(3, 10, 6, 15), (13, 14, 1, 5)]),  # blocks 1/16 to 3/4 covered; a line ends 1 pixel into one
    (12, 20, 2, [(1, 5, 3, 8), (5, 9, 7, 12), (10, 11, 13, 19)]),  # two boxes meet in a block 3/4 covered
    (24, 32, 8, [(5, 19, 9, 30)]),
]
_ANY = ("a latent cell is 1 when ANY pixel of its f x f block is in the mask (max-pooling, F.max_pool2d), so that "
        "every pixel asked for may change")


def _mask_mistakes(mask: torch.Tensor, f: int) -> dict[str, torch.Tensor]:
    """What the usual slips give for the pixel mask (H, W), keyed by the message that names each."""
    def pool(m: torch.Tensor, how: Callable[..., torch.Tensor]) -> torch.Tensor:
        return how(m.float()[None, None], f)[0, 0]

    share = pool(mask, F.avg_pool2d)  # (h, w): how much of each block is in the mask
    return {
        f"a block only partly covered is left out: that keeps the blocks more than half covered (averaging, then a "
        f"threshold); {_ANY}": (share > 0.5).float(),
        f"a block only partly covered is left out: that keeps the blocks at least half covered (averaging, then a "
        f"threshold); {_ANY}": (share >= 0.5).float(),
        f"only blocks wholly inside the mask are redrawn; {_ANY}": (share == 1).float(),
        f"that keeps one pixel of each block (mask[::f, ::f], or nearest interpolation), which misses blocks whose "
        f"other pixels are in the mask; {_ANY}": mask[::f, ::f].float(),
        f"that keeps one pixel of each block (its centre), which misses blocks whose other pixels are in the mask; "
        f"{_ANY}": mask[f // 2::f, f // 2::f].float(),
        "the mask is inverted: 1 marks the cells to REDRAW, those with a pixel where mask is True":
            1 - pool(mask, F.max_pool2d),
        "the mask is inverted: pool the mask itself (True = redraw), not its complement": pool(~mask, F.max_pool2d),
        f"that is the share of each block inside the mask (average pooling): the latent mask holds 0s and 1s; {_ANY}":
            share,
    }


def _mask_rule(got: torch.Tensor, want: torch.Tensor, share: torch.Tensor) -> str | None:
    """A general diagnosis for a float (h, w) answer that matches no named mistake, or None."""
    if not ((got == 0) | (got == 1)).all():
        odd = got[(got != 0) & (got != 1)][0].item()
        return f"the latent mask should hold only 0s and 1s (1 = redraw), got values such as {odd:.4g}"
    missed = (want == 1) & (got == 0)
    if (got <= want).all() and missed.any() and (share[missed] < 1).all():
        return f"{int(missed.sum())} block(s) only partly covered by the mask are left out; {_ANY}"
    if (got >= want).all():
        return "cells whose block has no pixel in the mask are set to 1: they must stay 0 (kept)"
    return None


def check_latent_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """11.2: latent_mask(mask, f): a bool pixel mask (H, W), True where to redraw -> a float (H/f, W/f) of 0s and 1s,
    1 where any pixel of the f x f block is True (max-pooling, as ``TinySDPipeline.latent_mask``)."""
    for h, w, f, boxes in _MASKS:
        mask = _pixel_mask(h, w, boxes)
        what = f"the latent mask of a ({h}, {w}) mask with f = {f}"
        if callable(fn):
            _check_signature(LATENT_MASK, fn, (mask, f))
        got = _call(LATENT_MASK, _as_runtime_error(fn) if callable(fn) else fn, mask.clone(), f, hint=_pool_hint)
        want = F.max_pool2d(mask.float()[None, None], f)[0, 0]  # (h, w), TinySDPipeline.latent_mask's rule
        mistakes = _mask_mistakes(mask, f)
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            if not got.is_floating_point():
                raise ExerciseFailed(LATENT_MASK, f"{what} should be a float tensor of 0s and 1s (it multiplies the "
                                                  f"latents), got dtype {got.dtype}: convert it with .float()")
            got64, share = got.detach().double(), F.avg_pool2d(mask.double()[None, None], f)[0, 0]
            if not any(_close(got64, m.double(), 1e-5, 1e-4) for m in [want, *mistakes.values()]):
                why = _mask_rule(got64, want.double(), share)
                if why:
                    raise ExerciseFailed(LATENT_MASK, f"{what} is not right: {why}")
        elif isinstance(got, torch.Tensor) and got.squeeze().shape == want.shape:
            raise ExerciseFailed(LATENT_MASK, f"{what} should have shape {tuple(want.shape)}, got {tuple(got.shape)}: "
                                              f"drop the dimensions added for pooling ([0, 0] or .squeeze())")
        _compare(LATENT_MASK, got, want, what, mistakes=mistakes,
                 shape_hint=f"one value per {f} x {f} block, (H / f, W / f)"
                            + (", not one per pixel" if isinstance(got, torch.Tensor) and got.shape == mask.shape else ""))
    _passed(LATENT_MASK, "a latent cell is redrawn when any of its pixels is asked for: nothing asked for stays fixed.")


# ----- 11.3 RePaint's blend ----------------------------------------------------------------------------------------

def _blend_hint(err: Exception) -> str | None:
    if isinstance(err, TypeError) and "must be Tensor, not float" in str(err):
        return "alpha_bar_prev is a float: take math.sqrt(alpha_bar_prev) or alpha_bar_prev ** 0.5"
    if isinstance(err, RuntimeError) and "size of tensor" in str(err):
        return "mask (B, 1, h, w) broadcasts against the latents (B, 4, h, w) as it is: no squeeze or indexing"
    return None


def _boxes(seed: int, n: int, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) float masks of 0s and 1s, one random box of 1s (the region to redraw) per sample."""
    gen, mask = _gen(seed), torch.zeros(n, 1, h, w)
    for i in range(n):
        r0, c0 = (int(torch.randint(0, s // 2, (1,), generator=gen)) for s in (h, w))
        r1, c1 = (int(torch.randint(s0 + 2, s, (1,), generator=gen)) for s0, s in ((r0, h), (c0, w)))
        mask[i, :, r0:r1, c0:c1] = 1
    return mask


def check_inpaint_blend(fn: Callable[..., torch.Tensor]) -> None:
    """11.3: inpaint_blend(x_unknown, x0, mask, alpha_bar_prev, eps) = mask x_unknown + (1 - mask) (sqrt(abar) x0 +
    sqrt(1 - abar) eps): latents (B, 4, h, w), mask (B, 1, h, w) with 1 where to redraw, alpha_bar_prev a float."""
    for seed, shape, a in ((140, (2, 4, 8, 8), 0.3), (141, (3, 4, 6, 10), 0.82)):
        gen = _gen(seed)
        x_unknown, eps = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        x0 = 2 * torch.randn(shape, generator=gen) + 0.5  # off-centre, so that x0 and the noise cannot be mistaken
        mask = _boxes(seed, shape[0], *shape[2:])
        args = [x_unknown.clone(), x0.clone(), mask.clone(), a, eps.clone()]
        got = _call(BLEND, fn, *args, hint=_blend_hint)
        _deterministic(BLEND, fn, args, got)
        known = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps  # the package's known part: scheduler.add_noise at t_prev

        def blend(part: torch.Tensor, x_unknown: torch.Tensor = x_unknown, mask: torch.Tensor = mask) -> torch.Tensor:
            return mask * x_unknown + (1 - mask) * part

        _compare(BLEND, got, blend(known), f"x_prev for latents {shape} at alpha_bar_prev = {a}",
                 shape_hint="x_prev has the latents' shape; the mask (B, 1, h, w) broadcasts over their 4 channels "
                            "as it is, no unsqueeze or view", mistakes={
                     "the mask is inverted: 1 marks the region to REDRAW, so x_unknown goes where mask = 1 and the "
                     "known part where mask = 0": (1 - mask) * x_unknown + mask * known,
                     "the known part is not noised: paste sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev) eps, "
                     "x0 noised to the step the sampler reached, not x0 as it is": blend(x0),
                     "the square roots are swapped: sqrt(alpha_bar_prev) scales x0 and sqrt(1 - alpha_bar_prev) the "
                     "noise": blend((1 - a) ** 0.5 * x0 + a ** 0.5 * eps),
                     "alpha_bar_prev without its square root: the known part is sqrt(alpha_bar_prev) x0 + "
                     "sqrt(1 - alpha_bar_prev) eps": blend(a * x0 + (1 - a) * eps),
                     "x0's coefficient is the square root of alpha_bar_prev, not alpha_bar_prev itself":
                         blend(a * x0 + (1 - a) ** 0.5 * eps),
                     "that is x_unknown everywhere: keep the noised known part where mask = 0": x_unknown,
                     "that is the known part everywhere: put x_unknown where mask = 1": known})
    _passed(BLEND, "the sampler draws the hole, and the rest is the original, noised to the same step.")


CHECKS: dict[str, Callable[[Callable[..., torch.Tensor]], None]] = {
    THRESHOLD: check_dynamic_threshold,
    LATENT_MASK: check_latent_mask,
    BLEND: check_inpaint_blend,
}
