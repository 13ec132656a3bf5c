"""Pipelines for unconditional denoisers: 2-D points (chapter 04) and images, optionally steered by a
noise-aware classifier (classifier guidance, chapter 07) or by a weaker model of the same data (autoguidance,
chapter 09)."""

from __future__ import annotations

from typing import Any

import torch

from diffusion_lab.guidance import autoguidance, classifier_guidance, unconditional_branch
from diffusion_lab.ode import karras_sigmas_for
from diffusion_lab.pipelines.base import DiffusionPipeline, load_judge
from diffusion_lab.pipelines.defaults import check_counted
from diffusion_lab.pipelines.samplers import SCHEDULERS, get_sampler
from diffusion_lab.sampling import Model


class PointsPipeline(DiffusionPipeline):
    """The 2-D toy denoiser: samples are points (num, 2) in about [-3, 3]."""

    clip_range = 3.0

    def sample_shape(self) -> tuple[int, ...]:
        return (self.model.config.data_dim,)


class ImagePipeline(DiffusionPipeline):
    """An unconditional image denoiser; with class_label and classifier_scale s > 0, classifier guidance
    towards that class with the noise-aware ``classifier`` (a module or a checkpoint name).

    With autoguidance_scale w, autoguidance by the guide its checkpoint names (``defaults.Sampling``): the
    shipped mnist's own recipe, a call that names no sampler, is guided by mnist_cond's unconditional branch
    with w = 1.5 at the noise levels sigma between 1 and 5 (autoguidance_interval); w = 1 turns that off. A call
    that names a sampler is unguided unless it gives w (then at every step, unless it gives an interval too).
    Classifier guidance and autoguidance are one or the other."""

    accepts = frozenset({"class_label", "classifier_scale", "classifier", "autoguidance_scale",
                         "autoguidance_interval"})

    def sampler_and_steps(self, sampler: str | None = None, steps: int | None = None,
                          **conditions: Any) -> tuple[str, int]:
        """As ``DiffusionPipeline``'s, except that classifier guidance reads the schedule at whole steps
        (``guidance.classifier_guidance``): with it, a checkpoint default that steps between them (mnist's
        DPM-Solver++(2M) SDE) gives way to chapter 05's DDIM with 50 steps."""
        if sampler is None and conditions.get("classifier_scale", 0.0) > 0 and self.default_sampler not in SCHEDULERS:
            return type(self).default_sampler, type(self).default_steps if steps is None else steps
        return super().sampler_and_steps(sampler, steps)

    def own_conditions(self, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` with the checkpoint's autoguidance added (its scale, unless the call gave one, and its interval
        of noise levels), unless the call chose classifier guidance."""
        if self.sampling.guide is None or "classifier_scale" in given:
            return given
        own = {"autoguidance_scale": self.sampling.guide_scale}
        if self.sampling.guide_interval is not None:
            own["autoguidance_interval"] = self.sampling.guide_interval
        return {**own, **given}

    def resolve(self, sampler: str | None, steps: int | None,
                given: dict[str, Any]) -> tuple[str, int, dict[str, Any], float | None]:
        """As ``DiffusionPipeline``'s, after checking that an interval of guidance comes with autoguidance and a
        sampler whose cost it can count."""
        used, used_steps, given, sigma_max = super().resolve(sampler, steps, given)
        if given.get("autoguidance_interval") is not None:
            if given.get("autoguidance_scale") is None:
                raise ValueError("autoguidance_interval limits autoguidance to some noise levels: give "
                                 "autoguidance_scale too")
            check_counted(used)
        return used, used_steps, given, sigma_max

    def evaluations(self, sampler: str, steps: int, given: dict[str, Any], sigma_max: float | None = None) -> int:
        """As ``DiffusionPipeline``'s; autoguidance evaluates the guide too, at every step or at those whose noise
        level lies in its interval."""
        nfe = get_sampler(sampler).nfe(steps)
        if given.get("autoguidance_scale", 1.0) == 1:
            return nfe
        interval = given.get("autoguidance_interval")
        if interval is None:
            return nfe if given["autoguidance_scale"] == 0 else 2 * nfe
        top = {} if sigma_max is None else {"sigma_max": sigma_max}
        sigmas = karras_sigmas_for(self.schedule, steps, **top)[:-1]  # where a one-evaluation sampler evaluates
        return nfe + int(((sigmas >= interval[0]) & (sigmas <= interval[1])).sum())

    def cost(self, sampler: str | None = None, steps: int | None = None, **conditions: Any) -> str:
        used, used_steps, given, _ = self.resolve(sampler, steps, self.check_conditions(conditions))
        nfe, own = self.nfe(sampler, steps, **conditions), get_sampler(used).nfe(used_steps)
        return f"{nfe} network evaluations per sample" + (
            f" ({own} of {self.name} and {nfe - own} of its guide {self.sampling.guide})" if nfe > own else "")

    def guided_model(self, num: int, *, class_label: int | None = None, classifier_scale: float = 0.0,
                     classifier: Any = "mnist_noisy_classifier", autoguidance_scale: float | None = None,
                     autoguidance_interval: tuple[float, float] | None = None) -> Model:
        if autoguidance_scale is not None:
            if classifier_scale > 0 or class_label is not None:
                raise ValueError("classifier guidance and autoguidance are one or the other: with classifier_scale, "
                                 "drop autoguidance_scale (--autoguidance-scale) or give 1")
            interval = {} if autoguidance_interval is None else {"schedule": self.schedule,
                                                                 "sigma_interval": autoguidance_interval}
            return autoguidance(self.model, self.guide(), autoguidance_scale, **interval)
        if class_label is not None:
            check_class(class_label, 10)
        if classifier_scale > 0 and class_label is None:
            raise ValueError("classifier guidance needs the class to steer towards: give class_label (--class)")
        if class_label is not None and classifier_scale == 0:
            raise ValueError(f"{self.name} is unconditional: to get a chosen digit, use classifier_scale > 0 "
                             f"(classifier guidance) or the class-conditional model mnist_cond")
        if classifier_scale == 0:
            return self.model
        judge = load_judge(classifier, self.root, self.device)
        cond = torch.full((1,), class_label, dtype=torch.long)
        return classifier_guidance(self.model, cond, judge, self.schedule, classifier_scale)

    def guide(self) -> Model:
        """The weaker model autoguidance steers away from, ``guide(xt, t) -> eps``, loaded once: the checkpoint
        its JSON names, with the same sample shape and noise schedule; a class-conditional one without its class."""
        if getattr(self, "_guide", None) is None:
            if self.sampling.guide is None:
                raise ValueError(f"{self.name} names no guide in its JSON (\"sampling\": {{\"guide\": ...}}), so "
                                 f"it cannot be autoguided: drop autoguidance_scale (--autoguidance-scale)")
            from diffusion_lab.pretrained import load_pretrained

            pre = load_pretrained(self.sampling.guide, root=self.root, device=self.device)
            shape = ImagePipeline.sample_shape(self)
            config = getattr(pre.model, "config", None)
            same_schedule = pre.schedule is not None and pre.schedule.T == self.schedule.T and torch.allclose(
                pre.schedule.alpha_bars.cpu(), self.schedule.alpha_bars.cpu())
            if not same_schedule or (getattr(config, "in_channels", None), getattr(config, "image_size", None)) \
                    != (shape[0], shape[1]):
                raise ValueError(f"{self.name}'s guide {pre.name} must predict the noise of the same images on the "
                                 f"same noise schedule; name such a checkpoint as its guide")
            conditional = getattr(config, "num_classes", None) is not None
            self._guide = unconditional_branch(pre.model, pre.model.null_condition(1)) if conditional else pre.model
        return self._guide


def check_class(class_label: object, num_classes: int) -> int:
    """A class index 0..num_classes-1, or a clear error."""
    if isinstance(class_label, bool) or not isinstance(class_label, int) or not 0 <= class_label < num_classes:
        raise ValueError(f"class_label must be a digit 0..{num_classes - 1}, got {class_label!r}")
    return class_label
