"""The networks the course trains (chapters 03-07): networks only; training is in ``training/``, the
judges that score samples are in ``judges/``.

    embeddings.py        sinusoidal timestep embedding
    blocks.py            ResBlock, Downsample, Upsample
    attention.py         SelfAttention, CrossAttention, record_cross_attention
    unet_config.py       UNetConfig and its presets (tiny / mnist / mnist_conditional / shapes_text)
    unet.py              UNet, shape_trace
    mlp.py               MLPConfig, MLPDenoiser
    text.py              Tokenizer, TextEncoderConfig, TextEncoder (chapter 06)
    text_unet.py         TextUNetConfig, TextUNet: text encoder + U-Net, trained together
    noisy_classifier.py  p(y | x_t, t) for classifier guidance (chapter 07)
    clip.py              CLIPConfig, CLIP: contrastive image and text encoders, unit-vector embeddings (chapter 10)
    prior.py             EmbeddingScale, PriorConfig, DiffusionPrior: DALL·E 2's prior over CLIP embeddings (ch. 10)
    regression_prior.py  RegressionPriorConfig, RegressionPrior: its deterministic baseline (chapter 10)
    embedding_unet.py    EmbeddingUNetConfig, EmbeddingUNet: DALL·E 2's decoder from an image embedding (ch. 10)
    upsampler.py         UpsamplerConfig, Upsampler, noise_augment: 2x diffusion super-resolution (chapter 10)
"""

from diffusion_lab.models.attention import CrossAttention, SelfAttention, record_cross_attention
from diffusion_lab.models.blocks import Downsample, ResBlock, Upsample
from diffusion_lab.models.clip import CLIP, CLIPConfig
from diffusion_lab.models.embedding_unet import EmbeddingUNet, EmbeddingUNetConfig
from diffusion_lab.models.embeddings import TimestepEmbedding, timestep_embedding
from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lab.models.prior import DiffusionPrior, EmbeddingScale, PriorConfig
from diffusion_lab.models.regression_prior import RegressionPrior, RegressionPriorConfig
from diffusion_lab.models.text import TextEncoder, TextEncoderConfig, Tokenizer
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig, count_parameters, shape_trace
from diffusion_lab.models.upsampler import Upsampler, UpsamplerConfig, noise_augment

__all__ = [
    "CLIP",
    "CLIPConfig",
    "CrossAttention",
    "EmbeddingUNet",
    "EmbeddingUNetConfig",
    "Upsampler",
    "UpsamplerConfig",
    "noise_augment",
    "DiffusionPrior",
    "EmbeddingScale",
    "PriorConfig",
    "RegressionPrior",
    "RegressionPriorConfig",
    "TextEncoder",
    "TextEncoderConfig",
    "TextUNet",
    "TextUNetConfig",
    "Tokenizer",
    "record_cross_attention",
    "Downsample",
    "MLPConfig",
    "MLPDenoiser",
    "ResBlock",
    "SelfAttention",
    "TimestepEmbedding",
    "UNet",
    "UNetConfig",
    "Upsample",
    "count_parameters",
    "shape_trace",
    "timestep_embedding",
]
