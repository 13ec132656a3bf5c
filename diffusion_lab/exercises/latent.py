"""Checks for chapter 08: the reparameterised sample, the KL to N(0, I), the latent scale s, the Min-SNR weight,
SDEdit's start."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.exercises.unet import _as_int
from diffusion_lab.models.autoencoder import DiagonalGaussian
from diffusion_lab.sampling.sdedit import sdedit_start
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training.diffusion import min_snr_weight


def _posterior(seed: int, shape: tuple[int, ...], low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean and a log-variance (inside DiagonalGaussian's clamp [-30, 20]) of the given shape."""
    gen = _gen(seed)
    mean = torch.randn(shape, generator=gen) * 1.5 + 0.3
    logvar = torch.rand(shape, generator=gen) * (high - low) + low
    return mean, logvar


def check_reparameterise(fn: Callable[..., torch.Tensor]) -> None:
    """8.1: reparameterise(mean, logvar, noise) = mean + exp(0.5 logvar) noise, all (B, c, h, w)."""
    # a wide range of log-variances (std from 0.05 to 2.7) and two latent shapes; the second needs gradients
    for seed, shape, (low, high), grad in ((80, (3, 4, 5, 5), (-6.0, 2.0), False),
                                           (81, (2, 1, 8, 8), (-3.0, 1.0), True)):
        mean, logvar = _posterior(seed, shape, low, high)
        noise = torch.randn(shape, generator=_gen(seed + 10))
        args = [mean.clone().requires_grad_(grad), logvar.clone().requires_grad_(grad), noise.clone()]
        got = _call("8.1", fn, *args)
        want = DiagonalGaussian(mean, logvar).sample(noise)
        if (isinstance(got, torch.Tensor) and got.shape == want.shape
                and not torch.allclose(got.detach().double(), want.double(), atol=1e-5, rtol=1e-4)):
            again = _call("8.1", fn, *args)
            if isinstance(again, torch.Tensor) and not torch.equal(got.detach(), again.detach()):
                raise ExerciseFailed("8.1", "two calls with the same inputs gave different samples: use the noise "
                                            "you are given, do not draw new noise (torch.randn_like)")
        _compare("8.1", got, want, f"the sample z for latents {shape}", mistakes={
            "exp(logvar) is the variance; the noise is scaled by the standard deviation, the square root of it":
                mean + logvar.exp() * noise,
            "the 0.5 belongs inside the exp: the standard deviation is exp(logvar / 2)": mean + 0.5 * logvar.exp() * noise,
            "logvar is the log of the variance, not the standard deviation: undo the log (exp) and take the "
            "square root": mean + logvar * noise,
            "that multiplies the noise by the log-variance and drops the mean: shift by the mean, scale by the "
            "standard deviation": logvar * noise,
            "that is the mean only: add the noise, scaled by the standard deviation": mean,
            "the sample is centred on the mean: add it": logvar.mul(0.5).exp() * noise,
            "that divides by the standard deviation: exp(-0.5 logvar) is 1 / std": mean + (-0.5 * logvar).exp() * noise})
        if grad and not got.requires_grad:
            raise ExerciseFailed("8.1", "the sample has no gradient: keep it a torch computation of mean and logvar "
                                        "(no .detach(), .item() or torch.no_grad()), so that training can reach the "
                                        "encoder through it")
    _passed("8.1", "the randomness sits in the noise alone, so gradients flow to the mean and the log-variance.")


_KL_SHAPE = "return one KL per picture, shape (B,): sum over dims 1, 2, 3 (x.flatten(1).sum(1))"


def check_kl_to_standard_normal(fn: Callable[..., torch.Tensor]) -> None:
    """8.2: KL(N(mean, exp(logvar)) || N(0, I)) per picture, summed over its latent values: (B,)."""
    cases = [(_posterior(82, (3, 4, 4, 4), -3.0, 1.5), "latents (3, 4, 4, 4)"),
             (_posterior(83, (2, 2, 8, 8), -2.0, 2.0), "latents (2, 2, 8, 8)"),
             ((torch.zeros(4, 3, 2, 2), torch.zeros(4, 3, 2, 2)), "N(0, I) itself (mean 0, logvar 0)")]
    for (mean, logvar), what in cases:
        got = _call("8.2", fn, mean.clone(), logvar.clone())
        want = DiagonalGaussian(mean, logvar).kl()
        terms = mean.pow(2) + logvar.exp() - 1 - logvar  # (B, c, h, w), one term per latent value
        _compare("8.2", got, want, f"the KL for {what}", atol=1e-4, rtol=1e-4, shape_hint=_KL_SHAPE, mistakes={
            "that averages over the latent values; the KL of a picture is their sum": 0.5 * terms.flatten(1).mean(1),
            "the KL has a factor 0.5 in front of the sum": terms.flatten(1).sum(1),
            "each value's term has a - 1 (it makes the KL of N(0, 1) itself 0)":
                0.5 * (terms + 1).flatten(1).sum(1),
            "the log-variance enters with a minus sign: ... - 1 - logvar":
                0.5 * (terms + 2 * logvar).flatten(1).sum(1),
            "the mean enters squared": 0.5 * (terms - mean.pow(2) + mean).flatten(1).sum(1),
            "exp(logvar) is the variance itself: no square root there":
                0.5 * (terms - logvar.exp() + (0.5 * logvar).exp()).flatten(1).sum(1)})
    _passed("8.2", "0 for N(0, I) itself and growing as a latent's mean or spread strays from it: the pull that keeps "
                   "the latents tame.")


def _latents(seed: int, n: int, h: int, offsets: list[float], spreads: list[float]) -> torch.Tensor:
    """(n, c, h, h) latents with a nonzero mean and a different spread (and offset) in every channel."""
    c = len(offsets)
    z = torch.randn(n, c, h, h, generator=_gen(seed))
    return torch.tensor(offsets).view(1, c, 1, 1) + torch.tensor(spreads).view(1, c, 1, 1) * z


def check_latent_scale(fn: Callable[[torch.Tensor], Any]) -> None:
    """8.3: latent_scale(latents) = 1 / std of every value of latents (N, c, h, w): one number."""
    cases = [_latents(84, 64, 8, [0.5, -1.0, 0.2, 1.5], [0.5, 2.0, 1.0, 3.0]),
             _latents(85, 40, 6, [2.0, 0.0, -0.5], [0.3, 1.2, 0.7])]
    for latents in cases:
        shape = tuple(latents.shape)
        got = _call("8.3", fn, latents.clone())
        if isinstance(got, torch.Tensor):
            if got.numel() == shape[1] and got.numel() > 1:
                raise ExerciseFailed("8.3", f"for latents {shape} you returned {got.numel()} values, one per channel; "
                                            f"s is one number: the std of every value of every channel together")
            if got.ndim != 0:
                fix = "drop its extra dimensions (.item())" if got.numel() == 1 else "take the std over all values (no dim)"
                raise ExerciseFailed("8.3", f"s should be one number (a float or a 0-d tensor), got a tensor of shape "
                                            f"{tuple(got.shape)}: {fix}")
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            raise ExerciseFailed("8.3", f"s should be a number (a float or a 0-d tensor), got {type(got).__name__}")
        z = latents.double()
        want = float(1 / z.std())
        if not abs(float(got) - want) <= 1e-3 * want:  # written so that NaN fails too
            per_channel = z.transpose(0, 1).flatten(1).std(1)  # (c,)
            why = {float(z.std()): "that is the std itself; s = 1 / std scales the latents to unit std",
                   float(1 / z.var()): "that divides by the variance; divide by the standard deviation",
                   float(1 / z.abs().mean()): "that divides by the mean absolute value; divide by the standard "
                                              "deviation (.std())",
                   float(1 / z.pow(2).mean().sqrt()): "that is 1 / root mean square: the std is measured around the "
                                                      "mean, which these latents do not have at 0",
                   float((1 / per_channel).mean()): "that averages one scale per channel; take one std over every "
                                                    "value of every channel together",
                   float(1 / per_channel.mean()): "that averages the channels' stds; take one std over every value "
                                                  "of every channel together"}
            hint = next((m for w, m in why.items() if abs(float(got) - w) <= 1e-3 * abs(w)), "")
            raise ExerciseFailed("8.3", f"for latents {shape} you gave s = {float(got):.6g}, expected {want:.6g}"
                                        + (f": {hint}" if hint else ""))
    _passed("8.3", "multiplied by s, the latents have unit std, the spread the noise schedule assumes.")


def _python_min_hint(err: Exception) -> str | None:
    if "ambiguous" in str(err):
        return ("Python's min() compares single numbers; for a tensor of SNRs use torch.clamp(snr, max=gamma) "
                "or torch.minimum")
    return None


def check_min_snr_weight(fn: Callable[[torch.Tensor, float], Any]) -> None:
    """8.4: min_snr_weight(alpha_bar, gamma) = min(SNR, gamma) / SNR, SNR = alpha_bar / (1 - alpha_bar): (B,)."""
    schedule = NoiseSchedule.from_name("cosine", 1000)
    spread = torch.tensor([0, 10, 100, 250, 400, 550, 700, 999])  # nearly clean to pure noise
    drawn = torch.randint(0, 1000, (16,), generator=_gen(86))
    for t, gamma in ((spread, 5.0), (drawn, 1.0), (spread, 20.0)):
        alpha_bar = schedule.alpha_bars[t].clone()  # (B,)
        got = _call("8.4", fn, alpha_bar.clone(), gamma, hint=_python_min_hint)
        snr = alpha_bar / (1 - alpha_bar)
        root = alpha_bar.sqrt() / (1 - alpha_bar).sqrt()
        mistakes = {
            "max instead of min: the weight is at most 1, and below 1 only on the nearly clean steps (SNR > gamma)":
                torch.clamp(snr, min=gamma) / snr,
            "that is min(SNR, gamma) itself: divide it by SNR, so the weight is 1 on the noisy steps":
                torch.clamp(snr, max=gamma),
            "upside down: the weight is min(SNR, gamma) / SNR, not SNR / min(SNR, gamma)":
                snr / torch.clamp(snr, max=gamma),
            "the SNR is upside down: signal over noise is alpha_bar / (1 - alpha_bar)":
                torch.clamp(1 / snr, max=gamma) * snr,
            "the SNR compares variances, alpha_bar against 1 - alpha_bar, without square roots":
                torch.clamp(root, max=gamma) / root}
        if gamma != 5.0:
            mistakes["gamma is an argument: use the gamma you are given, not 5"] = torch.clamp(snr, max=5.0) / snr
        _compare("8.4", got, min_snr_weight(schedule, t, gamma), f"the weight tensor for gamma = {gamma}",
                 mistakes=mistakes, shape_hint="one weight per sample, the shape of alpha_bar")
    _passed("8.4", "weight 1 on the noisy steps, gamma / SNR on the nearly clean ones, which no longer dominate the "
                   "loss.")


def check_sdedit_start(fn: Callable[[int, float], Any]) -> None:
    """8.5: sdedit_start(num_steps, strength) = K - round(strength K), the index of SDEdit's first step."""
    cases = [  # (K, strength): no ties (x.5), and several where int() and round() differ
        (20, 0.33),  # 6.6 steps to run: round 7, int 6
        (50, 1.0),  # a new picture: start at index 0, run every step
        (50, 0.0),  # keep the picture: start at K, run none
        (40, 0.29),  # 11.6
        (25, 0.8),  # exactly 20
        (100, 0.999),  # 99.9: round 100
        (10, 0.44),  # 4.4: round and int agree
    ]
    answers = []
    for k, strength in cases:
        got = _call("8.5", fn, k, strength)
        if isinstance(got, float):
            raise ExerciseFailed("8.5", f"num_steps={k}, strength={strength}: the start is an index, an int, got "
                                        f"{got!r}; round strength * num_steps to whole steps")
        answers.append(_as_int("8.5", got, "the start index"))
    slips = {  # a slip is named only when it explains every answer
        "reversed: that is the number of steps to run; strength 1 (a new picture) starts from index 0, the "
        "noisiest step, and strength 0 from num_steps (no step)": lambda k, s: round(s * k),
        "round strength * num_steps to the nearest whole step; int() and floor cut it down (6.6 -> 6)":
            lambda k, s: k - int(s * k),
        "round strength * num_steps to the nearest whole step, not up": lambda k, s: k - int(-(-s * k // 1)),
    }
    for (k, strength), got in zip(cases, answers, strict=True):
        want = sdedit_start(k, strength)
        if got != want:
            if not 0 <= got <= k:
                raise ExerciseFailed("8.5", f"num_steps={k}, strength={strength}: you gave {got}, but the start is "
                                            f"an index into the {k} sampler timesteps, from 0 to {k} (a timestep t "
                                            f"instead of its index?)")
            why = next((m for m, f in slips.items() if all(f(*c) == a for c, a in zip(cases, answers))), None)
            edge = {1.0: " (strength 1 runs every step)", 0.0: " (strength 0 runs no step)"}.get(strength, "")
            raise ExerciseFailed("8.5", f"num_steps={k}, strength={strength}{edge}: you gave {got}, expected {want}"
                                        + (f": {why}" if why else ""))
    _passed("8.5", "strength says how much of the sampler to run, from the end: the less, the more of the picture "
                   "survives.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "8.1": check_reparameterise,
    "8.2": check_kl_to_standard_normal,
    "8.3": check_latent_scale,
    "8.4": check_min_snr_weight,
    "8.5": check_sdedit_start,
}
