"""Checks for chapter 09's scores and solvers: the score from a noise prediction, one Heun step of the
probability-flow ODE in EDM's sigma."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.notation import eps_to_score
from diffusion_lab.ode import heun_step
from diffusion_lab.tensors import append_dims

SCORE, HEUN = "9.1", "9.2"  # the exercises' numbers in chapter 09


def check_score_from_eps(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """9.1: score_from_eps(eps, sigma) = -eps / sigma: eps (B, ...) the predicted noise, sigma (B,) the noise's
    scale sqrt(1 - alpha_bar_t) of each sample."""
    cases = [(90, (4, 1, 6, 6), [0.15, 0.4, 0.8, 0.97]),  # images, sigma far from 1 and from 1 / sqrt(2)
             (91, (5, 2), [0.05, 0.3, 0.5, 0.9, 0.99])]  # 2-D points
    for seed, shape, sigmas in cases:
        eps = torch.randn(shape, generator=_gen(seed))
        sigma = torch.tensor(sigmas)
        got = _call(SCORE, fn, eps.clone(), sigma.clone())
        s = append_dims(sigma, eps.ndim)
        alpha = (1 - s**2).sqrt()
        _compare(SCORE, got, eps_to_score(eps, sigma), f"the score for eps {shape}", per_sample=True,
                 shape_hint="the score has the shape of eps; sigma (B,) needs append_dims(sigma, eps.ndim)", mistakes={
                     "the score points against the noise, back towards the data: -eps / sigma, with a minus sign":
                         eps / s,
                     "divide the noise by sigma, do not multiply": -eps * s,
                     "that divides by sigma^2, the noise's variance; the score is -eps / sigma": -eps / s**2,
                     "that divides by alpha = sqrt(1 - sigma^2), the signal's scale; divide by sigma, the noise's":
                         -eps / alpha,
                     "scale the noise by 1 / sigma: the score grows as the noise gets small": -eps,
                     "that divides by sigma / alpha, EDM's sigma; here sigma is sqrt(1 - alpha_bar_t) itself":
                         -eps * alpha / s})
    _passed(SCORE, "every noise predictor of chapters 04-08 is a score model: turn the noise round and divide by "
                   "sigma_t.")


def _denoiser(shift: float) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """A made-up, smooth, nonlinear D(x; sigma), fine at sigma = 0 (it returns x there), for any sigma type."""
    def denoise(x: torch.Tensor, sigma: Any) -> torch.Tensor:
        sigma = float(sigma)
        return 0.25 / (0.25 + sigma**2) * x + 0.3 * sigma / (1 + sigma) * torch.tanh(x + shift)

    return denoise


def _heun_mistakes(denoise: Callable[[torch.Tensor, Any], torch.Tensor], x: torch.Tensor, sigma: float,
                   sigma_next: float) -> dict[str, torch.Tensor]:
    """What the usual slips give for one Heun step, keyed by the message that names each."""
    def slope(y: torch.Tensor, level: float) -> torch.Tensor:
        return (y - denoise(y, level)) / level if level > 0 else torch.full_like(y, float("nan"))

    step = sigma_next - sigma
    d = slope(x, sigma)
    x_euler, back = x + step * d, x - step * d
    mistakes = {"sigma falls, so x moves by (sigma_next - sigma) times the slope d = (x - D(x; sigma)) / sigma; "
                "this step goes the wrong way": x - step * (d + slope(back, sigma_next)) / 2 if sigma_next else back}
    if sigma_next == 0:
        mistakes["at sigma_next = 0 the last step still moves: Euler's step lands on D(x; sigma)"] = x
        return mistakes
    d_next = slope(x_euler, sigma_next)
    d_sq = d / sigma  # a slope divided by sigma^2
    mistakes.update({
        "that is Euler's step: Heun takes the slope again at its end, (x_euler, sigma_next), and steps from x "
        "with the average of the two slopes": x_euler,
        "average the two slopes, (d + d_next) / 2: without the 1/2 the step is twice as long": x + step * (d + d_next),
        "Heun's step uses the average of both slopes, not the second one alone": x + step * d_next,
        "the second slope is taken at the end of the step, at noise level sigma_next (not sigma)":
            x + step * (d + slope(x_euler, sigma)) / 2,
        "the second slope is taken at x_euler, the end of Euler's step, not at x":
            x + step * (d + slope(x, sigma_next)) / 2,
        "the corrected step starts again from x, not from the end of Euler's step": x_euler + step * (d + d_next) / 2,
        "the slope is (x - D(x; sigma)) / sigma: divide by sigma, not sigma^2":
            x + step * (d_sq + slope(x + step * d_sq, sigma_next) / sigma_next) / 2})
    return mistakes


def check_heun_step(fn: Callable[..., Any]) -> None:
    """9.2: heun_step(denoise, x, sigma, sigma_next) -> x_next, one step of Heun's method on dx/dsigma =
    (x - D(x; sigma)) / sigma from sigma down to sigma_next (EDM Algorithm 1); at sigma_next = 0, Euler's step."""
    cases = [(92, (3, 1, 4, 4), 2.0, 1.2, 0.4), (93, (6, 2), 0.5, 0.2, -0.7), (94, (2, 3, 2, 2), 0.3, 0.0, 0.1)]
    for seed, shape, sigma, sigma_next, shift in cases:
        denoise = _denoiser(shift)
        x = torch.randn(shape, generator=_gen(seed)) * (1 + sigma)
        got = _call(HEUN, fn, denoise, x.clone(), sigma, sigma_next)
        what = f"x_next for sigma={sigma} -> sigma_next={sigma_next}, x {shape}"
        if sigma_next == 0 and isinstance(got, torch.Tensor) and not bool(torch.isfinite(got).all()):
            raise ExerciseFailed(HEUN, f"{what} holds NaN or inf: at sigma_next = 0 (the last step) there is no "
                                       f"slope to take at the end, (x - D) / 0; EDM's Algorithm 1 takes Euler's "
                                       f"step there")
        _compare(HEUN, got, heun_step(denoise, x, sigma, sigma_next), what, atol=1e-5, rtol=1e-4,
                 mistakes=_heun_mistakes(denoise, x, sigma, sigma_next))
    _passed(HEUN, "two looks at the slope per step, and the last step a plain Euler one: EDM's second-order sampler.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    SCORE: check_score_from_eps,
    HEUN: check_heun_step,
}
