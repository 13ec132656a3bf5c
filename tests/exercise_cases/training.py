"""Right and wrong answers to the exercises of chapter 04 (training)."""

from __future__ import annotations

import torch

from exercise_cases.cases import Cases

# ----- 4.1 diffusion_loss(model, x0, t, eps, alpha_bars) -> scalar -------------------------------


def _xt(x0, t, eps, alpha_bars):
    abar = alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def diffusion_loss(model, x0, t, eps, alpha_bars):
    return ((eps - model(_xt(x0, t, eps, alpha_bars), t)) ** 2).mean()


def diffusion_loss_functional(model, x0, t, eps, alpha_bars):
    return torch.nn.functional.mse_loss(model(_xt(x0, t, eps, alpha_bars), t), eps)


def diffusion_loss_predicts_x0(model, x0, t, eps, alpha_bars):  # regresses onto the clean data
    return ((x0 - model(_xt(x0, t, eps, alpha_bars), t)) ** 2).mean()


def diffusion_loss_no_sqrt(model, x0, t, eps, alpha_bars):  # alpha_bar instead of its square root
    abar = alpha_bars[t][:, None]
    return ((eps - model(abar * x0 + (1 - abar) * eps, t)) ** 2).mean()


def diffusion_loss_hardcoded_broadcast(model, x0, t, eps, alpha_bars):  # [:, None] fits points (B, D) only
    abar = alpha_bars[t][:, None]
    return ((eps - model(abar.sqrt() * x0 + (1 - abar).sqrt() * eps, t)) ** 2).mean()


def diffusion_loss_clean_input(model, x0, t, eps, alpha_bars):  # feeds x_0 instead of x_t
    return ((eps - model(x0, t)) ** 2).mean()


def diffusion_loss_sum(model, x0, t, eps, alpha_bars):
    return ((eps - model(_xt(x0, t, eps, alpha_bars), t)) ** 2).sum()


def diffusion_loss_item(model, x0, t, eps, alpha_bars):  # a float: no gradient to train with
    return ((eps - model(_xt(x0, t, eps, alpha_bars), t)) ** 2).mean().item()


def diffusion_loss_detached(model, x0, t, eps, alpha_bars):
    with torch.no_grad():
        return ((eps - model(_xt(x0, t, eps, alpha_bars), t)) ** 2).mean()


# ----- 4.2 train_step(model, optimizer, x0, t, eps, alpha_bars) -> float ------------------------


def train_step(model, optimizer, x0, t, eps, alpha_bars):
    optimizer.zero_grad()
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_step_no_zero_grad(model, optimizer, x0, t, eps, alpha_bars):
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_step_no_step(model, optimizer, x0, t, eps, alpha_bars):
    optimizer.zero_grad()
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    return loss.item()


def train_step_model_zero_grad(model, optimizer, x0, t, eps, alpha_bars):  # zeroing through the model is fine
    model.zero_grad()
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_step_zero_grad_late(model, optimizer, x0, t, eps, alpha_bars):  # the gradients are gone before step()
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def train_step_steps_twice(model, optimizer, x0, t, eps, alpha_bars):
    optimizer.zero_grad()
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    optimizer.step()
    return loss.item()


def train_step_hardcoded_broadcast(model, optimizer, x0, t, eps, alpha_bars):  # its loss breaks on images
    optimizer.zero_grad()
    loss = diffusion_loss_hardcoded_broadcast(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_step_returns_tensor(model, optimizer, x0, t, eps, alpha_bars):
    optimizer.zero_grad()
    loss = diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    return loss


def train_step_loss_after(model, optimizer, x0, t, eps, alpha_bars):  # reports the loss after the update
    train_step(model, optimizer, x0, t, eps, alpha_bars)
    with torch.no_grad():
        return diffusion_loss(model, x0, t, eps, alpha_bars).item()


# ----- 4.3 ema_update(ema, weights, decay) ------------------------------------------------------


def ema_update(ema, weights, decay):
    return decay * ema + (1 - decay) * weights


def ema_update_lerp(ema, weights, decay):
    return ema.lerp(weights, 1 - decay)


def ema_update_swapped(ema, weights, decay):  # keeps 1 - decay of the old average
    return (1 - decay) * ema + decay * weights


def ema_update_plain_mean(ema, weights, decay):
    return (ema + weights) / 2


CASES: dict[str, Cases] = {
    "4.1": Cases([diffusion_loss, diffusion_loss_functional],
                 [diffusion_loss_predicts_x0, diffusion_loss_no_sqrt, diffusion_loss_clean_input, diffusion_loss_sum,
                  diffusion_loss_item, diffusion_loss_detached, diffusion_loss_hardcoded_broadcast]),
    "4.2": Cases([train_step, train_step_model_zero_grad],
                 [train_step_no_zero_grad, train_step_no_step, train_step_returns_tensor, train_step_loss_after,
                  train_step_zero_grad_late, train_step_steps_twice, train_step_hardcoded_broadcast]),
    "4.3": Cases([ema_update, ema_update_lerp], [ema_update_swapped, ema_update_plain_mean]),
}
