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
"""

from diffusion_lab.models.attention import CrossAttention, SelfAttention, record_cross_attention
from diffusion_lab.models.blocks import Downsample, ResBlock, Upsample
from diffusion_lab.models.embeddings import TimestepEmbedding, timestep_embedding
from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lab.models.text import TextEncoder, TextEncoderConfig, Tokenizer
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig, count_parameters, shape_trace

__all__ = [
    "CrossAttention",
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
