"""A mini Stable Diffusion, ``tiny_sd``: prompt -> text encoder -> latent U-Net with cross-attention, guided ->
autoencoder's decoder -> 64x64 picture (chapter 11).

    pipe = TinySDPipeline.from_pretrained("tiny_sd")
    images = pipe(prompt="a red circle to the left of a blue square", negative_prompt="a green square",
                  num_inference_steps=25, guidance_scale=4.0, generator=torch.Generator().manual_seed(0))

Stable Diffusion (Rombach et al. 2022) in miniature: chapter 08's latent space (the 64x64 scenes autoencoder,
4x16x16 latents, its scale s measured), chapter 06's text encoder trained together with a U-Net that reads it
through cross-attention, classifier-free guidance (chapter 07: 10 % of captions dropped in training) and EMA
weights. The checkpoint (kind "latent_text_unet") names the autoencoder whose latents it learnt, so the
registry loads it like any model. It is called two ways that give the same pictures: as diffusers' pipeline
is (above), which runs ``text_to_image``, the whole of SD's sampling in five visible steps; or as every course
pipeline is, ``pipe(num, prompt=..., seed=..., steps=...)`` with any sampler, which ``generate("tiny_sd", ...)``
and ``python -m diffusion_lab sample tiny_sd --prompt ...`` use. ``img2img`` (SDEdit, chapter 08) and ``inpaint``
(RePaint) start from pictures; ``dynamic_threshold`` applies Imagen's thresholding in latent space
(``sampling/thresholding.py`` says what that means there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffusion_lab.config import pick_device
from diffusion_lab.guidance import check_scale, classifier_free_guidance
from diffusion_lab.latent import decode, encode
from diffusion_lab.models.text_unet import TextUNet
from diffusion_lab.pipelines.base import one_per_sample
from diffusion_lab.pipelines.latent import LatentImagePipeline
from diffusion_lab.pipelines.text_conditional import TextConditionalPipeline
from diffusion_lab.pretrained import CheckpointError, Pretrained, load_pretrained
from diffusion_lab.sampling import Callback, Model, sample, sdedit_start
from diffusion_lab.sampling.repaint import repaint
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.sampling.thresholding import check_percentile, dynamic_thresholding
from diffusion_lab.tensors import check_images, check_int

DEFAULT_STEPS = 25  # DDIM steps: the /imagine budget (a grid of four in under 3 s on 2 cores)
DEFAULT_GUIDANCE_SCALE = 4.0  # w when none is given; a starting point, chapter 11 sweeps it
# one generator for all pictures, or one per picture (diffusers' list); None: seed 0
Generators = torch.Generator | Sequence[torch.Generator] | None


class TinySDPipeline(LatentImagePipeline, TextConditionalPipeline):
    """A text-conditional denoiser of an autoencoder's scaled latents: ``TextConditionalPipeline``'s prompts,
    negative prompts and guidance over ``LatentImagePipeline``'s latents and decoder. Build with
    ``from_pretrained``; pictures come out (B, 3, 64, 64) in [-1, 1]."""

    default_steps = DEFAULT_STEPS

    def __init__(self, pre: Pretrained, root: str | Path | None = None) -> None:
        if not isinstance(pre.model, TextUNet):
            raise ValueError(f"{pre.name} is a {pre.info['kind']}, not a text-to-image model of latents: "
                             f"TinySDPipeline loads a latent text U-Net such as tiny_sd")
        super().__init__(pre, root)  # loads the autoencoder it names and checks its latent scale

    @classmethod
    def from_pretrained(cls, name: str = "tiny_sd", *, root: str | Path | None = None,
                        device: torch.device | str | None = None) -> TinySDPipeline:
        """Load checkpoint ``name`` and its autoencoder from ``root`` (default data/checkpoints) onto ``device``
        (default ``pick_device()``)."""
        return cls(load_pretrained(name, root=root, device=pick_device(device)), root)

    # ----- diffusers' call: the whole of Stable Diffusion's sampling, in five steps --------------------------

    @torch.no_grad()
    def text_to_image(self, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None, *,
                      steps: int = DEFAULT_STEPS, guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
                      generator: Generators = None, dynamic_threshold: float | None = None,
                      callback: Callback | None = None) -> torch.Tensor:
        """One picture (B, 3, 64, 64) in [-1, 1] per prompt, guided away from its negative prompt (or from "")."""
        # 1. tokenize: each prompt -> token ids (B, L), <start>, its words, <pad>s; the negative prompts likewise
        cond = self.model.encode_prompts(list(prompts))  # (B, L)
        null_cond = self.negative_condition(negative_prompts, len(cond), guidance_scale)  # (B or 1, L)
        # 2. encode and guide: the text encoder turns the ids into one vector per token inside each model call
        #    (TextUNet.context), made twice per step by classifier-free guidance, with cond and with null_cond
        model = self.guide(cond, null_cond, guidance_scale, dynamic_threshold)
        # 3. latent noise z_T ~ N(0, I), (B, 4, 16, 16): a 64x64 picture is drawn as 16x16x4 latents
        z = self.initial_noise(len(cond), generator)
        # 4. guided DDIM steps from z_T to z_0; latents are not bounded, so the guess of z_0 is never clipped
        scheduler = self.make_scheduler("ddim", steps)
        for i, t in enumerate(scheduler.timesteps.tolist()):
            t_batch = torch.full((len(z),), t, dtype=torch.int64, device=z.device)  # (B,)
            out = scheduler.step(model(z, t_batch), t, z)  # DDIM eq. 12
            z = out.prev_sample
            if callback is not None:
                callback(i, t, z, out.pred_x0)
        # 5. decode: x = D(z / s), latents back to pictures
        return decode(self.autoencoder, z)  # (B, 3, 64, 64)

    def guide(self, cond: torch.Tensor, null_cond: torch.Tensor, guidance_scale: float,
              dynamic_threshold: float | None = None) -> Model:
        """``model(z, t) -> eps``: classifier-free guidance towards ``cond``, away from ``null_cond`` (chapter 07),
        then, given a percentile, Imagen's dynamic thresholding of the guess of z_0 against the latents' range."""
        model = classifier_free_guidance(self.model, cond, null_cond, guidance_scale)
        if dynamic_threshold is None:
            return model
        return dynamic_thresholding(model, self.schedule, dynamic_threshold, self.latent_range())

    def negative_condition(self, negative_prompts: str | Sequence[str] | None, num: int,
                           guidance_scale: float) -> torch.Tensor:
        """What guidance steers away from: the negative prompts' ids (num, L), or the empty prompt's (1, L), ∅."""
        if negative_prompts is None:
            return self.model.null_condition(1)
        if check_scale(guidance_scale) == 1.0:
            raise ValueError("a negative prompt only acts through guidance: set guidance_scale above 1 (e.g. 4)")
        return self.model.encode_prompts(_expand(negative_prompts, num, "negative_prompt"))

    def guide_prompts(self, prompt: str | Sequence[str], negative_prompt: str | Sequence[str] | None, num: int,
                      guidance_scale: float, dynamic_threshold: float | None = None) -> Model:
        """``guide`` for ``num`` pictures from texts: one prompt (and negative prompt) for all, or one each."""
        cond = self.model.encode_prompts(_expand(prompt, num, "prompt"))  # (num, L)
        null_cond = self.negative_condition(negative_prompt, num, guidance_scale)
        return self.guide(cond, null_cond, guidance_scale, dynamic_threshold)

    def initial_noise(self, num: int, generator: Generators = None) -> torch.Tensor:
        """z ~ N(0, I), (num, 4, 16, 16), drawn on the CPU: from one generator for all, or from each picture's own
        (so a picture of a batch can be redrawn alone)."""
        shape = self.sample_shape()
        if generator is None or isinstance(generator, torch.Generator):
            return randn((num, *shape), generator, torch.float32, self.device)
        generators = list(generator)
        if len(generators) != num or not all(isinstance(g, torch.Generator) for g in generators):
            raise ValueError(f"give one torch.Generator for all {num} pictures or a list of one per picture, "
                             f"got {len(generators)} items")
        return torch.cat([randn((1, *shape), g, torch.float32, self.device) for g in generators])

    def latent_range(self) -> float:
        """r, the range of the training latents (``thresholding.measure_latent_range``), recorded with the model."""
        found = self.pre.info["latent"].get("latent_range")
        if not isinstance(found, int | float) or not found > 0:
            raise CheckpointError(f"{self.name}.json does not record its latents' range ('latent': {{'latent_range': "
                                  f"...}}), which dynamic thresholding in latent space needs: remake it with its "
                                  f"command, or sample without dynamic_threshold")
        return float(found)

    def __call__(self, num: int | None = None, *, prompt: str | Sequence[str] | None = None,
                 negative_prompt: str | Sequence[str] | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, generator: Generators = None, num_images_per_prompt: int = 1,
                 dynamic_threshold: float | None = None, callback: Callback | None = None,
                 steps: int | None = None, seed: int | None = None, **course: Any) -> torch.Tensor:
        """Pictures (N, 3, 64, 64) in [-1, 1] of ``prompt`` (one text for all, or one per picture).

        diffusers' way (``num`` None): N = len(prompts) x ``num_images_per_prompt``, sampled by ``text_to_image``
        (DDIM, ``num_inference_steps`` steps, default 25) from ``generator`` (one, or one per picture; default
        seed 0). The course's way: ``pipe(num, prompt=..., seed=..., steps=..., sampler=..., eta=...,
        batch_size=...)``, as ``DiffusionPipeline.__call__``. guidance_scale: w (default 4.0); dynamic_threshold:
        Imagen's percentile p (e.g. 99.5) or None. The same arguments give the same pictures either way.
        """
        if num_inference_steps is not None and steps is not None:
            raise TypeError("give num_inference_steps (diffusers' name) or steps, not both")
        steps = steps if num_inference_steps is None else num_inference_steps
        w = DEFAULT_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
        if num is not None:  # the course's way: any sampler, in batches, from a seed
            if generator is not None or num_images_per_prompt != 1:
                raise TypeError("pipe(num, ...) is the course's call: it takes seed=, not generator= or "
                                "num_images_per_prompt= (those are for pipe(prompt=..., ...))")
            return super().__call__(num, prompt=prompt, negative_prompt=negative_prompt, guidance_scale=w,
                                    steps=steps, seed=0 if seed is None else seed, callback=callback,
                                    dynamic_threshold=dynamic_threshold, **course)
        if course:
            raise TypeError(f"{', '.join(sorted(course))}: the course's call, pipe(num, ...), takes these; "
                            f"pipe(prompt=...) samples by DDIM with num_inference_steps and generator")
        if prompt is None:
            raise ValueError(f"{self.name} draws what a prompt says: give prompt='a red circle to the left of a "
                             f"blue square'")
        check_int(num_images_per_prompt, "num_images_per_prompt", low=1)
        given = _as_list(prompt, "prompt")
        prompts = [p for p in given for _ in range(num_images_per_prompt)]
        negatives = None if negative_prompt is None else [  # one for all prompts, or one per prompt
            p for p in _expand(negative_prompt, len(given), "negative_prompt") for _ in range(num_images_per_prompt)]
        if generator is not None and seed is not None:
            raise TypeError("give generator= or seed=, not both")
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else check_int(seed, "seed", low=0))
        return self.text_to_image(prompts, negatives, steps=self.default_steps if steps is None else steps,
                                  guidance_scale=w, generator=generator, dynamic_threshold=dynamic_threshold,
                                  callback=callback)

    # ----- the course's call: chapter 07's guided model, thresholded on request ------------------------------

    def check_conditions(self, conditions: dict[str, Any]) -> dict[str, Any]:
        """``DiffusionPipeline.check_conditions``, plus the percentile of ``dynamic_threshold`` when given."""
        conditions = dict(conditions)
        threshold = conditions.pop("dynamic_threshold", None)
        given = super().check_conditions(conditions)
        return given if threshold is None else {**given, "dynamic_threshold": check_percentile(threshold)}

    def guided_model(self, num: int, *, dynamic_threshold: float | None = None, **text: Any) -> Model:
        """The course's guided model (``TextConditionalPipeline``), dynamically thresholded on request."""
        model = super().guided_model(num, **text)  # TextConditionalPipeline's: prompts, negative prompts, CFG
        if dynamic_threshold is None:
            return model
        return dynamic_thresholding(model, self.schedule, dynamic_threshold, self.latent_range())

    # ----- from pictures: image-to-image and inpainting -----------------------------------------------------

    def encode_images(self, image: torch.Tensor) -> torch.Tensor:
        """Pictures (B, 3, 64, 64) or one (3, 64, 64) in [-1, 1] -> scaled latents z = s E(x), (B, 4, 16, 16)."""
        image = check_images(image[None] if isinstance(image, torch.Tensor) and image.ndim == 3 else image, "image")
        size = self.autoencoder.config.image_size
        if tuple(image.shape[1:]) != (self.autoencoder.config.in_channels, size, size):
            raise ValueError(f"image must be pictures ({self.autoencoder.config.in_channels}, {size}, {size}), the "
                             f"autoencoder's size, got {tuple(image.shape[1:])}")
        return encode(self.autoencoder, image.to(self.device))

    @torch.no_grad()
    def img2img(self, image: torch.Tensor, prompt: str | Sequence[str], strength: float = 0.6, *,
                negative_prompt: str | Sequence[str] | None = None, num_inference_steps: int = DEFAULT_STEPS,
                guidance_scale: float = DEFAULT_GUIDANCE_SCALE, generator: Generators = None,
                dynamic_threshold: float | None = None, callback: Callback | None = None) -> torch.Tensor:
        """SDEdit in latent space (chapter 08): pictures (B, 3, 64, 64) -> new ones (B, 3, 64, 64) that keep what
        ``strength`` leaves of them: noise z = s E(x) to the step ``sdedit_start`` picks, then run the rest.

        strength 0 returns the reconstruction D(E(x)); 1 ignores the picture: the first step of the grid starts
        from pure noise, exactly as ``text_to_image`` with the same generator does (noising z to that step,
        960 of 1000 at 25 steps, would keep 6 % of it)."""
        z0 = self.encode_images(image)  # (B, 4, 16, 16)
        model = self.guide_prompts(prompt, negative_prompt, len(z0), guidance_scale, dynamic_threshold)
        scheduler = self.make_scheduler("ddim", num_inference_steps)
        start = sdedit_start(num_inference_steps, strength)
        if start == num_inference_steps:  # strength 0: no step to run
            return decode(self.autoencoder, z0)
        eps = self.initial_noise(len(z0), generator)
        t = torch.full((len(z0),), int(scheduler.timesteps[start]), dtype=torch.int64, device=z0.device)
        z = eps if start == 0 else scheduler.add_noise(z0, eps, t)  # (B, 4, 16, 16) at the start step
        z = sample(model, scheduler, z.shape, x_T=z, start=start, callback=callback)
        return decode(self.autoencoder, z)

    def latent_mask(self, mask: torch.Tensor, num: int) -> torch.Tensor:
        """A pixel mask (H, W), (1, H, W) or (B, 1, H, W), True (or 1) where to redraw -> the latents' (B or 1, 1,
        h, w) of 0s and 1s. A latent cell is redrawn when any pixel of its f x f block is (max-pooling, f = 4):
        every pixel asked for may change, and the cells kept lie wholly outside the mask."""
        size = self.autoencoder.config.image_size
        if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3, 4) or tuple(mask.shape[-2:]) != (size, size):
            raise ValueError(f"mask must be a tensor ({size}, {size}) or (B, 1, {size}, {size}), True where to "
                             f"redraw, got {getattr(mask, 'shape', type(mask).__name__)}")
        mask = mask.reshape(-1, 1, size, size).float()  # (B or 1, 1, H, W)
        if len(mask) not in (1, num) or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must hold one mask for all {num} pictures or one each, of True/False (or 1/0)")
        f = size // self.sample_shape()[-1]
        return F.max_pool2d(mask, f).to(self.device)  # (B or 1, 1, h, w)

    @torch.no_grad()
    def inpaint(self, image: torch.Tensor, mask: torch.Tensor, prompt: str | Sequence[str], *,
                negative_prompt: str | Sequence[str] | None = None, num_inference_steps: int = DEFAULT_STEPS,
                guidance_scale: float = DEFAULT_GUIDANCE_SCALE, generator: Generators = None,
                dynamic_threshold: float | None = None, callback: Callback | None = None) -> torch.Tensor:
        """Redraw pictures (B, 3, 64, 64) where ``mask`` is True, to fit ``prompt``; keep the rest (RePaint in
        latent space, ``sampling/repaint.py``). The kept latent cells (``latent_mask``) end as the original's
        latents exactly, so there the result is the autoencoder's reconstruction (its decoder blends a few pixels
        across the border). Random numbers, in order: z_T, then each step's noise for the kept region."""
        z0 = self.encode_images(image)  # (B, 4, 16, 16)
        model = self.guide_prompts(prompt, negative_prompt, len(z0), guidance_scale, dynamic_threshold)
        latent_mask = self.latent_mask(mask, len(z0))  # (B or 1, 1, 16, 16), 1 = redraw
        scheduler = self.make_scheduler("ddim", num_inference_steps)
        z_T = self.initial_noise(len(z0), generator)
        z = repaint(model, scheduler, z0, latent_mask, z_T, lambda shape: self.initial_noise(shape[0], generator),
                    callback=callback)
        return decode(self.autoencoder, z)


def _as_list(values: str | Sequence[str], name: str) -> list[str]:
    """A prompt or a non-empty list of prompts, as a list of str."""
    items = [values] if isinstance(values, str) else list(values) if isinstance(values, Sequence) else []
    if not items or not all(isinstance(p, str) for p in items):
        raise TypeError(f"{name} must be a str or a non-empty list of str, got {values!r:.80}")
    return items


def _expand(values: str | Sequence[str], num: int, name: str) -> list[str]:
    """One text for all ``num`` pictures or one per picture, as a list of ``num``."""
    items = one_per_sample(_as_list(values, name), num, name)
    return items * num if len(items) == 1 else items
