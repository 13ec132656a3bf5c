"""Right and wrong answers to the exercises of chapter 10 (CLIP and DALL·E 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from exercise_cases.cases import Cases


def returns_none(*args):  # a blank answer: the cell ran, the function returns nothing
    return None


# ----- 10.1 clip_loss(image_emb, text_emb, ids, scale) -> (B,) --------------------------------------------------


def _targets(ids):
    same = (ids[:, None, :] == ids[None, :, :]).all(-1).float()  # (B, B)
    return same / same.sum(1, keepdim=True)


def clip_loss(image_emb, text_emb, ids, scale):
    logits = scale * image_emb @ text_emb.T  # (B, B)
    targets = _targets(ids)
    image_to_text = -(targets * logits.log_softmax(dim=1)).sum(1)
    text_to_image = -(targets.T * logits.T.log_softmax(dim=1)).sum(1)
    return (image_to_text + text_to_image) / 2


def clip_loss_cross_entropy(image_emb, text_emb, ids, scale):  # torch's cross-entropy takes soft targets too
    logits = scale * image_emb @ text_emb.T
    targets = _targets(ids)
    return (F.cross_entropy(logits, targets, reduction="none")
            + F.cross_entropy(logits.T, targets.T, reduction="none")) / 2


def clip_loss_loop(image_emb, text_emb, ids, scale):  # one picture at a time, the captions compared as lists
    B = len(ids)
    rows = [r.tolist() for r in ids]
    out = []
    for i in range(B):
        positives = [j for j in range(B) if rows[j] == rows[i]]
        sims_i = scale * (text_emb @ image_emb[i])  # picture i against every caption
        sims_t = scale * (image_emb @ text_emb[i])  # caption i against every picture
        out.append(-(torch.log_softmax(sims_i, 0)[positives].mean() + torch.log_softmax(sims_t, 0)[positives].mean()) / 2)
    return torch.stack(out)


def clip_loss_one_direction(image_emb, text_emb, ids, scale):
    logits = scale * image_emb @ text_emb.T
    return -(_targets(ids) * logits.log_softmax(dim=1)).sum(1)


def clip_loss_diagonal(image_emb, text_emb, ids, scale):  # CLIP's own targets: duplicates counted wrong
    logits = scale * image_emb @ text_emb.T
    labels = torch.arange(len(ids))
    return (F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.T, labels, reduction="none")) / 2


def clip_loss_no_scale(image_emb, text_emb, ids, scale):
    logits = image_emb @ text_emb.T
    return (F.cross_entropy(logits, _targets(ids), reduction="none")
            + F.cross_entropy(logits.T, _targets(ids), reduction="none")) / 2


def clip_loss_divided(image_emb, text_emb, ids, scale):  # scale read as the temperature
    logits = image_emb @ text_emb.T / scale
    return (F.cross_entropy(logits, _targets(ids), reduction="none")
            + F.cross_entropy(logits.T, _targets(ids), reduction="none")) / 2


def clip_loss_rows_not_normalised(image_emb, text_emb, ids, scale):
    logits = scale * image_emb @ text_emb.T
    same = (ids[:, None, :] == ids[None, :, :]).all(-1).float()
    return (-(same * logits.log_softmax(1)).sum(1) - (same * logits.T.log_softmax(1)).sum(1)) / 2


def clip_loss_wrong_axis(image_emb, text_emb, ids, scale):
    logits = scale * image_emb @ text_emb.T
    targets = _targets(ids)
    return (-(targets * logits.log_softmax(0)).sum(1) - (targets * logits.T.log_softmax(0)).sum(1)) / 2


def clip_loss_summed(image_emb, text_emb, ids, scale):  # the two directions added, not averaged
    return 2 * clip_loss(image_emb, text_emb, ids, scale)


def clip_loss_batch_mean(image_emb, text_emb, ids, scale):  # one number for the whole batch
    return clip_loss(image_emb, text_emb, ids, scale).mean()


# ----- 10.2 prior_loss(model, image_emb, mean, std, t, eps, alpha_bars) -> (B,) ------------------------------------


def _xt(x0, t, eps, alpha_bars):
    a = alpha_bars[t][:, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def prior_loss(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - mean) / std
    return ((model(_xt(x0, t, eps, alpha_bars), t) - x0) ** 2).mean(dim=1)


def prior_loss_mse(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - mean[None]) / std[None]
    abar = alpha_bars[t].unsqueeze(1)
    xt = torch.sqrt(abar) * x0 + torch.sqrt(1 - abar) * eps
    return F.mse_loss(model(xt, t), x0, reduction="none").mean(-1)


def prior_loss_eps_target(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - mean) / std
    return ((model(_xt(x0, t, eps, alpha_bars), t) - eps) ** 2).mean(dim=1)


def prior_loss_not_normalised(model, image_emb, mean, std, t, eps, alpha_bars):
    return ((model(_xt(image_emb, t, eps, alpha_bars), t) - image_emb) ** 2).mean(dim=1)


def prior_loss_batch_statistics(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - image_emb.mean(0)) / image_emb.std(0)
    return ((model(_xt(x0, t, eps, alpha_bars), t) - x0) ** 2).mean(dim=1)


def prior_loss_wrong_axis(model, image_emb, mean, std, t, eps, alpha_bars):  # one mean and std per embedding
    x0 = (image_emb - image_emb.mean(1, keepdim=True)) / image_emb.std(1, keepdim=True)
    return ((model(_xt(x0, t, eps, alpha_bars), t) - x0) ** 2).mean(dim=1)


def prior_loss_times_std(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - mean) * std
    return ((model(_xt(x0, t, eps, alpha_bars), t) - x0) ** 2).mean(dim=1)


def prior_loss_clean_input(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - mean) / std
    return ((model(x0, t) - x0) ** 2).mean(dim=1)


def prior_loss_summed(model, image_emb, mean, std, t, eps, alpha_bars):
    x0 = (image_emb - mean) / std
    return ((model(_xt(x0, t, eps, alpha_bars), t) - x0) ** 2).sum(dim=1)


def prior_loss_detached(model, image_emb, mean, std, t, eps, alpha_bars):
    with torch.no_grad():
        return prior_loss(model, image_emb, mean, std, t, eps, alpha_bars)


def prior_loss_scalar(model, image_emb, mean, std, t, eps, alpha_bars):
    return prior_loss(model, image_emb, mean, std, t, eps, alpha_bars).mean()


# ----- 10.3 text_diff(image_emb, from_emb, to_emb, amount) -> (B, D) -----------------------------------------------


def text_diff(image_emb, from_emb, to_emb, amount):
    direction = F.normalize(to_emb - from_emb, dim=-1)
    return F.normalize(image_emb + amount * direction, dim=-1)


def text_diff_by_hand(image_emb, from_emb, to_emb, amount):
    d = to_emb - from_emb
    e = image_emb + amount * d / d.norm(dim=1, keepdim=True)
    return e / e.norm(dim=1, keepdim=True)


def text_diff_not_renormalised(image_emb, from_emb, to_emb, amount):
    return image_emb + amount * F.normalize(to_emb - from_emb, dim=-1)


def text_diff_raw_direction(image_emb, from_emb, to_emb, amount):
    return F.normalize(image_emb + amount * (to_emb - from_emb), dim=-1)


def text_diff_reversed(image_emb, from_emb, to_emb, amount):
    return F.normalize(image_emb + amount * F.normalize(from_emb - to_emb, dim=-1), dim=-1)


def text_diff_towards_to(image_emb, from_emb, to_emb, amount):
    return F.normalize(image_emb + amount * to_emb, dim=-1)


def text_diff_batch_norm(image_emb, from_emb, to_emb, amount):  # x / x.norm() over the whole batch
    d = to_emb - from_emb
    e = image_emb + amount * d / d.norm()
    return e / e.norm()


# ----- 10.4 low_res_condition(images, alpha_bar, noise) -> (B, C, H, W) ------------------------------------------


def _noised(low, alpha_bar, noise):
    a = alpha_bar.view(-1, 1, 1, 1)
    return a.sqrt() * low + (1 - a).sqrt() * noise


def low_res_condition(images, alpha_bar, noise):
    low = F.avg_pool2d(images, 2)
    return F.interpolate(_noised(low, alpha_bar, noise), scale_factor=2, mode="bilinear", align_corners=False)


def low_res_condition_area(images, alpha_bar, noise):  # area shrink = 2x2 mean; size= instead of scale_factor
    H, W = images.shape[-2:]
    low = F.interpolate(images, size=(H // 2, W // 2), mode="area")
    return F.interpolate(_noised(low, alpha_bar, noise), size=(H, W), mode="bilinear")


def low_res_condition_nearest(images, alpha_bar, noise):
    low = _noised(F.avg_pool2d(images, 2), alpha_bar, noise)
    return low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def low_res_condition_align_corners(images, alpha_bar, noise):
    low = _noised(F.avg_pool2d(images, 2), alpha_bar, noise)
    return F.interpolate(low, size=images.shape[-2:], mode="bilinear", align_corners=True)


def low_res_condition_no_augmentation(images, alpha_bar, noise):
    return F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="bilinear", align_corners=False)


def low_res_condition_strided(images, alpha_bar, noise):  # every other pixel, not the 2x2 mean
    low = _noised(images[:, :, ::2, ::2], alpha_bar, noise)
    return F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)


def low_res_condition_max_pool(images, alpha_bar, noise):
    low = _noised(F.max_pool2d(images, 2), alpha_bar, noise)
    return F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)


def low_res_condition_noise_after(images, alpha_bar, noise):  # enlarges first, then noises with fresh noise
    big = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="bilinear", align_corners=False)
    return _noised(big, alpha_bar, torch.randn_like(big))


def low_res_condition_no_sqrt(images, alpha_bar, noise):
    a = alpha_bar.view(-1, 1, 1, 1)
    low = a * F.avg_pool2d(images, 2) + (1 - a) * noise
    return F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)


def low_res_condition_not_enlarged(images, alpha_bar, noise):
    return _noised(F.avg_pool2d(images, 2), alpha_bar, noise)


def low_res_condition_first_level(images, alpha_bar, noise):  # one alpha_bar for the whole batch
    low = alpha_bar[0].sqrt() * F.avg_pool2d(images, 2) + (1 - alpha_bar[0]).sqrt() * noise
    return F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)


CASES: dict[str, Cases] = {
    "10.1": Cases([clip_loss, clip_loss_cross_entropy, clip_loss_loop],
                  [clip_loss_one_direction, clip_loss_diagonal, clip_loss_no_scale, clip_loss_divided,
                   clip_loss_rows_not_normalised, clip_loss_wrong_axis, clip_loss_summed, clip_loss_batch_mean,
                   returns_none]),
    "10.2": Cases([prior_loss, prior_loss_mse],
                  [prior_loss_eps_target, prior_loss_not_normalised, prior_loss_batch_statistics, prior_loss_wrong_axis,
                   prior_loss_times_std, prior_loss_clean_input, prior_loss_summed, prior_loss_detached,
                   prior_loss_scalar, returns_none]),
    "10.3": Cases([text_diff, text_diff_by_hand],
                  [text_diff_not_renormalised, text_diff_raw_direction, text_diff_reversed, text_diff_towards_to,
                   text_diff_batch_norm, returns_none]),
    "10.4": Cases([low_res_condition, low_res_condition_area],
                  [low_res_condition_nearest, low_res_condition_align_corners, low_res_condition_no_augmentation,
                   low_res_condition_strided, low_res_condition_max_pool, low_res_condition_noise_after,
                   low_res_condition_no_sqrt, low_res_condition_not_enlarged, low_res_condition_first_level,
                   returns_none]),
}
