"""``fit``: the one training loop of the course, for every model and objective (chapter 04).

    for each step:
        batch = objective.draw(generator, config)     the global batch, from one seeded generator
        loss = objective.loss(model, batch).mean()    this process's share of it, on the device
        backpropagate, clip the gradient norm, take an AdamW step, update the EMA copy of the weights

The learning rate (and, for one-cycle, Adam's beta_1) comes from ``config.lr_schedule`` as a function
of the step. A NaN loss or gradient stops the run before the weights change. Everything random comes
from one generator whose state is saved in every checkpoint, so a killed and resumed run continues
exactly. Under ``torchrun`` each process trains on its share of the *same* global batch and
DistributedDataParallel averages the gradients, so two processes train the same model as one would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from diffusion_lab.training import distributed
from diffusion_lab.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from diffusion_lab.training.config import LR_SCHEDULES, TrainConfig
from diffusion_lab.training.ema import EMA
from diffusion_lab.training.objective import Objective


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last checkpoint is untouched."""


def _set_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int) -> None:
    lr, beta1 = LR_SCHEDULES[config.lr_schedule](config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
        if beta1 is not None:
            group["betas"] = (beta1, group["betas"][1])


def _diverged(what: str, value: float, state: TrainState, config: TrainConfig, ckpt: Path | None) -> TrainingDiverged:
    return TrainingDiverged(
        f"the {what} became {value} at step {state.step}; training stopped before the weights were changed. "
        f"Try a lower learning rate (now {config.lr}) or a smaller grad_clip; the last checkpoint ({ckpt}) "
        f"was not touched.")


def fit(model: nn.Module, objective: Objective, config: TrainConfig, *, out_dir: str | Path | None = None,
        resume: bool = False, device: torch.device | None = None,
        on_log: Callable[[TrainState], None] | None = None, progress: bool = True) -> TrainState:
    """Train ``model`` on ``objective`` as ``config`` says; return the final ``TrainState``.

    out_dir receives ``checkpoint.pt`` every ``config.checkpoint_every`` steps (and at the end); with
    ``resume=True`` an existing one is loaded first. on_log(state) runs every ``config.log_every`` steps
    (live plots). device: where to train (default: where the model is). The model is left in eval mode;
    sample from ``state.ema.model``.
    """
    from tqdm.auto import tqdm

    rank, world = distributed.world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {world} processes")
    device = device or next(model.parameters()).device
    model.to(device)
    objective = objective.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = TrainState(model, EMA(model, config.ema_decay), optimizer, torch.Generator().manual_seed(config.seed))
    state.total_steps = config.steps
    meta = {"model": type(model).__name__, "n_params": sum(p.numel() for p in model.parameters()),
            **objective.describe()}
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if resume and ckpt is not None and ckpt.exists():
        load_checkpoint(ckpt, state, config, meta)
        if rank == 0:
            print(f"resumed from {ckpt} at step {state.step}")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    share = distributed.shard(config.batch_size, rank, world)
    max_norm = config.grad_clip if config.grad_clip is not None else float("inf")
    window: list[float] = []
    bar = tqdm(total=config.steps, initial=state.step, disable=not progress or rank != 0, desc="training")
    model.train()
    while state.step < config.steps:
        batch = {k: v[share].to(device) for k, v in objective.draw(state.generator, config).items()}
        _set_schedule(optimizer, config, state.step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            per_sample = objective.loss(net, batch)  # (B / world,)
        loss = per_sample.mean()
        if not torch.isfinite(loss):
            bar.close()
            raise _diverged("loss", loss.item(), state, config, ckpt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if not torch.isfinite(grad_norm):  # a finite loss can still give NaN gradients
            bar.close()
            raise _diverged("gradient", grad_norm.item(), state, config, ckpt)
        optimizer.step()
        state.ema.update(model)
        state.step += 1
        groups = objective.groups(batch)
        if groups is not None:  # the history records the whole global batch, as one process would
            state.history.add_per_sample(distributed.gather(groups, world).cpu(),
                                         distributed.gather(per_sample.detach(), world).cpu())
        window.append(loss.item())
        if state.step % config.log_every == 0 or state.step == config.steps:
            mean = distributed.mean_over_processes(sum(window) / len(window), device, world)
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
