"""The pipeline of a class-conditional denoiser, with classifier-free guidance (chapter 07)."""

from __future__ import annotations

import torch

from diffusion_lab.guidance import classifier_free_guidance
from diffusion_lab.pipelines.base import DiffusionPipeline, not_accepted
from diffusion_lab.pipelines.unconditional import check_class
from diffusion_lab.sampling import Model


class ClassConditionalPipeline(DiffusionPipeline):
    """``model(xt, t, cond)`` with cond a class index (B,): class_label picks it (none: the null class ∅, the
    unconditional model), guidance_scale w applies classifier-free guidance towards it."""

    accepts = frozenset({"class_label", "guidance_scale"})

    def guided_model(self, num: int, *, class_label: int | None = None, guidance_scale: float = 1.0) -> Model:
        null = self.model.null_condition(1)  # (1,)
        if class_label is None:
            if guidance_scale != 1.0:
                raise not_accepted(self.name, "guidance_scale")
            return lambda x, t: self.model(x, t, null.expand(x.shape[0]))
        check_class(class_label, self.model.config.num_classes)
        cond = torch.full((1,), class_label, dtype=torch.long, device=self.device)
        return classifier_free_guidance(self.model, cond, null, guidance_scale)
