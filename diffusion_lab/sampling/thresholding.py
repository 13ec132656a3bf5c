"""Dynamic thresholding: pull an over-saturated guess of x_0 back into the data's range (chapter 11).

Strong classifier-free guidance pushes the model's guess of x_0 past anything in the training data:
pixels beyond [-1, 1], which static clipping flattens into blown-out colour. Imagen (Saharia et al. 2022,
sec. 2.3) instead takes, per sample, s = the p-th percentile of |pred_x0|; when s exceeds the data's
bound it clamps the guess to [-s, s] and divides by s, so a saturated sample is shrunk back as a whole
rather than cut off:

    s     = max(percentile_p |pred_x0|, r)         per sample, over all its values
    x0'   = clamp(pred_x0, -s, s) * r / s

r is the data's range. Imagen works on pixels, where r = 1 and this is its formula exactly. In LATENT
space (chapter 08's scaled latents: unit std, not bounded) there is no [-1, 1]: clamping to 1 would cut
the largest third of an ordinary latent's values. Here r is measured instead, as the latent scale s is:
the 99.9th percentile of |z| over the training latents (``measure_latent_range``; the very largest value
is one outlier's), recorded with the latent model. A guess that stays inside the training latents' range
is then untouched; one that guidance pushed further out is shrunk back by r / s.

``dynamic_thresholding`` wraps a model like guidance does: it turns the model's eps_pred into x0',
thresholds it, and returns the noise that x0' implies, so DDPM or DDIM (unclipped) step towards x0'
unchanged (as DDIM's ``use_clipped_model_output`` does for static clipping).
"""

from __future__ import annotations

import math

import torch

from diffusion_lab.sampling.loop import Model
from diffusion_lab.sampling.scheduler import alpha_bar_at, predict_x0
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims, check_float_tensor

RANGE_QUANTILE = 0.999  # the share of training latent values inside the measured range r


def check_percentile(percentile: object) -> float:
    """Imagen's p as a percentile from 50 to 100 (e.g. 99.5); a ratio such as 0.995 is a clear error."""
    if isinstance(percentile, bool) or not isinstance(percentile, int | float) or not math.isfinite(percentile):
        raise TypeError(f"dynamic_threshold must be a percentile such as 99.5, got {percentile!r}")
    if not 50 <= percentile <= 100:
        hint = f" (a ratio? give {percentile * 100:g})" if 0 < percentile <= 1 else ""
        raise ValueError(f"dynamic_threshold must be a percentile from 50 to 100 (Imagen uses 99.5), "
                         f"got {percentile}{hint}")
    return float(percentile)


def dynamic_threshold(x0: torch.Tensor, percentile: float, data_range: float = 1.0) -> torch.Tensor:
    """Imagen's dynamic thresholding of guesses x0 (B, ...) against the data's range r = ``data_range``:
    s = max(p-th percentile of |x0|, r) per sample, then clamp(x0, -s, s) * r / s. (B, ...)."""
    check_float_tensor(x0, "x0")
    p = check_percentile(percentile)
    if isinstance(data_range, bool) or not isinstance(data_range, int | float) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number (the data's largest |value|), got {data_range!r}")
    flat = x0.detach().flatten(1).abs().float()  # (B, N)
    s = torch.quantile(flat, p / 100, dim=1).clamp(min=data_range).to(x0.dtype)  # (B,)
    s = append_dims(s, x0.ndim)  # (B, 1, ...)
    return torch.maximum(torch.minimum(x0, s), -s) * (data_range / s)


def dynamic_thresholding(model: Model, schedule: NoiseSchedule, percentile: float, data_range: float = 1.0) -> Model:
    """Wrap ``model(xt, t) -> eps_pred`` so that its implied x_0 is dynamically thresholded.

    The wrapper returns eps' = (x_t - sqrt(abar_t) x0') / sqrt(1 - abar_t), the noise of the thresholded
    guess x0'; samples whose guess was not changed get the model's own eps_pred back, bit for bit. Sample
    with DDPM or DDIM *without* clipping (latents), or with clip_range >= data_range (pixels): a clip would
    only cut what thresholding already brought inside.
    """
    p = check_percentile(percentile)
    dynamic_threshold(torch.zeros(1, 1), p, data_range)  # checks data_range now, not at the first step

    def thresholded(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():  # chapter 09's samplers ask the model between whole steps
            raise ValueError("dynamic thresholding reads alpha_bar_t at whole steps t, but this sampler asks the "
                             "model between steps: use sampler='ddim' or 'ddpm' with it")
        eps_pred = model(xt, t)  # (B, ...)
        x0 = predict_x0(schedule, xt, eps_pred, t)
        x0_new = dynamic_threshold(x0, p, data_range)
        abar = alpha_bar_at(schedule, t, xt)  # (B, 1, ...)
        eps_new = (xt - abar.sqrt() * x0_new) / (1 - abar).sqrt()  # the noise that x0' implies
        changed = append_dims((x0_new != x0).flatten(1).any(dim=1), xt.ndim)  # (B, 1, ...)
        return torch.where(changed, eps_new, eps_pred)

    return thresholded


@torch.no_grad()
def measure_latent_range(z: torch.Tensor, quantile: float = RANGE_QUANTILE) -> float:
    """r for latent dynamic thresholding: the ``quantile`` of |z| over every value of the latents z (N, ...),
    the training set's scaled latents (``latent.encode``)."""
    check_float_tensor(z, "z")
    if not 0.5 <= quantile <= 1:
        raise ValueError(f"quantile must lie in [0.5, 1], got {quantile}")
    values = z.detach().abs().flatten().double().cpu()
    k = max(1, math.ceil(quantile * len(values)))  # kthvalue: torch.quantile refuses more than 2**24 values
    r = float(values.kthvalue(k).values)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"the latents' range came out as {r}: the latents are all zero or not finite")
    return r
