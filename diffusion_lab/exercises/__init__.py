"""Automatic checks for the chapters' exercises (every chapter; how they work is explained in chapter 00).

Each exercise asks you to write a small function. Pass that function to its check:

    check_noising_step(noising_step)

The check calls your function on inputs it makes up, compares with the package's own answer and
prints a short confirmation, or raises ``ExerciseFailed`` saying what was wrong. The course's
tests show that every check rejects an unfinished stub and a typical wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffusion_lab.exercises import (
    clip,
    conditioning,
    flows,
    foundations,
    guidance,
    latent,
    sampling,
    scores,
    text_to_image,
    training,
    unet,
)
from diffusion_lab.exercises.clip import (  # chapter 10
    check_clip_loss,
    check_low_res_condition,
    check_prior_loss,
    check_text_diff,
)
from diffusion_lab.exercises.conditioning import (  # chapter 06
    check_cross_attention,
    check_masked_attention_weights,
    check_tokenize,
    check_word_map,
)
from diffusion_lab.exercises.core import ExerciseFailed
from diffusion_lab.exercises.flows import check_flow_interpolate, check_flow_target  # 09
from diffusion_lab.exercises.foundations import (  # chapters 00-02
    check_alpha_bars,
    check_cosine_alpha_bars,
    check_mse,
    check_noising_step,
    check_psnr,
    check_q_sample,
    check_scale_per_sample,
    check_t_for_snr,
    check_to_model_range,
    check_variance_after_step,
)
from diffusion_lab.exercises.guidance import (  # 07
    check_cfg_combine,
    check_classifier_guided_eps,
    check_pick_scale,
)
from diffusion_lab.exercises.latent import (  # 08
    check_kl_to_standard_normal,
    check_latent_scale,
    check_min_snr_weight,
    check_reparameterise,
    check_sdedit_start,
)
from diffusion_lab.exercises.sampling import check_ddim_step, check_ddim_timesteps, check_posterior_mean  # 05
from diffusion_lab.exercises.scores import check_heun_step, check_score_from_eps  # 09
from diffusion_lab.exercises.text_to_image import (  # 11
    check_dynamic_threshold,
    check_inpaint_blend,
    check_latent_mask,
)
from diffusion_lab.exercises.training import check_diffusion_loss, check_ema_update, check_train_step  # 04
from diffusion_lab.exercises.unet import (  # chapter 03
    check_conv_output_size,
    check_conv_parameters,
    check_res_block,
    check_timestep_embedding,
)

# one module per part of the course; each defines its own CHECKS, keyed by exercise number
CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {**foundations.CHECKS, **unet.CHECKS, **training.CHECKS, **sampling.CHECKS, **conditioning.CHECKS,
                                                          **guidance.CHECKS, **latent.CHECKS, **scores.CHECKS,
                                                          **flows.CHECKS, **clip.CHECKS, **text_to_image.CHECKS}

__all__ = [
    "CHECKS",
    "ExerciseFailed",
    "check_to_model_range",
    "check_scale_per_sample",
    "check_mse",
    "check_noising_step",
    "check_alpha_bars",
    "check_q_sample",
    "check_variance_after_step",
    "check_cosine_alpha_bars",
    "check_t_for_snr",
    "check_psnr",
    "check_conv_output_size",
    "check_timestep_embedding",
    "check_res_block",
    "check_conv_parameters",
    "check_diffusion_loss",
    "check_train_step",
    "check_ema_update",
    "check_posterior_mean",
    "check_ddim_step",
    "check_ddim_timesteps",
    "check_tokenize",
    "check_masked_attention_weights",
    "check_cross_attention",
    "check_word_map",
    "check_cfg_combine",
    "check_classifier_guided_eps",
    "check_pick_scale",
    "check_reparameterise",
    "check_kl_to_standard_normal",
    "check_latent_scale",
    "check_min_snr_weight",
    "check_sdedit_start",
    "check_score_from_eps",
    "check_heun_step",
    "check_flow_interpolate",
    "check_flow_target",
    "check_clip_loss",
    "check_prior_loss",
    "check_text_diff",
    "check_low_res_condition",
    "check_inpaint_blend",
    "check_latent_mask",
    "check_dynamic_threshold",
]
