"""Flow matching: learn a velocity field that carries noise to data along straight lines (chapter 09).

Time runs the other way from DDPM's. Here, as in MIT 6.S184's notes and Lipman et al. 2023, tau runs
from 0 to 1, tau = 0 is pure noise x_0 = eps ~ N(0, I) and tau = 1 is data x_1; the course's DDPM
step t (chapters 01-05) counts the other way, t = 0 clean and t = T - 1 noisiest.

    x_tau = tau x_1 + (1 - tau) eps        the linear (rectified, optimal-transport) path     ``interpolate``
    u     = x_1 - eps                      its velocity d x_tau / d tau, the same at every tau ``target_velocity``
    loss  = || v_theta(x_tau, tau) - u ||^2, tau ~ U[0, 1)   (Lipman et al. 2023; Liu et al. 2023)

Sampling integrates dx / dtau = v_theta(x, tau) from tau = 0 to 1 (``flow_euler``, ``flow_heun``).
The network is told t = 999 (1 - tau) (``network_t``), a float in [0, 999] read as every network of the
course reads its t: 0 nearest the data, 999 the noisiest (``notation.tau_to_t`` for T = 1000), so the
sinusoidal embedding sees the range the DDPM models see. Two ways to straighten the paths,
so that a few steps suffice: pair each data point with nearby noise inside the batch (minibatch
optimal transport, ``ot_pairing``: Tong et al. 2023, Pooladian et al. 2023), and reflow: train again on
the model's own (noise, sample) pairs (Liu et al. 2023, ``reflow_pairs``), measured by ``straightness``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from diffusion_lab.sampling.loop import Callback
from diffusion_lab.tensors import append_dims, check_float_tensor, check_int, eval_mode

T_MAX = 999.0  # the network's t runs over [0, 999], as the DDPM models' steps do

# model(x, t) -> velocity, x (B, ...), t float (B,) = 999 (1 - tau); a conditional model with its condition bound
VelocityModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def network_t(tau: torch.Tensor) -> torch.Tensor:
    """What the network is told at flow time tau (B,) in [0, 1]: t = 999 (1 - tau), so t = 999 is the noise
    (tau = 0) and t = 0 the data (tau = 1), as for the DDPM models. float32 (float64 for float64 tau)."""
    return (1 - tau.to(torch.float64 if tau.dtype == torch.float64 else torch.float32)) * T_MAX


def interpolate(x1: torch.Tensor, eps: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """x_tau = tau x_1 + (1 - tau) eps: data x1 and noise eps (B, ...), one tau per sample (B,). tau = 0 is
    the noise, tau = 1 the data."""
    tau = append_dims(tau, x1.ndim).to(x1.dtype)  # (B, 1, ...)
    return tau * x1 + (1 - tau) * eps


def target_velocity(x1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u = x_1 - eps, the velocity of the linear path from the noise eps to the data x1, (B, ...)."""
    return x1 - eps


def _velocity(model: VelocityModel, x: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """The model's velocity at x (B, ...) and flow time tau (a float, or (B,)), checked for shape."""
    if not isinstance(tau, torch.Tensor):
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        tau = torch.full((x.shape[0],), float(tau), dtype=dtype, device=x.device)
    v = model(x, network_t(tau))
    if v.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(v.shape)}, expected {tuple(x.shape)} (one velocity "
                         f"per input value)")
    return v


def flow_matching_loss(model: VelocityModel, x1: torch.Tensor, eps: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Conditional flow matching per sample: mean over values of (v_theta(x_tau, t) - (x1 - eps))^2 with the
    network's t = 999 (1 - tau).

    x1 data and eps noise (B, ...), tau (B,) in [0, 1]. Returns (B,). (Lipman et al. 2023, eq. 23 with
    the linear path; Liu et al. 2023's rectified-flow loss is the same.)
    """
    v = _velocity(model, interpolate(x1, eps, tau), tau)  # (B, ...)
    return (v.float() - target_velocity(x1, eps)).pow(2).flatten(1).mean(1)  # (B,)


def _check_sampler_args(x_noise: torch.Tensor, num_steps: int) -> None:
    check_float_tensor(x_noise, "x_noise")
    check_int(num_steps, "num_steps", low=1)


@torch.no_grad()
def flow_euler(model: VelocityModel, x_noise: torch.Tensor, num_steps: int, *,
               callback: Callback | None = None) -> torch.Tensor:
    """Euler's method for dx / dtau = v_theta(x, tau) from tau = 0 (x_noise, (B, ...)) to tau = 1, in
    ``num_steps`` equal steps: x <- x + (1 / num_steps) v. Uses num_steps network evaluations.

    callback(i, t, x, pred_x1) runs after step i: chapter 05's ``Callback``, with t the network's (float)
    t = 999 (1 - tau) at the step's start, as every sampler of the course reports it (999 first, the noise);
    x is the sample at tau + 1 / num_steps and pred_x1 = x_tau + (1 - tau) v, where a straight line at the
    model's velocity lands at tau = 1. ``record_trajectory()`` records them (with ``every`` > 1 it keeps the
    final sample only when ``every`` divides num_steps - 1). Runs without gradients; returns the samples (B, ...).
    """
    _check_sampler_args(x_noise, num_steps)
    x, h = x_noise, 1.0 / num_steps
    for i in range(num_steps):
        tau = i / num_steps
        v = _velocity(model, x, tau)
        pred_x1 = x + (1 - tau) * v  # the guess of the data made at tau
        x = x + h * v
        if callback is not None:
            callback(i, T_MAX * (1 - tau), x, pred_x1)
    return x


@torch.no_grad()
def flow_heun(model: VelocityModel, x_noise: torch.Tensor, num_steps: int, *,
              callback: Callback | None = None) -> torch.Tensor:
    """Heun's method (second order) for dx / dtau = v_theta(x, tau) from tau = 0 to 1, as EDM's Algorithm 1
    (Karras et al. 2022): an Euler step to tau' = tau + h, the velocity there, then the step again with the
    mean of the two velocities; the last step stays Euler. Uses 2 num_steps - 1 network evaluations.

    x_noise (B, ...); callback(i, t, x, pred_x1) as in ``flow_euler`` (pred_x1 from the first velocity).
    Runs without gradients; returns the samples (B, ...).
    """
    _check_sampler_args(x_noise, num_steps)
    x, h = x_noise, 1.0 / num_steps
    for i in range(num_steps):
        tau = i / num_steps
        v = _velocity(model, x, tau)
        pred_x1 = x + (1 - tau) * v
        x_next = x + h * v  # Euler's guess
        if i < num_steps - 1:  # correct it with the velocity at the end of the step
            x_next = x + h * 0.5 * (v + _velocity(model, x_next, (i + 1) / num_steps))
        x = x_next
        if callback is not None:
            callback(i, T_MAX * (1 - tau), x, pred_x1)
    return x


def linear_assignment(cost: np.ndarray | torch.Tensor) -> np.ndarray:
    """The permutation that minimises sum_i cost[i, col[i]] for a square cost (n, n), exactly: col (n,) int64.

    Shortest augmenting paths with dual variables (Jonker & Volgenant 1987; the form of Crouse 2016, which
    scipy's ``linear_sum_assignment`` uses), O(n^3) work in O(n^2) numpy steps: columns first take their
    cheapest row where it is free, then each row left over finds, Dijkstra-style over the reduced costs
    cost - u - v >= 0, the cheapest chain of reassignments that ends at a free column.
    """
    cost = np.asarray(cost.detach().cpu() if isinstance(cost, torch.Tensor) else cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or not np.isfinite(cost).all():
        raise ValueError(f"cost must be a square (n, n) matrix of finite numbers, got shape {cost.shape}")
    n = cost.shape[0]
    u, v = np.zeros(n), cost.min(axis=0)  # dual variables, feasible: cost[i, j] - u[i] - v[j] >= 0
    col4row, row4col = np.full(n, -1), np.full(n, -1)
    for j, i in enumerate(cost.argmin(axis=0)):  # a column's cheapest row has reduced cost 0: take it if free
        if col4row[i] == -1:
            col4row[i], row4col[j] = j, i
    for free_row in np.flatnonzero(col4row == -1):
        dist = np.full(n, np.inf)  # shortest reduced path length to each unscanned column
        final = np.zeros(n)  # ... and to each scanned one, when it was scanned
        blocked = -v.copy()  # -v[j], or inf once column j is scanned
        path = np.full(n, -1)  # the row from which each column was reached
        scanned_rows, i, min_val, sink = [], free_row, 0.0, -1
        while sink == -1:
            scanned_rows.append(i)
            r = cost[i] + blocked + (min_val - u[i])  # (n,) path lengths through row i
            better = r < dist
            dist[better], path[better] = r[better], i
            j = int(dist.argmin())
            min_val, final[j], dist[j], blocked[j] = dist[j], dist[j], np.inf, np.inf
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
        scanned = np.isinf(blocked)
        rows = np.array(scanned_rows[1:], dtype=np.int64)
        u[free_row] += min_val  # keep the duals feasible and tight on the assigned pairs
        u[rows] += min_val - final[col4row[rows]]
        v[scanned] -= min_val - final[scanned]
        j = sink
        while True:  # flip the assignments along the path
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == free_row:
                break
    return col4row


def ot_pairing(x1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """eps (B, ...) reordered so that sum_i ||x1_i - eps_i||^2 is the least any reordering gives: minibatch
    optimal transport (Tong et al. 2023; Pooladian et al. 2023). Flow matching on these pairs learns
    straighter, less crossing paths. The assignment is exact (``linear_assignment``), on the CPU."""
    if x1.shape != eps.shape:
        raise ValueError(f"x1 and eps must have the same shape, got {tuple(x1.shape)} and {tuple(eps.shape)}")
    a, b = x1.detach().flatten(1).double().cpu(), eps.detach().flatten(1).double().cpu()
    cost = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # (B, B)
    perm = torch.from_numpy(linear_assignment(cost.numpy())).to(eps.device)
    return eps[perm]


def _device_of(model: VelocityModel) -> torch.device:
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    return params[0].device if params else torch.device("cpu")


def _scoring(model: VelocityModel) -> contextlib.AbstractContextManager:
    """Eval mode for a module (its mode restored afterwards), nothing for a plain callable."""
    return eval_mode(model) if isinstance(model, nn.Module) else contextlib.nullcontext()


@torch.no_grad()
def reflow_pairs(model: VelocityModel, shape: Sequence[int], *, num_steps: int = 50,
                 generator: torch.Generator | None = None, sampler: Callable[..., torch.Tensor] = flow_heun,
                 batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise, samples), each (N, ...) = ``shape`` on the CPU: noise drawn from ``generator`` on the CPU and
    the trained flow's samples from it (``sampler`` with ``num_steps`` steps, in batches, in eval mode, on the
    model's device). Training on these fixed pairs is reflow (Liu et al. 2023, rectified flow): the new
    flow's paths are straighter, so fewer steps give the same samples."""
    check_int(batch_size, "batch_size", low=1)
    noise = torch.randn(tuple(shape), generator=generator)  # (N, ...)
    device = _device_of(model)
    with _scoring(model):
        samples = torch.cat([sampler(model, chunk.to(device), num_steps).float().cpu()
                             for chunk in noise.split(batch_size)])
    return noise, samples


@torch.no_grad()
def straightness(model: VelocityModel, x_noise: torch.Tensor, num_steps: int) -> float:
    """How far the model's paths from x_noise (B, ...) bend: Liu et al. 2023's
    S = integral over tau of E || (x_1 - x_0) - v(x_tau, tau) ||^2, along the model's own Euler path with
    ``num_steps`` steps (a sum over values, a mean over samples). 0 for perfectly straight paths, which one
    Euler step follows exactly."""
    _check_sampler_args(x_noise, num_steps)
    x, h = x_noise, 1.0 / num_steps
    sum_sq = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)  # (B,) sum over steps of ||v_i||^2
    with _scoring(model):
        for i in range(num_steps):
            v = _velocity(model, x, i / num_steps)
            sum_sq += v.double().flatten(1).pow(2).sum(1)
            x = x + h * v
    displacement = (x - x_noise).double().flatten(1)  # (B, D) = the mean of the velocities
    # mean_i ||d - v_i||^2 = mean_i ||v_i||^2 - ||d||^2 when d is the mean of the v_i
    return float((sum_sq * h - displacement.pow(2).sum(1)).mean().clamp(min=0))
