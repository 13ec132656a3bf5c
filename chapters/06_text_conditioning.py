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
# # 06 · Text conditioning: from class labels to words
#
# Chapter 05's model draws *a* digit, and chance decides which. A text-to-image model draws what you
# ask for: "a small red circle in the top left". This chapter builds that ability in the order the
# field did. First a class label, one learned vector per digit. Then words: a **tokenizer** turns a
# prompt into integers, a small **text encoder** turns them into one vector per word, and
# **cross-attention** lets every pixel of the U-Net read those vectors. This is the mechanism Stable
# Diffusion reads its prompt with, at a scale a laptop can train (section 2 notes the one place where we
# do it differently: a padding mask). Then we look inside: which words does each
# part of the picture read? And we ask the question that decides whether words were worth it: can the
# model draw a green triangle, when no picture it was trained on showed one?
#
# **Learning goals**
#
# - Condition a denoiser on a class label, and explain why captions need something else.
# - Tokenize a prompt into a padded row of ids, with a mask that marks the padding.
# - Explain what the text encoder outputs, and why it is one vector per token rather than one per prompt.
# - Write cross-attention (queries from the pixels, keys and values from the words) and check it
#   against the package's block.
# - Train a text-conditioned U-Net briefly, load the shipped one, and draw from your own prompts.
# - Read per-word attention maps, and measure, with an attribute scorer, how well the model draws
#   combinations of words it never saw together.
#
# **Run time:** about 2 minutes in full mode on a 2-core laptop CPU, most of it the short training run
# of section 5 and the measurement of section 8.

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

from diffusion_lab.config import mode_name, pick, pick_device, seed_everything
from diffusion_lab.data.shapes import COLOURS, HELD_OUT, SHAPES, caption_vocabulary, combinations, make_shapes
from diffusion_lab.exercises import (
    check_cross_attention,
    check_masked_attention_weights,
    check_tokenize,
    check_word_map,
)
from diffusion_lab.judges.metrics import attribute_accuracy
from diffusion_lab.models import count_parameters, shape_trace
from diffusion_lab.models.attention import CrossAttention, record_cross_attention
from diffusion_lab.models.text import TextEncoder, TextEncoderConfig, Tokenizer
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.notebook.attention_maps import (
    foreground_mask,
    region_contrast,
    show_word_maps,
    token_labels,
    token_maps,
)
from diffusion_lab.notebook.figures import make_grid, show_images, to_display, use_course_style
from diffusion_lab.notebook.live_plot import LiveLossPlot
from diffusion_lab.notebook.widgets import prompt_explorer
from diffusion_lab.pipelines import generate
from diffusion_lab.pretrained import load_pretrained, read_manifest
from diffusion_lab.sampling import DDIMScheduler, DDPMScheduler, sample
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import DiffusionObjective, TrainConfig, fit

use_course_style()
seed_everything(0)
device = pick_device()  # CUDA, then Apple's MPS, then the CPU: models train and sample there
print(f"mode: {mode_name()}, device: {device}")

# %% [markdown]
# ## 1. From a class label to a caption
#
# The simplest way to ask for something is a **class label**. The course's `mnist_cond` model, the
# class-conditional twin of chapter 04's `mnist`, learned one vector per digit, a row of an embedding
# table, and adds it to the timestep embedding that every residual block already reads (chapter 03):
#
# $$\text{emb} = \text{TimeEmbed}(t) + \text{ClassEmbed}(y), \qquad \epsilon_\theta(x_t, t, y).$$
#
# In the U-Net's `forward` that is one line, `emb = emb + self.class_embed(cond)`. The table
# has one row more than there are digits: row 10 means "no label", the empty condition $\varnothing$ that
# chapter 07 needs. Ask for each digit three times, with 20 DDIM steps (chapter 05):

# %%
mnist_cond = load_pretrained("mnist_cond", device=device)
print(mnist_cond.model.class_embed)  # 11 rows: the digits 0-9 and "no label"
ddim = DDIMScheduler(mnist_cond.schedule)
ddim.set_timesteps(20)
labels = torch.arange(10, device=device).repeat(pick(3, 1))  # 0..9, three times
digits = sample(lambda xt, t: mnist_cond.model(xt, t, labels), ddim, (len(labels), 1, 28, 28),
                generator=torch.Generator().manual_seed(0), device=device)
fig = show_images(digits, nrow=10, scale=0.7, suptitle="mnist_cond, asked for 0, 1, ..., 9 in each row")
plt.show()

# %% [markdown]
# Most of the 30 pictures show the digit that was asked for; a few, such as the first row's 1, 4 and 8, are
# scrawls. A label works when there is a short list of things to ask for. Captions are different. The
# course's **shapes** data set draws one coloured shape on a dark background and describes it in words:

# %%
examples = make_shapes(16, seed=1)
titles = [f"{a.size} {a.colour} {a.shape}\n{a.position}" for a in examples.attributes]
fig = show_images(examples.images, nrow=8, titles=titles, scale=1.45)
plt.show()

# %% [markdown]
# Five shapes, five colours, two sizes and five positions make 250 combinations. A label per
# combination would need 250 classes, each learned separately from its own share of the pictures. The
# model could not know that "red" means the same thing in "red circle" and in "red square". Worse,
# a combination with no pictures would have no label at all, so it could never be asked for. Words fix
# both: "red" is one word wherever it appears, and a new sentence is made of known words.
#
# To test whether the model really composes words, the data set keeps three colour-shape pairs out of
# training altogether. The model sees green things and triangles, but never a green triangle:

# %%
# NBVAL_CHECK_OUTPUT
seen, held_out = combinations("train"), combinations("held_out")
print(f"{len(combinations('all'))} combinations: {len(seen)} in the training pictures, {len(held_out)} held out")
print("never shown in training:", ", ".join(f"{colour} {shape}s" for colour, shape in sorted(HELD_OUT)))

# %% [markdown]
# Section 8 measures what the model draws when asked for them.
#
# ## 2. Tokenizing: from words to integers
#
# A network reads numbers, not letters. A **tokenizer** splits the prompt into pieces it knows and
# replaces each by its index in a vocabulary. Stable Diffusion uses CLIP's tokenizer: about 49,000
# sub-word pieces, every prompt cut or padded to 77 tokens. The shapes captions need only 20 words, so
# ours splits on spaces. Three special tokens join them: `<pad>` fills a short prompt up to a fixed
# length, `<start>` opens every prompt (as in CLIP), and `<unk>` can stand for an unknown word.

# %%
# NBVAL_CHECK_OUTPUT
tokenizer = Tokenizer(caption_vocabulary())  # the 20 words of the shapes captions
print(tokenizer)
print("vocabulary:", " ".join(tokenizer.vocabulary))
ids = tokenizer.encode(["a small red circle in the top left", "A large green triangle"])
print(ids)  # (2, 12): one row per prompt, padded with <pad> = 0
print(tokenizer.decode(ids))
print(tokenizer.mask(ids).int())  # 1 for a real token, 0 for padding

# %% [markdown]
# Every prompt becomes a row of the same length, so a batch of prompts is one $(B, L)$ tensor with
# $L = 12$, like a batch of class labels is one $(B,)$ tensor. Padding must not mean anything, and the
# **mask** says where it is: the model will be told to ignore those positions.
#
# Here we part from Stable Diffusion. Versions 1.x and 2.x were trained without a padding mask: the
# U-Net attends to all 77 positions, padding included. That works for them because their CLIP text
# encoder lets each position read the positions before it, so the vectors at the padding positions
# come out as summaries of the whole prompt, and the U-Net learnt to use them. Our encoder and U-Net
# learn together from scratch, and our prompts vary in length (a short prompt is mostly padding), so we
# mask: the model reads only real tokens, the attention weights of section 7 are spread over real words
# alone, and nothing at a padding position can reach the picture.
#
# A word the tokenizer does not know is an error, with a hint, rather than a silent guess:

# %%
# NBVAL_CHECK_OUTPUT
try:
    tokenizer.encode("a small red dragon")
except ValueError as err:
    print(err)

# %% [markdown]
# ### Exercise 6.1: tokenize a prompt
#
# Write `tokenize(prompt, token_ids, max_length)` returning the ids of one prompt as a list of ints:
# the id of `<start>`, then the id of each word of the lower-cased prompt (split on spaces), then the
# id of `<pad>` until there are `max_length` ids. `token_ids` is a dict from token to id, such as
# `tokenizer.ids`. *Hint:* look the special tokens up (`token_ids["<pad>"]`) rather than writing their
# numbers; the check also tries a vocabulary numbered differently.

# %%
def tokenize(prompt: str, token_ids: dict[str, int], max_length: int) -> list[int]:
    """<start>, one id per lower-cased word of the prompt, then <pad> up to max_length ids."""
    ### BEGIN SOLUTION
    ids = [token_ids["<start>"]] + [token_ids[word] for word in prompt.lower().split()]
    return ids + [token_ids["<pad>"]] * (max_length - len(ids))
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_tokenize(tokenize)
print(tokenize("A large green triangle", tokenizer.ids, 12) == tokenizer.encode("A large green triangle")[0].tolist())

# %% [markdown]
# ## 3. The text encoder: one vector per token
#
# Ids are names, not meanings: id 8 ("red") is not "closer" to id 9 ("green") than to id 18 ("top").
# The **text encoder** turns the $L$ ids into $L$ vectors of width $D$, the **context** $c$:
#
# $$c = \text{TextEncoder}(\text{ids}) \in \mathbb R^{L \times D}.$$
#
# Ours is a small transformer. A learned table gives each token a vector, and a second table adds
# a vector for each position. Two blocks of self-attention then let each token's vector take in the
# others (padding masked out), so "top" in "top left" can end up different from "top" in "top right".
# Note what it does *not* do: squeeze the prompt into one vector. Each word keeps its own vector, so
# the image model can look up "red" and "top left" separately, at different places in the picture.

# %%
torch.manual_seed(0)
encoder = TextEncoder(TextEncoderConfig(tokenizer.vocabulary, width=64))  # learns from scratch, beside the U-Net (section 5)
context = encoder(ids)
print(f"ids {tuple(ids.shape)} -> context {tuple(context.shape)}: one {encoder.dim}-number vector per token")
print(f"text encoder: {count_parameters(encoder):,} parameters")

# %% [markdown]
# Stable Diffusion 1.x takes the text encoder of OpenAI's CLIP ViT-L/14 instead: trained beforehand, on
# 400 million captioned images, to match captions with pictures, and kept frozen, with 77 vectors of
# width 768. Stable Diffusion 2.x swapped in OpenCLIP ViT-H/14, trained the same way on the larger
# LAION-2B set, whose vectors have width 1024. Ours learns together with the U-Net, from the 20-word
# captions alone. Chapter 10 trains a CLIP-style encoder and plugs it in here through the same interface.
#
# ## 4. Cross-attention: each pixel reads the words
#
# How does the U-Net use $L$ vectors? Chapter 03's **self-attention** let every pixel of a feature map
# look at every other pixel. **Cross-attention** is the same computation with the words on the other
# side. Each pixel sends a *query* ("what should I be?"), each token offers a *key* (what it is about)
# and a *value* (what it adds). A pixel takes a mix of the values, weighted by how well its query
# matches each key.
#
# With the feature map $h$ flattened to $N = H \cdot W$ rows of $C$ channels, and the context
# $c \in \mathbb R^{L \times D}$:
#
# $$Q = \text{GroupNorm}(h)\, W_Q \in \mathbb R^{N \times C}, \qquad K = c\, W_K \in \mathbb R^{L \times C}, \qquad
# V = c\, W_V \in \mathbb R^{L \times C},$$
#
# $$A = \text{softmax}\Big(\frac{Q K^\top}{\sqrt{d}} + M\Big) \in \mathbb R^{N \times L}, \qquad
# \text{out} = h + (A V)\, W_O,$$
#
# where $M$ is $0$ at real tokens and $-\infty$ at padding, so that padding gets exactly zero weight.
# Row $n$ of $A$ says how much pixel $n$ reads each token, and sums to 1. Like chapter 03's attention,
# the channels are split into heads of $d = C / \text{heads}$ channels that attend separately. The
# whole thing is added to $h$: a residual block (Rombach et al. 2022, §3.3).
#
# ### Exercise 6.2: attention weights with a mask
#
# Write `masked_attention_weights(q, k, mask)` for queries `q` $(B, N, d)$, keys `k` $(B, L, d)$ and a
# mask $(B, L)$ that is `True` at real tokens. Return $A$, shaped $(B, N, L)$. *Hint:*
# `scores.masked_fill(~mask[:, None, :], float("-inf"))` before the softmax; $e^{-\infty} = 0$.

# %%
def masked_attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) over the keys, with weight 0 where mask is False: (B, N, L)."""
    ### BEGIN SOLUTION
    scores = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5  # (B, N, L)
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(dim=-1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_masked_attention_weights(masked_attention_weights)

# %% [markdown]
# ### Exercise 6.3: cross-attention in a few lines
#
# Now the whole block. `block` is the package's `CrossAttention`: use its layers `block.norm`
# (GroupNorm), `block.to_q`, `block.to_k`, `block.to_v` and `block.proj` ($W_O$), and split into
# `block.num_heads` heads. `x` is $(B, C, H, W)$, `context` $(B, L, D)$, `context_mask` $(B, L)$.
# *Hint:* `x.flatten(2).transpose(1, 2)` gives the $(B, HW, C)$ rows; `.view(B, -1, heads, d).transpose(1, 2)`
# splits them into heads, $(B, \text{heads}, \cdot, d)$. Reshape back at the end and add `x`.

# %%
def cross_attention(block: CrossAttention, x: torch.Tensor, context: torch.Tensor,
                    context_mask: torch.Tensor) -> torch.Tensor:
    """x + proj(attention of the pixels of x to the tokens of context): (B, C, H, W)."""
    ### BEGIN SOLUTION
    B, C, H, W = x.shape
    nh, d = block.num_heads, C // block.num_heads
    pixels = block.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
    q = block.to_q(pixels).view(B, H * W, nh, d).transpose(1, 2)  # (B, nh, HW, d)
    k = block.to_k(context).view(B, -1, nh, d).transpose(1, 2)  # (B, nh, L, d)
    v = block.to_v(context).view(B, -1, nh, d).transpose(1, 2)  # (B, nh, L, d)
    scores = q @ k.transpose(-2, -1) / d**0.5  # (B, nh, HW, L)
    weights = scores.masked_fill(~context_mask[:, None, None, :], float("-inf")).softmax(dim=-1)
    h = (weights @ v).transpose(1, 2).reshape(B, H * W, C)  # (B, HW, C): the heads side by side again
    return x + block.proj(h).transpose(1, 2).reshape(B, C, H, W)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_cross_attention(cross_attention)

# %% [markdown]
# Your function against the package's block, on the context of section 3. One detail first: a new
# `CrossAttention` starts with $W_O = 0$ (`zero_init`), so at first it adds nothing and the U-Net
# behaves as if there were no text. Training then grows the text pathway from zero, without disturbing
# what the rest of the network does. Here we give $W_O$ random weights so that the comparison means
# something:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
block = CrossAttention(channels=64, context_dim=encoder.dim, num_heads=4, num_groups=8)
x = torch.randn(2, 64, 8, 8)
print(f"a new block adds nothing, output = input: {torch.equal(block(x, context), x)}")
with torch.no_grad():
    torch.nn.init.normal_(block.proj.weight, std=0.1)  # as if trained
    mine, package = cross_attention(block, x, context, tokenizer.mask(ids)), block(x, context, tokenizer.mask(ids))
print(f"same as the package's CrossAttention: {torch.allclose(mine, package, atol=1e-5)}")

# %% [markdown]
# Where does the U-Net read the text? After the residual blocks at 16 × 16 and 8 × 8 pixels, on the way
# down, in the middle and on the way up (Stable Diffusion reads it at several resolutions too). The
# 32 × 32 level has none: there, 1,024 pixels would each attend, the most expensive place for it. The
# text-conditioned model, traced block by block on the two prompts of section 2:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
model = TextUNet(TextUNetConfig.shapes(tokenizer.vocabulary))
context, mask = model.context(ids)  # the text encoder, and the mask of the padding
trace = shape_trace(model.unet, torch.randn(2, 3, 32, 32), torch.tensor([10, 500]), context=context,
                    context_mask=mask)
for name, shape in trace:
    if "xattn" in name:
        print(f"{name:20s} {shape}: {shape[2] * shape[3]} pixels read {ids.shape[1]} tokens")
print(f"parameters: {count_parameters(model):,} in all, {count_parameters(model.text_encoder):,} of them "
      f"in the text encoder")

# %% [markdown]
# ## 5. Training on captions
#
# Training changes in one place only: the model gets each picture's caption ids as well,
# $\epsilon_\theta(x_t, t, c)$, and the loss is chapter 04's. Chapter 04's `DiffusionObjective` takes
# them as `cond`, a $(N, L)$ tensor of ids, and `fit` takes `cond_drop_prob=0.1`: one caption in ten is
# replaced by the empty prompt `""` (`null_cond`, the model's `null_condition`), so the same network also
# learns to draw with no text at all.
# Chapter 07 explains why that is worth having.
#
# A short run: the shipped model's network and caption dropout, on 6,000 pictures, with smaller batches
# and a higher learning rate than the shipped model had, to learn fast. Watch the loss:

# %%
data = make_shapes(pick(6000, 600), seed=0, split="train")  # only the 220 training combinations
caption_ids = tokenizer.encode(data.captions)  # (N, 12)
schedule = NoiseSchedule.from_name("cosine", T=1000)
config = TrainConfig(steps=pick(200, 8), batch_size=32, lr=1e-3, warmup_steps=50, ema_decay=0.99,
                     cond_drop_prob=0.1, log_every=pick(20, 4), mixed_precision=True)
start = time.perf_counter()
objective = DiffusionObjective(schedule, data.images, cond=caption_ids, null_cond=model.null_condition(1)[0])
state = fit(model, objective, config, device=device, on_log=LiveLossPlot(schedule.T, title="shapes with captions"))
minutes = (time.perf_counter() - start) / 60
print(f"trained {config.steps} steps of {config.batch_size} pictures in {minutes:.1f} min")

# %% [markdown]
# The loss falls like chapter 04's, and again the smallest steps $t$ are the hardest. It is the same
# loss; the captions only give the network more to go on.
#
# To draw from a prompt, the sampler of chapter 05 calls the model with the prompt's ids at every step,
# `model(xt, t, ids)`. Nothing else changes. We use DDPM with 50 steps: chapter 05 found that on a
# briefly trained model, DDPM's random steps correct mistakes that DDIM carries to the end, and section
# 8 measures the difference here.

# %%
def draw(model, prompts: list[str], n_each: int = 1, sampler: str = "ddpm", steps: int = 50,
         seed: int = 0) -> torch.Tensor:
    """n_each pictures per prompt: (len(prompts) * n_each, 3, 32, 32) in [-1, 1]."""
    ids = tokenizer.encode(prompts).repeat_interleave(n_each, dim=0).to(device)  # (B, L)
    scheduler = DDPMScheduler(schedule) if sampler == "ddpm" else DDIMScheduler(schedule)
    scheduler.set_timesteps(steps)
    return sample(lambda xt, t: model(xt, t, ids), scheduler, (len(ids), 3, 32, 32),
                  generator=torch.Generator().manual_seed(seed), device=device)


prompts = ["a large red circle in the top left", "a small blue square in the bottom right",
           "a large yellow cross in the centre", "a small purple diamond in the top right"]
n_each = 6
ours = draw(state.ema.model, prompts, n_each)

# %% [markdown]
# ## 6. The shipped model
#
# A couple of hundred steps are not enough; the course ships a model with the same network, trained for
# longer. Its manifest says how it was made:

# %%
shipped = load_pretrained("shapes_text", device=device)
info = read_manifest()["shapes_text"]
print(f"command:  {info['command']}")
print(f"steps:    {info['steps']:,} of batch 64   training time: {info['train_seconds'] / 60:.0f} min")
print(f"hardware: {info['hardware']}")
print(f"size:     {info['bytes'] / 1e6:.1f} MB")
theirs = draw(shipped.model, prompts, n_each)

fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3))
for ax, images, title in [(axes[0], ours, f"trained here ({config.steps} steps)"),
                          (axes[1], theirs, f"shipped ({info['steps']:,} steps)")]:
    ax.imshow(to_display(make_grid(images, nrow=n_each)))
    ax.set_title(title)
    ax.set(xticks=[], yticks=[34 * i + 18 for i in range(len(prompts))])
axes[0].set_yticklabels([p.removeprefix("a ") for p in prompts], fontsize=8)
axes[1].set_yticklabels([])
plt.show()

# %% [markdown]
# After its short run the notebook's model makes coloured blobs on a speckled background. Some are the
# colour that was asked for, many are mixtures, and there are no shapes yet. The shipped model, trained 15
# times as many steps on batches twice as large, draws each of the 24 pictures as its prompt asks:
# shape, colour, size and position. (Section 8 counts how often that holds.)
#
# Now your turn. Type a prompt in the box and press Enter: the shipped model draws it with 50 DDPM steps,
# which takes a second or two. Try the held-out pairs too ("a large green triangle in the centre"). A saved
# copy of the notebook shows three example prompts instead of the box.

# %%
explorer = prompt_explorer(lambda prompt: generate(shipped, pick(8, 2), prompt=prompt, sampler="ddpm", steps=50),
                           ["a large green circle in the centre", "a small yellow triangle in the bottom left",
                            "a large red cross in the top right"])
explorer

# %% [markdown]
# ## 7. Where does each word act? Attention maps
#
# Every cross-attention block computes $A$, how much each pixel reads each token. Averaged over the
# heads, the blocks and the sampling steps, and put back on the pixel grid, each token gets a map: where
# in the picture that word was read. `record_cross_attention` keeps every block's weights while the model
# runs, one $(B, \text{heads}, HW, L)$ tensor per call:

# %%
probe = ["a large red circle in the top left", "a small blue triangle in the bottom right",
         "a large yellow diamond in the centre"]
probe_ids = tokenizer.encode(probe)
with record_cross_attention(shipped.model) as recorded:
    pictures = draw(shipped.model, probe, seed=3).cpu()  # on the CPU, beside the recorded maps
for name, calls in recorded.items():
    print(f"{name:20s} {len(calls)} calls of {tuple(calls[0].shape)}")

# %% [markdown]
# ### Exercise 6.4: one word's map
#
# Write `word_map(weights, index)`: from one block's weights $(B, \text{heads}, h \cdot w, L)$ return
# token `index`'s map $(B, h, w)$, averaged over the heads. The pixels were flattened row by row
# (`x.flatten(2)`), so a reshape puts them back.

# %%
def word_map(weights: torch.Tensor, index: int) -> torch.Tensor:
    """Token `index`'s attention at every pixel, averaged over heads: (B, h, w)."""
    ### BEGIN SOLUTION
    B, heads, hw, L = weights.shape
    side = int(hw**0.5)
    return weights[..., index].mean(dim=1).reshape(B, side, side)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_word_map(word_map)

# %% [markdown]
# `token_maps` does this for every token and every block, enlarges the 8 × 8 and 16 × 16 maps to
# 32 × 32, and averages them over the blocks and the 50 sampling steps. Below, each row is one picture and its
# words. The title gives each word's mean weight (a pixel's weights over the tokens sum to 1), each map
# has its own colour scale, and the white line outlines the shape the model drew:

# %%
maps = token_maps(recorded, size=32)  # (3, 12, 32, 32)
labels = token_labels(probe_ids, tokenizer)
fig = show_word_maps(pictures, labels, maps, outline=foreground_mask(pictures), scale=1.05)
plt.show()

# %% [markdown]
# Start with the first row. The colour word "red" and the shape word "circle" are brightest on the
# circle: the circle's pixels read them. The position words "top" and "left" are the opposite, dark on
# the circle and bright everywhere else. The other rows agree: "blue" and "triangle", "yellow" and
# "diamond" light up on their shapes, while "bottom", "right" and "centre" are read by the background.
# So the position words do **not** light up the shape's region. It is the background that reads them.
#
# Three pictures are anecdotes. Over more pictures, `region_contrast` measures each word's mean weight on
# the drawn shape divided by its mean weight over the whole picture: 1 means the word is read everywhere
# alike, 2 means twice as much on the shape.

# %%
n_probe = pick(32, 6)
pool = combinations("train")
probe_attrs = [pool[i] for i in torch.randperm(len(pool), generator=torch.Generator().manual_seed(4))[:n_probe]]
probe_ids = tokenizer.encode([a.caption() for a in probe_attrs])
with record_cross_attention(shipped.model) as recorded:
    pictures = draw(shipped.model, [a.caption() for a in probe_attrs], seed=5)
contrast = region_contrast(token_maps(recorded, size=32), foreground_mask(pictures))  # (n, 12)
by_word: dict[str, list[float]] = {}
for row, tokens in zip(contrast, token_labels(probe_ids, tokenizer)):
    for j, token in enumerate(tokens):
        by_word.setdefault(token, []).append(row[j].item())
order = sorted(by_word, key=lambda w: -torch.tensor(by_word[w]).nanmean().item())
fig, ax = plt.subplots(figsize=(8, 2.6))
means = [torch.tensor(by_word[w]).nanmean().item() for w in order]
ax.bar(range(len(order)), means, color=["C1" if w in ("top", "bottom", "left", "right", "centre") else "C0"
                                        for w in order])
ax.axhline(1.0, color="gray", ls="--", lw=1)
ax.set_xticks(range(len(order)), order, rotation=60, fontsize=8)
ax.set(ylabel="weight on shape / mean", title=f"where each word is read, {n_probe} pictures (orange: position words)")
plt.show()
print("  ".join(f"{w} {m:.2f}" for w, m in zip(order, means)))

# %% [markdown]
# Over 32 pictures the pattern holds for every word. Colour words are read 1.7 to 1.9 times more on the
# shape than on average, shape words 1.4 to 1.8 times, size words a little more (1.15). The five
# position words are read 0.64 to 0.75 times as much on the shape as on average: less than on the rest
# of the picture. Only "<start>" and "a" are lower.
#
# How to read this? Two cautions first. A map shows where a word's *value* is mixed in, not what the
# word caused. And the text encoder's self-attention has already mixed the words: the vector the U-Net
# finds at "red" may also carry "top left". With that said, here is a consistent story. A pixel of the
# shape needs to know *what* to be, so it reads the colour and the shape. A pixel of the background
# needs to know that the shape is *somewhere else*, so it reads where. The shape ends up where the
# background leaves room for it. The maps of Stable Diffusion, which Hertz et al. (2022) and Tang et al.
# (2022) read this same way, often show nouns on their objects; whether that holds for every kind of
# word is, as here, something to measure rather than assume.
#
# ## 8. Can it draw a green triangle it never saw?
#
# Now the question words were for. We need a judge: the course's **attribute scorer**, a small
# classifier trained on generator pictures of *all* 250 combinations that reads shape, colour, size and
# position back from a picture (`metrics.attribute_accuracy`). First, is the judge reliable? On real
# pictures of the held-out pairs, clean and with added noise of growing strength:

# %%
scorer = load_pretrained("shapes_scorer", device=device).model
real = make_shapes(pick(500, 50), seed=7, split="held_out")
gen = torch.Generator().manual_seed(7)
for noise_std in [0.0, 0.1, 0.2, 0.3]:
    noisy = real.images + noise_std * torch.randn(real.images.shape, generator=gen)
    score = attribute_accuracy(scorer, noisy, real.attribute_indices)["all"]
    print(f"{len(real)} real held-out pictures + noise of std {noise_std:.1f}: {score:6.1%} read right (all four)")

# %% [markdown]
# The judge reads every clean real picture right, and 93.8 % with noise of standard deviation 0.2 added,
# but only 42.2 % at 0.3: it learned from clean pictures with mild noise. Samples are not real pictures,
# so we will look at them as well as count them.
#
# For a fair comparison we ask for the same colours and shapes both times. **Held out**: the 30 prompts
# of the three unseen pairs (green triangle, blue circle, yellow square, in both sizes and all
# positions). **Seen**: the other six pairs of those colours and shapes (green circle, blue square,
# yellow triangle, ...), which the model saw in training. The same number of pictures for each, drawn
# twice: with DDIM in 20 steps, and with DDPM in 50 steps as so far.

# %%
colours, shapes_ = {c for c, _ in HELD_OUT}, {s for _, s in HELD_OUT}
seen_pool = [a for a in seen if a.colour in colours and a.shape in shapes_]  # 60 combinations
n_eval = pick(120, 8)
results = {}
for sampler, steps in [("ddim", 20), ("ddpm", 50)]:
    for split, pool in [("seen", seen_pool), ("held out", held_out)]:
        attrs = [pool[i % len(pool)] for i in range(n_eval)]
        images = draw(shipped.model, [a.caption() for a in attrs], sampler=sampler, steps=steps, seed=9)
        wanted = torch.tensor([a.indices() for a in attrs])  # (n, 4): shape, colour, size, position
        results[sampler, split] = {"attrs": attrs, "images": images, "wanted": wanted,
                                   "scores": attribute_accuracy(scorer, images, wanted)}
print(f"{n_eval} pictures each ({len(seen_pool)} seen and {len(held_out)} held-out combinations)\n")
print(f"{'sampler':10s} {'prompts':10s} {'shape':>7s} {'colour':>7s} {'size':>7s} {'position':>9s} {'all four':>9s}")
for (sampler, split), r in results.items():
    s = r["scores"]
    stderr = (s["all"] * (1 - s["all"]) / n_eval) ** 0.5  # one standard error of a share of n_eval pictures
    print(f"{sampler.upper() + (' 20' if sampler == 'ddim' else ' 50'):10s} {split:10s} {s['shape']:7.1%} "
          f"{s['colour']:7.1%} {s['size']:7.1%} {s['position']:9.1%} {s['all']:9.1%} ± {stderr:.1%}")

# %% [markdown]
# With DDPM in 50 steps, the model gets all four attributes right in 99.2 % of the held-out pictures and
# in 100 % of the seen ones; with DDIM in 20 steps, in 94.2 % and 92.5 %. Two things to read from that:
#
# - Held-out prompts score like seen ones with either sampler. The gaps are under two points, in
#   opposite directions, and within the sampling noise (the ± column is one standard error).
# - The sampler matters more than the novelty of the prompt: DDIM's pictures score lower for seen and
#   held-out prompts alike, as chapter 05 found for DDIM on a briefly trained MNIST model.
#
# A score of 100 % does not prove that the model never errs, and its "± 0.0 %" only says that no error
# happened. With no error in 120 tries, the error rate could still be as high as about 3/120 = 2.5 %
# (the "rule of three", at 95 % confidence).
#
# What did the model draw when asked for a held-out pair? The judge's reading of the DDPM pictures, pair
# by pair, and one picture of each of the 30 held-out combinations (a red title: the judge reads
# something else):

# %%
held = results["ddpm", "held out"]
predicted = scorer.predict(held["images"]).cpu()  # (n, 4) indices: shape, colour, size, position
for colour, shape in sorted(HELD_OUT):
    rows = [i for i, a in enumerate(held["attrs"]) if (a.colour, a.shape) == (colour, shape)]
    if not rows:
        continue
    drawn: dict[str, int] = {}
    for i in rows:
        key = f"{list(COLOURS)[predicted[i, 1]]} {SHAPES[predicted[i, 0]]}"
        drawn[key] = drawn.get(key, 0) + 1
    top = sorted(drawn.items(), key=lambda kv: -kv[1])[:4]
    print(f"asked for {colour} {shape} ({len(rows)}): " + ", ".join(f"{k} {v}" for k, v in top))

n_show = min(len(held_out), n_eval)  # the first 30 pictures: each held-out combination once
fig = show_images(held["images"][:n_show], nrow=10, scale=1.0,
                  titles=[f"{a.size} {a.colour}\n{a.shape}" for a in held["attrs"][:n_show]])
for ax, p, w in zip(fig.axes, predicted[:n_show], held["wanted"][:n_show]):
    if not torch.equal(p, w):
        ax.title.set_color("C3")  # the scorer reads something else
plt.show()

# %% [markdown]
# Asked for a green triangle, the model drew green triangles in all 40 pictures, and the same holds for
# the blue circles and the yellow squares; the grid shows one picture of each held-out combination, each
# read as asked. The one held-out miss in the table is a position.
#
# So, can it draw a green triangle it never saw? **Yes**: the model draws the three held-out pairs as
# well as pairs it was trained on, by its judge's count, and the pictures agree. Words compose where a
# table of 250 labels could not. Two cautions keep the answer honest:
#
# - This is the easiest kind of composition. Every colour and every shape appeared many times in
#   training, only not in these pairs, and every picture holds one object. Binding attributes to the
#   right objects in a prompt with *several* is hard even for Stable Diffusion ("a red cube and a blue
#   sphere" can come out with the colours swapped or an object missing; Chefer et al. 2023).
# - The judge is good on clean pictures, not infallible, and 120 pictures a side cannot tell apart
#   differences of a point or two. "As well as", not "better" or "worse", is what the measurement
#   supports.
#
# ## Summary
#
# - A class label is one learned vector added to the timestep embedding. It suits ten digits, but it
#   cannot share what "red" means across combinations, nor ask for a combination it never saw.
# - A tokenizer turns a prompt into a fixed-length row of ids, `<start>` first and `<pad>` after, with a
#   mask marking the padding; a batch of prompts is one $(B, L)$ tensor.
# - The text encoder turns the ids into one vector per token, the context $c \in \mathbb R^{L \times D}$.
#   Ours is a small transformer trained with the U-Net; Stable Diffusion uses a frozen CLIP encoder
#   (1.x: CLIP ViT-L/14, width 768; 2.x: OpenCLIP ViT-H/14, width 1024).
# - Cross-attention lets each pixel read the words: queries from the pixels, keys and values from the
#   tokens, $\text{softmax}(QK^\top/\sqrt d + M)\,V$ with $M = -\infty$ at padding (Stable Diffusion
#   1.x/2.x use no such mask and read all 77 positions), added to the feature map and started at zero.
#   Our U-Net reads the prompt at 16 × 16 and 8 × 8.
# - Training is unchanged apart from passing the caption ids, one in ten replaced by the empty prompt.
# - Attention maps are read, not assumed: here colour and shape words are read on the shape, and
#   position words by the background around it.
# - The shipped model draws held-out pairs (green triangles, blue circles, yellow squares) as well as
#   seen ones: 99.2 % against 100 % of 120 pictures with all four attributes right (DDPM, 50 steps), and
#   94.2 % against 92.5 % with DDIM in 20 steps.
#
# ## What's next
#
# The model follows its prompt, but how closely is fixed by training. Chapter 07 adds a dial.
# **Classifier-free guidance** runs the network twice per step, with the prompt and with the empty
# prompt $\varnothing$ (that is what the one caption in ten dropped to `""` was for), and pushes each
# step further in the direction the prompt points:
# $\epsilon_\theta(x_t, \varnothing) + w\,\big(\epsilon_\theta(x_t, c) - \epsilon_\theta(x_t, \varnothing)\big)$.
# We will measure what the scale $w$ does to how often the pictures match their prompts, and to how
# varied they are.
