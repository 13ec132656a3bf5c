"""The denoiser's objective: DDPM's simplified noise-prediction loss (chapter 04).

    1. draw x_0 from the data, a step t ~ U{0..T-1} and noise eps ~ N(0, I) per sample
    2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps            (the closed form, chapter 01)
    3. loss = || eps - eps_theta(x_t, t, cond) ||^2, averaged over pixels   (Ho et al. 2020, eq. 14)
    4. optionally weighted by min(SNR(t), gamma) / SNR(t)                   (Min-SNR-gamma, Hang et al. 2023)

With conditions, a share ``cond_drop_prob`` of them is replaced by the null condition ∅ (the null
class, the empty prompt), so the same network also learns the unconditional model that
classifier-free guidance needs (chapter 07).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims, check_finite_data, check_float_tensor
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.history import NUM_GROUPS
from diffusion_lab.training.objective import Batch, Objective


def diffusion_loss(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, x0: torch.Tensor,
                   t: torch.Tensor, eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """DDPM's simplified loss per sample: mean over values of (eps - eps_theta(x_t, t, cond))^2. Returns (B,)."""
    xt = schedule.add_noise(x0, eps, t)  # (B, ...)
    eps_pred = model(xt, t) if cond is None else model(xt, t, cond)
    if eps_pred.shape != eps.shape:
        raise ValueError(f"the model returned shape {tuple(eps_pred.shape)}, expected {tuple(eps.shape)} "
                         f"(one noise prediction per input value)")
    return (eps_pred.float() - eps).pow(2).flatten(1).mean(1)  # (B,)


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights for the noise-prediction loss (Hang et al. 2023): min(SNR(t), gamma) / SNR(t),
    (B,) for steps t (B,). 1 where the sample is noisy (SNR <= gamma); gamma / SNR below that, so the nearly clean
    steps, whose noise is the hardest to see and matters least to the picture, stop dominating the gradient."""
    if not gamma > 0:
        raise ValueError(f"snr_gamma must be > 0 (Hang et al. use 5), got {gamma}")
    alpha_bar = schedule.alpha_bars[t]  # (B,) where t is: no host round trip per training step
    return (gamma * (1 - alpha_bar) / alpha_bar).clamp(max=1.0)  # gamma / SNR(t), at most 1


@torch.no_grad()
def loss_by_timestep(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, x0: torch.Tensor,
                     timesteps: Sequence[int], *, generator: torch.Generator | None = None,
                     cond: torch.Tensor | None = None) -> torch.Tensor:
    """The mean loss at each of ``timesteps``, on the samples x_0 (B, ...) with fresh noise. Returns (len(timesteps),).

    Every timestep sees the same x_0 and the same noise eps, so the curve compares like with like.
    """
    rand_device = generator.device if generator is not None else torch.device("cpu")
    eps = torch.randn(x0.shape, generator=generator, device=rand_device).to(x0.device)
    out = []
    for t in timesteps:
        t_batch = torch.full((x0.shape[0],), int(t), dtype=torch.int64, device=x0.device)
        out.append(diffusion_loss(model, schedule, x0, t_batch, eps, cond).mean())
    return torch.stack(out).cpu()


def draw_batch(gen: torch.Generator, n_data: int, batch_size: int, sample_shape: torch.Size, T: int,
               cond_drop_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (B,), steps t (B,), noise eps (B, ...) and a condition-drop mask (B,), always drawn in this order."""
    idx = torch.randint(n_data, (batch_size,), generator=gen)
    t = torch.randint(T, (batch_size,), generator=gen)
    eps = torch.randn((batch_size, *sample_shape), generator=gen)
    drop = torch.rand(batch_size, generator=gen) < cond_drop_prob
    return idx, t, eps, drop


@dataclass
class DiffusionObjective(Objective):
    """Train ``model(x_t, t[, cond])`` to predict the noise in x_t.

    x0: the data (N, ...) on the CPU. cond: each sample's condition, (N,) int64 classes, (N, L) int64
    prompt token ids or (N, D) float embeddings (chapter 10's CLIP image embeddings), or None for an
    unconditional model. null_cond: what condition dropout swaps in,
    one condition shaped like cond[0] (``model.null_condition(1)[0]``); needed when
    ``TrainConfig.cond_drop_prob`` > 0. snr_gamma: weigh each sample's loss by ``min_snr_weight`` (None: the
    plain average, DDPM's "simple" loss).
    """

    schedule: NoiseSchedule
    x0: torch.Tensor
    cond: torch.Tensor | None = None
    null_cond: torch.Tensor | int | None = None
    snr_gamma: float | None = None

    def __post_init__(self) -> None:
        if self.snr_gamma is not None:
            min_snr_weight(self.schedule, torch.zeros(1, dtype=torch.int64), self.snr_gamma)  # checks gamma
        check_finite_data(check_float_tensor(self.x0, "x0"), "the training data x0")  # once, before training
        n = len(self.x0)
        if self.cond is not None and not (self.cond.shape[:1] == (n,) and (
                (self.cond.dtype == torch.long and self.cond.ndim in (1, 2))
                or (self.cond.is_floating_point() and self.cond.ndim == 2))):
            raise ValueError(f"cond must be int64 shaped ({n},) (classes) or ({n}, L) (token ids), or floating "
                             f"point ({n}, D) (embeddings), got {self.cond.dtype} {tuple(self.cond.shape)}")
        if self.cond is not None and self.cond.is_floating_point():
            check_finite_data(self.cond, "the conditions cond")
        if self.cond is not None and self.null_cond is not None:
            self.null_cond = torch.as_tensor(self.null_cond, dtype=self.cond.dtype).cpu()  # batches are drawn on the CPU
            if self.null_cond.shape != self.cond.shape[1:]:
                raise ValueError(f"null_cond must have the shape of one condition, {tuple(self.cond.shape[1:])}, "
                                 f"got {tuple(self.null_cond.shape)}")

    def describe(self) -> dict:
        out = {"data_shape": list(self.x0.shape), "schedule": self.schedule.name, "T": self.schedule.T}
        return out if self.snr_gamma is None else {**out, "snr_gamma": self.snr_gamma}

    def to(self, device: torch.device) -> DiffusionObjective:
        return dataclasses.replace(self, schedule=self.schedule.to(device))

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        if config.cond_drop_prob > 0 and (self.cond is None or self.null_cond is None):
            raise ValueError("cond_drop_prob > 0 needs cond and null_cond: the conditions, and the class index, "
                             "the empty prompt's token ids or the null embedding that mean 'no condition' "
                             "(model.null_condition(1)[0])")
        idx, t, eps, drop = draw_batch(generator, len(self.x0), config.batch_size, self.x0.shape[1:],
                                       self.schedule.T, config.cond_drop_prob)
        batch = {"x0": self.x0[idx], "t": t, "eps": eps}
        if self.cond is not None:
            cond = self.cond[idx]
            if config.cond_drop_prob > 0:  # classifier-free guidance training: forget the condition sometimes
                cond = torch.where(append_dims(drop, cond.ndim), self.null_cond, cond)
            batch["cond"] = cond
        return batch

    def loss(self, model: Callable[..., torch.Tensor], batch: Batch) -> torch.Tensor:
        loss = diffusion_loss(model, self.schedule, batch["x0"], batch["t"], batch["eps"], batch.get("cond"))
        return loss if self.snr_gamma is None else loss * min_snr_weight(self.schedule, batch["t"], self.snr_gamma)

    def groups(self, batch: Batch) -> torch.Tensor:
        return batch["t"] * NUM_GROUPS // self.schedule.T  # (B,): which tenth of the steps
