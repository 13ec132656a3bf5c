"""Chapter 11's checks name each typical mistake, in one line, and agree with the package they teach.

(Every check is also run through tests/test_exercises.py with the answers in exercise_cases/text_to_image.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from exercise_cases import text_to_image as t2i

from diffusion_lab.exercises import (
    CHECKS,
    ExerciseFailed,
    check_dynamic_threshold,
    check_inpaint_blend,
    check_latent_mask,
)
from diffusion_lab.exercises.text_to_image import _GUESSES, _MASKS, BLEND, LATENT_MASK, THRESHOLD, _pixel_mask

PARTLY = r"a block only partly covered is left out"
MISTAKES = [
    (BLEND, t2i.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (BLEND, t2i.inpaint_blend_inverted, r"the mask is inverted: 1 marks the region to REDRAW"),
    (BLEND, t2i.inpaint_blend_not_noised, r"the known part is not noised.*not x0 as it is"),
    (BLEND, t2i.inpaint_blend_swapped_roots, r"the square roots are swapped"),
    (BLEND, t2i.inpaint_blend_no_sqrt, r"alpha_bar_prev without its square root"),
    (BLEND, t2i.inpaint_blend_x0_no_sqrt, r"x0's coefficient is the square root of alpha_bar_prev"),
    (BLEND, t2i.inpaint_blend_unsqueezed, r"should have shape \(2, 4, 8, 8\), got \(2, 2, 4, 8, 8\); .*no unsqueeze"),
    (BLEND, t2i.inpaint_blend_torch_sqrt, r"TypeError.*Hint: alpha_bar_prev is a float: take math\.sqrt"),
    (BLEND, t2i.inpaint_blend_fresh_noise, r"use the noise you are given"),
    (BLEND, t2i.inpaint_blend_unknown_only, r"that is x_unknown everywhere"),
    (LATENT_MASK, t2i.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (LATENT_MASK, t2i.latent_mask_average, rf"{PARTLY}: that keeps the blocks more than half covered"),
    (LATENT_MASK, t2i.latent_mask_average_rounded, rf"{PARTLY}: that keeps the blocks more than half covered"),
    (LATENT_MASK, t2i.latent_mask_half_or_more, rf"{PARTLY}: that keeps the blocks at least half covered"),
    (LATENT_MASK, t2i.latent_mask_all, r"only blocks wholly inside the mask are redrawn"),
    (LATENT_MASK, t2i.latent_mask_two_pixels, r"1 block\(s\) only partly covered by the mask are left out; .*ANY pixel"),
    (LATENT_MASK, t2i.latent_mask_strided, r"keeps one pixel of each block \(mask\[::f, ::f\], or nearest"),
    (LATENT_MASK, t2i.latent_mask_nearest, r"keeps one pixel of each block \(mask\[::f, ::f\], or nearest"),
    (LATENT_MASK, t2i.latent_mask_centre, r"keeps one pixel of each block \(its centre\)"),
    (LATENT_MASK, t2i.latent_mask_inverted, r"the mask is inverted: 1 marks the cells to REDRAW"),
    (LATENT_MASK, t2i.latent_mask_keep_mask, r"the mask is inverted: pool the mask itself"),
    (LATENT_MASK, t2i.latent_mask_fraction, r"the share of each block inside the mask \(average pooling\)"),
    (LATENT_MASK, t2i.latent_mask_area, r"the share of each block inside the mask \(average pooling\)"),
    (LATENT_MASK, t2i.latent_mask_bool, r"should be a float tensor of 0s and 1s .*got dtype torch\.bool"),
    (LATENT_MASK, t2i.latent_mask_batched, r"should have shape \(4, 4\), got \(1, 1, 4, 4\): drop the dimensions"),
    (LATENT_MASK, t2i.latent_mask_per_pixel, r"should have shape \(4, 4\), got \(16, 16\); .*not one per pixel"),
    (LATENT_MASK, t2i.latent_mask_bool_pool, r"raised RuntimeError: \"max_pool2d\" not implemented for 'Bool'.*"
                                             r"Hint: pooling takes floats"),
    (LATENT_MASK, t2i.latent_mask_2d_pool, r"RuntimeError.*Hint: F\.max_pool2d wants \(N, C, H, W\)"),
    (LATENT_MASK, t2i.latent_mask_dilated, r"cells whose block has no pixel in the mask are set to 1"),
    (THRESHOLD, t2i.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (THRESHOLD, t2i.dynamic_threshold_batch_s, r"one s for the whole batch: s is per sample"),
    (THRESHOLD, t2i.dynamic_threshold_per_channel, r"one s per channel"),
    (THRESHOLD, t2i.dynamic_threshold_no_max, r"s = max\(percentile, r\) was forgotten: .*is stretched"),
    (THRESHOLD, t2i.dynamic_threshold_no_rescale, r"clamped to \[-s, s\] but not rescaled"),
    (THRESHOLD, t2i.dynamic_threshold_no_r, r"divided by s but not multiplied by r"),
    (THRESHOLD, t2i.dynamic_threshold_ratio_twice, r"the percentile is read as a ratio"),
    (THRESHOLD, t2i.dynamic_threshold_percentile_as_q, r"RuntimeError.*Hint: torch\.quantile takes a fraction from 0 "
                                                       r"to 1: the percentile 99\.5 is q = percentile / 100"),
    (THRESHOLD, t2i.dynamic_threshold_no_abs, r"the percentile of \|x0\|, the absolute values"),
    (THRESHOLD, t2i.dynamic_threshold_static, r"that is static clipping to \[-r, r\]"),
    (THRESHOLD, t2i.dynamic_threshold_python_max, r"Hint: s holds one value per sample: .*not Python's max"),
    (THRESHOLD, t2i.dynamic_threshold_flat_s, r"Hint: s has shape \(B,\): broadcast it"),
    (THRESHOLD, t2i.dynamic_threshold_image_view, r"guesses \(3, 2001\) .* should have shape \(3, 2001\), got "
                                                  r"\(3, 1, 3, 2001\); one s per sample \(B,\), broadcast with append_dims"),
    (THRESHOLD, t2i.dynamic_threshold_flattened, r"should have shape \(4, 3, 23, 29\), got \(4, 2001\)"),
]


def test_the_checks_are_registered() -> None:
    assert CHECKS[BLEND] is check_inpaint_blend and CHECKS[LATENT_MASK] is check_latent_mask
    assert CHECKS[THRESHOLD] is check_dynamic_threshold


@pytest.mark.parametrize(("key", "wrong", "message"), MISTAKES, ids=[f"{k}-{fn.__name__}" for k, fn, _ in MISTAKES])
def test_mistake_is_named(key: str, wrong: Callable[..., Any], message: str) -> None:
    with pytest.raises(ExerciseFailed, match=message) as info:
        CHECKS[key](wrong)
    assert "at index" not in str(info.value) and "\n" not in str(info.value)


def test_every_wrong_answer_here_is_named() -> None:
    """No wrong answer in exercise_cases/text_to_image.py is left to the generic 'is off: at index' diagnosis."""
    named = {fn for key, fn, _ in MISTAKES if key in (BLEND, LATENT_MASK, THRESHOLD)}
    assert set(t2i.CASES[BLEND].wrong + t2i.CASES[LATENT_MASK].wrong + t2i.CASES[THRESHOLD].wrong) <= named


def test_the_masks_have_blocks_only_partly_covered() -> None:
    """Boxes aligned with the blocks would let average pooling, subsampling and max-pooling agree."""
    for h, w, f, boxes in _MASKS:
        share = F.avg_pool2d(_pixel_mask(h, w, boxes).float()[None, None], f)[0, 0]
        partly = share[(share > 0) & (share < 1)]
        assert len(partly) >= 3 and (partly < 0.5).any() and (partly > 0.5).any(), (h, w, f)


def test_the_latent_mask_answer_is_the_pipelines() -> None:
    """The learner's latent mask is what TinySDPipeline.latent_mask gives the latents (its (1, 1, h, w), squeezed)."""
    from diffusion_lab.pipelines.text_to_image import TinySDPipeline

    for h, w, f, boxes in _MASKS:
        if h != w:
            continue  # the pipeline's pictures are square
        mask = _pixel_mask(h, w, boxes)
        pipe = SimpleNamespace(autoencoder=SimpleNamespace(config=SimpleNamespace(image_size=h)),
                               sample_shape=lambda h=h, f=f: (4, h // f, h // f), device="cpu")
        want = TinySDPipeline.latent_mask(pipe, mask, 1)  # (1, 1, h / f, w / f)
        assert torch.equal(t2i.latent_mask(mask, f), want[0, 0])


def test_the_blend_answer_is_a_step_of_the_packages_repaint() -> None:
    """One step of sampling/repaint.py is the learner's blend of the sampler's step and x0 noised to t_prev."""
    from diffusion_lab.sampling import DDIMScheduler, repaint
    from diffusion_lab.schedules import NoiseSchedule

    schedule = NoiseSchedule.from_name("cosine", 1000)
    scheduler = DDIMScheduler(schedule, clip_sample=False)
    scheduler.set_timesteps(3)
    gen = torch.Generator().manual_seed(0)
    x0, x_T = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 1:5, 2:7], mask[1, :, 4:8, 0:3] = 1, 1
    noises, steps = [], []

    def noise(shape):
        noises.append(torch.randn(shape, generator=gen))
        return noises[-1]

    def model(xt, t):
        return 0.3 * xt

    repaint(model, scheduler, x0, mask, x_T, noise, callback=lambda i, t, xt, pred_x0: steps.append(xt))
    t0, t1 = scheduler.timesteps.tolist()[:2]
    x_unknown = scheduler.step(model(x_T, torch.full((2,), t0)), t0, x_T).prev_sample
    mine = t2i.inpaint_blend(x_unknown, x0, mask, float(schedule.alpha_bars[t1]), noises[0])
    torch.testing.assert_close(mine, steps[0])


def test_the_thresholding_inputs_have_samples_inside_and_outside_the_range() -> None:
    """Each batch mixes samples that must be left alone with samples to shrink, and r is not 1 in the first two."""
    from diffusion_lab.exercises.text_to_image import _guesses

    assert [r for *_, r in _GUESSES][:2] == [2.5, 1.5]
    for seed, (shape, spreads, offsets, p, r) in enumerate(_GUESSES, start=150):
        q = _guesses(seed, shape, spreads, offsets).abs().flatten(1).quantile(p / 100, dim=1)
        assert (q < r).any() and (q > r).any(), (shape, q, r)
