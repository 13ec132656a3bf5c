"""Training a denoiser with DDPM's noise-prediction objective (chapter 04).

The loop, one step at a time:

    1. draw a batch x_0, a step t ~ U{0..T-1} and noise eps ~ N(0, I) per sample
    2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps            (the closed form, chapter 01)
    3. loss = || eps - eps_theta(x_t, t) ||^2, averaged                   (Ho et al. 2020, eq. 14)
    4. backpropagate, clip the gradient norm, take an Adam step, update the EMA copy of the weights

Everything random comes from one seeded ``torch.Generator`` whose state is saved in every checkpoint,
so a run that is killed and resumed continues exactly as if it had not stopped. Under ``torchrun``
each process computes its share of the *same* global batch and DistributedDataParallel averages the
gradients, so two processes train the same model as one would.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from diffusion_lab.ema import EMA
from diffusion_lab.schedules import NoiseSchedule


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last checkpoint is untouched."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``cond_drop_prob`` replaces that fraction of conditions (class labels or prompts)
    by the null condition: the null class, or the empty prompt.

    The learning rate warms up linearly over ``warmup_steps``, stays at ``lr``, and, when
    ``cooldown_steps`` > 0, falls linearly to 0 over the last ``cooldown_steps`` steps (see ``learning_rate``).
    """

    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    cond_drop_prob: float = 0.0
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    bf16: bool = False
    cooldown_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "seed", "cooldown_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be a non-negative int, got {value!r}")
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"TrainConfig.{name} must be a positive number, got {value!r}")
        if not isinstance(self.bf16, bool):
            raise ValueError(f"TrainConfig.bf16 must be True or False, got {self.bf16!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"TrainConfig.cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate for 0-based ``step``: a linear warm-up, constant ``config.lr``, then a linear
    decay to 0 over the last ``cooldown_steps`` ("warmup-stable-decay"). The decay depends only on how
    many steps are left, so a run extended with ``--steps`` and ``--resume`` before its cooldown began
    follows the same curve as a fresh run of the new length; one extended after its cooldown jumps back to
    ``config.lr`` and cools down again (a warm restart). A cooldown longer than the run just starts the
    run part-way down the slope."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    cool = 1.0 if config.cooldown_steps == 0 else min(1.0, (config.steps - step) / config.cooldown_steps)
    return config.lr * warm * cool


@dataclass
class LossHistory:
    """Logged mean losses, and the loss per timestep bucket (is the model worse at small or large t?)."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    bucket_sums: list[float] = field(default_factory=lambda: [0.0] * 10)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * 10)

    def add_per_sample(self, t: torch.Tensor, per_sample: torch.Tensor, T: int) -> None:
        buckets = (t * 10 // T).tolist()
        for b, v in zip(buckets, per_sample.detach().float().tolist()):
            self.bucket_sums[b] += v
            self.bucket_counts[b] += 1

    def bucket_means(self) -> list[float]:
        """Mean loss for t in [0, T/10), [T/10, 2T/10), ... (NaN where no sample fell)."""
        return [s / c if c else math.nan for s, c in zip(self.bucket_sums, self.bucket_counts)]


def diffusion_loss(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, x0: torch.Tensor,
                   t: torch.Tensor, eps: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """DDPM's simplified loss per sample: mean over pixels of (eps - eps_theta(x_t, t))^2. Returns (B,)."""
    xt = schedule.add_noise(x0, eps, t)  # (B, ...)
    eps_pred = model(xt, t) if class_labels is None else model(xt, t, class_labels)
    if eps_pred.shape != eps.shape:
        raise ValueError(f"the model returned shape {tuple(eps_pred.shape)}, expected {tuple(eps.shape)} "
                         f"(one noise prediction per input value)")
    return (eps_pred.float() - eps).pow(2).flatten(1).mean(1)  # (B,)


@torch.no_grad()
def loss_by_timestep(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, x0: torch.Tensor,
                     timesteps: Sequence[int], *, generator: torch.Generator | None = None,
                     class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The mean loss at each of ``timesteps``, on the samples x_0 (B, ...) with fresh noise. Returns (len(timesteps),).

    Every timestep sees the same x_0 and the same noise eps, so the curve compares like with like.
    """
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    out = []
    for t in timesteps:
        t_batch = torch.full((x0.shape[0],), int(t), dtype=torch.int64, device=x0.device)
        out.append(diffusion_loss(model, schedule, x0, t_batch, eps, class_labels).mean())
    return torch.stack(out).cpu()


def draw_batch(gen: torch.Generator, n_data: int, batch_size: int, sample_shape: torch.Size, T: int,
               cond_drop_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (B,), steps t (B,), noise eps (B, ...) and a label-drop mask (B,), always drawn in this order."""
    idx = torch.randint(n_data, (batch_size,), generator=gen)
    t = torch.randint(T, (batch_size,), generator=gen)
    eps = torch.randn((batch_size, *sample_shape), generator=gen)
    drop = torch.rand(batch_size, generator=gen) < cond_drop_prob
    return idx, t, eps, drop


def _gather(x: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate every process's shard of a batch (B / world, ...) -> (B, ...), in rank order."""
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class TrainState:
    """Everything a run needs to continue: saved to ``checkpoint.pt`` every ``checkpoint_every`` steps."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    history: LossHistory = field(default_factory=LossHistory)
    total_steps: int = 0  # the step the run ends at (config.steps), for progress displays

    def state_dict(self, config: TrainConfig, meta: dict) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "step": self.step, "history": dataclasses.asdict(self.history),
                "train_config": dataclasses.asdict(config), "meta": meta}


def save_checkpoint(path: Path, state: TrainState, config: TrainConfig, meta: dict) -> None:
    """Write atomically (temporary file, then rename): a kill mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state.state_dict(config, meta), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, state: TrainState, config: TrainConfig, meta: dict) -> None:
    """Restore ``state`` in place from ``path`` (no arbitrary unpickling: ``weights_only=True``)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's own message is many lines and suggests weights_only=False: keep it in the chain only
        raise ValueError(f"cannot read the checkpoint {path}: it is damaged, truncated or not written by "
                         f"diffusion_lab.training ({type(err).__name__}); delete it to start afresh") from err
    if saved["meta"] != meta:
        raise ValueError(f"{path} was made for a different model or data ({saved['meta']}), not {meta}; "
                         f"use another --out folder or delete it")
    # steps and cooldown_steps may change: that is how a run is extended and then cooled down
    changed = {k for k, v in saved["train_config"].items()
               if k not in ("steps", "cooldown_steps") and getattr(config, k) != v}
    if changed:
        raise ValueError(f"{path} was trained with different settings ({sorted(changed)}); resume with the same ones")
    state.model.load_state_dict(saved["model"])
    state.ema.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.generator.set_state(saved["generator"])
    state.step = saved["step"]
    state.history = LossHistory(**saved["history"])


def train(model: nn.Module, schedule: NoiseSchedule, data: torch.Tensor, config: TrainConfig, *,
          labels: torch.Tensor | None = None, null_label: int | torch.Tensor | None = None,
          out_dir: str | Path | None = None,
          resume: bool = False, device: torch.device | None = None,
          on_log: Callable[[TrainState], None] | None = None, progress: bool = True) -> TrainState:
    """Train ``model`` to predict the noise in x_t; return the final ``TrainState`` (model, EMA, history).

    data: x_0 samples (N, ...) on the CPU; labels: the condition of each sample for a conditional
    model, (N,) int64 class labels or (N, L) int64 prompt token ids, passed to ``model(x_t, t, labels)``;
    ``null_label`` is what ``cond_drop_prob`` swaps in: the null class (an int) or the empty prompt's
    ids (L,). ``out_dir`` receives
    ``checkpoint.pt`` every ``config.checkpoint_every`` steps; with ``resume=True`` an existing one is
    loaded first. ``on_log(state)`` is called every ``config.log_every`` steps (live plots).
    """
    from tqdm.auto import tqdm

    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {world} processes")
    if labels is not None and (labels.ndim not in (1, 2) or labels.shape[0] != len(data) or labels.dtype != torch.long):
        raise ValueError(f"labels must be int64 shaped ({len(data)},) (classes) or ({len(data)}, L) (token ids), "
                         f"got {labels.dtype} {tuple(labels.shape)}")
    if config.cond_drop_prob > 0 and null_label is None:
        raise ValueError("cond_drop_prob > 0 needs null_label: the class index, or the empty prompt's token ids, "
                         "that means 'no condition'")
    if labels is not None and null_label is not None:
        null_label = torch.as_tensor(null_label, dtype=torch.long)
        if null_label.shape != labels.shape[1:]:
            raise ValueError(f"null_label must have the shape of one label, {tuple(labels.shape[1:])}, "
                             f"got {tuple(null_label.shape)}")
    device = device or next(model.parameters()).device
    model.to(device)
    schedule = schedule.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    state = TrainState(model, EMA(model, config.ema_decay), optimizer, torch.Generator().manual_seed(config.seed))
    state.total_steps = config.steps
    meta = {"model": type(model).__name__, "n_params": sum(p.numel() for p in model.parameters()),
            "data_shape": list(data.shape), "schedule": schedule.name, "T": schedule.T}
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if resume and ckpt is not None and ckpt.exists():
        load_checkpoint(ckpt, state, config, meta)
        if rank == 0:
            print(f"resumed from {ckpt} at step {state.step}")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    shard = slice(rank * config.batch_size // world, (rank + 1) * config.batch_size // world)
    window: list[float] = []
    bar = tqdm(total=config.steps, initial=state.step, disable=not progress or rank != 0, desc="training")
    model.train()
    while state.step < config.steps:
        idx, t, eps, drop = draw_batch(state.generator, len(data), config.batch_size, data.shape[1:],
                                       schedule.T, config.cond_drop_prob)
        idx, t, eps, drop = idx[shard], t[shard].to(device), eps[shard].to(device), drop[shard].to(device)
        x0 = data[idx].to(device)
        y = None
        if labels is not None:
            y = labels[idx].to(device)
            if config.cond_drop_prob > 0:  # classifier-free guidance training: forget the condition sometimes
                dropped = drop.view(-1, *[1] * (y.ndim - 1))  # (B,), or (B, 1) to broadcast over token ids
                y = torch.where(dropped, null_label.to(device), y)
        for group in optimizer.param_groups:  # linear warm-up, constant, then the cooldown's decay
            group["lr"] = learning_rate(config, state.step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            per_sample = diffusion_loss(net, schedule, x0, t, eps, y)
        loss = per_sample.mean()
        if not torch.isfinite(loss):
            bar.close()
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {state.step}; training stopped. Try a lower learning "
                f"rate (now {config.lr}) or a smaller grad_clip; the last checkpoint ({ckpt}) was not touched.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if not torch.isfinite(grad_norm):  # a finite loss can still give NaN gradients
            bar.close()
            raise TrainingDiverged(
                f"the gradient became {grad_norm.item()} at step {state.step}; training stopped before the weights "
                f"were changed. Try a lower learning rate (now {config.lr}); the last checkpoint ({ckpt}) is intact.")
        optimizer.step()
        state.ema.update(model)
        state.step += 1
        t_all, per_sample_all = t, per_sample.detach()
        if world > 1:  # the history records the whole global batch, as one process would
            t_all, per_sample_all = _gather(t_all, world), _gather(per_sample_all, world)
        state.history.add_per_sample(t_all.cpu(), per_sample_all.cpu(), schedule.T)
        window.append(loss.item())
        if state.step % config.log_every == 0 or state.step == config.steps:
            mean = sum(window) / len(window)
            if world > 1:
                m = torch.tensor([mean], device=device)
                dist.all_reduce(m)
                mean = m.item() / world
            state.history.steps.append(state.step)
            state.history.losses.append(mean)
            window.clear()
            bar.set_postfix(loss=f"{mean:.4f}")
            if on_log is not None and rank == 0:
                on_log(state)
        bar.update(1)
        if ckpt is not None and rank == 0 and (state.step % config.checkpoint_every == 0 or state.step == config.steps):
            save_checkpoint(ckpt, state, config, meta)
    bar.close()
    model.eval()
    return state
