"""A training recipe, ``Preset``: model, data, schedule and settings under one name (chapters 04-10).

``presets.py`` lists the course's recipes; ``training_data.py`` turns one into data and an objective.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from diffusion_lab.training import TrainConfig


@dataclass(frozen=True)
class Preset:
    """A recipe. ``kind`` is a model kind of ``pretrained.model_kinds()``; ``data`` is "mnist" (the bundled
    20,000 training digits), "mnist_full" (all 60,000, downloaded once and checked), "shapes"
    (the training split of the captioned shapes, chapter 06), "shapes_all" (every combination),
    "scene_pairs_all" (two-shape scenes of every pair with their canonical readings, for the "scene_scorer" of
    chapters 10-11) or a 2-D toy's name.

    Chapter 08: ``kl_weight`` weighs an autoencoder's KL term; a latent model names the ``autoencoder``
    checkpoint whose scaled latents of ``data`` it learns (encoded once, before training). ``float16``
    stores the published weights in half precision. ``snr_gamma`` weighs a noise-predicting model's loss with
    Min-SNR-gamma (``training.diffusion.min_snr_weight``; None: DDPM's plain average).

    Chapter 09: a "flow_unet" learns flow matching's velocity (``FlowMatchingObjective``) instead of the noise,
    and has no noise schedule (``schedule`` and ``T`` are not used).

    ``sampling`` is written into the checkpoint's JSON as the way its pipeline samples when a call names no
    sampler (``pipelines.defaults``: sampler and steps, optionally sigma_max and an autoguidance guide and
    guide_scale): the one a bench measured best for that model (None: the pipeline's own, DDIM or a flow's
    Euler, 50 steps).

    ``init`` names a shipped checkpoint of the same kind and config whose weights training starts from (and its
    EMA copy with them), instead of fresh ones: fine-tuning. The checkpoint's SHA-256 is recorded beside the new
    weights, so the run says exactly what it continued.

    Chapter 10: a "clip" trains on "scenes" (the training split of one- and two-shape scenes, ``data/scenes.py``)
    or "scenes_tiny" (a few hundred of them, for tests) with the contrastive objective. An "upsampler" learns 2x
    super-resolution on crops (the U-Net's ``image_size``) of "scenes_sr" (64x64 scene pictures at two scales,
    ``data.scenes.multiscale_pictures``) or "scenes64_tiny" (256 training scenes at 64x64, pictures only), its low
    res noised up to ``UPSAMPLER_MAX_AUG_LEVEL``. The later stages of DALL-E 2 learn from a CLIP: they name the
    ``clip`` checkpoint whose embeddings of the scenes they learn (computed once, before training). With a clip,
    "scenes" gives the pictures with their image embeddings as conditions (the decoder), and "scene_embeddings"
    the image embeddings with the text embeddings of their captions as conditions (the priors).

    Chapter 11: an "autoencoder" on "scenes" learns the training scenes' pictures at its ``image_size``; a
    "latent_text_unet" names the ``autoencoder`` whose scaled latents of "scenes" (or "scenes_tiny") it learns,
    with their captions' token ids as conditions (encoded once, before training). Like Stable Diffusion, it may
    borrow a pretrained text encoder instead of learning its own: ``text_encoder`` names a checkpoint (a CLIP of
    chapter 10) whose text encoder is copied in and frozen; it must have the model's text config."""

    name: str
    kind: str
    model_config: Any
    train: TrainConfig
    data: str
    schedule: str = "cosine"
    T: int = 1000
    conditional: bool = False
    description: str = ""
    kl_weight: float = 0.0
    autoencoder: str | None = None
    float16: bool = False
    snr_gamma: float | None = None
    clip: str | None = None
    text_encoder: str | None = None
    sampling: dict[str, Any] | None = None
    init: str | None = None

    def with_steps(self, steps: int) -> Preset:
        return dataclasses.replace(self, train=dataclasses.replace(self.train, steps=steps))
