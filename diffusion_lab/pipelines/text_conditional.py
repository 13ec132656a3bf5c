"""The pipeline of a text-conditional denoiser, with classifier-free guidance and negative prompts (chapters 06-07)."""

from __future__ import annotations

from collections.abc import Sequence

from diffusion_lab.guidance import classifier_free_guidance
from diffusion_lab.pipelines.base import DiffusionPipeline, one_per_sample
from diffusion_lab.sampling import Model


class TextConditionalPipeline(DiffusionPipeline):
    """``model(xt, t, cond)`` with cond the token ids of a prompt (B, L). A negative prompt takes the place of
    the empty prompt ∅ in classifier-free guidance, so samples are pushed away from it."""

    accepts = frozenset({"prompt", "negative_prompt", "guidance_scale"})

    def sample_shape(self) -> tuple[int, ...]:
        c = self.model.config.unet
        return (c.in_channels, c.image_size, c.image_size)

    def guided_model(self, num: int, *, prompt: str | Sequence[str] | None = None,
                     negative_prompt: str | Sequence[str] | None = None, guidance_scale: float = 1.0) -> Model:
        if prompt is None:
            if guidance_scale != 1.0:
                raise ValueError("guidance_scale needs a prompt to guide towards")
            raise ValueError(f"{self.name} draws what a prompt describes: give one, "
                             f"e.g. prompt='a small red circle in the top left'")
        if negative_prompt is not None and guidance_scale == 1.0:
            raise ValueError("a negative prompt only acts through guidance: set guidance_scale above 1 (e.g. 3)")
        cond = self.model.encode_prompts(one_per_sample(prompt, num, "prompt"))  # (1 or num, L)
        null = (self.model.encode_prompts(one_per_sample(negative_prompt, num, "negative_prompt"))
                if negative_prompt is not None else self.model.null_condition(1))
        return classifier_free_guidance(self.model, cond, null, guidance_scale)
