"""A pipeline: a trained denoiser with everything needed to sample from it (chapters 05-07).

A checkpoint's weights are not enough to draw with: one must also know the shape of a sample, the
range of the data (where a guess of x_0 is clipped), and which conditions the model reads. A pipeline
holds those, turns the conditions a user gives (a digit, a prompt, guidance scales) into a model
callable ``model(xt, t) -> eps_pred``, and runs the chapter-05 loop over it. diffusers does the same
with one ``DiffusionPipeline`` class per system; ``registry.py`` finds the one for a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffusion_lab.guidance import check_interval, check_scale
from diffusion_lab.pipelines.batching import FiniteWatch, check_memory
from diffusion_lab.pipelines.defaults import default_sampling
from diffusion_lab.pipelines.samplers import (
    EPS,
    SCHEDULERS,
    check_eta,
    check_fits,
    get_sampler,
    make_scheduler,
    plan_sampler,
)
from diffusion_lab.pretrained import Pretrained
from diffusion_lab.sampling import Callback, DDIMScheduler, DDPMScheduler, Model
from diffusion_lab.sampling.scheduler import randn

# Conditions a caller may give, with the value that means "not given".
DEFAULTS: dict[str, Any] = {"class_label": None, "prompt": None, "negative_prompt": None,
                            "guidance_scale": 1.0, "classifier_scale": 0.0,
                            "classifier": "mnist_noisy_classifier", "autoguidance_scale": None,
                            "autoguidance_interval": None}


def not_accepted(name: str, condition: str) -> ValueError:
    """The error for a condition that checkpoint ``name``'s pipeline does not read."""
    return ValueError({
        "prompt": f"{name} does not read text; prompts need a text model such as shapes_text",
        "negative_prompt": f"{name} does not read text; prompts need a text model such as shapes_text",
        "class_label": f"{name} does not take a class; --class is for mnist_cond, or for mnist with "
                       f"--classifier-scale",
        "guidance_scale": "guidance_scale (classifier-free guidance) needs a class-conditional model and a class: "
                          "for example mnist_cond with class_label=7. For the unconditional model use "
                          "classifier_scale",
        "classifier": f"{name} is not steered by a classifier; classifier guidance is for 'mnist'",
        "classifier_scale": "classifier guidance steers the unconditional MNIST model: use it with 'mnist' "
                            "(conditional models use guidance_scale, classifier-free guidance)",
        "autoguidance_scale": f"{name} is not autoguided: autoguidance_scale is for an unconditional image model "
                              f"such as 'mnist' (conditional models use guidance_scale)",
        "autoguidance_interval": f"{name} is not autoguided: autoguidance_interval is for an unconditional image "
                                 f"model such as 'mnist'",
    }[condition])


class DiffusionPipeline:
    """Sample from ``pre``, a loaded diffusion checkpoint. Subclasses say what they accept and how they guide.

    accepts: the conditions of ``DEFAULTS`` this pipeline reads. clip_range: the data lie in
    [-clip_range, clip_range], where samplers clip their guess of x_0; None: unbounded data, no clipping.
    predicts: what the model predicts, which decides the samplers that fit it (``samplers.SAMPLERS``): "eps",
    the noise, on the checkpoint's noise schedule; "velocity", a flow's (chapter 09), which has no schedule.
    default_sampler, default_steps: what ``__call__`` samples with when no sampler or steps are given; a
    checkpoint's JSON may set its own (``defaults.Sampling``, kept as ``sampling``), as the shipped mnist does
    (DPM-Solver++(2M) SDE, 25 steps from sigma = 20, autoguided by mnist_cond's unconditional branch).
    """

    accepts: frozenset[str] = frozenset()
    clip_range: float | None = 1.0
    predicts: str = EPS
    default_sampler: str = "ddim"
    default_steps: int = 50

    def __init__(self, pre: Pretrained, root: str | Path | None = None) -> None:
        """pre: the loaded checkpoint; root: the folder its companions (a guiding classifier) are read from."""
        if pre.schedule is None and self.predicts == EPS:  # a noise predictor is read through its schedule
            raise ValueError(f"{pre.name} is a {pre.info['kind']}, not a diffusion model: nothing to sample")
        self.pre, self.name, self.model, self.schedule, self.root = pre, pre.name, pre.model, pre.schedule, root
        self.sampling = default_sampling(pre.info, self.predicts, (self.default_sampler, self.default_steps))
        self.default_sampler, self.default_steps = self.sampling.sampler, self.sampling.steps
        if self.sampling.guide is not None and "autoguidance_scale" not in self.accepts:
            raise ValueError(f"{pre.name}.json's \"sampling\" entry names a guide, but {type(self).__name__} "
                             f"cannot be autoguided: drop guide and guide_scale from it")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. (1, 28, 28)."""
        c = self.model.config
        return (c.in_channels, c.image_size, c.image_size)

    def guided_model(self, num: int, **conditions: Any) -> Model:
        """``model(xt, t) -> eps_pred`` with the conditions and guidance applied (only accepted ones are given)."""
        return self.model

    def check_conditions(self, conditions: dict[str, Any]) -> dict[str, Any]:
        """The conditions that differ from ``DEFAULTS``, after checking the scales and that each is accepted."""
        unknown = set(conditions) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown condition(s) {sorted(unknown)}; a pipeline takes {sorted(DEFAULTS)}")
        check_scale(conditions.get("guidance_scale", 1.0))
        check_scale(conditions.get("classifier_scale", 0.0), "classifier_scale")
        if conditions.get("autoguidance_scale") is not None:
            check_scale(conditions["autoguidance_scale"], "autoguidance_scale")
        if conditions.get("autoguidance_interval") is not None:
            check_interval(conditions["autoguidance_interval"])
        given = {k: v for k, v in conditions.items() if v is not None and not _is_default(k, v)}
        for condition in DEFAULTS:  # in a fixed order, so the first problem is always the same one
            if condition in given and condition not in self.accepts:
                raise not_accepted(self.name, condition)
        return given

    def make_scheduler(self, sampler: str = "ddim", steps: int = 50, eta: float = 0.0) -> DDPMScheduler | DDIMScheduler:
        """DDPM or DDIM over ``steps`` steps, the guess of x_0 clipped to the data's range; DDIM re-derives the
        noise from the clipped guess (``use_clipped_model_output``), which guided sampling needs."""
        if sampler not in SCHEDULERS:
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        check_fits(sampler, self.predicts)
        check_eta(sampler, eta)
        return make_scheduler(sampler, self.schedule, steps, eta, self.clip_range)

    def sampler_and_steps(self, sampler: str | None = None, steps: int | None = None,
                          **conditions: Any) -> tuple[str, int]:
        """The sampler and steps a call with these arguments uses. None: the default sampler, with its steps. A
        sampler given without steps takes the checkpoint's steps only if it is the checkpoint's sampler (those
        steps were chosen for it), else the pipeline class's own (50; 25 for the latent text-to-image ones). A
        pipeline whose guidance needs particular samplers picks its default from the call's ``conditions``."""
        if sampler is None or sampler == self.default_sampler:
            return self.default_sampler, self.default_steps if steps is None else steps
        return sampler, type(self).default_steps if steps is None else steps

    def own_conditions(self, given: dict[str, Any]) -> dict[str, Any]:
        """The conditions a call gives (checked), with those of the checkpoint's own recipe it did not give
        added; here none (``ImagePipeline`` adds the autoguidance its JSON names)."""
        return given

    def resolve(self, sampler: str | None, steps: int | None,
                given: dict[str, Any]) -> tuple[str, int, dict[str, Any], float | None]:
        """(sampler, steps, conditions, sigma_max) a call with these arguments samples with. A call that names no
        sampler gets the checkpoint's own recipe (``defaults.Sampling``: its sampler, steps, sigma_max and
        autoguidance), with the steps and conditions it gives; one that names a sampler gets that sampler as on
        any model (sigma_max None: 80; no autoguidance unless given), so samplers compare fairly."""
        used, used_steps = self.sampler_and_steps(sampler, steps, **given)
        if sampler is not None or used != self.sampling.sampler:  # named, or replaced (classifier guidance)
            return used, used_steps, given, None
        return used, used_steps, self.own_conditions(given), self.sampling.sigma_max

    def evaluations(self, sampler: str, steps: int, given: dict[str, Any], sigma_max: float | None = None) -> int:
        """Network evaluations per sample of ``steps`` steps of ``sampler`` under the resolved conditions, starting
        at ``sigma_max`` (the samplers over noise levels; None: 80)."""
        return get_sampler(sampler).nfe(steps)

    def nfe(self, sampler: str | None = None, steps: int | None = None, **conditions: Any) -> int:
        """Network evaluations per sample of a call with these arguments (None: as the call would resolve them)."""
        return self.evaluations(*self.resolve(sampler, steps, self.check_conditions(conditions)))

    def cost(self, sampler: str | None = None, steps: int | None = None, **conditions: Any) -> str:
        """What one sample of a call with these arguments costs, in words (the CLI prints it)."""
        return f"{self.nfe(sampler, steps, **conditions)} network evaluations per sample"

    def __call__(self, num: int, *, sampler: str | None = None, steps: int | None = None, eta: float = 0.0,
                 seed: int = 0, callback: Callback | None = None, batch_size: int = 256,
                 **conditions: Any) -> torch.Tensor:
        """``num`` samples (num, *sample_shape()) in the data's range, sampled ``batch_size`` at a time, by the
        sampler called ``sampler`` over ``steps`` steps (``samplers.SAMPLERS``: "ddpm", "ddim", "euler", "heun",
        "dpmpp2m", "sde", "dpmpp2m_sde" for a noise predictor; "euler", "heun" for a flow; None: the checkpoint's own
        recipe if its JSON names one (``resolve``; mnist: DPM-Solver++(2M) SDE, 25 steps from sigma = 20,
        autoguided), else DDIM for a noise predictor and Euler for a flow, over 50 steps).

        The same seed, num, batch_size and arguments give the same samples, on every device and thread count.
        One generator serves the batches in turn (each draws its x_T, then its steps' noise), so up to
        ``batch_size`` samples are exactly those of one batch; another batch_size gives other, equally good
        samples. ``callback`` runs for each batch in turn (its i restarts at 0). Samples that become NaN or
        infinite stop the run with the step where it happened.
        """
        if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
            raise ValueError(f"num must be a positive int, got {num!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed!r}; e.g. seed=0")
        given = self.check_conditions(conditions)
        sampler, steps, given, sigma_max = self.resolve(sampler, steps, given)
        run = plan_sampler(sampler, self.schedule, steps, eta, self.clip_range, self.predicts,
                           sigma_max)  # checked before work
        shape = self.sample_shape()
        check_memory(num, shape, self.device)  # before any work
        model = self.guided_model(num, **given)  # checks the conditions once, for all batches
        generator = torch.Generator().manual_seed(seed)
        out = None
        for lo in range(0, num, batch_size):
            n = min(batch_size, num - lo)
            own = {k: v[lo:lo + n] for k, v in given.items() if n < num and _one_per_sample(v, num)}
            watch = FiniteWatch(callback)
            x_T = randn((n, *shape), generator, torch.float32, self.device)  # on the CPU, then moved: any device
            try:
                x = run(self.guided_model(n, **{**given, **own}) if own else model, x_T, generator=generator,
                        callback=watch)
            except torch.OutOfMemoryError as err:
                raise ValueError(f"out of memory sampling {n} at a time on {self.device}: lower batch_size "
                                 f"(--batch-size)") from err
            bad = watch.first_bad()
            if bad is not None:
                raise ValueError(f"sampling stopped: the samples became NaN or infinite at step {bad} of "
                                 f"{watch.steps} (t={watch.timesteps[bad]:.5g}): {self.name} "
                                 f"returned values that are not numbers. Its weights may be broken (a diverged "
                                 f"run): remake or restore the checkpoint; with guidance, try a smaller scale")
            if n == num:
                return x
            out = x.new_empty((num, *shape)) if out is None else out
            out[lo:lo + n] = x
        return out


def _one_per_sample(value: Any, num: int) -> bool:
    """Whether a condition is a list with one entry per sample (prompts), to be split into batches."""
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) == num


def _is_default(name: str, value: Any) -> bool:
    return isinstance(value, type(DEFAULTS[name])) and value == DEFAULTS[name]


def one_per_sample(values: str | Sequence[str], num: int, name: str) -> list[str]:
    """A prompt for all ``num`` samples or one per sample, as a list of 1 or ``num`` strings."""
    items = [values] if isinstance(values, str) else list(values) if isinstance(values, Sequence) else None
    if items is None or not items:
        raise TypeError(f"{name} must be a str or a list of str, got {values!r}")
    if len(items) not in (1, num):
        raise ValueError(f"give one {name} for all {num} samples or one per sample, got {len(items)}")
    return items


def load_judge(classifier: str | nn.Module, root: str | Path | None, device: torch.device) -> nn.Module:
    """A guiding classifier given as a module, or by its checkpoint name."""
    from diffusion_lab.pretrained import load_pretrained

    return classifier if isinstance(classifier, nn.Module) else load_pretrained(classifier, root=root,
                                                                                device=device).model
