"""A checkpoint's own way of being sampled: the ``"sampling"`` entry of its JSON (chapter 09).

A bench measures which sampler suits a model best, as diffusers keeps a scheduler config beside each model;
the checkpoint carries the answer, so ``load_pipeline("mnist")(16)`` draws with it and nobody must remember it:

    {"sampler": "dpmpp2m_sde", "steps": 25, "sigma_max": 20.0, "guide": "mnist_cond", "guide_scale": 1.5,
     "guide_interval": [1.0, 5.0]}

``sampler`` and ``steps`` are required; the rest are optional. ``sigma_max`` is the highest noise level of the
samplers that step over Karras et al.'s noise levels (default 80, EDM's). ``guide`` names a weaker model of the
same data that steers the samples by autoguidance (Karras et al. 2024, ``guidance.autoguidance``) with scale
``guide_scale``; a class-conditional guide is read without its class. ``guide_interval`` (lo, hi) limits the
guidance to the steps whose noise level sigma lies in [lo, hi] (Kynkäänniemi et al. 2024); it needs a sampler
with one network evaluation a step over the noise levels, so the cost can be counted. All of it is the checkpoint's recipe, what
a call that names no sampler gets (``DiffusionPipeline.resolve``); a call that names a sampler gets that sampler
as on any model, so samplers compare fairly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffusion_lab.guidance import check_interval
from diffusion_lab.pipelines.samplers import EPS, SAMPLERS, check_fits

REQUIRED, OPTIONAL = {"sampler", "steps"}, {"sigma_max", "guide", "guide_scale", "guide_interval"}
EXAMPLE = '{"sampler": "ddpm", "steps": 32}'


@dataclass(frozen=True)
class Sampling:
    """How a checkpoint is sampled when a call names no sampler. sigma_max: None is the sampler's own (80);
    guide: a checkpoint name (None: no autoguidance), applied with weight guide_scale (w; 1 is no guidance) at
    the noise levels of guide_interval (None: at every step)."""

    sampler: str
    steps: int
    sigma_max: float | None = None
    guide: str | None = None
    guide_scale: float = 1.0
    guide_interval: tuple[float, float] | None = None

    @property
    def guided(self) -> bool:
        """Whether the default draws with autoguidance (two network evaluations a step)."""
        return self.guide is not None and self.guide_scale != 1.0


def default_sampling(info: dict, predicts: str, fallback: tuple[str, int]) -> Sampling:
    """The checkpoint's own sampling, from its JSON's ``"sampling"`` entry, else ``fallback`` (sampler, steps),
    the pipeline's own default. info: the checkpoint's JSON (``Pretrained.info``); predicts: what its model
    predicts. A wrong entry is a clear error naming the file, so a hand-edited JSON fails when it is loaded, not
    in the middle of sampling."""
    entry = info.get("sampling")
    if entry is None:
        return Sampling(*fallback)
    where = f"{info.get('name', 'the checkpoint')}.json's \"sampling\" entry"
    if not isinstance(entry, dict) or not REQUIRED <= set(entry) <= REQUIRED | OPTIONAL:
        raise ValueError(f"{where} must be like {EXAMPLE} (optionally with {', '.join(sorted(OPTIONAL))}), "
                         f"got {entry!r}: mend or delete it")
    sampler, steps = entry["sampler"], entry["steps"]
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"{where} names sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    check_fits(sampler, predicts)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{where} has steps={steps!r}; it must be a whole number of steps, 1 or more")
    sigma_max, guide, scale = entry.get("sigma_max"), entry.get("guide"), entry.get("guide_scale", 1.0)
    if sigma_max is not None:
        if not _positive_number(sigma_max):
            raise ValueError(f"{where} has sigma_max={sigma_max!r}; it must be a number above 0, e.g. 80.0")
        if predicts != EPS or not SAMPLERS[sampler].over_sigmas:
            raise ValueError(f"{where} gives sigma_max, but {sampler!r} does not step over noise levels sigma: "
                             f"drop sigma_max, or name one of "
                             f"{', '.join(n for n, s in SAMPLERS.items() if s.over_sigmas)}")
    if guide is not None and (not isinstance(guide, str) or not guide):
        raise ValueError(f"{where} has guide={guide!r}; it must name a checkpoint, e.g. \"mnist_cond\"")
    if not (_positive_number(scale) or scale == 0):
        raise ValueError(f"{where} has guide_scale={scale!r}; it must be a number >= 0, e.g. 1.5")
    if guide is None and ("guide_scale" in entry or "guide_interval" in entry):
        raise ValueError(f"{where} gives guide_scale or guide_interval but no guide: name the guide's checkpoint, "
                         f"or drop them")
    interval = entry.get("guide_interval")
    if interval is not None:
        try:
            interval = check_interval(interval, "guide_interval")
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        check_counted(sampler)
    return Sampling(sampler, steps, None if sigma_max is None else float(sigma_max), guide, float(scale), interval)


def check_counted(sampler: str) -> None:
    """Guidance limited to an interval of noise levels needs a sampler that evaluates the network once at each
    of its noise levels, so that its cost is known before sampling: a clear error for the others."""
    if not (SAMPLERS[sampler].over_sigmas and SAMPLERS[sampler].nfe(3) == 3):
        fits = [n for n, s in SAMPLERS.items() if s.over_sigmas and s.nfe(3) == 3]
        raise ValueError(f"guidance over an interval of noise levels needs one of {', '.join(fits)}; "
                         f"{sampler!r} does not step once per noise level")


def _positive_number(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
            and value > 0)
