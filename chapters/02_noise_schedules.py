# %% [markdown]
# # 02 · Noise schedules: how fast to destroy
#
# Chapter 01 noised with DDPM's linear schedule and noticed something odd: the photo was
# unrecognisable long before the last step. If the picture is gone at step 500, the model spends half
# of its training (and half of every generation) learning to turn static into slightly different
# static. The **noise schedule**, the list $\beta_0, \dots, \beta_{T-1}$, decides how information is
# destroyed over time, and choosing it well is one of the cheapest improvements in diffusion models.
#
# **Learning goals**
#
# - Compare the linear (Ho et al. 2020), cosine (Nichol & Dhariwal 2021) and sigmoid schedules through
#   $\bar\alpha_t$ and the signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$.
# - Build the cosine schedule from its formula and check it against the package.
# - *Measure* how long each schedule keeps a digit recognisable, with a classifier and with PSNR.
# - Explore schedules with an interactive widget.
#
# *Runs in well under a minute on a laptop CPU.*

# %%
import math

import matplotlib.pyplot as plt
import torch

from diffusion_lab.config import mode_name, pick
from diffusion_lab.data import load_photo, mnist_tensors
from diffusion_lab.exercises import check_cosine_alpha_bars, check_psnr, check_t_for_snr
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.viz import noising_strip, plot_schedules, use_course_style
from diffusion_lab.widgets import schedule_explorer

use_course_style()
print(f"mode: {mode_name()}")
T = 1000

# %% [markdown]
# ## 1. Three schedules
#
# Everything about the forward process follows from $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$, the
# share of the signal's variance left at step $t$ (chapter 01). So we compare schedules through
# $\bar\alpha_t$, not through $\beta_t$.
#
# - **Linear** (DDPM): $\beta_t$ rises evenly from $10^{-4}$ to $0.02$. Simple, and it worked well
#   enough for the first DDPM results.
# - **Cosine** (Improved DDPM): choose $\bar\alpha_t$ directly, so that it falls along a cosine,
#
#   $$\bar\alpha_t = \frac{f(t+1)}{f(0)}, \qquad f(u) = \cos^2\!\Big(\frac{u/T + s}{1 + s}\cdot\frac{\pi}{2}\Big), \qquad s = 0.008,$$
#
#   and back out $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$ (clipped at 0.999 so the very last step
#   is not infinitely violent). The small offset $s$ keeps $\beta$ from being vanishingly small at
#   the start. (With steps counted from 0 in code, $\bar\alpha_t$ uses $f(t+1)$: after the first
#   step, one step's worth of signal is gone.)
# - **Sigmoid** (used by GeoDiff, Xu et al. 2022): $\beta_t$ follows an S-curve between the same end
#   points as linear, so it is gentle at both ends.
#
# (Stable Diffusion uses a fourth, `scaled_linear`, where $\sqrt{\beta_t}$ rises linearly; it lives in
# the package too.)
#
# ### Exercise 2.1: the cosine schedule
#
# Write `cosine_alpha_bars(T, s)` returning $\bar\alpha_t$ for $t = 0, \dots, T-1$ as a tensor of
# shape `(T,)`. *Hint:* `u = torch.arange(T + 1) / T` gives every $u/T$ you need; divide
# $f$ at $1, \dots, T$ by $f$ at $0$.

# %%
def cosine_alpha_bars(T: int, s: float = 0.008) -> torch.Tensor:
    """alpha_bar_t = f(t + 1) / f(0) with f(u) = cos^2((u / T + s) / (1 + s) * pi / 2); shape (T,)."""
    ### BEGIN SOLUTION
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f[1:] / f[0]
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_cosine_alpha_bars(cosine_alpha_bars)

# %% [markdown]
# The package builds the same curve (`schedules.cosine_alpha_bar` is $f$), then freezes it into a
# `NoiseSchedule`. The only difference is the clipping of the last $\beta$:

# %%
# NBVAL_CHECK_OUTPUT
schedules = {name: NoiseSchedule.from_name(name, T) for name in ("linear", "cosine", "sigmoid")}
mine = cosine_alpha_bars(T).float()
print("same as the package for t < T-1:", torch.allclose(mine[:-1], schedules["cosine"].alpha_bars[:-1], atol=1e-6))
print(f"last step: yours {mine[-1]:.2e}, package {schedules['cosine'].alpha_bars[-1]:.2e} (beta clipped at 0.999)")

# %% [markdown]
# ## 2. Signal left, and signal-to-noise ratio
#
# Left: $\bar\alpha_t$. The linear schedule's signal collapses early: by $t/T = 0.5$ less than 10 %
# of it is left. The cosine falls almost linearly through the middle. Right: the log SNR, which
# spreads out the end points where $\bar\alpha_t$ is squashed against 0 or 1. The dashed line is
# SNR = 1, where signal and noise have equal variance.

# %%
plot_schedules(list(schedules.values()))
plt.show()

# %% [markdown]
# How many of the 1000 steps does each schedule spend with almost nothing left (less than 1 % of the
# signal's variance, $\bar\alpha_t < 0.01$)?

# %%
# NBVAL_CHECK_OUTPUT
for name, s in schedules.items():
    wasted = int((s.alpha_bars < 0.01).sum())
    print(f"{name:>8}: {wasted:>3} of {T} steps have alpha_bar < 0.01 ({wasted / T:.0%})")

# %% [markdown]
# ## 3. The same noise, three schedules
#
# Each row noises the same image with the *same* $\epsilon$ at the same steps; only the schedule
# differs. Watch the middle columns.

# %%
photo = load_photo(64)
digits, labels = mnist_tensors("test")
ts = [0, 150, 300, 450, 600, 750, 900]
noising_strip(photo, list(schedules.values()), ts, scale=1.1)
plt.show()
noising_strip(digits[3], list(schedules.values()), ts)
plt.show()

# %% [markdown]
# At $t = 450$ the linear row is static while the cosine row still shows the face and the digit.
# ## 4. Where does the SNR cross 1?
#
# ### Exercise 2.2: the step where SNR drops below a threshold
#
# Write `t_for_snr(schedule, threshold)` returning the first step $t$ (an `int`) with
# $\mathrm{SNR}(t) <$ `threshold`. *Hint:* `schedule.snr(torch.arange(schedule.T))` gives every SNR;
# `torch.nonzero` finds where a condition holds.

# %%
def t_for_snr(schedule: NoiseSchedule, threshold: float) -> int:
    """The first step t at which SNR(t) = alpha_bar_t / (1 - alpha_bar_t) is below threshold."""
    ### BEGIN SOLUTION
    snr = schedule.snr(torch.arange(schedule.T))
    return int(torch.nonzero(snr < threshold)[0])
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_t_for_snr(t_for_snr)

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'schedule':>8}  {'SNR < 10':>9}  {'SNR < 1':>8}  {'SNR < 0.1':>9}")
for name, s in schedules.items():
    print(f"{name:>8}  {t_for_snr(s, 10):>9}  {t_for_snr(s, 1):>8}  {t_for_snr(s, 0.1):>9}")

# %% [markdown]
# ## 5. Measuring "recognisable"
#
# Pictures persuade; numbers decide. We measure how long each schedule keeps an MNIST digit
# recognisable in two ways.
#
# **A classifier that knows the noise level.** Give each digit class $k$ its mean image $\mu_k$ (from
# the training digits). A noised digit of class $k$ is, on average, $\sqrt{\bar\alpha_t}\,\mu_k$ plus
# Gaussian noise, so a fair judge picks the class whose *noised* mean is nearest:
# $\hat k = \arg\min_k \lVert x_t - \sqrt{\bar\alpha_t}\,\mu_k \rVert^2$. It is a simple classifier,
# not a perfect one (about 80 % on clean digits), but it treats every schedule alike: it sees only
# $x_t$ and $\bar\alpha_t$. We find the step at which its accuracy falls below 50 % (chance is 10 %).

# %%
train_x, train_y = mnist_tensors("train")
means = torch.stack([train_x[train_y == k].mean(0) for k in range(10)])   # (10, 1, 28, 28)
n_test = pick(full=2000, quick=500)
x0, y = digits[:n_test], labels[:n_test]
t_grid = torch.arange(0, T, pick(full=10, quick=50))
gen = torch.Generator().manual_seed(0)
eps = torch.randn(x0.shape, generator=gen)                                 # one eps, shared by all


def nearest_mean_accuracy(schedule: NoiseSchedule, t: int) -> float:
    xt = schedule.add_noise(x0, eps, t)                                    # (N, 1, 28, 28)
    noised_means = schedule.alpha_bars[t].sqrt() * means                   # (10, 1, 28, 28)
    dist = torch.cdist(xt.flatten(1), noised_means.flatten(1))             # (N, 10)
    return (dist.argmin(1) == y).float().mean().item()


accuracy = {name: [nearest_mean_accuracy(s, int(t)) for t in t_grid] for name, s in schedules.items()}
print(f"accuracy on clean-ish digits (t = 0): {accuracy['linear'][0]:.0%}")

# %% [markdown]
# **PSNR against the original.** The peak signal-to-noise ratio, in decibels, compares $x_t$ with
# $x_0$ pixel by pixel: $10 \log_{10}(\text{range}^2 / \text{MSE})$. Our pixels span $[-1, 1]$, a range of 2.
# Around 20 dB a picture is clearly itself, just noisy; below about 10 dB it is mostly noise.
#
# ### Exercise 2.3: PSNR
#
# Write `psnr(x, y)` for images in $[-1, 1]$, returning a 0-d tensor in dB.

# %%
def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of x against y, both in [-1, 1] (peak-to-peak range 2)."""
    ### BEGIN SOLUTION
    mse = ((x - y) ** 2).mean()
    return 10 * torch.log10(4 / mse)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_psnr(psnr)

# %%
psnr_curve = {name: [psnr(s.add_noise(x0, eps, int(t)), x0).item() for t in t_grid] for name, s in schedules.items()}

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.3))
for name in schedules:
    ax1.plot(t_grid / T, accuracy[name], label=name)
    ax2.plot(t_grid / T, psnr_curve[name], label=name)
ax1.axhline(0.5, color="grey", ls="--", lw=0.8)
ax1.axhline(0.1, color="grey", ls=":", lw=0.8)
ax1.annotate("chance", (0.0, 0.115), color="grey", fontsize=8)
ax1.set(xlabel="t / T", ylabel="accuracy", title="nearest noised class mean, on test digits")
ax2.axhline(10, color="grey", ls="--", lw=0.8)
ax2.set(xlabel="t / T", ylabel="PSNR (dB)", title="PSNR of x_t against x_0")
ax1.legend()
plt.show()


def first_below(values: list[float], level: float) -> int:
    """The first t on the grid where values drop below level (T if never)."""
    return next((int(t) for t, v in zip(t_grid, values) if v < level), T)


rows = {name: (first_below(accuracy[name], 0.5), first_below(psnr_curve[name], 10)) for name in schedules}
print(f"{'schedule':>8}  {'accuracy < 50 %':>16}  {'PSNR < 10 dB':>13}")
for name, (t_acc, t_psnr) in rows.items():
    print(f"{name:>8}  {'t = ' + str(t_acc):>16}  {'t = ' + str(t_psnr):>13}")
ratio = rows["cosine"][0] / rows["linear"][0]
print(f"\nthe cosine schedule keeps digits recognisable {ratio:.1f}x as many steps as the linear one")

# %% [markdown]
# The measurement agrees with the pictures, and puts numbers on them. With the cosine schedule the
# judge stays above 50 % about 1.6 times as long as with the linear one (to $t \approx 820$ against
# $t \approx 500$ in the full run), and PSNR tells the same story ($t \approx 410$ against $210$). So under the cosine schedule more of the $T$
# steps are spent where the image is *partly* there, the regime where denoising is hard and
# interesting, and far fewer on static: only 6 % of its steps have $\bar\alpha_t < 0.01$, against a
# third for the linear schedule. Nichol & Dhariwal found this improves sample quality, most of all on
# small images like ours. The sigmoid starts as gently as the cosine, then collapses almost as fast
# as the linear one.
#
# Two honest caveats. "Recognisable" depends on the judge: this one knows the ten class templates
# exactly and pools evidence over all 784 pixels, so it still beats chance at steps where your eye
# sees only static (compare the strips at $t = 600$). Your own threshold would come earlier under
# every schedule, but in the same order. And PSNR mostly measures the noise level, so its curve is
# really a picture of $\bar\alpha_t$ in decibels.
#
# ## 6. Explore the schedules
#
# Choose a schedule and move the step: the left panel shows $x_t$, the right one where you are on
# each $\bar\alpha_t$ curve.

# %%
schedule_explorer(photo, ("linear", "cosine", "sigmoid"), T=T)

# %% [markdown]
# ## Summary
#
# - A schedule is best understood through $\bar\alpha_t$ or $\log \mathrm{SNR}(t)$, not through $\beta_t$.
# - The linear schedule destroys small images early and leaves many steps with almost nothing left;
#   the cosine schedule spreads the destruction evenly, and measurably keeps digits recognisable longer.
# - In the package: `NoiseSchedule.from_name("cosine" | "linear" | "sigmoid" | "scaled_linear", T)`,
#   `schedule.snr(t)`, `schedule.log_snr(t)`. From here on, the course uses the cosine schedule.
#
# ## What's next
#
# We can destroy images in a well-paced way. **Chapter 03** builds the network that will learn to
# undo it: a small U-Net that looks at $x_t$ and $t$ and predicts the noise $\epsilon$.
