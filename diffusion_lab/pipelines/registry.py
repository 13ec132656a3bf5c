"""Which pipeline samples from which checkpoint: one line per model kind (chapters 05-11).

A checkpoint's JSON names its model kind (``pretrained.model_kinds``); ``PIPELINES`` maps the kind to the
pipeline that knows its conditions, data range and sample shape. A new kind of model is one module
and one line here; nothing else in the package looks at kind strings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from diffusion_lab.config import pick_device
from diffusion_lab.pipelines.base import DiffusionPipeline
from diffusion_lab.pipelines.class_conditional import ClassConditionalPipeline
from diffusion_lab.pipelines.flow import FlowImagePipeline
from diffusion_lab.pipelines.latent import LatentImagePipeline
from diffusion_lab.pipelines.text_conditional import TextConditionalPipeline
from diffusion_lab.pipelines.text_to_image import TinySDPipeline
from diffusion_lab.pipelines.unclip import UnCLIPPipeline
from diffusion_lab.pipelines.unconditional import ImagePipeline, PointsPipeline
from diffusion_lab.pretrained import Pretrained, load_pretrained


def _unet_pipeline(pre: Pretrained, root: str | Path | None = None) -> DiffusionPipeline:
    """A U-Net with a class table is class-conditional; without one it is unconditional."""
    conditional = pre.model.config.num_classes is not None
    return (ClassConditionalPipeline if conditional else ImagePipeline)(pre, root)


PIPELINES: dict[str, Callable[..., DiffusionPipeline]] = {
    "mlp": PointsPipeline,
    "unet": _unet_pipeline,
    "text_unet": TextConditionalPipeline,
    "latent_unet": LatentImagePipeline,
    "flow_unet": FlowImagePipeline,
    "latent_text_unet": TinySDPipeline,
}


# Systems of several checkpoints, sampled by one name like any checkpoint (chapters 10-11).
SYSTEMS: dict[str, Callable[..., Any]] = {"unclip": UnCLIPPipeline.from_pretrained}


def load_pipeline(checkpoint: str | Pretrained, *, root: str | Path | None = None,
                  device: torch.device | str | None = None) -> DiffusionPipeline | UnCLIPPipeline:
    """The pipeline for a checkpoint name in ``root`` (default data/checkpoints), a system's name (``SYSTEMS``),
    or a loaded checkpoint (which is sampled where it lives). ``device`` defaults to ``pick_device()``."""
    if isinstance(checkpoint, str) and checkpoint in SYSTEMS:
        return SYSTEMS[checkpoint](checkpoint, root=root, device=device)
    if isinstance(checkpoint, Pretrained):
        pre = checkpoint
    else:
        pre = load_pretrained(checkpoint, root=root, device=pick_device(device))  # checks the device exists
    kind = pre.info["kind"]
    if kind not in PIPELINES:
        raise ValueError(f"{pre.name} is a {kind}, not a diffusion model: nothing to sample")
    return PIPELINES[kind](pre, root)
