"""A Gaussian mixture whose density and score are known exactly, at every noise level (chapter 09).

    p(x) = sum_k w_k N(x; mu_k, s_k^2 I)          K isotropic components in d dimensions

Its score, the gradient of log p, has a closed form (``score``): with the responsibilities
r_k(x) = w_k N(x; mu_k, s_k^2 I) / p(x), the share of x that component k explains,

    grad_x log p(x) = sum_k r_k(x) (mu_k - x) / s_k^2

and noising keeps it a mixture: x_t = alpha x_0 + sigma eps with x_0 ~ p and eps ~ N(0, I) has the
components N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I) with the same weights (``noised``). So chapter 09
can compare a learned score with the exact one at any noise level, and samples with exact samples.
Everything is computed in float64 (the responsibilities of far-away components underflow otherwise)
and returned in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_lab.data._validate import check_int
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_float_tensor, check_number


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """means (K, d), stds (K,) > 0 (one per component: isotropic), weights (K,) > 0, normalised to sum 1.

    Stored as float64 on the CPU; ``GaussianMixture.equal()`` and ``GaussianMixture.unequal()`` are the
    chapter's two 2-D mixtures.
    """

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self) -> None:
        means, stds, weights = (torch.as_tensor(v, dtype=torch.float64).cpu()
                                for v in (self.means, self.stds, self.weights))
        if means.ndim != 2 or means.shape[0] == 0:
            raise ValueError(f"means must be (K, d), one row per component, got shape {tuple(means.shape)}")
        K = means.shape[0]
        for name, v in (("stds", stds), ("weights", weights)):
            if v.shape != (K,):
                raise ValueError(f"{name} must have one value per component, shape ({K},), got {tuple(v.shape)}")
            if not bool((v > 0).all()) or not bool(torch.isfinite(v).all()):
                raise ValueError(f"{name} must be positive and finite, got {v.tolist()}")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        object.__setattr__(self, "weights", weights / weights.sum())

    @classmethod
    def equal(cls) -> GaussianMixture:
        """Four equal components (std 0.3) at (+-1, +-1): each coordinate has std about 1, like the toys."""
        means = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
        return cls(means, torch.full((4,), 0.3), torch.full((4,), 0.25))

    @classmethod
    def unequal(cls) -> GaussianMixture:
        """Two far-apart components (std 0.5) at (-2, 0) and (2, 0) with weights 0.8 and 0.2: plain Langevin
        started from N(0, I) splits its chains about half and half, not 0.8 / 0.2 (Song & Ermon 2019, sec. 3.2)."""
        return cls(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.tensor([0.5, 0.5]), torch.tensor([0.8, 0.2]))

    @property
    def dim(self) -> int:
        """d, the number of values per point."""
        return self.means.shape[1]

    def __repr__(self) -> str:
        return (f"GaussianMixture(K={len(self.weights)}, d={self.dim}, weights={[round(w, 3) for w in self.weights.tolist()]}, "
                f"stds={[round(s, 3) for s in self.stds.tolist()]})")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n points, float32 (n, d): a component k ~ w, then mu_k + s_k z with z ~ N(0, I), drawn on the CPU
        from ``generator`` in that order, so a seed gives the same points everywhere."""
        check_int("n", n, low=1)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)  # (n, d)
        return (self.means[k] + self.stds[k, None] * z).float()

    def _check_points(self, x: torch.Tensor) -> torch.Tensor:
        check_float_tensor(x, "x")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be points shaped (N, {self.dim}), got {tuple(x.shape)}")
        return x.double()

    def _log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; mu_k, s_k^2 I) for every point and component, float64 (N, K)."""
        x64 = self._check_points(x)
        means, stds, weights = (v.to(x.device) for v in (self.means, self.stds, self.weights))
        sq = torch.cdist(x64, means, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # (N, K) ||x - mu_k||^2
        log_normal = -sq / (2 * stds**2) - self.dim * (stds.log() + 0.5 * math.log(2 * math.pi))  # (N, K)
        return weights.log() + log_normal

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for points x (N, d): (N,), a logsumexp over the components."""
        return torch.logsumexp(self._log_joint(x), dim=1).to(x.dtype)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """r_k(x) = p(component k given x) for points x (N, d): (N, K), each row sums to 1 (a softmax)."""
        return torch.softmax(self._log_joint(x), dim=1).to(x.dtype)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The exact score grad_x log p(x) = sum_k r_k(x) (mu_k - x) / s_k^2 for points x (N, d): (N, d)."""
        r = torch.softmax(self._log_joint(x), dim=1)  # (N, K) float64
        x64 = x.double()
        means, stds = self.means.to(x.device), self.stds.to(x.device)
        pull = (means[None] - x64[:, None]) / stds[None, :, None] ** 2  # (N, K, d): each component's own score
        return (r[:, :, None] * pull).sum(1).to(x.dtype)

    def noised(self, alpha: float, sigma: float) -> GaussianMixture:
        """The distribution of x_t = alpha x_0 + sigma eps (x_0 from this mixture, eps ~ N(0, I)):
        components N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I), same weights. alpha = 1, sigma = 0 is this
        mixture itself; for DDPM's step t use alpha = sqrt(alpha_bar_t), sigma = sqrt(1 - alpha_bar_t)."""
        alpha, sigma = (float(v) if isinstance(v, torch.Tensor) and v.numel() == 1 else v for v in (alpha, sigma))
        alpha, sigma = check_number(alpha, "alpha"), check_number(sigma, "sigma")
        if alpha == 0 and sigma == 0:
            raise ValueError("alpha and sigma cannot both be 0: every point would be 0, not a density")
        return GaussianMixture(alpha * self.means, (alpha**2 * self.stds**2 + sigma**2).sqrt(), self.weights)

    def noise_predictor(self, schedule: NoiseSchedule) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The best eps-model there can be for this mixture on ``schedule``: model(x_t, t) = -sigma_t * grad log
        p_t(x_t), p_t this mixture noised to step t (whole or fractional, ``notation.alpha_sigma``), the score
        turned into a noise prediction (``notation.score_to_eps``). x_t (B, d), t (B,); any sampler runs on it."""
        from diffusion_lab.notation import alpha_sigma, score_to_eps

        def model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            eps = torch.empty_like(xt)
            for step in t.unique():  # samplers ask at one t per batch: usually one pass
                rows = t == step
                alpha, sigma = (float(c) for c in alpha_sigma(schedule, float(step)))
                eps[rows] = score_to_eps(self.noised(alpha, sigma).score(xt[rows]), sigma)
            return eps

        return model
