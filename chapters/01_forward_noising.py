# %% [markdown]
# # 01 · Forward noising: how to destroy an image, slowly
#
# A diffusion model learns to *undo* noise. Before it can learn that, we need a precise recipe for
# *adding* noise: a little at a time, over many steps, until nothing of the picture is left. This
# recipe, the **forward process**, has no learned parameters at all, and it has a beautiful
# property: we can jump straight to any step without walking there. That shortcut is what makes
# training fast, and it is the main result of this chapter.
#
# **Learning goals**
#
# - Write one noising step, $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$, and run it as a chain.
# - Explain why the chain ends in pure noise $\mathcal N(0, I)$: the data's share $\sqrt{\bar\alpha_t}$ falls to almost
#   zero, while the $\sqrt{1-\beta_t}$ factor keeps the variance at one along the way.
# - Derive the closed form $q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big)$ and check it numerically against the step-by-step chain.
# - Explore a noised image at every step with a slider.
#
# *Runs in under ten seconds on a 2-core laptop CPU (6.3 s in `bench/results/chapter_times.md`).*

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
import math

import matplotlib.pyplot as plt
import torch

from diffusion_lab.config import mode_name, pick
from diffusion_lab.data import load_photo, make_toy
from diffusion_lab.exercises import (
    check_alpha_bars,
    check_noising_step,
    check_q_sample,
    check_variance_after_step,
)
from diffusion_lab.notebook.animation import animate
from diffusion_lab.notebook.figures import plot_points, show_images, to_display, use_course_style
from diffusion_lab.notebook.widgets import timestep_explorer
from diffusion_lab.schedules import NoiseSchedule, linear_betas
from diffusion_lab.tensors import append_dims

use_course_style()
print(f"mode: {mode_name()}")

# %% [markdown]
# ## 1. The idea: destroy slowly, then learn to undo
#
# Take a photo. Add a tiny amount of Gaussian noise: you can hardly see it. Do it again, and again,
# a thousand times. Somewhere along the way the photo becomes grainy, then a ghost, then static.
# Every single step was small, so *undoing one step* is a small, learnable problem: "here is a
# slightly noisy picture, guess what it looked like a moment ago". A diffusion model is a network
# trained to make that guess. Chain a thousand guesses together, starting from pure static, and you
# get a brand-new picture. That is the whole plan of this course; this chapter builds the first half.
#
# **Notation.** $x_0$ is a clean data point (an image, or a 2-D point). $\beta_t$ is the variance of
# the noise added at step $t$, $x_t$ is the data just after step $t$, and $\epsilon \sim \mathcal N(0, I)$
# is fresh standard Gaussian noise. In code these are `x0`, `betas`, `xt` and `eps`.
#
# **Counting steps.** Our code counts the $T$ steps from 0 to $T-1$, like every Python array, and so
# does every formula in this course: `betas[0]` is the first step, and $x_t$ is the data after steps
# $0, 1, \dots, t$, that is after $t + 1$ noising steps. The DDPM paper (Ho et al. 2020) counts from 1 to
# $T$, so our step $t$ is the paper's step $t + 1$: our $\beta_t$, $\bar\alpha_t$ and $x_t$ are its
# $\beta_{t+1}$, $\bar\alpha_{t+1}$ and $x_{t+1}$. Only the clean data keeps its paper name, $x_0$
# (`x0`), although in our numbering it comes *before* step 0: where a formula goes from $x_{t-1}$ to
# $x_t$, read $x_{t-1}$ at $t = 0$ as the clean $x_0$ (chapter 05 meets the same edge as $\bar\alpha_{-1} = 1$).
#
# We will work with two kinds of data: a photo (Rear Admiral Grace Hopper, a public-domain image
# that ships with matplotlib) and a 2-D "swiss roll" of points, where we can *see* the whole
# distribution at once.

# %%
x0_photo = load_photo(96)                       # (3, 96, 96), pixel values in [-1, 1]
x0_points = make_toy("swiss_roll", pick(full=20_000, quick=5_000), seed=0)  # (N, 2)

fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(to_display(x0_photo))
axes[0].set_title("x_0: a photo, 3×96×96")
axes[0].axis("off")
plot_points(x0_points, ax=axes[1], title=f"x_0: {len(x0_points):,} points of a swiss roll")
plt.show()

# %% [markdown]
# ## 2. One noising step
#
# One step of the forward process shrinks the current sample a little and adds a little noise:
#
# $$x_t = \sqrt{1-\beta_t}\; x_{t-1} + \sqrt{\beta_t}\; \epsilon, \qquad \epsilon \sim \mathcal N(0, I).$$
#
# In probability language, $q(x_t \mid x_{t-1}) = \mathcal N\big(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\big)$
# (DDPM eq. 2). $\beta_t$ is small, between $10^{-4}$ and $0.02$ in the original DDPM, so each step
# changes the picture only slightly. Why shrink by $\sqrt{1-\beta_t}$ instead of simply adding noise?
# Hold that thought until section 4.
#
# ### Exercise 1.1: one noising step
#
# Write `noising_step(x_prev, beta, eps)` returning $x_t$. `x_prev` and `eps` are tensors of the
# same shape; `beta` is a Python float. *Hint:* `math.sqrt` works on floats.

# %%
def noising_step(x_prev: torch.Tensor, beta: float, eps: torch.Tensor) -> torch.Tensor:
    """One step of the forward process: x_t from x_{t-1}, a noise variance beta and noise eps."""
    ### BEGIN SOLUTION
    return math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * eps
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_noising_step(noising_step)

# %% [markdown]
# ## 3. The Markov chain
#
# Repeat the step $T = 1000$ times with DDPM's **linear schedule**, $\beta_t$ rising evenly from
# $10^{-4}$ to $0.02$. Each step only looks at the previous one (a *Markov chain*). We keep a few
# snapshots of the photo along the way, using the function you just wrote.

# %%
T = 1000
betas = linear_betas(T)                          # float64, (T,)
snapshots_at = [0, 25, 50, 100, 200, 350, 500, 999]
gen = torch.Generator().manual_seed(0)

x = x0_photo.clone()
snapshots = []
for t in range(T):
    x = noising_step(x, float(betas[t]), torch.randn(x.shape, generator=gen))
    if t in snapshots_at:
        snapshots.append(x)

show_images(torch.stack(snapshots), nrow=8, titles=[f"t = {t}" for t in snapshots_at],
            suptitle="the photo after t + 1 noising steps (linear schedule)")
plt.show()

# %% [markdown]
# At $t = 50$ the photo is grainy but clear, and at $t = 200$ the face is still plain to see through
# heavy noise; by $t = 350$ it is a ghost, and by $t = 500$ there is nothing a human would recognise:
# the rest of the way it is static turning into other static. (Chapter 02 asks whether spending half
# the steps on near-static is wise.)
#
# The same chain on the swiss roll shows what happens to a whole *distribution*: every point takes
# its own random walk, the spiral blurs, and the cloud settles into a round Gaussian blob centred on
# zero. Run the notebook to see it as an animation; elsewhere you see a filmstrip.

# %%
chain_at = [0, 10, 25, 50, 100, 150, 200, 300, 400, 600, 800, 999]
x = x0_points.clone()
cloud = {}
for t in range(T):
    x = noising_step(x, float(betas[t]), torch.randn(x.shape, generator=gen))
    if t in chain_at:
        cloud[t] = x[:3000]


def draw(ax, i):
    t = chain_at[i]
    plot_points(cloud[t], ax=ax, title=f"t = {t}", color="tab:blue")


animate(draw, len(chain_at), figsize=(2.6, 2.6), fps=3)

# %% [markdown]
# ## 4. Why the $\sqrt{1-\beta_t}$? Keeping the variance at one
#
# Suppose $x_{t-1}$ has variance $v$ and the fresh noise $\epsilon$ is independent of it. Scaling a
# random variable by $a$ scales its variance by $a^2$, and variances of independent variables add:
#
# $$\operatorname{Var}[x_t] = (1-\beta_t)\, v + \beta_t .$$
#
# If $v = 1$ the result is $1$ again: a variance of one is a *fixed point*. And if $v \neq 1$, the gap
# to one shrinks by a factor $(1-\beta_t)$ at every step, so whatever the data's scale, the chain is
# pulled towards variance one.
#
# That fixes the *scale* of the end point, not what it contains: a variance of one could still be a
# noisy photo. The end is pure noise $\mathcal N(0, I)$, a distribution we know how to sample from,
# because the data itself fades out: section 5 shows that $x_t$ keeps only a factor $\sqrt{\bar\alpha_t}$
# of $x_0$, and that factor falls to almost zero by the last step. The two work together: the signal
# fades, and the shrink lets noise take its place without the total growing. That end is exactly what
# generation will start from.
#
# Without the shrink factor, $x_t = x_{t-1} + \sqrt{\beta_t}\,\epsilon$, the variance would only
# grow, $v + \sum_t \beta_t$, and the end point would depend on the data.
#
# ### Exercise 1.2: the variance after one step
#
# Write `variance_after_step(v, beta)`: the variance of $x_t$ when $x_{t-1}$ has variance `v`.

# %%
def variance_after_step(v: float, beta: float) -> float:
    """Var[x_t] when Var[x_{t-1}] = v and the step adds noise of variance beta."""
    ### BEGIN SOLUTION
    return (1 - beta) * v + beta
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_variance_after_step(variance_after_step)

# %% [markdown]
# Now compare the formula with the real chain. We start from data with three different variances
# (the photo's pixels, and the swiss roll scaled up and down), run both recipes, and track the
# measured variance at every step.

# %%
def variance_path(x0: torch.Tensor, shrink: bool, seed: int = 1) -> list[float]:
    """Measured variance of x_t at every step, with or without the sqrt(1 - beta) shrink."""
    g = torch.Generator().manual_seed(seed)
    x, path = x0.clone(), [x0.var().item()]
    for t in range(T):
        a = math.sqrt(1 - betas[t]) if shrink else 1.0
        x = a * x + math.sqrt(betas[t]) * torch.randn(x.shape, generator=g)
        path.append(x.var().item())
    return path


def predicted_path(v0: float) -> list[float]:
    path = [v0]
    for t in range(T):
        path.append(variance_after_step(path[-1], float(betas[t])))
    return path


starts = {"photo pixels": x0_photo.flatten(), "swiss roll × 2": 2 * x0_points.flatten(),
          "swiss roll × 0.3": 0.3 * x0_points.flatten()}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
for (label, data), colour in zip(starts.items(), ["tab:blue", "tab:orange", "tab:green"]):
    ax1.plot(variance_path(data, shrink=True), color=colour, label=f"{label}, measured")
    ax1.plot(predicted_path(data.var().item()), color="black", lw=0.8, ls="--")
    ax2.plot(variance_path(data, shrink=False), color=colour, label=label)
ax1.set(title="with √(1−β): pulled to variance 1", xlabel="step t", ylabel="Var[x_t]")
ax2.set(title="without it: variance only grows", xlabel="step t")
ax1.plot([], [], color="black", lw=0.8, ls="--", label="your formula")
ax1.legend(fontsize=8)
ax2.axhline(1, color="grey", lw=0.8)
plt.show()

# %% [markdown]
# The measured variance (solid) follows your formula (dashed) and every start ends at one; without
# the shrink, each run ends somewhere different, above one.
#
# ## 5. The shortcut: jumping straight to step $t$
#
# To train a model we will need noisy examples $x_t$ at *random* steps $t$, millions of them.
# Walking the chain $t$ steps for each would be painfully slow. Fortunately, we don't have to.
#
# Write $\alpha_t = 1 - \beta_t$. Two steps in a row give
#
# $$x_t = \sqrt{\alpha_t}\big(\sqrt{\alpha_{t-1}}\,x_{t-2} + \sqrt{1-\alpha_{t-1}}\,\epsilon_1\big) + \sqrt{1-\alpha_t}\,\epsilon_2
#      = \sqrt{\alpha_t\alpha_{t-1}}\,x_{t-2} + \underbrace{\sqrt{\alpha_t(1-\alpha_{t-1})}\,\epsilon_1 + \sqrt{1-\alpha_t}\,\epsilon_2}_{\text{two independent Gaussians}} .$$
#
# The sum of two independent zero-mean Gaussians is one Gaussian whose variance is the sum:
# $\alpha_t(1-\alpha_{t-1}) + (1-\alpha_t) = 1 - \alpha_t\alpha_{t-1}$. So two steps are *one* step
# with signal factor $\sqrt{\alpha_t\alpha_{t-1}}$. Repeating the argument all the way down to $x_0$:
#
# $$x_t = \sqrt{\bar\alpha_t}\; x_0 + \sqrt{1-\bar\alpha_t}\; \epsilon, \qquad \bar\alpha_t = \prod_{s=0}^{t} \alpha_s,
#   \qquad\text{i.e.}\qquad q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t)\, I\big).$$
#
# $\bar\alpha_t$ ("alpha-bar", `alpha_bars` in code) is the fraction of the original signal's
# variance that survives steps $0$ to $t$: a product of $t + 1$ factors, one per step taken (in the
# paper's numbering, $\bar\alpha_{t+1} = \prod_{s=1}^{t+1} \alpha_s$). It starts near 1 and falls towards 0:
# the linear schedule ends at $\bar\alpha_{T-1} = 4.04 \times 10^{-5}$ (printed below), so the last $x_t$ keeps
# less than 1 % of the image's amplitude: the "almost zero" of section 4.
#
# ### Exercise 1.3: alpha-bar
#
# Write `alpha_bars_from_betas(betas)` returning $\bar\alpha_t$ for every $t$ (a tensor of shape
# `(T,)`). *Hint:* `torch.cumprod`.

# %%
def alpha_bars_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), for every t; shape (T,)."""
    ### BEGIN SOLUTION
    return torch.cumprod(1 - betas, dim=0)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_alpha_bars(alpha_bars_from_betas)

# %% [markdown]
# ### Exercise 1.4: sampling $x_t$ in one go
#
# Write `q_sample(x0, alpha_bar, eps)` returning $x_t$ for a *batch*: `x0` and `eps` have shape
# `(B, ...)` and `alpha_bar` has shape `(B,)`, one value per sample. *Hint:* to multiply each sample
# by its own number, give `alpha_bar` trailing dimensions so it broadcasts, as in exercise 0.2: the
# package's helper `append_dims(alpha_bar, x0.ndim)` (imported above) turns $(B,)$ into $(B, 1, \dots)$.

# %%
def q_sample(x0: torch.Tensor, alpha_bar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps, with one alpha_bar per sample (B,)."""
    ### BEGIN SOLUTION
    a = append_dims(alpha_bar, x0.ndim)  # (B, 1, ...)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_q_sample(q_sample)

# %% [markdown]
# From now on the course uses the package's version of these ideas: a frozen `NoiseSchedule` holds
# `betas`, `alphas` and `alpha_bars` (computed in float64, stored in float32), and
# `schedule.add_noise(x0, eps, t)` is the closed form. Your functions agree with it:

# %%
# NBVAL_CHECK_OUTPUT
schedule = NoiseSchedule.from_name("linear", T=T)
print(schedule)

t = torch.tensor([0, 10, 500, 999])
x0_batch = x0_photo.expand(4, -1, -1, -1)
eps = torch.randn(x0_batch.shape, generator=torch.Generator().manual_seed(2))
print("alpha_bars agree:", torch.allclose(alpha_bars_from_betas(betas).float(), schedule.alpha_bars))
print("x_t agrees:      ", torch.allclose(q_sample(x0_batch, schedule.alpha_bars[t], eps),
                                          schedule.add_noise(x0_batch, eps, t), atol=1e-6))

# %% [markdown]
# ## 6. Does the shortcut really match the chain?
#
# The derivation says that walking $t$ steps and jumping with the closed form give the *same
# distribution* of $x_t$, not the same sample: the random numbers differ. So we compare
# distributions. Take every point of the swiss roll, noise it both ways, and compare histograms of
# the first coordinate, together with the means and standard deviations. We also follow one single
# pixel of the photo through thousands of independent chains and compare with the Gaussian density
# the formula predicts.

# %%
check_at = [20, 100, 300, 999]
gen = torch.Generator().manual_seed(3)

chain = {}
x = x0_points.clone()
for t in range(T):
    x = noising_step(x, float(betas[t]), torch.randn(x.shape, generator=gen))
    if t in check_at:
        chain[t] = x
jump = {t: schedule.add_noise(x0_points, torch.randn(x0_points.shape, generator=gen), t) for t in check_at}

fig, axes = plt.subplots(1, len(check_at), figsize=(12, 2.8))
print(f"{'t':>4}  {'chain mean':>10} {'jump mean':>10}  {'chain std':>9} {'jump std':>9}")
for ax, t in zip(axes, check_at):
    bins = torch.linspace(-3.5, 3.5, 60)
    ax.hist(chain[t][:, 0], bins=bins, density=True, alpha=0.5, label="chain: t steps")
    ax.hist(jump[t][:, 0], bins=bins, density=True, histtype="step", lw=1.5, color="black",
            label="closed form")
    ax.set_title(f"t = {t}, ᾱ = {float(schedule.alpha_bars[t]):.3f}")
    ax.set_yticks([])
    print(f"{t:>4}  {chain[t][:, 0].mean():>10.3f} {jump[t][:, 0].mean():>10.3f}  "
          f"{chain[t][:, 0].std():>9.3f} {jump[t][:, 0].std():>9.3f}")
axes[0].legend(fontsize=7, loc="upper left")
fig.suptitle("first coordinate of the noised swiss roll: walking the chain vs jumping", y=1.02)
plt.show()

# %%
n_chains = pick(full=20_000, quick=4_000)
pixel = x0_photo[0, 40, 48]                       # one red-channel pixel of the photo
gen = torch.Generator().manual_seed(4)
x = pixel.repeat(n_chains)                         # n independent chains, all from the same x_0
hist_at = [50, 200, 600]
samples = {}
for t in range(max(hist_at) + 1):
    x = noising_step(x, float(betas[t]), torch.randn(x.shape, generator=gen))
    if t in hist_at:
        samples[t] = x

fig, axes = plt.subplots(1, len(hist_at), figsize=(10, 2.8))
for ax, t in zip(axes, hist_at):
    abar = float(schedule.alpha_bars[t])
    mean, std = math.sqrt(abar) * float(pixel), math.sqrt(1 - abar)
    grid = torch.linspace(-3.5, 3.5, 200)
    density = torch.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    ax.hist(samples[t], bins=60, range=(-3.5, 3.5), density=True, alpha=0.5, label=f"{n_chains:,} chains")
    ax.plot(grid, density, color="black", label="N(√ᾱ x₀, 1−ᾱ)")
    ax.axvline(float(pixel), color="tab:red", lw=1, ls=":", label="x₀")
    ax.set_title(f"t = {t}: mean {samples[t].mean():.3f} (predicted {mean:.3f})", fontsize=9)
    ax.set_yticks([])
axes[0].legend(fontsize=7)
plt.show()

# %% [markdown]
# The histograms lie on top of each other and the predicted density traces the chains' histogram:
# the closed form is the chain, without the walk. Notice, too, how the mean slides from the
# pixel's value towards zero as $\sqrt{\bar\alpha_t}$ shrinks, and the spread grows towards one.
#
# ## 7. Explore every step
#
# Drag the slider to noise the photo to any step $t$ (one fixed draw of $\epsilon$, so you see only
# the effect of $t$). Watch the caption: the signal weight $\sqrt{\bar\alpha_t}$ and the noise
# weight $\sqrt{1-\bar\alpha_t}$ trade places, and the signal-to-noise ratio
# $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ passes 1 where they are equal. Where does the
# face stop being recognisable for you? Keep that number in mind for chapter 02.

# %%
timestep_explorer(x0_photo, schedule)

# %% [markdown]
# ## Summary
#
# - One forward step shrinks and adds noise: $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$.
#   Chained $T$ times, it turns any data into (nearly) $\mathcal N(0, I)$.
# - The $\sqrt{1-\beta_t}$ factor makes variance one a fixed point that every start is pulled to, so the
#   noise can replace the signal without the scale growing.
# - Gaussian steps compose: $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)$ with
#   $\bar\alpha_t = \prod_{s \le t}(1-\beta_s)$. We checked it against the chain with histograms. Since
#   $\bar\alpha_{T-1}$ is almost 0, the end keeps almost nothing of $x_0$: that is why it is pure noise.
# - Steps are counted from 0 in code and in our formulas: step $t$ is the paper's step $t + 1$.
# - In the package: `NoiseSchedule.from_name(...)`, `schedule.alpha_bars`, `schedule.add_noise(x0, eps, t)`.
#
# ## What's next
#
# We used DDPM's linear schedule without asking whether it is a good one. The slider hints that the
# photo is unrecognisable long before $t = 999$. In **chapter 02** we compare schedules and *measure*
# how long each keeps an image recognisable.
