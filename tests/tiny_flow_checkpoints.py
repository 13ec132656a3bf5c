"""Two tiny checkpoints for the tests of samplers against what a model predicts (chapter 09): a flow and an ε-model."""

from __future__ import annotations

from pathlib import Path

import torch

from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pretrained import save_pretrained
from diffusion_lab.schedules import NoiseSchedule


def write_flow_and_eps(folder: Path, *, float16: bool = False) -> Path:
    """Save "flow" (a tiny flow_unet, no schedule) and "uncond" (a tiny ε U-Net, cosine) in ``folder``; return it."""
    torch.manual_seed(0)
    flow = UNet(UNetConfig.tiny())
    with torch.no_grad():  # conv_out starts at zero: make the velocity depend on the model
        flow.conv_out.weight.normal_(0, 0.1)
    save_pretrained("flow", flow, flow.config, kind="flow_unet", schedule=None, made_by={}, root=folder,
                    float16=float16)
    uncond = UNet(UNetConfig.tiny())
    save_pretrained("uncond", uncond, uncond.config, kind="unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=folder)
    return folder
