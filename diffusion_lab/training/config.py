"""How to train: the frozen ``TrainConfig`` and the learning-rate schedules it names (chapter 04).

A schedule is a pure function of (config, step), so a run resumed from a checkpoint, or extended
with more steps, needs no scheduler state: the step number is enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffusion_lab.tensors import check_fraction, check_int, check_number


@dataclass(frozen=True)
class TrainConfig:
    """What ``fit`` needs besides the model and the objective.

    The optimiser is AdamW with ``weight_decay`` (0 makes it exactly Adam). ``lr_schedule`` names one
    of ``LR_SCHEDULES``: "warmup_stable_decay" (the denoisers: a linear warm-up over ``warmup_steps``,
    constant ``lr``, then, when ``cooldown_steps`` > 0, a linear fall to 0 over the last ones) or
    "one_cycle" (the judges: Smith's one-cycle policy, as torch's ``OneCycleLR``). ``grad_clip`` caps the
    gradient norm (None: no cap). ``ema_decay`` = 0 makes the EMA copy equal the live weights.
    ``mixed_precision`` asks for a lower-precision forward pass; the device decides which (bf16 or fp16,
    see ``precision.py``).
    ``cond_drop_prob`` replaces that share of conditions by the null condition (classifier-free guidance).
    """

    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    cond_drop_prob: float = 0.0
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    mixed_precision: bool = False
    cooldown_steps: int = 0
    weight_decay: float = 0.0
    lr_schedule: str = "warmup_stable_decay"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            check_int(getattr(self, name), f"TrainConfig.{name}", low=1)
        for name in ("warmup_steps", "seed", "cooldown_steps"):
            check_int(getattr(self, name), f"TrainConfig.{name}", low=0)
        check_number(self.lr, "TrainConfig.lr", positive=True)
        if self.grad_clip is not None:
            check_number(self.grad_clip, "TrainConfig.grad_clip", positive=True)
        check_number(self.weight_decay, "TrainConfig.weight_decay")
        if not isinstance(self.mixed_precision, bool):
            raise ValueError(f"TrainConfig.mixed_precision must be True or False, got {self.mixed_precision!r}")
        check_fraction(self.ema_decay, "TrainConfig.ema_decay")
        check_fraction(self.cond_drop_prob, "TrainConfig.cond_drop_prob")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {sorted(LR_SCHEDULES)}, got {self.lr_schedule!r}")


def warmup_stable_decay(config: TrainConfig, step: int) -> tuple[float, float | None]:
    """(learning rate, None) for 0-based ``step``: a linear warm-up, constant ``config.lr``, then a linear
    decay to 0 over the last ``cooldown_steps``. The decay depends only on how many steps are left, so a
    run extended with ``--steps`` and ``--resume`` before its cooldown began follows the same curve as a
    fresh run of the new length; one extended after its cooldown jumps back to ``config.lr`` and cools
    down again (a warm restart). None: Adam's beta_1 stays as it is."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    cool = 1.0 if config.cooldown_steps == 0 else min(1.0, (config.steps - step) / config.cooldown_steps)
    return config.lr * warm * cool, None


def one_cycle(config: TrainConfig, step: int, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, momenta: tuple[float, float] = (0.85, 0.95)) -> tuple[float, float]:
    """(learning rate, Adam's beta_1) of the one-cycle policy (Smith & Topin 2019) at 0-based ``step``.

    The rate rises from lr / 25 to lr over the first 30 % of the steps and falls to lr / 250,000 by the
    last, both along half a cosine; beta_1 moves the opposite way between 0.95 and 0.85. The same numbers
    as ``torch.optim.lr_scheduler.OneCycleLR`` with its defaults (tests/test_training_schedules.py).
    """
    low, high = momenta
    start_lr = config.lr / div_factor
    phases = [(float(pct_start * config.steps) - 1, start_lr, config.lr, high, low),
              (config.steps - 1, config.lr, start_lr / final_div_factor, low, high)]
    begin = 0.0
    for i, (end, lr_a, lr_b, m_a, m_b) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - begin) / (end - begin)
            cos_out = math.cos(math.pi * pct) + 1  # half a cosine from 2 down to 0
            return lr_b + (lr_a - lr_b) / 2.0 * cos_out, m_b + (m_a - m_b) / 2.0 * cos_out
        begin = end
    raise AssertionError("unreachable")


LR_SCHEDULES = {"warmup_stable_decay": warmup_stable_decay, "one_cycle": one_cycle}


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate ``config``'s schedule gives 0-based ``step``."""
    return LR_SCHEDULES[config.lr_schedule](config, step)[0]
