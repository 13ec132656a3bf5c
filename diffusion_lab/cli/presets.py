"""Named training recipes: what `python -m diffusion_lab train --preset NAME` trains (chapters 04-10).

Each preset fixes the model, the data, the noise schedule, the objective and the training settings,
so that a shipped checkpoint can be remade by anyone with one command. ``tiny`` exists for tests. What each
recipe's ``data`` name means, and the objective it trains towards: ``training_data.py``.

The judges train with AdamW under the one-cycle schedule and no EMA or gradient clipping, the
denoisers with a warm-up, EMA and clipping: these are the recipes the shipped checkpoints were made
with, and ``fit`` reproduces them exactly. The noise-aware classifier keeps a weight decay of 0.01
(the other judges use none) for the same reason: its shipped weights were trained so.
"""

from __future__ import annotations

import dataclasses

from diffusion_lab.cli.recipe import Preset
from diffusion_lab.cli.training_data import (  # noqa: F401 - re-exported: callers import them from here
    PRIOR_COND_DROP,
    SCENES_TRAIN_IMAGES,
    SHAPES_TRAIN_IMAGES,
    UPSAMPLER_MAX_AUG_LEVEL,
    UPSAMPLER_PICTURES,
    _training_scenes,
    build_objective,
    checkpoint_extra,
    load_training_data,
    noise_schedule,
)
from diffusion_lab.training import TrainConfig


def _presets() -> dict[str, Preset]:
    from diffusion_lab.data.scenes import scene_vocabulary
    from diffusion_lab.data.shapes import caption_vocabulary
    from diffusion_lab.judges.attribute_scorer import AttributeScorerConfig
    from diffusion_lab.judges.mnist_classifier import ClassifierConfig
    from diffusion_lab.models.autoencoder import AutoencoderConfig
    from diffusion_lab.models.clip import CLIPConfig
    from diffusion_lab.models.embedding_unet import EmbeddingUNetConfig
    from diffusion_lab.models.mlp import MLPConfig
    from diffusion_lab.models.noisy_classifier import NoisyClassifierConfig
    from diffusion_lab.models.prior import PriorConfig
    from diffusion_lab.models.regression_prior import RegressionPriorConfig
    from diffusion_lab.models.text import TextEncoderConfig
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

    # the unconditional MNIST U-Net's budget (chapter 04's shipped model)
    mnist_train = TrainConfig(steps=20_000, batch_size=128, lr=5e-4, cooldown_steps=2500, checkpoint_every=250,
                              mixed_precision=True)
    # chapter 09's two on all 60,000 digits, the noise predictor and the flow, trained side by side: half the steps
    full_train = dataclasses.replace(mnist_train, steps=10_000)
    # the shipped mnist continued: a gentler learning rate, on all 60,000 digits
    continued_train = dataclasses.replace(mnist_train, steps=6000, lr=2e-4, cooldown_steps=2000)

    return {p.name: p for p in [
        Preset("toy2d", "mlp", MLPConfig(), TrainConfig(steps=3000, batch_size=512, lr=1e-3, warmup_steps=100,
                                                        ema_decay=0.995, checkpoint_every=500),
               data="swiss_roll", float16=True, description="the 2-D swiss-roll denoiser of chapter 04"),
        Preset("mnist", "unet", UNetConfig.mnist(), mnist_train, data="mnist", float16=True,
               # bench/better_mnist.py: its best at <= 50 NFE (chapter 09), autoguided by mnist_cond's null branch
               sampling={"sampler": "dpmpp2m_sde", "steps": 25, "sigma_max": 20.0, "guide": "mnist_cond",
                         "guide_scale": 1.5, "guide_interval": [1.0, 5.0]},
               description="unconditional MNIST digits"),
        Preset("mnist_60k", "unet", UNetConfig.mnist(), full_train, data="mnist_full", snr_gamma=5.0, float16=True,
               description="the mnist U-Net on all 60,000 digits with Min-SNR-5 weighting, 10,000 steps: chapter "
                           "09's try at a better mnist, measured (bench/better_mnist.py) and not shipped"),
        Preset("mnist_continued", "unet", UNetConfig.mnist(), continued_train, data="mnist_full", float16=True,
               init="mnist", sampling={"sampler": "dpmpp2m_sde", "steps": 32},
               description="the shipped mnist trained 6,000 steps more on all 60,000 digits (learning rate 2e-4, "
                           "cooled down over the last 2,000): chapter 09's second try at a better mnist"),
        Preset("mnist_flow", "flow_unet", UNetConfig.mnist(), full_train, data="mnist_full", float16=True,
               description="flow matching on MNIST: mnist_60k's U-Net, data and budget, predicting a velocity "
                           "(chapter 09)"),
        Preset("mnist_cond", "unet", UNetConfig.mnist_conditional(),
               TrainConfig(steps=6500, batch_size=128, lr=5e-4, cooldown_steps=1500, cond_drop_prob=0.1,
                           checkpoint_every=250, mixed_precision=True),
               data="mnist", conditional=True, float16=True,
               description="class-conditional MNIST, 10 % of labels dropped to the null class (for CFG)"),
        Preset("mnist_classifier", "classifier", ClassifierConfig(), judge(1500, 2e-3), data="mnist",
               description="the MNIST judge used by judges/metrics.py"),
        Preset("mnist_noisy_classifier", "noisy_classifier", NoisyClassifierConfig(), judge(2000, 1e-3, 0.01),
               data="mnist", float16=True,
               description="p(y | x_t, t) on noised MNIST, for classifier guidance (chapter 07)"),
        Preset("shapes_text", "text_unet", TextUNetConfig.shapes(caption_vocabulary()),
               TrainConfig(steps=SHAPES_TEXT_STEPS, batch_size=64, lr=5e-4, cond_drop_prob=0.1, checkpoint_every=250,
                           mixed_precision=True),
               data="shapes", conditional=True, float16=True,
               description="text-to-image on 32x32 shapes; 10 % of captions dropped to the empty prompt (chapter 06)"),
        Preset("shapes_scorer", "attribute_scorer", AttributeScorerConfig(), judge(SHAPES_SCORER_STEPS, 2e-3),
               data="shapes_all",
               description="reads shape, colour, size and position back from a picture (chapters 06-07)"),
        Preset("scenes_scorer", "scene_scorer", AttributeScorerConfig(), judge(SCENES_SCORER_STEPS, 2e-3),
               data="scene_pairs_all", float16=True,
               description="reads a two-shape scene in canonical form (axis, left/top object, other object), the "
                           "judge of attribute binding (chapters 10-11)"),
        Preset("mnist_autoencoder", "autoencoder", AutoencoderConfig.mnist(),
               first_stage(MNIST_AUTOENCODER_STEPS, batch_size=64),
               data="mnist", kl_weight=KL_WEIGHT, float16=True,
               description="digits -> 4x8x8 latents and back, the first stage of latent diffusion (chapter 08)"),
        Preset("mnist_latent", "latent_unet", dataclasses.replace(UNetConfig.mnist(), in_channels=4, out_channels=4,
                                                                  image_size=8),
               TrainConfig(steps=MNIST_LATENT_STEPS, batch_size=128, lr=5e-4, cooldown_steps=3000,
                           checkpoint_every=250, mixed_precision=True),  # bf16 on a CPU: 1.2x the images/s
               data="mnist", autoencoder="mnist_autoencoder", float16=True, snr_gamma=5.0,
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
               data="scenes", float16=True, description="a small CLIP for 32x32 scenes of one or two shapes: contrastive, "
                                          "same-caption positives (chapter 10)"),
        Preset("tiny_clip", "clip", CLIPConfig.tiny(scene_vocabulary()),
               TrainConfig(steps=20, batch_size=32, lr=1e-3, warmup_steps=5, ema_decay=0.0, checkpoint_every=10,
                           log_every=5),
               data="scenes_tiny", description="a few seconds of contrastive training, for tests"),
        Preset("tiny_flow", "flow_unet", UNetConfig.tiny(), TrainConfig(steps=20, batch_size=16, checkpoint_every=10,
                                                                        log_every=5), data="mnist", float16=True,
               description="a few seconds of flow matching, for tests"),
        Preset("unclip_prior", "prior", PriorConfig(hidden_dim=128, num_blocks=4),
               TrainConfig(steps=UNCLIP_PRIOR_STEPS, batch_size=256, lr=5e-4, cooldown_steps=UNCLIP_PRIOR_STEPS // 4,
                           checkpoint_every=500, log_every=100),
               data="scene_embeddings", clip="clip_scenes", float16=True,
               description="DALL-E 2's diffusion prior: CLIP text embedding -> CLIP image embedding of 32x32 scenes, "
                           "10 % of captions dropped for guidance (chapter 10)"),
        Preset("unclip_regression_prior", "regression_prior", RegressionPriorConfig(hidden_dim=128, num_blocks=4),
               TrainConfig(steps=UNCLIP_PRIOR_STEPS // 2, batch_size=256, lr=5e-4,
                           cooldown_steps=UNCLIP_PRIOR_STEPS // 8, checkpoint_every=500, log_every=100),
               data="scene_embeddings", clip="clip_scenes", float16=True,
               description="the paper's baseline prior: one deterministic guess of the image embedding (chapter 10)"),
        Preset("unclip_decoder", "embedding_unet", EmbeddingUNetConfig.scenes(),
               TrainConfig(steps=UNCLIP_DECODER_STEPS, batch_size=64, lr=5e-4, cond_drop_prob=0.1,
                           cooldown_steps=UNCLIP_DECODER_STEPS // 4, checkpoint_every=250, mixed_precision=True),
               data="scenes", clip="clip_scenes", conditional=True, float16=True,
               description="DALL-E 2's decoder: a 32x32 scene from a CLIP image embedding, 10 % of embeddings "
                           "dropped for guidance (chapter 10)"),
        Preset("upsampler", "upsampler", UpsamplerConfig.scenes(),
               TrainConfig(steps=UPSAMPLER_STEPS, batch_size=32, lr=5e-4, cooldown_steps=UPSAMPLER_STEPS // 4,
                           checkpoint_every=250, mixed_precision=True),
               data="scenes_sr", float16=True,
               description="2x diffusion super-resolution, fully convolutional, on 32x32 crops of scenes at two "
                           "scales, with noise-conditioning augmentation: 32->64 (chapter 10), 64->128 (chapter 11)"),
        Preset("tiny_upsampler", "upsampler", UpsamplerConfig.tiny(),
               TrainConfig(steps=20, batch_size=16, checkpoint_every=10, log_every=5), data="scenes64_tiny",
               description="a few seconds of 2x super-resolution on 16x16 crops, for tests (chapter 10)"),
        Preset("scenes64_autoencoder", "autoencoder", AutoencoderConfig.shapes64(),
               first_stage(SHAPES64_AUTOENCODER_STEPS, batch_size=32),
               data="scenes", kl_weight=KL_WEIGHT, float16=True,
               description="64x64 scenes of one or two shapes -> 4x16x16 latents and back: shapes64_autoencoder's "
                           "design and recipe on the training scenes, tiny_sd's first stage (chapter 11)"),
        Preset("tiny_sd", "latent_text_unet",
               # the chapter-06 text U-Net over 4x16x16 latents: channels (32, 64, 128) at 16, 8 and 4, cross-attention
               # at 16 and 8 (256 and 64 queries against 12 tokens), 2.1 M parameters. Its text encoder is chapter 10's
               # CLIP's, frozen, as in Stable Diffusion: one learnt beside the U-Net ignored "top" and "bottom"
               # (bench/results/tiny_sd_quality_20000_not_shipped.md)
               TextUNetConfig(dataclasses.replace(UNetConfig.shapes_text(context_dim=64), in_channels=4, out_channels=4,
                                                  image_size=16, channel_mults=(1, 2, 4)),
                              TextEncoderConfig(scene_vocabulary(), width=64)),
               TrainConfig(steps=TINY_SD_STEPS, batch_size=64, lr=5e-4, cond_drop_prob=0.1,
                           cooldown_steps=TINY_SD_STEPS // 4, checkpoint_every=250, mixed_precision=True),
               data="scenes", autoencoder="scenes64_autoencoder", text_encoder="clip_scenes", conditional=True,
               float16=True,
               description="a mini Stable Diffusion: clip_scenes' text encoder, frozen, read by a latent U-Net with "
                           "cross-attention on scenes64_autoencoder's latents of 20,000 scenes, 10 % of captions "
                           "dropped for CFG, EMA (chapter 11)"),
        Preset("tiny_latent_text", "latent_text_unet",
               TextUNetConfig(UNetConfig(in_channels=4, out_channels=4, image_size=16, base_channels=16,
                                         channel_mults=(1, 2), num_groups=4, num_heads=2, mid_attention=False,
                                         cross_attention_resolutions=(8,), context_dim=32),
                              TextEncoderConfig(scene_vocabulary(), width=32, depth=1, num_heads=2)),
               TrainConfig(steps=20, batch_size=16, cond_drop_prob=0.1, checkpoint_every=10, log_every=5),
               data="scenes_tiny", autoencoder="scenes64_autoencoder", conditional=True,
               description="a few seconds of tiny_sd's recipe on 256 scenes' latents, for tests (chapter 11)"),
    ]}


SHAPES_TEXT_STEPS = 3000
MNIST_AUTOENCODER_STEPS = 3000
MNIST_LATENT_STEPS = 54_000
SHAPES64_AUTOENCODER_STEPS = 3000
KL_WEIGHT = 1e-2  # chapter 08: compact (KL per value 1.4 against 4.3 at 1e-4), robust, not blurrier: bench/results/autoencoder_kl.md
SHAPES_SCORER_STEPS = 600
SCENES_SCORER_STEPS = 1000
CLIP_SCENES_STEPS = 2000  # batch 512 in bf16: 0.98 s/step measured at 1 thread on a busy 2-core machine (load 5),
# so about 0.35-0.5 s/step on 2 quiet cores, 12-17 min (an estimate: the whole run was not timed)
UNCLIP_PRIOR_STEPS = 6000
UNCLIP_DECODER_STEPS = 8000
UPSAMPLER_STEPS = 3000
TINY_SD_STEPS = 20_000  # batch 64 through fit at 1 thread on the busy 2-core machine (load 3): 0.35 s/step with
# bf16 autocast, 0.37-0.49 s/step in float32 (interleaved runs of 65 steps), so bf16 pays ~10 % here; 20,000 steps
# ~ 2 h, plus a few minutes to draw and encode the 20,000 scenes (an estimate: the whole run was not timed)


def get_preset(name: str) -> Preset:
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]


def preset_names() -> list[str]:
    return sorted(_presets())
