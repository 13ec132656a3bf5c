"""The denoisers the course trains: a U-Net for images (chapter 03) and an MLP for 2-D points (chapter 04).

    embeddings.py  sinusoidal timestep embedding
    blocks.py      ResBlock, Downsample, Upsample
    attention.py   SelfAttention
    unet.py        UNetConfig (presets tiny / mnist / mnist_conditional), UNet, shape_trace
    mlp.py         MLPConfig, MLPDenoiser
"""

from diffusion_lab.models.attention import SelfAttention
from diffusion_lab.models.blocks import Downsample, ResBlock, Upsample
from diffusion_lab.models.embeddings import TimestepEmbedding, timestep_embedding
from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lab.models.unet import UNet, UNetConfig, count_parameters, shape_trace

__all__ = [
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
