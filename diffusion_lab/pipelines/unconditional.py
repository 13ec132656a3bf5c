"""Pipelines for unconditional denoisers: 2-D points (chapter 04) and images, optionally steered by a
noise-aware classifier (classifier guidance, chapter 07)."""

from __future__ import annotations

from typing import Any

import torch

from diffusion_lab.guidance import classifier_guidance
from diffusion_lab.pipelines.base import DiffusionPipeline, load_judge
from diffusion_lab.pipelines.samplers import SCHEDULERS
from diffusion_lab.sampling import Model


class PointsPipeline(DiffusionPipeline):
    """The 2-D toy denoiser: samples are points (num, 2) in about [-3, 3]."""

    clip_range = 3.0

    def sample_shape(self) -> tuple[int, ...]:
        return (self.model.config.data_dim,)


class ImagePipeline(DiffusionPipeline):
    """An unconditional image denoiser; with class_label and classifier_scale s > 0, classifier guidance
    towards that class with the noise-aware ``classifier`` (a module or a checkpoint name)."""

    accepts = frozenset({"class_label", "classifier_scale", "classifier"})

    def sampler_and_steps(self, sampler: str | None = None, steps: int | None = None,
                          **conditions: Any) -> tuple[str, int]:
        """As ``DiffusionPipeline``'s, except that classifier guidance reads the schedule at whole steps
        (``guidance.classifier_guidance``): with it, a checkpoint default that steps between them (mnist's
        DPM-Solver++(2M) SDE) gives way to chapter 05's DDIM with 50 steps."""
        if sampler is None and conditions.get("classifier_scale", 0.0) > 0 and self.default_sampler not in SCHEDULERS:
            return type(self).default_sampler, type(self).default_steps if steps is None else steps
        return super().sampler_and_steps(sampler, steps)

    def guided_model(self, num: int, *, class_label: int | None = None, classifier_scale: float = 0.0,
                     classifier: Any = "mnist_noisy_classifier") -> Model:
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


def check_class(class_label: object, num_classes: int) -> int:
    """A class index 0..num_classes-1, or a clear error."""
    if isinstance(class_label, bool) or not isinstance(class_label, int) or not 0 <= class_label < num_classes:
        raise ValueError(f"class_label must be a digit 0..{num_classes - 1}, got {class_label!r}")
    return class_label
