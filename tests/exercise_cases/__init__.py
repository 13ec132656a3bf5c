"""Test answers for every exercise check, one module per part of the course (mirrors diffusion_lab.exercises)."""

from __future__ import annotations

from exercise_cases import (
    clip,
    conditioning,
    flows,
    foundations,
    guidance,
    latent,
    sampling,
    scores,
    text_to_image,
    training,
    unet,
)
from exercise_cases.cases import Cases

CASES: dict[str, Cases] = {**foundations.CASES, **unet.CASES, **training.CASES, **sampling.CASES, **conditioning.CASES,
                          **guidance.CASES, **latent.CASES, **scores.CASES, **flows.CASES,
                          **clip.CASES, **text_to_image.CASES}
