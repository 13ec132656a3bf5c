"""Checks for chapter 10 (CLIP and DALL·E 2): CLIP's loss, the prior's loss, a text diff, the upsampler's condition.

    10.1  clip_loss(image_emb, text_emb, ids, scale)              symmetric InfoNCE, identical captions positives
    10.2  prior_loss(model, image_emb, mean, std, t, eps, alpha_bars)   x_0-prediction in the normalised units
    10.3  text_diff(image_emb, from_emb, to_emb, amount)          move along the unit text direction, renormalise
    10.4  low_res_condition(images, alpha_bar, noise)             2x average, noise to alpha_bar(s), enlarge (bilinear)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.models.upsampler import augmentation_alpha_bar, downsample, enlarge, noise_augment
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims
from diffusion_lab.training.contrastive import contrastive_loss, multi_positive_targets, soft_cross_entropy
from diffusion_lab.training.prior import prior_loss

LOSS, PRIOR, TEXT_DIFF, CONDITION = "10.1", "10.2", "10.3", "10.4"  # the exercises' numbers in chapter 10

_ONE_PER_SAMPLE = "one loss per sample, shape (B,): no .mean() over the batch"


def _broadcast_hint(name: str, ndim: str) -> Callable[[Exception], str | None]:
    def hint(err: Exception) -> str | None:
        if isinstance(err, RuntimeError) and ("size of tensor" in str(err) or "shape" in str(err)):
            return f"{name} has shape (B,): broadcast it with append_dims({name}, {ndim})"
        return None

    return hint


def _deterministic(exercise: str, fn: Callable[..., Any], args: list[Any], got: Any) -> None:
    """Fail when a second call with the same inputs gives another answer: fresh noise instead of the given one."""
    again = _call(exercise, fn, *[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
    if (isinstance(got, torch.Tensor) and isinstance(again, torch.Tensor)
            and not torch.equal(got.detach(), again.detach())):
        raise ExerciseFailed(exercise, "two calls with the same inputs gave different answers: use the noise you "
                                       "are given, do not draw new noise (torch.randn_like)")


# ----- 10.1 the contrastive loss ---------------------------------------------------------------------------------

def _clip_batch(seed: int, captions: list[int], dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit image and text embeddings (B, D) and token ids (B, 5); equal numbers in ``captions`` are equal captions
    (the same ids, the same text embedding), as they are in a batch of scenes."""
    gen = _gen(seed)
    k = max(captions) + 1
    caption_ids = torch.randint(1, 30, (k, 5), generator=gen)  # (k, L): k different captions
    caption_ids[:, 0] = 0  # every caption starts with <start>, as the tokenizer's do
    caption_emb = F.normalize(torch.randn(k, dim, generator=gen), dim=-1)  # (k, D)
    which = torch.tensor(captions)
    image_emb = F.normalize(caption_emb[which] + 0.7 * torch.randn(len(which), dim, generator=gen), dim=-1)
    return image_emb, caption_emb[which], caption_ids[which]


def check_clip_loss(fn: Callable[..., torch.Tensor]) -> None:
    """10.1: clip_loss(image_emb, text_emb, ids, scale) -> (B,), CLIP's symmetric loss with multi-positive targets."""
    cases = [(100, [0, 1, 0, 2, 1, 3, 0], 8, 14.0), (101, [0, 1, 2, 3, 4], 6, torch.tensor(4.5))]
    for seed, captions, dim, scale in cases:
        image_emb, text_emb, ids = _clip_batch(seed, captions, dim)
        what = f"the loss for {len(captions)} pairs ({len(captions) - len(set(captions))} repeated captions)"
        got = _call(LOSS, fn, image_emb.clone(), text_emb.clone(), ids.clone(), scale)
        s = float(scale)
        cos = image_emb @ text_emb.t()  # (B, B)
        logits, targets = s * cos, multi_positive_targets(ids)  # (B, B) each
        same = (targets > 0).float()
        image_to_text, text_to_image = soft_cross_entropy(logits, targets), soft_cross_entropy(logits.t(), targets.t())
        wrong_axis = -(targets * logits.log_softmax(0)).sum(1) - (targets * logits.t().log_softmax(0)).sum(1)
        _compare(LOSS, got, contrastive_loss(logits, targets), what, shape_hint=_ONE_PER_SAMPLE, mistakes={
            "that is the image -> text half only (rows: each picture against every caption); average it with the "
            "text -> image half, the same cross-entropy on logits.T": image_to_text,
            "that is the text -> image half only; average it with the image -> text half (the rows of logits)":
                text_to_image,
            "that adds the two directions; the loss is their average, (image -> text + text -> image) / 2":
                image_to_text + text_to_image,
            "identical captions are matches too: picture i's target spreads evenly over every caption equal to its "
            "own (CLIP's plain diagonal targets call a copy of the right caption wrong)":
                contrastive_loss(logits, torch.eye(len(ids))),
            "normalise the targets: each row of the 0/1 mask of equal captions must sum to 1 (divide by its row sum)":
                contrastive_loss(logits, same),
            "multiply the cosine similarities by scale (1 / temperature) before the softmax":
                contrastive_loss(cos, targets),
            "scale is 1 / temperature: multiply the similarities by it, do not divide":
                contrastive_loss(cos / s, targets),
            "the softmax runs over the wrong axis: row i of logits is picture i against every caption, so image -> "
            "text takes log_softmax(dim=1) of logits, and text -> image the same of logits.T": wrong_axis / 2})
    _passed(LOSS, "each picture picks its caption out of the batch and each caption its picture; copies of a caption "
                  "share the credit.")


# ----- 10.2 the prior's loss ---------------------------------------------------------------------------------------

class _ToyPrior(nn.Module):
    """model(xt, t) -> a guess of x_0 (B, D): a fixed linear map plus a term in t, so mixed-up inputs change it.
    (It takes the package's ``cond`` too, and ignores it: in the exercise the caption is bound in.)"""

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        with torch.no_grad():
            self.lin.weight.copy_(0.4 * torch.randn(dim, dim, generator=_gen(seed)))
            self.lin.bias.copy_(0.1 * torch.randn(dim, generator=_gen(seed + 1)))
        self.t_scale = nn.Parameter(torch.tensor(0.3))

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.lin(xt) + self.t_scale * (t.float() / 100)[:, None]  # (B, D)


def _embeddings(seed: int, n: int, dim: int) -> torch.Tensor:
    """Unit vectors (n, D) that share a common direction, as CLIP's image embeddings do."""
    gen = _gen(seed)
    common = F.normalize(torch.randn(dim, generator=gen), dim=0)
    return F.normalize(common + 0.5 * torch.randn(n, dim, generator=gen), dim=-1)


def _prior_mistakes(model: nn.Module, image_emb: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, t: torch.Tensor,
                    eps: torch.Tensor, abar: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the usual slips give, keyed by the message that names each; abar is alpha_bars[t] (B,)."""
    a = abar[:, None]  # (B, 1)
    x0 = (image_emb - mean) / std  # (B, D)

    @torch.no_grad()
    def loss(e0: torch.Tensor, target: torch.Tensor | None = None, xt: torch.Tensor | None = None) -> torch.Tensor:
        xt = a.sqrt() * e0 + (1 - a).sqrt() * eps if xt is None else xt
        return (model(xt, t) - (e0 if target is None else target)).pow(2).mean(1)  # (B,)

    own = (image_emb - image_emb.mean(1, keepdim=True)) / image_emb.std(1, keepdim=True)
    return {
        "this prior predicts the clean embedding: the target is x_0 (the normalised image embedding), not the noise "
        "eps": loss(x0, target=eps),
        "normalise first: x_0 = (image_emb - mean) / std, then noise x_0 and use it as the target": loss(image_emb),
        "the target is the normalised x_0 that was noised, not the raw image embedding": loss(x0, target=image_emb),
        "normalise with the mean and std you are given (measured once on the training set), not with this batch's "
        "own": loss((image_emb - image_emb.mean(0)) / image_emb.std(0)),
        "the statistics are per dimension, across embeddings (mean and std have shape (D,)): not one mean and std "
        "per embedding": loss(own),
        "x_0 = (image_emb - mean) / std: divide by the std too": loss(image_emb - mean),
        "x_0 = (image_emb - mean) / std: subtract the mean too": loss(image_emb / std),
        "divide by the std, do not multiply: x_0 = (image_emb - mean) / std": loss((image_emb - mean) * std),
        "the model must see the noisy x_t, not the clean x_0": loss(x0, xt=x0),
        "x_t takes the square roots: sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps":
            loss(x0, xt=a * x0 + (1 - a) * eps),
        "average the squared error over the D values (mean(dim=1)), do not sum it": loss(x0) * image_emb.shape[1],
    }


def check_prior_loss(fn: Callable[..., torch.Tensor]) -> None:
    """10.2: prior_loss(model, image_emb, mean, std, t, eps, alpha_bars) -> (B,), the x_0 error in normalised units."""
    schedule = NoiseSchedule.from_name("cosine", T=100)
    for seed, (B, D), steps in ((110, (6, 8), [0, 7, 30, 55, 80, 99]), (112, (5, 12), [3, 20, 49, 70, 95])):
        train = _embeddings(seed, 400, D)  # (N, D): what mean and std were measured on
        mean, std = train.mean(0), train.std(0)  # (D,) each
        image_emb = _embeddings(seed, 400 + B, D)[-B:]  # (B, D): a batch from the same distribution
        t, eps, model = torch.tensor(steps), torch.randn(B, D, generator=_gen(seed + 1)), _ToyPrior(D, seed)
        args = [model, image_emb, mean, std, t, eps, schedule.alpha_bars]
        got = _call(PRIOR, fn, *[a.clone() if isinstance(a, torch.Tensor) else a for a in args],
                    hint=_broadcast_hint("alpha_bars[t]", "image_emb.ndim"))
        with torch.no_grad():
            want = prior_loss(model, schedule, (image_emb - mean) / std, t, eps)
        _compare(PRIOR, got, want, f"the loss for {B} embeddings of {D} dimensions", per_sample=True,
                 shape_hint=f"{_ONE_PER_SAMPLE}; average the squared error over the D values (.mean(dim=1))",
                 mistakes=_prior_mistakes(*args[:-1], schedule.alpha_bars[t]))
        if not got.requires_grad:
            raise ExerciseFailed(PRIOR, "the loss has no gradient: keep it a torch computation through the model (no "
                                        ".item(), .detach() or torch.no_grad())")
    _passed(PRIOR, "noise the normalised embedding, ask for it back: unCLIP's prior loss, in the units the schedule "
                   "expects.")


# ----- 10.3 a text diff -------------------------------------------------------------------------------------------

def check_text_diff(fn: Callable[..., torch.Tensor]) -> None:
    """10.3: text_diff(image_emb, from_emb, to_emb, amount) = normalise(image_emb + amount normalise(to - from))."""
    for seed, (B, D), amount in ((120, (4, 8), 0.7), (121, (3, 16), 1.5)):
        image_emb, from_emb, to_emb = (_embeddings(seed + i, B, D) for i in range(3))
        got = _call(TEXT_DIFF, fn, image_emb.clone(), from_emb.clone(), to_emb.clone(), amount)
        direction = to_emb - from_emb  # (B, D)
        unit = F.normalize(direction, dim=-1)
        _compare(TEXT_DIFF, got, F.normalize(image_emb + amount * unit, dim=-1), f"the edited embeddings {(B, D)}",
                 per_sample=True, mistakes={
                     "renormalise the result: CLIP's embeddings are unit vectors, and the decoder learnt from those":
                         image_emb + amount * unit,
                     "normalise the direction to_emb - from_emb first, so that amount counts steps of length 1":
                         F.normalize(image_emb + amount * direction, dim=-1),
                     "the direction from 'from' to 'to' is to_emb - from_emb":
                         F.normalize(image_emb - amount * unit, dim=-1),
                     "move along the difference to_emb - from_emb, not towards to_emb alone":
                         F.normalize(image_emb + amount * to_emb, dim=-1),
                     "normalise each embedding by its own length (dim=-1): that divides by the norm of the whole batch":
                         (lambda v: v / v.norm())(image_emb + amount * direction / direction.norm())})
    _passed(TEXT_DIFF, "the caption's change, as a direction in CLIP's space, applied to a picture's embedding.")


# ----- 10.4 the upsampler's low-res condition ---------------------------------------------------------------------

def _condition_mistakes(images: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the usual slips give, keyed by the message that names each."""
    a = append_dims(alpha_bar, images.ndim)  # (B, 1, 1, 1)

    def augment(low: torch.Tensor) -> torch.Tensor:
        return a.sqrt() * low + (1 - a).sqrt() * noise

    low = downsample(images)  # (B, C, H/2, W/2)
    return {
        "enlarge by bilinear interpolation, not nearest: nearest copies each pixel into a 2x2 block, blocks the "
        "upsampler would have to learn to undo": F.interpolate(augment(low), scale_factor=2.0, mode="nearest"),
        "use align_corners=False, as the upsampler does (F.interpolate(..., mode='bilinear', align_corners=False))":
            F.interpolate(augment(low), size=images.shape[-2:], mode="bilinear", align_corners=True),
        "that is the low res without its augmentation: noise it to alpha_bar before enlarging": enlarge(low),
        "downsample by averaging each 2x2 block (F.avg_pool2d(images, 2)), not by keeping every other pixel":
            enlarge(augment(images[..., ::2, ::2])),
        "average each 2x2 block, do not take its maximum": enlarge(augment(F.max_pool2d(images, 2))),
        "the forward process takes square roots: sqrt(alpha_bar) low_res + sqrt(1 - alpha_bar) noise":
            enlarge(a * low + (1 - a) * noise),
        "alpha_bar is the signal's share: sqrt(alpha_bar) multiplies the low res and sqrt(1 - alpha_bar) the noise":
            enlarge((1 - a).sqrt() * low + a.sqrt() * noise),
    }


def check_low_res_condition(fn: Callable[..., torch.Tensor]) -> None:
    """10.4: low_res_condition(images, alpha_bar, noise): average 2x2 blocks, noise to alpha_bar, enlarge (bilinear)."""
    for seed, shape, levels in ((130, (4, 3, 8, 8), [0.1, 0.0, 0.3, 0.6]), (131, (3, 1, 6, 10), [0.05, 0.2, 0.9])):
        images = torch.rand(shape, generator=_gen(seed)) * 2 - 1  # (B, C, H, W) in [-1, 1]
        B, C, H, W = shape
        noise = torch.randn(B, C, H // 2, W // 2, generator=_gen(seed + 1))
        level = torch.tensor(levels)
        alpha_bar = augmentation_alpha_bar(level)  # (B,): 1 at s = 0
        args = [images.clone(), alpha_bar.clone(), noise.clone()]
        got = _call(CONDITION, fn, *args, hint=_broadcast_hint("alpha_bar", "images.ndim"))
        _deterministic(CONDITION, fn, args, got)
        _compare(CONDITION, got, enlarge(noise_augment(downsample(images), level, noise)),
                 f"the condition for pictures {shape}", per_sample=True,
                 shape_hint="enlarge the noised low res back to the pictures' H x W: (B, C, H, W)",
                 mistakes=_condition_mistakes(images, alpha_bar, noise))
    _passed(CONDITION, "the upsampler reads a blurred, slightly noisy low res, as the first stage will hand it over.")


CHECKS: dict[str, Callable[[Callable[..., torch.Tensor]], None]] = {
    LOSS: check_clip_loss,
    PRIOR: check_prior_loss,
    TEXT_DIFF: check_text_diff,
    CONDITION: check_low_res_condition,
}
