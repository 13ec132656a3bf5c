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


def sum_over_processes(tensors: list[torch.Tensor], world_size: int) -> list[torch.Tensor]:
    """Each tensor summed over all processes (itself with one process)."""
    if world_size == 1:
        return tensors
    out = [t.clone() for t in tensors]
    for t in out:
        dist.all_reduce(t)
    return out
