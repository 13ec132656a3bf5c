"""The learning-rate schedules of training/config.py: the judges' one-cycle policy equals torch's
OneCycleLR step for step (learning rate and Adam's beta_1), and the denoisers' warm-up, hold and cooldown."""

from __future__ import annotations

import pytest
import torch

from diffusion_lab.training import LR_SCHEDULES, TrainConfig, one_cycle, warmup_stable_decay


@pytest.mark.parametrize("steps, lr", [(1500, 2e-3), (30, 1e-3), (7, 0.5)])
def test_one_cycle_equals_torch(steps, lr):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    config = TrainConfig(steps=steps, lr=lr, lr_schedule="one_cycle")
    for step in range(steps):
        group = optimizer.param_groups[0]
        assert one_cycle(config, step) == (group["lr"], group["betas"][0]), f"step {step}"  # exactly, not approx
        optimizer.step()
        reference.step()


def test_one_cycle_rises_then_falls():
    config = TrainConfig(steps=100, lr=1e-2, lr_schedule="one_cycle")
    lrs = [one_cycle(config, s)[0] for s in range(100)]
    assert lrs[0] == pytest.approx(1e-2 / 25) and max(lrs) == pytest.approx(1e-2)
    assert lrs.index(max(lrs)) == 29 and lrs[-1] == pytest.approx(1e-2 / 25 / 1e4)


def test_warmup_stable_decay_leaves_beta1_alone():
    config = TrainConfig(steps=10, lr=1e-3, warmup_steps=2)
    assert warmup_stable_decay(config, 0) == (5e-4, None) and warmup_stable_decay(config, 5) == (1e-3, None)
    assert set(LR_SCHEDULES) == {"warmup_stable_decay", "one_cycle"}
