"""Named training recipes: what `python -m diffusion_lab train --preset NAME` trains (chapters 04-09).

Each preset fixes the model, the data, the noise schedule, the objective and the training settings,
so that a shipped checkpoint can be remade by anyone with one command. ``tiny`` exists for tests.

The judges train with AdamW under the one-cycle schedule and no EMA or gradient clipping, the
denoisers with a warm-up, EMA and clipping: these are the recipes the shipped checkpoints were made
with, and ``fit`` reproduces them exactly. The noise-aware classifier keeps a weight decay of 0.01
(the other judges use none) for the same reason: its shipped weights were trained so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import (
    AttributeObjective,
    AutoencoderObjective,
    ClassifierObjective,
    ContrastiveObjective,
    DiffusionObjective,
    FlowMatchingObjective,
    NoisyClassifierObjective,
    Objective,
    SuperResolutionObjective,
    TrainConfig,
)


@dataclass(frozen=True)
class Preset:
    """A recipe. ``kind`` is a model kind of ``pretrained.model_kinds()``; ``data`` is "mnist", "shapes"
    (the training split of the captioned shapes, chapter 06), "shapes_all" (every combination) or a
    2-D toy's name.

    Chapter 08: ``kl_weight`` weighs an autoencoder's KL term; a latent model names the ``autoencoder``
    checkpoint whose scaled latents of ``data`` it learns (encoded once, before training). ``float16``
    stores the published weights in half precision.

    Chapter 09: a "flow_unet" learns flow matching's velocity (``FlowMatchingObjective``) instead of the noise,
    and has no noise schedule (``schedule`` and ``T`` are not used).

    Chapter 10: a "clip" trains on "scenes" (the training split of one- and two-shape scenes, ``data/scenes.py``)
    or "scenes_tiny" (a few hundred of them, for tests) with the contrastive objective. An "upsampler" learns 2x
    super-resolution on crops (the U-Net's ``image_size``) of "scenes64_tiny" (256 training scenes at 64x64,
    pictures only), its low res noised up to ``UPSAMPLER_MAX_AUG_LEVEL``."""

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

    def with_steps(self, steps: int) -> Preset:
        return dataclasses.replace(self, train=dataclasses.replace(self.train, steps=steps))


def _presets() -> dict[str, Preset]:
    from diffusion_lab.data.scenes import scene_vocabulary
    from diffusion_lab.data.shapes import caption_vocabulary
    from diffusion_lab.judges.attribute_scorer import AttributeScorerConfig
    from diffusion_lab.judges.mnist_classifier import ClassifierConfig
    from diffusion_lab.models.autoencoder import AutoencoderConfig
    from diffusion_lab.models.clip import CLIPConfig
    from diffusion_lab.models.mlp import MLPConfig
    from diffusion_lab.models.noisy_classifier import NoisyClassifierConfig
    from diffusion_lab.models.text_unet import TextUNetConfig
    from diffusion_lab.models.unet import UNetConfig
    from diffusion_lab.models.upsampler import UpsamplerConfig

    def judge(steps: int, lr: float, weight_decay: float = 0.0) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=128, lr=lr, lr_schedule="one_cycle", weight_decay=weight_decay,
                           ema_decay=0.0, grad_clip=None)

    def first_stage(steps: int, batch_size: int) -> TrainConfig:
        """The autoencoders' recipe: no EMA, a linear cooldown over the last quarter of the steps."""
        return TrainConfig(steps=steps, batch_size=batch_size, lr=1e-3, warmup_steps=100, cooldown_steps=steps // 4,
                           ema_decay=0.0, checkpoint_every=250)

    # the unconditional MNIST U-Net's budget, shared by the noise predictor and the flow (chapter 09 compares them)
    mnist_train = TrainConfig(steps=20_000, batch_size=128, lr=5e-4, cooldown_steps=2500, checkpoint_every=250,
                              mixed_precision=True)

    return {p.name: p for p in [
        Preset("toy2d", "mlp", MLPConfig(), TrainConfig(steps=3000, batch_size=512, lr=1e-3, warmup_steps=100,
                                                        ema_decay=0.995, checkpoint_every=500),
               data="swiss_roll", description="the 2-D swiss-roll denoiser of chapter 04"),
        Preset("mnist", "unet", UNetConfig.mnist(), mnist_train, data="mnist", description="unconditional MNIST digits"),
        Preset("mnist_flow", "flow_unet", UNetConfig.mnist(), mnist_train, data="mnist", float16=True,
               description="flow matching on MNIST: the mnist preset's U-Net, data and budget, predicting a velocity "
                           "(chapter 09)"),
        Preset("mnist_cond", "unet", UNetConfig.mnist_conditional(),
               TrainConfig(steps=6500, batch_size=128, lr=5e-4, cooldown_steps=1500, cond_drop_prob=0.1,
                           checkpoint_every=250, mixed_precision=True),
               data="mnist", conditional=True,
               description="class-conditional MNIST, 10 % of labels dropped to the null class (for CFG)"),
        Preset("mnist_classifier", "classifier", ClassifierConfig(), judge(1500, 2e-3), data="mnist",
               description="the MNIST judge used by judges/metrics.py"),
        Preset("mnist_noisy_classifier", "noisy_classifier", NoisyClassifierConfig(), judge(2000, 1e-3, 0.01),
               data="mnist", description="p(y | x_t, t) on noised MNIST, for classifier guidance (chapter 07)"),
        Preset("shapes_text", "text_unet", TextUNetConfig.shapes(caption_vocabulary()),
               TrainConfig(steps=SHAPES_TEXT_STEPS, batch_size=64, lr=5e-4, cond_drop_prob=0.1, checkpoint_every=250,
                           mixed_precision=True),
               data="shapes", conditional=True,
               description="text-to-image on 32x32 shapes; 10 % of captions dropped to the empty prompt (chapter 06)"),
        Preset("shapes_scorer", "attribute_scorer", AttributeScorerConfig(), judge(SHAPES_SCORER_STEPS, 2e-3),
               data="shapes_all",
               description="reads shape, colour, size and position back from a picture (chapters 06-07)"),
        Preset("mnist_autoencoder", "autoencoder", AutoencoderConfig.mnist(),
               first_stage(MNIST_AUTOENCODER_STEPS, batch_size=64),
               data="mnist", kl_weight=KL_WEIGHT, float16=True,
               description="digits -> 4x8x8 latents and back, the first stage of latent diffusion (chapter 08)"),
        Preset("mnist_latent", "latent_unet", dataclasses.replace(UNetConfig.mnist(), in_channels=4, out_channels=4,
                                                                  image_size=8),
               TrainConfig(steps=MNIST_LATENT_STEPS, batch_size=128, lr=5e-4, cooldown_steps=3000,
                           checkpoint_every=250),  # float32: at 8 x 8, bf16 autocast is slower on a CPU
               data="mnist", autoencoder="mnist_autoencoder", float16=True,
               description="unconditional MNIST in mnist_autoencoder's latent space, the mnist U-Net's widths"),
        Preset("shapes64_autoencoder", "autoencoder", AutoencoderConfig.shapes64(),
               first_stage(SHAPES64_AUTOENCODER_STEPS, batch_size=32),
               data="shapes_all", kl_weight=KL_WEIGHT, float16=True,
               description="64x64 shapes -> 4x16x16 latents and back (chapters 08 and 11)"),
        Preset("tiny_autoencoder", "autoencoder", AutoencoderConfig.tiny(),
               TrainConfig(steps=20, batch_size=16, checkpoint_every=10, log_every=5, ema_decay=0.0),
               data="mnist", kl_weight=KL_WEIGHT, description="a few seconds of training, for tests"),
        Preset("tiny", "unet", UNetConfig.tiny(), TrainConfig(steps=20, batch_size=16, checkpoint_every=10,
                                                              log_every=5), data="mnist",
               description="a few seconds of training, for tests"),
        Preset("clip_scenes", "clip", CLIPConfig.scenes(scene_vocabulary()),
               # weight decay: torch's default 0.01, small because fit decays every parameter, the temperature too
               TrainConfig(steps=CLIP_SCENES_STEPS, batch_size=512, lr=1e-3, warmup_steps=100,
                           cooldown_steps=CLIP_SCENES_STEPS // 4, weight_decay=0.01, ema_decay=0.0,
                           checkpoint_every=100, log_every=10, mixed_precision=True),
               data="scenes", description="a small CLIP for 32x32 scenes of one or two shapes: contrastive, "
                                          "same-caption positives (chapter 10)"),
        Preset("tiny_clip", "clip", CLIPConfig.tiny(scene_vocabulary()),
               TrainConfig(steps=20, batch_size=32, lr=1e-3, warmup_steps=5, ema_decay=0.0, checkpoint_every=10,
                           log_every=5),
               data="scenes_tiny", description="a few seconds of contrastive training, for tests"),
        Preset("tiny_flow", "flow_unet", UNetConfig.tiny(), TrainConfig(steps=20, batch_size=16, checkpoint_every=10,
                                                                        log_every=5), data="mnist", float16=True,
               description="a few seconds of flow matching, for tests"),
        Preset("tiny_upsampler", "upsampler", UpsamplerConfig.tiny(),
               TrainConfig(steps=20, batch_size=16, checkpoint_every=10, log_every=5), data="scenes64_tiny",
               description="a few seconds of 2x super-resolution on 16x16 crops, for tests (chapter 10)"),
    ]}


SHAPES_TEXT_STEPS = 3000
MNIST_AUTOENCODER_STEPS = 3000
MNIST_LATENT_STEPS = 54_000
SHAPES64_AUTOENCODER_STEPS = 3000
KL_WEIGHT = 1e-2  # chapter 08: compact (KL per value 1.4 against 4.3 at 1e-4), robust, not blurrier: bench/results/autoencoder_kl.md
SHAPES_SCORER_STEPS = 600
SHAPES_TRAIN_IMAGES = 20_000  # about 90 pictures of each of the 220 training combinations
CLIP_SCENES_STEPS = 2000  # batch 512 in bf16: 0.98 s/step measured at 1 thread on a busy 2-core machine (load 5),
# so about 0.35-0.5 s/step on 2 quiet cores, 12-17 min (an estimate: the whole run was not timed)
SCENES_TRAIN_IMAGES = {"scenes": 20_000, "scenes_tiny": 256}  # half of them of two shapes
UPSAMPLER_MAX_AUG_LEVEL = 0.3  # s_max of noise-conditioning augmentation (chapter 10); not tuned yet


def get_preset(name: str) -> Preset:
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def preset_names() -> list[str]:
    return sorted(_presets())


def load_training_data(preset: Preset) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The preset's x_0 samples (N, ...) and its labels: (N,) int64 classes for MNIST presets that use
    them, (N, L) int64 caption token ids for "shapes" and the "scenes", (N, 4) attribute indices for "shapes_all"."""
    from diffusion_lab.data import make_toy, mnist_tensors
    from diffusion_lab.data.shapes import make_shapes
    from diffusion_lab.latent import encode
    from diffusion_lab.models.text import Tokenizer

    if preset.data == "shapes":
        shapes = make_shapes(SHAPES_TRAIN_IMAGES, size=preset.model_config.unet.image_size, seed=0, split="train")
        text = preset.model_config.text
        ids = Tokenizer(text.vocabulary, text.max_length).encode(shapes.captions)  # (N, L)
        return shapes.images, ids
    if preset.data == "scenes64_tiny":  # pictures only: an upsampler's high-res crops are cut from them
        from diffusion_lab.data.scenes import make_scenes

        return make_scenes(256, size=64, seed=0, split="train").images, None
    if preset.data in SCENES_TRAIN_IMAGES:
        from diffusion_lab.data.scenes import make_scenes

        scenes = make_scenes(SCENES_TRAIN_IMAGES[preset.data], size=preset.model_config.image_size, seed=0,
                             split="train")
        text = preset.model_config.text
        return scenes.images, Tokenizer(text.vocabulary, text.max_length).encode(scenes.captions)  # (N, L)
    if preset.data == "shapes_all":
        shapes = make_shapes(SHAPES_TRAIN_IMAGES, size=preset.model_config.image_size, seed=0, split="all")
        return shapes.images, shapes.attribute_indices
    if preset.data == "mnist":
        images, labels = mnist_tensors("train")
        if preset.autoencoder is not None:  # latent diffusion: the scaled latents, encoded once
            images = encode(_load_autoencoder(preset), images)
        return images, labels if preset.conditional or preset.kind in ("classifier", "noisy_classifier") else None
    return make_toy(preset.data, 50_000, seed=0), None


def _load_autoencoder(preset: Preset) -> torch.nn.Module:
    from diffusion_lab.pretrained import load_pretrained

    return load_pretrained(preset.autoencoder).model


def checkpoint_extra(preset: Preset) -> dict:
    """What a preset's checkpoint JSON records besides its config: for a latent model, the autoencoder whose
    latents it learned and their scale s, which its pipeline checks before decoding anything."""
    if preset.autoencoder is None:
        return {}
    from diffusion_lab.pretrained import read_manifest

    autoencoder = _load_autoencoder(preset)
    digest = read_manifest()[preset.autoencoder]["sha256"][f"{preset.autoencoder}.safetensors"]
    return {"latent": {"autoencoder": preset.autoencoder, "latent_scale": float(autoencoder.latent_scale),
                       "autoencoder_sha256": digest}}


def noise_schedule(preset: Preset) -> NoiseSchedule | None:
    """The noise schedule a preset's model works with; None for the noise-free judges and autoencoders, and for
    a flow, whose time tau runs on no schedule."""
    return None if preset.kind in ("classifier", "attribute_scorer", "autoencoder", "flow_unet", "clip") else (
        NoiseSchedule.from_name(preset.schedule, preset.T))


def build_objective(preset: Preset, model: torch.nn.Module) -> Objective:
    """What ``fit`` trains the preset's model towards, on the preset's data."""
    from diffusion_lab.judges.attribute_scorer import ATTRIBUTE_SIZES

    data, labels = load_training_data(preset)
    schedule = noise_schedule(preset)
    if preset.kind == "classifier":
        return ClassifierObjective(data, labels, num_classes=preset.model_config.num_classes)
    if preset.kind == "noisy_classifier":
        return NoisyClassifierObjective(data, labels, preset.model_config.num_classes, schedule)
    if preset.kind == "attribute_scorer":
        return AttributeObjective(data, labels, ATTRIBUTE_SIZES)
    if preset.kind == "autoencoder":
        return AutoencoderObjective(data, preset.model_config.latent_shape, preset.kl_weight)
    if preset.kind == "flow_unet":
        return FlowMatchingObjective(data)
    if preset.kind == "upsampler":  # high-res crops as large as the U-Net's image_size
        return SuperResolutionObjective(data, schedule, preset.model_config.unet.image_size, UPSAMPLER_MAX_AUG_LEVEL)
    if preset.kind == "clip":
        return ContrastiveObjective(data, labels)
    null = model.null_condition(1)[0] if preset.conditional else None  # () the null class, (L,) the empty prompt
    return DiffusionObjective(schedule, data, labels, null)
