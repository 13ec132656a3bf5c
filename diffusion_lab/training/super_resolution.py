"""The upsampler's objective: noise prediction on high-res crops, given their noised low res (chapter 10).

    1. draw a training picture, a random crop of it x_0 (crop x crop), a step t, noise eps, a level s ~ U[0, s_max]
       and the augmentation's own noise eps_s
    2. low_res = noise_augment(downsample(x_0), s, eps_s)    2x average pooling, then the forward process at s
    3. loss = || eps - eps_theta(x_t, t, low_res, s) ||^2     x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps

Crops (DALL-E 2 trains its upsamplers on crops a quarter of the target's area) make each step cheap,
and the network, having no attention, runs on whole pictures afterwards. The level s (Ho et al. 2021's
noise-conditioning augmentation) teaches the network not to trust its low res blindly, as it must not
when the low res comes from a first-stage sampler rather than from a real picture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_lab.models.upsampler import downsample, noise_augment
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_finite_data, check_images, check_int
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.diffusion import diffusion_loss
from diffusion_lab.training.history import NUM_GROUPS
from diffusion_lab.training.objective import Batch, Objective


def random_crops(images: torch.Tensor, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                 size: int) -> torch.Tensor:
    """images[idx[i]] cropped to size x size from (top[i], left[i]), for each i: (N, C, H, W) -> (B, C, size, size)."""
    return torch.stack([images[i, :, y:y + size, x:x + size]
                        for i, y, x in zip(idx.tolist(), top.tolist(), left.tolist())])


@dataclass
class SuperResolutionObjective(Objective):
    """Train ``upsampler(x_t, t, low_res, s)`` to predict the noise in high-res crops.

    images_hr: the high-res training pictures (N, C, H, W) in [-1, 1], on the CPU. schedule: the noise
    schedule of the high-res diffusion. crop_size: the side of the square crops, even, at most min(H, W)
    (the U-Net's ``image_size``). max_aug_level: s_max in [0, 1]; 0 trains without augmentation.
    """

    images_hr: torch.Tensor
    schedule: NoiseSchedule
    crop_size: int
    max_aug_level: float

    def __post_init__(self) -> None:
        check_finite_data(check_images(self.images_hr, "images_hr"), "the training pictures images_hr")
        if not isinstance(self.schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(self.schedule).__name__}")
        H, W = self.images_hr.shape[-2:]
        check_int(self.crop_size, "crop_size", low=2)
        if self.crop_size % 2 or self.crop_size > min(H, W):
            raise ValueError(f"crop_size must be even (its low res is half of it) and at most the pictures' "
                             f"{H}x{W}, got {self.crop_size}")
        level = self.max_aug_level
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= 1:
            raise ValueError(f"max_aug_level must be a number in [0, 1] (0: no augmentation), got {level!r}")

    def describe(self) -> dict:
        return {"data_shape": list(self.images_hr.shape), "schedule": self.schedule.name, "T": self.schedule.T,
                "crop_size": self.crop_size, "max_aug_level": self.max_aug_level}

    def to(self, device: torch.device) -> SuperResolutionObjective:
        return dataclasses.replace(self, schedule=self.schedule.to(device))

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        """x0 (B, C, crop, crop), its augmented ``low_res`` (B, C, crop/2, crop/2), ``aug_level`` (B,), t, eps,
        and ``aug_eps``, the augmentation's noise; drawn from ``generator`` in this order: picture, top, left,
        t, eps, level, aug_eps."""
        if config.cond_drop_prob > 0:
            raise ValueError("an upsampler always reads its low-res picture and has no null condition: "
                             f"train it with cond_drop_prob=0 (got {config.cond_drop_prob})")
        B, (N, C, H, W), size = config.batch_size, self.images_hr.shape, self.crop_size
        idx = torch.randint(N, (B,), generator=generator)
        top = torch.randint(H - size + 1, (B,), generator=generator)  # a crop fits: top + size <= H
        left = torch.randint(W - size + 1, (B,), generator=generator)
        t = torch.randint(self.schedule.T, (B,), generator=generator)
        eps = torch.randn((B, C, size, size), generator=generator)
        level = torch.rand(B, generator=generator) * self.max_aug_level  # s ~ U[0, s_max]
        aug_eps = torch.randn((B, C, size // 2, size // 2), generator=generator)
        x0 = random_crops(self.images_hr, idx, top, left, size)  # (B, C, size, size)
        low_res = noise_augment(downsample(x0), level, aug_eps)  # (B, C, size/2, size/2)
        return {"x0": x0, "low_res": low_res, "aug_level": level, "t": t, "eps": eps, "aug_eps": aug_eps}

    def loss(self, model: Callable[..., torch.Tensor], batch: Batch) -> torch.Tensor:
        def denoiser(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # the low res and its level bound in
            return model(xt, t, batch["low_res"], batch["aug_level"])

        return diffusion_loss(denoiser, self.schedule, batch["x0"], batch["t"], batch["eps"])  # (B,)

    def groups(self, batch: Batch) -> torch.Tensor:
        return batch["t"] * NUM_GROUPS // self.schedule.T  # (B,): which tenth of the steps
