"""``fit``: the one training loop of the course, for every model and objective (chapter 04).

    for each step:
        batch = objective.draw(generator, config)     the global batch, from one seeded generator
        loss = objective.loss(model, batch).mean()    this process's share of it, on the device
        backpropagate, clip the gradient norm, take an AdamW step, update the EMA copy of the weights

The learning rate (and, for one-cycle, Adam's beta_1) comes from ``config.lr_schedule`` as a function
of the step; the precision from the device. A NaN loss or gradient stops the run before the weights
change. Nothing is read back from the device more than once per ``log_every`` steps on a GPU. Everything random comes
from one generator whose state is saved in every checkpoint, so a killed and resumed run continues
exactly. Under ``torchrun`` each process trains on its share of the *same* global batch and
DistributedDataParallel averages the gradients, so two processes train the same model as one would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from diffusion_lab.data.files import check_writable
from diffusion_lab.training import distributed
from diffusion_lab.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from diffusion_lab.training.config import LR_SCHEDULES, TrainConfig
from diffusion_lab.training.ema import EMA
from diffusion_lab.training.history import NUM_GROUPS, LossHistory
from diffusion_lab.training.objective import Objective
from diffusion_lab.training.precision import autocast, choose_precision, grad_scaler


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last checkpoint is untouched."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: ``step`` is the step reached; the last checkpoint written is kept as it was."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training stopped at step {step}")
        self.step = step


def _set_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int) -> None:
    lr, beta1 = LR_SCHEDULES[config.lr_schedule](config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
        if beta1 is not None:
            group["betas"] = (beta1, group["betas"][1])


def _diverged(what: str, value: float, step: str, config: TrainConfig, ckpt: Path | None) -> TrainingDiverged:
    return TrainingDiverged(
        f"the {what} became {value} at {step}; training stopped before the weights were changed. "
        f"Try a lower learning rate (now {config.lr}) or a smaller grad_clip; the last checkpoint ({ckpt}) "
        f"was not touched.")


class _Tally:
    """What the host needs to know of the last steps, summed on the device and read in one transfer.

    Reading a number from a GPU makes the host wait for it; keeping the loss sums, the per-group sums
    and the count of non-finite steps on the device, and reading them together once per check, keeps
    the GPU busy (on the CPU nothing waits either way).
    """

    def __init__(self, device: torch.device) -> None:
        self.values = torch.zeros(2 + 2 * NUM_GROUPS, device=device)  # [bad steps, loss sum, group sums, counts]
        self.steps = 0

    def add(self, loss: torch.Tensor, groups: torch.Tensor | None, per_sample: torch.Tensor, grad_ok: torch.Tensor) -> None:
        v = self.values
        v[0] += ~(torch.isfinite(loss) & grad_ok)
        v[1] += loss.detach().float()
        if groups is not None:
            v[2:2 + NUM_GROUPS].index_add_(0, groups, per_sample.detach().float())
            v[2 + NUM_GROUPS:].index_add_(0, groups, torch.ones_like(per_sample, dtype=v.dtype))
        self.steps += 1

    def read(self, world_size: int = 1) -> list[float]:
        """The sums so far as numbers, over all processes when ``world_size`` > 1: the one read."""
        (values,) = distributed.sum_over_processes([self.values], world_size)
        return values.tolist()

    def flush_groups(self, history: LossHistory, values: list[float]) -> None:
        """Add the group sums read in ``values`` to ``history`` and start them again."""
        for b in range(NUM_GROUPS):
            history.bucket_sums[b] += values[2 + b]
            history.bucket_counts[b] += int(values[2 + NUM_GROUPS + b])
        self.values[2:].zero_()

    def mean_loss(self, values: list[float], world_size: int) -> float:
        """The mean loss since the last call, from the loss sum read in ``values``; start it again."""
        mean = values[1] / world_size / max(1, self.steps)
        self.values[1].zero_()
        self.steps = 0
        return mean


def fit(model: nn.Module, objective: Objective, config: TrainConfig, *, out_dir: str | Path | None = None,
        resume: bool = False, device: torch.device | None = None,
        on_log: Callable[[TrainState], None] | None = None, progress: bool = True) -> TrainState:
    """Train ``model`` on ``objective`` as ``config`` says; return the final ``TrainState``.

    out_dir receives ``checkpoint.pt`` every ``config.checkpoint_every`` steps (and at the end); with
    ``resume=True`` an existing one is loaded first. on_log(state) runs every ``config.log_every`` steps
    (live plots). device: where to train (default: where the model is). The precision is chosen from the
    device (``precision.py``) and kept in ``state.precision``. The model is left in eval mode; sample
    from ``state.ema.model``.

    A NaN or infinite loss or gradient stops the run before the weights change: checked every step on
    the CPU, where the check costs nothing, and every ``log_every`` steps on a GPU (and before every
    checkpoint, so a checkpoint never holds NaN weights).
    """
    from tqdm.auto import tqdm

    rank, world = distributed.world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {world} processes")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    objective = objective.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]  # not a frozen, borrowed text encoder
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    state = TrainState(model, EMA(model, config.ema_decay), optimizer, torch.Generator().manual_seed(config.seed))
    state.total_steps = config.steps
    state.precision = choose_precision(device, config.mixed_precision)
    scaler = grad_scaler(device, state.precision)
    meta = {"model": type(model).__name__, "n_params": sum(p.numel() for p in model.parameters()),
            **objective.describe()}
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if ckpt is not None and rank == 0:
        check_writable(ckpt.parent, f"out_dir {ckpt.parent}")  # now, not at the first checkpoint
    if resume and ckpt is not None and ckpt.exists():
        load_checkpoint(ckpt, state, config, meta)
        if rank == 0:
            print(f"resumed from {ckpt} at step {state.step}")
    elif resume and rank == 0:
        print(f"no checkpoint in {ckpt.parent if ckpt else 'out_dir (none given)'} to resume from: "
              f"starting from step 0")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    share = distributed.shard(config.batch_size, rank, world)
    max_norm = config.grad_clip if config.grad_clip is not None else float("inf")
    check_every = 1 if device.type == "cpu" else config.log_every
    tally, first_unchecked = _Tally(device), state.step
    bar = tqdm(total=config.steps, initial=state.step, disable=not progress or rank != 0, desc="training")
    model.train()
    try:  # Ctrl-C stops the run cleanly: the caller learns the step, the last checkpoint is kept
        while state.step < config.steps:
            batch = {k: v[share].to(device) for k, v in objective.draw(state.generator, config).items()}
            _set_schedule(optimizer, config, state.step)
            with autocast(device, state.precision):
                per_sample = objective.loss(net, batch)  # (B / world,)
            loss = per_sample.mean()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            # fp16's scaler skips steps with overflowing gradients by design; otherwise they mean divergence
            tally.add(loss, objective.groups(batch), per_sample, torch.isfinite(grad_norm) | scaler.is_enabled())
            is_log = (state.step + 1) % config.log_every == 0 or state.step + 1 == config.steps
            is_ckpt = (state.step + 1) % config.checkpoint_every == 0 or state.step + 1 == config.steps
            if (state.step + 1) % check_every == 0 or is_log or is_ckpt:
                values = tally.read(world if is_log or is_ckpt else 1)  # the host waits for the device here only
                if values[0] > 0:
                    bar.close()
                    what, value = ("loss", loss.item()) if not torch.isfinite(loss) else ("gradient", grad_norm.item())
                    where = (f"step {state.step}" if first_unchecked == state.step
                             else f"a step from {first_unchecked} to {state.step}")
                    raise _diverged(what, value, where, config, ckpt)
                first_unchecked = state.step + 1
            scaler.step(optimizer)
            scaler.update()
            state.ema.update(model)
            state.step += 1
            if is_log or is_ckpt:  # the history records the whole global batch, as one process would
                tally.flush_groups(state.history, values)
            if is_log:
                mean = tally.mean_loss(values, world)
                state.history.steps.append(state.step)
                state.history.losses.append(mean)
                bar.set_postfix(loss=f"{mean:.4f}")
                if on_log is not None and rank == 0:
                    on_log(state)
            bar.update(1)
            if ckpt is not None and rank == 0 and is_ckpt:
                save_checkpoint(ckpt, state, config, meta)
    except KeyboardInterrupt:
        bar.close()
        raise TrainingInterrupted(state.step) from None
    bar.close()
    model.eval()
    return state
