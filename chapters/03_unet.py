# %% [markdown]
# # 03 · A small U-Net: the network that guesses the noise
#
# Chapters 01 and 02 destroyed images with noise, a process with no learning in it. Now we build the
# network that will learn to undo it. Its job sounds simple: shown a noisy digit $x_t$ and the step
# $t$, say which part of every pixel is noise. Doing that well needs two things at once: a sharp eye for
# single pixels (the noise is different at every pixel) and a view of the whole picture (is this grey
# smudge part of a 3, or just noise?). The **U-Net** gives both. It shrinks the image to see more of it
# at once, grows it back to full size, and passes the fine detail across the "U" through skip
# connections. DDPM used one, and Stable Diffusion's denoiser is a larger version of the same design.
# This chapter builds it one piece at a time, checks each piece against the package's version, and ends
# with the whole network: its shapes, layer by layer, and its size.
#
# **Learning goals**
#
# - Explain what a convolution computes, and work out its output size and its number of parameters.
# - Normalise with GroupNorm, and say why diffusion models prefer it to BatchNorm.
# - Write the sinusoidal timestep embedding and read its picture.
# - Build a residual block that reads the time embedding, and check it against the package's `ResBlock`.
# - Follow an image down and up the U-Net, through skip connections and self-attention, and measure
#   how downsampling lets one output pixel see the whole image.
#
# **Run time:** about 10 seconds in full mode on a 2-core laptop CPU. Nothing is trained here: the
# networks are untrained, and chapter 04 trains them.

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
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from torch import nn

from diffusion_lab.config import mode_name, pick, seed_everything
from diffusion_lab.data import mnist_tensors
from diffusion_lab.exercises import (
    check_conv_output_size,
    check_conv_parameters,
    check_res_block,
    check_timestep_embedding,
)
from diffusion_lab.models import (
    Downsample,
    ResBlock,
    SelfAttention,
    UNet,
    UNetConfig,
    count_parameters,
    shape_trace,
    timestep_embedding,
)
from diffusion_lab.notebook.figures import show_images, use_course_style
from diffusion_lab.schedules import NoiseSchedule

use_course_style()
seed_everything(0)
print(f"mode: {mode_name()}")

# %% [markdown]
# ## 1. The job: an image in, an image out
#
# From chapter 04 on, a network $\epsilon_\theta(x_t, t)$ is trained to predict the noise $\epsilon$ in
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$. Its inputs are a batch of noisy
# images `xt` of shape (B, 1, 28, 28) and one step per image, `t` of shape (B,). Its output `eps_pred`
# has the shape of the image, because it is a guess of $\epsilon$ for every pixel. Here are the
# shapes, with the package's finished U-Net, on MNIST test digits noised to step 300 of the cosine
# schedule (the one the course trains with):

# %%
x0, _ = mnist_tensors("test", n=8)  # (8, 1, 28, 28) in [-1, 1]
schedule = NoiseSchedule.from_name("cosine", T=1000)
t = torch.full((8,), 300)  # (B,): one step per image
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))  # (8, 1, 28, 28)
xt = schedule.add_noise(x0, eps, t)  # (8, 1, 28, 28)

model = UNet(UNetConfig.mnist())
with torch.no_grad():
    eps_pred = model(xt, t)  # (8, 1, 28, 28)
print(f"x_t {tuple(xt.shape)} and t {tuple(t.shape)}  ->  eps_pred {tuple(eps_pred.shape)}")
print(f"largest |eps_pred| of the untrained network: {eps_pred.abs().max():.1f}")

fig = show_images([x0[0], eps[0], xt[0], eps_pred[0]], scale=1.6,
                  titles=["x_0", "the noise ε", "x_t, t = 300", "ε_θ(x_t, t), untrained"])
plt.show()
plt.close(fig)

# %% [markdown]
# Training's job, in chapter 04, is to make the last panel look like the second. For now the untrained
# network answers exactly zero everywhere (a flat grey). That is no accident: section 5 explains it.
#
# Why is this hard? Look at one pixel of $x_t$. Its value is part digit, part noise, and nothing in the
# pixel itself says which part is which. The evidence is in the surroundings: if the neighbours trace a
# stroke, the pixel is probably on it. The more of the picture a network can take into account, the
# better its guess. But the answer must still be given for every single pixel. The rest of the chapter
# builds, piece by piece, a network that does both.

# %% [markdown]
# ## 2. Convolutions: the same small filter everywhere
#
# A **convolution** slides a small filter, say 3×3, over the image. At every position it multiplies the
# 3×3 neighbourhood by the filter's weights and adds the results up, over all input channels: one
# number per position, for each output channel. Two properties make it the right tool for images:
#
# - **Local:** each output looks at a small neighbourhood only, which is where most of the structure
#   of an image is.
# - **Shared:** the same weights are used at every position, so a filter that finds a stroke finds it
#   anywhere in the image, and the layer needs few parameters.
#
# In symbols: with a filter $w$ of size $k \times k$ for every pair of output channel $o$ and input
# channel $c$, output channel $o$ at row $i$ and column $j$ is
#
# $$y_{o,i,j} = b_o + \sum_{c} \sum_{u=0}^{k-1} \sum_{v=0}^{k-1} w_{o,c,u,v}\; x_{c,\; s i + u - p,\; s j + v - p},$$
#
# where the **stride** $s$ is how far the filter moves between outputs and the **padding** $p$ is a
# border of zeros added around the image (so that positions outside it read as 0). The U-Net's 3×3
# convolutions use $s = 1, p = 1$: the output has the size of the input.
#
# Written out for $k = 3$, $s = 1$, $p = 1$, a convolution is nine shifted copies of the image, each
# mixed across channels by a $C_\text{out} \times C_\text{in}$ matrix of weights, and added up:

# %%
def conv3x3_by_hand(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution with stride 1 and padding 1: x (B, C_in, H, W), w (C_out, C_in, 3, 3), b (C_out,)."""
    H, W = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C_in, H + 2, W + 2): a border of zeros
    y = b.view(1, -1, 1, 1)  # (1, C_out, 1, 1), broadcast over the batch and the pixels
    for u in range(3):
        for v in range(3):
            neighbour = padded[:, :, u : u + H, v : v + W]  # (B, C_in, H, W): every pixel's (u, v) neighbour
            y = y + torch.einsum("oc,bchw->bohw", w[:, :, u, v], neighbour)  # mix the channels
    return y  # (B, C_out, H, W)


conv = nn.Conv2d(4, 6, kernel_size=3, padding=1)
x = torch.randn(2, 4, 10, 10, generator=torch.Generator().manual_seed(1))
print("same as nn.Conv2d:", torch.allclose(conv3x3_by_hand(x, conv.weight, conv.bias), conv(x), atol=1e-5))

# %% [markdown]
# A trained network learns its filters. To see what filters *can* do, here are three set by hand,
# applied to a digit: a blur (the average of the 3×3 neighbourhood) and two edge detectors (the
# difference between the right and the left neighbours, and between below and above). The last
# panel is the blur again with stride 2: it only visits every other position, so the 28×28 digit comes
# out 14×14. That is how the U-Net will shrink images.

# %%
digit = x0[:1]  # (1, 1, 28, 28): a 0
edge = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])  # the Sobel filter
filters = torch.stack([torch.full((3, 3), 1 / 9), edge, edge.T]).unsqueeze(1)  # (3, 1, 3, 3): C_out = 3
maps = F.conv2d(digit, filters, padding=1)[0]  # (3, 28, 28): one map per filter
blur_stride2 = F.conv2d(digit, filters[:1], padding=1, stride=2)[0, 0]  # (14, 14)

panels = [(digit[0, 0], "the digit, 28×28", "gray"), (maps[0], "blur", "gray"),
          (maps[1], "left-right edges", "RdBu_r"), (maps[2], "top-bottom edges", "RdBu_r"),
          (blur_stride2, "blur, stride 2: 14×14", "gray")]
fig, axes = plt.subplots(1, 5, figsize=(9, 2.2))
for ax, (image, title, cmap) in zip(axes, panels):
    limit = image.abs().max()
    ax.imshow(image, cmap=cmap, vmin=-limit if cmap == "RdBu_r" else None, vmax=limit if cmap == "RdBu_r" else None)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# The edge maps are red where brightness rises in the filter's direction and blue where it falls. (The
# stripes along the frame come from the padding: its zeros are brighter than the black background,
# which is −1 in our range, so the edge filters see an edge all around the image.) A U-Net layer has
# dozens of such filters, learned rather than designed, and the next layer combines their maps into
# more complex features: corners, loops, whole strokes.
#
# ### Exercise 3.1: the output size of a convolution
#
# A window of size $k$ fits into a padded row of $H + 2p$ pixels at $H + 2p - k + 1$ positions; with
# stride $s$ the filter visits only every $s$-th of them, so
#
# $$H_\text{out} = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1 .$$
#
# Write `conv_output_size(size, kernel_size, stride, padding)` returning $H_\text{out}$ as an `int`.
# *Hint:* Python's `//` divides and rounds down in one go.

# %%
def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Side length of a convolution's output for an input of side ``size``."""
    ### BEGIN SOLUTION
    return (size + 2 * padding - kernel_size) // stride + 1
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_conv_output_size(conv_output_size)

# %% [markdown]
# The U-Net halves the image with a stride-2 3×3 convolution with padding 1. Follow an MNIST digit down:

# %%
# NBVAL_CHECK_OUTPUT
size = 28
for level in range(4):
    print(f"level {level}: {size}×{size}")
    size = conv_output_size(size, kernel_size=3, stride=2, padding=1)

# %% [markdown]
# 28, 14, 7, and then 4, not 3.5. The way back up doubles the size: 4 becomes 8, not 7, and the 8×8
# map no longer fits the 7×7 one it has to be joined with (section 6). So our U-Net stops at 7×7,
# three levels for a 28×28 image, and the package refuses a configuration that would go further:

# %%
# NBVAL_CHECK_OUTPUT
try:
    UNetConfig(image_size=28, channel_mults=(1, 2, 4, 8))  # four levels: 28, 14, 7, and 3.5?
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 3. GroupNorm: keeping the numbers in range
#
# Deep networks work best when the numbers flowing through them stay on a familiar scale. Without
# help, they drift: one layer's outputs grow a little, the next layer's grow more, and training becomes
# unstable. A **normalisation** layer resets the scale: it subtracts a mean and divides by a standard
# deviation, then applies a learned scale $\gamma$ and shift $\beta$ per channel (so the network can undo
# the normalisation where that helps).
#
# *Which* mean? The classic choice, BatchNorm, averages each channel over the whole batch. That makes
# one image's output depend on the other images in its batch, which is awkward for a denoiser: a
# training batch mixes all noise levels, while a sampler may denoise a single image, or a batch at one
# noise level. **GroupNorm** (Wu & He 2018) computes its statistics *per image*: it splits the $C$
# channels into $G$ groups and, for image $b$ and group $g$, takes the mean $\mu_{b,g}$ and variance
# $\sigma^2_{b,g}$ over the channels of the group and all pixels:
#
# $$y_{b,c,h,w} = \gamma_c\,\frac{x_{b,c,h,w} - \mu_{b,g}}{\sqrt{\sigma^2_{b,g} + 10^{-5}}} + \beta_c,
# \qquad \text{$g$ the group of channel $c$.}$$
#
# Our U-Net uses $G = 8$ groups everywhere (`UNetConfig.num_groups`). In code, it is one reshape:

# %%
def group_norm_by_hand(x: torch.Tensor, num_groups: int, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) -> normalised per image and per group of C / num_groups channels, then scaled and shifted."""
    B, C, H, W = x.shape
    groups = x.reshape(B, num_groups, -1)  # (B, G, C/G * H * W): one row per group
    mean = groups.mean(dim=2, keepdim=True)  # (B, G, 1)
    var = groups.var(dim=2, unbiased=False, keepdim=True)  # (B, G, 1)
    normed = ((groups - mean) / torch.sqrt(var + 1e-5)).reshape(B, C, H, W)
    return gamma.view(1, C, 1, 1) * normed + beta.view(1, C, 1, 1)


gen = torch.Generator().manual_seed(2)
norm = nn.GroupNorm(8, 32)
nn.init.normal_(norm.weight, 1.0, 0.2)  # gamma and beta start at 1 and 0; make them less special for the test
nn.init.normal_(norm.bias, 0.0, 0.2)
h = 2 + 3 * torch.randn(4, 32, 7, 7, generator=gen)  # (B, C, H, W): activations with mean 2 and std 3
print("same as nn.GroupNorm:", torch.allclose(group_norm_by_hand(h, 8, norm.weight, norm.bias), norm(h), atol=1e-5))

# %% [markdown]
# Now the difference that matters. Normalise the same image 0 twice: once in its batch, once with three
# other images beside it. BatchNorm (in training mode, where it uses the batch's statistics) gives image
# 0 a different output; GroupNorm gives exactly the same one.

# %%
# NBVAL_CHECK_OUTPUT
others = torch.randn(4, 32, 7, 7, generator=gen)  # three other images for the batch
mixed = torch.cat([h[:1], others[1:]])  # image 0 again, with different batch-mates
for layer in (nn.BatchNorm2d(32), nn.GroupNorm(8, 32)):
    change = (layer(h)[0] - layer(mixed)[0]).abs().max()
    print(f"{type(layer).__name__:>11}: image 0's output changes by up to {change:.2f} with other batch-mates")

# %% [markdown]
# ## 4. Telling the network the step: the timestep embedding
#
# One network handles every step $t$. But the job changes a lot with $t$: at $t = 10$ almost all of
# $x_t$ is digit and the noise is a faint grain, at $t = 900$ almost all of it is noise. So the network
# must be told $t$. Feeding it the bare number (300, say) works poorly: a single input that ranges
# from 0 to 999 is on a very different scale from the pixels, and the network would have to learn sharp
# functions of it to tell step 300 from step 301.
#
# Instead, $t$ is turned into a vector of sines and cosines at many frequencies, like the hands of a
# clock: the second hand changes quickly and tells neighbouring moments apart, the hour hand changes
# slowly and says roughly where in the day we are. DDPM borrowed this from the Transformer, which uses
# it to tell a word's position in a sentence (Vaswani et al. 2017). With $d$ features, $h = d/2$
# frequencies falling geometrically from 1 to nearly $1/10000$:
#
# $$\omega_i = 10000^{-i/h}, \quad i = 0, \dots, h-1, \qquad
# e(t) = \big[\sin(t\,\omega_0), \dots, \sin(t\,\omega_{h-1}),\ \cos(t\,\omega_0), \dots, \cos(t\,\omega_{h-1})\big].$$
#
# Every entry lies in $[-1, 1]$, whatever $t$ is. (Implementations differ in small details: DDPM's
# original code divides the exponent by $h - 1$ instead of $h$, and OpenAI's guided-diffusion puts the
# cosines first. The course uses the formula above, like diffusers' `get_timestep_embedding` with
# `downscale_freq_shift=0`. Any of them works, as long as training and sampling use the same one.)
#
# ### Exercise 3.2: the sinusoidal timestep embedding
#
# Write `sinusoidal_embedding(t, dim)` for a batch of steps `t` of shape (B,) (integers) and an even
# `dim`, returning a float tensor of shape (B, dim).
#
# *Hint:* `10000 ** (-torch.arange(h) / h)` gives all the frequencies; `t[:, None] * freqs[None, :]`
# multiplies every step by every frequency, shape (B, h); `torch.cat([..., ...], dim=1)` joins sines
# and cosines.

# %%
def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Timesteps t (B,) -> (B, dim): sin(t w_i) for i < dim/2, then cos(t w_i), with w_i = 10000^(-i / (dim/2))."""
    ### BEGIN SOLUTION
    half = dim // 2
    freqs = 10000 ** (-torch.arange(half) / half)  # (half,): from 1 down to nearly 1/10000
    args = t[:, None].float() * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, dim)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_timestep_embedding(sinusoidal_embedding)

# %% [markdown]
# The package's `timestep_embedding` is the same formula. Our U-Net uses $d = 32$ features
# (`UNetConfig.mnist().base_channels`); we compare at every step the network will ever see:

# %%
# NBVAL_CHECK_OUTPUT
steps = torch.arange(1000)  # every t of a T = 1000 schedule
emb = timestep_embedding(steps, 32)  # (1000, 32)
print("same as timestep_embedding:", torch.allclose(sinusoidal_embedding(steps, 32), emb, atol=1e-4))
print("shape:", tuple(emb.shape), f" values in [{emb.min():.0f}, {emb.max():.0f}]")

# %% [markdown]
# Here is the whole embedding as a picture, one row per step (left). On the right, how similar the
# embeddings of two steps are, measured by the cosine of the angle between the two vectors (1: same
# direction, 0: unrelated), against the distance between the steps, around three different steps.

# %%
unit = emb / emb.norm(dim=1, keepdim=True)  # (1000, 32), every row of length 1
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
image = ax1.imshow(emb, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
ax1.axvline(15.5, color="black", lw=0.8)
ax1.set(xlabel="feature: 16 sines | 16 cosines", ylabel="step t", title="e(t) for t = 0..999, d = 32")
fig.colorbar(image, ax=ax1, fraction=0.05)
gaps = torch.arange(-200, 201)  # distances t - t0
for t0, style in ((250, "-"), (500, "--"), (750, ":")):
    ax2.plot(gaps, unit[t0 + gaps] @ unit[t0], ls=style, lw=1.2, label=f"around t0 = {t0}")
ax2.set(xlabel="distance between the steps, t - t0", ylabel="similarity of e(t) and e(t0)", ylim=(-0.1, 1.05),
        title="similarity depends only on the distance: the three curves coincide")
ax2.legend(fontsize=8, loc="upper right")
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
# NBVAL_CHECK_OUTPUT
freqs = 10000 ** (-torch.arange(16) / 16)  # the 16 frequencies of d = 32
turns = 999 * freqs / (2 * math.pi)  # how many full turns each sine makes over t = 0..999
print("turns over 1000 steps:", " ".join(f"{x:.3g}" for x in turns.tolist()))
for gap in (1, 10, 100):
    print(f"similarity of steps {gap:>3} apart: {float(unit[500] @ unit[500 + gap]):.2f}")

# %% [markdown]
# Read the picture from left to right. The first columns are the fast hands: their sines make up to
# 159 full turns over the 1000 steps and look like noise at this scale. The columns further right
# turn more and more slowly, and the last four sines (and their cosines) move by less than a quarter
# turn in all: they hardly change, and tell the early steps from the late ones like a ramp would.
# The frequencies were designed for sequences of up to about 10 000 positions (hence the 10 000); over
# 1000 steps a few of the slowest features go unused, a small waste that every diffusion code base
# accepts.
#
# The right panel shows the property that makes this embedding work: two steps that are close get
# similar vectors (0.96 for neighbouring steps, 0.63 for steps 10 apart), steps further apart get clearly
# less similar ones (between about 0.2 and 0.6 in this window), and the three curves lie exactly on top
# of each other. That is no coincidence:
# $\sin a \sin b + \cos a \cos b = \cos(a - b)$, so $e(t) \cdot e(t') = \sum_i \cos\big((t - t')\,\omega_i\big)$
# depends only on the distance $t - t'$. Every part of the chain is described with the same resolution.
#
# In the U-Net the 32 features pass through a small MLP (Linear, SiLU, Linear) to become a vector of 128
# numbers (`TimestepEmbedding`), the network's own learned description of the noise level. Every residual
# block reads it. Which brings us to the residual blocks.

# %% [markdown]
# ## 5. Residual blocks: learn a correction, not a replacement
#
# Stacking many convolutions makes a network powerful but hard to train: each layer distorts the signal
# (and, backwards, the gradient) a little, and after dozens of layers not much gets through. He et al.
# (2016) found a simple remedy, the **residual block**: instead of replacing its input $x$ by $F(x)$, a
# block adds a correction, $x + F(x)$. If a block has nothing useful to add, it can leave $F \approx 0$,
# and the signal passes unchanged along the "skip" path.
#
# The U-Net's residual block, `ResBlock`, has two convolutions in its branch $F$, each after a
# GroupNorm and a SiLU activation ($\mathrm{SiLU}(z) = z\,\sigma(z)$, a smooth cousin of ReLU). Between
# the two convolutions it adds the time embedding: a linear layer turns the 128-number embedding into
# one number per channel, and that number is added to every pixel of the channel.
#
# ```
#  x ─┬─► GroupNorm ► SiLU ► conv 3×3 ─► (+) ─► GroupNorm ► SiLU ► conv 3×3 ─► (+) ─► out
#     │                                   ▲                                     ▲
#     │          emb ► SiLU ► Linear ─────┘  one shift per channel              │
#     └──────────── skip: x itself, or a 1×1 conv if the channel count changes ─┘
# ```
#
# $$h = \mathrm{conv}_1\big(\mathrm{SiLU}(\mathrm{GN}_1(x))\big) + \mathrm{Linear}\big(\mathrm{SiLU}(\mathrm{emb})\big),
# \qquad \mathrm{out} = \mathrm{skip}(x) + \mathrm{conv}_2\big(\mathrm{SiLU}(\mathrm{GN}_2(h))\big).$$
#
# ### Exercise 3.3: a residual block's forward pass
#
# Write `res_block(block, x, emb)` that computes the output of the package's `ResBlock` using its layers:
# `block.norm1`, `block.conv1`, `block.emb_proj` (SiLU then Linear: (B, emb_dim) → (B, C_out)),
# `block.norm2`, `block.conv2` and `block.skip` (the 1×1 conv, or the identity when the channel count
# stays the same). There is also `block.dropout`, which does nothing unless the block was built with
# dropout; put it just before `conv2`. `x` has shape (B, C_in, H, W) and `emb` (B, emb_dim).
#
# *Hint:* `F.silu` is SiLU. To add a (B, C) tensor to every pixel of a (B, C, H, W) one, index it with
# `[:, :, None, None]`. (The check does not let you call `block(x, emb)` itself.)

# %%
def res_block(block: ResBlock, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """The forward pass of a ResBlock, written with its layers: x (B, C_in, H, W), emb (B, E) -> (B, C_out, H, W)."""
    ### BEGIN SOLUTION
    h = block.conv1(F.silu(block.norm1(x)))  # (B, C_out, H, W)
    h = h + block.emb_proj(emb)[:, :, None, None]  # one shift per channel, the same at every pixel
    h = block.conv2(block.dropout(F.silu(block.norm2(h))))  # (B, C_out, H, W)
    return block.skip(x) + h
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_res_block(res_block)

# %% [markdown]
# Now take a fresh `ResBlock` from the package, with 32 channels in and out and a 128-number embedding
# as in our U-Net, and feed it a batch of feature maps and the embeddings of two steps:

# %%
# NBVAL_CHECK_OUTPUT
block = ResBlock(32, 32, emb_dim=128, num_groups=8)
time_mlp = model.time_embed  # the U-Net's TimestepEmbedding: sinusoidal features, then the MLP
h = torch.randn(2, 32, 28, 28, generator=torch.Generator().manual_seed(3))  # (B, C, H, W)
with torch.no_grad():
    emb = time_mlp(torch.tensor([10, 900]))  # (2, 128): the embeddings of t = 10 and t = 900
    print("emb:", tuple(emb.shape))
    print("a fresh block returns its input unchanged:", torch.equal(block(h, emb), h))

# %% [markdown]
# A fresh block is the identity! The package initialises the *last* convolution of every branch to zero
# (`zero_init` in `blocks.py`), so $F(x) = 0$ until training changes it. A freshly built U-Net is then a
# short, well-behaved path from input to output, which grows its branches as it learns; DDPM and
# OpenAI's guided-diffusion do the same. The U-Net's final convolution, `conv_out`, starts at zero too:
# that is the flat grey of section 1. (Section 8 shows that this does not stop gradients from flowing.)
#
# To compare your function with the package, give the zero convolution ordinary random weights, as
# training eventually will:

# %%
# NBVAL_CHECK_OUTPUT
block.conv2.reset_parameters()  # PyTorch's default random initialisation instead of zeros
with torch.no_grad():
    print("your res_block == the package's ResBlock:", torch.allclose(res_block(block, h, emb), block(h, emb), atol=1e-5))
    out_10, out_900 = block(h[:1], emb[:1]), block(h[:1], emb[1:])  # the same image, told two different steps
    print(f"same input, t = 10 vs t = 900: outputs differ by up to {(out_10 - out_900).abs().max():.2f}")

# %% [markdown]
# The time embedding reaches the output: the same feature map, told two different steps, gives two
# different results. That is how one network can do different jobs at different noise levels.

# %% [markdown]
# ## 6. Down, up, and across: the U
#
# ### Why shrink?
#
# Each 3×3 convolution lets an output see one more pixel in every direction. The patch of the input that
# can influence one output is its **receptive field**, and with 3×3 convolutions alone it grows slowly:
# by 2 pixels per layer, so covering a 28×28 digit would take 14 layers. A stride-2 convolution
# (the package's `Downsample`) halves the image instead. After it, one step on the smaller map is two
# pixels of the input, so every later 3×3 convolution grows the receptive field twice as fast. Counting
# the **jump** $j$ (how many input pixels one step on the current map spans), each $k\times k$
# convolution with stride $s$ does
#
# $$r \leftarrow r + (k - 1)\,j, \qquad j \leftarrow j \cdot s, \qquad \text{starting from } r = j = 1 .$$
#
# In code, for a stack of convolutions:

# %%
def receptive_field(net: nn.Module) -> int:
    """Side of the receptive field of the convolutions in ``net``, applied in order (the rule above)."""
    r, jump = 1, 1
    for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
        r += (conv.kernel_size[0] - 1) * jump
        jump *= conv.stride[0]
    return r


# %% [markdown]
# Let's measure it instead of trusting the rule. We build two stacks of three levels, each level two 3×3
# convolutions (the two in a ResBlock), with 16, 32 and 64 channels. Between the levels, one stack uses
# the package's `Downsample` (stride 2), the other an ordinary stride-1 convolution; so both have the
# same number of layers. Then we ask: which input pixels can change the centre pixel of each level's
# output? The gradient of that output with respect to the input answers it exactly: it is zero for
# every pixel outside the receptive field. (We leave out the GroupNorms for this experiment. They take
# their mean over the whole image, so they let every pixel nudge every output a little, through two
# numbers per group, and that would blur the picture of where the convolutions look.)

# %%
def conv_stack(downsample: bool, channels: tuple[int, ...] = (16, 32, 64)) -> list[nn.Sequential]:
    """Three levels of two 3x3 convs each, entered through conv_in, a stride-2 Downsample, or a stride-1 conv."""
    levels = []
    for i, c in enumerate(channels):
        if i == 0:
            first = nn.Conv2d(1, c, 3, padding=1)  # like the U-Net's conv_in
        elif downsample:
            first = Downsample(channels[i - 1], c)  # stride 2: halves the size
        else:
            first = nn.Conv2d(channels[i - 1], c, 3, padding=1)  # stride 1: keeps the size
        levels.append(nn.Sequential(first, nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                    nn.SiLU(), nn.Conv2d(c, c, 3, padding=1)))
    return levels


torch.manual_seed(4)
x = x0[:1].clone().requires_grad_()  # (1, 1, 28, 28): the 0 from section 1
found = {}  # (downsample, level) -> what we measured
for downsample in (False, True):
    levels, h = conv_stack(downsample), x
    for i, level in enumerate(levels):
        h = level(h)  # (1, C_i, H_i, W_i)
        centre = h.shape[-1] // 2
        (g,) = torch.autograd.grad(h[0, :, centre, centre].sum(), x, retain_graph=True)
        rows = torch.nonzero(g[0, 0].abs().sum(dim=1))  # the input rows that reach the centre output
        found[downsample, i] = {
            "grad": g[0, 0].abs(),  # (28, 28): how much each input pixel moves the centre output
            "size": h.shape[-1],  # the side of this level's output
            "rule": receptive_field(nn.Sequential(*levels[: i + 1])),
            "measured": int(rows.max() - rows.min() + 1),
            "centre": centre * (28 // h.shape[-1]),  # the output's centre pixel, in input coordinates
        }

# %% [markdown]
# Each panel below shows, for the centre pixel of one level's output, how strongly each input pixel
# affects it (brighter is stronger; black is exactly zero). The dashed square is where the rule above
# says the receptive field lies.

# %%
fig, axes = plt.subplots(2, 3, figsize=(7.5, 5.2))
for row, downsample in enumerate((False, True)):
    for i in range(3):
        ax, info = axes[row, i], found[downsample, i]
        ax.imshow(info["grad"].sqrt() / info["grad"].sqrt().max(), cmap="magma", vmin=0, vmax=1)  # sqrt: faint stays visible
        r, c = info["rule"], info["centre"]
        ax.add_patch(Rectangle((c - r / 2, c - r / 2), r, r, fill=False, ls="--", lw=1, ec="cyan"))
        ax.set_xlim(-0.5, 27.5)
        ax.set_ylim(27.5, -0.5)
        field = f"{r}×{r}" + (": all of it" if r >= 28 else "")
        ax.set_title(f"level {i}: output {info['size']}×{info['size']}\nreceptive field {field}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel("stride-1 convs only" if not downsample else "with Downsample", fontsize=10)
fig.suptitle("which input pixels can change the centre output pixel?", fontsize=11)
fig.tight_layout()
plt.show()
plt.close(fig)

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'':<22}{'level':>6}{'output':>9}{'rule':>7}{'measured':>10}")
for downsample in (False, True):
    for i in range(3):
        info = found[downsample, i]
        label = "with Downsample" if downsample else "stride-1 convs only"
        side = f"{info['size']}×{info['size']}"
        print(f"{label:<22}{i:>6}{side:>9}{info['rule']:>7}{info['measured']:>10}")

# %% [markdown]
# Both stacks have exactly the same number of convolutions, and after the first level they see the same
# 7×7 patch. Then they part ways. With stride-1 convolutions only, the receptive field grows by a steady
# 6 pixels per level, to 19×19 at the end: the centre pixel never learns what happens in the image's
# corners. With downsampling, it grows to 17×17 after level 1 and past the whole image after level 2
# (the rule says 37; the measurement stops at the 28 pixels there are): one pixel of the 7×7 map has
# the whole digit in view. Shrinking also saves work. Each level halves the width and height and
# doubles the channels, so a 3×3 convolution at 7×7 with 128 channels costs as much as one at 28×28 with
# 32 channels ($128^2 \cdot 7^2 = 32^2 \cdot 28^2$); with stride-1 convolutions only, the third level would
# cost 16 times as much.
#
# ### The way up, and the skip connections
#
# The answer, a noise estimate for every pixel, must come out at 28×28. The U-Net's up path mirrors the
# down path: `Upsample` doubles the size again (a 3×3 convolution at the coarse size, then every value
# repeated into a 2×2 block). But the coarse maps are summaries. Could the answer be rebuilt from them
# alone? Look at what the network must output: the noise $\epsilon$. Averaged over 4×4 blocks of pixels
# (the area one position of the 7×7 map stands for), how much of it is left?

# %%
noise = torch.randn(1000, 1, 28, 28, generator=torch.Generator().manual_seed(5))  # 1000 noise images
coarse = F.interpolate(F.avg_pool2d(noise, 4), scale_factor=4, mode="nearest")  # 4x4 averages, back at 28x28
fine = noise - coarse  # what the 4x4 averages miss
print(f"variance of the noise: {noise.var():.3f}; of its 4×4 averages: {coarse.var():.3f}; "
      f"of the rest: {fine.var():.3f}  ({fine.var() / noise.var():.0%} of it)")
fig = show_images([noise[0], coarse[0], fine[0]], scale=1.8,
                  titles=["ε", "its 4×4 averages (7×7)", "ε minus the averages"])
plt.show()
plt.close(fig)

# %% [markdown]
# Almost nothing: 94 % of the noise's variance is detail finer than the 7×7 grid. (Independent noise
# averaged over 16 pixels keeps $1/16$ of its variance.) In principle the 128 channels of the 7×7 map
# could store the fine detail in some code, but the network would have to learn to pack and unpack
# it. The **skip connections** give it for free: each level of the down path hands its output straight
# across to the level of the up path with the same resolution. The two maps are *concatenated* along
# the channels, so the up path's ResBlock at 28×28 reads $32 + 32 = 64$ channels: what came up from
# below (context) and what came across (detail). Its first convolution mixes the two and writes 32
# channels, and its skip path, which must match, is a 1×1 convolution from 64 to 32. The join needs
# equal sizes, which is why section 2 stopped at 7×7.

# %%
# NBVAL_CHECK_OUTPUT
for i in range(3):
    res = model.up[i].res[0]
    print(f"up.{i}.res.0 reads {res.conv1.in_channels:>3} channels ([h, skip]) and writes {res.conv1.out_channels:>3}")

# %% [markdown]
# ## 7. Self-attention: every pixel looks at every other
#
# Convolutions are local: even at 7×7, relating the top of a digit to its bottom takes several layers.
# **Self-attention** relates all positions in one step. Every pixel becomes a *token*, a vector of its
# $C$ channels. Each token sends out a *query* ("what am I looking for?"), and offers a *key* ("what do I
# have?") and a *value* ("what I pass on"), all three linear functions of the token. A token's output is
# the average of all the values, weighted by how well its query matches each key. For the $N = H W$
# tokens as the rows of a matrix $X$ ($N \times C$):
#
# $$Q = X W_Q,\quad K = X W_K,\quad V = X W_V, \qquad
# \mathrm{Attention}(X) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V .$$
#
# The softmax runs along each row, so every row of weights is positive and sums to 1. The channels are
# split into several *heads* of $d = C / \text{heads}$ channels, each with its own weights, so that a
# token can look for several things at once. As in a ResBlock, the result is added to the input; a
# GroupNorm comes first and an output projection last: $x + \mathrm{proj}(\mathrm{Attention}(\mathrm{GN}(x)))$.
#
# Here it is by hand, using the layers of the package's `SelfAttention` with 128 channels and 4 heads, as
# in the middle of our U-Net. Its output projection is zero-initialised, like a ResBlock's last
# convolution, so we give it random weights first:

# %%
attn = SelfAttention(128, num_heads=4, num_groups=8)
attn.proj.reset_parameters()  # it starts at zero (the block starts as the identity); give it random weights
fmap = torch.randn(2, 128, 7, 7, generator=torch.Generator().manual_seed(6))  # (B, C, H, W)

B, C, H, W = fmap.shape
heads, d = 4, 128 // 4
with torch.no_grad():
    tokens = attn.norm(fmap).flatten(2).transpose(1, 2)  # (B, 49, C): one token per pixel
    q, k, v = attn.qkv(tokens).chunk(3, dim=2)  # each (B, 49, C)
    q, k, v = (z.view(B, H * W, heads, d).transpose(1, 2) for z in (q, k, v))  # each (B, heads, 49, d)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)  # (B, heads, 49, 49)
    out = (weights @ v).transpose(1, 2).reshape(B, H * W, C)  # (B, 49, C): the heads side by side again
    mine = fmap + attn.proj(out).transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
    print("same as SelfAttention:", torch.allclose(mine, attn(fmap), atol=1e-5))
    print(f"weights: {tuple(weights.shape)}, every row sums to 1: "
          f"{torch.allclose(weights.sum(dim=-1), torch.ones(()), atol=1e-5)}")

# %% [markdown]
# Below, the reach of one layer at 7×7, for the centre pixel. A 3×3 convolution reads 9 of the 49
# positions. Attention gives a weight to all 49, in each of its heads. (Each panel has its own colour
# scale, from 0 in dark purple. The weights come from random, untrained layers, so their patterns mean
# nothing yet; a trained head might, say, follow a stroke.)

# %%
footprint = torch.zeros(7, 7)
footprint[2:5, 2:5] = 1 / 9  # a 3x3 conv's window around the centre (3, 3)
fig, axes = plt.subplots(1, 5, figsize=(9, 2.2))
maps = [(footprint, "3×3 conv: 9 of 49")] + [(weights[0, i, 24].view(7, 7), f"attention head {i + 1}: 49 of 49")
                                             for i in range(heads)]
for ax, (m, title) in zip(axes, maps):
    ax.imshow(m, cmap="viridis", vmin=0)
    ax.plot(3, 3, marker="+", color="white", markersize=9)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
fig.suptitle("where the centre pixel's output reads from (+ marks the centre)", fontsize=10)
fig.tight_layout()
plt.show()
plt.close(fig)

# %% [markdown]
# Attention compares every token with every other, so its cost grows with the *square* of the number of
# pixels. That is why our U-Net uses it only in the middle, at 7×7:

# %%
# NBVAL_CHECK_OUTPUT
for side in (7, 14, 28):
    print(f"{side:>2}×{side:<2}: {side * side:>4} tokens, {(side * side) ** 2:>7,} query-key pairs per head")

# %% [markdown]
# At 28×28 there would be 256 times as many pairs as at 7×7. DDPM used attention at 16×16 on 32×32 images;
# `UNetConfig(attention_resolutions=(14,))` adds it at 14×14 here, if you want to experiment.

# %% [markdown]
# ## 8. The whole U-Net
#
# All the pieces, put together by `UNet(UNetConfig.mnist())`:
#
# ```
#  x_t (B, 1, 28, 28)                                   eps_pred (B, 1, 28, 28)
#    │ conv_in: 1 → 32 ch                                ▲ GroupNorm, SiLU, conv_out: 32 → 1 ch
#    ▼                                                   │
#  down.0  ResBlock   32 ch, 28×28 ─────── skip ───────► up.0  ResBlock on [h, skip]:  64 → 32 ch
#    │ Downsample: 32 → 64 ch                            ▲ Upsample: 64 → 32 ch
#    ▼                                                   │
#  down.1  ResBlock   64 ch, 14×14 ─────── skip ───────► up.1  ResBlock on [h, skip]: 128 → 64 ch
#    │ Downsample: 64 → 128 ch                           ▲ Upsample: 128 → 64 ch
#    ▼                                                   │
#  down.2  ResBlock  128 ch,  7×7  ─────── skip ───────► up.2  ResBlock on [h, skip]: 256 → 128 ch
#    │                                                   ▲
#    └─────► mid: ResBlock ► SelfAttention ► ResBlock ───┘  (128 ch, 7×7)
#
#  t (B,) ► sinusoidal features (B, 32) ► Linear, SiLU, Linear ► emb (B, 128): read by every ResBlock
# ```
#
# `shape_trace` runs the network once and records the output shape of every block, in the order they
# run. Follow the channels and the sizes down the U and back up:

# %%
# NBVAL_CHECK_OUTPUT
x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(7))  # (B, C, H, W)
t = torch.tensor([10, 900])  # (B,)
print(f"{'block':<16}{'output (B, C, H, W)':<22}")
for name, shape in shape_trace(model, x, t):
    block = model.get_submodule(name)
    note = f"reads [h, skip]: {block.conv1.in_channels} channels" if name.startswith("up") and isinstance(block, ResBlock) else ""
    print(f"{name:<16}{str(shape):<22}{note}")

# %% [markdown]
# ### How big is it?
#
# A network's size is its number of parameters, and almost all of ours sit in convolutions. A
# convolution from $C_\text{in}$ to $C_\text{out}$ channels has one $C_\text{in} \times k \times k$ filter
# for each output channel, plus one bias per output channel.
#
# ### Exercise 3.4: the parameters of a convolution
#
# Write `conv_parameters(c_in, c_out, kernel_size, bias)` returning the number of parameters of
# `nn.Conv2d(c_in, c_out, kernel_size, bias=bias)` as an `int`.

# %%
def conv_parameters(c_in: int, c_out: int, kernel_size: int, bias: bool = True) -> int:
    """Number of weights (and biases) in nn.Conv2d(c_in, c_out, kernel_size, bias=bias)."""
    ### BEGIN SOLUTION
    return c_out * c_in * kernel_size * kernel_size + (c_out if bias else 0)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_conv_parameters(conv_parameters)

# %% [markdown]
# With it, count one ResBlock of the up path by hand: `up.1.res.0` reads 128 channels ($[h, \text{skip}]$)
# and writes 64. Besides its three convolutions it has the linear layer for the time embedding
# (128 inputs, 64 outputs, plus biases) and two GroupNorms with a $\gamma$ and a $\beta$ per channel:

# %%
# NBVAL_CHECK_OUTPUT
by_hand = {
    "conv1 3×3, 128 → 64": conv_parameters(128, 64, 3),
    "conv2 3×3, 64 → 64": conv_parameters(64, 64, 3),
    "skip 1×1, 128 → 64": conv_parameters(128, 64, 1),
    "emb_proj Linear, 128 → 64": 128 * 64 + 64,
    "norm1 (128 ch) + norm2 (64 ch)": 2 * 128 + 2 * 64,
}
for part, n in by_hand.items():
    print(f"{part:<32}{n:>8,}")
print(f"{'total by hand':<32}{sum(by_hand.values()):>8,}")
print(f"{'count_parameters(up.1.res.0)':<32}{count_parameters(model.up[1].res[0]):>8,}")

# %% [markdown]
# And the whole network, part by part. Beside the parameters we count the work: the multiply-adds that
# the convolutions and linear layers do for one 28×28 image (counted with forward hooks; attention's
# own two matrix products add another 0.6 million, under 1 % of the total).

# %%
def part_of(name: str) -> str:
    """'down.1.res.0.conv1' -> 'down.1'; 'norm_out' and 'conv_out' -> 'out'; otherwise the first name."""
    first, *rest = name.split(".")
    if first in ("down", "up"):
        return f"{first}.{rest[0]}"
    return "out" if first in ("norm_out", "conv_out") else first


macs: dict[str, int] = {}


def count_macs(name: str):
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        per_output = module.weight[0].numel()  # a conv's C_in * k * k (or a linear layer's inputs) per output
        macs[part_of(name)] = macs.get(part_of(name), 0) + output[0].numel() * per_output
    return hook


handles = [m.register_forward_hook(count_macs(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
with torch.no_grad():
    model(x[:1], t[:1])  # one image
for handle in handles:
    handle.remove()

# %%
# NBVAL_CHECK_OUTPUT
params: dict[str, int] = {}
for name, p in model.named_parameters():
    params[part_of(name)] = params.get(part_of(name), 0) + p.numel()
order = ["time_embed", "conv_in", "down.0", "down.1", "down.2", "mid", "up.2", "up.1", "up.0", "out"]
where = {"down.0": "28×28", "down.1": "14×14", "down.2": "7×7", "mid": "7×7", "up.2": "7×7", "up.1": "14×14",
         "up.0": "28×28", "conv_in": "28×28", "out": "28×28", "time_embed": ""}
total_params, total_macs = sum(params.values()), sum(macs.values())
print(f"{'part':<11}{'at':>7}{'parameters':>12}{'share':>7}{'multiply-adds':>15}{'share':>7}")
for part in order:
    print(f"{part:<11}{where[part]:>7}{params[part]:>12,}{params[part] / total_params:>7.0%}"
          f"{macs[part]:>15,}{macs[part] / total_macs:>7.0%}")
print(f"{'total':<11}{'':>7}{total_params:>12,}{'':>7}{total_macs:>15,}")
print(f"count_parameters(model) = {count_parameters(model):,}")

# %% [markdown]
# About two million parameters. They are far from evenly spread: the three parts at 7×7 (`down.2`, `mid`
# and `up.2`) hold 80 % of them, because a 3×3 convolution's size grows with the *square* of the channel
# count, and the channels double at every level. The work, though, is spread fairly evenly, 9 % to 20 %
# per part: the bigger convolutions at the bottom run on 16 times fewer pixels. Parameters live at the
# bottom of the U, computation happens everywhere.
#
# The presets of `UNetConfig` scale this design. `tiny()` is for tests and quick mode, `mnist()` is the
# network above, and `mnist_conditional()` adds a table of 11 learned class embeddings (one per digit and
# a "no label" row), used from chapter 06 on:

# %%
# NBVAL_CHECK_OUTPUT
for preset in ("tiny", "mnist", "mnist_conditional"):
    config = getattr(UNetConfig, preset)()
    print(f"UNetConfig.{preset + '()':<20} channels {str(config.channels):<15} "
          f"{count_parameters(UNet(config)):>10,} parameters")

# %% [markdown]
# ### A first backward pass
#
# Finally, one step of what chapter 04 does thousands of times: noise a batch, ask the network for the
# noise, measure the mean squared error, and compute the gradients. Zero-initialised layers raise a fair
# question: if `conv_out` is zero, the output does not depend on anything before it, so do those layers
# get any gradient at all? We count, over three small steps of plain gradient descent:

# %%
# NBVAL_CHECK_OUTPUT
seed_everything(8)
net = UNet(UNetConfig.mnist())
optimizer = torch.optim.SGD(net.parameters(), lr=0.02)
x0_batch, _ = mnist_tensors("train", n=32)  # (32, 1, 28, 28)
gen = torch.Generator().manual_seed(9)
for step in range(3):
    t_batch = torch.randint(0, 1000, (32,), generator=gen)  # (B,): a random step per image
    eps_batch = torch.randn(x0_batch.shape, generator=gen)
    loss = ((net(schedule.add_noise(x0_batch, eps_batch, t_batch), t_batch) - eps_batch) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    reached = sum(p.numel() for p in net.parameters() if p.grad is not None and p.grad.abs().sum() > 0)
    print(f"step {step}: loss {loss.item():.2f}, parameters with a gradient: {reached:>9,} of {count_parameters(net):,}")
    optimizer.step()

# %% [markdown]
# At the first step only `conv_out`'s 289 parameters get a gradient: everything before it is multiplied
# by zero. But one step later `conv_out` is no longer zero, and the gradient flows back through it, along
# the skip paths of every block and through the resampling convolutions, into the last convolution of
# every branch: about half of the parameters. One more step, and every parameter is learning. The loss starts near 1, the mean of $\epsilon^2$: a network that answers
# zero is wrong by exactly the noise. Three steps already bring it down; how far it can go, and how to
# train well, is chapter 04's job.
#
# How long does one such step take? On a laptop CPU this decides how long training takes:

# %%
reps = pick(full=5, quick=2)
t_batch = torch.randint(0, 1000, (32,), generator=gen)
xt_batch = schedule.add_noise(x0_batch, eps_batch, t_batch)
start = time.perf_counter()
for _ in range(reps):
    loss = ((net(xt_batch, t_batch) - eps_batch) ** 2).mean()
    loss.backward()
seconds = (time.perf_counter() - start) / reps
print(f"one forward and backward pass, batch of 32: {seconds * 1000:.0f} ms on {torch.get_num_threads()} thread(s)")
print(f"about {3 * 32 * total_macs / seconds / 1e9:.1f} billion multiply-adds per second "
      f"(a backward pass costs about twice a forward)")

# %% [markdown]
# ## Summary
#
# - The denoiser $\epsilon_\theta(x_t, t)$ maps an image (B, 1, 28, 28) and steps (B,) to a noise estimate
#   of the image's shape. It needs per-pixel precision *and* a view of the whole image.
# - **Convolutions** apply one small filter everywhere: output size
#   $\lfloor (H + 2p - k)/s \rfloor + 1$, parameters $C_\text{out} C_\text{in} k^2 + C_\text{out}$.
#   A stride-2 convolution halves the image.
# - **GroupNorm** normalises per image, over groups of channels, so an image's output never depends on
#   its batch-mates.
# - The **timestep embedding** $[\sin(t\,\omega_i), \cos(t\,\omega_i)]$, $\omega_i = 10000^{-i/h}$, describes
#   every step with the same resolution: similarity depends only on the distance between steps.
# - A **ResBlock** adds a learned correction to its input, $x + F(x)$, with the time embedding added as
#   one shift per channel. Zero-initialised, every block starts as the identity, and the whole U-Net
#   starts by answering 0.
# - **Downsampling** grows the receptive field geometrically: with the same number of convolutions, the
#   centre pixel sees 19×19 pixels without it and the whole image with it. **Skip connections** bring the
#   fine detail back, 94 % of the noise's variance. **Self-attention** at 7×7 lets every position read
#   every other.
# - `UNet(UNetConfig.mnist())`: 28 → 14 → 7 and back, 32/64/128 channels, 1,968,545 parameters, most of
#   them at 7×7; `shape_trace` and `count_parameters` show it layer by layer.
#
# ## What's next
#
# The network exists, but it answers zero to every question. In **chapter 04** we train it: draw an
# image, a step $t$ and a noise $\epsilon$, ask the network for $\epsilon$, and nudge its two million
# parameters to reduce the squared error, first on 2-D points, where we can watch it learn, then on MNIST.
