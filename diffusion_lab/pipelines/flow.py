"""The pipeline of a flow-matching model (chapter 09): the U-Net predicts a velocity, not the noise.

A flow model (``training/flow.py``) is read as dx/dtau = v_theta(x, tau), tau running from the noise (0) to the
data (1), so it has no noise schedule and only the ODE solvers that follow a velocity fit it: Euler and Heun
over equal steps in tau (``flows.flow_euler``, ``flows.flow_heun``). DDPM, DDIM, DPM-Solver++(2M) and the
reverse SDE read a noise prediction through a schedule; asking for them is a clear error (``samplers.check_fits``).
"""

from __future__ import annotations

from diffusion_lab.pipelines.base import DiffusionPipeline
from diffusion_lab.pipelines.samplers import VELOCITY


class FlowImagePipeline(DiffusionPipeline):
    """An unconditional image flow: samples (N, C, H, W) from N(0, I) noise carried to the data by the learned
    velocity, clamped to [-1, 1] at the end. ``sampler`` is "euler" (K network evaluations, the default) or
    "heun" (2K - 1)."""

    predicts = VELOCITY
    default_sampler = "euler"
