"""The priors' objectives: from a caption's CLIP text embedding to its picture's image embedding (chapter 10).

Both train on pairs (e_text, e_image) of CLIP embeddings, one pair per captioned picture, and both learn
in the normalised units x_0 = (e_image - mean) / std of ``EmbeddingScale``, measured here on the training
image embeddings when the objective is made; ``finish`` stores it in the trained model.

``PriorObjective``, unCLIP's diffusion prior (Ramesh et al. 2022, sec. 2.2):

    1. draw a pair, a step t ~ U{0..T-1} and noise eps ~ N(0, I) per sample (``diffusion.draw_batch``)
    2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps                (the closed form, chapter 01)
    3. loss = || x_0 - f_theta(x_t, t, e_text) ||^2, averaged over the D values  (x_0-prediction, as the paper)

with e_text replaced by ∅ (zeros) for a share ``cond_drop_prob`` of the samples, so the same network
also learns the unconditional prior that classifier-free guidance needs (chapter 07).

``RegressionPriorObjective``, the baseline: loss = || x_0 - g_theta(e_text) ||^2, no noise at all.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from diffusion_lab.models.prior import EmbeddingScale, PriorConfig, check_embeddings, null_text_emb
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_finite_data, check_fraction
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.diffusion import draw_batch
from diffusion_lab.training.history import NUM_GROUPS
from diffusion_lab.training.objective import Batch, Objective


def prior_loss(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """The x_0-prediction loss per sample: mean over the D values of (x_0 - f_theta(x_t, t, cond))^2. Returns (B,)."""
    xt = schedule.add_noise(x0, eps, t)  # (B, D)
    x0_pred = model(xt, t, cond)  # (B, D)
    if x0_pred.shape != x0.shape:
        raise ValueError(f"the prior returned shape {tuple(x0_pred.shape)}, expected {tuple(x0.shape)} "
                         f"(one guess of the clean embedding x_0 per sample)")
    return (x0_pred.float() - x0).pow(2).mean(1)  # (B,)


def _unwrap(model: object) -> object:
    """The model itself, also when ``fit`` hands the loss a DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class EmbeddingPairs(Objective):
    """What both priors' objectives share: the pairs, their checks, and the measured embedding scale.

    text_emb, image_emb: (N, D) CLIP embeddings on the CPU, row i of each from the same captioned picture;
    CLIP's are unit vectors (L2-normalised), and so must these be.
    """

    text_emb: torch.Tensor
    image_emb: torch.Tensor
    scale: EmbeddingScale = field(init=False, repr=False)
    x0: torch.Tensor = field(init=False, repr=False)  # (N, D): the image embeddings, normalised once

    def __post_init__(self) -> None:
        D = self.image_emb.shape[-1] if isinstance(self.image_emb, torch.Tensor) else 0
        for name in ("image_emb", "text_emb"):  # image_emb first: it sets D
            emb = check_finite_data(check_embeddings(getattr(self, name), name, D), f"the training {name}")
            norms = emb.double().norm(dim=1)
            if not bool(((norms - 1).abs() < 1e-3).all()):
                raise ValueError(f"{name} must be L2-normalised like CLIP's (norm 1), got norms from "
                                 f"{float(norms.min()):.3g} to {float(norms.max()):.3g}; use "
                                 f"torch.nn.functional.normalize({name}, dim=-1)")
        if len(self.text_emb) != len(self.image_emb):
            raise ValueError(f"text_emb has {len(self.text_emb)} rows but image_emb {len(self.image_emb)}: "
                             f"give one text embedding per image embedding")
        self.scale = EmbeddingScale(D).measure(self.image_emb)
        self.x0 = self.scale.normalise(self.image_emb.float())

    def describe(self) -> dict:
        return {"data_shape": list(self.image_emb.shape)}

    def finish(self, model: nn.Module) -> dict:
        """Store the measured scale in the trained model (it is saved with the weights); return a summary."""
        _unwrap(model).embedding_scale.load_state_dict(self.scale.state_dict())
        std = self.scale.std
        return {"embedding_scale": {"mean_norm": float(self.scale.mean.norm()), "std_mean": float(std.mean()),
                                    "std_min": float(std.min()), "std_max": float(std.max())}}


@dataclass
class PriorObjective(EmbeddingPairs):
    """Train ``DiffusionPrior`` to predict x_0 from x_t, t and e_text (module docstring).

    schedule: the noise schedule, the one the prior's config names (``prior.schedule``). cond_drop_prob: the
    share of samples whose e_text becomes ∅ (zeros); it is set here, not in ``TrainConfig.cond_drop_prob``,
    which must be 0 or the same value.
    """

    schedule: NoiseSchedule
    cond_drop_prob: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule such as NoiseSchedule.from_name('cosine', 1000), "
                            f"got {type(self.schedule).__name__}")
        check_fraction(self.cond_drop_prob, "cond_drop_prob")
        super().__post_init__()

    def describe(self) -> dict:
        return {**super().describe(), "schedule": self.schedule.name, "T": self.schedule.T,
                "cond_drop_prob": self.cond_drop_prob}

    def to(self, device: torch.device) -> PriorObjective:
        moved = copy.copy(self)  # shares the pairs and the measured scale: nothing to check or measure again
        moved.schedule = self.schedule.to(device)
        return moved

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        if config.cond_drop_prob not in (0.0, self.cond_drop_prob):
            raise ValueError(f"TrainConfig.cond_drop_prob={config.cond_drop_prob} but the PriorObjective drops "
                             f"conditions with cond_drop_prob={self.cond_drop_prob}: set it in one place, the objective")
        idx, t, eps, drop = draw_batch(generator, len(self.x0), config.batch_size, self.x0.shape[1:],
                                       self.schedule.T, self.cond_drop_prob)
        null = null_text_emb(config.batch_size, self.x0.shape[1])
        cond = torch.where(drop[:, None], null, self.text_emb[idx].float())  # (B, D): ∅ for the dropped ones
        return {"x0": self.x0[idx], "t": t, "eps": eps, "cond": cond}

    def loss(self, model: Callable[..., torch.Tensor], batch: Batch) -> torch.Tensor:
        config = getattr(_unwrap(model), "config", None)
        if isinstance(config, PriorConfig) and (config.schedule, config.T) != (self.schedule.name, self.schedule.T):
            raise ValueError(f"the prior samples on {config.schedule!r} with T={config.T} but this objective noises "
                             f"with {self.schedule.name!r}, T={self.schedule.T}: pass schedule=prior.schedule")
        return prior_loss(model, self.schedule, batch["x0"], batch["t"], batch["eps"], batch["cond"])

    def groups(self, batch: Batch) -> torch.Tensor:
        return batch["t"] * NUM_GROUPS // self.schedule.T  # (B,): which tenth of the steps


@dataclass
class RegressionPriorObjective(EmbeddingPairs):
    """Train ``RegressionPrior`` with the mean squared error to x_0, in the normalised units (module docstring)."""

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        idx = torch.randint(len(self.x0), (config.batch_size,), generator=generator)  # (B,)
        return {"x0": self.x0[idx], "text_emb": self.text_emb[idx].float()}

    def loss(self, model: Callable[..., torch.Tensor], batch: Batch) -> torch.Tensor:
        x0_pred = model(batch["text_emb"])  # (B, D)
        return (x0_pred.float() - batch["x0"]).pow(2).mean(1)  # (B,)
