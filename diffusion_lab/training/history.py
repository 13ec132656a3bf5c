"""What a training run records as it goes: the logged mean loss, and the loss per group of samples
(for a denoiser, per tenth of the timesteps: is the model worse at small t or at large t?) (chapter 04)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

NUM_GROUPS = 10


@dataclass
class LossHistory:
    """Logged mean losses at ``steps``, and running sums and counts of the loss per group 0..9."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    bucket_sums: list[float] = field(default_factory=lambda: [0.0] * NUM_GROUPS)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * NUM_GROUPS)

    def add_per_sample(self, groups: torch.Tensor, per_sample: torch.Tensor) -> None:
        """Add each sample's loss (B,) to its group (B,) int64 in 0..9."""
        for b, v in zip(groups.tolist(), per_sample.detach().float().tolist()):
            self.bucket_sums[b] += v
            self.bucket_counts[b] += 1

    def bucket_means(self) -> list[float]:
        """Mean loss of each group (for t: [0, T/10), [T/10, 2T/10), ...), NaN where no sample fell."""
        return [s / c if c else math.nan for s, c in zip(self.bucket_sums, self.bucket_counts)]
