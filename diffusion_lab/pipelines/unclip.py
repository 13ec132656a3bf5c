"""A mini DALL-E 2 ("unCLIP", Ramesh et al. 2022): caption -> CLIP text embedding -> prior -> CLIP image
embedding -> decoder -> 32x32 picture -> upsampler -> 64x64 picture (chapter 10).

    pipe = UnCLIPPipeline.from_pretrained("unclip")
    images = pipe(prompt="a small red circle in the top left", num_images_per_prompt=4,
                  num_inference_steps=50, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))

Each stage is a checkpoint of its own (``clip_scenes``, ``unclip_prior``, ``unclip_decoder``, ``upsampler``, and
the ``unclip_regression_prior`` baseline) and a method here, so a chapter can run them one at a time and swap
one out: ``encode_prompt``, ``prior_embeddings``, ``decode``, ``upscale``. The prior and the decoder record the
CLIP whose embeddings they learnt; loading refuses stages made with a different CLIP (its embedding space is
another one). The pipeline is called either as diffusers' is (above) or as every course pipeline is,
``pipe(num, prompt=..., seed=..., steps=..., guidance_scale=...)``, which is what ``generate("unclip", ...)``
and ``python -m diffusion_lab sample unclip --prompt ...`` use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffusion_lab.config import pick_device
from diffusion_lab.guidance import check_scale, classifier_free_guidance
from diffusion_lab.judges.clip_score import embed_captions, embed_images
from diffusion_lab.pipelines.base import DEFAULTS, not_accepted, one_per_sample
from diffusion_lab.pipelines.prior import predict_image_embeddings, sample_image_embeddings
from diffusion_lab.pipelines.samplers import plan_sampler
from diffusion_lab.pipelines.super_resolution import upsample
from diffusion_lab.pretrained import Pretrained, load_pretrained, read_manifest
from diffusion_lab.sampling import Callback
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.tensors import check_images, check_int, eval_mode

STAGES = {"clip": "clip_scenes", "prior": "unclip_prior", "regression_prior": "unclip_regression_prior",
          "decoder": "unclip_decoder", "upsampler": "upsampler"}
PRIORS = ("diffusion", "regression", "text")  # what turns e_text into e_image; "text" uses e_text itself
PRIOR_STEPS = 25  # DDIM steps of the prior (diffusers' unCLIP default)
UPSAMPLER_STEPS = 20
AUGMENTATION_LEVEL = 0.1  # s the low res is noised to before the upsampler reads it (trained on 0..0.3)


class UnCLIPPipeline:
    """The four stages of DALL-E 2 on 32x32 scenes, enlarged to 64x64. Build with ``from_pretrained``."""

    name = "unclip"
    default_sampler = "ddim"
    default_steps = 50

    def __init__(self, stages: dict[str, Pretrained]) -> None:
        """stages: the loaded checkpoints, keyed as ``STAGES``; their CLIP must be the one the others learnt from."""
        missing = set(STAGES) - set(stages)
        if missing:
            raise ValueError(f"an unCLIP pipeline needs the stages {sorted(STAGES)}; missing {sorted(missing)}")
        self.stages = stages
        self.clip, self.prior = stages["clip"].model, stages["prior"].model
        self.regression_prior, self.decoder = stages["regression_prior"].model, stages["decoder"].model
        self.upsampler = stages["upsampler"].model

    @classmethod
    def from_pretrained(cls, name: str = "unclip", *, root: str | Path | None = None,
                        device: torch.device | str | None = None) -> UnCLIPPipeline:
        """Load every stage from ``root`` (default data/checkpoints) onto ``device`` (default ``pick_device()``)."""
        if name != "unclip":
            raise ValueError(f"UnCLIPPipeline loads 'unclip' (its stages: {', '.join(STAGES.values())}), not {name!r}")
        device = pick_device(device)
        stages = {stage: load_pretrained(checkpoint, root=root, device=device) for stage, checkpoint in STAGES.items()}
        clip_digest = read_manifest(root)[STAGES["clip"]]["sha256"][f"{STAGES['clip']}.safetensors"]
        for stage in ("prior", "regression_prior", "decoder"):
            learnt = stages[stage].info.get("clip", {})
            if learnt.get("sha256") != clip_digest:
                raise ValueError(f"{STAGES[stage]} learnt from another CLIP than the {STAGES['clip']} checkpoint here "
                                 f"(retrained?): remake it with `python -m diffusion_lab train --preset "
                                 f"{STAGES[stage]} --publish`, or restore the CLIP it was made with")
        return cls(stages)

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    # ----- the stages, one method each ------------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Captions -> e_text (B, D), CLIP's unit vectors, on the pipeline's device."""
        return embed_captions(self.clip, list(prompts)).to(self.device)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Pictures (B, 3, H, W) in [-1, 1], H = 32 or a multiple (shrunk to 32 first) -> e_image (B, D)."""
        check_images(images, "images")
        size = self.clip.config.image_size
        if images.shape[-1] != size:
            images = F.interpolate(images.float(), size=(size, size), mode="area")  # (B, 3, 32, 32)
        return embed_images(self.clip, images).to(self.device)

    def prior_embeddings(self, text_emb: torch.Tensor, *, prior: str = "diffusion", steps: int = PRIOR_STEPS,
                         guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """e_text (B, D) -> e_image (B, D): sampled by the diffusion prior, guessed by the regression prior, or
        (``prior="text"``) e_text itself, the ablation without a prior."""
        if prior == "diffusion":
            return sample_image_embeddings(self.prior, text_emb, steps=steps, guidance_scale=guidance_scale,
                                           generator=generator)
        if prior == "regression":
            return predict_image_embeddings(self.regression_prior, text_emb)
        if prior == "text":
            return text_emb
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")

    def decode(self, image_emb: torch.Tensor, *, steps: int = 50, guidance_scale: float = 3.0, sampler: str = "ddim",
               eta: float = 0.0, generator: torch.Generator | None = None,
               callback: Callback | None = None) -> torch.Tensor:
        """e_image (B, D) -> pictures (B, 3, 32, 32) in [-1, 1], guided towards the embedding with scale w."""
        run = plan_sampler(sampler, self.stages["decoder"].schedule, steps, eta, clip_range=1.0)  # checked first
        cond = image_emb.to(self.device, torch.float32)
        model = classifier_free_guidance(self.decoder, cond, self.decoder.null_condition(1), check_scale(guidance_scale))
        c = self.decoder.config.unet
        x_T = randn((len(cond), c.in_channels, c.image_size, c.image_size), generator, torch.float32, self.device)
        with eval_mode(self.decoder):
            return run(model, x_T, generator=generator, callback=callback).clamp(-1, 1)

    def upscale(self, low_res: torch.Tensor, *, steps: int = UPSAMPLER_STEPS,
                augmentation_level: float = AUGMENTATION_LEVEL, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pictures (B, 3, h, w) -> (B, 3, 2h, 2w), by the diffusion upsampler (any size: it is convolutional)."""
        return upsample(self.upsampler, low_res.to(self.device), schedule=self.stages["upsampler"].schedule,
                        steps=steps, augmentation_level=augmentation_level, generator=generator)

    # ----- whole pictures --------------------------------------------------------------------------------------

    def generate_from_embeddings(self, image_emb: torch.Tensor, *, steps: int = 50, guidance_scale: float = 3.0,
                                 generator: torch.Generator | None = None, upscale: bool = True,
                                 callback: Callback | None = None) -> torch.Tensor:
        """e_image (B, D) -> 64x64 pictures (32x32 with ``upscale=False``): the decoder, then the upsampler."""
        low_res = self.decode(image_emb, steps=steps, guidance_scale=guidance_scale, generator=generator,
                              callback=callback)
        return self.upscale(low_res, generator=generator) if upscale else low_res

    def __call__(self, num: int | None = None, *, prompt: str | Sequence[str] | None = None,
                 num_images_per_prompt: int = 1, num_inference_steps: int | None = None, steps: int | None = None,
                 guidance_scale: float = 3.0, prior_guidance_scale: float = 1.0, prior: str = "diffusion",
                 generator: torch.Generator | None = None, seed: int = 0, sampler: str | None = None,
                 eta: float = 0.0, upscale: bool = True, callback: Callback | None = None, batch_size: int = 256,
                 **conditions: Any) -> torch.Tensor:
        """Pictures (N, 3, 64, 64) in [-1, 1] of ``prompt``: one text for all or one per picture.

        N is ``num`` (the course's way) or len(prompts) x ``num_images_per_prompt`` (diffusers' way).
        num_inference_steps (or steps): the decoder's DDIM steps (default 50); the prior takes ``PRIOR_STEPS`` and
        the upsampler ``UPSAMPLER_STEPS``. guidance_scale: the decoder's classifier-free guidance w;
        prior_guidance_scale: the prior's. prior: "diffusion", "regression" or "text" (``prior_embeddings``).
        generator, else seed: the only randomness, drawn in the order prior, decoder, upsampler, ``batch_size``
        pictures at a time. upscale=False stops at the decoder's 32x32.
        """
        for condition, value in conditions.items():  # the course's CLI passes every condition it knows
            if condition not in DEFAULTS:
                raise TypeError(f"unknown argument {condition!r} for the unclip pipeline")
            if value is not None and value != DEFAULTS[condition]:
                raise not_accepted(self.name, condition) if condition != "negative_prompt" else ValueError(
                    "unclip does not take a negative prompt (its prior has no text branch to steer away from)")
        if prompt is None:
            raise ValueError("unclip draws what a prompt says: give prompt='a small red circle in the top left'")
        used_sampler, used_steps = self.sampler_and_steps(sampler, steps if num_inference_steps is None
                                                          else num_inference_steps)
        if used_sampler != "ddim" or eta:
            plan_sampler(used_sampler, self.stages["decoder"].schedule, used_steps, eta)  # a clear error if unfit
        if num is None:  # diffusers' way: every prompt num_images_per_prompt times
            check_int(num_images_per_prompt, "num_images_per_prompt", low=1)
            given = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, Sequence) else []
            prompts = [p for p in given for _ in range(num_images_per_prompt)]
        else:  # the course's way: num pictures of one prompt, or one prompt per picture
            check_int(num, "num", low=1)
            prompts = one_per_sample(prompt, num, "prompt")
            prompts = prompts * num if len(prompts) == 1 else prompts
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompt must be a str or a non-empty list of str, got {prompt!r:.80}")
        num = len(prompts)
        generator = torch.Generator().manual_seed(seed) if generator is None else generator
        out = []
        for lo in range(0, num, batch_size):
            text_emb = self.encode_prompt(prompts[lo:lo + batch_size])  # (n, D)
            image_emb = self.prior_embeddings(text_emb, prior=prior, guidance_scale=prior_guidance_scale,
                                              generator=generator)
            out.append(self.generate_from_embeddings(image_emb, steps=used_steps, guidance_scale=guidance_scale,
                                                     generator=generator, upscale=upscale, callback=callback))
        return torch.cat(out)

    def sampler_and_steps(self, sampler: str | None = None, steps: int | None = None,
                          **conditions: Any) -> tuple[str, int]:
        """The decoder's sampler and steps for these arguments (None: DDIM, 50)."""
        return (self.default_sampler if sampler is None else sampler, self.default_steps if steps is None else steps)

    def cost(self, sampler: str | None = None, steps: int | None = None, **conditions: Any) -> str:
        """What one picture of a call with these arguments costs: the decoder's steps, between the prior's and the
        upsampler's (as ``DiffusionPipeline.cost``; the conditions do not change it)."""
        steps = self.sampler_and_steps(sampler, steps)[1]
        return (f"{steps} decoder evaluations per picture, after {PRIOR_STEPS} of the prior and before "
                f"{UPSAMPLER_STEPS} of the upsampler")

    def image_variations(self, image: torch.Tensor, n: int, *, steps: int = 50, guidance_scale: float = 3.0,
                         seed: int = 0, upscale: bool = True) -> torch.Tensor:
        """``n`` new pictures of one picture's CLIP embedding (3, H, W): what CLIP kept of it stays, the rest
        changes with the decoder's noise. (n, 3, 64, 64)."""
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError(f"image must be one picture (3, H, W), got {getattr(image, 'shape', type(image))}")
        image_emb = self.encode_image(image[None]).expand(n, -1)  # (n, D)
        return self.generate_from_embeddings(image_emb, steps=steps, guidance_scale=guidance_scale,
                                             generator=torch.Generator().manual_seed(seed), upscale=upscale)

    def text_diff(self, image: torch.Tensor, from_prompt: str, to_prompt: str, amounts: Sequence[float], *,
                  steps: int = 50, guidance_scale: float = 3.0, seed: int = 0, upscale: bool = True) -> torch.Tensor:
        """Edit a picture (3, H, W) by embedding arithmetic, DALL-E 2's "text diffs": move its e_image along
        the unit direction e_text(to) - e_text(from) by each of ``amounts`` (0: unchanged), renormalise, decode
        all with the same noise. (len(amounts), 3, 64, 64)."""
        image_emb = self.encode_image(image[None])  # (1, D)
        direction = F.normalize(self.encode_prompt([to_prompt]) - self.encode_prompt([from_prompt]), dim=-1)
        amounts = torch.as_tensor(list(amounts), dtype=torch.float32, device=self.device)[:, None]  # (K, 1)
        edited = F.normalize(image_emb + amounts * direction, dim=-1)  # (K, D)
        low_res = []
        for row in edited:  # the same seed for every amount, so only the embedding differs
            low_res.append(self.decode(row[None], steps=steps, guidance_scale=guidance_scale,
                                       generator=torch.Generator().manual_seed(seed)))
        low_res = torch.cat(low_res)
        return self.upscale(low_res, generator=torch.Generator().manual_seed(seed)) if upscale else low_res
