"""Which sampler a name means, for the pipelines and ``--sampler`` (chapters 05 and 09): one line per sampler.

Each entry knows how to plan K steps on a noise schedule (chapter 05's DDPM and DDIM schedulers, or chapter
09's solvers over Karras et al.'s noise levels) and how many network evaluations that costs. A plan is a
function ``run(model, x_T, *, generator, callback) -> x_0``, so a pipeline samples with any of them the same
way. A new sampler is a new function (``ode.py``, ``sde.py``) and one line in ``SAMPLERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_lab.ode import dpmpp_2m, euler, heun, karras_sigmas_for
from diffusion_lab.sampling import Callback, DDIMScheduler, DDPMScheduler, Model, sample
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.sde import reverse_sde
from diffusion_lab.tensors import check_int

# run(model, x_T, *, generator, callback) -> x_0: x_T (B, ...) ~ N(0, I), one planned way of sampling
Run = Callable[..., torch.Tensor]
# plan(schedule, steps, eta, clip_range) -> run, its settings checked
Plan = Callable[[NoiseSchedule, int, float, float | None], Run]


# chapter 05's schedulers: (schedule, eta, clip settings) -> scheduler
SCHEDULERS: dict[str, Callable[[NoiseSchedule, float, dict], DDPMScheduler | DDIMScheduler]] = {
    "ddpm": lambda schedule, eta, clip: DDPMScheduler(schedule, **clip),
    "ddim": lambda schedule, eta, clip: DDIMScheduler(schedule, eta=eta, **clip),
}


def make_scheduler(sampler: str, schedule: NoiseSchedule, steps: int, eta: float = 0.0,
                   clip_range: float | None = 1.0) -> DDPMScheduler | DDIMScheduler:
    """Chapter 05's DDPM or DDIM scheduler over ``steps`` steps, the guess of x_0 clipped to [-clip_range,
    clip_range] (None: not clipped); DDIM re-derives the noise from the clipped guess, which guidance needs."""
    clip = {"clip_sample": clip_range is not None, "clip_sample_range": clip_range or 1.0}
    scheduler = SCHEDULERS[sampler](schedule, eta, clip)
    scheduler.set_timesteps(steps)
    return scheduler


def _scheduled(sampler: str) -> Plan:
    """Plan chapter 05's loop over the DDPM or DDIM scheduler."""
    def plan(schedule: NoiseSchedule, steps: int, eta: float, clip_range: float | None) -> Run:
        scheduler = make_scheduler(sampler, schedule, steps, eta, clip_range)  # checks steps and eta now

        def run(model: Model, x_T: torch.Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None) -> torch.Tensor:
            return sample(model, scheduler, x_T.shape, generator=generator, x_T=x_T, callback=callback)

        return run

    return plan


def _over_karras_sigmas(solver: Callable[..., torch.Tensor]) -> Plan:
    """Plan a chapter-09 solver over K of Karras et al.'s noise levels (rho = 7, from sigma = 80 at most)."""
    def plan(schedule: NoiseSchedule, steps: int, eta: float, clip_range: float | None) -> Run:
        sigmas = karras_sigmas_for(schedule, check_int(steps, "steps", 1))

        def run(model: Model, x_T: torch.Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None) -> torch.Tensor:
            return solver(model, schedule, x_T, sigmas, generator=generator, callback=callback, clip=clip_range)

        return run

    return plan


@dataclass(frozen=True)
class Sampler:
    """One way to sample. plan(schedule, steps, eta, clip_range) -> run, checking its settings before any work;
    nfe(steps): network evaluations per sample; noise: what it does instead of taking DDIM's eta (None: takes it)."""

    plan: Plan
    nfe: Callable[[int], int]
    about: str
    noise: str | None = None


SAMPLERS: dict[str, Sampler] = {
    "ddpm": Sampler(_scheduled("ddpm"), lambda k: k, "ancestral sampling, Ho et al. 2020 (chapter 05)",
                    "DDPM always adds its full noise"),
    "ddim": Sampler(_scheduled("ddim"), lambda k: k, "DDIM, Song et al. 2021 (chapter 05)"),
    "euler": Sampler(_over_karras_sigmas(euler), lambda k: k, "Euler on the probability-flow ODE (chapter 09)",
                     "Euler solves the probability-flow ODE and adds no noise"),
    "heun": Sampler(_over_karras_sigmas(heun), lambda k: 2 * k - 1, "Heun, EDM's Algorithm 1 (chapter 09)",
                    "Heun solves the probability-flow ODE and adds no noise"),
    "dpmpp2m": Sampler(_over_karras_sigmas(dpmpp_2m), lambda k: k, "DPM-Solver++(2M), Lu et al. 2022 (chapter 09)",
                       "DPM-Solver++(2M) solves the probability-flow ODE and adds no noise"),
    "sde": Sampler(_over_karras_sigmas(reverse_sde), lambda k: k, "Euler-Maruyama on the reverse SDE (chapter 09)",
                   "the reverse SDE adds the noise its equation says"),
}


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``, or a clear error listing them."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def check_eta(name: str, eta: float) -> None:
    """eta (DDIM's noise) is for DDIM alone: a clear error when another sampler is given one."""
    sampler = get_sampler(name)
    if sampler.noise is not None and eta != 0:
        raise ValueError(f"eta={eta} is DDIM's setting: {sampler.noise}. Drop eta (--eta) or use sampler='ddim' "
                         f"(--sampler ddim)")


def plan_sampler(name: str, schedule: NoiseSchedule, steps: int, eta: float = 0.0,
                 clip_range: float | None = 1.0) -> Run:
    """``run(model, x_T, *, generator, callback) -> x_0`` for sampler ``name`` over ``steps`` steps, with its
    settings checked now (before any sampling). clip_range: the data's range (None: unbounded, latents)."""
    check_eta(name, eta)
    return get_sampler(name).plan(schedule, steps, eta, clip_range)
