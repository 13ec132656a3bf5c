"""Right and wrong answers to the exercises of chapter 08 (latent diffusion)."""

from __future__ import annotations

import math

import torch

from exercise_cases.cases import Cases


def returns_none(*args):  # a blank answer: the cell ran, the function returns nothing
    return None

# ----- 8.1 reparameterise(mean, logvar, noise) ----------------------------------------------------


def reparameterise(mean, logvar, noise):
    return mean + torch.exp(0.5 * logvar) * noise


def reparameterise_sqrt(mean, logvar, noise):  # the same std, written as the square root of the variance
    return mean + logvar.exp().sqrt() * noise


def reparameterise_variance(mean, logvar, noise):  # scales by the variance, not the std
    return mean + torch.exp(logvar) * noise


def reparameterise_half_outside(mean, logvar, noise):  # 0.5 exp(logvar), not exp(0.5 logvar)
    return mean + 0.5 * torch.exp(logvar) * noise


def reparameterise_logvar_as_std(mean, logvar, noise):
    return mean + noise * logvar


def reparameterise_mean_only(mean, logvar, noise):
    return mean


def reparameterise_fresh_noise(mean, logvar, noise):  # draws its own noise instead of the one given
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def reparameterise_detached(mean, logvar, noise):  # right numbers, but no gradient to the encoder
    with torch.no_grad():
        return mean + torch.exp(0.5 * logvar) * noise


# ----- 8.2 kl_to_standard_normal(mean, logvar) ----------------------------------------------------


def kl_to_standard_normal(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))


def kl_kingma(mean, logvar):  # Kingma & Welling's form: -0.5 sum(1 + logvar - mean^2 - exp(logvar))
    return -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp(), dim=[1, 2, 3])


def kl_mean_over_values(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean(dim=(1, 2, 3))


def kl_summed_over_batch(mean, logvar):  # one number for the whole batch
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum()


def kl_no_half(mean, logvar):
    return (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))


def kl_no_minus_one(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - logvar).sum(dim=(1, 2, 3))


def kl_plus_logvar(mean, logvar):
    return 0.5 * (mean**2 + logvar.exp() - 1 + logvar).sum(dim=(1, 2, 3))


# ----- 8.3 latent_scale(latents) -------------------------------------------------------------------


def latent_scale(latents):
    return 1 / latents.std()


def latent_scale_float_biased(latents):  # a Python float, from the biased std (divides by n, not n - 1)
    x = latents.double().flatten()
    return 1.0 / math.sqrt(float(((x - x.mean()) ** 2).mean()))


def latent_scale_std(latents):  # s is 1 / std
    return latents.std()


def latent_scale_per_channel(latents):  # one scale per channel
    return 1 / latents.transpose(0, 1).flatten(1).std(dim=1)


def latent_scale_variance(latents):
    return 1 / latents.var()


def latent_scale_mean_abs(latents):
    return 1 / latents.abs().mean()


def latent_scale_rms(latents):  # ignores the mean
    return 1 / latents.pow(2).mean().sqrt()


def latent_scale_item_list(latents):  # not a number
    return [float(1 / latents.std())]


# ----- 8.4 min_snr_weight(alpha_bar, gamma) ------------------------------------------------------


def min_snr_weight(alpha_bar, gamma):
    snr = alpha_bar / (1 - alpha_bar)
    return torch.minimum(snr, torch.full_like(snr, gamma)) / snr


def min_snr_weight_where(alpha_bar, gamma):  # written as a choice: 1 where SNR <= gamma, else gamma / SNR
    snr = alpha_bar / (1 - alpha_bar)
    return torch.where(snr > gamma, gamma / snr, torch.ones_like(snr))


def min_snr_weight_max(alpha_bar, gamma):
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp(snr, min=gamma) / snr


def min_snr_weight_undivided(alpha_bar, gamma):
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp(snr, max=gamma)


def min_snr_weight_inverted(alpha_bar, gamma):
    snr = alpha_bar / (1 - alpha_bar)
    return snr / torch.clamp(snr, max=gamma)


def min_snr_weight_noise_over_signal(alpha_bar, gamma):
    snr = (1 - alpha_bar) / alpha_bar
    return torch.clamp(snr, max=gamma) / snr


def min_snr_weight_sqrt(alpha_bar, gamma):  # a ratio of standard deviations, not of variances
    snr = alpha_bar.sqrt() / (1 - alpha_bar).sqrt()
    return torch.clamp(snr, max=gamma) / snr


def min_snr_weight_five(alpha_bar, gamma):  # ignores gamma
    snr = alpha_bar / (1 - alpha_bar)
    return torch.clamp(snr, max=5.0) / snr


def min_snr_weight_python_min(alpha_bar, gamma):  # Python's min on a tensor
    snr = alpha_bar / (1 - alpha_bar)
    return min(snr, gamma) / snr


def min_snr_weight_per_batch(alpha_bar, gamma):  # one number for the batch
    snr = alpha_bar / (1 - alpha_bar)
    return (torch.clamp(snr, max=gamma) / snr).mean()


# ----- 8.5 sdedit_start(num_steps, strength) ------------------------------------------------------


def sdedit_start(num_steps, strength):
    return num_steps - round(strength * num_steps)


def sdedit_start_half_up(num_steps, strength):  # rounds ties up, which no case of the check has
    return num_steps - int(strength * num_steps + 0.5)


def sdedit_start_reversed(num_steps, strength):  # the number of steps to run, not where to start
    return round(strength * num_steps)


def sdedit_start_truncated(num_steps, strength):  # int() cuts 6.6 down to 6
    return num_steps - int(strength * num_steps)


def sdedit_start_float(num_steps, strength):  # not rounded at all
    return num_steps * (1 - strength)


def sdedit_start_timestep(num_steps, strength):  # a timestep of a 1000-step schedule, not an index
    return round((1 - strength) * 1000)


CASES: dict[str, Cases] = {
    "8.1": Cases([reparameterise, reparameterise_sqrt],
                 [reparameterise_variance, reparameterise_half_outside, reparameterise_logvar_as_std,
                  reparameterise_mean_only, reparameterise_fresh_noise, reparameterise_detached, returns_none]),
    "8.2": Cases([kl_to_standard_normal, kl_kingma],
                 [kl_mean_over_values, kl_summed_over_batch, kl_no_half, kl_no_minus_one, kl_plus_logvar, returns_none]),
    "8.3": Cases([latent_scale, latent_scale_float_biased],
                 [latent_scale_std, latent_scale_per_channel, latent_scale_variance, latent_scale_mean_abs,
                  latent_scale_rms, latent_scale_item_list, returns_none]),
    "8.4": Cases([min_snr_weight, min_snr_weight_where],
                 [min_snr_weight_max, min_snr_weight_undivided, min_snr_weight_inverted,
                  min_snr_weight_noise_over_signal, min_snr_weight_sqrt, min_snr_weight_five,
                  min_snr_weight_python_min, min_snr_weight_per_batch, returns_none]),
    "8.5": Cases([sdedit_start, sdedit_start_half_up],
                 [sdedit_start_reversed, sdedit_start_truncated, sdedit_start_float, sdedit_start_timestep, returns_none]),
}
