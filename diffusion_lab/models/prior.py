"""The DALL·E 2 prior: a diffusion model over CLIP image embeddings, conditioned on the text embedding (chapter 10).

unCLIP (Ramesh et al. 2022) draws a picture in two stages: a *prior* turns a caption's CLIP text
embedding e_text into a CLIP image embedding e_image, and a decoder draws a picture from e_image.
The prior here is a denoiser like every other in the course, ``model(xt, t, cond)``, with two
differences the paper makes:

    1. it predicts the clean embedding x_0, not the noise (the paper found x_0-prediction better for
       the prior); ``pipelines/prior.py`` converts x_0 to eps, so chapter 05's samplers run unchanged
    2. its data are vectors (B, D), not pictures: the network is a residual MLP, not a U-Net

    e_image (B, D) --EmbeddingScale.normalise--> x_0 (B, D), unit variance per dimension
    x_t, t, e_text --residual MLP--> v --x_0 = alpha_t x_t - sigma_t v--> x_0 guess --denormalise--> CLIP units

The MLP's own output is read as Salimans & Ho's v and turned into x_0 with chapter 09's conversion
(``notation.v_to_x0_eps``). That is EDM's preconditioning (Karras et al. 2022, sigma_data = 1: c_skip = alpha_t,
c_out = sigma_t): at little noise x_0 is nearly x_t, and the network gets that part for free instead of
learning an identity map through its layers, which a small network trained for minutes does poorly (its
samples then all fall on the mean embedding of their caption). The prior still predicts x_0 and is
trained on the x_0 error. It therefore knows its noise schedule: ``PriorConfig.schedule`` and ``T``.

Why an MLP and not the paper's decoder-only transformer: the transformer reads a sequence [caption
tokens, e_text, time, x_t, query]; here the condition is the pooled e_text alone, so the sequence would
be four tokens, and attention over four tokens is a learned mixing that an MLP does directly, several
times faster on a CPU and with fewer settings. ``RegressionPrior`` (``regression_prior.py``) is the same MLP without
noise: the baseline that predicts the mean embedding of a caption.

The embedding scale is chapter 08's latent-scale lesson: CLIP embeddings are unit vectors (each
dimension has std about 1 / sqrt(D)) that usually share a common direction, while the noise schedule
expects zero-mean data of unit variance per dimension. ``EmbeddingScale`` holds the per-dimension mean
and std of the training image embeddings (buffers saved with the weights, NaN until measured), and its
``normalise`` / ``denormalise`` pair is the only code that applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.embeddings import TimestepEmbedding
from diffusion_lab.notation import alpha_sigma, v_to_x0_eps
from diffusion_lab.schedules import BETA_SCHEDULES, NoiseSchedule
from diffusion_lab.tensors import check_float_tensor, check_int, check_model_input

MIN_STD = 1e-4  # a dimension that barely varies is not blown up into noise by the normalisation


def null_text_emb(batch_size: int, embed_dim: int, device: torch.device | str | None = None) -> torch.Tensor:
    """∅ for the prior: zeros (batch_size, embed_dim). No caption embeds to it (CLIP's are unit vectors)."""
    return torch.zeros(check_int(batch_size, "batch_size", low=1), embed_dim, device=device)


def check_embeddings(emb: object, name: str, embed_dim: int) -> torch.Tensor:
    """``emb`` if it is a float tensor (B, embed_dim); else a clear error that says how to fix it."""
    check_float_tensor(emb, name)
    if emb.ndim != 2 or emb.shape[1] != embed_dim:
        raise ValueError(f"{name} must be shaped (B, {embed_dim}), one CLIP embedding per row, got "
                         f"{tuple(emb.shape)}; for one embedding use emb[None]")
    return emb


class EmbeddingScale(nn.Module):
    """Per-dimension mean and std of the training image embeddings: x_0 = (e_image - mean) / std.

    Both are buffers of shape (D,), NaN until ``measure`` sets them, so they travel with the weights.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = check_int(embed_dim, "embed_dim", low=1)
        self.register_buffer("mean", torch.full((embed_dim,), float("nan")))
        self.register_buffer("std", torch.full((embed_dim,), float("nan")))

    @property
    def measured(self) -> bool:
        return bool(torch.isfinite(self.std).all())  # one read per call, never one per sampling step

    @torch.no_grad()
    def measure(self, image_emb: torch.Tensor) -> EmbeddingScale:
        """Set mean and std from image embeddings (N, D) (use the training set); return self."""
        check_embeddings(image_emb, "image_emb", self.embed_dim)
        if len(image_emb) < 2 or not bool(torch.isfinite(image_emb).all()):
            raise ValueError(f"measure the scale on many finite embeddings (the training set), got {len(image_emb)} "
                             f"rows{'' if bool(torch.isfinite(image_emb).all()) else ' with NaN or inf'}")
        x = image_emb.detach().to("cpu", torch.float64)  # on the CPU: MPS has no float64
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp(min=MIN_STD))
        return self

    def check_measured(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), after checking they were measured."""
        if not self.measured:
            raise ValueError("this prior's embedding scale was never measured (it is NaN): call "
                             "objective.finish(prior) after training (the train command does), or "
                             "prior.embedding_scale.measure(training_image_emb)")
        return self.mean, self.std

    def normalise(self, image_emb: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings (B, D) -> x_0 (B, D) with zero mean and unit std per dimension."""
        mean, std = self.check_measured()
        check_embeddings(image_emb, "image_emb", self.embed_dim)
        return (image_emb - mean.to(image_emb)) / std.to(image_emb)

    def denormalise(self, x0: torch.Tensor) -> torch.Tensor:
        """x_0 (B, D) in the diffusion's units -> CLIP image embeddings (B, D), the inverse of ``normalise``."""
        mean, std = self.check_measured()
        check_embeddings(x0, "x0", self.embed_dim)
        return x0 * std.to(x0) + mean.to(x0)


class MLPBlock(nn.Module):
    """h + Linear(SiLU(Linear(LayerNorm(h)) + emb)): a pre-norm residual MLP block that reads ``emb`` (B, E)."""

    def __init__(self, dim: int, emb_dim: int, mult: int = 2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mult * dim)
        self.emb = nn.Linear(emb_dim, mult * dim)
        self.fc2 = nn.Linear(mult * dim, dim)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.fc1(self.norm(h)) + self.emb(emb)))  # (B, H)


@dataclass(frozen=True)
class PriorConfig:
    """What a ``DiffusionPrior`` looks like: CLIP's ``embed_dim`` D, ``num_blocks`` residual MLP blocks of
    width ``hidden_dim`` (2 x wider inside), ``sinusoidal_dim`` sine/cosine features of t, and the noise
    ``schedule`` of ``T`` steps it is trained and sampled on: cosine (chapter 02: it spends fewer steps
    on near-pure noise than linear) over the paper's T = 1000. The default has about 1.7 M parameters;
    ``tiny()`` (for tests) 73 k."""

    embed_dim: int = 64
    hidden_dim: int = 256
    num_blocks: int = 4
    sinusoidal_dim: int = 64
    schedule: str = "cosine"
    T: int = 1000

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden_dim", "num_blocks"):
            check_int(getattr(self, name), f"PriorConfig.{name}", low=1)
        check_int(self.sinusoidal_dim, "PriorConfig.sinusoidal_dim", low=2)
        check_int(self.T, "PriorConfig.T", low=2)
        if self.schedule not in BETA_SCHEDULES:
            raise ValueError(f"PriorConfig.schedule must be one of {sorted(BETA_SCHEDULES)}, got {self.schedule!r}")

    @classmethod
    def tiny(cls, embed_dim: int = 64) -> PriorConfig:
        return cls(embed_dim=embed_dim, hidden_dim=64, num_blocks=2, sinusoidal_dim=32)


class DiffusionPrior(nn.Module):
    """x_t (B, D), t (B,), cond = e_text (B, D) or None -> x_0 guess (B, D), all in the normalised units.

    The text embedding enters twice: added to the input and, with the time embedding, to every block.
    It is multiplied by sqrt(D) first, so a unit vector has values of about unit size like x_t.
    ``null_condition`` is zeros: see ``null_text_emb``. ``schedule`` is the config's noise schedule.
    """

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        config = PriorConfig() if config is None else config
        if not isinstance(config, PriorConfig):
            raise TypeError(f"config must be a PriorConfig, got {type(config).__name__}")
        self.config = c = config
        self.register_buffer("alpha_bars", self.schedule.alpha_bars, persistent=False)  # moves with .to()
        self.embedding_scale = EmbeddingScale(c.embed_dim)
        self.time_embed = TimestepEmbedding(c.sinusoidal_dim, c.hidden_dim)
        self.text_embed = nn.Linear(c.embed_dim, c.hidden_dim)
        self.x_in = nn.Linear(c.embed_dim, c.hidden_dim)
        self.text_in = nn.Linear(c.embed_dim, c.hidden_dim)
        self.blocks = nn.ModuleList(MLPBlock(c.hidden_dim, c.hidden_dim) for _ in range(c.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(c.hidden_dim), nn.Linear(c.hidden_dim, c.embed_dim))
        nn.init.zeros_(self.out[1].weight)  # v = 0 at first: x_0 = alpha_t x_t, the best guess for N(0, I) data
        nn.init.zeros_(self.out[1].bias)

    @property
    def schedule(self) -> NoiseSchedule:
        """The noise schedule the config names, on the CPU (made afresh: the model holds only its alpha_bars)."""
        return NoiseSchedule.from_name(self.config.schedule, self.config.T)

    def null_condition(self, batch_size: int) -> torch.Tensor:
        """∅, the text embedding of 'no caption', (batch_size, D): zeros, on the model's device."""
        return null_text_emb(batch_size, self.config.embed_dim, self.x_in.weight.device)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) at steps t (B,), each (B,) float. Whole steps
        are read from the schedule on the model's device; fractional ones (chapter 09's solvers ask between
        steps) come from ``notation.alpha_sigma``."""
        if t.is_floating_point():
            return alpha_sigma(self.schedule, t)  # float64 (B,) on the CPU
        abar = self.alpha_bars[self.schedule.check_t(t, device=t.device)]  # (B,); t is range-checked on the CPU
        return abar.sqrt(), (1 - abar).sqrt()

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """The guess of x_0 (B, D) from x_t (B, D) at steps t (B,), given text embeddings ``cond`` (B, D)."""
        D = self.config.embed_dim
        check_model_input(xt, t, self.x_in.weight, (D,))
        text = self.null_condition(xt.shape[0]) if cond is None else check_embeddings(cond, "cond", D)
        if text.shape[0] != xt.shape[0]:
            raise ValueError(f"cond holds {text.shape[0]} text embeddings but xt {xt.shape[0]} samples; "
                             f"give one per sample")
        text = text.to(xt.dtype) * math.sqrt(D)  # (B, D): unit vectors -> values of about unit size
        emb = F.silu(self.time_embed(t) + self.text_embed(text))  # (B, H): what every block reads
        h = self.x_in(xt) + self.text_in(text)  # (B, H)
        for block in self.blocks:
            h = block(h, emb)  # (B, H)
        v = self.out(h)  # (B, D): the network's own output is v = alpha_t eps - sigma_t x_0
        return v_to_x0_eps(xt, v, *self.alpha_sigma(t))[0]  # (B, D): x_0 = alpha_t x_t - sigma_t v
