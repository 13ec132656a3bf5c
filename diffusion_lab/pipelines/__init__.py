"""Pipelines (chapters 05-11): from a checkpoint name to samples, one pipeline class per kind of system.

    base.py               DiffusionPipeline: shape, data range, conditions, scheduler, the loop
    unconditional.py      2-D points; images, optionally with classifier guidance
    class_conditional.py  class labels with classifier-free guidance
    text_conditional.py   prompts with classifier-free guidance and negative prompts
    latent.py             latent diffusion: sample latents, decode them with the autoencoder (chapter 08)
    flow.py               a flow-matching model: it predicts a velocity, sampled by Euler or Heun (chapter 09)
    unclip.py             UnCLIPPipeline: CLIP, prior, decoder and upsampler as one system, "unclip" (chapter 10)
    prior.py              sample_image_embeddings: DALL·E 2's prior, its x_0 read as eps by chapter 05's loop (chapter 10)
    super_resolution.py   upsample: a diffusion upsampler's 2x, with noise-conditioning augmentation (chapter 10)
    text_to_image.py      TinySDPipeline: a mini Stable Diffusion, "tiny_sd"; img2img, inpainting (chapter 11)
    imagine_prompt.py     parse_prompt: Midjourney-style "--no --seed --chaos --steps --cfg" (chapter 11)
    imagine.py            the /imagine loop: a Job of four, upscale, vary, reroll, remix, vary_region (chapter 11)
    samplers.py           sampler name -> a plan: chapter 05's DDPM/DDIM, chapter 09's ODE, SDE and flow solvers
    defaults.py           a checkpoint's own recipe, its JSON's "sampling" entry: sampler, steps, sigma_max, guide (ch. 09)
    registry.py           model kind -> pipeline, SYSTEMS of several checkpoints; load_pipeline(name)
    generate.py           generate(name, num, ...): the one-call API the CLI uses
"""

from diffusion_lab.pipelines.base import DiffusionPipeline
from diffusion_lab.pipelines.generate import generate
from diffusion_lab.pipelines.registry import PIPELINES, load_pipeline
from diffusion_lab.pipelines.samplers import SAMPLERS
from diffusion_lab.pipelines.text_to_image import TinySDPipeline

__all__ = ["PIPELINES", "SAMPLERS", "DiffusionPipeline", "TinySDPipeline", "generate", "load_pipeline"]
