"""One call from a shipped checkpoint to samples, with every kind of conditioning and guidance (chapters 05-07).

    generate("mnist", 16)                                              unconditional digits
    generate("mnist_cond", 16, class_label=7, guidance_scale=3)        classifier-free guidance
    generate("mnist", 16, class_label=7, classifier_scale=4)           classifier guidance
    generate("mnist", 16, autoguidance_scale=1)                        mnist without its autoguidance
    generate("shapes_text", 8, prompt="a large red circle in the centre", guidance_scale=3,
             negative_prompt="a large red square in the centre")

This is what ``python -m diffusion_lab sample`` runs: the checkpoint's pipeline (``registry.py``)
called once. The chapters build the same thing by hand: ``sampling.sample`` over a model wrapped by
``guidance.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffusion_lab.pipelines.registry import load_pipeline
from diffusion_lab.pretrained import Pretrained
from diffusion_lab.sampling import Callback


def generate(checkpoint: str | Pretrained, num: int, *, sampler: str | None = None, steps: int | None = None,
             eta: float = 0.0, seed: int = 0, device: torch.device | str | None = None,
             checkpoints_root: str | Path | None = None, callback: Callback | None = None, batch_size: int = 256,
             **conditions: Any) -> torch.Tensor:
    """Sample ``num`` images (N, C, H, W) in [-1, 1] (points (N, 2) for the 2-D model) from a checkpoint.

    checkpoint: a name in data/checkpoints ("mnist", "mnist_cond", "shapes_text", ...) or a loaded one
        (sampled on the device it lives on).
    sampler, steps, eta: a sampler of ``samplers.SAMPLERS`` with that many steps: "ddpm", "ddim" (eta: DDIM's
        noise, 0 = deterministic), or chapter 09's "euler", "heun" (2 steps - 1 network evaluations), "dpmpp2m",
        "sde", "dpmpp2m_sde" over Karras et al.'s noise levels. A flow (mnist_flow, chapter 09) takes "euler" or "heun" only,
        over equal steps of its time; the others read a noise prediction and are a clear error there.
        None: the checkpoint's default, the "sampling" entry of its JSON where it has one (mnist: DPM-Solver++(2M)
        SDE, 25 steps from sigma = 20, autoguided), else DDIM with 50 steps for a noise predictor and Euler with 50
        steps for a flow.
    conditions, as the checkpoint's pipeline accepts them:
        class_label: the digit for mnist_cond (classifier-free guidance) or for mnist with classifier guidance.
        prompt, negative_prompt: one text for all samples or one per sample (text models).
        guidance_scale: w of classifier-free guidance; 1 is the plain conditional model, 0 ignores the condition.
        classifier, classifier_scale: the noise-aware classifier and the scale s of classifier guidance.
        autoguidance_scale: w of autoguidance by the guide the checkpoint names (mnist's own recipe, a call with
            no sampler: mnist_cond without its class, w = 1.5); 1 turns it off. With a named sampler: none unless
            given, then at every step.
        autoguidance_interval: (lo, hi), guide only at the noise levels sigma in [lo, hi] (mnist's recipe: 1 to 5).
    seed: the same seed, arguments and checkpoint give the same images on every device.
    batch_size: how many are sampled at once (memory); the same seed and batch_size give the same images,
        and up to batch_size images are those of one batch (see ``DiffusionPipeline.__call__``).
    device: where to sample (default ``pick_device()``); one this machine lacks is a clear error.
    """
    pipeline = load_pipeline(checkpoint, root=checkpoints_root, device=device)
    return pipeline(num, sampler=sampler, steps=steps, eta=eta, seed=seed, callback=callback, batch_size=batch_size,
                    **conditions)
