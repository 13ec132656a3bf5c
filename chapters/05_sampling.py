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
# # 05 · Sampling: from pure noise to a digit
#
# Chapter 04 trained a network $\epsilon_\theta(x_t, t)$ that names the noise in a noisy image. This
# chapter turns that skill into a generator. Start from pure noise $x_T \sim \mathcal N(0, I)$ (the papers'
# name for the end of the chain; in chapter 01's step numbering the end is $x_{T-1}$, the data after the
# last step), ask the network what noise it sees, remove a little of it, and repeat until $t = 0$. The
# original DDPM sampler takes all 1,000 steps, one network call each. The question that shaped every
# system since, including Stable Diffusion's 20 to 50 steps, is how few you can take. We derive the step,
# watch it work, and then measure what skipping steps costs.
#
# **Learning goals**
#
# - Derive the reverse step from the posterior $q(x_{t-1} \mid x_t, x_0)$ and the model's guess of $x_0$.
# - Run DDPM's 1,000 steps from pure noise and read the trajectory: $x_t$, and the guess of $x_0$ at each step.
# - Explain DDIM's deterministic step, and why the same trained model can be sampled in 10 to 100 steps.
# - Measure steps against time against quality (recognised fraction, FID), and choose a sampler.
#
# **Run time:** about 4 minutes in full mode on a 2-core laptop CPU.

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
import matplotlib.ticker
import torch

from diffusion_lab.config import mode_name, pick, pick_device, seed_everything
from diffusion_lab.data import mnist_tensors
from diffusion_lab.exercises import check_ddim_step, check_ddim_timesteps, check_posterior_mean
from diffusion_lab.judges.metrics import class_counts, class_probabilities, fid, recognised_fraction
from diffusion_lab.notebook.animation import animate
from diffusion_lab.notebook.figures import make_grid, show_images, to_display, use_course_style
from diffusion_lab.pretrained import load_pretrained
from diffusion_lab.sampling import (
    DDIMScheduler,
    DDPMScheduler,
    posterior_mean_variance,
    predict_x0,
    record_trajectory,
    sample,
)

use_course_style()
seed_everything(0)
device = pick_device()  # CUDA, then Apple's MPS, then the CPU: the models below sample there
print(f"mode: {mode_name()}, device: {device}")

# %% [markdown]
# ## 1. The reverse step
#
# We want to go from $x_t$ to a plausible $x_{t-1}$, one step back. Suppose for a moment that we *knew*
# the clean image $x_0$. Then Bayes' rule gives the step back exactly:
#
# $$q(x_{t-1} \mid x_t, x_0) = \frac{q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)}{q(x_t \mid x_0)}.$$
#
# All three are Gaussians we know from chapter 01: $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\,x_{t-1}, \beta_t I)$
# and $q(x_{t-1} \mid x_0) = \mathcal N(\sqrt{\bar\alpha_{t-1}}\,x_0, (1-\bar\alpha_{t-1}) I)$. As a function of
# $x_{t-1}$, the product of two Gaussians is a Gaussian. Adding the exponents (completing the square)
# gives its precision and mean:
#
# $$\frac{1}{\tilde\beta_t} = \frac{\alpha_t}{\beta_t} + \frac{1}{1-\bar\alpha_{t-1}}
# \quad\Longrightarrow\quad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t,$$
#
# $$\tilde\mu_t(x_t, x_0) = \tilde\beta_t\Big(\frac{\sqrt{\alpha_t}}{\beta_t}x_t + \frac{\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_{t-1}}x_0\Big)
# = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t .$$
#
# (Equations 6 and 7 of Ho et al. 2020, with steps counted from 0 as in chapter 01, so our $t$ is the paper's
# $t + 1$. At $t = 0$ the step back lands on the clean data itself, which in our numbering comes before
# step 0: take $\bar\alpha_{-1} = 1$, and then $\tilde\beta_0 = 0$ and the mean is $x_0$ itself.)
# The mean is a weighted mix of where we are, $x_t$, and where we are heading, $x_0$.
#
# We do not know $x_0$, but chapter 04 showed that the noise prediction gives a guess of it:
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}.$$
#
# **The DDPM step** puts the guess into the posterior and draws from it:
#
# $$x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sqrt{\tilde\beta_t}\,z, \qquad z \sim \mathcal N(0, I)
# \quad (z = 0 \text{ at the last step}).$$
#
# It looks odd to add fresh noise while removing noise. But $\hat x_0$ is only a guess, blurry while $t$ is
# large, and the noise keeps $x_{t-1}$ as spread out as real noisy images at step $t-1$ are. Each step
# removes a little more noise than it adds.
#
# How much noise to add is a choice. This course always uses the posterior's own variance, $\tilde\beta_t$.
# Ho et al. also tried $\beta_t$, slightly larger ($\tilde\beta_t \le \beta_t$, with the two close except at
# the smallest $t$), and found that both gave similar samples (§3.2). In diffusers they are the
# scheduler's `variance_type="fixed_small"` ($\tilde\beta_t$, the default) and `"fixed_large"` ($\beta_t$).
#
# ### Exercise 5.1: the posterior mean
#
# Write `posterior_mean(x0, xt, t, alpha_bars)` for an integer step `t`, using $\alpha_t = \bar\alpha_t / \bar\alpha_{t-1}$
# and $\beta_t = 1 - \alpha_t$. *Hint:* careful at `t = 0`. Python reads `alpha_bars[-1]` as the *last*
# entry, not as $\bar\alpha_{-1} = 1$.

# %%
def posterior_mean(x0: torch.Tensor, xt: torch.Tensor, t: int, alpha_bars: torch.Tensor) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x_0) (DDPM eq. 7) for one integer step t; x0, xt shaped (B, ...)."""
    ### BEGIN SOLUTION
    abar = alpha_bars[t]
    abar_prev = alpha_bars[t - 1] if t > 0 else torch.ones_like(abar)
    beta = 1 - abar / abar_prev
    coef_x0 = abar_prev.sqrt() * beta / (1 - abar)
    coef_xt = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar)
    return coef_x0 * x0 + coef_xt * xt
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_posterior_mean(posterior_mean)

# %% [markdown]
# ## 2. DDPM: a thousand steps from pure noise
#
# Here are the whole sampler's visible lines, with the shipped MNIST model from chapter 04 (cosine
# schedule, $T = 1000$; how it was trained is in `data/checkpoints/README.md`). Each pass of the loop is one network call and one step.
#
# One practical detail: the guess $\hat x_0$ is **clipped** to $[-1, 1]$, the range of the training
# images. At the first step, $t = 999$, the cosine schedule keeps only $\sqrt{\bar\alpha_{999}} \approx 5 \cdot 10^{-5}$
# of the image, so the formula for $\hat x_0$ divides by almost zero. A noise error of 0.05, small for
# a good model, becomes a guess off by about 1,000, and without the clip the samples blow up. The
# original DDPM code and diffusers' schedulers clip too (`clip_sample=True`).

# %%
shipped = load_pretrained("mnist", device=device)
model, schedule = shipped.model, shipped.schedule
print(f"{shipped.name}: {shipped.info['kind']}, schedule {schedule.name}, T = {schedule.T}")


@torch.no_grad()
def ddpm_sample(model, schedule, shape, gen: torch.Generator) -> torch.Tensor:
    xt = torch.randn(shape, generator=gen).to(device)  # x_T ~ N(0, I), drawn on the CPU: same on every device
    for t in reversed(range(schedule.T)):  # t = T-1, ..., 0
        eps_pred = model(xt, torch.full((shape[0],), t, device=device))
        x0_hat = predict_x0(schedule, xt, eps_pred, t).clamp(-1, 1)  # clipped guess of x_0
        mean, var = posterior_mean_variance(schedule, x0_hat, xt, t)
        z = torch.randn(shape, generator=gen).to(device) if t > 0 else 0
        xt = mean + var.sqrt() * z
    return xt


n_show = pick(16, 4)
start = time.perf_counter()
mine = ddpm_sample(model, schedule, (n_show, 1, 28, 28), torch.Generator().manual_seed(0))
print(f"{n_show} digits in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# The package's `sample` runs the same loop with a `DDPMScheduler` (shaped like the one in 🤗 diffusers,
# so code written for either reads the other). Given the same random generator it draws the same
# numbers in the same order, so it must produce the same digits:

# %%
ddpm = DDPMScheduler(schedule)
ddpm.set_timesteps()  # all T steps
trajectory = record_trajectory(every=25)  # keeps x_t and the guess of x_0 every 25 steps
start = time.perf_counter()
digits = sample(model, ddpm, (n_show, 1, 28, 28), generator=torch.Generator().manual_seed(0), device=device,
                callback=trajectory)
ddpm_seconds = time.perf_counter() - start
print(f"same digits as the loop above: {torch.allclose(mine, digits, atol=1e-4)}")
fig = show_images(digits, nrow=8, suptitle=f"DDPM, {ddpm.num_inference_steps} steps")
plt.show()

# %% [markdown]
# To see *how* a digit appears, play the recorded trajectory. Top row: the sample $x_t$ as the loop goes;
# bottom row: the model's guess $\hat x_0$ at the same step. In a running notebook this plays as an
# animation; a saved copy shows six frames.

# %%
xts, x0_hats = trajectory.stacked()  # (frames, B, 1, 28, 28) each
n_anim = min(6, n_show)


def draw_frame(ax, i: int) -> None:
    both = torch.cat([xts[i, :n_anim].clamp(-1, 1), x0_hats[i, :n_anim].clamp(-1, 1)])
    ax.imshow(to_display(make_grid(both, nrow=n_anim)), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"t = {trajectory.timesteps[i]}:  $x_t$ (top), guess of $x_0$ (bottom)", fontsize=9)
    ax.axis("off")


animate(draw_frame, len(trajectory.timesteps), figsize=(5, 2.1), fps=6)

# %% [markdown]
# The same trajectory as a still, for four digits at eight steps:

# %%
picks = [0, 8, 16, 22, 26, 30, 34, len(trajectory.timesteps) - 1]
fig, axes = plt.subplots(2, len(picks), figsize=(1.2 * len(picks), 2.9))
for col, k in enumerate(picks):
    for row, (images, name) in enumerate([(xts, "$x_t$"), (x0_hats, r"$\hat x_0$")]):
        ax = axes[row, col]
        ax.imshow(to_display(make_grid(images[k, :4].clamp(-1, 1), nrow=2)), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
        if row == 0:
            ax.set_title(f"t = {trajectory.timesteps[k]}", fontsize=8)
    axes[0, 0].text(-8, 30, "$x_t$", ha="right", va="center", fontsize=10)
    axes[1, 0].text(-8, 30, r"$\hat x_0$", ha="right", va="center", fontsize=10)
plt.show()

# %% [markdown]
# Three things to notice:
#
# - For much of the run, $x_t$ looks like noise. At $t = 799$ the sample is still mostly static, yet the
#   guess $\hat x_0$ already shows blurry digits. The network guesses early what the image will roughly
#   be, long before you can see it in $x_t$.
# - Early guesses are not final. The blurry 6 at the bottom right at $t = 799$ has become a curl like a 2
#   by $t = 599$: the noise added at each step leaves room to change course. By about
#   $t = 450$ the digits are settled, and the rest of the run sharpens strokes. Coarse structure is
#   decided at high noise and fine detail at low noise, which is why the schedule (chapter 02) matters.
# - The last few hundred steps change $x_t$ the most visibly, but they only clean up an image that was
#   decided much earlier.
#
# So many of the thousand steps spend a full network call on a change we can hardly see. Can we take bigger
# steps?
#
# ## 3. DDIM: the same model in far fewer steps
#
# DDPM's step can skip: from $t$ to $t - 10$ through the same posterior formula, which `DDPMScheduler`
# does when asked for fewer steps (we measure it below). Song, Meng & Ermon (2021) found a step designed
# for large jumps. The training loss only ever uses the marginals $q(x_t \mid x_0)$, never the step-by-step chain. So any other process with the same
# marginals is served by the same trained network. Among those processes is a **deterministic** one. Its step
# from $t$ to any earlier $t' < t$ keeps the predicted noise and moves the predicted image to the new noise
# level:
#
# $$x_{t'} = \sqrt{\bar\alpha_{t'}}\;\hat x_0 + \sqrt{1 - \bar\alpha_{t'}}\;\epsilon_\theta(x_t, t).$$
#
# This is DDIM with $\eta = 0$: the closed form of chapter 01, with the model's guesses in place of the true
# $x_0$ and $\epsilon$. Because nothing random is added, $x_T$ alone decides the image, and the path from noise
# to image is smooth enough to follow in big steps. (A parameter $\eta$ adds noise back: $\eta = 1$ is
# DDPM's amount.)
#
# ### Exercise 5.2: a DDIM step
#
# Write `ddim_step(xt, eps_pred, abar_t, abar_prev)` for $\eta = 0$. `abar_t` and `abar_prev` are floats,
# $\bar\alpha_t$ and $\bar\alpha_{t'}$.

# %%
def ddim_step(xt: torch.Tensor, eps_pred: torch.Tensor, abar_t: float, abar_prev: float) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) from x_t to x_{t'}; xt, eps_pred shaped (B, ...)."""
    ### BEGIN SOLUTION
    x0_hat = (xt - (1 - abar_t) ** 0.5 * eps_pred) / abar_t**0.5
    return abar_prev**0.5 * x0_hat + (1 - abar_prev) ** 0.5 * eps_pred
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_ddim_step(ddim_step)

# %% [markdown]
# Which steps should a $K$-step sampler visit? The simplest choice, and diffusers' default ("leading"
# spacing), takes every $r$-th step with $r = T \,//\, K$: $(K-1)r, \dots, 2r, r, 0$.
#
# ### Exercise 5.3: the timesteps of a short sampler
#
# Write `ddim_timesteps(T, K)` returning those $K$ steps as a list, noisiest first.

# %%
def ddim_timesteps(T: int, K: int) -> list[int]:
    """The K timesteps a K-step sampler visits, from (K-1) * (T // K) down to 0."""
    ### BEGIN SOLUTION
    r = T // K
    return [k * r for k in reversed(range(K))]
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_ddim_timesteps(ddim_timesteps)
print(ddim_timesteps(1000, 10))

# %% [markdown]
# Notice that the 10-step sampler starts at $t = 900$, not $999$. It treats pure noise as if it were
# $x_{900}$, where the cosine schedule leaves $\sqrt{\bar\alpha_{900}} \approx 0.15$ of the image (chapter 02's
# strip shows $\bar\alpha_{900} = 0.024$). The
# mismatch is small here. Lin et al. (2024) show it matters for large models and propose "trailing" spacing,
# which starts at $T - 1$.
#
# The same eight starting noises, sampled with DDIM in 10, 25, 50 and 100 steps:

# %%
x_T = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
rows, labels = [], []
for K in [10, 25, 50, 100]:
    ddim = DDIMScheduler(schedule)  # eta = 0
    ddim.set_timesteps(K)
    rows.append(sample(model, ddim, x_T.shape, x_T=x_T, device=device))
    labels.append(f"{K} steps")
fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.2 * len(rows)))
for ax, row, label in zip(axes, rows, labels):
    ax.imshow(to_display(make_grid(row, nrow=8)), cmap="gray", vmin=0, vmax=1)
    ax.set_ylabel(label, rotation=0, ha="right", va="center")
    ax.set(xticks=[], yticks=[])
fig.suptitle("DDIM: same $x_T$ in each column, different numbers of steps")
plt.show()

# %% [markdown]
# ### The same sampler in 🤗 diffusers
#
# The package's schedulers are shaped like those of 🤗 diffusers, the library most diffusion code uses:
# `set_timesteps(K)`, `timesteps`, and `step(eps_pred, t, x_t)` returning the next sample and the guess of
# $x_0$. So diffusers' own `DDIMScheduler` drops into our loop unchanged. Built with the same settings,
# and given our $\bar\alpha_t$ (ours come from a float64 product, diffusers' from a float32 one, which
# differs in the last digits), it turns the same $x_T$ into the same digits. One setting differs by
# default: diffusers reuses the model's $\epsilon$ after clipping the guess of $x_0$, while the package
# re-derives it from the clipped guess (chapter 07 shows why guidance needs that), so we ask ours for
# diffusers' behaviour here:

# %%
# NBVAL_CHECK_OUTPUT
from diffusers import DDIMScheduler as DiffusersDDIMScheduler

theirs = DiffusersDDIMScheduler(num_train_timesteps=schedule.T, clip_sample=True, set_alpha_to_one=True,
                                steps_offset=0, prediction_type="epsilon", timestep_spacing="leading")
theirs.alphas_cumprod = schedule.alpha_bars.cpu().clone()  # our alpha_bars
theirs.set_timesteps(50)
ours = DDIMScheduler(schedule, use_clipped_model_output=False)  # diffusers' default
ours.set_timesteps(50)
print("same timesteps:", theirs.timesteps.tolist() == ours.timesteps.tolist())
with_theirs = sample(model, theirs, x_T.shape, x_T=x_T, device=device)
with_ours = sample(model, ours, x_T.shape, x_T=x_T, device=device)
print(f"same digits: {torch.allclose(with_theirs, with_ours, atol=1e-4)}")

# %% [markdown]
# Most columns keep their digit from 10 steps to 100: with DDIM, $x_T$ largely decides the image, and
# more steps mostly refine the strokes. Not always: the second column is a 0 at 10 steps and something
# between a 2 and a 7 after, and the fifth goes from 8 to 3 to 1. A few large steps make large jumps,
# and no fresh noise corrects a wrong one. Even so, DDIM's $x_T$ is a useful handle, one that later
# chapters use to edit and interpolate images.
#
# ## 4. Measuring: steps, time and quality
#
# "Looks fine" is not a measurement. We judge samples with the course's MNIST classifier (99.3 % test
# accuracy, shipped in `data/checkpoints/`), in two ways:
#
# - **recognised**: the share of samples it labels with confidence of at least 0.9. A blob or a digit
#   halfway between a 4 and a 9 scores low.
# - **FID** (Fréchet distance, Heusel et al. 2017): fit a Gaussian to the classifier's 128-number
#   features of the samples and another to those of real test digits, and measure how far apart they are.
#   It is low only if the samples are both good and as varied as real digits. A model that draws perfect
#   1s and nothing else is recognised 100 % of the time but has a poor FID. FID computed from few samples
#   is biased upwards, so compare FIDs only at the same sample count.
#
# Each sampler draws the same number of digits, timed:

# %%
classifier = load_pretrained("mnist_classifier", device=device).model
test_images, _ = mnist_tensors("test")
n_eval = pick(200, 24)


def evaluate(name: str, scheduler, K: int, seed: int = 2) -> dict:
    scheduler.set_timesteps(K)
    start = time.perf_counter()
    images = sample(model, scheduler, (n_eval, 1, 28, 28), generator=torch.Generator().manual_seed(seed),
                    device=device)
    seconds = time.perf_counter() - start
    probs = class_probabilities(classifier, images)
    return {"sampler": name, "steps": K, "ms per image": 1000 * seconds / n_eval,
            "recognised": recognised_fraction(probs), "FID": fid(classifier, images, test_images[:1000]),
            "classes present": int((class_counts(probs) > 0).sum())}


results = [evaluate("DDIM", DDIMScheduler(schedule), K) for K in [10, 25, 50, 100]]
results.append(evaluate("DDPM", DDPMScheduler(schedule), 100))  # DDPM forced to skip steps
print(f"{n_eval} samples each; FID against 1000 test digits\n")
print(f"{'sampler':8s} {'steps':>5s} {'ms/image':>9s} {'recognised':>11s} {'FID':>7s} {'classes':>8s}")
for r in results:
    print(f"{r['sampler']:8s} {r['steps']:5d} {r['ms per image']:9.1f} {r['recognised']:11.1%} {r['FID']:7.2f} "
          f"{r['classes present']:8d}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
ddim_rows = [r for r in results if r["sampler"] == "DDIM"]
for ax, key, unit in zip(axes, ["recognised", "FID"], [100, 1]):  # recognised in %, as in the table
    ax.plot([r["ms per image"] for r in ddim_rows], [unit * r[key] for r in ddim_rows], marker="o", label="DDIM")
    for r in ddim_rows:
        ax.annotate(f"{r['steps']} steps", (r["ms per image"], unit * r[key]), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=7)
    ddpm_row = results[-1]
    ax.plot([ddpm_row["ms per image"]], [unit * ddpm_row[key]], marker="s", ls="", color="C3",
            label="DDPM, 100 steps")
    ax.set(xlabel="milliseconds per image (log scale)", ylabel=key + (" (%)" if unit == 100 else ""), xscale="log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 10, 100 rather than 10^1, 10^2
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels between them
    ax.margins(x=0.15, y=0.2)
    ax.legend(fontsize=8)
axes[0].set_title("recognised (higher is better)", fontsize=10)
axes[1].set_title("FID (lower is better)", fontsize=10)
plt.show()

# %% [markdown]
# What the table says, on this model and this CPU:
#
# - Time grows in proportion to the number of steps: every step is one call of the same network.
# - DDIM's recognised share hardly moves with the number of steps: 10, 25, 50 and 100 steps all score
#   within a few points of each other, about the sampling noise of 200 samples. FID is what tells them
#   apart: it falls steeply from 10 to 25 to 50 steps, then levels off. Ten steps draw recognisable
#   digits that are less varied or less real than the others; deterministic steps beyond 50 buy little.
# - **DDPM with 100 steps is no better than DDIM with 50** here: its recognised share is within the
#   sampling noise of DDIM's, and its FID is worse. `bench/sample_quality.py` finds much the same on more
#   samples: DDPM with all 1,000 steps, twenty times slower, ties DDIM-50 in recognised share and is a
#   little better in FID. That matches the DDIM paper, where 50 deterministic steps came close to
#   1,000 stochastic ones. It was not so for an earlier version of our
#   model, trained for half as long: there DDPM-1000 was recognised 3 points more often than DDIM-50.
#   A weaker model's noise predictions are less accurate; DDIM follows them deterministically and carries
#   every error to the end, while DDPM's fresh noise at each step lets later steps correct earlier
#   mistakes (as the trajectory above showed). Karras et al. (2022) measured the same trade-off: some
#   stochasticity helps imperfect models, and the better the model, the less it helps.
#
# So the best sampler depends on the model. For a strong model, a deterministic sampler in 20 to 50 steps
# is enough, which is why Stable Diffusion defaults to that range. For a weak one, stochastic steps are
# worth their cost. `bench/sample_quality.py` repeats these measurements with more samples
# (`bench/results/sample_quality.md`).
#
# ## Summary
#
# - The reverse step: plug the model's guess $\hat x_0$ into the posterior $q(x_{t-1} \mid x_t, x_0)$, a
#   Gaussian with mean $\tilde\mu_t$ (a mix of $x_t$ and $\hat x_0$) and variance $\tilde\beta_t$. DDPM
#   samples from it at each of the $T$ steps.
# - The trajectory shows that coarse structure is decided at high noise and detail at low noise, well
#   before $x_t$ looks like anything.
# - DDIM reuses the same trained model with a deterministic step,
#   $x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}}\,\epsilon_\theta$, which tolerates
#   large jumps: its quality stops improving after 25 to 50 steps. DDPM's stochastic steps correct a
#   model's errors as they go, which matters more the weaker the model; on ours, DDIM-50 already
#   matches DDPM-1000 at a twentieth of the time.
# - Measure samples with a classifier (recognised share) and a distribution distance (FID), at equal sample
#   counts; time grows linearly with steps.
#
# ## What's next
#
# Our model draws *a* digit, but which one is up to chance. Chapter 06 lets us ask for one: first with a
# class label, then with words, fed into the U-Net through cross-attention, the mechanism behind every
# text-to-image system.
