# %% [markdown]
# # 00 · Welcome to diffusion-lab
#
# Type "a watercolour of a lighthouse at dawn" into DALL·E 2, Stable Diffusion or Midjourney and a
# picture appears that never existed before. DALL·E 2 and Stable Diffusion are published
# **diffusion models**, and Midjourney is very likely one too (its makers have not published its
# architecture). In this course you will build one yourself, from the first line of PyTorch to a small
# text-to-image system, on an ordinary laptop.
#
# **Learning goals**
#
# - Say in two sentences what a diffusion model does, and where DALL·E 2, Stable Diffusion and Midjourney fit.
# - Check that your set-up works (and know what to do when it doesn't).
# - Know how the chapters are organised: quick mode, exercises and their checks, the `diffusion_lab` package.
# - Warm up on the three tensor skills every later chapter uses.
#
# *Runs in a few seconds.*

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
import matplotlib.pyplot as plt
import torch

from diffusion_lab.cli.doctor import report, run_checks
from diffusion_lab.config import mode_name, pick, pick_device
from diffusion_lab.data import load_mnist
from diffusion_lab.exercises import check_mse, check_scale_per_sample, check_to_model_range
from diffusion_lab.notebook.figures import show_images, use_course_style
from diffusion_lab.schedules import NoiseSchedule

use_course_style()
print(f"mode: {mode_name()}")

# %% [markdown]
# ## 1. What a diffusion model does
#
# Imagine filming a drop of ink spreading in a glass of water, then playing the film backwards: a
# cloudy glass slowly gathers itself into a sharp drop. A diffusion model learns to play that film
# backwards for images.
#
# - **Forward (easy, fixed):** take a real image and add a little Gaussian noise, hundreds of times,
#   until only static is left. No learning is needed for this part.
# - **Reverse (learned):** train a neural network to remove *a little* noise: shown a noisy image,
#   it predicts the noise in it. Starting from pure static and applying the network step after step
#   produces a brand-new image that looks like the training data.
# - **Conditioning:** give the network a description ("a red circle", a class label, a caption) at
#   every step, and the image it un-noises towards follows the description.
#
# Here is the forward half on a handwritten digit from MNIST, the data set we will train on:

# %%
images, labels = load_mnist("train")             # uint8, (N, 28, 28) and (N,)
digit = images[0].float().div(127.5).sub(1).unsqueeze(0)   # (1, 28, 28) in [-1, 1]
schedule = NoiseSchedule.from_name("cosine", T=1000)
steps = [0, 100, 250, 400, 550, 700, 850, 999]
eps = torch.randn(digit.shape, generator=torch.Generator().manual_seed(0))
noised = torch.stack([schedule.add_noise(digit, eps, t) for t in steps])
show_images(noised, nrow=8, titles=[f"t = {t}" for t in steps],
            suptitle="forward: data → noise (chapter 01)   ·   a trained model runs it backwards (chapter 05)")
plt.show()

# %% [markdown]
# ## 2. Where DALL·E 2, Stable Diffusion and Midjourney fit
#
# DALL·E 2 and Stable Diffusion generate images by running a learned denoiser backwards from noise,
# steered by a text prompt; their papers say so. Midjourney does not say how it works, so for it that
# is an educated guess, not a fact. They differ in *where* the denoising happens and *how* the text steers it.
#
# | system | who, when | the idea that matters | where you build it |
# |---|---|---|---|
# | **DALL·E 2** | OpenAI, 2022 | Text goes through CLIP's text encoder; a *prior* turns that text embedding into an image embedding; a diffusion *decoder* turns the image embedding into a 64×64 picture; two diffusion *upsamplers* take it to 1024×1024 ("unCLIP", Ramesh et al. 2022). | chapter 10 |
# | **Stable Diffusion** | CompVis, Stability AI and Runway, 2022 | *Latent* diffusion (Rombach et al. 2022): an autoencoder squeezes a 512×512 image into a 64×64×4 latent, the U-Net denoises there (far cheaper), and reads the prompt's CLIP token vectors through cross-attention; classifier-free guidance sharpens prompt-following. Its weights are public. | chapters 06–08, 11 |
# | **Midjourney** | Midjourney, Inc., 2022 | A closed model (its architecture is not published) behind a simple loop: `/imagine` a prompt, get a grid of four, then upscale or ask for variations of the one you like. | chapter 11 |
#
# Underneath the published systems are the same pieces, and each has its chapter: the noising process (01–02),
# a U-Net denoiser (03), the training objective (04), samplers (05), text conditioning (06) and
# guidance (07).
#
# ## 3. The course map
#
# | # | chapter | you build |
# |---|---|---|
# | 00 | welcome | this tour, a set-up check, tensor warm-ups |
# | 01 | forward noising | one noising step, the Markov chain, the closed form $q(x_t \mid x_0)$ |
# | 02 | noise schedules | linear, cosine and sigmoid schedules; how long each keeps a digit recognisable |
# | 03 | a small U-Net | the network that predicts the noise |
# | 04 | training | the noise-prediction loss and a training loop |
# | 05 | sampling | DDPM and DDIM: from pure noise to digits |
# | 06 | text conditioning | a tokenizer, a text encoder and cross-attention |
# | 07 | guidance | classifier and classifier-free guidance |
# | 08 | latent diffusion | an autoencoder, its latent scale, diffusion in its latent space, image-to-image |
# | 09 | scores, SDEs, flows | the continuous-time view of the same idea; samplers with fewer steps; flow matching |
# | 10 | CLIP and DALL·E 2 | a small CLIP, a diffusion prior, a decoder from image embeddings |
# | 11 | your own text-to-image system | a mini Stable Diffusion and a Midjourney-style `/imagine` loop |
#
# All twelve chapters, 00 to 11, are in `chapters/`.
#
# ## 4. Set-up check
#
# The cell below runs the same checks as `python -m diffusion_lab doctor` in a terminal. Every line
# should say `ok`. If one says `BAD`, its *fix* line tells you what to do; the README has more help.

# %%
print(report(run_checks()))
print("\nthis notebook computes on:", pick_device())

# %% [markdown]
# The course runs on a CPU: every chapter is sized for a laptop. If you have an NVIDIA GPU (or an
# Apple-silicon Mac), the same code picks it up through `pick_device()` and later chapters train
# faster and for longer.
#
# ## 5. How the chapters work
#
# **The package.** Each chapter builds an idea in a few visible lines, checks that they agree with
# the `diffusion_lab` package's version, then uses the package. So you always see the idea, and
# later chapters rest on tested code. To read the package's version of anything, use `??`, e.g.
# `NoiseSchedule.add_noise??` in a cell.
#
# **Quick mode.** Some chapters train networks. Set the environment variable
# `DIFFUSION_LAB_QUICK=1` before starting Jupyter and every chapter runs a shortened version (fewer
# training steps, fewer samples): that is how the course's automatic tests run all chapters in a
# few minutes. You get the full version by default. Code asks for a setting with `pick`:

# %%
n_samples = pick(full=10_000, quick=500)
print(f"in {mode_name()} mode this chapter would use {n_samples:,} samples")

# %% [markdown]
# Where full training would take too long on a laptop, a chapter loads a pretrained checkpoint
# from `data/checkpoints/` and says so, with the command that made it.
#
# **Exercises.** Each chapter has at least three. An exercise is a function for you to write; the
# committed chapters in `chapters/` contain worked solutions between `### BEGIN SOLUTION` and
# `### END SOLUTION` lines, with every output. `python3 course.py lab` opens your own copies instead,
# in `workspace/`: solutions blanked, outputs cleared, and a comment in each exercise saying where its
# worked solution is. Your copies are never overwritten; a later start only adds new chapters. To
# make copies elsewhere (`--force` replaces existing ones, and the answers in them):
#
# ```bash
# python -m diffusion_lab student --out my_copies
# ```
#
# (Teachers: the markers are nbgrader's. `tools/nbgrader_course.py` turns the chapters into an nbgrader
# course that hands them out, collects them and grades the checks: see `docs/teaching.md`.)
# The cell after each exercise runs its **check**, which tries your function on test inputs and
# either prints ✅ or tells you what is wrong.
#
# ## 6. Warm-up exercises
#
# Three tensor skills come back in every chapter.
#
# ### Exercise 0.1: pixels into the model's range
#
# Images arrive as `uint8` pixels from 0 (black) to 255 (white). Our models work with floats in
# $[-1, 1]$, the same range as the noise they will be mixed with. Write `to_model_range(x)` so that 0
# maps to −1 and 255 to 1. *Hint:* convert with `.float()` first: integer arithmetic would round.

# %%
def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in 0..255 (any shape) -> float32 in [-1, 1]."""
    ### BEGIN SOLUTION
    return x.float() / 127.5 - 1
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_to_model_range(to_model_range)

# %%
batch = to_model_range(images[:16]).unsqueeze(1)          # (16, 1, 28, 28)
print("shape", tuple(batch.shape), "min", batch.min().item(), "max", batch.max().item())
show_images(batch, nrow=8, titles=[str(int(y)) for y in labels[:16]], suptitle="MNIST digits in [-1, 1]")
plt.show()

# %% [markdown]
# ### Exercise 0.2: one number per sample
#
# Again and again we multiply each image of a batch by *its own* number (each image is noised to
# its own step). `x` has shape `(B, C, H, W)` (or `(B, 2)` for 2-D points) and `c` has shape `(B,)`.
# `c * x` fails or does the wrong thing, because broadcasting lines up the *last* dimensions. Write
# `scale_per_sample(x, c)`. *Hint:* give `c` trailing dimensions of size one, e.g. with `c.view(...)`
# or `c[:, None, None, None]`, and make it work for any number of dimensions. (The package's version
# is `diffusion_lab.tensors.append_dims(c, x.ndim)`; every later chapter uses it.)

# %%
def scale_per_sample(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Multiply sample i of x (B, ...) by c[i]; c has shape (B,)."""
    ### BEGIN SOLUTION
    return c.view(-1, *[1] * (x.ndim - 1)) * x
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_scale_per_sample(scale_per_sample)

# %% [markdown]
# ### Exercise 0.3: mean squared error
#
# Chapter 04 trains every model by making its predicted noise close to the true noise, measured by
# the mean squared error: the average of the squared differences over every element. Write
# `mse(a, b)` returning a 0-dimensional tensor. (PyTorch has `torch.nn.functional.mse_loss`; write it
# yourself here.)

# %%
def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of (a - b)^2 over every element."""
    ### BEGIN SOLUTION
    return ((a - b) ** 2).mean()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_mse(mse)
print("MSE between a digit and pure noise:", round(mse(batch[0], eps).item(), 2))

# %% [markdown]
# ## Summary
#
# - A diffusion model learns to remove noise a little at a time; run from pure noise, it creates.
# - DALL·E 2 and Stable Diffusion run a learned denoiser steered by a prompt (Midjourney most likely
#   too; its architecture is unpublished). Stable Diffusion does it in a compressed latent space,
#   DALL·E 2 goes through CLIP embeddings.
# - `python -m diffusion_lab doctor` checks your set-up; `DIFFUSION_LAB_QUICK=1` shortens every
#   chapter; `python -m diffusion_lab student` writes exercise copies without solutions.
#
# ## What's next
#
# **Chapter 01** builds the forward process: one noising step, the chain of a thousand, and the
# shortcut that jumps to any step at once.
