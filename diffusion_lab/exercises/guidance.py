"""Checks for chapter 07: the classifier-guided noise prediction (7.1), the classifier-free guidance
combination (7.2), and choosing a guidance scale from a measured sweep (7.3)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed, _raises
from diffusion_lab.guidance import cfg_combine, classifier_guidance, classifier_log_prob_grad
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims


def check_cfg_combine(fn: Callable[..., torch.Tensor]) -> None:
    """7.2: cfg(eps_null, eps_cond, w) = eps_null + w (eps_cond - eps_null), this course's (diffusers') w."""
    gen = _gen(70)
    eps_null = torch.randn(4, 1, 5, 5, generator=gen)
    eps_cond = torch.randn(4, 1, 5, 5, generator=gen)
    for w in (1.0, 0.0, 3.0, 7.5):
        got = _call("7.2", fn, eps_null, eps_cond, w)
        want = cfg_combine(eps_null, eps_cond, w)
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            ho_salimans = cfg_combine(eps_null, eps_cond, w + 1)  # their eps_c + w (eps_c - eps_null)
            if torch.allclose(got.double(), ho_salimans.double(), atol=1e-5):
                raise ExerciseFailed("7.2", f"at w = {w} you pushed one step too far: that is Ho & Salimans' "
                                            f"convention, (1 + w) eps_cond - w eps_null. Here w = 1 must give the "
                                            f"plain conditional prediction and w = 0 the unconditional one")
        where = {1.0: " (w = 1 is the plain conditional model: it should return eps_cond)",
                 0.0: " (w = 0 ignores the condition: it should return eps_null)"}.get(w, "")
        _compare("7.2", got, want, f"the guided prediction at w = {w}{where}", mistakes={
            "that guides away from the condition: start from eps_null and add w (eps_cond - eps_null)":
                eps_cond + w * (eps_null - eps_cond),
            "start from eps_null, then add w times the difference the condition makes": w * (eps_cond - eps_null)})
    _passed("7.2", "w = 0 ignores the condition, w = 1 is the conditional model, w > 1 goes further along "
                   "what the condition adds.")


class _LinearClassifier(nn.Module):
    """A stand-in p(y | x_t, t) whose gradient is easy to get right and to get wrong: logits = W x + t-term."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1 * 4 * 4, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(3, 16, generator=_gen(71)))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) + t[:, None].float() / 1000


_PER_SAMPLE = "alpha_bar_t has shape (B,): append_dims(..., grad.ndim) makes it (B, 1, 1, 1) for images"


def _broadcast_hint(err: Exception) -> str | None:
    if isinstance(err, RuntimeError) and ("size of tensor" in str(err) or "shape" in str(err)):
        return "alpha_bar_t has shape (B,): broadcast it with append_dims(alpha_bar_t, grad.ndim)"
    return None


def check_classifier_guided_eps(fn: Callable[..., torch.Tensor]) -> None:
    """7.1: eps_pred - s sqrt(1 - alpha_bar_t) grad, with alpha_bar_t (B,), one per sample (Dhariwal & Nichol)."""
    schedule = NoiseSchedule.from_name("cosine", T=1000)
    gen = _gen(72)
    xt = torch.randn(3, 1, 4, 4, generator=gen)
    eps_pred = torch.randn(3, 1, 4, 4, generator=gen)
    t = torch.tensor([999, 500, 20])  # very different noise levels: sqrt(1 - alpha_bar) from ~1 to ~0.03
    labels = torch.tensor([0, 2, 1])
    classifier = _LinearClassifier()
    grad = classifier_log_prob_grad(classifier, xt, t, labels)  # (3, 1, 4, 4)
    for scale in (1.0, 4.0, 0.0):
        got = _call("7.1", fn, eps_pred.clone(), grad.clone(), schedule.alpha_bars[t].clone(), scale,
                    hint=_broadcast_hint)
        want = classifier_guidance(lambda x, tt: eps_pred, labels, classifier, schedule, scale)(xt, t)
        hint = " (scale 0 is no guidance: eps_pred unchanged)" if scale == 0 else ""
        if isinstance(got, torch.Tensor) and got.shape == want.shape and scale > 0:
            towards = eps_pred + scale * append_dims((1 - schedule.alpha_bars[t]).sqrt(), grad.ndim) * grad
            if torch.allclose(got.double(), towards.double(), atol=1e-5):
                raise ExerciseFailed("7.1", "the sign is flipped: eps is the noise to REMOVE, so making x_t more "
                                            "like the class means subtracting the gradient from eps")
        sigma = append_dims((1 - schedule.alpha_bars[t]).sqrt(), grad.ndim)  # (B, 1, 1, 1)
        _compare("7.1", got, want, f"the guided eps at scale {scale}{hint}", atol=1e-5, shape_hint=_PER_SAMPLE,
                 per_sample=True, mistakes={} if scale == 0 else {
                     "the gradient is scaled by sqrt(1 - alpha_bar_t), not by 1 - alpha_bar_t":
                         eps_pred - scale * sigma**2 * grad,
                     "sqrt(alpha_bar_t) is the signal's scale; the noise's is sqrt(1 - alpha_bar_t)":
                         eps_pred - scale * append_dims(schedule.alpha_bars[t].sqrt(), grad.ndim) * grad,
                     "scale the gradient by the noise level sqrt(1 - alpha_bar_t) of each sample":
                         eps_pred - scale * grad})
    _passed("7.1", "the classifier's gradient, scaled by the noise level sqrt(1 - alpha_bar_t), nudges every step "
                   "towards the class.")


def _as_floats(values: Any) -> list[float]:
    return [float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def _best_scale(scales: Any, accuracy: Any, diversity: Any, min_diversity: float) -> float:
    """The reference answer of 7.3."""
    rows = [(a, d, s) for s, a, d in zip(_as_floats(scales), _as_floats(accuracy), _as_floats(diversity))
            if d >= min_diversity]
    if not rows:
        raise ValueError(f"no scale keeps diversity >= {min_diversity}")
    return max(rows)[2]  # highest accuracy, then highest diversity


def check_pick_scale(fn: Callable[..., Any]) -> None:
    """7.3: pick_scale(scales, accuracy, diversity, min_diversity): the scale with the highest accuracy among
    those whose diversity is at least ``min_diversity``; equal accuracies go to the more diverse; ValueError if none."""
    scales = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0]
    accuracy = [0.10, 0.62, 0.90, 0.98, 1.00, 1.00, 0.96]
    diversity = [48.0, 40.0, 33.0, 28.0, 24.0, 21.0, 19.0]
    cases = [
        (25.0, "a constraint that rules out the most accurate scales"),
        (24.0, "diversity exactly at the minimum (at least, so it counts)"),
        (10.0, "a loose constraint, where two scales share the best accuracy"),
        (45.0, "a tight constraint that leaves only w = 0"),
    ]
    for min_div, what in cases:
        for kind, args in (("lists", (scales, accuracy, diversity)),
                           ("tensors", tuple(torch.tensor(v) for v in (scales, accuracy, diversity)))):
            got = _call("7.3", fn, *args, min_div)
            want = _best_scale(scales, accuracy, diversity, min_div)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if isinstance(got, bool) or not isinstance(got, int | float):
                raise ExerciseFailed("7.3", f"return the scale itself (a number such as 3.0), got {type(got).__name__}")
            if isinstance(got, int) and 0 <= got < len(scales) and scales[got] == want != got:
                raise ExerciseFailed("7.3", f"you returned the index {got}, not the scale {want}")
            if not math.isclose(float(got), want):
                raise ExerciseFailed("7.3", f"with {what} (min_diversity = {min_div}, given as {kind}) you picked "
                                            f"w = {got}, expected w = {want}")
    raised, got = _raises("7.3", fn, ValueError, scales, accuracy, diversity, 60.0)  # every point is below 60
    if not raised:
        raise ExerciseFailed("7.3", f"no scale reaches diversity 60, so this should raise ValueError, but you "
                                    f"returned {got!r}")
    _passed("7.3", "the most faithful scale that still keeps the variety you asked for.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "7.1": check_classifier_guided_eps,
    "7.2": check_cfg_combine,
    "7.3": check_pick_scale,
}
