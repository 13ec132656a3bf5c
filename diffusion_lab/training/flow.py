"""The flow-matching objective for ``fit``, with minibatch OT pairing and reflow (chapter 09).

    1. draw data x_1, a flow time tau ~ U[0, 1) and noise eps ~ N(0, I) per sample
       (tau = 0 is noise, tau = 1 data: MIT 6.S184's time, the reverse of DDPM's step t)
    2. with ``ot=True``, reorder the noise within the batch to the nearest pairing (Tong et al. 2023)
    3. loss = || v_theta(x_tau, t) - (x_1 - eps) ||^2 with x_tau = tau x_1 + (1 - tau) eps and the
       network's t = 999 (1 - tau), 0 nearest the data as for DDPM (Lipman et al. 2023; ``flows.flow_matching_loss``)

With ``pairs=(noise, x1)``, fixed pairs a trained flow made (``flows.reflow_pairs``), each data point
keeps its own noise: that is reflow (Liu et al. 2023, rectified flow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_lab.flows import flow_matching_loss, ot_pairing
from diffusion_lab.tensors import check_finite_data, check_float_tensor
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.history import NUM_GROUPS
from diffusion_lab.training.objective import Batch, Objective


@dataclass
class FlowMatchingObjective(Objective):
    """Train ``model(x_tau, t)``, t = 999 (1 - tau) (float), to predict the velocity x_1 - eps.

    Give either x1, the data (N, ...) on the CPU, each batch paired with fresh noise (with ``ot=True``
    reordered to the minibatch optimal transport pairing), or pairs = (noise, x1), both (N, ...), for
    reflow on fixed pairs. The history groups the loss by tenths of the network's t, as for DDPM (group 0
    nearest the data, tau > 0.9), so chapter 04's ``LiveLossPlot(T=1000)`` labels it right.
    """

    x1: torch.Tensor | None = None
    ot: bool = False
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if (self.x1 is None) == (self.pairs is None):
            raise ValueError("give either x1 (flow matching on data) or pairs=(noise, x1) (reflow on a trained "
                             "flow's pairs), not both")
        if not isinstance(self.ot, bool):
            raise ValueError(f"ot must be True or False, got {self.ot!r}")
        if self.pairs is not None:
            if self.ot:
                raise ValueError("ot=True re-pairs the noise; reflow's pairs are fixed: use one or the other")
            if not isinstance(self.pairs, tuple | list) or len(self.pairs) != 2:
                raise ValueError("pairs must be (noise, x1), two tensors shaped (N, ...), e.g. from reflow_pairs")
            noise, data = self.pairs
            for what, x in (("the noise", noise), ("the data", data)):
                check_finite_data(check_float_tensor(x, "each of pairs"), f"{what} of pairs")
            if noise.shape != data.shape:
                raise ValueError(f"the noise and the data of pairs must have the same shape, got "
                                 f"{tuple(noise.shape)} and {tuple(data.shape)}")
            self.pairs = (noise, data)
        else:
            check_finite_data(check_float_tensor(self.x1, "x1"), "the training data x1")

    @property
    def data(self) -> torch.Tensor:
        """The data points, (N, ...)."""
        return self.x1 if self.pairs is None else self.pairs[1]

    def describe(self) -> dict:
        kind = "reflow" if self.pairs is not None else "flow_matching_ot" if self.ot else "flow_matching"
        return {"data_shape": list(self.data.shape), "objective": kind}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        """Indices (B,), tau (B,), then (unless reflow) noise (B, ...), always drawn in this order."""
        B = config.batch_size
        idx = torch.randint(len(self.data), (B,), generator=generator)
        tau = torch.rand(B, generator=generator)
        x1 = self.data[idx]
        if self.pairs is not None:
            return {"x1": x1, "eps": self.pairs[0][idx], "tau": tau}
        eps = torch.randn(x1.shape, generator=generator)  # (B, ...)
        if self.ot:
            eps = ot_pairing(x1, eps)  # the whole global batch, so every process gets the same pairs
        return {"x1": x1, "eps": eps, "tau": tau}

    def loss(self, model: Callable[..., torch.Tensor], batch: Batch) -> torch.Tensor:
        return flow_matching_loss(model, batch["x1"], batch["eps"], batch["tau"])

    def groups(self, batch: Batch) -> torch.Tensor:
        return ((1 - batch["tau"]) * NUM_GROUPS).long().clamp(max=NUM_GROUPS - 1)  # (B,): which tenth of t
