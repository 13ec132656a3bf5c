"""Checks for chapters 00-02: tensor warm-ups, forward noising, noise schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed, _raises
from diffusion_lab.schedules import NoiseSchedule, cosine_alpha_bar
from diffusion_lab.tensors import append_dims

_PER_SAMPLE = ("one value per sample, shape (B,), needs trailing dimensions of size one to multiply a batch: "
               "append_dims(c, x.ndim) makes (B, 1, ...) for images (B, C, H, W) and points (B, 2) alike, "
               "where a fixed view such as [:, None, None, None] fits only one of them")


def _broadcast_hint(err: Exception) -> str | None:
    if isinstance(err, RuntimeError) and ("size of tensor" in str(err) or "shape" in str(err)):
        return "alpha_bar has shape (B,): broadcast it with append_dims(alpha_bar, x0.ndim)"
    return None


# ----- chapter 00: tensor warm-ups ---------------------------------------------------------------

def check_to_model_range(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """0.1: uint8 pixels in 0..255, any shape -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    image = torch.randint(0, 256, (2, 1, 5, 7), generator=_gen(0), dtype=torch.uint8)
    image[0, 0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
    for x, what in ((image, "the scaled image"), (torch.arange(256, dtype=torch.uint8), "the scaled values 0..255")):
        got = _call("0.1", fn, x.clone())
        _compare("0.1", got, x.float() / 127.5 - 1, what, mistakes={
            "it lies in [0, 1]; stretch it to [-1, 1] (times 2, minus 1)": x.float() / 255,
            "255 must map to exactly 1: divide by 127.5 (255 / 2), not 128": x.float() / 128 - 1})
    _passed("0.1", "pixels 0..255 now live in [-1, 1], the range every model in the course sees")


def check_scale_per_sample(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """0.2: multiply each sample of a batch (B, ...) by its own scalar c of shape (B,)."""
    for shape in [(4, 3, 8, 8), (5, 2)]:
        x = torch.randn(shape, generator=_gen(1))
        c = torch.rand(shape[0], generator=_gen(2)) + 0.5
        got = _call("0.2", fn, x, c)
        _compare("0.2", got, append_dims(c, x.ndim) * x, f"the scaled batch for x of shape {shape}",
                 shape_hint=_PER_SAMPLE, per_sample=True)
    _passed("0.2", "one coefficient per sample, broadcast over images (B, C, H, W) and points (B, 2)")


def check_mse(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """0.3: mean squared error between two tensors of the same shape, a 0-d tensor."""
    for shape in [(3, 4), (2, 3, 5)]:
        a, b = torch.randn(shape, generator=_gen(3)), torch.randn(shape, generator=_gen(4))
        got = _call("0.3", fn, a, b)
        _compare("0.3", got, ((a - b) ** 2).mean(), f"the mean squared error of two {shape} tensors",
                 shape_hint="average over every element (.mean() with no dim), which leaves a 0-d tensor",
                 mistakes={"that is the mean absolute error; square the differences instead": (a - b).abs().mean(),
                           "that is the sum of the squares; take their mean": ((a - b) ** 2).sum()})
    _passed("0.3", "this is the loss that trains every model in chapters 04 onwards")


# ----- chapter 01: the forward process -----------------------------------------------------------

def check_noising_step(fn: Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]) -> None:
    """1.1: one step of the chain, x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (DDPM eq. 2)."""
    x_prev = torch.randn(6, 2, generator=_gen(5))
    eps = torch.randn(6, 2, generator=_gen(6))
    for beta in (0.02, 0.5):
        got = _call("1.1", fn, x_prev, beta, eps)
        _compare("1.1", got, math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * eps, f"x_t for beta={beta}", mistakes={
            "the coefficients are the square roots of 1 - beta and beta, not the numbers themselves":
                (1 - beta) * x_prev + beta * eps,
            "the two coefficients are swapped: the noise gets sqrt(beta), the old sample sqrt(1 - beta)":
                math.sqrt(beta) * x_prev + math.sqrt(1 - beta) * eps,
            "the old sample must also shrink, by sqrt(1 - beta)": x_prev + math.sqrt(beta) * eps})
    _passed("1.1", "shrink the old sample by sqrt(1 - beta), add noise of variance beta")


def check_variance_after_step(fn: Callable[[float, float], float]) -> None:
    """1.2: Var[x_t] from Var[x_{t-1}] = v and beta: (1 - beta) v + beta."""
    for v, beta in [(1.0, 0.3), (4.0, 0.1), (0.25, 0.5)]:
        got = _call("1.2", fn, v, beta)
        want = (1 - beta) * v + beta
        if not isinstance(got, (int, float)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            raise ExerciseFailed("1.2", f"should return a number, got {type(got).__name__}")
        if abs(float(got) - want) > 1e-9:
            why = {(1 - beta) * v: "the added noise has variance beta too: add it",
                   math.sqrt(1 - beta) * v + math.sqrt(beta): "scaling by a scales the variance by a^2, so the "
                   "factors are 1 - beta and beta, not their square roots"}
            hint = next((m for w, m in why.items() if abs(float(got) - w) < 1e-9), "")
            raise ExerciseFailed("1.2", f"for Var={v}, beta={beta} you gave {float(got):.6g}, expected {want:.6g}"
                                        + (f": {hint}" if hint else ""))
    _passed("1.2", "a variance of 1 stays 1, and any other variance is pulled towards 1 at every step")


def check_alpha_bars(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """1.3: alpha_bar_t = prod_{s <= t} (1 - beta_s) for every t, shape (T,)."""
    for betas in (torch.linspace(1e-4, 0.02, 50, dtype=torch.float64), torch.linspace(0.05, 0.4, 12)):
        got = _call("1.3", fn, betas.clone())
        want = torch.cumprod(1 - betas, 0)
        _compare("1.3", got, want, f"alpha_bars for {len(betas)} steps", atol=1e-6, mistakes={
            "you added the (1 - beta)s up; alpha_bar is their running product (torch.cumprod)":
                torch.cumsum(1 - betas, 0),
            "that is the running product of the betas; alpha_bar multiplies 1 - beta": torch.cumprod(betas, 0),
            "off by one step: alpha_bars[0] already includes the first step, 1 - betas[0]":
                torch.cat([torch.ones(1, dtype=betas.dtype), want[:-1]])})
    _passed("1.3", "alpha_bar_t is the fraction of the original signal's variance left at step t")


def check_q_sample(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """1.4: the closed form, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, one alpha_bar per sample."""
    for shape, what in (((5, 1, 4, 4), "images (B, C, H, W)"), ((6, 2), "points (B, 2)")):
        x0, eps = torch.randn(shape, generator=_gen(7)), torch.randn(shape, generator=_gen(8))
        alpha_bar = torch.rand(shape[0], generator=_gen(9))
        got = _call("1.4", fn, x0, alpha_bar, eps, hint=_broadcast_hint)
        a = append_dims(alpha_bar, len(shape))
        _compare("1.4", got, a.sqrt() * x0 + (1 - a).sqrt() * eps, f"x_t for {what} {shape}", shape_hint=_PER_SAMPLE,
                 per_sample=True, mistakes={"the coefficients are the square roots of alpha_bar and 1 - alpha_bar": a * x0 + (1 - a) * eps,
                           "the coefficients are swapped: x_0 gets sqrt(alpha_bar), the noise sqrt(1 - alpha_bar)":
                               (1 - a).sqrt() * x0 + a.sqrt() * eps})
    _passed("1.4", "one jump from x_0 to any x_t: no need to walk the chain step by step")


# ----- chapter 02: schedules ---------------------------------------------------------------------

def check_cosine_alpha_bars(fn: Callable[[int, float], torch.Tensor]) -> None:
    """2.1: the cosine schedule's alpha_bar_t = f(t+1) / f(0), f(u) = cos^2((u/T + s)/(1 + s) * pi/2), shape (T,)."""
    for T, s in ((100, 0.008), (40, 0.05)):
        got = _call("2.1", fn, T, s)
        f = cosine_alpha_bar(torch.arange(T + 1, dtype=torch.float64) / T, s)  # f(t / T) for t = 0..T
        _compare("2.1", got, f[1:] / f[0], f"alpha_bars for T={T}, s={s}", atol=1e-5, mistakes={
            "off by one step: alpha_bars[t] is f(t + 1) / f(0), so the first value is already below 1": f[:-1] / f[0],
            "f is the cosine squared: square it": (f[1:] / f[0]).sqrt(),
            "divide by f(0), so that the schedule starts from 1": f[1:]})
    _passed("2.1", "alpha_bar follows a cosine: it falls slowly at both ends and steadily in the middle")


def check_t_for_snr(fn: Callable[[NoiseSchedule, float], int]) -> None:
    """2.2: the first step t at which SNR(t) drops below a threshold; ValueError if it never does."""
    for name in ("linear", "cosine"):
        schedule = NoiseSchedule.from_name(name, 1000)
        for threshold in (1.0, 0.1):
            got = _call("2.2", fn, schedule, threshold)
            snr = schedule.snr(torch.arange(schedule.T))
            want = int(torch.nonzero(snr < threshold)[0])
            if isinstance(got, torch.Tensor):
                got = got.item()
            if not isinstance(got, int) or isinstance(got, bool):
                raise ExerciseFailed("2.2", f"should return an int step, got {type(got).__name__}")
            if got != want:
                why = {want - 1: ": that is the last step still above the threshold; return the first one below it",
                       want + 1: ": one step late; steps count from 0, like alpha_bars[t]",
                       int(torch.nonzero(schedule.alpha_bars < threshold)[0]): ": that is where alpha_bar drops "
                       "below the threshold; compare SNR = alpha_bar / (1 - alpha_bar)"}.get(got, "")
                raise ExerciseFailed("2.2", f"{name} schedule, threshold {threshold}: you gave t={got}, expected "
                                            f"{want}{why}")
    raised, got = _raises("2.2", fn, ValueError, NoiseSchedule.from_name("linear", 100), 0.0)  # SNR > 0 always
    if not raised:
        raise ExerciseFailed("2.2", f"SNR never drops below 0, so this should raise ValueError, but you returned {got!r}")
    _passed("2.2", "SNR = 1 is where signal and noise have equal variance")


def check_psnr(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """2.3: PSNR in dB for images in [-1, 1] (peak-to-peak range 2): 10 log10(2^2 / MSE)."""
    for shape, noise in (((1, 8, 8), 0.1), ((2, 3, 6, 6), 0.3)):
        x = torch.rand(shape, generator=_gen(10)) * 2 - 1
        y = (x + noise * torch.randn(shape, generator=_gen(11))).clamp(-1, 1)
        got = _call("2.3", fn, x, y)
        mse = ((x - y) ** 2).mean()
        _compare("2.3", got if isinstance(got, torch.Tensor) else torch.tensor(float(got)), 10 * torch.log10(4 / mse),
                 f"PSNR of two {shape} images", atol=1e-3, mistakes={
                     "the peak-to-peak range is 2 for images in [-1, 1], so peak^2 = 4, not 1": 10 * torch.log10(1 / mse),
                     "square the peak: 10 log10(peak^2 / MSE) with peak 2": 10 * torch.log10(2 / mse),
                     "decibels use log10, not the natural log": 10 * torch.log(4 / mse)})
    _passed("2.3", "higher is closer; about 20 dB is 'clearly the same picture, visibly noisy'")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "0.1": check_to_model_range,
    "0.2": check_scale_per_sample,
    "0.3": check_mse,
    "1.1": check_noising_step,
    "1.2": check_variance_after_step,
    "1.3": check_alpha_bars,
    "1.4": check_q_sample,
    "2.1": check_cosine_alpha_bars,
    "2.2": check_t_for_snr,
    "2.3": check_psnr,
}
