"""How well a classifier reads noisy pictures: its accuracy at each noise level t (chapter 07).

A classifier that steers sampling (classifier guidance) is asked about x_t at every t. This measures
how its accuracy falls as the noise rises; ``model`` is called as ``model(x_t, t)`` (wrap a clean
classifier in a module that ignores t to measure it too, as chapter 07 does).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_images, check_int, eval_mode


@torch.no_grad()
def accuracy_by_timestep(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule,
                         timesteps: Iterable[int] = (0, 250, 500, 750, 999), seed: int = 0,
                         *, batch_size: int = 500) -> dict[int, float]:
    """Accuracy (a fraction in [0, 1]) of ``model`` on ``images`` noised to each step in ``timesteps``.

    Returns ``{t: accuracy}`` in the order given. Every t uses the same noise eps per image (the
    generator is re-seeded with ``seed`` for each t), so the rows differ only in the noise level.
    images: (N, C, H, W) in [-1, 1] on any device, labels (N,) int64. The model's train/eval mode is
    restored afterwards.
    """
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, e.g. NoiseSchedule.from_name('cosine', 1000), "
                        f"got {type(schedule).__name__}")
    check_images(images, "images")
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be a 1-D tensor with one class per image ({len(images)},), got "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    if isinstance(timesteps, (int, torch.Tensor)):
        raise TypeError(f"timesteps must be a sequence of ints such as (0, 500, 999), got {timesteps!r}; "
                        f"for one step use (t,)")
    timesteps = [int(schedule.check_t(t)) for t in timesteps]
    if not timesteps:
        raise ValueError("timesteps is empty; give at least one step, e.g. (0, 500, 999)")
    check_int(batch_size, "batch_size", low=1)

    device = next(model.parameters()).device
    result: dict[int, float] = {}
    with eval_mode(model):
        for step in timesteps:
            gen = torch.Generator().manual_seed(seed)  # the same eps for every t
            correct = 0
            for start in range(0, len(images), batch_size):
                x0 = images[start:start + batch_size].to(device)  # (b, C, H, W)
                y = labels[start:start + batch_size].to(device)  # (b,)
                eps = torch.randn(x0.shape, generator=gen).to(device=device, dtype=x0.dtype)  # (b, C, H, W)
                t = torch.full((len(x0),), step, dtype=torch.long, device=device)  # (b,)
                pred = model(schedule.add_noise(x0, eps, t), t).argmax(dim=1)  # (b,)
                correct += int((pred == y).sum())
            result[step] = correct / len(images)
    return result
