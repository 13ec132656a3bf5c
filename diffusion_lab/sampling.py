"""Sampling: DDPM ancestral sampling and DDIM as visible loops over a model callable (chapter 05).

The pieces, smallest first (Ho et al. 2020 notation; steps counted from 0, the paper counts from 1):

    predict_x0               x_0 guessed from x_t and eps_pred                      DDPM eq. 15
    posterior_mean_variance  mean and variance of q(x_{t_prev} | x_t, x_0)          DDPM eq. 6-7
    ddpm_step                one ancestral step, x_{t_prev} ~ q(. | x_t, pred_x0)   DDPM Algorithm 2
    ddim_step                one DDIM step with noise level eta                     DDIM eq. 12, 16
    DDPMScheduler, DDIMScheduler   diffusers-shaped: set_timesteps, timesteps, step -> StepOutput
    sample                   the loop: start from noise, call the model, step, report to a callback

``t_prev`` is the step the loop visits next (t - 1 with all T steps, further back with fewer);
``t_prev = -1`` means "past the last step", where alpha_bar = 1 (nothing noised). The schedulers match
diffusers' DDPMScheduler (variance_type="fixed_small") and DDIMScheduler (set_alpha_to_one=True),
both with prediction_type="epsilon" and timestep_spacing="leading"; tests/test_sampling.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims, check_float_tensor

# model(xt, t_batch) -> eps_pred: xt (B, ...), t_batch int64 (B,). Guidance (chapter 07) wraps a model
# into another callable with this same signature, so the loops below never change.
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# callback(i, t, xt, pred_x0), called after step i (see `sample`).
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class StepOutput:
    """What every scheduler step returns: the next sample and the model's guess of x_0 at this step."""

    prev_sample: torch.Tensor  # x_{t_prev}, (B, ...)
    pred_x0: torch.Tensor  # predicted x_0 from x_t, (B, ...)

    @property
    def pred_original_sample(self) -> torch.Tensor:
        """diffusers' name for ``pred_x0``, so code written for diffusers' outputs reads ours too."""
        return self.pred_x0


def _alpha_bar(schedule: NoiseSchedule, t: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t for t in -1..T-1 (alpha_bar_{-1} = 1), broadcastable against ``like`` (B, ...), on its
    device and dtype. ``t`` is an int (one step for the batch) or int64 (B,) (one step per sample)."""
    t = torch.as_tensor(t)
    before_start = t == -1
    t = schedule.check_t(torch.where(before_start, 0, t))  # clear errors for floats or steps out of range
    if t.ndim == 1 and t.shape[0] not in (1, like.shape[0]):
        raise ValueError(f"t has {t.shape[0]} steps but the batch has {like.shape[0]} samples")
    abar = torch.where(before_start.to(t.device), 1.0, schedule.alpha_bars[t])
    abar = abar.to(device=like.device, dtype=like.dtype)
    return append_dims(abar, like.ndim) if abar.ndim == 1 else abar


def _check_pair(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    check_float_tensor(a, name_a)
    check_float_tensor(b, name_b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def predict_x0(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps_pred: torch.Tensor,
    t: int | torch.Tensor,
    clip: bool = False,
    clip_range: float = 1.0,
) -> torch.Tensor:
    """The model's guess of x_0: DDPM eq. 4 solved for x_0 (eq. 15 of Ho et al. 2020).

    pred_x0 = (x_t - sqrt(1 - abar_t) * eps_pred) / sqrt(abar_t)

    xt, eps_pred: (B, ...); t: an int or int64 (B,). ``clip=True`` clamps the guess to [-clip_range,
    clip_range], the range of the training data (diffusers' ``clip_sample`` and ``clip_sample_range``).
    Near t = T - 1 the division by sqrt(abar_t) (about 5e-5 at the cosine schedule's last step) turns a
    tiny error in eps_pred into a huge one, so samplers clip by default. Returns (B, ...) like xt.
    """
    _check_pair(eps_pred, xt, "eps_pred", "xt")
    abar_t = _alpha_bar(schedule, t, xt)
    x0 = (xt - (1 - abar_t).sqrt() * eps_pred) / abar_t.sqrt()
    return x0.clamp(-clip_range, clip_range) if clip else x0


def posterior_mean_variance(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    xt: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the posterior q(x_{t_prev} | x_t, x_0), DDPM eq. 6-7 (Ho et al. 2020).

    With alpha_t = abar_t / abar_prev and beta_t = 1 - alpha_t (the schedule's own alpha_t, beta_t when
    t_prev = t - 1, the default; fewer sampling steps skip, t_prev < t - 1, as in diffusers):

        mean = sqrt(abar_prev) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) x_t
        beta_tilde_t = (1 - abar_prev) / (1 - abar_t) * beta_t      (abar_{-1} = 1, so beta_tilde_0 = 0)

    x0, xt: (B, ...); t, t_prev: ints or int64 (B,). Returns (mean (B, ...), variance broadcastable to it).
    """
    _check_pair(x0, xt, "x0", "xt")
    t_prev = torch.as_tensor(t) - 1 if t_prev is None else t_prev
    if bool((torch.as_tensor(t_prev) >= torch.as_tensor(t)).any()):
        raise ValueError("t_prev must be smaller than t: the posterior steps from x_t back to x_{t_prev}")
    abar_t, abar_prev = _alpha_bar(schedule, t, xt), _alpha_bar(schedule, t_prev, xt)
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    coef_x0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
    coef_xt = alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)
    mean = coef_x0 * x0 + coef_xt * xt
    variance = (1 - abar_prev) / (1 - abar_t) * beta_t
    return mean, variance


def ddpm_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps_pred: torch.Tensor,
    t: int,
    t_prev: int,
    noise: torch.Tensor | None,
    clip: bool = False,
    clip_range: float = 1.0,
) -> StepOutput:
    """One ancestral step, line 4 of Algorithm 2 of Ho et al. 2020, written through the posterior:

    x_{t_prev} = mean(x_t, pred_x0) + sqrt(beta_tilde_t) * z,   z = ``noise`` ~ N(0, I) shaped like xt.

    Pass ``noise=None`` at the last step (t = 0), where the algorithm sets z = 0.
    """
    x0 = predict_x0(schedule, xt, eps_pred, t, clip=clip, clip_range=clip_range)
    mean, variance = posterior_mean_variance(schedule, x0, xt, t, t_prev)
    prev = mean if noise is None else mean + variance.sqrt() * noise
    return StepOutput(prev_sample=prev, pred_x0=x0)


def ddim_sigma(abar_t: torch.Tensor, abar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """The noise scale of a DDIM step, Song et al. 2021, eq. 16:

    sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)

    eta = 0 gives deterministic DDIM; eta = 1 gives DDPM's posterior standard deviation sqrt(beta_tilde).
    """
    return eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()


def ddim_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps_pred: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip: bool = False,
    clip_range: float = 1.0,
    use_clipped_model_output: bool = True,
) -> StepOutput:
    """One DDIM step, Song et al. 2021, eq. 12:

    x_{t_prev} = sqrt(abar_prev) pred_x0 + sqrt(1 - abar_prev - sigma^2) eps_pred + sigma z

    with sigma from ``ddim_sigma`` (eq. 16) and z = ``noise`` (needed only when eta > 0). When ``clip``
    clamps pred_x0, the direction term uses the noise that the clamped pred_x0 implies
    (``use_clipped_model_output=True``, GLIDE's choice), so the step stays consistent with the x_0 it aims
    at; ``False`` reuses the model's eps_pred, as diffusers does by default. Guidance needs the default:
    a guided eps_pred is longer than any noise the model saw, and reusing it step after step drives
    deterministic DDIM off the data (measured on mnist_cond, DDIM-50, w = 3: 8 % of samples the requested
    digit with False, 100 % with True; bench/results/guidance_quality.md). Without ``clip`` both agree.
    """
    x0 = predict_x0(schedule, xt, eps_pred, t, clip=clip, clip_range=clip_range)
    abar_t, abar_prev = _alpha_bar(schedule, t, xt), _alpha_bar(schedule, t_prev, xt)
    if use_clipped_model_output:
        eps_pred = (xt - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()  # the noise that the clamped x_0 implies
    sigma = ddim_sigma(abar_t, abar_prev, eta)
    # clamp: 1 - abar_prev - sigma^2 >= 0 for eta <= 1; the clamp only absorbs float rounding.
    prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps_pred
    if eta > 0:
        if noise is None:
            raise ValueError("a DDIM step with eta > 0 needs noise: pass noise=torch.randn_like(xt)")
        prev = prev + sigma * noise
    return StepOutput(prev_sample=prev, pred_x0=x0)


def _randn(
    shape: Sequence[int], generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's device (CPU without one) and then moved, like diffusers'
    ``randn_tensor``: a CPU generator gives the same numbers whether sampling runs on CPU, CUDA or MPS."""
    rand_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=rand_device, dtype=dtype).to(device)


class _Scheduler:
    """What both schedulers share: the timestep grid, the step checks and ``add_noise``."""

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool, clip_sample_range: float) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if isinstance(clip_sample_range, bool) or not isinstance(clip_sample_range, (int, float)) \
                or not clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be a positive number (the data's largest |value|), "
                             f"got {clip_sample_range!r}")
        self.schedule = schedule
        self.clip_sample = bool(clip_sample)
        self.clip_sample_range = float(clip_sample_range)
        self.num_inference_steps: int | None = None
        self._timesteps: torch.Tensor | None = None
        self._prev: dict[int, int] = {}  # t -> t_prev, the step visited after t (-1 after the last)

    def set_timesteps(self, num_inference_steps: int | None = None) -> None:
        """Choose K = ``num_inference_steps`` steps (default: all T) with diffusers' "leading" spacing:
        timesteps = (K-1) r, ..., r, 0 with r = T // K. With K not dividing T the first step is below T-1."""
        T = self.schedule.T
        K = T if num_inference_steps is None else num_inference_steps
        if isinstance(K, bool) or not isinstance(K, int):
            raise TypeError(f"num_inference_steps must be an int, got {type(K).__name__}")
        if not 1 <= K <= T:
            raise ValueError(f"num_inference_steps must be between 1 and T={T} (the schedule's T), got {K}")
        self.num_inference_steps = K
        self._timesteps = (torch.arange(K, dtype=torch.int64) * (T // K)).flip(0)  # int64 (K,), descending
        ts = self._timesteps.tolist()
        self._prev = dict(zip(ts, ts[1:] + [-1]))

    @property
    def timesteps(self) -> torch.Tensor:
        """The steps the loop visits, int64 (K,) on the CPU, from noisiest to t = 0."""
        if self._timesteps is None:
            raise RuntimeError(f"call {type(self).__name__}.set_timesteps(num_inference_steps) first")
        return self._timesteps

    def previous_timestep(self, t: int) -> int:
        """The step visited after t: t_prev < t, or -1 after the last step."""
        return self._prev[t]

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The forward process q(x_t | x_0) (DDPM eq. 4), as in diffusers' schedulers."""
        return self.schedule.add_noise(x0, eps, t)

    def _check_step(self, eps_pred: torch.Tensor, t: int | torch.Tensor, xt: torch.Tensor) -> tuple[int, int]:
        """Validate a step's inputs; return (t, t_prev) as ints."""
        timesteps = self.timesteps  # raises when set_timesteps was never called
        _check_pair(eps_pred, xt, "eps_pred", "xt")
        if isinstance(t, torch.Tensor) and t.numel() != 1:
            raise ValueError(f"a scheduler step takes one t for the whole batch, got shape {tuple(t.shape)}")
        t = int(self.schedule.check_t(t.reshape(()) if isinstance(t, torch.Tensor) else t))
        if t not in self._prev:
            shown = timesteps.tolist()
            raise ValueError(
                f"t={t} is not one of this scheduler's timesteps ({shown[:3]} ... {shown[-2:]}, "
                f"{len(shown)} steps); step through scheduler.timesteps"
            )
        return t, self._prev[t]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule!r}, num_inference_steps={self.num_inference_steps})"


class DDPMScheduler(_Scheduler):
    """Ancestral sampling from the posterior, Algorithm 2 of Ho et al. 2020, shaped like diffusers'
    DDPMScheduler(variance_type="fixed_small", prediction_type="epsilon", timestep_spacing="leading").

    Uses all T steps until ``set_timesteps(K)`` asks for fewer; then each step jumps from t to t_prev
    through q(x_{t_prev} | x_t, x_0), exactly as diffusers does. As in diffusers, the guess of x_0 is
    clipped to [-clip_sample_range, clip_sample_range] (default [-1, 1], images): pass the data's range,
    or ``clip_sample=False``, for other data.
    """

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True, clip_sample_range: float = 1.0) -> None:
        super().__init__(schedule, clip_sample, clip_sample_range)
        self.set_timesteps()

    def step(
        self,
        eps_pred: torch.Tensor,
        t: int | torch.Tensor,
        xt: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x_t -> x_{t_prev} = posterior mean + sqrt(beta_tilde_t) z, with z drawn from ``generator``
        (shaped and drawn like diffusers' noise) except at t = 0, where no noise is drawn or added."""
        t, t_prev = self._check_step(eps_pred, t, xt)
        noise = _randn(xt.shape, generator, xt.dtype, xt.device) if t > 0 else None
        return ddpm_step(self.schedule, xt, eps_pred, t, t_prev, noise, clip=self.clip_sample,
                         clip_range=self.clip_sample_range)


class DDIMScheduler(_Scheduler):
    """DDIM, Song et al. 2021 (eq. 12), any number of steps and any eta in [0, 1], shaped like diffusers'
    DDIMScheduler(set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
    timestep_spacing="leading").

    eta = 0 is deterministic; eta = 1 with all T steps is DDPM. Call ``set_timesteps(K)`` before stepping.
    The guess of x_0 is clipped as in ``DDPMScheduler``. ``use_clipped_model_output`` is diffusers'
    argument of the same name (see ``ddim_step``), but on by default here: guided sampling drifts off
    the data without it. Pass ``use_clipped_model_output=False`` to reproduce diffusers' default exactly.
    """

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, clip_sample: bool = True,
                 clip_sample_range: float = 1.0, use_clipped_model_output: bool = True) -> None:
        super().__init__(schedule, clip_sample, clip_sample_range)
        if not isinstance(use_clipped_model_output, bool):
            raise TypeError(f"use_clipped_model_output must be True or False, got {use_clipped_model_output!r}")
        self.use_clipped_model_output = use_clipped_model_output
        if isinstance(eta, bool) or not isinstance(eta, int | float):
            raise TypeError(f"eta must be a float, got {type(eta).__name__}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {eta}")
        self.eta = float(eta)

    def step(
        self,
        eps_pred: torch.Tensor,
        t: int | torch.Tensor,
        xt: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x_t -> x_{t_prev} by eq. 12; with eta > 0, z is drawn from ``generator`` at every step
        (the last included, where sigma = 0), as diffusers does."""
        t, t_prev = self._check_step(eps_pred, t, xt)
        noise = _randn(xt.shape, generator, xt.dtype, xt.device) if self.eta > 0 else None
        return ddim_step(self.schedule, xt, eps_pred, t, t_prev, self.eta, noise, clip=self.clip_sample,
                         clip_range=self.clip_sample_range, use_clipped_model_output=self.use_clipped_model_output)


@torch.no_grad()
def sample(
    model: Model,
    scheduler: DDPMScheduler | DDIMScheduler,
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: torch.Tensor | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate samples: Algorithm 2 of Ho et al. 2020 with a DDPMScheduler, DDIM (Song et al. 2021,
    eq. 12) with a DDIMScheduler. The loop is the same; only ``scheduler.step`` differs.

    model: any callable model(xt, t_batch) -> eps_pred, t_batch int64 (B,); guidance wraps it.
    scheduler: ours, or diffusers' DDPM/DDIM scheduler; call its ``set_timesteps`` first.
    shape: (B, ...), the shape of the samples.
    x_T: the starting noise. Without it, x_T ~ N(0, I) is drawn from ``generator`` on the CPU (float32)
        and moved to ``device``, so a seed gives the same samples on every device. Samples take x_T's
        device (``device`` when given) and dtype.
    generator: the only source of randomness, for x_T and for the noise of stochastic steps.
    callback: callback(i, t, xt, pred_x0) runs after step i = 0, 1, ..., the step from timestep t; xt
        is the new sample x_{t_prev} (after the last step, the final sample) and pred_x0 is the guess
        of x_0 made at t.
    Runs without gradients. Returns the samples, (B, ...).
    """
    if x_T is None:
        x_T = _randn(shape, generator, torch.float32, torch.device(device or "cpu"))
    else:
        check_float_tensor(x_T, "x_T")
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was asked for")
        x_T = x_T.to(device) if device is not None else x_T
    xt = x_T
    for i, t in enumerate(scheduler.timesteps.tolist()):
        t_batch = torch.full((xt.shape[0],), t, dtype=torch.int64, device=xt.device)  # (B,)
        eps_pred = model(xt, t_batch)  # guidance: a wrapped model, same signature
        out = scheduler.step(eps_pred, t, xt, generator=generator)
        xt = out.prev_sample
        if callback is not None:
            callback(i, t, xt, out.pred_original_sample)  # diffusers' name, so its schedulers fit too
    return xt


@dataclass
class Trajectory:
    """A ``sample`` callback that keeps x_t and pred_x0 (detached, on the CPU) at every ``every``-th step
    and at t = 0, the last step, so the final sample is always kept. ``stacked()`` gives (N, B, ...)."""

    every: int = 1
    steps: list[int] = field(default_factory=list)  # loop index i of each record
    timesteps: list[int] = field(default_factory=list)  # the step t each record came from
    xts: list[torch.Tensor] = field(default_factory=list)  # sample after the step
    pred_x0s: list[torch.Tensor] = field(default_factory=list)  # guess of x_0 made at t

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive int, got {self.every!r}")

    def __call__(self, i: int, t: int, xt: torch.Tensor, pred_x0: torch.Tensor) -> None:
        if i % self.every == 0 or t == 0:
            self.steps.append(i)
            self.timesteps.append(t)
            self.xts.append(xt.detach().to("cpu", copy=True))
            self.pred_x0s.append(pred_x0.detach().to("cpu", copy=True))

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(xts, pred_x0s) stacked into tensors of shape (N, B, ...), N the number of records."""
        if not self.xts:
            raise ValueError("the trajectory is empty: pass it as callback= to sample() first")
        return torch.stack(self.xts), torch.stack(self.pred_x0s)


def record_trajectory(every: int = 1) -> Trajectory:
    """A callback for ``sample`` that records x_t and pred_x0 every ``every`` steps (and the last)."""
    return Trajectory(every=every)
