"""Several processes training one model with DistributedDataParallel (chapter 04; used by ``torchrun``).

Every process draws the same global batch from the same seeded generator and keeps its own share
(``shard``); DistributedDataParallel averages the gradients, so N processes take the same step one
process would. NCCL on GPUs, Gloo on CPUs (the tests use Gloo).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes in the environment; return (rank, world size).

    The backend follows ``device``, the device this process computes on: NCCL for CUDA, Gloo otherwise.
    One process (no ``WORLD_SIZE``) needs no group and gets (0, 1).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(batch_size: int, rank: int, world_size: int) -> slice:
    """The slice of a global batch that process ``rank`` of ``world_size`` trains on."""
    return slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)


def gather(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate every process's shard of a batch (B / world, ...) -> (B, ...), in rank order."""
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def mean_over_processes(value: float, device: torch.device, world_size: int) -> float:
    """The mean of a number over all processes (each logs the mean loss of its own share)."""
    if world_size == 1:
        return value
    m = torch.tensor([value], device=device)
    dist.all_reduce(m)
    return m.item() / world_size
