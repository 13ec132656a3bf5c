"""Chapter 10's checks name each typical mistake, in one line, and agree with the package they teach.

(Every check is also run through tests/test_exercises.py with the answers in exercise_cases/clip.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from exercise_cases import clip

from diffusion_lab.exercises import (
    CHECKS,
    ExerciseFailed,
    check_clip_loss,
    check_low_res_condition,
    check_prior_loss,
    check_text_diff,
)
from diffusion_lab.exercises.clip import CONDITION, LOSS, PRIOR, TEXT_DIFF

MISTAKES = [
    (LOSS, clip.clip_loss_one_direction, r"image -> text half only"),
    (LOSS, clip.clip_loss_diagonal, r"identical captions are matches too"),
    (LOSS, clip.clip_loss_no_scale, r"multiply the cosine similarities by scale"),
    (LOSS, clip.clip_loss_divided, r"scale is 1 / temperature: multiply"),
    (LOSS, clip.clip_loss_rows_not_normalised, r"normalise the targets: each row"),
    (LOSS, clip.clip_loss_wrong_axis, r"the softmax runs over the wrong axis"),
    (LOSS, clip.clip_loss_summed, r"adds the two directions; the loss is their average"),
    (LOSS, clip.clip_loss_batch_mean, r"should have shape \(7,\), got \(\); one loss per sample"),
    (LOSS, clip.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (PRIOR, clip.prior_loss_eps_target, r"the target is x_0 .*not the noise eps"),
    (PRIOR, clip.prior_loss_not_normalised, r"normalise first: x_0 = \(image_emb - mean\) / std"),
    (PRIOR, clip.prior_loss_batch_statistics, r"mean and std you are given .* not with this batch's own"),
    (PRIOR, clip.prior_loss_wrong_axis, r"per dimension, across embeddings"),
    (PRIOR, clip.prior_loss_times_std, r"divide by the std, do not multiply"),
    (PRIOR, clip.prior_loss_clean_input, r"must see the noisy x_t"),
    (PRIOR, clip.prior_loss_summed, r"do not sum it"),
    (PRIOR, clip.prior_loss_detached, r"the loss has no gradient"),
    (PRIOR, clip.prior_loss_scalar, r"should have shape \(6,\), got \(\); one loss per sample"),
    (TEXT_DIFF, clip.text_diff_not_renormalised, r"renormalise the result"),
    (TEXT_DIFF, clip.text_diff_raw_direction, r"normalise the direction to_emb - from_emb first"),
    (TEXT_DIFF, clip.text_diff_reversed, r"is to_emb - from_emb"),
    (TEXT_DIFF, clip.text_diff_towards_to, r"not towards to_emb alone"),
    (TEXT_DIFF, clip.text_diff_batch_norm, r"by its own length \(dim=-1\)"),
    (CONDITION, clip.low_res_condition_nearest, r"bilinear interpolation, not nearest"),
    (CONDITION, clip.low_res_condition_align_corners, r"align_corners=False"),
    (CONDITION, clip.low_res_condition_no_augmentation, r"without its augmentation"),
    (CONDITION, clip.low_res_condition_strided, r"not by keeping every other pixel"),
    (CONDITION, clip.low_res_condition_max_pool, r"do not take its maximum"),
    (CONDITION, clip.low_res_condition_noise_after, r"use the noise you are given"),
    (CONDITION, clip.low_res_condition_no_sqrt, r"takes square roots"),
    (CONDITION, clip.low_res_condition_not_enlarged, r"should have shape \(4, 3, 8, 8\), got \(4, 3, 4, 4\); enlarge"),
    (CONDITION, clip.low_res_condition_first_level, r"right for sample\(s\) \[0\].*not reaching each sample"),
]


def test_the_checks_are_registered() -> None:
    assert CHECKS[LOSS] is check_clip_loss and CHECKS[PRIOR] is check_prior_loss
    assert CHECKS[TEXT_DIFF] is check_text_diff and CHECKS[CONDITION] is check_low_res_condition


@pytest.mark.parametrize(("key", "wrong", "message"), MISTAKES, ids=[f"{k}-{fn.__name__}" for k, fn, _ in MISTAKES])
def test_mistake_is_named(key: str, wrong: Callable[..., Any], message: str) -> None:
    with pytest.raises(ExerciseFailed, match=message) as info:
        CHECKS[key](wrong)
    assert "at index" not in str(info.value) and "\n" not in str(info.value)


def test_the_loss_check_has_repeated_captions_first() -> None:
    """Plain diagonal targets equal the multi-positive ones when no caption repeats: the first batch has copies."""
    seen = []

    def spy(image_emb, text_emb, ids, scale):
        seen.append(len({tuple(r) for r in ids.tolist()}) < len(ids))
        return clip.clip_loss(image_emb, text_emb, ids, scale)

    check_clip_loss(spy)
    assert seen[0] and len(seen) >= 2


def test_the_loss_answer_is_the_package_loss_on_a_real_clip() -> None:
    """The learner's loss, fed a CLIP's embeddings, is what ContrastiveObjective trains with."""
    from diffusion_lab.data.scenes import make_scenes, scene_vocabulary
    from diffusion_lab.models.clip import CLIP, CLIPConfig
    from diffusion_lab.training.contrastive import contrastive_loss, multi_positive_targets

    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny(scene_vocabulary())).eval()
    scenes = make_scenes(12, size=16, seed=3)
    ids = model.tokenizer.encode(scenes.captions[:6] * 2)  # every caption twice
    images = torch.cat([scenes.images[:6], scenes.images[6:]])
    with torch.no_grad():
        want = contrastive_loss(model(images, ids), multi_positive_targets(ids))
        got = clip.clip_loss(model.encode_image(images), model.encode_text(ids), ids, model.scale())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_condition_answer_is_what_the_upsampler_reads() -> None:
    """The learner's condition is the objective's low res, enlarged as ``Upsampler.forward`` enlarges it."""
    from diffusion_lab.models.upsampler import augmentation_alpha_bar, downsample, enlarge, noise_augment

    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    level, noise = torch.tensor([0.0, 0.2, 0.3]), torch.randn(3, 3, 4, 4)
    want = enlarge(noise_augment(downsample(x0), level, noise))
    torch.testing.assert_close(clip.low_res_condition(x0, augmentation_alpha_bar(level), noise), want)


def test_the_text_diff_answer_is_the_pipelines_arithmetic() -> None:
    """UnCLIPPipeline.text_diff moves e_image by amount * normalise(e_to - e_from) and renormalises."""
    e, e_from, e_to = (F.normalize(torch.randn(1, 8), dim=-1) for _ in range(3))
    amounts = torch.tensor([0.0, 0.5, 2.0])[:, None]
    pipeline_way = F.normalize(e + amounts * F.normalize(e_to - e_from, dim=-1), dim=-1)  # as in pipelines/unclip.py
    mine = torch.cat([clip.text_diff(e, e_from, e_to, float(a)) for a in amounts])
    torch.testing.assert_close(mine, pipeline_way)
