# %% [markdown]
# # 02 · Noise schedules
#
# In chapter 01 you destroyed an image one small step at a time, with the noise added at each step
# set by a list of numbers $\beta_0, \dots, \beta_{T-1}$. That list, the **noise schedule**, decides
# how fast the image's information is destroyed, and therefore which noise levels a model practises
# on when it learns to undo the damage. Choose badly and many of the $T$ steps are wasted: with the
# schedule of the original DDPM paper, a small image is already pure noise to the eye long before the
# last step, and every step after that teaches the network nothing more than turning noise into
# noise. Nichol & Dhariwal (2021) saw this: a model trained with that schedule hardly got worse when
# they skipped the first 20 % of its denoising steps, the noisiest ones, and they proposed the *cosine*
# schedule instead. In this chapter you put three schedules side by side, in formulas, in curves and in
# pictures, and then **measure** how much longer the cosine schedule keeps an image recognisable.
#
# **Learning goals**
#
# - Write down the linear, cosine and sigmoid schedules, and build the cosine $\bar\alpha_t$ yourself.
# - Read a schedule through two curves, $\bar\alpha_t$ and $\log \mathrm{SNR}(t)$, and find where
#   each schedule has as much noise as signal.
# - Measure, with a simple noise-aware classifier, at which step each schedule stops a digit from
#   being recognisable, and compare that with a pixel score (PSNR).
# - Explain why every schedule follows the same path through noise levels at a different speed,
#   and why the cosine schedule spends its steps better.
#
# **Run time:** about 10 seconds in full mode on a 2-core laptop CPU (a little less in quick mode).

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

from diffusion_lab.config import mode_name, pick, seed_everything
from diffusion_lab.data import load_photo, mnist_tensors
from diffusion_lab.exercises import check_cosine_alpha_bars, check_psnr, check_t_for_snr
from diffusion_lab.notebook.figures import noising_strip, plot_schedules, show_images, use_course_style
from diffusion_lab.notebook.widgets import schedule_explorer
from diffusion_lab.schedules import NoiseSchedule

use_course_style()
seed_everything(0)
print(f"mode: {mode_name()}")

# %% [markdown]
# ## 1. The same step, two schedules
#
# Recall the closed form from chapter 01: we can jump straight from a clean image $x_0$ to its noisy
# version at step $t$,
#
# $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon, \qquad \epsilon \sim \mathcal N(0, I),
# \qquad \bar\alpha_t = \prod_{s \le t} \alpha_s = \prod_{s \le t} (1 - \beta_s).$$
#
# So how noisy $x_t$ is depends on **one number**, $\bar\alpha_t$: the share of the image's variance
# that is still there. A noise schedule is a choice of $\beta_0, \dots, \beta_{T-1}$, or, which is the
# same thing, a choice of the curve $t \mapsto \bar\alpha_t$ from about 1 (clean) down to about 0
# (pure noise). As in chapter 01, code counts the steps $t = 0, \dots, T-1$, whereas the papers count
# them $1, \dots, T$.
#
# Before any formulas, here is what the choice does. Same photo, same noise $\epsilon$, same step
# $t = 500$ of $T = 1000$ (half-way), two schedules:

# %%
T = 1000
linear = NoiseSchedule.from_name("linear", T)
cosine = NoiseSchedule.from_name("cosine", T)

photo = load_photo(64)  # (3, 64, 64) in [-1, 1]
eps = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))  # one fixed noise image
t = 500
fig = show_images(
    [photo, linear.add_noise(photo, eps, t), cosine.add_noise(photo, eps, t)],
    titles=["clean x_0", f"linear schedule, t = {t}", f"cosine schedule, t = {t}"],
    scale=2.2,
)
plt.show()
plt.close(fig)
for s in (linear, cosine):
    abar = float(s.alpha_bars[t])
    print(f"{s.name:>6}: alpha_bar_{t} = {abar:.4f}, so x_t is {math.sqrt(abar):.2f} x_0 + "
          f"{math.sqrt(1 - abar):.2f} eps")

# %% [markdown]
# Half-way through, the linear schedule has kept 28 % of the photo's amplitude against 96 % for the
# noise, and the face has all but vanished. The cosine schedule has kept 70 %, and the face is plain
# to see. The rest of this chapter explains where that difference comes from, and measures it.

# %% [markdown]
# ## 2. Three schedules, three formulas
#
# ### Linear (Ho et al. 2020, DDPM)
#
# The first DDPM paper let the noise per step grow in a straight line:
#
# $$\beta_t = \beta_{\text{start}} + \frac{t}{T-1}\,(\beta_{\text{end}} - \beta_{\text{start}}),
# \qquad \beta_{\text{start}} = 10^{-4},\ \beta_{\text{end}} = 0.02.$$
#
# Because every $\beta_t$ is small, $\bar\alpha_t = \prod_{s \le t}(1-\beta_s) \approx
# \exp\!\big(-\sum_{s \le t}\beta_s\big)$, and the sum of a straight line grows like $t^2$. So
# $\bar\alpha_t$ falls like the right half of a bell curve: gently at first, then steeply. By
# $t = T/2$ only about 8 % of the image's variance is left, and the rest of the steps drag it
# from "hardly there" to "gone".
#
# ### Cosine (Nichol & Dhariwal 2021)
#
# Instead of choosing the $\beta$s and living with the $\bar\alpha_t$ they give, the cosine schedule
# chooses $\bar\alpha_t$ directly, as a curve that falls slowly at both ends and steadily in the middle.
# In the paper's numbering (steps $1, \dots, T$; the code's version follows below):
#
# $$\bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\!\left(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\right),
# \qquad s = 0.008,$$
#
# and then reads off the $\beta$s it implies, $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$, capped at
# 0.999. Two details:
#
# - The small offset $s$ stops $\beta_t$ from being vanishingly small near $t = 0$: the authors chose it
#   so that the noise of the first step, $\sqrt{\beta_0} \approx 0.0064$, is just under the gap between
#   two neighbouring pixel values (about $2/255 \approx 0.0078$ in our $[-1, 1]$ range).
# - At the last step $f$ reaches $\cos^2(\pi/2) = 0$, which would mean $\beta = 1$: one step that wipes
#   out everything, and a division by zero when sampling. The cap at 0.999 avoids both.
#
# In the paper $t$ runs from 1 to $T$, with $\bar\alpha_0 = 1$ standing for the clean image. In code, step
# `t` is the paper's step $t + 1$, so `alpha_bars[t]` $= f(t+1)/f(0)$. That off-by-one is the only trap
# in the exercise below.

# %% [markdown]
# ### Exercise 2.1: the cosine schedule in three lines
#
# Write `cosine_alpha_bars(T, s)` that returns the cosine schedule's $\bar\alpha_t$ for the code steps
# $t = 0, \dots, T-1$, as a tensor of shape `(T,)`: `alpha_bars[t]` $= f(t+1)/f(0)$ with $f$ as above.
#
# *Hint:* compute $f$ at all $T + 1$ points $u = t/T$ for $t = 0, \dots, T$ at once
# (`torch.arange(T + 1, dtype=torch.float64) / T`), then divide every value except the first by the
# first one. Work in float64, as the package does.

# %%
def cosine_alpha_bars(T: int, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule's alpha_bar_t for code steps t = 0..T-1: f(t+1) / f(0). Returns (T,)."""
    ### BEGIN SOLUTION
    u = torch.arange(T + 1, dtype=torch.float64) / T  # (T + 1,): the paper's t / T for t = 0..T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # Nichol & Dhariwal eq. 17
    return f[1:] / f[0]  # code step t is the paper's step t + 1
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_cosine_alpha_bars(cosine_alpha_bars)

# %% [markdown]
# Your three lines should give the package's cosine schedule, which went the other way round
# (your $\bar\alpha_t$ turned into capped $\beta$s, then multiplied back up with `cumprod`):

# %%
# NBVAL_CHECK_OUTPUT
mine = cosine_alpha_bars(T).float()  # (T,)
package = NoiseSchedule.from_name("cosine", T).alpha_bars  # (T,)
print("allclose:", torch.allclose(mine, package, atol=1e-6))
print(f"largest difference: {float((mine - package).abs().max()):.1e}")

# %% [markdown]
# They agree. The largest difference is at the last step, where the package caps $\beta$ at 0.999 and
# so keeps a tiny $\bar\alpha_{T-1} \approx 2 \times 10^{-9}$ where your formula gives (almost exactly)
# 0. From here on we use the package's `NoiseSchedule`.
#
# ### Sigmoid (GeoDiff, Xu et al. 2022)
#
# The third schedule starts from the linear schedule's $\beta_{\text{start}}$ and $\beta_{\text{end}}$ but lets
# $\beta_t$ follow an S-shaped curve between them:
#
# $$\beta_t = \beta_{\text{start}} + (\beta_{\text{end}} - \beta_{\text{start}})\,
# \sigma\!\left(-6 + 12\,\tfrac{t}{T-1}\right), \qquad \sigma(z) = \frac{1}{1 + e^{-z}}.$$
#
# The noise per step stays tiny for longer, rises quickly around the middle and levels off at the end.
# It keeps the linear end points only approximately: $\sigma(-6) \approx 0.0025$ is not quite 0, nor
# $\sigma(6)$ quite 1, so the table below prints $\beta_0 = 1.49 \times 10^{-4}$ rather than $10^{-4}$, and
# $\beta_{T-1} \approx 0.01995$ sits just under 0.02 (the table rounds it to 0.02).
#
# ### And the one in Stable Diffusion
#
# Stable Diffusion uses `scaled_linear`: $\sqrt{\beta_t}$ (not $\beta_t$) rises in a straight line, from
# $\sqrt{0.00085}$ to $\sqrt{0.012}$. It was tuned for the 64×64×4 *latents* of an autoencoder
# (chapter 08), not for pixels, and it stops early: its last step keeps $\bar\alpha_{T-1} \approx 0.005$,
# so a little of the image is never destroyed. Lin et al. (2024) showed that this "non-zero terminal SNR"
# is why such models struggle to generate very dark or very bright images. We list it in the table
# and curves below, but leave it out of the experiments, which are about pixels.

# %%
# NBVAL_CHECK_OUTPUT
schedules = {name: NoiseSchedule.from_name(name, T) for name in ("linear", "cosine", "sigmoid")}
scaled_linear = NoiseSchedule.from_name("scaled_linear", T)

print(f"{'schedule':<14}{'beta_0':>10}{'beta_T-1':>10}{'abar_T/2':>10}{'abar_3T/4':>11}{'abar_T-1':>10}")
for s in [*schedules.values(), scaled_linear]:
    b, ab = s.betas, s.alpha_bars
    print(f"{s.name:<14}{float(b[0]):>10.2e}{float(b[-1]):>10.3g}{float(ab[T // 2]):>10.3f}"
          f"{float(ab[3 * T // 4]):>11.4f}{float(ab[-1]):>10.1e}")

# %% [markdown]
# The $\beta$s themselves look very different: the cosine schedule takes the smallest steps at the
# start and the biggest at the very end (note the logarithmic axis).

# %%
fig, ax = plt.subplots(figsize=(5, 3))
for s in schedules.values():
    ax.plot(torch.arange(T) / T, s.betas, label=s.name)
ax.set(yscale="log", xlabel="t / T", ylabel=r"$\beta_t$ (log scale)", title=r"noise added per step, $\beta_t$")
ax.legend()
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# What matters for the image, though, is not the $\beta$s but what they add up to: $\bar\alpha_t$. The
# left panel below shows it, and the right panel shows the same information as a log signal-to-noise
# ratio, which section 4 explains.

# %%
fig = plot_schedules([*schedules.values(), scaled_linear])
plt.show()
plt.close(fig)

# %% [markdown]
# Read the left panel from left to right. The linear schedule (blue) has lost nearly all of the image by
# $t/T \approx 0.6$ and spends the remaining 40 % of its steps near zero. The cosine schedule (orange)
# goes down almost in a straight line and only reaches zero at the very end. The sigmoid schedule
# (green) keeps more signal than either until $t/T \approx 0.4$, then drops steeply. Stable Diffusion's
# (red) starts falling early, like linear, but more gently, and stops short of zero.

# %% [markdown]
# ## 3. Side by side: noising strips
#
# The same photo and the same noise $\epsilon$, one row per schedule, at the same steps $t$. Each panel
# shows $t$ and $\bar\alpha_t$.

# %%
ts = [0, 150, 300, 450, 600, 750, 900]
fig = noising_strip(photo, list(schedules.values()), ts, seed=0, scale=1.2)
plt.show()
plt.close(fig)

# %% [markdown]
# And a handwritten digit from MNIST, which is only 28×28 pixels and has less to lose:

# %%
digits, _ = mnist_tensors("test", n=20)  # (20, 1, 28, 28) in [-1, 1]
digit = digits[13]  # a 3
fig = noising_strip(digit, list(schedules.values()), ts, seed=0)
plt.show()
plt.close(fig)

# %% [markdown]
# In both strips the linear row is static from about $t = 600$ on, and so are the 400 steps after it
# (up to $t = 999$, not shown). The sigmoid row holds on to the picture longer at first (compare
# $t = 300$) but is static by $t = 600$ too. The cosine row keeps both pictures visibly longer: the 3 is
# still clear at $t = 450$, and the face can still be made out at $t = 600$. Your eyes are one judge,
# but a subjective one; section 5 replaces them with a measurement.

# %% [markdown]
# ## 4. Signal-to-noise ratio
#
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ is a sum of a signal part and a noise
# part. Their variances are in the ratio
#
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1 - \bar\alpha_t},$$
#
# the **signal-to-noise ratio**. It starts very large, falls through $\mathrm{SNR} = 1$ (as much noise as
# signal, $\bar\alpha_t = 0.5$) and ends near 0. Its logarithm is the natural scale for noise levels:
# going from SNR 100 to 10 is as big a change as going from 1 to 0.1, and the right panel above plots
# $\log \mathrm{SNR}(t)$. There the cosine schedule's curve is close to a straight line over most of
# its range, which means it spends about the same number of steps on each noise level. The linear
# schedule rushes through the middle noise levels and then crawls along below $\log\mathrm{SNR} = -5$
# for hundreds of steps. Kingma et al. (2021) made this view precise: what a schedule really chooses is
# how the steps, and so the training, are spread over noise levels.

# %% [markdown]
# ### Exercise 2.2: when does the noise win?
#
# Write `t_for_snr(schedule, threshold)` that returns the first step `t` (a Python `int`) at which
# $\mathrm{SNR}(t)$ falls below `threshold`. Raise a `ValueError` if it never does.
#
# *Hint:* `schedule.snr(torch.arange(schedule.T))` gives all $T$ values at once; `torch.nonzero` finds
# where a condition holds.

# %%
def t_for_snr(schedule: NoiseSchedule, threshold: float) -> int:
    """The first step t at which SNR(t) = alpha_bar_t / (1 - alpha_bar_t) drops below ``threshold``."""
    ### BEGIN SOLUTION
    snr = schedule.snr(torch.arange(schedule.T))  # (T,), falling as t grows
    below = torch.nonzero(snr < threshold)  # (n, 1): the steps where the noise has won
    if len(below) == 0:
        raise ValueError(f"SNR never drops below {threshold} in the {schedule.name} schedule")
    return int(below[0])
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_t_for_snr(t_for_snr)

# %% [markdown]
# Now use your function to see where each schedule crosses a few SNR levels, and what share of its
# steps it spends at SNR below 0.01, where the signal's amplitude is less than a tenth of the noise's:

# %%
# NBVAL_CHECK_OUTPUT
levels = [10, 1, 0.1, 0.01]
print(f"{'schedule':<14}" + "".join(f"{'SNR < ' + str(v):>12}" for v in levels) + f"{'steps at SNR < 0.01':>22}")
for s in [*schedules.values(), scaled_linear]:
    crossings = [t_for_snr(s, v) for v in levels]
    print(f"{s.name:<14}" + "".join(f"{c:>12}" for c in crossings) + f"{(T - crossings[-1]) / T:>22.0%}")

# %% [markdown]
# The linear schedule has as much noise as signal at $t = 259$, about a quarter of the way in; the
# cosine schedule at $t = 496$, half-way, almost twice as late. And the linear schedule spends a third
# of all its steps with less than a tenth as much signal amplitude as noise, against 6 % for cosine.
# Whether those steps are truly wasted depends on what can still be recognised at that SNR: that's the
# measurement we do next.

# %% [markdown]
# ## 5. Measuring "recognisable"
#
# "The cosine schedule keeps the image recognisable for longer" is a claim, so let's measure it. We
# need a judge that scores $x_t$ and is the same for every schedule. We try two: a pixel score, then a
# classifier.
#
# ### A pixel score: PSNR
#
# The usual way to compare a damaged image $x$ with the original $y$ is the **peak signal-to-noise
# ratio**, in decibels:
#
# $$\mathrm{PSNR}(x, y) = 10 \log_{10} \frac{\text{peak}^2}{\operatorname{mean}\big((x - y)^2\big)},$$
#
# where "peak" is the range the pixel values span: 2 for our images in $[-1, 1]$. Higher is closer;
# each 10 dB is a factor of 10 in squared error. As a rough guide, above 30 dB the damage is hard to
# see, and around 20 dB it's clearly the same picture but visibly noisy.
#
# ### Exercise 2.3: PSNR
#
# Write `psnr(x, y)` for two images in $[-1, 1]$ of the same shape, returning a 0-d tensor in dB.
#
# *Hint:* `torch.log10` exists; the peak-to-peak range is 2, so $\text{peak}^2 = 4$.

# %%
def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of two images in [-1, 1] (peak-to-peak range 2). Returns a 0-d tensor."""
    ### BEGIN SOLUTION
    mse = ((x - y) ** 2).mean()
    return 10 * torch.log10(4 / mse)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_psnr(psnr)

# %% [markdown]
# Let's follow the photo's PSNR through all 1000 steps of each schedule, with the same noise image
# $\epsilon$ as before:

# %%
psnr_curves = {
    name: torch.stack([psnr(s.add_noise(photo, eps, t), photo) for t in range(T)])  # (T,) in dB
    for name, s in schedules.items()
}
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for name, curve in psnr_curves.items():
    ax.plot(torch.arange(T) / T, curve, label=name)
for level in (20, 10):
    ax.axhline(level, color="grey", lw=0.8, ls="--")
    ax.annotate(f"{level} dB", (0.9, level + 0.8), color="grey", fontsize=8)
ax.set(xlabel="t / T", ylabel="PSNR(x_t, x_0) in dB", title="the photo's PSNR as the noise grows", ylim=(0, 45))
ax.legend()
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'schedule':<10}{'PSNR < 20 dB from t =':>24}{'PSNR < 10 dB from t =':>24}")
for name, curve in psnr_curves.items():
    below = [int(torch.nonzero(curve < level)[0]) for level in (20, 10)]
    print(f"{name:<10}{below[0]:>24}{below[1]:>24}")

# %% [markdown]
# By PSNR too, the cosine schedule keeps the photo about twice as long as the linear one (and the
# sigmoid schedule, gentle at the start, is ahead of both at 20 dB). But look back at the
# strips: under the linear schedule the photo's PSNR is below 10 dB from $t = 214$, yet at $t = 300$
# ($\bar\alpha_{300} = 0.39$) the face can still be made out, as in chapter 01's chain, where it was plain
# to see at $t = 200$ and a ghost by $t = 350$. PSNR counts how much noise there is, not whether you can
# still tell what the picture shows. It calls the image "ruined" while it is still obviously
# recognisable. For that question we need a judge of *content*.
#
# ### A judge of content: the nearest class mean
#
# MNIST digits come with labels, so "recognisable" can mean "a classifier can still tell which digit it
# is". We want a judge that is fair to every schedule, so it should be told how much noise there is
# and not be trained on one schedule's images. The forward process gives us one almost for free.
#
# Let $\mu_k$ be the average training image of digit $k$. If a digit of class $k$ were exactly $\mu_k$,
# then by the closed form $x_t \sim \mathcal N\big(\sqrt{\bar\alpha_t}\,\mu_k,\ (1 - \bar\alpha_t) I\big)$,
# and the class under which $x_t$ is most likely is the one whose **scaled mean is nearest**:
#
# $$\hat k(x_t) = \arg\min_k \big\| x_t - \sqrt{\bar\alpha_t}\,\mu_k \big\|^2 .$$
#
# Real 3s differ from the average 3, so on clean digits this judge is mediocre (about 75 % right). But
# when the noise is strong, which is where our question lives, the noise dwarfs the difference between
# one 3 and another, and comparing with class means is a sensible way to decide. The judge depends on the
# schedule only through $\bar\alpha_t$, so every schedule faces exactly the same judge. Chance is 10 %.

# %%
x0_train, y_train = mnist_tensors("train")  # (20000, 1, 28, 28) in [-1, 1], (20000,)
x0_test, y_test = mnist_tensors("test", n=pick(full=2000, quick=500))  # (N, 1, 28, 28), (N,)
class_means = torch.stack([x0_train[y_train == k].mean(dim=0) for k in range(10)])  # (10, 1, 28, 28): mu_k


def classify(xt: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Nearest scaled class mean: argmin_k ||x_t - sqrt(alpha_bar) mu_k||. xt: (B, 1, 28, 28) -> (B,) digits."""
    distances = torch.cdist(xt.flatten(1), alpha_bar.sqrt() * class_means.flatten(1))  # (B, 10)
    return distances.argmin(dim=1)


clean_accuracy = (classify(x0_test, torch.tensor(1.0)) == y_test).float().mean()
print(f"accuracy on {len(y_test)} clean test digits: {clean_accuracy:.1%} (chance: 10%)")
fig = show_images(class_means, nrow=10, titles=[f"mu_{k}" for k in range(10)], scale=1.0)
plt.show()
plt.close(fig)

# %% [markdown]
# Those blurry averages are the judge's templates. Now the experiment: for a grid of steps $t$, noise all
# the test digits and count how many the judge gets right. At each $t$ all three schedules use the same
# noise draw, so the only thing that differs between them is the schedule.

# %%
t_step = pick(full=5, quick=25)  # every 5th step in full mode, every 25th in quick mode
t_grid = list(range(0, T, t_step))
gen = torch.Generator().manual_seed(2)
accuracy = {name: [] for name in schedules}
for t in t_grid:
    eps_digits = torch.randn(x0_test.shape, generator=gen)  # (N, 1, 28, 28), shared by the schedules
    for name, s in schedules.items():
        xt = s.add_noise(x0_test, eps_digits, t)
        accuracy[name].append(float((classify(xt, s.alpha_bars[t]) == y_test).float().mean()))
accuracy = {name: torch.tensor(acc) for name, acc in accuracy.items()}  # name -> (len(t_grid),)

THRESHOLD, NEAR_CHANCE = 0.5, 0.2


def first_t_below(acc: torch.Tensor, level: float) -> int:
    """The first step on the grid at which accuracy is below ``level``."""
    return t_grid[int(torch.nonzero(acc < level)[0])]


crossing = {name: first_t_below(acc, THRESHOLD) for name, acc in accuracy.items()}

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
for name, acc in accuracy.items():
    (line,) = ax.plot(torch.tensor(t_grid) / T, acc, label=name)
    ax.axvline(crossing[name] / T, color=line.get_color(), lw=0.8, ls=":")
    ax.annotate(f"t = {crossing[name]}", (crossing[name] / T - 0.008, 0.03), color=line.get_color(),
                fontsize=8, ha="right")
ax.axhline(THRESHOLD, color="grey", lw=0.8, ls="--")
ax.annotate(f"threshold {THRESHOLD:.0%}", (0.01, THRESHOLD + 0.02), color="grey", fontsize=8)
ax.axhline(0.1, color="black", lw=0.8, ls="--")
ax.annotate("chance 10%", (0.01, 0.12), fontsize=8)
ax.set(xlabel="t / T", ylabel="accuracy", ylim=(0, 1), xlim=(0, 1),
       title="how often the noise-aware judge still recognises the digit")
ax.legend(loc="upper right")
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
print(f"{'schedule':<10}{'accuracy < 50% from t =':>25}{'t / T':>7}{'log SNR there':>15}"
      f"{'< 20% from t =':>16}{'steps left after that':>23}")
for name, acc in accuracy.items():
    t_near_chance = first_t_below(acc, NEAR_CHANCE)
    log_snr_there = float(schedules[name].log_snr(crossing[name]))
    print(f"{name:<10}{crossing[name]:>25}{crossing[name] / T:>7.2f}{log_snr_there:>15.2f}"
          f"{t_near_chance:>16}{(T - t_near_chance) / T:>23.0%}")
print(f"\ncosine / linear:  {crossing['cosine'] / crossing['linear']:.2f}x as many steps before the digit is lost")
print(f"sigmoid / linear: {crossing['sigmoid'] / crossing['linear']:.2f}x")
print(f"({len(y_test)} test digits, accuracy measured every {t_step} steps)")

# %% [markdown]
# **What this shows.** Under the linear schedule our judge gets fewer than half of the digits right
# from about half-way ($t \approx 500$ in the full run); under the cosine schedule it holds out until
# about $t \approx 815$, some 1.6 times as many steps. The sigmoid schedule sits in between, at about
# 1.2 times linear. At the far end, the linear schedule spends its last 30 % of steps on digits the
# judge can barely tell apart from chance (below 20 % right); the cosine schedule only its last 5 %.
#
# Two honest caveats. First, the judge compares with ten templates and adds up evidence over all 784
# pixels, so it sees digits in noise that your eyes have long given up on: a person would call the
# digits lost earlier under *every* schedule. So the absolute steps belong to this judge, and what
# carries over is the order (cosine, then sigmoid, then linear) and the rough size of the gap. Second,
# the ratio depends on where you put the threshold: by PSNR above the gap was about 2×, here 1.6×.
# The next plot shows why.
#
# ### One curve, three speeds
#
# The judge sees the schedule only through $\bar\alpha_t$, and so does $x_t$ itself. So plot the same
# accuracies against $\log \mathrm{SNR}(t)$ instead of $t$:

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
for name, acc in accuracy.items():
    log_snr = schedules[name].log_snr(torch.tensor(t_grid))
    ax.plot(log_snr, acc, label=name, lw=1.2)
ax.axhline(0.1, color="black", lw=0.8, ls="--")
ax.annotate("chance 10%", (7.5, 0.12), fontsize=8)
ax.set(xlim=(8, -10), ylim=(0, 1), xlabel="log SNR(t)   (more noise to the right)", ylabel="accuracy",
       title="the same measurements against log SNR: one curve")
ax.legend(loc="upper right")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# The three curves lie on top of each other. A digit fades at a fixed noise level, between about
# $\log\mathrm{SNR} = 0$ and $-5$, whatever the schedule. **A schedule does not change the path from
# clean to noise; it only decides how fast the $T$ steps walk along it.** The linear schedule crosses
# that fading band in a few hundred steps and then walks on through noise where nothing is left to see
# or learn. The cosine schedule crosses it slowly, so more of the steps (and, in chapter 04, more of
# the training) land where the image is half there and a denoiser still has something to work with.
#
# This also explains why the ratio depends on the threshold: it is simply the ratio of the steps each
# schedule takes to reach that noise level. The SNR table in section 4 gives 1.9× at SNR = 1, 1.7× at
# SNR = 0.1 and 1.4× at SNR = 0.01; our judge's 50 % mark sits near $\log\mathrm{SNR} = -2.5$
# (SNR ≈ 0.08, see the table above), hence its 1.6×.
#
# Where that band lies depends on the images. A 64×64 photo has more pixels of evidence than a 28×28
# digit and survives to lower SNR, which is why Nichol & Dhariwal found the linear schedule fine for
# large images but wasteful at 64×64 and below, and why later work shifts schedules towards more noise
# for larger images (for example Hoogeboom et al. 2023, "simple diffusion").

# %% [markdown]
# ## 6. Explore it yourself
#
# Pick a schedule and drag $t$: the explorer shows $x_t$ under that schedule next to the $\bar\alpha_t$
# curves of all three, with the current step marked. Try to find the step at which *you* stop seeing the
# face under each schedule, and compare your numbers with the judges above. (Where no live kernel runs,
# for example on GitHub, you see a static picture instead: the curves and a noising strip.)

# %%
schedule_explorer(photo)

# %% [markdown]
# ## Summary
#
# - A noise schedule is a choice of $\beta_0, \dots, \beta_{T-1}$, or equivalently of the curve
#   $\bar\alpha_t$: how much of $x_0$ survives to step $t$.
# - **Linear** (DDPM): $\beta_t$ from $10^{-4}$ to $0.02$. Its $\bar\alpha_t$ falls like a bell curve and
#   reaches almost zero by $t/T \approx 0.6$.
# - **Cosine** (Nichol & Dhariwal): $\bar\alpha_t = f(t+1)/f(0)$ with $f = \cos^2$ (our step numbering).
#   It falls steadily, with $\log \mathrm{SNR}$ nearly a straight line. **Sigmoid** (GeoDiff) lies in between;
#   Stable Diffusion's **scaled_linear** is made for latents and never quite reaches pure noise.
# - $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$. Linear reaches SNR = 1 at $t = 259$, cosine at
#   $t = 496$.
# - Measured with a noise-aware nearest-class-mean judge on MNIST, the cosine schedule keeps digits
#   recognisable about 1.6 times as many steps as the linear one. PSNR also puts cosine well ahead of
#   linear, but it measures noise, not content.
# - Plotted against $\log\mathrm{SNR}$, every schedule gives the same accuracy curve: a schedule only
#   re-times one path from clean to noise. Cosine is preferred because it spends more of its steps where
#   the image is neither clean nor gone. From chapter 04 on, the course trains with the cosine schedule.
#
# ## What's next
#
# So far we have only destroyed images. Chapter 03 builds the network that will learn to undo it: a small
# U-Net that looks at a noisy $x_t$, is told the step $t$ (through a time embedding), and predicts the
# noise $\epsilon$ that was added. Chapter 04 then trains it, on steps drawn from the schedule you
# chose here.
