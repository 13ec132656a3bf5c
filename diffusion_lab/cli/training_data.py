"""What each preset trains on, and towards what: its data, noise schedule and objective (chapters 04-10).

``presets.py`` names the recipes; this module turns a recipe's ``data`` name into tensors (generated,
loaded, or embedded once by a first-stage checkpoint: an autoencoder's latents, chapter 08; a CLIP's
embeddings, chapter 10) and builds the objective ``fit`` trains towards.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from diffusion_lab.cli.recipe import Preset
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
    PriorObjective,
    RegressionPriorObjective,
    SuperResolutionObjective,
)

if TYPE_CHECKING:
    from diffusion_lab.data.scenes import SceneDataset
    from diffusion_lab.models.text import TextEncoderConfig
    from diffusion_lab.pretrained import Pretrained

SHAPES_TRAIN_IMAGES = 20_000  # about 90 pictures of each of the 220 training combinations
SCENES_TRAIN_IMAGES = {"scenes": 20_000, "scenes_tiny": 256}  # half of them of two shapes
SCENE_PAIRS_IMAGES = 20_000  # two-shape scenes of every pair for the scene scorer: about 8 per (pair, relation)
UPSAMPLER_PICTURES = 10_000  # 64x64 pictures, half whole scenes, half windows of 128x128 scenes
PRIOR_COND_DROP = 0.1  # the share of captions the prior sees as the null text embedding, for guidance
UPSAMPLER_MAX_AUG_LEVEL = 0.3  # s_max of noise-conditioning augmentation (chapter 10); not tuned yet


def load_training_data(preset: Preset) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The preset's x_0 samples (N, ...) and its labels: (N,) int64 classes for MNIST presets that use
    them, (N, L) int64 caption token ids for "shapes" and the "scenes", (N, 4) attribute indices for "shapes_all",
    (N, 5) canonical readings (``judges.scene_scorer``) for "scene_pairs_all"."""
    from diffusion_lab.data import full_mnist_tensors, make_toy, mnist_tensors
    from diffusion_lab.data.shapes import make_shapes
    from diffusion_lab.latent import encode
    from diffusion_lab.models.text import Tokenizer

    if preset.data == "shapes":
        shapes = make_shapes(SHAPES_TRAIN_IMAGES, size=preset.model_config.unet.image_size, seed=0, split="train")
        text = preset.model_config.text
        ids = Tokenizer(text.vocabulary, text.max_length).encode(shapes.captions)  # (N, L)
        return shapes.images, ids
    if preset.clip is not None:  # chapter 10's later stages: CLIP embeddings of the scenes, computed once
        return _clip_data(preset)
    if preset.data == "scenes_sr":
        from diffusion_lab.data.scenes import multiscale_pictures

        return multiscale_pictures(UPSAMPLER_PICTURES, size=64, seed=0, split="train"), None
    if preset.data == "scenes64_tiny":  # pictures only: an upsampler's high-res crops are cut from them
        from diffusion_lab.data.scenes import make_scenes

        return make_scenes(256, size=64, seed=0, split="train").images, None
    if preset.data in SCENES_TRAIN_IMAGES and preset.autoencoder is not None:  # chapter 11: latents, encoded once
        latents, captions = _scene_latents(preset.autoencoder, SCENES_TRAIN_IMAGES[preset.data],
                                           _digest(preset.autoencoder))
        text = preset.model_config.text
        return latents, Tokenizer(text.vocabulary, text.max_length).encode(list(captions))  # (N, c, h, w), (N, L)
    if preset.data in SCENES_TRAIN_IMAGES and preset.kind == "autoencoder":  # pictures only (chapter 11)
        return _training_scenes(SCENES_TRAIN_IMAGES[preset.data], preset.model_config.image_size).images, None
    if preset.data in SCENES_TRAIN_IMAGES:
        scenes = _training_scenes(SCENES_TRAIN_IMAGES[preset.data], preset.model_config.image_size)
        text = preset.model_config.text
        return scenes.images, Tokenizer(text.vocabulary, text.max_length).encode(scenes.captions)  # (N, L)
    if preset.data == "scene_pairs_all":  # the scene scorer's canonical readings (N, 5), chapters 10-11
        from diffusion_lab.data.scenes import make_scenes
        from diffusion_lab.judges.scene_scorer import canonical_indices

        scenes = make_scenes(SCENE_PAIRS_IMAGES, size=preset.model_config.image_size, seed=0, split="all",
                             two_shape_fraction=1.0)
        return scenes.images, canonical_indices(scenes.scenes)
    if preset.data == "shapes_all":
        shapes = make_shapes(SHAPES_TRAIN_IMAGES, size=preset.model_config.image_size, seed=0, split="all")
        return shapes.images, shapes.attribute_indices
    if preset.data in ("mnist", "mnist_full"):  # the bundled 20,000 digits, or all 60,000 (downloaded once)
        images, labels = mnist_tensors("train") if preset.data == "mnist" else full_mnist_tensors("train")
        if preset.autoencoder is not None:  # latent diffusion: the scaled latents, encoded once
            images = encode(_load_autoencoder(preset), images)
        return images, labels if preset.conditional or preset.kind in ("classifier", "noisy_classifier") else None
    return make_toy(preset.data, 50_000, seed=0), None


@functools.lru_cache(maxsize=2)
def _training_scenes(n: int, size: int) -> SceneDataset:
    """The training split's first ``n`` scenes at ``size`` (seed 0), made once per process: CLIP, the priors and
    the decoder of chapter 10 all learn from the same pictures."""
    from diffusion_lab.data.scenes import make_scenes

    return make_scenes(n, size=size, seed=0, split="train")


@functools.lru_cache(maxsize=1)
def _scene_latents(autoencoder: str, n: int, digest: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The training split's first ``n`` scenes (seed 0) at the autoencoder's picture size, encoded once by the
    checkpoint ``autoencoder`` (whose weights have SHA-256 ``digest``): scaled latents (n, c, h, w), and captions.
    Made once per process, so the checkpoint's record of the latents' range reads the latents it learnt."""
    from diffusion_lab.data.scenes import make_scenes
    from diffusion_lab.latent import encode
    from diffusion_lab.pretrained import load_pretrained

    model = load_pretrained(autoencoder).model
    scenes = make_scenes(n, size=model.config.image_size, seed=0, split="train")  # not kept: 1 GB at 64x64
    return encode(model, scenes.images), tuple(scenes.captions)


def _digest(checkpoint: str) -> str:
    """The SHA-256 of a checkpoint's weights, from the manifest (a missing checkpoint is load_pretrained's error)."""
    from diffusion_lab.pretrained import load_pretrained, read_manifest

    manifest = read_manifest()
    if checkpoint not in manifest:
        load_pretrained(checkpoint)  # raises a clear CheckpointError naming what there is
    return manifest[checkpoint]["sha256"][f"{checkpoint}.safetensors"]


def _clip_data(preset: Preset) -> tuple[torch.Tensor, torch.Tensor]:
    """(pictures, image_emb) for data "scenes", (image_emb, text_emb) for "scene_embeddings": the training scenes
    at the CLIP's picture size, embedded by the preset's ``clip`` checkpoint."""
    from diffusion_lab.judges.clip_score import embed_captions, embed_images
    from diffusion_lab.pretrained import load_pretrained

    if preset.data not in ("scenes", "scene_embeddings"):
        raise ValueError(f"preset {preset.name}: a model that learns from a CLIP trains on 'scenes' or "
                         f"'scene_embeddings', not {preset.data!r}")
    clip = load_pretrained(preset.clip).model
    scenes = _training_scenes(SCENES_TRAIN_IMAGES["scenes"], clip.config.image_size)
    image_emb = embed_images(clip, scenes.images)  # (N, D)
    if preset.data == "scenes":
        return scenes.images, image_emb
    return image_emb, embed_captions(clip, scenes.captions)  # (N, D), (N, D)


def frozen_text_encoder(checkpoint: str, text: TextEncoderConfig) -> torch.nn.Module:
    """The text encoder of ``checkpoint`` (a CLIP), frozen, for a model whose text config is ``text``: Stable
    Diffusion's way of reading prompts (chapter 11). Raises a ValueError when the two encoders differ."""
    from diffusion_lab.pretrained import load_pretrained

    encoder = load_pretrained(checkpoint).model.text_encoder.float()
    if encoder.config != text:
        raise ValueError(f"{checkpoint}'s text encoder ({encoder.config}) is not the one this model is built with "
                         f"({text}); give the model {checkpoint}'s TextEncoderConfig")
    return encoder.requires_grad_(False)


def start_from_checkpoint(model: torch.nn.Module, preset: Preset) -> torch.nn.Module:
    """``model`` with the weights of ``preset.init`` (``init_checkpoint``), of the same kind, config and schedule,
    in float32: where a fine-tuning recipe starts. Raises a ValueError naming what differs when they do not fit."""
    loaded = init_checkpoint(preset.init)
    kind, schedule = loaded.info["kind"], loaded.info.get("schedule")
    if kind != preset.kind or loaded.model.config != preset.model_config:
        raise ValueError(f"preset {preset.name!r} starts from checkpoint {preset.init!r}, a {kind} with "
                         f"{loaded.model.config}, but trains a {preset.kind} with {preset.model_config}; name a "
                         f"checkpoint of the same kind and config")
    if schedule and (schedule["name"], schedule["T"]) != (preset.schedule, preset.T):
        raise ValueError(f"preset {preset.name!r} trains with the {preset.schedule} schedule, T = {preset.T}, but "
                         f"checkpoint {preset.init!r} learnt the {schedule['name']} one, T = {schedule['T']}; "
                         f"give the preset the checkpoint's schedule")
    model.load_state_dict({k: v.float() for k, v in loaded.model.state_dict().items()})
    return model


def init_folder(name: str) -> Path:
    """Where checkpoint ``name`` is read from as a starting point: data/checkpoints when it is shipped, else the
    folder its own training run writes its weights to (runs/NAME, ``train_command``'s default ``out``)."""
    from diffusion_lab.pretrained import checkpoints_dir, read_manifest

    return checkpoints_dir() if name in read_manifest() else Path("runs") / name


def init_checkpoint(name: str) -> Pretrained:
    """The checkpoint ``name`` a fine-tuning recipe starts from: the shipped one, else the weights its own run
    left in runs/NAME. Raises a ValueError that says how to make them when there are neither."""
    from diffusion_lab.pretrained import load_pretrained, read_manifest

    folder = init_folder(name)
    if name not in read_manifest(folder):
        raise ValueError(f"this recipe starts from the weights of {name!r}, which are not shipped and not in "
                         f"{folder}: make them first with `python -m diffusion_lab train --preset {name}`")
    return load_pretrained(name, root=folder)


def _load_autoencoder(preset: Preset) -> torch.nn.Module:
    from diffusion_lab.pretrained import load_pretrained

    return load_pretrained(preset.autoencoder).model


def checkpoint_extra(preset: Preset) -> dict:
    """What a preset's checkpoint JSON records besides its config: for a latent model, the autoencoder whose
    latents it learned and their scale s, which its pipeline checks before decoding anything (and, for the latents
    of scenes, their range r, which chapter 11's dynamic thresholding reads); for a model that
    learned from a CLIP's embeddings, that CLIP and its weights' SHA-256, so the DALL-E 2 pipeline can refuse
    stages trained on different CLIPs; for a model that borrowed a frozen text encoder, whose it was; and the
    default ``sampling`` its preset names (``Preset.sampling``)."""
    sampling = {} if preset.sampling is None else {"sampling": dict(preset.sampling)}
    return {**_companions(preset), **sampling, **_started_from(preset)}


def _started_from(preset: Preset) -> dict:
    """For a fine-tuned model (``Preset.init``), the checkpoint it started from and that checkpoint's SHA-256."""
    from diffusion_lab.pretrained import read_manifest

    if preset.init is None:
        return {}
    manifest = read_manifest(init_folder(preset.init))
    return {"init": {"name": preset.init, "sha256": manifest[preset.init]["sha256"][f"{preset.init}.safetensors"]}}


def _companions(preset: Preset) -> dict:
    """The checkpoints a preset's model was trained with, for ``checkpoint_extra``."""
    from diffusion_lab.pretrained import read_manifest

    if preset.clip is not None:
        return {"clip": {"name": preset.clip,
                         "sha256": read_manifest()[preset.clip]["sha256"][f"{preset.clip}.safetensors"]}}
    borrowed = {} if preset.text_encoder is None else {"text_encoder": {
        "name": preset.text_encoder,
        "sha256": read_manifest()[preset.text_encoder]["sha256"][f"{preset.text_encoder}.safetensors"]}}
    if preset.autoencoder is None:
        return borrowed

    autoencoder = _load_autoencoder(preset)
    digest = read_manifest()[preset.autoencoder]["sha256"][f"{preset.autoencoder}.safetensors"]
    latent = {"autoencoder": preset.autoencoder, "latent_scale": float(autoencoder.latent_scale),
              "autoencoder_sha256": digest}
    if preset.data in SCENES_TRAIN_IMAGES:  # chapter 11: the range that dynamic thresholding in latent space reads
        from diffusion_lab.sampling.thresholding import measure_latent_range

        latents, _ = _scene_latents(preset.autoencoder, SCENES_TRAIN_IMAGES[preset.data], digest)
        latent["latent_range"] = measure_latent_range(latents)
    return {"latent": latent, **borrowed}


def noise_schedule(preset: Preset) -> NoiseSchedule | None:
    """The noise schedule a preset's model works with; None for the noise-free judges and autoencoders, and for
    a flow, whose time tau runs on no schedule."""
    return None if preset.kind in ("classifier", "attribute_scorer", "scene_scorer", "autoencoder", "flow_unet",
                                       "clip", "regression_prior") else (
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
    if preset.kind == "scene_scorer":  # the same objective with the five heads of a canonical reading
        from diffusion_lab.judges.scene_scorer import READING_SIZES

        return AttributeObjective(data, labels, READING_SIZES)
    if preset.kind == "autoencoder":
        return AutoencoderObjective(data, preset.model_config.latent_shape, preset.kl_weight)
    if preset.kind == "flow_unet":
        return FlowMatchingObjective(data)
    if preset.kind == "upsampler":  # high-res crops as large as the U-Net's image_size
        return SuperResolutionObjective(data, schedule, preset.model_config.unet.image_size, UPSAMPLER_MAX_AUG_LEVEL)
    if preset.kind == "clip":
        return ContrastiveObjective(data, labels)
    if preset.kind == "prior":
        return PriorObjective(labels, data, schedule, cond_drop_prob=PRIOR_COND_DROP)
    if preset.kind == "regression_prior":
        return RegressionPriorObjective(labels, data)
    null = model.null_condition(1)[0] if preset.conditional else None  # () the null class, (L,) the empty prompt
    return DiffusionObjective(schedule, data, labels, null, snr_gamma=preset.snr_gamma)
