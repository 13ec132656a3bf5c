"""Right and wrong answers to the flow-matching exercises of chapter 09 (tau = 0 noise, tau = 1 data)."""

from __future__ import annotations

from exercise_cases.cases import Cases


def returns_none(*args):  # a blank answer: the cell ran, the function returns nothing
    return None


# ----- 9.3 interpolate(x1, eps, tau) = tau x1 + (1 - tau) eps, tau (B,) -----------------------------


def interpolate(x1, eps, tau):
    t = tau.reshape(-1, *([1] * (x1.ndim - 1)))  # (B,) -> (B, 1, ...)
    return t * x1 + (1 - t) * eps


def interpolate_lerp(x1, eps, tau):  # noise plus tau times the way to the data
    t = tau[(...,) + (None,) * (x1.ndim - 1)]
    return eps + t * (x1 - eps)


def interpolate_swapped(x1, eps, tau):  # DDPM's direction: tau counts the noise
    t = tau.reshape(-1, *([1] * (x1.ndim - 1)))
    return t * eps + (1 - t) * x1


def interpolate_sqrt(x1, eps, tau):  # DDPM's variance-preserving coefficients
    t = tau.reshape(-1, *([1] * (x1.ndim - 1)))
    return t.sqrt() * x1 + (1 - t).sqrt() * eps


def interpolate_half_sqrt(x1, eps, tau):  # a square root on the noise only: right at tau = 0 and 1 alone
    t = tau.reshape(-1, *([1] * (x1.ndim - 1)))
    return t * x1 + (1 - t).sqrt() * eps


def interpolate_noise_unscaled(x1, eps, tau):
    t = tau.reshape(-1, *([1] * (x1.ndim - 1)))
    return t * x1 + eps


def interpolate_points_broadcast(x1, eps, tau):  # right for points (B, 2), fails on images
    t = tau[:, None]
    return t * x1 + (1 - t) * eps


def interpolate_image_view(x1, eps, tau):  # right for images, (B, 1, 1, 1) * (B, 2) is not (B, 2)
    t = tau.view(-1, 1, 1, 1)
    return t * x1 + (1 - t) * eps


def interpolate_first_tau(x1, eps, tau):  # one tau for the whole batch
    return tau[0] * x1 + (1 - tau[0]) * eps


# ----- 9.4 target_velocity(x1, eps) = x1 - eps -------------------------------------------------------


def target_velocity(x1, eps):
    return x1 - eps


def target_velocity_derivative(x1, eps):  # d/dtau of tau x1 + (1 - tau) eps, written out
    return x1 * 1.0 + eps * (-1.0)


def target_velocity_reversed(x1, eps):  # DDPM's time direction
    return eps - x1


def target_velocity_data(x1, eps):
    return x1.clone()


def target_velocity_noise(x1, eps):  # what a DDPM network predicts
    return eps.clone()


def target_velocity_sum(x1, eps):
    return x1 + eps


def target_velocity_mean(x1, eps):  # one number for the whole batch
    return (x1 - eps).mean()


CASES: dict[str, Cases] = {
    "9.3": Cases([interpolate, interpolate_lerp],
                 [interpolate_swapped, interpolate_sqrt, interpolate_half_sqrt, interpolate_noise_unscaled, interpolate_points_broadcast,
                  interpolate_image_view, interpolate_first_tau, returns_none]),
    "9.4": Cases([target_velocity, target_velocity_derivative],
                 [target_velocity_reversed, target_velocity_data, target_velocity_noise, target_velocity_sum,
                  target_velocity_mean, returns_none]),
}
