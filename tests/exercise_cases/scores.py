"""Right and wrong answers to chapter 09's score and solver exercises (9.1 score from eps, 9.2 one Heun step)."""

from __future__ import annotations

import torch

from exercise_cases.cases import Cases


def returns_none(*args):  # a blank answer: the cell ran, the function returns nothing
    return None

# ----- 9.1 score_from_eps(eps, sigma) --------------------------------------------------------------


def score_from_eps(eps, sigma):
    return -eps / sigma.view(-1, *([1] * (eps.ndim - 1)))


def score_from_eps_reshape(eps, sigma):  # the same, broadcasting by reshape and multiplying by 1 / sigma
    return -(1 / sigma).reshape(sigma.shape + (1,) * (eps.ndim - 1)) * eps


def score_plus_sign(eps, sigma):
    return eps / sigma.view(-1, *([1] * (eps.ndim - 1)))


def score_times_sigma(eps, sigma):
    return -eps * sigma.view(-1, *([1] * (eps.ndim - 1)))


def score_over_variance(eps, sigma):
    return -eps / sigma.view(-1, *([1] * (eps.ndim - 1))) ** 2


def score_over_alpha(eps, sigma):  # divides by the signal's scale sqrt(1 - sigma^2)
    return -eps / (1 - sigma.view(-1, *([1] * (eps.ndim - 1))) ** 2).sqrt()


def score_no_scale(eps, sigma):
    return -eps


def score_image_view(eps, sigma):  # a hard-coded 4-D view: right for images, an error for 2-D points
    return -eps / sigma.view(-1, 1, 1, 1)


def score_first_sigma(eps, sigma):  # one sigma for the whole batch
    return -eps / sigma[0]


# ----- 9.2 heun_step(denoise, x, sigma, sigma_next) ---------------------------------------------------


def heun_step(denoise, x, sigma, sigma_next):
    d = (x - denoise(x, sigma)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
        x_next = x + (sigma_next - sigma) * (d + d_next) / 2
    return x_next


def heun_step_trapezoid(denoise, x, sigma, sigma_next):  # the same step, written with the denoiser's outputs
    denoised = denoise(x, sigma)
    if sigma_next == 0:
        return denoised  # Euler's step to sigma = 0 lands on D
    ratio = sigma_next / sigma
    x_euler = ratio * x + (1 - ratio) * denoised
    d = (x - denoised) / sigma
    d_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
    return x + 0.5 * (sigma_next - sigma) * (d + d_next)


def heun_euler_only(denoise, x, sigma, sigma_next):
    return x + (sigma_next - sigma) * (x - denoise(x, sigma)) / sigma


def heun_wrong_direction(denoise, x, sigma, sigma_next):  # the slope's sign flipped: (D - x) / sigma
    d = (denoise(x, sigma) - x) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        d_next = (denoise(x_next, sigma_next) - x_next) / sigma_next
        x_next = x + (sigma_next - sigma) * (d + d_next) / 2
    return x_next


def heun_no_half(denoise, x, sigma, sigma_next):
    d = (x - denoise(x, sigma)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
        x_next = x + (sigma_next - sigma) * (d + d_next)
    return x_next


def heun_second_slope_only(denoise, x, sigma, sigma_next):
    d = (x - denoise(x, sigma)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        x_next = x + (sigma_next - sigma) * (x_next - denoise(x_next, sigma_next)) / sigma_next
    return x_next


def heun_slope_at_old_sigma(denoise, x, sigma, sigma_next):
    d = (x - denoise(x, sigma)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        d_next = (x_next - denoise(x_next, sigma)) / sigma
        x_next = x + (sigma_next - sigma) * (d + d_next) / 2
    return x_next


def heun_from_euler_end(denoise, x, sigma, sigma_next):
    d = (x - denoise(x, sigma)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
        x_next = x_next + (sigma_next - sigma) * (d + d_next) / 2
    return x_next


def heun_no_last_step_guard(denoise, x, sigma, sigma_next):  # divides by sigma_next = 0 on the last step
    d = (x - denoise(x, sigma)) / sigma
    x_euler = x + (sigma_next - sigma) * d
    d_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2


def heun_last_step_stands_still(denoise, x, sigma, sigma_next):
    if sigma_next == 0:
        return x
    return heun_step(denoise, x, sigma, sigma_next)


def heun_over_variance(denoise, x, sigma, sigma_next):
    d = (x - denoise(x, sigma)) / sigma**2
    x_next = x + (sigma_next - sigma) * d
    if sigma_next != 0:
        d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next**2
        x_next = x + (sigma_next - sigma) * (d + d_next) / 2
    return x_next


def heun_float_sigma_tensor(denoise, x, sigma, sigma_next):  # right, with the sigmas made tensors first
    sigma, sigma_next = torch.tensor(sigma), torch.tensor(sigma_next)
    return heun_step(denoise, x, sigma, sigma_next)


CASES: dict[str, Cases] = {
    "9.1": Cases(right=[score_from_eps, score_from_eps_reshape],
                 wrong=[returns_none, score_plus_sign, score_times_sigma, score_over_variance, score_over_alpha,
                        score_no_scale, score_image_view, score_first_sigma]),
    "9.2": Cases(right=[heun_step, heun_step_trapezoid, heun_float_sigma_tensor],
                 wrong=[returns_none, heun_euler_only, heun_wrong_direction, heun_no_half, heun_second_slope_only,
                        heun_slope_at_old_sigma, heun_from_euler_end, heun_no_last_step_guard,
                        heun_last_step_stands_still, heun_over_variance]),
}
