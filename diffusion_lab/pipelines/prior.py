"""Sampling CLIP image embeddings from the priors: the first stage of DALL·E 2 (chapter 10).

The diffusion prior predicts x_0, while chapter 05's samplers and chapter 07's guidance read a noise
prediction. At one x_t the two say the same thing (chapter 09's ``notation.py``):

    eps = (x_t - alpha_t x_0) / sigma_t,    alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t)

so ``as_eps_model`` wraps the prior into ``model(xt, t, cond) -> eps_pred`` and chapter 05's DDIM loop
samples it unchanged, with classifier-free guidance around it as for any conditional denoiser. (eps is
affine in x_0 at fixed x_t, so guiding the eps predictions is the same as guiding the x_0 guesses.)
The samples come out in the normalised units; ``EmbeddingScale.denormalise`` turns them back into CLIP
units, and the result is L2-normalised, as CLIP's own embeddings are.

The prior is trained on T = 1000 steps and sampled with 64 of them by default, on the schedule its
config names; DDIM is deterministic (eta = 0), so the variety between samples comes from the starting
noise alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion_lab.guidance import ConditionalModel, check_scale, classifier_free_guidance
from diffusion_lab.models.prior import DiffusionPrior, check_embeddings
from diffusion_lab.models.regression_prior import RegressionPrior
from diffusion_lab.notation import x0_to_eps
from diffusion_lab.sampling import Callback, DDIMScheduler, sample
from diffusion_lab.tensors import eval_mode


def as_eps_model(prior: DiffusionPrior) -> ConditionalModel:
    """Wrap the x_0-predicting ``prior(xt, t, cond)`` into ``eps_model(xt, t, cond) -> eps_pred`` (B, D), on the
    prior's own schedule. t may be whole steps (int64) or, for chapter 09's solvers, fractional ones (float)."""
    def eps_model(xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return x0_to_eps(xt, prior(xt, t, cond), *prior.alpha_sigma(t))  # (B, D)

    return eps_model


def check_text_emb(text_emb: object, embed_dim: int) -> torch.Tensor:
    """``text_emb`` if it is (B, embed_dim) of unit vectors, CLIP's text embeddings; else a clear error."""
    check_embeddings(text_emb, "text_emb", embed_dim)
    norms = text_emb.detach().float().norm(dim=1).cpu()  # one read per call (float32: MPS has no float64)
    if not bool(((norms - 1).abs() < 1e-3).all()):
        raise ValueError(f"text_emb must be CLIP text embeddings, L2-normalised (norm 1), got norms from "
                         f"{float(norms.min()):.3g} to {float(norms.max()):.3g}; use clip.encode_text(ids), or "
                         f"torch.nn.functional.normalize(text_emb, dim=-1)")
    return text_emb


@torch.no_grad()
def sample_prior(prior: DiffusionPrior, text_emb: torch.Tensor, *, steps: int = 64,
                 guidance_scale: float = 1.0, eta: float = 0.0, generator: torch.Generator | None = None,
                 callback: Callback | None = None) -> torch.Tensor:
    """One x_0 per caption in the prior's normalised units, (B, D): DDIM over ``steps`` of the prior's T steps.

    prior: a trained ``DiffusionPrior`` (run in eval mode, restored after). text_emb: (B, D) CLIP text
    embeddings; repeat a row for several samples of one caption. guidance_scale: w >= 0 of classifier-free
    guidance, 1 = none.
    eta: DDIM's noise (0 deterministic, 1 DDPM-like). generator: the only source of randomness.
    callback: chapter 05's callback(i, t, xt, pred_x0).
    """
    w = check_scale(guidance_scale)
    D = prior.config.embed_dim
    device = prior.x_in.weight.device
    cond = check_text_emb(text_emb, D).to(device)
    scheduler = DDIMScheduler(prior.schedule.to(device), eta=eta, clip_sample=False)  # no [-1, 1] range to clip
    scheduler.set_timesteps(steps)
    model = classifier_free_guidance(as_eps_model(prior), cond, prior.null_condition(1), w)
    with eval_mode(prior):
        return sample(model, scheduler, (len(cond), D), generator=generator, device=device, callback=callback)


def sample_image_embeddings(prior: DiffusionPrior, text_emb: torch.Tensor, *, steps: int = 64,
                            guidance_scale: float = 1.0, eta: float = 0.0,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """CLIP image embeddings for the captions' text embeddings (B, D): ``sample_prior``'s samples back in
    CLIP units and L2-normalised, (B, D) on the prior's device. Arguments as for ``sample_prior``."""
    prior.embedding_scale.check_measured()  # before sampling, not after
    x0 = sample_prior(prior, text_emb, steps=steps, guidance_scale=guidance_scale, eta=eta, generator=generator)
    return F.normalize(prior.embedding_scale.denormalise(x0), dim=-1)


@torch.no_grad()
def predict_image_embeddings(prior: RegressionPrior, text_emb: torch.Tensor) -> torch.Tensor:
    """The regression prior's answer for text embeddings (B, D): CLIP units, L2-normalised, (B, D)."""
    cond = check_text_emb(text_emb, prior.config.embed_dim).to(prior.text_in.weight.device)
    with eval_mode(prior):
        return F.normalize(prior.embedding_scale.denormalise(prior(cond)), dim=-1)
