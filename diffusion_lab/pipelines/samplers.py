"""Which sampler a name means, for the pipelines and ``--sampler`` (chapters 05 and 09): one line per sampler.

Each entry knows how to plan K steps for the kinds of model it fits, keyed by what the model predicts: the
noise eps (chapters 04-08: chapter 05's DDPM and DDIM schedulers, or chapter 09's solvers over Karras et al.'s
noise levels) or a flow's velocity (chapter 09's flow matching: Euler or Heun over equal steps in tau), and how
many network evaluations that costs. A plan is a function ``run(model, x_T, *, generator, callback) -> x_0``, so
a pipeline samples with any of them the same way. A new sampler is a new function (``ode.py``, ``sde.py``,
``flows.py``) and one line in ``SAMPLERS``; a pipeline says what its model predicts (``DiffusionPipeline.predicts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_lab.flows import flow_euler, flow_heun
from diffusion_lab.ode import dpmpp_2m, euler, heun, karras_sigmas_for
from diffusion_lab.sampling import Callback, DDIMScheduler, DDPMScheduler, Model, sample
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.sde import dpmpp_2m_sde, reverse_sde
from diffusion_lab.tensors import check_int

# run(model, x_T, *, generator, callback) -> x_0: x_T (B, ...) ~ N(0, I), one planned way of sampling
Run = Callable[..., torch.Tensor]
# plan(schedule, steps, eta, clip_range, sigma_max) -> run, its settings checked (schedule: None for a flow;
# sigma_max: the highest noise level of the solvers over Karras et al.'s levels, None their default 80)
Plan = Callable[[NoiseSchedule | None, int, float, float | None, float | None], Run]

# What a model predicts, the key of each sampler's plans, and how the errors name it.
EPS, VELOCITY = "eps", "velocity"
PREDICTIONS = {EPS: "the noise eps (a diffusion model, chapters 04-08)",
               VELOCITY: "a flow's velocity (flow matching, chapter 09)"}


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
    def plan(schedule: NoiseSchedule, steps: int, eta: float, clip_range: float | None,
             sigma_max: float | None = None) -> Run:
        _no_sigma_max(sigma_max, f"sampler {sampler!r}")
        scheduler = make_scheduler(sampler, schedule, steps, eta, clip_range)  # checks steps and eta now

        def run(model: Model, x_T: torch.Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None) -> torch.Tensor:
            return sample(model, scheduler, x_T.shape, generator=generator, x_T=x_T, callback=callback)

        return run

    return plan


def _over_karras_sigmas(solver: Callable[..., torch.Tensor]) -> Plan:
    """Plan a chapter-09 solver over K of Karras et al.'s noise levels (rho = 7, from sigma_max = 80 at most, or
    the one given: a checkpoint's own, ``defaults.Sampling``)."""
    def plan(schedule: NoiseSchedule, steps: int, eta: float, clip_range: float | None,
             sigma_max: float | None = None) -> Run:
        top = {} if sigma_max is None else {"sigma_max": sigma_max}
        sigmas = karras_sigmas_for(schedule, check_int(steps, "steps", 1), **top)

        def run(model: Model, x_T: torch.Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None) -> torch.Tensor:
            return solver(model, schedule, x_T, sigmas, generator=generator, callback=callback, clip=clip_range)

        return run

    return plan


def _flow(solver: Callable[..., torch.Tensor]) -> Plan:
    """Plan a flow's ODE solver (``flows.py``) over K equal steps in tau, from the noise (tau = 0) to the data; a
    flow has no noise schedule. The samples are clamped to the data's range at the end (None: not clamped)."""
    def plan(schedule: NoiseSchedule | None, steps: int, eta: float, clip_range: float | None,
             sigma_max: float | None = None) -> Run:
        _no_sigma_max(sigma_max, "a flow's solver")
        check_int(steps, "steps", 1)

        def run(model: Model, x_T: torch.Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None) -> torch.Tensor:
            x = solver(model, x_T, steps, callback=callback)  # draws no noise: generator unused
            return x if clip_range is None else x.clamp(-clip_range, clip_range)

        return run

    return plan


def _no_sigma_max(sigma_max: float | None, what: str) -> None:
    if sigma_max is not None:
        raise ValueError(f"sigma_max is for the solvers over noise levels sigma (chapter 09); {what} does not "
                         f"use one: drop it")


@dataclass(frozen=True)
class Sampler:
    """One way to sample. plans: what the model predicts (``EPS``, ``VELOCITY``) -> plan(schedule, steps, eta,
    clip_range) -> run, checking its settings before any work; nfe(steps): network evaluations per sample (the
    same for every plan); noise: what it does instead of taking DDIM's eta (None: takes it); over_sigmas: whether
    it steps a noise predictor over Karras et al.'s noise levels (which then take a ``sigma_max``)."""

    plans: dict[str, Plan]
    nfe: Callable[[int], int]
    about: str
    noise: str | None = None
    over_sigmas: bool = False


SAMPLERS: dict[str, Sampler] = {
    "ddpm": Sampler({EPS: _scheduled("ddpm")}, lambda k: k, "ancestral sampling, Ho et al. 2020 (chapter 05)",
                    "DDPM always adds its full noise"),
    "ddim": Sampler({EPS: _scheduled("ddim")}, lambda k: k, "DDIM, Song et al. 2021 (chapter 05)"),
    "euler": Sampler({EPS: _over_karras_sigmas(euler), VELOCITY: _flow(flow_euler)}, lambda k: k,
                     "Euler on the probability-flow ODE, or on a flow's (chapter 09)",
                     "Euler solves the probability-flow ODE and adds no noise", True),
    "heun": Sampler({EPS: _over_karras_sigmas(heun), VELOCITY: _flow(flow_heun)}, lambda k: 2 * k - 1,
                    "Heun, EDM's Algorithm 1, on the probability-flow ODE or a flow's (chapter 09)",
                    "Heun solves the probability-flow ODE and adds no noise", True),
    "dpmpp2m": Sampler({EPS: _over_karras_sigmas(dpmpp_2m)}, lambda k: k,
                       "DPM-Solver++(2M), Lu et al. 2022 (chapter 09)",
                       "DPM-Solver++(2M) solves the probability-flow ODE and adds no noise", True),
    "sde": Sampler({EPS: _over_karras_sigmas(reverse_sde)}, lambda k: k,
                   "Euler-Maruyama on the reverse SDE (chapter 09)", "the reverse SDE adds the noise its equation says",
                   True),
    "dpmpp2m_sde": Sampler({EPS: _over_karras_sigmas(dpmpp_2m_sde)}, lambda k: k,
                           "DPM-Solver++(2M) for the reverse SDE, Lu et al. 2022 (chapter 09)",
                           "DPM-Solver++(2M) SDE adds the noise the reverse SDE says", True),
}


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``, or a clear error listing them."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def samplers_for(predicts: str) -> list[str]:
    """The names of the samplers that fit a model predicting ``predicts`` (``EPS`` or ``VELOCITY``)."""
    return [name for name, sampler in SAMPLERS.items() if predicts in sampler.plans]


def check_fits(name: str, predicts: str = EPS) -> Sampler:
    """The sampler called ``name``, after checking it can sample a model that predicts ``predicts``."""
    sampler = get_sampler(name)
    if predicts not in PREDICTIONS:
        raise ValueError(f"predicts must be one of {', '.join(PREDICTIONS)}, got {predicts!r}")
    if predicts not in sampler.plans:
        needs = " or ".join(PREDICTIONS[p] for p in sampler.plans)
        raise ValueError(f"sampler {name!r} needs a model that predicts {needs}; this model predicts "
                         f"{PREDICTIONS[predicts]}: use sampler={' or '.join(map(repr, samplers_for(predicts)))} "
                         f"(--sampler)")
    return sampler


def check_eta(name: str, eta: float, predicts: str = EPS) -> None:
    """eta (DDIM's noise) is for DDIM alone: a clear error when another sampler is given one."""
    sampler = get_sampler(name)
    if sampler.noise is not None and eta != 0:
        ddim = " or use sampler='ddim' (--sampler ddim)" if "ddim" in samplers_for(predicts) else ""
        raise ValueError(f"eta={eta} is DDIM's setting: {sampler.noise}. Drop eta (--eta){ddim}")


def plan_sampler(name: str, schedule: NoiseSchedule | None, steps: int, eta: float = 0.0,
                 clip_range: float | None = 1.0, predicts: str = EPS, sigma_max: float | None = None) -> Run:
    """``run(model, x_T, *, generator, callback) -> x_0`` for sampler ``name`` over ``steps`` steps, for a model
    that predicts ``predicts`` (``EPS``: on its noise ``schedule``; ``VELOCITY``: a flow, schedule None), with its
    settings checked now (before any sampling). clip_range: the data's range (None: unbounded, latents);
    sigma_max: where the solvers over noise levels start (None: 80; an error for the others)."""
    sampler = check_fits(name, predicts)
    check_eta(name, eta, predicts)
    return sampler.plans[predicts](schedule, steps, eta, clip_range, sigma_max)
