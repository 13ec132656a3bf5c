"""Guidance: a few lines around the model that trade diversity for fidelity to the condition (chapter 07).

Both kinds wrap a model into another ``model(xt, t) -> eps_pred`` callable, so the sampling loop of
``sampling/loop.py`` runs unchanged with DDPM or DDIM. The two wrappers share a signature:
``(model, cond, ..., scale)``, the condition to steer towards first, the scale last.

Classifier-free guidance (Ho & Salimans 2022), with c the condition, ∅ the empty condition and w the
guidance scale:

    eps = eps_theta(x_t, ∅) + w * (eps_theta(x_t, c) - eps_theta(x_t, ∅))

w = 0 ignores the condition, w = 1 is the plain conditional model, w > 1 pushes further along the
direction that c adds. It needs a model that also learned ∅, which is why training replaces the
condition by ∅ 10 % of the time (``TrainConfig.cond_drop_prob``). A negative prompt takes the place
of ∅, so the samples are pushed away from it as well as towards c. Both predictions come from one
forward pass over a doubled batch.

Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2): a classifier p_phi(y | x_t, t) trained on
noisy images gives the direction in which x_t becomes more like class y, and with scale s

    eps = eps_theta(x_t) - s * sqrt(1 - alpha_bar_t) * grad_{x_t} log p_phi(y | x_t, t)

which is the score of p(x_t) p(y | x_t)^s written as a noise prediction. It steers an unconditional
model, at the price of a classifier that must work at every noise level.

Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself", chapter 09) needs
no condition at all: a weaker model D_0 of the same data (smaller, or trained less) guides the good one D_1,

    eps = eps_0(x_t) + w * (eps_1(x_t) - eps_0(x_t))

Where the two agree, nothing changes; where the weak model's mistakes differ from the good one's, w > 1 moves
the samples further away from them. Unlike classifier-free guidance it sharpens without narrowing the
variety, and it works on an unconditional model. Any ∅-branch of a class-conditional model of the same data
can serve as the weak model (``unconditional_branch``): it learned the digits from a tenth of the examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from diffusion_lab.notation import t_to_sigma
from diffusion_lab.sampling import Model
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims, eval_mode

# model(xt, t, cond) -> eps_pred, with cond (B,) class indices, (B, L) token ids or (B, D) embeddings.
ConditionalModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_scale(value: float, name: str = "guidance_scale") -> float:
    """A guidance scale must be a finite number >= 0; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number such as 3.0, got {value!r}")
    if value < 0:
        hint = (" To steer away from something, give it as a negative prompt instead."
                if name == "guidance_scale" else "")
        if name == "autoguidance_scale":
            raise ValueError(f"{name} must be >= 0 (1 is the model alone, 1.5 steers away from its guide), got "
                             f"{value}: a negative scale pushes the samples towards the worse model")
        raise ValueError(f"{name} must be >= 0 (0 ignores the condition), got {value}: a negative scale "
                         f"pushes the samples away from what you asked for.{hint}")
    return float(value)


def cfg_combine(eps_null: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """eps_null + w * (eps_cond - eps_null): both (B, ...), the predictions without and with the condition."""
    if eps_null.shape != eps_cond.shape:
        raise ValueError(f"the two predictions must have the same shape, got {tuple(eps_null.shape)} "
                         f"and {tuple(eps_cond.shape)}")
    return eps_null + guidance_scale * (eps_cond - eps_null)


def _batch_of(cond: torch.Tensor, batch_size: int, name: str) -> torch.Tensor:
    """``cond`` as a batch of ``batch_size`` conditions: a batch of 1 is repeated, any other size must match."""
    if not isinstance(cond, torch.Tensor) or cond.ndim == 0:
        raise ValueError(f"{name} must be a tensor with one condition per sample (B,) or (B, L), got {cond!r}")
    if cond.shape[0] == 1 and batch_size != 1:
        return cond.expand(batch_size, *cond.shape[1:])
    if cond.shape[0] != batch_size:
        raise ValueError(f"{name} holds {cond.shape[0]} conditions but the batch has {batch_size} samples; "
                         f"give one condition per sample, or one for all")
    return cond


def classifier_free_guidance(model: ConditionalModel, cond: torch.Tensor, null_cond: torch.Tensor,
                             guidance_scale: float) -> Model:
    """Wrap ``model(xt, t, cond)`` into ``guided(xt, t)`` that applies classifier-free guidance.

    cond: (B, ...) the conditions (class labels (B,), token ids (B, L) or image embeddings (B, D), chapter 10);
    a batch of 1 serves all.
    null_cond: the same shape, ∅ (the null class, the empty prompt's ids, the zero embedding) or a negative prompt.
    guidance_scale: w >= 0. At w = 0 or w = 1 only one prediction is needed, and only one is made.
    """
    w = check_scale(guidance_scale)
    for name, c in (("cond", cond), ("null_cond", null_cond)):
        if not isinstance(c, torch.Tensor) or c.ndim == 0:
            raise ValueError(f"{name} must be a tensor with one condition per sample, got {c!r}")
    if cond.shape[1:] != null_cond.shape[1:]:
        raise ValueError(f"cond and null_cond must be conditions of the same kind: one is {tuple(cond.shape[1:])} "
                         f"per sample, the other {tuple(null_cond.shape[1:])}")

    def guided(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = xt.shape[0]
        c, null = _batch_of(cond, B, "cond"), _batch_of(null_cond, B, "null_cond")
        if w == 1.0:
            return model(xt, t, c)
        if w == 0.0:
            return model(xt, t, null)
        eps_null, eps_cond = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([null, c])).chunk(2)
        return cfg_combine(eps_null, eps_cond, w)  # (B, ...)

    return guided


def unconditional_branch(model: ConditionalModel, null_cond: torch.Tensor) -> Model:
    """A conditional ``model(xt, t, cond)`` read without its condition, as ``model(xt, t)``: null_cond (1, ...)
    its ∅ (the null class), repeated for every sample."""
    if not isinstance(null_cond, torch.Tensor) or null_cond.ndim == 0 or null_cond.shape[0] != 1:
        raise ValueError(f"null_cond must be one condition, shape (1,) or (1, L), got {null_cond!r}")

    def unconditional(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(xt, t, _batch_of(null_cond, xt.shape[0], "null_cond"))

    return unconditional


def check_interval(value: object, name: str = "autoguidance_interval") -> tuple[float, float]:
    """A noise-level interval (lo, hi) with 0 <= lo < hi (hi may be infinite), or a clear error."""
    ok = (isinstance(value, tuple | list) and len(value) == 2
          and all(not isinstance(v, bool) and isinstance(v, int | float) and not math.isnan(v) for v in value))
    if not ok or not 0 <= value[0] < value[1]:
        raise ValueError(f"{name} must be two noise levels (lo, hi) with 0 <= lo < hi, e.g. (1.0, 5.0), got {value!r}")
    return float(value[0]), float(value[1])


def autoguidance(model: Model, guide: Model, guidance_scale: float, *, schedule: NoiseSchedule | None = None,
                 sigma_interval: tuple[float, float] | None = None) -> Model:
    """Wrap ``model(xt, t)`` into ``guided(xt, t)`` steered away from the weaker ``guide(xt, t)``, a model of the
    same data on the same noise schedule: eps_guide + w * (eps_model - eps_guide), all (B, ...).

    guidance_scale: w >= 0; w = 1 is the model alone (one evaluation a step, not two), w = 0 the guide alone.
    sigma_interval: (lo, hi) guides only the steps whose noise level sigma (EDM's, ``notation.t_to_sigma`` on
    ``schedule``) lies in [lo, hi], and evaluates the model alone elsewhere: Kynkäänniemi et al. (2024) found
    guidance helps most at middle noise levels, while at high noise it narrows the variety and at low noise it
    does little. None: every step."""
    w = check_scale(guidance_scale, "autoguidance_scale")
    if (schedule is None) != (sigma_interval is None):
        raise ValueError("a sigma_interval needs the schedule that turns steps t into noise levels sigma: give both")
    lo, hi = (0.0, math.inf) if sigma_interval is None else check_interval(sigma_interval, "sigma_interval")

    def guided(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if w == 1.0:
            return model(xt, t)
        inside = None
        if schedule is not None:
            sigma = t_to_sigma(schedule, t.detach().cpu())
            inside = ((sigma >= lo) & (sigma <= hi)).to(xt.device)
            if not bool(inside.any()):
                return model(xt, t)
        eps_guide = guide(xt, t)
        if w == 0.0 and inside is None:
            return eps_guide
        eps = model(xt, t)
        mixed = cfg_combine(eps_guide, eps, w)  # the same mix as classifier-free guidance's
        return mixed if inside is None or bool(inside.all()) else torch.where(append_dims(inside, xt.ndim), mixed, eps)

    return guided


def classifier_log_prob_grad(classifier: nn.Module, xt: torch.Tensor, t: torch.Tensor,
                             cond: torch.Tensor) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t) for each sample: xt (B, C, H, W), t (B,), cond (B,) classes y -> (B, C, H, W).

    The classifier runs in eval mode (restored afterwards): in train mode, BatchNorm would normalise by
    the noisy batch and overwrite its running statistics, and dropout would make the gradient random.
    """
    with eval_mode(classifier), torch.enable_grad():  # sampling runs under no_grad; this gradient is the point
        x = xt.detach().float().requires_grad_(True)
        log_probs = classifier(x, t).float().log_softmax(dim=-1)  # (B, num_classes)
        chosen = log_probs[torch.arange(len(x), device=x.device), cond]  # (B,)
        (grad,) = torch.autograd.grad(chosen.sum(), x)  # samples are independent: the sum's gradient is each one's
    return grad.to(xt.dtype)


def classifier_guidance(model: Model, cond: torch.Tensor, classifier: nn.Module, schedule: NoiseSchedule,
                        scale: float) -> Model:
    """Wrap an unconditional ``model(xt, t)`` into ``guided(xt, t)`` steered towards the classes ``cond``.

    cond: (B,) int64 class indices, or (1,) for one class for all.
    classifier: a noise-aware p_phi(y | x_t, t), called as classifier(xt, t) -> logits (B, num_classes).
    scale: s >= 0 (0 is no guidance).
    """
    s = check_scale(scale, "scale")
    if not isinstance(cond, torch.Tensor) or cond.ndim != 1 or cond.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"cond must be a (B,) int64 tensor of class indices, got {cond!r}")
    alpha_bars = schedule.alpha_bars

    def guided(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_pred = model(xt, t)  # (B, C, H, W)
        if s == 0.0:
            return eps_pred
        if t.is_floating_point():  # chapter 09's samplers ask the model between whole steps
            raise ValueError("classifier guidance reads sqrt(1 - alpha_bar_t) at whole steps t, but this sampler asks "
                             "the model between steps: use sampler='ddpm' or 'ddim' (--sampler ddim) with it")
        y = _batch_of(cond, xt.shape[0], "cond").to(xt.device)
        grad = classifier_log_prob_grad(classifier, xt, t, y)  # (B, C, H, W)
        sigma = append_dims((1 - alpha_bars.to(xt.device)[t]).sqrt(), xt.ndim).to(eps_pred.dtype)  # (B, 1, 1, 1)
        return eps_pred - s * sigma * grad

    return guided
