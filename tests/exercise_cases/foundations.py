"""Right and wrong answers to the exercises of chapters 00-02."""

from __future__ import annotations

import math

import numpy as np
import torch

from diffusion_lab.schedules import NoiseSchedule
from exercise_cases.cases import Cases

# ----- 0.1 to_model_range: uint8 0..255 -> float in [-1, 1] ---------------------------------------

def to_model_range(x):
    return x.float() / 255 * 2 - 1


def to_model_range_unit(x):  # stops at [0, 1]
    return x.float() / 255


def to_model_range_numpy(x):
    return x.numpy() / 127.5 - 1


def to_model_range_off_by_one(x):  # divides by 128: 255 -> 0.99
    return x.float() / 128 - 1


# ----- 0.2 scale_per_sample: x (B, ...) times c (B,) -------------------------------------------------

def scale_per_sample(x, c):
    return c.reshape(-1, *([1] * (x.ndim - 1))) * x


def scale_per_sample_image_only(x, c):  # hard-coded for images: wrong shape for points (B, 2)
    return c.view(-1, 1, 1, 1) * x


def scale_per_sample_mean(x, c):
    return c.mean() * x


# ----- 0.3 mse ------------------------------------------------------------------------------------

def mse(a, b):
    return (a - b).pow(2).sum() / a.numel()


def mse_sum(a, b):
    return ((a - b) ** 2).sum()


def mse_abs(a, b):
    return (a - b).abs().mean()


def mse_per_row(a, b):  # keeps a dimension
    return ((a - b) ** 2).mean(dim=1)


def mse_float(a, b):
    return float(((a - b) ** 2).mean())


# ----- 1.1 noising_step: sqrt(1 - beta) x_{t-1} + sqrt(beta) eps ------------------------------------

def noising_step(x_prev, beta, eps):
    return (1 - beta) ** 0.5 * x_prev + beta**0.5 * eps


def noising_step_no_sqrt(x_prev, beta, eps):
    return (1 - beta) * x_prev + beta * eps


def noising_step_beta_for_alpha(x_prev, beta, eps):
    return math.sqrt(beta) * x_prev + math.sqrt(1 - beta) * eps


def noising_step_no_shrink(x_prev, beta, eps):
    return x_prev + math.sqrt(beta) * eps


# ----- 1.3 alpha_bars: cumprod(1 - betas) -----------------------------------------------------------

def alpha_bars(betas):
    out, prod = [], 1.0
    for b in betas.tolist():
        prod *= 1 - b
        out.append(prod)
    return torch.tensor(out, dtype=betas.dtype)


def alpha_bars_cumsum(betas):
    return torch.cumsum(1 - betas, dim=0)


def alpha_bars_of_betas(betas):  # beta instead of 1 - beta
    return torch.cumprod(betas, dim=0)


def alpha_bars_exclusive(betas):  # off by one: product over s < t
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, dim=0)[:-1]])


def alpha_bars_numpy(betas):
    return np.cumprod(1 - betas.numpy())


# ----- 1.4 q_sample: sqrt(abar) x0 + sqrt(1 - abar) eps, one abar per sample --------------------------

def q_sample(x0, alpha_bar, eps):
    a = alpha_bar.reshape(-1, *([1] * (x0.ndim - 1)))  # (B,) -> (B, 1, ...)
    return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * eps


def q_sample_loop(x0, alpha_bar, eps):
    return torch.stack([a.sqrt() * x + (1 - a).sqrt() * e for x, a, e in zip(x0, alpha_bar, eps)])


def q_sample_no_sqrt(x0, alpha_bar, eps):
    a = alpha_bar.reshape(-1, *([1] * (x0.ndim - 1)))
    return a * x0 + (1 - a) * eps


def q_sample_swapped(x0, alpha_bar, eps):
    a = alpha_bar.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.sqrt(1 - a) * x0 + torch.sqrt(a) * eps


def q_sample_4d_view(x0, alpha_bar, eps):  # right for images, but (B, 1, 1, 1) * (B, 2) is not (B, 2)
    a = alpha_bar.view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def q_sample_no_broadcast(x0, alpha_bar, eps):  # (B,) lines up with the LAST dimension
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def q_sample_math_sqrt(x0, alpha_bar, eps):  # math.sqrt takes one number
    a = alpha_bar.reshape(-1, *([1] * (x0.ndim - 1)))
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * eps


def q_sample_first_abar(x0, alpha_bar, eps):  # one alpha_bar for the whole batch
    a = alpha_bar[0]
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


# ----- 1.2 variance_after_step: (1 - beta) v + beta -------------------------------------------------

def variance_after_step(v, beta):
    return v - beta * v + beta


def variance_after_step_no_noise(v, beta):
    return (1 - beta) * v


def variance_after_step_std(v, beta):  # mixes up std and variance
    return math.sqrt(1 - beta) * v + math.sqrt(beta)


def variance_after_step_list(v, beta):
    return [(1 - beta) * v + beta]


# ----- 2.1 cosine_alpha_bars: f(t + 1) / f(0) for t = 0..T-1 ----------------------------------------

def _f(u: float, T: int, s: float) -> float:
    return math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2


def cosine_alpha_bars(T, s):
    return torch.tensor([_f(t + 1, T, s) / _f(0, T, s) for t in range(T)], dtype=torch.float64)


def cosine_alpha_bars_off_by_one(T, s):  # f(t) / f(0): starts at exactly 1
    return torch.tensor([_f(t, T, s) / _f(0, T, s) for t in range(T)], dtype=torch.float64)


def cosine_alpha_bars_not_squared(T, s):
    return torch.tensor([math.sqrt(_f(t + 1, T, s) / _f(0, T, s)) for t in range(T)], dtype=torch.float64)


def cosine_alpha_bars_T_plus_one(T, s):  # includes t = T: wrong shape
    return torch.tensor([_f(t, T, s) / _f(0, T, s) for t in range(T + 1)], dtype=torch.float64)


# ----- 2.2 t_for_snr: first t with SNR(t) < threshold --------------------------------------------

def _snrs(schedule: NoiseSchedule) -> list[float]:
    return [a / (1 - a) for a in schedule.alpha_bars.double().tolist()]


def t_for_snr(schedule, threshold):
    for t, snr in enumerate(_snrs(schedule)):
        if snr < threshold:
            return t
    raise ValueError("the SNR never drops that low")


def t_for_snr_no_error(schedule, threshold):  # returns the last step instead of saying "never"
    below = [t for t, snr in enumerate(_snrs(schedule)) if snr < threshold]
    return below[0] if below else schedule.T - 1


def t_for_snr_last_above(schedule, threshold):  # off by one: the last t still above
    return t_for_snr(schedule, threshold) - 1


def t_for_snr_counted_from_one(schedule, threshold):
    return t_for_snr(schedule, threshold) + 1


def t_for_snr_fraction(schedule, threshold):  # returns t / T instead of a step
    return t_for_snr(schedule, threshold) / schedule.T


def t_for_snr_alpha_bar(schedule, threshold):  # compares alpha_bar, not SNR, with the threshold
    return int(torch.nonzero(schedule.alpha_bars < threshold)[0])


# ----- 2.3 psnr: 10 log10(2^2 / MSE) for images in [-1, 1] ------------------------------------------

def psnr(x, y):
    return 20 * math.log10(2) - 10 * torch.log10(((x - y) ** 2).mean())


def psnr_float(x, y):
    return 10 * math.log10(4 / float(((x - y) ** 2).mean()))


def psnr_range_one(x, y):
    return 10 * torch.log10(1 / ((x - y) ** 2).mean())


def psnr_no_square(x, y):  # peak 2, not peak squared
    return 10 * torch.log10(2 / ((x - y) ** 2).mean())


def psnr_natural_log(x, y):
    return 10 * torch.log(4 / ((x - y) ** 2).mean())


# ----- the table ----------------------------------------------------------------------------------

CASES: dict[str, Cases] = {
    "0.1": Cases([to_model_range], [to_model_range_unit, to_model_range_numpy, to_model_range_off_by_one]),
    "0.2": Cases([scale_per_sample], [scale_per_sample_image_only, scale_per_sample_mean]),
    "0.3": Cases([mse], [mse_sum, mse_abs, mse_per_row, mse_float]),
    "1.1": Cases([noising_step], [noising_step_no_sqrt, noising_step_beta_for_alpha, noising_step_no_shrink]),
    "1.2": Cases([variance_after_step],
                 [variance_after_step_no_noise, variance_after_step_std, variance_after_step_list]),
    "1.3": Cases([alpha_bars], [alpha_bars_cumsum, alpha_bars_of_betas, alpha_bars_exclusive, alpha_bars_numpy]),
    "1.4": Cases([q_sample, q_sample_loop],
                 [q_sample_no_sqrt, q_sample_swapped, q_sample_first_abar, q_sample_4d_view, q_sample_no_broadcast,
                  q_sample_math_sqrt]),
    "2.1": Cases([cosine_alpha_bars],
                 [cosine_alpha_bars_off_by_one, cosine_alpha_bars_not_squared, cosine_alpha_bars_T_plus_one]),
    "2.2": Cases([t_for_snr], [t_for_snr_no_error, t_for_snr_last_above, t_for_snr_counted_from_one, t_for_snr_fraction,
                               t_for_snr_alpha_bar]),
    "2.3": Cases([psnr, psnr_float], [psnr_range_one, psnr_no_square, psnr_natural_log]),
}
