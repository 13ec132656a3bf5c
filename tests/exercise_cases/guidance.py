"""Right and wrong answers to the exercises of chapter 07 (guidance)."""

from __future__ import annotations

import torch

from exercise_cases.cases import Cases

# ----- 7.2 cfg(eps_null, eps_cond, w) -----------------------------------------------------------


def cfg(eps_null, eps_cond, w):
    return eps_null + w * (eps_cond - eps_null)


def cfg_mix(eps_null, eps_cond, w):  # the same line, written as a mix
    return (1 - w) * eps_null + w * eps_cond


def cfg_ho_salimans(eps_null, eps_cond, w):  # the paper's convention: w = 0 is the conditional model
    return eps_cond + w * (eps_cond - eps_null)


def cfg_swapped(eps_null, eps_cond, w):  # guides towards the unconditional prediction
    return eps_cond + w * (eps_null - eps_cond)


def cfg_no_base(eps_null, eps_cond, w):  # forgets the starting point
    return w * (eps_cond - eps_null)


# ----- 7.1 classifier_guided_eps(eps_pred, grad, alpha_bar_t, scale) ------------------------------


def _sigma(alpha_bar_t, like):
    return (1 - alpha_bar_t).sqrt().reshape(-1, *([1] * (like.ndim - 1)))  # (B, 1, ...)


def guided_eps(eps_pred, grad, alpha_bar_t, scale):
    return eps_pred - scale * _sigma(alpha_bar_t, eps_pred) * grad


def guided_eps_plus(eps_pred, grad, alpha_bar_t, scale):  # adds the gradient: pushes AWAY from the class
    return eps_pred + scale * _sigma(alpha_bar_t, eps_pred) * grad


def guided_eps_no_sqrt(eps_pred, grad, alpha_bar_t, scale):
    return eps_pred - scale * (1 - alpha_bar_t).reshape(-1, 1, 1, 1) * grad


def guided_eps_signal_scale(eps_pred, grad, alpha_bar_t, scale):  # sqrt(abar) is the signal's scale, not the noise's
    return eps_pred - scale * alpha_bar_t.sqrt().reshape(-1, 1, 1, 1) * grad


def guided_eps_unscaled(eps_pred, grad, alpha_bar_t, scale):  # the score's gradient added to eps as it is
    return eps_pred - scale * grad


# ----- 7.3 pick_scale(scales, accuracy, diversity, min_diversity) ---------------------------------


def pick_scale(scales, accuracy, diversity, min_diversity):
    best = None
    for s, a, d in zip(scales, accuracy, diversity):
        s, a, d = float(s), float(a), float(d)
        if d >= min_diversity and (best is None or (a, d) > (best[1], best[2])):
            best = (s, a, d)
    if best is None:
        raise ValueError(f"no scale keeps diversity >= {min_diversity}")
    return best[0]


def pick_scale_tensor(scales, accuracy, diversity, min_diversity):
    s, a, d = (torch.as_tensor(v, dtype=torch.float64) for v in (scales, accuracy, diversity))
    ok = d >= min_diversity
    if not ok.any():
        raise ValueError("no scale is diverse enough")
    score = torch.where(ok, a, torch.tensor(-1.0, dtype=torch.float64))
    best = score == score.max()
    return s[torch.where(best, d, torch.tensor(-1.0, dtype=torch.float64)).argmax()]  # a 0-d tensor


def pick_scale_ignores_diversity(scales, accuracy, diversity, min_diversity):
    a = [float(v) for v in accuracy]
    return float(scales[a.index(max(a))])


def pick_scale_strict(scales, accuracy, diversity, min_diversity):  # "more than" instead of "at least"
    rows = [(float(a), float(d), float(s)) for s, a, d in zip(scales, accuracy, diversity) if float(d) > min_diversity]
    if not rows:
        raise ValueError("none")
    return max(rows)[2]


def pick_scale_last_tie(scales, accuracy, diversity, min_diversity):  # ties go to the larger, less diverse scale
    rows = [(float(a), float(s)) for s, a, d in zip(scales, accuracy, diversity) if float(d) >= min_diversity]
    if not rows:
        raise ValueError("none")
    return max(rows)[1]


def pick_scale_index(scales, accuracy, diversity, min_diversity):  # the position, not the scale
    rows = [(float(a), float(d), i) for i, (a, d) in enumerate(zip(accuracy, diversity)) if float(d) >= min_diversity]
    if not rows:
        raise ValueError("none")
    return max(rows)[2]


def pick_scale_returns_none(scales, accuracy, diversity, min_diversity):  # no error when nothing qualifies
    rows = [(float(a), float(d), float(s)) for s, a, d in zip(scales, accuracy, diversity) if float(d) >= min_diversity]
    return max(rows)[2] if rows else None


CASES: dict[str, Cases] = {
    "7.1": Cases([guided_eps], [guided_eps_plus, guided_eps_no_sqrt, guided_eps_signal_scale, guided_eps_unscaled]),
    "7.2": Cases([cfg, cfg_mix], [cfg_ho_salimans, cfg_swapped, cfg_no_base]),
    "7.3": Cases([pick_scale, pick_scale_tensor],
                 [pick_scale_ignores_diversity, pick_scale_strict, pick_scale_last_tie, pick_scale_index,
                  pick_scale_returns_none]),
}
