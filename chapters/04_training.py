# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Training: teaching a network to predict the noise
#
# Chapters 01 and 02 destroyed data one small step of noise at a time; chapter 03 built a network
# that looks at a noisy image $x_t$, is told the step $t$, and outputs an image-shaped guess. This
# chapter connects the two. The forward process hands us unlimited training examples for free: take
# a clean $x_0$, draw a step $t$ and some noise $\epsilon$, mix them into $x_t$, and ask the network
# which noise was added. That one regression problem, repeated a few thousand times, is all the
# training a diffusion model needs. The same recipe trained Stable Diffusion; only the data, the network
# and the bill are bigger.
#
# **Learning goals**
#
# - Write DDPM's simplified loss, $\lVert \epsilon - \epsilon_\theta(x_t, t)\rVert^2$, and explain why
#   predicting the noise is enough to recover the image.
# - Write one training step yourself, then train a 2-D model to a clean spiral in under a minute.
# - Train the MNIST U-Net for a few minutes, watching a live loss plot, and read the loss by timestep.
# - Explain what the exponential moving average (EMA) of the weights is for, and write its update.
# - Load the course's shipped checkpoint, and know how it was made and how to remake it.
#
# **Run time:** about 4 minutes in full mode on a 2-core laptop CPU (3.9 min in
# `bench/results/chapter_times.md`), most of it the MNIST training of section 5.

# %%
# Set-up for Google Colab and Kaggle; anywhere else it does nothing.
# There it fetches the course, installs it beside the service's own PyTorch (kept as it is), and moves into
# the chapters folder. Switch the GPU on first (Colab: Runtime, Change runtime type; Kaggle: Settings,
# Accelerator), then run it. Written by tools/cloud_cell.py from the address in pyproject.toml.
import os
import subprocess
import sys
from pathlib import Path

if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    from importlib.metadata import version

    def run(cmd, fix):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-400:]}\n{fix}")

    repo, torch_version = Path.home() / "diffusion-lab", version("torch")
    cloned = not repo.exists()
    if cloned:  # the latest version only, no history
        run(["git", "clone", "--depth", "1", "https://github.com/diffusion-lab/diffusion-lab", str(repo)],
            "Is this session online? On Kaggle: Settings, Internet on. Then run this cell again.")
    if not (repo / ".installed").exists():
        pip = [sys.executable, "-m", "pip", "install", "--quiet"]
        # the course's other requirements by name: pip adds what is missing and keeps what the service has;
        # naming the service's own torch makes pip stop rather than replace it
        needs = [f"torch=={torch_version}", "numpy", "matplotlib", "ipywidgets", "tqdm", "nbformat", "pillow",
                 "safetensors", "diffusers"]
        run(pip + needs, "Run this cell again; if it fails again, restart the session and run it again.")
        run(pip + ["--no-deps", "-e", str(repo)], "Run this cell again.")  # the course, without its torch pin
        (repo / ".installed").touch()  # so that running this cell again is quick
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))  # importable now, without a restart
    os.chdir(repo / "chapters")
    print(f"diffusion-lab: {'fetched and installed' if cloned else 'found'} {repo}, beside the service's own "
          f"torch {torch_version}; working in {Path.cwd()}")

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from diffusion_lab.config import mode_name, pick, pick_device, seed_everything
from diffusion_lab.data import make_toy, mnist_tensors
from diffusion_lab.exercises import check_diffusion_loss, check_ema_update, check_train_step
from diffusion_lab.models import MLPConfig, MLPDenoiser, UNet, UNetConfig
from diffusion_lab.notebook.figures import plot_points, show_images, use_course_style
from diffusion_lab.notebook.live_plot import LiveLossPlot
from diffusion_lab.pretrained import load_pretrained, read_manifest
from diffusion_lab.sampling import DDIMScheduler, DDPMScheduler, sample
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims
from diffusion_lab.training import DiffusionObjective, TrainConfig, diffusion_loss, fit, loss_by_timestep

use_course_style()
seed_everything(0)
device = pick_device()  # CUDA, then Apple's MPS, then the CPU: every model below is trained and sampled there
print(f"mode: {mode_name()}, device: {device}")

# %% [markdown]
# ## 1. From "undo the noise" to "predict the noise"
#
# Recall the closed form of the forward process (chapter 01):
#
# $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon, \qquad \epsilon \sim \mathcal N(0, I).$$
#
# Given $x_t$ and $t$, there is exactly one unknown on the right-hand side once we know $\epsilon$:
# solving for $x_0$,
#
# $$x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon}{\sqrt{\bar\alpha_t}}.$$
#
# So a network that can tell which part of $x_t$ is noise can also tell what the clean image was.
# Ho et al. (2020) let the network $\epsilon_\theta(x_t, t)$ predict the noise, and derived its loss from
# the likelihood of the data. That derivation gives a weighted sum over $t$ of squared errors
# $\lVert \epsilon - \epsilon_\theta(x_t, t)\rVert^2$; they found that dropping the weights gives
# better *samples*, and named the result the **simplified loss**:
#
# $$L_{\text{simple}}(\theta) = \mathbb E_{x_0,\ t \sim \mathcal U\{0..T-1\},\ \epsilon \sim \mathcal N(0, I)}
# \Big[\big\lVert \epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t\big)\big\rVert^2\Big].$$
#
# Algorithm 1 of their paper is this loss inside a loop: draw a batch of $x_0$, a step $t$ and a noise
# $\epsilon$ for each, take a gradient step on $L_{\text{simple}}$, repeat.
#
# Better samples, not a better model in every sense. Compared with the true bound, $L_{\text{simple}}$
# gives less weight to the small $t$, where the noise is faint, and so relatively more to the harder
# denoising at larger $t$ (their §3.4). That suits the eye but not the likelihood. On
# CIFAR-10 (Ho et al. 2020, Tables 1 and 2) training on $L_{\text{simple}}$ gave the best FID, 3.17 against
# 13.51 for the true bound, but a slightly worse log-likelihood: at most 3.75 bits per dimension against
# 3.70 for the true bound (lower is better).
#
# Two details of the formula. It counts the steps from 0, like our code (chapter 01), where the paper
# draws $t$ from $1, \dots, T$. And its $\lVert\cdot\rVert^2$ is a *sum* over all pixels (or coordinates),
# whereas the code takes the *mean* (`F.mse_loss`, `.mean()`). The two differ
# by a constant factor, the number of pixels, which only rescales the gradients (the learning rate absorbs
# it) and leaves the best network unchanged.
#
# Why predict $\epsilon$ and not $x_0$ directly? Both are possible, and many models do predict $x_0$ or a
# mix of the two (the "$v$-prediction" of later Stable Diffusion versions). The noise has a fixed scale
# (variance 1 at every $t$), so the regression target is equally sized at all noise levels, which
# keeps training well behaved. With the mean, a network that outputs zeros everywhere scores
# $\mathbb E[\epsilon^2] = 1$:
# **a loss of 1 is "knows nothing"**, and every plot below can be read against that line.
#
# Here is one batch of the loss in four visible lines, on a batch of 2-D points and an untrained
# network, checked against the package's `diffusion_loss`:

# %%
# NBVAL_CHECK_OUTPUT
schedule = NoiseSchedule.from_name("cosine", T=1000)  # the schedule chapter 02 chose
gen = torch.Generator().manual_seed(0)
x0 = make_toy("swiss_roll", 256, seed=1)  # (256, 2)
torch.manual_seed(0)
toy_model = MLPDenoiser(MLPConfig())

t = torch.randint(0, schedule.T, (x0.shape[0],), generator=gen)  # one step per sample, (B,)
eps = torch.randn(x0.shape, generator=gen)  # (B, 2)
xt = schedule.add_noise(x0, eps, t)  # the closed form above
loss = F.mse_loss(toy_model(xt, t), eps)

print(f"loss of the untrained network: {loss.item():.3f}")
print(f"package's diffusion_loss:      {diffusion_loss(toy_model, schedule, x0, t, eps).mean().item():.3f}")
print(f"always predicting zero:        {F.mse_loss(torch.zeros_like(eps), eps).item():.3f}")

# %% [markdown]
# The untrained network already scores about 1: it outputs numbers near zero, which is as good as
# knowing nothing. Training will push the loss down from there.
#
# ### Exercise 4.1: the loss
#
# Write `my_diffusion_loss(model, x0, t, eps, alpha_bars)` (the `my_` keeps the package's `diffusion_loss`,
# used above, from being overwritten) returning the simplified loss of one batch as a 0-d tensor: build $x_t$ from the closed form, call `model(xt, t)`, and return the mean squared error
# against `eps`. `x0` and `eps` have shape $(B, \dots)$ (points or images), `t` has shape $(B,)$, and
# `alpha_bars` is the schedule's $(T,)$ tensor. *Hint:* `alpha_bars[t]` has shape $(B,)$; reshape it to
# $(B, 1, \dots)$ so that it multiplies each sample, as in exercise 0.2 (`append_dims` is imported above).

# %%
def my_diffusion_loss(model, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                      alpha_bars: torch.Tensor) -> torch.Tensor:
    """DDPM's simplified loss for one batch: mean of (eps - model(x_t, t))^2."""
    ### BEGIN SOLUTION
    abar = append_dims(alpha_bars[t], x0.ndim)  # (B, 1, ...)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return ((eps - model(xt, t)) ** 2).mean()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_diffusion_loss(my_diffusion_loss)

# %% [markdown]
# ## 2. One training step
#
# Training repeats one step: draw a batch, compute the loss, ask autograd for the gradient, and let
# the optimiser move the weights a little against it. In PyTorch every step has the same four calls,
# and forgetting the first one is the classic bug: `backward()` *adds* to the gradients already stored
# in each parameter's `.grad`, so they must be zeroed before each step.
#
# ### Exercise 4.2: a training step
#
# Write `train_step(model, optimizer, x0, t, eps, alpha_bars)`: zero the gradients, compute your loss
# from exercise 4.1, call `backward()`, step the optimiser, and return the loss as a Python float
# (`loss.item()`; returning the tensor would keep every step's computation graph alive).

# %%
def train_step(model, optimizer: torch.optim.Optimizer, x0: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor, alpha_bars: torch.Tensor) -> float:
    """One optimisation step on the simplified loss; returns the loss before the update."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    loss = my_diffusion_loss(model, x0, t, eps, alpha_bars)
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_train_step(train_step)

# %% [markdown]
# Your step is a complete trainer. Here it is, unchanged, teaching the 2-D network for a few hundred
# steps on the swiss roll (points on a spiral, scaled to about $[-2, 2]$). Each step sees 512 fresh
# points, steps and noises:

# %%
data_2d = make_toy("swiss_roll", 50_000, seed=0)  # (50000, 2)
torch.manual_seed(0)
my_model = MLPDenoiser(MLPConfig()).to(device)
optimizer = torch.optim.AdamW(my_model.parameters(), lr=1e-3)
gen = torch.Generator().manual_seed(1)  # draws on the CPU, then moves: the same numbers on every device
my_losses = []
for _step in range(pick(300, 30)):
    batch = data_2d[torch.randint(0, len(data_2d), (512,), generator=gen)]
    t = torch.randint(0, schedule.T, (512,), generator=gen)
    eps = torch.randn(batch.shape, generator=gen)
    my_losses.append(train_step(my_model, optimizer, batch.to(device), t.to(device), eps.to(device),
                                schedule.alpha_bars.to(device)))

fig, ax = plt.subplots(figsize=(5, 2.6))
ax.plot(my_losses, lw=0.8, label="one batch")
ax.plot(torch.tensor(my_losses).cumsum(0).div(torch.arange(1, len(my_losses) + 1)), label="running mean")
ax.axhline(1.0, color="gray", ls="--", lw=1, label="knows nothing (loss 1)")
ax.set(xlabel="step", ylabel="loss", title="your train_step on the swiss roll")
ax.legend(fontsize=8)
plt.show()
print(f"mean loss over the last 50 steps: {sum(my_losses[-50:]) / len(my_losses[-50:]):.3f}")

# %% [markdown]
# The loss falls fast, then flattens far above zero, and each batch's loss jumps around its mean. Both
# are expected. The noise $\epsilon$ is random, so part of it can never be predicted from $x_t$: even a
# perfect network keeps a loss well above zero (section 4 measures where). And every batch mixes easy and
# hard steps $t$ in different proportions, so single batches scatter. Watch the running mean, not the
# batches.
#
# ## 3. The 2-D model, trained properly
#
# The package's `fit` runs the same step with the usual extras. What it trains towards is an
# *objective*: `DiffusionObjective(schedule, data)` draws $x_0$, $t$ and $\epsilon$ and scores the
# model with the loss you just wrote (the course's classifiers train through the same `fit` with a
# cross-entropy objective). The extras: AdamW with a short learning-rate warm-up, gradient clipping (a rare huge gradient cannot throw the weights far), an exponential moving
# average of the weights (section 5), checkpoints you can resume from, a clear stop if the loss becomes
# NaN, and, below, a live plot: the left panel is the loss, the right one the loss so far for each tenth
# of the steps $t$. Watch it move while it trains. 3,000 steps of 512 points take about a minute on
# two CPU cores (61 s in the saved run, with another training job sharing the cores).

# %%
toy_config = TrainConfig(steps=pick(3000, 300), batch_size=512, lr=1e-3, warmup_steps=100, ema_decay=0.995,
                         log_every=50)
torch.manual_seed(0)
toy = MLPDenoiser(MLPConfig())
start = time.perf_counter()
toy_state = fit(toy, DiffusionObjective(schedule, data_2d), toy_config, device=device,
                on_log=LiveLossPlot(schedule.T, title="2-D swiss roll"))
print(f"trained {toy_config.steps} steps in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# Does it work? The real test is to *generate* points: start from pure noise and let the model remove
# its predicted noise step by step. That loop is chapter 05's subject; here we borrow it from the
# package (`sample` with a `DDPMScheduler`, all 1,000 steps) and look at the result:

# %%
scheduler = DDPMScheduler(schedule, clip_sample_range=3.0)  # chapter 05: why the range (these points lie within +-2.5)
scheduler.set_timesteps(pick(None, 100))  # all T = 1000 steps (quick mode: 100)
gen = torch.Generator().manual_seed(2)
n_points = pick(2000, 500)
start = time.perf_counter()
points = sample(toy_state.ema.model, scheduler, (n_points, 2), generator=gen, device=device).cpu()
print(f"sampled {n_points} points in {scheduler.num_inference_steps} steps in {time.perf_counter() - start:.1f} s")

fig, axes = plt.subplots(1, 3, figsize=(9, 3))
plot_points(torch.randn(n_points, 2, generator=gen), axes[0], title="start: pure noise $x_T$")
plot_points(points, axes[1], title="generated $x_0$", color="C1")
plot_points(data_2d[:2000], axes[2], title="training data", color="C2")
plt.show()

# %% [markdown]
# From a shapeless cloud of Gaussian noise the model has made the spiral, with its gaps and its
# density along the arms. No point of the training data was copied: every generated point started as
# random noise.
#
# ## 4. Loss by timestep: where is the task hard?
#
# The live plot's right panel already hinted at it. `loss_by_timestep` measures it properly: the same
# 2,000 points, the same noise, evaluated at fixed steps $t$:

# %%
t_grid = list(range(0, schedule.T, 50)) + [schedule.T - 1]
toy_curve = loss_by_timestep(toy_state.ema.model, schedule, data_2d[:2000].to(device), t_grid,
                             generator=torch.Generator().manual_seed(3))

fig, ax = plt.subplots(figsize=(5, 2.8))
ax.plot(t_grid, toy_curve, marker=".")
ax.axhline(1.0, color="gray", ls="--", lw=1, label="knows nothing")
ax.set(xlabel="timestep t", ylabel="loss", title="2-D model: loss at each step", ylim=(0, 1.1))
ax.legend(fontsize=8)
plt.show()
print(f"loss at t = 0: {toy_curve[0]:.2f};  t = 500: {toy_curve[10]:.2f};  t = 999: {toy_curve[-1]:.3f}")
print(f"noise scale at t = 0: sqrt(1 - alpha_bar_0) = {(1 - schedule.alpha_bars[0]).sqrt():.3f}")

# %% [markdown]
# Read it from the right. At $t = T-1$, $x_t$ *is* almost pure noise, so naming the noise is easy and the
# loss is near zero. Going left, the loss climbs all the way to "knows nothing" at $t = 0$. That is not
# the model failing. At $t = 0$ the noise is a nudge of size $\sqrt{1-\bar\alpha_0} \approx 0.006$, much
# smaller than the natural spread of the points across an arm of the spiral. A nudged point looks
# exactly like another genuine point, so no network can tell which nudge was applied. In between, the
# network can tell part of the noise (the part that moves a point off the spiral) but not the rest.
#
# So the loss at each $t$ has a floor set by the data, not by the model, and a single "loss" number mixes
# easy and impossible parts. Compare models at the same $t$, as here, not by their total loss alone.
#
# ## 5. MNIST: the U-Net learns digits
#
# Now the real thing: the U-Net of chapter 03, at its `mnist` size (2 million parameters), on the
# course's 20,000 MNIST training digits (28 × 28, scaled to $[-1, 1]$). We train for only a few minutes
# here: enough for digits to start appearing, not enough for good ones. We use `bf16=True` for
# bfloat16 autocast, which runs most of the network in 16-bit arithmetic where the hardware supports it
# (recent CPUs, and GPUs). On two CPU cores that is about 1.5 times faster (`bench/unet_throughput.py`).
#
# Before training, one more idea. The weights after the last step are not the best weights to sample
# from. Each step moves them by a noisy gradient, so they jitter around the good values. The fix costs
# one line per step: keep a second copy, the **exponential moving average** (EMA) of the weights,
#
# $$\bar\theta \leftarrow \text{decay}\cdot\bar\theta + (1-\text{decay})\cdot\theta,$$
#
# and sample from $\bar\theta$. With decay $0.999$ it averages roughly the last $1/(1 - 0.999) = 1000$
# steps. (Early in training the package uses a smaller decay, $\min(\text{decay}, \tfrac{1+n}{10+n})$
# after $n$ steps, so the average is not anchored to the random starting weights.)
#
# ### Exercise 4.3: the EMA update
#
# Write `ema_update(ema, weights, decay)` returning the new average for one tensor of weights.

# %%
def ema_update(ema: torch.Tensor, weights: torch.Tensor, decay: float) -> torch.Tensor:
    """One step of the exponential moving average of a weight tensor."""
    ### BEGIN SOLUTION
    return decay * ema + (1 - decay) * weights
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_ema_update(ema_update)

# %% [markdown]
# Now train. The batch is 64 digits, and EMA decay 0.995 suits a short run. The loss curve starts at 1
# like before; look at how quickly it drops below 0.1 and where the right panel puts the hard steps.

# %%
digits, _ = mnist_tensors("train")  # (20000, 1, 28, 28) in [-1, 1]
mnist_config = TrainConfig(steps=pick(400, 15), batch_size=64, lr=1e-3, warmup_steps=50, ema_decay=0.995,
                           log_every=pick(20, 5), mixed_precision=True)
torch.manual_seed(0)
unet = UNet(UNetConfig.mnist())
start = time.perf_counter()
mnist_state = fit(unet, DiffusionObjective(schedule, digits), mnist_config, device=device,
                  on_log=LiveLossPlot(schedule.T, title="MNIST U-Net"))
minutes = (time.perf_counter() - start) / 60
print(f"trained {mnist_config.steps} steps ({mnist_config.steps * mnist_config.batch_size:,} images) "
      f"in {minutes:.1f} min")

# %% [markdown]
# Sixteen samples from the raw weights and sixteen from the EMA weights, with the same starting noise.
# We use DDIM with 50 steps, a fast sampler from chapter 05:

# %%
ddim = DDIMScheduler(schedule)
ddim.set_timesteps(50)
x_T = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(4))
raw_samples = sample(mnist_state.model.eval(), ddim, x_T.shape, x_T=x_T, device=device)
ema_samples = sample(mnist_state.ema.model, ddim, x_T.shape, x_T=x_T, device=device)
fig = show_images(torch.cat([raw_samples[:8], ema_samples[:8]]), nrow=8,
                  suptitle=f"after {mnist_config.steps} steps: raw weights (top), EMA weights (bottom)")
plt.show()

# %% [markdown]
# After a few minutes the model has learnt what MNIST looks like in broad strokes: white strokes on
# black, centred, with loops and bars. Most of the shapes are not yet digits. After so short a run the
# two rows differ little, because the average covers only the last hundred or so steps. Over a long run
# it smooths out thousands of noisy updates, which is why every shipped model here, like DDPM and
# Stable Diffusion, samples from its EMA weights.
#
# How much better does more training make the model? Its loss by timestep, against the shipped model
# (next section), trained for far longer on batches of 128 digits:

# %%
shipped = load_pretrained("mnist", device=device)
shipped_steps = read_manifest()["mnist"]["steps"]
test_digits, _ = mnist_tensors("test")
x0_eval = test_digits[:pick(500, 64)].to(device)
t_grid = [0, 10, 25, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]
curves = {}
for label, model in [(f"this notebook ({mnist_config.steps} steps)", mnist_state.ema.model),
                     (f"shipped ({shipped_steps:,} steps)", shipped.model)]:
    curves[label] = loss_by_timestep(model, schedule, x0_eval, t_grid, generator=torch.Generator().manual_seed(5))

fig, ax = plt.subplots(figsize=(5.5, 2.8))
for label, curve in curves.items():
    ax.plot(t_grid, curve, marker=".", label=label)
ax.set(xlabel="timestep t", ylabel="loss", yscale="log", title="MNIST: loss at each step, test digits")
ax.legend(fontsize=8)
plt.show()
for label, curve in curves.items():
    print(f"{label:32s} loss at t=0: {curve[0]:.3f}   t=500: {curve[8]:.3f}   t=999: {curve[-1]:.4f}")

# %% [markdown]
# As for the spiral, the loss is largest at small $t$ and tiny at large $t$. Longer training lowers the whole
# curve. On this log scale the gap looks widest at the two ends, but little of the picture is decided
# there: at $t = 999$ both losses are already tiny, and at $t = 0$ the noise left is too faint to see. What
# matters is the middle steps, where the model must know what a digit looks like to tell noise from
# stroke. There the longer run's loss is lower by a steady fraction, and the last few percent of loss are
# where image quality comes from: much of the difference between blobs and digits lies in that small gap.
#
# ## 6. The shipped checkpoint
#
# Training the MNIST model properly takes about three hours on a two-core CPU, so the course ships
# the result in `data/checkpoints/`: weights in `safetensors` format (plain tensors, unlike pickled
# `.pt` files, which can run code when loaded), a JSON config, and a SHA-256 digest checked on every load.
# The manifest records how each checkpoint was made:

# %%
info = read_manifest()["mnist"]
print(f"command:  {info['command']}")
print(f"steps:    {info['steps']:,} of batch 128   training time: {info['train_seconds'] / 60:.0f} min")
print(f"hardware: {info['hardware']}")
print(f"size:     {info['bytes'] / 1e6:.1f} MB")

# %% [markdown]
# Anyone can remake it with that command (`python -m diffusion_lab train --preset mnist --steps 20000 --publish`;
# 20,000 steps is the preset's default, so `--preset mnist --publish` does the same),
# and `--resume` continues a run that was interrupted, as this one was: it was stopped after 12,898
# steps and resumed from its step-12,750 checkpoint, losing only the 148 steps since then. Sixty-four of
# its samples, again 50 DDIM steps:

# %%
x_T = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(6))
shipped_samples = sample(shipped.model, ddim, x_T.shape, x_T=x_T, device=device)
fig = show_images(shipped_samples, nrow=16, scale=0.7, suptitle="the shipped MNIST model, DDIM 50 steps")
plt.show()

# %% [markdown]
# Chapter 05 measures these samples properly: how many a trained classifier recognises, how varied they
# are, and how quality trades against the number of sampling steps.
#
# ## Summary
#
# - The forward process makes training data for free: $(x_t, t) \to \epsilon$ is a plain regression.
# - DDPM's simplified loss is $\lVert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\rVert^2$
#   averaged over uniform $t$; a loss of 1 means "knows nothing".
# - A training step: zero the gradients, loss, `backward()`, `step()`. Gradient clipping, warm-up,
#   bfloat16 and checkpoints are conveniences around it.
# - The loss has a floor at each $t$ set by the data: highest at small $t$, where the noise is a tiny
#   nudge that may look like data, and near zero at large $t$. Compare models step by step.
# - Sample from an exponential moving average of the weights, not the last weights.
# - A 2-D spiral trains in under a minute; MNIST digits need about three hours of laptop CPU, so the
#   course ships that model, with the command that made it.
#
# ## What's next
#
# We have trained a noise predictor and borrowed a sampler to check it. Chapter 05 opens that sampler:
# it derives the reverse step from the posterior $q(x_{t-1} \mid x_t, x_0)$, watches DDPM turn noise into
# a digit over 1,000 steps, and then asks how few steps we can get away with, DDIM with 10 to 100.
