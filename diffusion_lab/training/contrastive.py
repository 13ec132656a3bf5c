"""CLIP's contrastive objective, with every copy of a caption counted as a match (chapter 10).

    logits = model(images, ids)                    (B, B): scale * cos(image i, caption j)
    targets = multi_positive_targets(ids)          (B, B): row i uniform over the captions equal to caption i
    loss_i = ( CE(logits[i, :], targets[i]) + CE(logits[:, i], targets[:, i]) ) / 2

This is the symmetric InfoNCE loss of CLIP (Radford et al. 2021): each picture must pick its caption out of
the batch (image -> text) and each caption its picture (text -> image). CLIP's targets are the identity:
caption i belongs to picture i only. Our captions repeat (a batch of 512 holds many "a small red circle in
the top left"), and calling an identical caption a wrong answer would ask the model to tell apart what no
caption distinguishes. So identical captions are positives for each other, and the target of a row is
spread evenly over them (the soft-target cross-entropy of SupCon-style losses, Khosla et al. 2020). When all
captions differ, this is exactly CLIP's loss.

No horizontal flips or other augmentation: a flip would turn "to the left of" into a lie. Under ``torchrun``
each process contrasts its own share of the batch (no gathering of the others' embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diffusion_lab.tensors import check_finite_data, check_images
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.objective import Batch, Objective


def _check_ids(ids: object, name: str = "ids") -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[0] == 0:
        got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be caption token ids shaped (B, L), from clip.tokenizer.encode(captions), "
                         f"got {got}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be integer token ids, got dtype {ids.dtype}; use tokenizer.encode(captions)")
    return ids


def multi_positive_targets(ids: torch.Tensor) -> torch.Tensor:
    """ids (B, L) -> targets (B, B) float: row i is uniform over the j whose caption equals caption i.

    Each row sums to 1 and the diagonal is never 0; captions that all differ give the identity matrix."""
    _check_ids(ids)
    same = (ids[:, None, :] == ids[None, :, :]).all(dim=-1).float()  # (B, B): 1 where caption i == caption j
    return same / same.sum(dim=1, keepdim=True)  # (B, B), rows sum to 1


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row: -sum_j targets[i, j] log softmax(logits[i])_j; logits and targets (B, K) -> (B,)."""
    return -(targets * logits.float().log_softmax(dim=1)).sum(dim=1)  # (B,)


def contrastive_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE per sample: logits (B, B) image -> text, targets (B, B) symmetric, from
    ``multi_positive_targets``. Returns (B,): the mean of picture i's and caption i's cross-entropies."""
    image_to_text = soft_cross_entropy(logits, targets)  # (B,): row i = picture i against every caption
    text_to_image = soft_cross_entropy(logits.t(), targets.t())  # (B,): row i = caption i against every picture
    return (image_to_text + text_to_image) / 2  # (B,)


@dataclass
class ContrastiveObjective(Objective):
    """Train a ``CLIP`` on captioned pictures: images (N, C, H, W) in [-1, 1] and their captions' token ids
    (N, L) int64. A batch is drawn with replacement; ``loss`` returns ``contrastive_loss`` (B,)."""

    images: torch.Tensor
    ids: torch.Tensor

    def __post_init__(self) -> None:
        check_finite_data(check_images(self.images, "images"), "the training images")
        _check_ids(self.ids)
        if self.ids.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.ids.shape[0]} captions; give one caption's "
                             f"ids per image")

    def describe(self) -> dict:
        return {"data_shape": list(self.images.shape), "ids_shape": list(self.ids.shape)}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        idx = torch.randint(len(self.images), (config.batch_size,), generator=generator)  # (B,)
        return {"images": self.images[idx], "ids": self.ids[idx]}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits = model(batch["images"], batch["ids"])  # (B, B)
        return contrastive_loss(logits, multi_positive_targets(batch["ids"]))  # (B,)
