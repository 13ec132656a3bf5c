"""One call from a shipped checkpoint to images, with every kind of conditioning and guidance (chapters 05-07).

    generate("mnist", 16)                                              unconditional digits
    generate("mnist_cond", 16, class_label=7, guidance_scale=3)        classifier-free guidance
    generate("mnist", 16, class_label=7, classifier_scale=4)           classifier guidance
    generate("shapes_text", 8, prompt="a large red circle in the centre", guidance_scale=3,
             negative_prompt="a large red square in the centre")

This is what ``python -m diffusion_lab sample`` runs. The chapters build the same thing by hand:
``sampling.sample`` over a model wrapped by ``guidance.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from diffusion_lab.config import pick_device
from diffusion_lab.guidance import check_scale, classifier_free_guidance, classifier_guidance
from diffusion_lab.pretrained import Pretrained, load_pretrained
from diffusion_lab.sampling import Callback, DDIMScheduler, DDPMScheduler, Model, sample

DIFFUSION_KINDS = ("unet", "mlp", "text_unet")


def make_scheduler(pre: Pretrained, sampler: str = "ddim", steps: int = 50, eta: float = 0.0
                   ) -> DDPMScheduler | DDIMScheduler:
    """The scheduler for a checkpoint, its x_0 guess clipped to the data's range ([-1, 1]; +-3 for 2-D toys);
    DDIM re-derives the noise from the clipped guess (``use_clipped_model_output``)."""
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    clip_range = 3.0 if pre.info["kind"] == "mlp" else 1.0
    # DDIM re-derives eps from the clipped x_0 (GLIDE's choice): guided samples need it (see ddim_step).
    scheduler = (DDPMScheduler(pre.schedule, clip_sample_range=clip_range) if sampler == "ddpm"
                 else DDIMScheduler(pre.schedule, eta=eta, clip_sample_range=clip_range, use_clipped_model_output=True))
    scheduler.set_timesteps(steps)
    return scheduler


def _prompt_ids(model: nn.Module, prompt: str | Sequence[str], num: int, name: str) -> torch.Tensor:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, Sequence) else None
    if prompts is None or not prompts:
        raise TypeError(f"{name} must be a str or a list of str, got {prompt!r}")
    if len(prompts) not in (1, num):
        raise ValueError(f"give one {name} for all {num} samples or one per sample, got {len(prompts)}")
    return model.encode_prompts(prompts)  # (1 or num, L)


def guided_model(pre: Pretrained, num: int, *, class_label: int | None = None, prompt: str | Sequence[str] | None = None,
                 negative_prompt: str | Sequence[str] | None = None, guidance_scale: float = 1.0,
                 classifier: str | nn.Module = "mnist_noisy_classifier", classifier_scale: float = 0.0,
                 checkpoints_root: str | Path | None = None) -> Model:
    """``model(xt, t) -> eps_pred`` for a checkpoint with its conditioning and guidance applied; every
    combination that cannot work is a clear error here, before any sampling starts."""
    kind, model = pre.info["kind"], pre.model
    w = check_scale(guidance_scale)
    s = check_scale(classifier_scale, "classifier_scale")
    num_classes = getattr(model.config, "num_classes", None) if kind == "unet" else None
    if kind != "text_unet" and (prompt is not None or negative_prompt is not None):
        raise ValueError(f"{pre.name} does not read text; prompts need a text model such as shapes_text")
    if class_label is not None and kind != "unet":
        raise ValueError(f"{pre.name} does not take a class; --class is for the MNIST models")
    if class_label is not None and (isinstance(class_label, bool) or not isinstance(class_label, int)
                                    or not 0 <= class_label < 10):
        raise ValueError(f"class_label must be a digit 0..9, got {class_label!r}")
    if s > 0 and (num_classes is not None or kind != "unet"):
        raise ValueError("classifier guidance steers the unconditional MNIST model: use it with 'mnist' "
                         "(conditional models use guidance_scale, classifier-free guidance)")
    if s > 0 and class_label is None:
        raise ValueError("classifier guidance needs the class to steer towards: give class_label (--class)")
    if w != 1.0 and kind == "text_unet" and prompt is None:
        raise ValueError("guidance_scale needs a prompt to guide towards")
    if w != 1.0 and kind == "unet" and (num_classes is None or class_label is None):
        raise ValueError("guidance_scale (classifier-free guidance) needs a class-conditional model and a class: "
                         "for example mnist_cond with class_label=7. For the unconditional model use classifier_scale")
    if negative_prompt is not None and w == 1.0:
        raise ValueError("a negative prompt only acts through guidance: set guidance_scale above 1 (e.g. 3)")

    if kind == "text_unet":
        if prompt is None:
            raise ValueError(f"{pre.name} draws what a prompt describes: give one, "
                             f"e.g. prompt='a small red circle in the top left'")
        cond = _prompt_ids(model, prompt, num, "prompt")
        null = (_prompt_ids(model, negative_prompt, num, "negative_prompt") if negative_prompt is not None
                else model.null_condition(1))
        return classifier_free_guidance(model, cond, null, w)
    if num_classes is not None:  # class-conditional: no class means the null class
        device = next(model.parameters()).device
        null = torch.full((1,), num_classes, dtype=torch.long, device=device)
        if class_label is None:
            return lambda x, t: model(x, t, null.expand(x.shape[0]))
        cond = torch.full((1,), class_label, dtype=torch.long, device=device)
        return classifier_free_guidance(model, cond, null, w)
    if s > 0:
        judge = classifier if isinstance(classifier, nn.Module) else load_pretrained(
            classifier, root=checkpoints_root, device=next(model.parameters()).device).model
        labels = torch.full((1,), class_label, dtype=torch.long)
        return classifier_guidance(model, judge, pre.schedule, labels, s)
    if class_label is not None:
        raise ValueError(f"{pre.name} is unconditional: to get a chosen digit, use classifier_scale > 0 "
                         f"(classifier guidance) or the class-conditional model mnist_cond")
    return model


def generate(checkpoint: str | Pretrained, num: int, *, sampler: str = "ddim", steps: int = 50, eta: float = 0.0,
             seed: int = 0, class_label: int | None = None, prompt: str | Sequence[str] | None = None,
             negative_prompt: str | Sequence[str] | None = None, guidance_scale: float = 1.0,
             classifier: str | nn.Module = "mnist_noisy_classifier", classifier_scale: float = 0.0,
             device: torch.device | str | None = None, checkpoints_root: str | Path | None = None,
             callback: Callback | None = None) -> torch.Tensor:
    """Sample ``num`` images (N, C, H, W) in [-1, 1] (points (N, 2) for the 2-D model) from a checkpoint.

    checkpoint: a name in data/checkpoints ("mnist", "mnist_cond", "shapes_text", ...) or a loaded one.
    sampler, steps, eta: DDPM or DDIM with that many steps (eta: DDIM's noise, 0 = deterministic).
    class_label: the digit for mnist_cond (classifier-free guidance) or for mnist with classifier guidance.
    prompt, negative_prompt: one text for all samples or one per sample (text models).
    guidance_scale: w of classifier-free guidance; 1 is the plain conditional model, 0 ignores the condition.
    classifier, classifier_scale: the noise-aware classifier and the scale s of classifier guidance.
    seed: the same seed, arguments and checkpoint give the same images on every device.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
        raise ValueError(f"num must be a positive int, got {num!r}")
    if isinstance(checkpoint, Pretrained):
        pre = checkpoint
        device = next(pre.model.parameters()).device  # sample where the loaded model lives
    else:
        device = torch.device(device) if device is not None else pick_device()
        pre = load_pretrained(checkpoint, root=checkpoints_root, device=device)
    if pre.info["kind"] not in DIFFUSION_KINDS or pre.schedule is None:
        raise ValueError(f"{pre.name} is a {pre.info['kind']}, not a diffusion model: nothing to sample")
    fn = guided_model(pre, num, class_label=class_label, prompt=prompt, negative_prompt=negative_prompt,
                      guidance_scale=guidance_scale, classifier=classifier, classifier_scale=classifier_scale,
                      checkpoints_root=checkpoints_root)
    scheduler = make_scheduler(pre, sampler, steps, eta)
    config = pre.model.config
    if pre.info["kind"] == "mlp":
        shape: tuple[int, ...] = (num, 2)
    else:
        unet = config.unet if pre.info["kind"] == "text_unet" else config
        shape = (num, unet.in_channels, unet.image_size, unet.image_size)
    return sample(fn, scheduler, shape, generator=torch.Generator().manual_seed(seed), device=device,
                  callback=callback)
