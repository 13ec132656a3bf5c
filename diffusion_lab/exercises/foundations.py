"""Checks for chapters 00-02: tensor warm-ups, forward noising, noise schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.schedules import NoiseSchedule, cosine_alpha_bar
from diffusion_lab.tensors import append_dims

# ----- chapter 00: tensor warm-ups ---------------------------------------------------------------

def check_to_model_range(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """0.1: uint8 pixels in 0..255, any shape -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    x = torch.randint(0, 256, (2, 1, 5, 7), generator=_gen(0), dtype=torch.uint8)
    x[0, 0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
    got = _call("0.1", fn, x)
    _compare("0.1", got, x.float() / 127.5 - 1, "the scaled image")
    _passed("0.1", "pixels 0..255 now live in [-1, 1], the range every model in the course sees")


def check_scale_per_sample(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """0.2: multiply each sample of a batch (B, ...) by its own scalar c of shape (B,)."""
    for shape in [(4, 3, 8, 8), (5, 2)]:
        x = torch.randn(shape, generator=_gen(1))
        c = torch.rand(shape[0], generator=_gen(2)) + 0.5
        got = _call("0.2", fn, x, c)
        _compare("0.2", got, append_dims(c, x.ndim) * x, f"the scaled batch for x of shape {shape}")
    _passed("0.2", "one coefficient per sample, broadcast over images (B, C, H, W) and points (B, 2)")


def check_mse(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """0.3: mean squared error between two tensors of the same shape, a 0-d tensor."""
    a, b = torch.randn(3, 4, generator=_gen(3)), torch.randn(3, 4, generator=_gen(4))
    got = _call("0.3", fn, a, b)
    _compare("0.3", got, ((a - b) ** 2).mean(), "the mean squared error")
    _passed("0.3", "this is the loss that trains every model in chapters 04 onwards")


# ----- chapter 01: the forward process -----------------------------------------------------------

def check_noising_step(fn: Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]) -> None:
    """1.1: one step of the chain, x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (DDPM eq. 2)."""
    x_prev = torch.randn(6, 2, generator=_gen(5))
    eps = torch.randn(6, 2, generator=_gen(6))
    for beta in (0.02, 0.5):
        got = _call("1.1", fn, x_prev, beta, eps)
        _compare("1.1", got, math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * eps, f"x_t for beta={beta}")
    _passed("1.1", "shrink the old sample by sqrt(1 - beta), add noise of variance beta")


def check_alpha_bars(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """1.2: alpha_bar_t = prod_{s <= t} (1 - beta_s) for every t, shape (T,)."""
    betas = torch.linspace(1e-4, 0.02, 50, dtype=torch.float64)
    got = _call("1.2", fn, betas)
    _compare("1.2", got, torch.cumprod(1 - betas, 0), "alpha_bars", atol=1e-6)
    _passed("1.2", "alpha_bar_t is the fraction of the original signal's variance left at step t")


def check_q_sample(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """1.3: the closed form, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, one alpha_bar per sample."""
    x0 = torch.randn(5, 1, 4, 4, generator=_gen(7))
    eps = torch.randn(5, 1, 4, 4, generator=_gen(8))
    alpha_bar = torch.rand(5, generator=_gen(9))
    got = _call("1.3", fn, x0, alpha_bar, eps)
    want = append_dims(alpha_bar.sqrt(), 4) * x0 + append_dims((1 - alpha_bar).sqrt(), 4) * eps
    _compare("1.3", got, want, "x_t")
    _passed("1.3", "one jump from x_0 to any x_t: no need to walk the chain step by step")


def check_variance_after_step(fn: Callable[[float, float], float]) -> None:
    """1.4: Var[x_t] from Var[x_{t-1}] = v and beta: (1 - beta) v + beta."""
    for v, beta in [(1.0, 0.3), (4.0, 0.1), (0.25, 0.5)]:
        got = _call("1.4", fn, v, beta)
        want = (1 - beta) * v + beta
        if not isinstance(got, (int, float)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            raise ExerciseFailed("1.4", f"should return a number, got {type(got).__name__}")
        if abs(float(got) - want) > 1e-9:
            raise ExerciseFailed("1.4", f"for Var={v}, beta={beta} you gave {float(got):.6g}, expected {want:.6g}")
    _passed("1.4", "a variance of 1 stays 1, and any other variance is pulled towards 1 at every step")


# ----- chapter 02: schedules ---------------------------------------------------------------------

def check_cosine_alpha_bars(fn: Callable[[int, float], torch.Tensor]) -> None:
    """2.1: the cosine schedule's alpha_bar_t = f(t+1) / f(0), f(u) = cos^2((u/T + s)/(1 + s) * pi/2), shape (T,)."""
    T, s = 100, 0.008
    got = _call("2.1", fn, T, s)
    u = torch.arange(T + 1, dtype=torch.float64) / T
    want = cosine_alpha_bar(u[1:], s) / cosine_alpha_bar(u[:1], s)
    _compare("2.1", got, want, "alpha_bars", atol=1e-5)
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
                raise ExerciseFailed("2.2", f"{name} schedule, threshold {threshold}: you gave t={got}, expected {want}")
    try:
        got = fn(NoiseSchedule.from_name("linear", 100), 0.0)  # SNR is always > 0: never below 0
    except ValueError:
        pass
    else:
        raise ExerciseFailed("2.2", f"SNR never drops below 0, so this should raise ValueError, but you returned {got!r}")
    _passed("2.2", "SNR = 1 is where signal and noise have equal variance")


def check_psnr(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """2.3: PSNR in dB for images in [-1, 1] (peak-to-peak range 2): 10 log10(2^2 / MSE)."""
    x = torch.rand(1, 8, 8, generator=_gen(10)) * 2 - 1
    y = (x + 0.1 * torch.randn(1, 8, 8, generator=_gen(11))).clamp(-1, 1)
    got = _call("2.3", fn, x, y)
    want = 10 * torch.log10(4 / ((x - y) ** 2).mean())
    _compare("2.3", got if isinstance(got, torch.Tensor) else torch.tensor(float(got)), want, "PSNR", atol=1e-3)
    _passed("2.3", "higher is closer; about 20 dB is 'clearly the same picture, visibly noisy'")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "0.1": check_to_model_range,
    "0.2": check_scale_per_sample,
    "0.3": check_mse,
    "1.1": check_noising_step,
    "1.2": check_alpha_bars,
    "1.3": check_q_sample,
    "1.4": check_variance_after_step,
    "2.1": check_cosine_alpha_bars,
    "2.2": check_t_for_snr,
    "2.3": check_psnr,
}
