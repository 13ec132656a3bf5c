"""Right and wrong answers to the exercises of chapter 11 (a mini Stable Diffusion: inpainting, dynamic thresholding)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from exercise_cases.cases import Cases


def returns_none(*args):  # a blank answer: the cell ran, the function returns nothing
    return None


# ----- 11.1 dynamic_threshold(x0, percentile, data_range) -> x0's shape --------------------------------------------


def _s(x0, q, r):
    return x0.abs().flatten(1).quantile(q, dim=1).clamp(min=r).view(-1, *[1] * (x0.ndim - 1))  # (B, 1, ...)


def dynamic_threshold(x0, percentile, data_range):
    s = _s(x0, percentile / 100, data_range)
    return x0.clamp(-s, s) * data_range / s


def dynamic_threshold_kthvalue(x0, percentile, data_range):  # a nearest-rank percentile, one sample at a time
    out = []
    for x in x0:
        v = x.abs().flatten()
        s = max(v.kthvalue(math.ceil(percentile / 100 * len(v))).values.item(), data_range)
        out.append(torch.clamp(x, -s, s) / s * data_range)
    return torch.stack(out)


def dynamic_threshold_numpy(x0, percentile, data_range):  # np.percentile takes the percentile as it is
    s = np.maximum(np.percentile(x0.abs().flatten(1).numpy(), percentile, axis=1), data_range)
    s = torch.from_numpy(s).to(x0.dtype).reshape(-1, *[1] * (x0.ndim - 1))
    return torch.minimum(torch.maximum(x0, -s), s) * (data_range / s)


def dynamic_threshold_batch_s(x0, percentile, data_range):  # one s for the whole batch
    s = max(x0.abs().flatten().quantile(percentile / 100).item(), data_range)
    return x0.clamp(-s, s) * data_range / s


def dynamic_threshold_per_channel(x0, percentile, data_range):
    s = x0.abs().flatten(2).quantile(percentile / 100, dim=2).clamp(min=data_range)[..., None, None]
    return torch.minimum(torch.maximum(x0, -s), s) * data_range / s


def dynamic_threshold_no_max(x0, percentile, data_range):  # stretches in-range samples out to the range
    s = x0.abs().flatten(1).quantile(percentile / 100, dim=1).view(-1, 1, 1, 1)
    return torch.minimum(torch.maximum(x0, -s), s) * data_range / s


def dynamic_threshold_no_rescale(x0, percentile, data_range):
    s = _s(x0, percentile / 100, data_range)
    return torch.minimum(torch.maximum(x0, -s), s)


def dynamic_threshold_no_r(x0, percentile, data_range):  # Imagen's pixel formula, r = 1 assumed
    s = _s(x0, percentile / 100, data_range)
    return torch.minimum(torch.maximum(x0, -s), s) / s


def dynamic_threshold_ratio_twice(x0, percentile, data_range):  # np.percentile given percentile / 100
    s = np.maximum(np.percentile(x0.abs().flatten(1).numpy(), percentile / 100, axis=1), data_range)
    s = torch.from_numpy(s).to(x0.dtype).view(-1, 1, 1, 1)
    return torch.minimum(torch.maximum(x0, -s), s) * (data_range / s)


def dynamic_threshold_percentile_as_q(x0, percentile, data_range):  # torch.quantile given 99.5
    s = _s(x0, percentile, data_range)
    return torch.minimum(torch.maximum(x0, -s), s) * data_range / s


def dynamic_threshold_no_abs(x0, percentile, data_range):
    s = x0.flatten(1).quantile(percentile / 100, dim=1).clamp(min=data_range).view(-1, 1, 1, 1)
    return torch.minimum(torch.maximum(x0, -s), s) * data_range / s


def dynamic_threshold_static(x0, percentile, data_range):  # static clipping
    return x0.clamp(-data_range, data_range)


def dynamic_threshold_python_max(x0, percentile, data_range):  # Python's max of a (B,) tensor and a float
    s = max(x0.abs().flatten(1).quantile(percentile / 100, dim=1), data_range)
    return x0.clamp(-s, s) * data_range / s


def dynamic_threshold_flat_s(x0, percentile, data_range):  # s (B,) not broadcast against (B, C, H, W)
    s = x0.abs().flatten(1).quantile(percentile / 100, dim=1).clamp(min=data_range)
    return torch.minimum(torch.maximum(x0, -s), s) * data_range / s


def dynamic_threshold_image_view(x0, percentile, data_range):  # right for (B, C, H, W) only
    s = x0.abs().flatten(1).quantile(percentile / 100, dim=1).clamp(min=data_range).view(-1, 1, 1, 1)
    return torch.minimum(torch.maximum(x0, -s), s) * data_range / s


def dynamic_threshold_flattened(x0, percentile, data_range):  # returns the flattened (B, N) values
    return dynamic_threshold(x0, percentile, data_range).flatten(1)


# ----- 11.2 latent_mask(mask, f) -> (H/f, W/f) ----------------------------------------------------------------------


def latent_mask(mask, f):
    return F.max_pool2d(mask.float()[None, None], f)[0, 0]


def latent_mask_any(mask, f):  # blocks as a reshape, any() over each
    H, W = mask.shape
    return mask.reshape(H // f, f, W // f, f).any(dim=3).any(dim=1).float()


def latent_mask_loop(mask, f):
    H, W = mask.shape
    out = torch.zeros(H // f, W // f)
    for i in range(H // f):
        for j in range(W // f):
            out[i, j] = float(mask[i * f:(i + 1) * f, j * f:(j + 1) * f].any())
    return out


def latent_mask_average(mask, f):  # average pooling, thresholded at 0.5: misses blocks under half covered
    return (F.avg_pool2d(mask.float()[None, None], f)[0, 0] > 0.5).float()


def latent_mask_average_rounded(mask, f):  # the same, with round(): torch rounds a half to even, so 0.5 -> 0
    return F.avg_pool2d(mask.float()[None, None], f)[0, 0].round()


def latent_mask_half_or_more(mask, f):  # average pooling, blocks at least half covered
    return (F.avg_pool2d(mask.float()[None, None], f)[0, 0] >= 0.5).float()


def latent_mask_all(mask, f):  # only blocks wholly inside the mask
    return -F.max_pool2d(-mask.float()[None, None], f)[0, 0]


def latent_mask_strided(mask, f):  # nearest subsampling: one pixel per block
    return mask[::f, ::f].float()


def latent_mask_centre(mask, f):  # the pixel at the centre of each block
    return mask[f // 2::f, f // 2::f].float()


def latent_mask_nearest(mask, f):  # the same, with F.interpolate
    return F.interpolate(mask.float()[None, None], scale_factor=1 / f, mode="nearest")[0, 0]


def latent_mask_two_pixels(mask, f):  # a rule of its own: a block needs at least two masked pixels
    return (F.avg_pool2d(mask.float()[None, None], f)[0, 0] * f * f >= 2).float()


def latent_mask_inverted(mask, f):
    return 1 - F.max_pool2d(mask.float()[None, None], f)[0, 0]


def latent_mask_keep_mask(mask, f):  # pools the region to keep
    return F.max_pool2d((~mask).float()[None, None], f)[0, 0]


def latent_mask_fraction(mask, f):  # the share of each block, not 0/1
    return F.avg_pool2d(mask.float()[None, None], f)[0, 0]


def latent_mask_area(mask, f):  # area interpolation is average pooling: fractions again
    return F.interpolate(mask.float()[None, None], scale_factor=1 / f, mode="area")[0, 0]


def latent_mask_bool(mask, f):  # right cells, but True/False
    return F.max_pool2d(mask.float()[None, None], f)[0, 0].bool()


def latent_mask_batched(mask, f):  # keeps the two dimensions added for pooling
    return F.max_pool2d(mask.float()[None, None], f)


def latent_mask_per_pixel(mask, f):  # not pooled at all
    return mask.float()


def latent_mask_bool_pool(mask, f):  # max_pool2d on the bool mask: torch has no Bool max_pool2d
    return F.max_pool2d(mask[None, None], f)[0, 0].float()


def latent_mask_2d_pool(mask, f):  # max_pool2d on (H, W): it wants (N, C, H, W) or (C, H, W)
    return F.max_pool2d(mask.float(), f)


def latent_mask_dilated(mask, f):  # one cell too many around the region
    pooled = F.max_pool2d(mask.float()[None, None], f)
    return F.max_pool2d(pooled, 3, stride=1, padding=1)[0, 0]


# ----- 11.3 inpaint_blend(x_unknown, x0, mask, alpha_bar_prev, eps) -> (B, 4, h, w) -------------------------------


def inpaint_blend(x_unknown, x0, mask, alpha_bar_prev, eps):
    known = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev) * eps
    return mask * x_unknown + (1 - mask) * known


def inpaint_blend_where(x_unknown, x0, mask, alpha_bar_prev, eps):  # torch.where on the 0/1 mask, broadcast by hand
    a = torch.tensor(alpha_bar_prev)
    known = a.sqrt() * x0 + (1 - a).sqrt() * eps
    return torch.where(mask.expand_as(x0) > 0.5, x_unknown, known)


def inpaint_blend_inverted(x_unknown, x0, mask, alpha_bar_prev, eps):  # keeps the region to redraw
    known = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev) * eps
    return mask * known + (1 - mask) * x_unknown


def inpaint_blend_not_noised(x_unknown, x0, mask, alpha_bar_prev, eps):  # pastes x0 as it is
    return mask * x_unknown + (1 - mask) * x0


def inpaint_blend_swapped_roots(x_unknown, x0, mask, alpha_bar_prev, eps):
    known = math.sqrt(1 - alpha_bar_prev) * x0 + math.sqrt(alpha_bar_prev) * eps
    return mask * x_unknown + (1 - mask) * known


def inpaint_blend_no_sqrt(x_unknown, x0, mask, alpha_bar_prev, eps):
    known = alpha_bar_prev * x0 + (1 - alpha_bar_prev) * eps
    return mask * x_unknown + (1 - mask) * known


def inpaint_blend_x0_no_sqrt(x_unknown, x0, mask, alpha_bar_prev, eps):  # only x0's coefficient without its root
    known = alpha_bar_prev * x0 + math.sqrt(1 - alpha_bar_prev) * eps
    return mask * x_unknown + (1 - mask) * known


def inpaint_blend_torch_sqrt(x_unknown, x0, mask, alpha_bar_prev, eps):  # torch.sqrt of a float
    known = torch.sqrt(alpha_bar_prev) * x0 + torch.sqrt(1 - alpha_bar_prev) * eps
    return mask * x_unknown + (1 - mask) * known


def inpaint_blend_unsqueezed(x_unknown, x0, mask, alpha_bar_prev, eps):  # mask read as (B, h, w): (B, B, 4, h, w)
    m = mask.unsqueeze(1)
    known = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev) * eps
    return m * x_unknown + (1 - m) * known


def inpaint_blend_fresh_noise(x_unknown, x0, mask, alpha_bar_prev, eps):  # its own noise, not the eps given
    return inpaint_blend(x_unknown, x0, mask, alpha_bar_prev, torch.randn_like(x0))


def inpaint_blend_unknown_only(x_unknown, x0, mask, alpha_bar_prev, eps):
    return x_unknown.clone()


CASES: dict[str, Cases] = {
    "11.1": Cases([dynamic_threshold, dynamic_threshold_kthvalue, dynamic_threshold_numpy],
                  [dynamic_threshold_batch_s, dynamic_threshold_per_channel, dynamic_threshold_no_max,
                   dynamic_threshold_no_rescale, dynamic_threshold_no_r, dynamic_threshold_ratio_twice,
                   dynamic_threshold_percentile_as_q, dynamic_threshold_no_abs, dynamic_threshold_static,
                   dynamic_threshold_python_max, dynamic_threshold_flat_s, dynamic_threshold_image_view,
                   dynamic_threshold_flattened, returns_none]),
    "11.2": Cases([latent_mask, latent_mask_any, latent_mask_loop],
                  [latent_mask_average, latent_mask_average_rounded, latent_mask_half_or_more, latent_mask_all,
                   latent_mask_strided, latent_mask_centre, latent_mask_nearest, latent_mask_two_pixels,
                   latent_mask_inverted, latent_mask_keep_mask, latent_mask_fraction, latent_mask_area, latent_mask_bool,
                   latent_mask_batched, latent_mask_per_pixel, latent_mask_bool_pool, latent_mask_2d_pool,
                   latent_mask_dilated, returns_none]),
    "11.3": Cases([inpaint_blend, inpaint_blend_where],
                  [inpaint_blend_inverted, inpaint_blend_not_noised, inpaint_blend_swapped_roots, inpaint_blend_no_sqrt,
                   inpaint_blend_x0_no_sqrt, inpaint_blend_torch_sqrt, inpaint_blend_unsqueezed,
                   inpaint_blend_fresh_noise, inpaint_blend_unknown_only, returns_none]),
}
