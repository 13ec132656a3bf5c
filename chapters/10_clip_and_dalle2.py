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
# # 10 · CLIP and DALL·E 2: pictures and captions in one space
#
# Chapter 06 taught a U-Net to read a caption word by word through cross-attention. DALL·E 2 (Ramesh et
# al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents", called **unCLIP** in the
# paper) takes a different road. It first learns a space where a picture and its caption land on nearby
# points: **CLIP** (Radford et al. 2021), two encoders trained so that matching pairs agree. Then it draws
# in three steps. A **prior** turns the caption's point into a *picture's* point; a **decoder** draws a
# small picture from that point; an **upsampler** enlarges it. Each stage is a model you have met: the
# prior is a diffusion model over vectors, the decoder a conditional U-Net, the upsampler a U-Net that also
# reads a low-resolution picture.
#
# We build the pieces on the scenes of one or two coloured shapes that chapters 10 and 11 share, train a
# CLIP briefly, then load the ones the course ships and measure what each stage contributes, including the
# claim the paper rests on: that the prior is worth having.
#
# **Learning goals**
#
# - Write CLIP's symmetric contrastive loss, with copies of a caption counted as matches, and read the
#   similarity matrix it shapes.
# - Use a CLIP without any classifier: read a picture's attributes by scoring captions (zero-shot), find
#   pictures by caption, and test whether it *binds* colours to shapes or reads captions as bags of words.
# - Measure the **modality gap**: why a caption's embedding is not a picture's, and why a prior is needed.
# - Train unCLIP's diffusion prior (x_0-prediction on normalised embeddings) and compare it with a
#   regression prior and with no prior at all, by the pictures the decoder draws from each.
# - Make variations and text-guided edits by moving in embedding space, and see how few directions carry a
#   picture's gist.
# - Run a cascade: a 32 × 32 base picture, enlarged to 64 × 64 by a diffusion upsampler with
#   noise-conditioning augmentation.
#
# **Run time:** about 70 s in full mode on a 2-core laptop CPU (66 s measured), about 20 s in quick mode.

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
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from diffusion_lab.config import mode_name, pick, pick_device, seed_everything
from diffusion_lab.data.scenes import make_scenes, scene_vocabulary, swap_colours, two_shape_combinations
from diffusion_lab.data.shapes import COLOURS, ShapeAttributes, combinations, render
from diffusion_lab.exercises import (
    check_clip_loss,
    check_low_res_condition,
    check_prior_loss,
    check_text_diff,
)
from diffusion_lab.judges.clip_score import (
    attribute_accuracy_of,
    binding_accuracy,
    clip_score,
    embed_captions,
    embed_images,
    one_shape_captions,
    zero_shot_attributes,
)
from diffusion_lab.judges.metrics import attribute_accuracy, diversity, mean_pairwise_distance
from diffusion_lab.models import count_parameters
from diffusion_lab.models.clip import CLIP, CLIPConfig
from diffusion_lab.models.prior import DiffusionPrior
from diffusion_lab.models.upsampler import augmentation_alpha_bar, downsample, enlarge, noise_augment
from diffusion_lab.notebook.figures import show_images, use_course_style
from diffusion_lab.pipelines.prior import predict_image_embeddings, sample_image_embeddings
from diffusion_lab.pipelines.unclip import UnCLIPPipeline
from diffusion_lab.pretrained import load_pretrained, read_manifest
from diffusion_lab.training import (
    ContrastiveObjective,
    PriorObjective,
    TrainConfig,
    contrastive_loss,
    fit,
    multi_positive_targets,
    prior_loss,
)

use_course_style()
seed_everything(0)
device = pick_device()  # CUDA, then Apple's MPS, then the CPU
print(f"mode: {mode_name()}, device: {device}")


def two_lines(caption: str) -> str:
    """A caption broken in the middle, to fit under a small picture."""
    words = caption.split()
    half = (len(words) + 1) // 2
    return " ".join(words[:half]) + "\n" + " ".join(words[half:])


def picture(attrs: ShapeAttributes, seed: int | list[int] | None = None) -> torch.Tensor:
    """One 32 x 32 drawing of ``attrs``, (3, 32, 32) in [-1, 1]: canonical, or jittered as the data set jitters
    its pictures when a ``seed`` is given."""
    rng = None if seed is None else np.random.default_rng(seed)
    return torch.from_numpy(render(attrs, 32, rng=rng)).permute(2, 0, 1).float() / 127.5 - 1


def bench_results(name: str) -> dict | None:
    """A benchmark's recorded results (bench/results/NAME.json), or None if it was not run yet."""
    path = Path("../bench/results") / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# %% [markdown]
# ## 1. Four stages, and the scenes they learn from
#
# The whole system, with the name of the checkpoint the course ships for each stage:
#
# | stage | in → out | model | checkpoint |
# |---|---|---|---|
# | CLIP text encoder | caption → $e_\text{text}$ (64 numbers, length 1) | transformer (chapter 06's) | `clip_scenes` |
# | prior | $e_\text{text}$ → $e_\text{image}$ | diffusion over vectors, an MLP | `unclip_prior` |
# | decoder | $e_\text{image}$ → 32 × 32 picture | U-Net with the embedding as its condition | `unclip_decoder` |
# | upsampler | 32 × 32 → 64 × 64 picture | U-Net that also reads the small picture | `upsampler` |
#
# CLIP's image encoder is not part of drawing at all: it makes the training targets of the prior and the
# decoder's conditions. The scenes show one shape ("a small red circle in the top left") or two ("a red
# circle to the left of a blue square"); half of each batch has two. Three colour-shape pairs (green
# triangle, blue circle, yellow square) never appear in training, as in chapter 06.

# %%
vocabulary = scene_vocabulary()
train_scenes = make_scenes(pick(4000, 512), seed=0)  # the training split, half of them two shapes
print(f"{len(train_scenes)} training scenes {tuple(train_scenes.images.shape[1:])}, {len(vocabulary)} words: "
      f"{' '.join(vocabulary)}")
fig = show_images(train_scenes.images[:12], nrow=6, scale=1.6,
                  titles=[two_lines(c) for c in train_scenes.captions[:12]])
plt.show()

# %% [markdown]
# The two-shape captions name colours and shapes but not sizes or places: only where the first object is
# relative to the second. Twenty-four words in all, and a caption is at most ten of them.
#
# ## 2. Contrastive learning in a few lines
#
# CLIP has two encoders. The image encoder (a small CNN here) maps a picture $x$ to a vector, the text
# encoder (chapter 06's transformer, read at its `<start>` token) maps a caption $c$ to another; each is
# projected to $D = 64$ numbers and divided by its length, so both are **unit vectors**:
# $e_\text{image}(x)$ and $e_\text{text}(c)$. Their similarity is the cosine, a dot product of unit vectors.
# For a batch of $B$ pictures and their captions, the **logits**
#
# $$\ell_{ij} = s \cdot e_\text{image}(x_i)^\top e_\text{text}(c_j), \qquad s = 1/\tau,$$
#
# form a $B \times B$ matrix: row $i$ compares picture $i$ with every caption of the batch, column $j$
# compares caption $j$ with every picture. The temperature $\tau$ is learned (it starts at 0.07, so
# $s \approx 14.3$). Training asks each picture to pick its own caption out of its row, and each caption its
# picture out of its column: a cross-entropy over each row and over each column, averaged (CLIP's
# *symmetric InfoNCE* loss):
#
# $$L_i = \tfrac12\Big(-\sum_j T_{ij}\log \operatorname{softmax}_j(\ell_{i\cdot}) \;-\; \sum_j T_{ji}\log\operatorname{softmax}_j(\ell_{\cdot i})\Big).$$
#
# CLIP's target $T$ is the identity: caption $i$ belongs to picture $i$ only. Our captions repeat, though: a
# batch of 512 holds several "a small red circle in the top left". Calling the copy in row $i$, column $j$ a
# wrong answer would ask the model to tell apart what no caption distinguishes. So $T_{ij}$ spreads picture
# $i$'s target evenly over every caption *equal* to its own (each row sums to 1); with all captions
# different it is the identity again. Here is an untrained CLIP on twelve pictures, three of whose captions
# come twice:

# %%
torch.manual_seed(0)
my_clip = CLIP(CLIPConfig.scenes(vocabulary)).to(device)
print(f"CLIP: {count_parameters(my_clip.image_encoder):,} parameters in the image encoder, "
      f"{count_parameters(my_clip.text_encoder):,} in the text encoder; embeddings of {my_clip.embed_dim} numbers")

by_caption: dict[str, list[int]] = {}
for i, caption in enumerate(train_scenes.captions):
    by_caption.setdefault(caption, []).append(i)
twice = [where[:2] for where in by_caption.values() if len(where) >= 2][:3]  # three captions, two pictures each
once = [where[0] for where in by_caption.values() if len(where) == 1][:6]
batch = [twice[0][0], once[0], twice[1][0], once[1], twice[2][0], once[2],
         twice[0][1], once[3], twice[1][1], once[4], twice[2][1], once[5]]
batch_images = train_scenes.images[batch].to(device)  # (12, 3, 32, 32)
batch_captions = [train_scenes.captions[i] for i in batch]
batch_ids = my_clip.tokenizer.encode(batch_captions).to(device)  # (12, L)
targets = multi_positive_targets(batch_ids).cpu()  # (12, 12), rows sum to 1


def show_matrices(matrices: dict[str, torch.Tensor]) -> None:
    """Side-by-side pictures of (B, B) matrices with values in [0, 1]: rows are pictures, columns captions."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.3 * len(matrices), 3.3))
    for ax, (title, m) in zip(np.atleast_1d(axes), matrices.items()):
        ax.imshow(m.detach().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set(title=title, xlabel="caption j", ylabel="picture i", xticks=[], yticks=[])
    fig.tight_layout()
    plt.show()


with torch.no_grad():
    untrained_logits = my_clip(batch_images, batch_ids).cpu()  # (12, 12)
show_matrices({"targets T": targets, "untrained: softmax of each row": untrained_logits.softmax(dim=1)})

# %% [markdown]
# On the left, the targets: the diagonal, plus the pairs of pictures whose captions are the same (two
# halves of 0.5 in each of their rows, six steps off the diagonal). On the right, what the untrained CLIP
# gives each row: nearly the same share to every caption, since its embeddings do not yet mean anything.
#
# ### Exercise 10.1: CLIP's loss
#
# Write `clip_loss(image_emb, text_emb, ids, scale)` returning $L_i$ above for each pair, shape $(B,)$.
# `image_emb` and `text_emb` are $(B, D)$ unit vectors, `ids` the captions' token ids $(B, L)$ (two captions
# are equal when their rows of ids are equal), `scale` is $s = 1/\tau$.

# %%
def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, ids: torch.Tensor, scale: float) -> torch.Tensor:
    """Symmetric InfoNCE per pair (B,), every copy of a caption counted as a match."""
    ### BEGIN SOLUTION
    logits = scale * image_emb @ text_emb.T  # (B, B): picture i against caption j
    same = (ids[:, None, :] == ids[None, :, :]).all(dim=-1).float()  # (B, B): caption i == caption j
    targets = same / same.sum(dim=1, keepdim=True)  # each row sums to 1
    image_to_text = -(targets * logits.log_softmax(dim=1)).sum(dim=1)  # each picture against every caption
    text_to_image = -(targets.T * logits.T.log_softmax(dim=1)).sum(dim=1)  # each caption against every picture
    return (image_to_text + text_to_image) / 2
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_clip_loss(clip_loss)

# %% [markdown]
# The package's `contrastive_loss(logits, multi_positive_targets(ids))` is the same computation, and
# `ContrastiveObjective` trains a `CLIP` with it through chapter 04's `fit`. Your loss on the twelve pairs,
# against the package's, and against the loss of a model that cannot tell anything apart (the same logit for
# every pair: $\log B$):

# %%
with torch.no_grad():
    yours = clip_loss(my_clip.encode_image(batch_images), my_clip.encode_text(batch_ids), batch_ids, my_clip.scale())
    package = contrastive_loss(my_clip(batch_images, batch_ids), multi_positive_targets(batch_ids))
print(f"same as the package: {torch.allclose(yours, package, atol=1e-5)}; untrained loss {float(yours.mean()):.3f}, "
      f"log B = {math.log(len(batch)):.3f}")

# %% [markdown]
# Now train it, briefly: 250 steps on batches of 64 (10 in quick mode), a minute or less on two cores.
# The shipped `clip_scenes` was trained for 2,000 steps on batches of 512.

# %%
train_ids = my_clip.tokenizer.encode(train_scenes.captions)  # (N, L)
clip_train = TrainConfig(steps=pick(250, 10), batch_size=64, lr=1e-3, warmup_steps=pick(25, 2), weight_decay=0.01,
                         ema_decay=0.0, log_every=pick(25, 5), checkpoint_every=10**9)
start = time.perf_counter()
clip_state = fit(my_clip, ContrastiveObjective(train_scenes.images, train_ids), clip_train, device=device,
                 progress=False)
print(f"{clip_train.steps} steps in {time.perf_counter() - start:.0f} s; loss {clip_state.history.losses[0]:.2f} -> "
      f"{clip_state.history.losses[-1]:.2f} (log 64 = {math.log(64):.2f}); temperature now "
      f"{1 / float(my_clip.scale().detach()):.3f}")
with torch.no_grad():
    trained_logits = my_clip(batch_images, batch_ids).cpu()
show_matrices({"targets T": targets, "untrained": untrained_logits.softmax(dim=1),
               f"after {clip_train.steps} steps": trained_logits.softmax(dim=1)})

# %% [markdown]
# The loss fell from 3.61 to 0.51 in 250 steps. For scale: a model that cannot tell the 64 pairs of a batch
# apart scores log 64 = 4.16 (copies of a caption already bring that down a little), and a perfect one 0.
# The third panel is the targets again, almost cell for cell: each row has found its diagonal, and the rows
# of equal captions share their weight between the two columns, as the targets ask. The learned temperature
# fell from 0.07 to 0.056: sharper logits, as the pairs became easier to tell apart. (Your numbers will differ a
# little: a brief training run is not bit-identical across machines and thread counts.)
#
# ## 3. The shipped CLIP: reading pictures without a classifier
#
# A trained CLIP can answer questions nobody trained it for. To read a one-shape picture's attributes, embed
# all 250 one-shape captions ("a small red circle in the top left", ...) once, and pick the caption most
# similar to the picture: its shape, colour, size and position are the reading. This is CLIP's **zero-shot
# classification** (Radford et al. 2021, sec. 3.1): the classes are written in words, not learned as
# outputs. `zero_shot_attributes` does exactly this. Below, on fresh test scenes (seed 1), the shipped CLIP
# against the one trained above:

# %%
clip = load_pretrained("clip_scenes", device=device).model
made = read_manifest()["clip_scenes"]
print(f"clip_scenes: {made['steps']:,} steps in {made['train_seconds'] / 60:.0f} min on {made['hardware']}; "
      f"remake: {made['command']}")
one_shape = {split: make_scenes(1000, seed=1, split=split, two_shape_fraction=0.0) for split in ("train", "held_out")}
wanted = {split: torch.tensor([s.attributes().indices() for s in scenes.scenes]) for split, scenes in one_shape.items()}
print(f"{'':>32} {'shape':>6} {'colour':>7} {'size':>6} {'position':>9} {'all four':>9}")
for name, model in [("shipped clip_scenes", clip), (f"ours, {clip_train.steps} steps", my_clip)]:
    for split, scenes in one_shape.items():
        acc = attribute_accuracy_of(zero_shot_attributes(model, scenes.images), wanted[split])
        pairs = "training pairs" if split == "train" else "held-out pairs"
        print(f"{name + ', ' + pairs:>32} " + " ".join(f"{acc[k]:>{w}.1%}" for k, w in
                                                       [("shape", 6), ("colour", 7), ("size", 6), ("position", 9),
                                                        ("all", 9)]))

# %% [markdown]
# The shipped CLIP reads every attribute of every training-pair test picture right, and the held-out pairs
# (a green triangle, say, which it never saw) almost as well: it learnt colours and shapes as separate
# words, and the caption "a small green triangle ..." is scored by the same parts. Ours, after a few hundred
# small batches, already reads colour, size and position nearly perfectly, but the shape less than half the
# time (39 % on training pairs, 45 % on held-out ones): telling a diamond from a square at 32 × 32 takes
# longer to learn than telling red from blue. The bench (`bench/results/clip_zero_shot.md`) measured the shipped CLIP on
# 2,000 pictures:

# %%
zero_shot_bench = bench_results("clip_zero_shot")
if zero_shot_bench:
    for split in ("train", "held_out"):
        row = zero_shot_bench[f"zero_shot_{split}"]
        print(f"bench, {split:>8}: all four {row['all']:.1%}, retrieval@1 {row['retrieval_at_1']:.1%}")

# %% [markdown]
# Zero-shot reading runs the other way too: **retrieval**. Embed a pile of pictures once; a caption's
# embedding then ranks them. The eight best of 1,000 test scenes (one and two shapes) for three captions
# that occur in the pile, one row each:

# %%
pile = make_scenes(1000, seed=2, split="all")
pile_emb = embed_images(clip, pile.images)  # (1000, 64): once
counts = {c: pile.captions.count(c) for c in set(pile.captions)}
one_shape_query = max(sorted(c for c in counts if c.split()[1] in ("small", "large")), key=counts.get)
two_shape_queries = [c for c, s in zip(pile.captions, pile.scenes) if len(s.objects) == 2][:2]
queries = [one_shape_query, *two_shape_queries]  # captions the pile holds: the most frequent one-shape one, two more
best = (embed_captions(clip, queries) @ pile_emb.T).topk(8, dim=1).indices  # (3, 8)
fig = show_images(pile.images[best.flatten()], nrow=8, scale=1.0)
plt.show()
for query, row in zip(queries, best):
    hits = sum(pile.captions[int(i)] == query for i in row)
    print(f"{query!r}: {hits} of the 8 carry exactly this caption; "
          f"{sum(c == query for c in pile.captions)} in the pile")

# %% [markdown]
# Each row starts with the pictures of that exact caption and continues with the nearest things the pile
# has: the same shape and colour at another place or size, or, for a two-shape caption, pictures with the
# same pair of objects in another arrangement. Every exact picture in the pile comes first (two of the
# one-shape caption, one of each two-shape caption). Then come the near misses: large blue crosses and
# diamonds and large yellow circles in the bottom left (one word changed), and the same two objects in
# another arrangement or with one of them swapped.
#
# ## 4. Does CLIP bind colours to shapes?
#
# "A red circle to the left of a blue square" and "a blue circle to the left of a red square" hold the
# same words. A model that reads a caption as a **bag of words** (which words occur, not which goes with
# which) cannot tell them apart; vision-language models at large scale have been found to do surprisingly
# often just that (Yuksekgonul et al. 2023 built a benchmark of such swaps; Thrush et al. 2022's Winoground
# is another). With two-shape test scenes we can measure it. For each picture, does its true caption score
# higher than a rival? Three rivals: the **colours swapped** and the **shapes swapped** (the same words in
# another order), and the **relation turned round** ("left of" ↔ "right of", "above" ↔ "below": one word
# changed, which a model that ignores where the objects are cannot check). Chance is 50 %.

# %%
TURN = {"left": "right", "right": "left", "above": "below", "below": "above"}


def swap_shapes(caption: str) -> str:
    """The two-shape caption with its two shape words exchanged (same words, other meaning)."""
    words = caption.split()
    i, j = [k for k, w in enumerate(words) if w in ("circle", "square", "triangle", "diamond", "cross")]
    words[i], words[j] = words[j], words[i]
    return " ".join(words)


def turn_relation(caption: str) -> str:
    """The two-shape caption with its relation reversed: "left of" <-> "right of", "above" <-> "below"."""
    return " ".join(TURN.get(w, w) for w in caption.split())


def binding_table(model: torch.nn.Module, scenes) -> dict[str, float]:
    """For scenes of two objects of different colours and shapes: the share whose true caption beats each rival."""
    keep = [i for i, s in enumerate(scenes.scenes) if s.objects[0].colour != s.objects[1].colour
            and s.objects[0].shape != s.objects[1].shape]
    image_emb = embed_images(model, scenes.images[keep])  # (K, D)
    captions = [scenes.captions[i] for i in keep]
    true = (image_emb * embed_captions(model, captions)).sum(1)  # (K,)
    beats = {}
    for name, rival in [("colours swapped", swap_colours), ("shapes swapped", swap_shapes),
                        ("relation turned", turn_relation)]:
        other = (image_emb * embed_captions(model, [rival(c) for c in captions])).sum(1)  # (K,)
        beats[name] = float((true > other).float().mean())
    return beats


two_shape = {split: make_scenes(1000, seed=1, split=split, two_shape_fraction=1.0) for split in ("train", "held_out")}
for name, model in [("shipped clip_scenes", clip), (f"ours, {clip_train.steps} steps", my_clip)]:
    for split, scenes in two_shape.items():
        table = binding_table(model, scenes)
        print(f"{name:>20}, {split:>8} pairs: " + ", ".join(f"{k} {v:.1%}" for k, v in table.items()))
print(f"the package's binding_accuracy (colours swapped, shipped CLIP, training pairs): "
      f"{binding_accuracy(clip, two_shape['train']):.1%}")

# %% [markdown]
# The shipped CLIP binds: it prefers the true caption to every rival almost always, also for pairs it never
# saw together (the bench measured 99.9 % and 99.3 % for the colour swap on 2,000 scenes each). This small
# CLIP in this small world does not read captions as bags of words, and it is worth saying why, because
# large CLIPs often do:
#
# - **A tiny grammar.** Every two-shape caption has the same ten-word frame with four slots. The text encoder
#   reads it at one fixed place (the `<start>` token attends to every word) and can learn "the colour in slot
#   1 goes with the shape in slot 2" once for all captions. Web captions have no frame.
# - **Hard negatives come free.** The loss only teaches a distinction that some batch asks for. With 24
#   words and under two thousand two-shape captions, a batch of 512 often holds a caption *and* a rival made
#   of the same words, so the model is pushed to tell them apart. On the web, the caption with the colours swapped is
#   rarely in the same batch, and nothing punishes a bag of words. The count in our data, below.
# - **The picture keeps its layout.** The image encoder flattens its last 4 × 4 feature map instead of
#   averaging it (`models/clip.py`), so its embedding still knows *where* the red is. A pooled feature knows
#   that red and a circle occur, not that they are the same object.
#
# How often does a batch of 512 training scenes contain two captions with the same words in a different
# order?

# %%
def bag(caption: str) -> tuple[str, ...]:
    return tuple(sorted(caption.split()))


one_batch = make_scenes(512, seed=3)  # a batch as training draws it: half of it two-shape scenes
bags: dict[tuple[str, ...], set[str]] = {}
for caption in one_batch.captions:
    bags.setdefault(bag(caption), set()).add(caption)
two_shape_captions = [c for c, s in zip(one_batch.captions, one_batch.scenes) if len(s.objects) == 2]
with_rival = [c for c in two_shape_captions if len(bags[bag(c)]) > 1]
print(f"of the {len(two_shape_captions)} two-shape captions in one batch of 512, {len(with_rival)} "
      f"({len(with_rival) / len(two_shape_captions):.0%}) share their bag of words with another caption of the batch "
      f"(the training split has {len(two_shape_combinations('train')):,} two-shape captions)")

# %% [markdown]
# About a quarter of the two-shape captions of every batch (59 of 256 in this one) meet a rival made of the
# same words, every step, for 2,000 steps: the loss could not be low while reading bags of words. The
# briefly trained CLIP above saw batches of 64, where such a meeting is rarer, and only a few hundred of
# them. The table shows what that gives: it reads colours and places already (section 3), yet it prefers
# the true caption to the colour-swapped one about as often as a coin would. It has learnt *which* words
# describe a picture, not which goes with which: a bag of words, caught early in training. Binding is learnt
# late, and only if the batches ask for it (ours: 50 % and 50 % with colours swapped, on training and
# held-out pairs; the shipped one: 100 % and 99 %).
#
# ## 5. Two kinds of embedding: the modality gap
#
# If CLIP matched pictures and captions perfectly, a caption's embedding would *be* its picture's, and a
# decoder trained on picture embeddings could be fed caption embeddings directly. It is not so. The loss
# only asks that a picture be closer to its own caption than to the others; it is satisfied while all
# caption embeddings sit in one region of the sphere and all picture embeddings in another, a little apart.
# This is the **modality gap** (Liang et al. 2022), and every CLIP has it. Measured on 500 test scenes:

# %%
gap_scenes = make_scenes(500, seed=1, two_shape_fraction=0.0)  # one shape each, training pairs
gap_image = embed_images(clip, gap_scenes.images)  # (500, 64)
gap_text = embed_captions(clip, gap_scenes.captions)  # (500, 64)
first_of: dict[str, int] = {}
pairs = []
for i, caption in enumerate(gap_scenes.captions):
    if caption in first_of:
        pairs.append((first_of[caption], i))
    first_of.setdefault(caption, i)
a, b = torch.tensor(pairs).T
cos_text_image = (gap_image * gap_text).sum(1)  # (500,): a picture and its own caption
cos_image_image = (gap_image[a] * gap_image[b]).sum(1)  # two different pictures of one caption
print(f"cos(picture, its caption): mean {float(cos_text_image.mean()):.3f}; "
      f"cos(two pictures of one caption): mean {float(cos_image_image.mean()):.3f} ({len(pairs)} pairs)")

both = torch.cat([gap_image, gap_text])  # (1000, 64)
centred = both - both.mean(0)
_, _, directions = torch.linalg.svd(centred, full_matrices=False)
xy = centred @ directions[:2].T  # (1000, 2): the two main directions of both clouds together
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].hist(cos_text_image.numpy(), bins=40, alpha=0.7, label="picture and its caption")
axes[0].hist(cos_image_image.numpy(), bins=40, alpha=0.7, label="two pictures of one caption")
axes[0].set(xlabel="cosine similarity", ylabel="pairs")
axes[0].legend(fontsize=8)
axes[1].scatter(xy[:500, 0], xy[:500, 1], s=4, label="image embeddings")
axes[1].scatter(xy[500:, 0], xy[500:, 1], s=4, label="text embeddings")
axes[1].set(title="both kinds, on their two main directions", xticks=[], yticks=[])
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# A picture and its own caption have a cosine of about 0.94, while two different pictures of the same
# caption have about 0.99: a picture is far closer to any other picture of its caption than to the caption
# itself. On the right, the two clouds projected on their two main directions: pictures and captions
# occupy separate regions, arranged alike. Ranking works regardless (the right caption is still the
# nearest one), but a decoder that learnt from image embeddings has never seen a point where the text
# embeddings lie. Bridging that gap is the prior's job.
#
# ## 6. The prior: from a caption's embedding to a picture's
#
# The prior learns $p(e_\text{image} \mid e_\text{text})$, and it is a diffusion model like every other in
# the course, with **vectors** (B, 64) in place of pictures. unCLIP's choices, which the package follows
# (`models/prior.py`, `training/prior.py`):
#
# 1. **Normalise** first. CLIP's embeddings are unit vectors, so each of their 64 numbers has a spread
#    of about $1/\sqrt{D} = 0.125$, while the noise schedule expects data of unit spread and zero mean (and
#    the embeddings of a large CLIP crowd into a narrow cone, Liang et al. 2022, so their mean is far from
#    zero too). It is chapter 08's latent-scale lesson, per dimension: measure the mean and the standard
#    deviation of each of the 64 numbers over the training pictures' embeddings, once, and learn
#    $x_0 = (e_\text{image} - \mu)/\sigma$.
# 2. **Predict $x_0$**, not the noise: the network is asked for the clean embedding back,
#    $\lVert x_0 - f_\theta(x_t, t, e_\text{text})\rVert^2$. The paper found this better for the prior; the
#    sampler converts the guess to $\epsilon$ with chapter 09's line, so chapter 05's DDIM samples it unchanged.
# 3. **Drop the caption** 10 % of the time (chapter 07), so the same network also knows the unconditional
#    prior and classifier-free guidance can be applied.
#
# The paper's network is a transformer over a few tokens; ours is a residual MLP, which does the same mixing
# of four inputs faster on a CPU (the module docstring says more).
#
# ### Exercise 10.2: the prior's loss
#
# Write `my_prior_loss(model, image_emb, mean, std, t, eps, alpha_bars)` returning the loss per sample
# $(B,)$. `model(xt, t)` returns the prior's guess of $x_0$, $(B, D)$ (the caption's text embedding is
# already bound in); `image_emb` is $(B, D)$; `mean` and `std` are $(D,)$, measured on the training set;
# `t` holds a step per sample; `eps` is the noise $(B, D)$; `alpha_bars` the schedule's $\bar\alpha$.
# Average the squared error over the $D$ numbers of each sample.

# %%
def my_prior_loss(model, image_emb: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, t: torch.Tensor,
                  eps: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
    """unCLIP's prior loss: normalise, noise to x_t, ask the model for x_0 back. (B,)."""
    ### BEGIN SOLUTION
    x0 = (image_emb - mean) / std  # (B, D): zero mean, unit spread per dimension
    abar = alpha_bars[t][:, None]  # (B, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return (model(xt, t) - x0).pow(2).mean(dim=1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_prior_loss(my_prior_loss)

# %% [markdown]
# The prior learns from pairs $(e_\text{text}, e_\text{image})$: CLIP's embeddings of the training scenes'
# captions and pictures, computed once. Your loss on the shipped prior, against the package's `prior_loss`:

# %%
train_image_emb = embed_images(clip, train_scenes.images)  # (N, 64), once
train_text_emb = embed_captions(clip, train_scenes.captions)  # (N, 64)
prior = load_pretrained("unclip_prior", device=device).model
scale = prior.embedding_scale  # mean and std (64,) each, measured on the shipped training set
gen = torch.Generator().manual_seed(0)
t = torch.randint(prior.config.T, (16,), generator=gen).to(device)
eps = torch.randn(16, 64, generator=gen).to(device)
image_emb, text_emb = train_image_emb[:16].to(device), train_text_emb[:16].to(device)
with torch.no_grad():
    yours = my_prior_loss(lambda xt, t: prior(xt, t, text_emb), image_emb, scale.mean, scale.std, t, eps,
                          prior.alpha_bars)
    package = prior_loss(prior, prior.schedule.to(device), scale.normalise(image_emb), t, eps, text_emb)
print(f"same as the package: {torch.allclose(yours, package, atol=1e-5)}; shipped prior's loss on these 16: "
      f"{float(package.mean()):.3f}")
print(f"the embeddings' spread per dimension: {float(scale.std.min()):.3f} to {float(scale.std.max()):.3f} "
      f"(1 / sqrt(64) = {1 / math.sqrt(64):.3f}); their mean vector has length {float(scale.mean.norm()):.2f}")

# %% [markdown]
# The 64 spreads lie between 0.094 and 0.159, around $1/\sqrt{64}$, and this CLIP's mean embedding is short
# (length 0.08): here normalising mostly multiplies by about eight. Training a prior is cheap: the data are
# 64 numbers per sample. The shipped prior's network, trained for 600 steps (20 in quick mode) instead of
# 6,000, with a larger learning rate and a shorter average to make up for it, on our training scenes:

# %%
my_prior = DiffusionPrior(prior.config).to(device)
prior_objective = PriorObjective(train_text_emb, train_image_emb, my_prior.schedule, cond_drop_prob=0.1)
prior_train = TrainConfig(steps=pick(600, 20), batch_size=256, lr=2e-3, warmup_steps=pick(50, 2), ema_decay=0.99,
                          log_every=pick(100, 5), checkpoint_every=10**9)
start = time.perf_counter()
prior_state = fit(my_prior, prior_objective, prior_train, device=device, progress=False)
my_prior = prior_state.ema.model.eval()
prior_objective.finish(my_prior)  # store the measured mean and std with the weights
made = read_manifest()["unclip_prior"]
print(f"{prior_train.steps} steps in {time.perf_counter() - start:.0f} s, loss {prior_state.history.losses[0]:.3f} -> "
      f"{prior_state.history.losses[-1]:.3f}; shipped: {made['steps']:,} steps in {made['train_seconds']:.0f} s, "
      f"remake: {made['command']}")

# %% [markdown]
# What should a prior's samples look like? Like the embeddings of real pictures of the caption: close to
# them, and spread as much as they are. Three ways to go from $e_\text{text}$ to $e_\text{image}$, measured on
# the 500 test scenes of section 5:
#
# - **no prior**: use $e_\text{text}$ itself;
# - the **regression prior** (`unclip_regression_prior`, the paper's baseline): the same MLP trained to
#   output one guess, the squared error's best answer, which is the *mean* embedding of the caption's pictures;
# - the **diffusion prior**: a sample, DDIM with 25 steps.
#
# For each, the cosine with the embedding of the test picture, and the spread of eight samples of one
# caption (the mean distance between them), against the spread of eight real pictures of that caption:

# %%
regression_prior = load_pretrained("unclip_regression_prior", device=device).model
spread_prompts = [a for a in combinations("train")[::22]][:10]  # ten captions, spread over the 220
real_spread = []
for k, attrs in enumerate(spread_prompts):  # eight jittered drawings of each caption, as training draws them
    images = torch.stack([picture(attrs, seed=[k, j]) for j in range(8)])  # (8, 3, 32, 32)
    real_spread.append(mean_pairwise_distance(embed_images(clip, images)))
spread_text = embed_captions(clip, [a.caption() for a in spread_prompts for _ in range(8)]).to(device)  # (80, 64)


def samples_for(way: str, text_emb: torch.Tensor, guidance_scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Image embeddings (B, 64) for text embeddings (B, 64): 'text', 'regression', 'diffusion' or 'ours'."""
    if way == "text":
        return text_emb.cpu()
    if way == "regression":
        return predict_image_embeddings(regression_prior, text_emb).cpu()
    model = prior if way == "diffusion" else my_prior
    return sample_image_embeddings(model, text_emb, steps=25, guidance_scale=guidance_scale,
                                   generator=torch.Generator().manual_seed(seed)).cpu()


print(f"{'':>28} {'cos with the picture':>21} {'spread of 8':>12}")
print(f"{'real pictures of a caption':>28} {float(cos_image_image.mean()):>21.3f} {np.mean(real_spread):>12.3f}")
for way, label in [("text", "no prior (e_text)"), ("regression", "regression prior"),
                   ("diffusion", "diffusion prior (shipped)"), ("ours", f"our prior, {prior_train.steps} steps")]:
    emb = samples_for(way, gap_text.to(device))
    groups = samples_for(way, spread_text).view(10, 8, -1)
    spread = np.mean([mean_pairwise_distance(g) for g in groups])
    print(f"{label:>28} {float((emb * gap_image).sum(1).mean()):>21.3f} {spread:>12.3f}")

# %% [markdown]
# The caption's own embedding sits at the far side of the gap (0.937). Both shipped priors cross it: their
# embeddings are as close to the test picture's (0.996 and 0.993) as another real picture of the same
# caption is (0.994). The regression prior is even a little closer on average, and that is its flaw as much
# as its strength: it always answers with the *middle* of the caption's pictures, which is, on average, the
# point nearest to any one of them, and its spread is exactly zero. The diffusion prior samples: its eight
# embeddings of one caption spread about as far as eight real pictures do (0.110 against 0.106). That
# spread is what should let the decoder draw *different* pictures of one caption; section 7 measures
# whether it does. Our own prior, after a tenth of the shipped one's steps, is most of the way across the
# gap but not all of it (0.982 against 0.993), and its samples spread twice as far as real pictures' do
# (0.208 against 0.106): it has found the region, not yet its shape.
#
# **Guidance in the prior.** Classifier-free guidance sharpens a conditional model (chapter 07). Users of
# DALL·E 2 reimplementations report that guiding the prior makes pictures worse. In embedding space, for
# guidance scales $w$ = 1 (none), 2, 4 and 8: the cosine with the test picture, the share of sampled
# embeddings whose nearest one-shape caption is the right one (zero-shot, all four attributes), and the spread:

# %%
all_captions, all_indices = one_shape_captions()
all_caption_emb = embed_captions(clip, all_captions)  # (250, 64)
gap_wanted = torch.tensor([s.attributes().indices() for s in gap_scenes.scenes])  # (500, 4)


def read_embeddings(emb: torch.Tensor) -> torch.Tensor:
    """(B, 64) embeddings -> (B, 4) attributes of their nearest one-shape caption."""
    return all_indices[(emb @ all_caption_emb.T).argmax(dim=1)]


print(f"{'w':>4} {'cos with the picture':>21} {'nearest caption right':>22} {'spread of 8':>12}")
for w in (1.0, 2.0, 4.0, 8.0):
    emb = samples_for("diffusion", gap_text.to(device), guidance_scale=w)
    right = attribute_accuracy_of(read_embeddings(emb), gap_wanted)["all"]
    spread = np.mean([mean_pairwise_distance(g) for g in samples_for("diffusion", spread_text, w).view(10, 8, -1)])
    print(f"{w:>4.0f} {float((emb * gap_image).sum(1).mean()):>21.3f} {right:>22.1%} {spread:>12.3f}")

# %% [markdown]
# Every sampled embedding's nearest caption is the right one at every scale, and the cosine with the test
# picture hardly moves. The spread does: from 0.110 unguided to 0.021 at $w = 2$ and 0.007 at $w = 4$, a
# fifteenth of the spread of real pictures. Guidance pushes each sample away from the unconditional prior,
# towards what is most typical of the caption, and all samples of a caption end up at nearly the same point:
# the prior becomes a regression prior again. At $w = 8$ it overshoots (the spread grows again and the
# cosine falls), landing beyond where real pictures' embeddings lie, where the decoder never learnt anything.
# Whether the pictures suffer is the bench's question, in section 7.
#
# ## 7. The decoder, and the prior ablation
#
# The decoder draws a 32 × 32 picture from an image embedding: chapter 06's U-Net with the embedding as its
# condition, read twice (Ramesh et al. 2022, sec. 2.1, after GLIDE): projected and *added to the time
# embedding* every ResBlock reads (a nudge everywhere), and projected into four **context tokens** that
# the cross-attention layers read (each pixel asks for the part it needs). It was trained on the image
# embeddings of the training scenes, with 10 % of them dropped to the zero vector for classifier-free
# guidance, and it samples with DDIM and guidance scale 3. The whole system is one pipeline object:

# %%
pipe = UnCLIPPipeline.from_pretrained("unclip", device=device)
for stage, checkpoint in [("decoder", "unclip_decoder"), ("upsampler", "upsampler")]:
    made = read_manifest()[checkpoint]
    print(f"{checkpoint}: {count_parameters(pipe.stages[stage].model):,} parameters, {made['steps']:,} steps in "
          f"{made['train_seconds'] / 60:.0f} min on {made['hardware']}; remake: {made['command']}")
decoder_steps = pick(25, 4)  # DDIM steps of the decoder here; the bench and the pipeline's default use 50
scorer = load_pretrained("shapes_scorer", device=device).model  # chapter 06's judge: reads the four attributes

# %% [markdown]
# First, what does an embedding keep? Encode eight test pictures with CLIP and decode their embeddings: the
# decoder never sees the pictures, only the 64 numbers.

# %%
originals = gap_scenes.images[:8]
rebuilt = pipe.decode(pipe.encode_image(originals), steps=decoder_steps,
                      generator=torch.Generator().manual_seed(0)).cpu()
fig = show_images(torch.cat([originals, rebuilt]), nrow=8, scale=1.0,
                  suptitle="test pictures (top) and the decoder's drawing of their CLIP embeddings (bottom)")
plt.show()
read = attribute_accuracy(scorer, rebuilt, gap_wanted[:8])
print(f"the scorer reads all four attributes of the drawings right for {read['all']:.0%} of them")

# %% [markdown]
# Seven of the eight drawings read right; the fifth, a small blue cross, came back as a small blue circle (at
# 32 × 32 the two differ by a few pixels). What CLIP needs to match a caption survives: shape, colour, size,
# position. What no caption mentions (the exact position within the corner,
# the exact shade, the background's faint noise) is redrawn afresh.
#
# Now the experiment the paper's case rests on (Ramesh et al. 2022, sec. 5.1, at toy scale): the decoder
# fed four kinds of embedding for the same captions:
#
# - (a) **text**: the caption's text embedding directly, no prior;
# - (b) **regression**: the regression prior's guess;
# - (c) **diffusion**: the diffusion prior's sample;
# - (d) **true**: the image embedding of a real picture of the caption, the upper bound no prior can beat.
#
# Each judged by the attribute scorer (all four attributes right), by the CLIP score (cosine of the picture's
# and the caption's CLIP embeddings) and by diversity (mean RMS pixel distance between four pictures of one
# caption). Eight captions here (two in quick mode); the bench ran all 220.

# %%
n_prompts, n_variety = pick(8, 2), pick(4, 2)
prompts = combinations("train")[::27][:n_prompts]
prompt_captions = [a.caption() for a in prompts]
prompt_wanted = torch.tensor([a.indices() for a in prompts])
variety_prompts = prompts[:2]


def embeddings_for(variant: str, attributes: list, captions: list[str], seed: int) -> torch.Tensor:
    """The image embeddings (B, 64) the decoder gets in each arm of the ablation."""
    if variant == "true":
        return pipe.encode_image(torch.stack([picture(a) for a in attributes]))  # a real picture's embedding
    return pipe.prior_embeddings(pipe.encode_prompt(captions), prior=variant,
                                 generator=torch.Generator().manual_seed(seed))


ablation, start = {}, time.perf_counter()
for variant in ("text", "regression", "diffusion", "true"):
    emb = embeddings_for(variant, prompts, prompt_captions, seed=0)
    pictures = pipe.decode(emb, steps=decoder_steps, generator=torch.Generator().manual_seed(1)).cpu()
    spread = []
    for k, attrs in enumerate(variety_prompts):  # n_variety pictures of one caption, each from its own sample
        emb = embeddings_for(variant, [attrs] * n_variety, [attrs.caption()] * n_variety, seed=10 + k)
        spread.append(diversity(pipe.decode(emb, steps=decoder_steps, generator=torch.Generator().manual_seed(2 + k))))
    ablation[variant] = {"pictures": pictures, **attribute_accuracy(scorer, pictures, prompt_wanted),
                         "clip_score": float(clip_score(clip, pictures, prompt_captions).mean()),
                         "diversity": float(np.mean(spread))}
print(f"{len(ablation) * (n_prompts + len(variety_prompts) * n_variety)} pictures in "
      f"{time.perf_counter() - start:.0f} s")
print(f"{'decoder fed':>12} {'all four':>9} {'shape':>6} {'colour':>7} {'size':>6} {'position':>9} "
      f"{'CLIP score':>11} {'diversity':>10}")
for variant, row in ablation.items():
    print(f"{variant:>12} {row['all']:>9.0%} {row['shape']:>6.0%} {row['colour']:>7.0%} {row['size']:>6.0%} "
          f"{row['position']:>9.0%} {row['clip_score']:>11.3f} {row['diversity']:>10.3f}")
fig = show_images(torch.cat([row["pictures"] for row in ablation.values()]), nrow=n_prompts, scale=1.0,
                  suptitle="decoder fed: text embedding / regression prior / diffusion prior / true image "
                           "embedding (rows)")
plt.show()

# %% [markdown]
# The text embedding is the only arm that misses here: one of its eight pictures (the small purple diamond,
# drawn in the bottom right instead of the bottom left) has the wrong place, and its CLIP score is lower
# (0.907 against 0.931 for the others). The decoder has only ever seen image embeddings, and the text
# embedding lies across the modality gap, at a point it never learnt about; it still draws something close,
# because the gap is small next to the distance between captions. Both priors and the true embedding get all
# eight right. Note the diversity column: the regression prior's pictures of one caption spread 0.115, the
# same as the true embedding's (which is one fixed embedding per caption here, so only the decoder's noise
# varies them), while the diffusion prior's spread 0.175, because each picture starts from its own sample of
# the embedding. The text embedding's 0.224 is the largest, but part of that spread is pictures drawn wrong.
#
# Eight captions make a noisy table. The bench (`bench/unclip_quality.py`) drew one picture for each of the
# 220 training captions and the 30 held-out ones, through the whole cascade at 64 × 64, for each arm, and
# swept the prior's guidance scale:

# %%
quality = bench_results("unclip_quality")
if quality is None:
    print("bench/results/unclip_quality.json is missing: make it with\n"
          "    .venv/bin/python bench/unclip_quality.py\nthen rerun this cell")
else:
    print(f"{'prompts':>15} {'decoder fed':>12} {'prior w':>8} {'all four':>9} {'CLIP score':>11} {'diversity':>10}")
    for key, row in quality["results"].items():
        split, variant, w = key.split("/")
        div = f"{row['diversity']:.3f}" if "diversity" in row else "-"
        print(f"{'training pairs' if split == 'train' else 'held-out pairs':>15} {variant:>12} {w[2:]:>8} "
              f"{row['all']:>9.1%} {row['clip_score']:>11.3f} {div:>10}")

# %% [markdown]
# On the 220 training captions, the decoder fed the caption's own text embedding (a) draws all four
# attributes right 95.5 % of the time; either prior raises that to 98.2 % ((b) and (c)), as high as the
# true image embedding (d) at 97.7 %. At this scale the modality gap costs a few points, and a prior wins
# them all back. The CLIP score orders the arms the same way: 0.909 for (a), 0.928 and 0.933 for the priors,
# 0.927 for (d). On the 30 held-out captions (colour-shape pairs the decoder never drew), (a) falls to
# 83.3 % and the diffusion prior draws all 30 right. With 30 pictures one miss is 3 points, so read that as
# "no worse", not as "better than the true embedding".
#
# Diversity is the paper's claim: a diffusion prior gives varied pictures at no loss of fidelity, where a
# regression prior gives one answer per caption. It holds here: 0.108 for the diffusion prior against 0.094
# for the regression prior, at the same 98.2 %. Guiding the prior (w = 2 or 4) gains almost a point of
# fidelity (99.1 %) at the same CLIP score; section 6 showed the price, the prior's samples of one caption
# collapsing to nearly one point, so the pictures vary only by the decoder's noise.
#
# (One more lesson from making this table. The decoder shipped first had half the training, 4,000 steps. Fed
# the true embeddings, it drew the place right only about two times in three, often mirroring left and right,
# though colour and shape were already near perfect: a global vector that says "top right" has to become a
# shape at one spot of a convolutional network's grid, and that is the last thing it learns. Doubling its
# training fixed it. When a conditional model ignores one attribute, train it longer before you redesign it.)
#
# ## 8. Variations, text diffs, and what the embedding keeps
#
# Because the decoder draws from an embedding, anything that yields an embedding yields pictures. Encode one
# picture and decode its embedding with new noise: **variations**, DALL·E 2's first party trick. What CLIP
# kept stays; the rest varies. Measured: the scorer's reading of eight variations (kept?) and their spread,
# against eight real drawings of the same caption with the data set's jitter:

# %%
source_attrs = ShapeAttributes("triangle", "purple", "large", "bottom left")
source = picture(source_attrs, seed=0)  # (3, 32, 32)
n_var = pick(8, 2)
variations = pipe.image_variations(source, n_var, steps=decoder_steps, seed=0, upscale=False).cpu()  # (n, 3, 32, 32)
jittered = torch.stack([picture(source_attrs, seed=j + 1) for j in range(n_var)])  # real drawings of the caption
fig = show_images(torch.cat([source[None], variations]), nrow=n_var + 1, scale=1.0,
                  titles=["source"] + [f"variation {k + 1}" for k in range(n_var)])
plt.show()
kept = attribute_accuracy(scorer, variations, torch.tensor([source_attrs.indices()] * n_var))
print(f"variations: all four attributes kept in {kept['all']:.0%}; spread {diversity(variations):.3f} "
      f"(real drawings of the caption: {diversity(jittered):.3f})")

# %% [markdown]
# Seven of the eight variations keep all four attributes; the third moved the triangle to the bottom right.
# They spread 0.171, more than eight real drawings of the caption (0.122), partly because of the one that
# moved: the decoder keeps what CLIP kept, and only about as reliably as section 7's table says.
#
# Embeddings can also be *edited*. DALL·E 2's **text diffs** (sec. 3.3): to turn a picture of "a large red
# square" into a blue one, take the direction from the old caption's text embedding to the new one's,
# $d = \operatorname{normalise}(e_\text{text}(\text{new}) - e_\text{text}(\text{old}))$, move the picture's
# embedding along it and put it back on the sphere:
# $e' = \operatorname{normalise}(e_\text{image} + a\,d)$, then decode with the same noise for every amount
# $a$. (The paper turns by an angle instead of adding; on the sphere the two trace the same path.)
#
# ### Exercise 10.3: a text diff
#
# Write `text_diff(image_emb, from_emb, to_emb, amount)`: all embeddings $(B, D)$, one edit per row, `amount`
# a number. Return the edited embeddings $(B, D)$, unit vectors.

# %%
def text_diff(image_emb: torch.Tensor, from_emb: torch.Tensor, to_emb: torch.Tensor, amount: float) -> torch.Tensor:
    """normalise(image_emb + amount * normalise(to_emb - from_emb)), row by row."""
    ### BEGIN SOLUTION
    direction = F.normalize(to_emb - from_emb, dim=-1)  # (B, D), unit length
    return F.normalize(image_emb + amount * direction, dim=-1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_text_diff(text_diff)

# %%
old, new = "a large red square in the centre", "a large blue square in the centre"
square = picture(ShapeAttributes("square", "red", "large", "centre"))
amounts = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5]
e_old, e_new, e_square = pipe.encode_prompt([old]), pipe.encode_prompt([new]), pipe.encode_image(square[None])
mine = torch.cat([text_diff(e_square, e_old, e_new, a) for a in amounts])  # (6, 64)
package_way = F.normalize(e_square + torch.tensor(amounts, device=e_square.device)[:, None]
                          * F.normalize(e_new - e_old, dim=-1), dim=-1)
print(f"your edits equal the pipeline's arithmetic: {torch.allclose(mine, package_way, atol=1e-6)}")
edited = pipe.text_diff(square, old, new, amounts, steps=decoder_steps, seed=0, upscale=False).cpu()
fig = show_images(edited, nrow=len(amounts), scale=1.0, titles=[f"a = {a:g}" for a in amounts])
plt.show()
colour_read = [list(COLOURS)[int(i)] for i in scorer.predict(edited.to(device))[:, 1]]  # column 1: the colour
print("the scorer reads the colour as: " + ", ".join(f"{a:g}: {c}" for a, c in zip(amounts, colour_read)))

# %% [markdown]
# The colour turns between a = 0.25 (a red square with a blue corner, half-way) and a = 0.5, and stays blue
# beyond; the shape, size and place stay put at every amount. One embedding direction carries "red rather than blue", and moving along it changes the colour
# while the decoder keeps what the rest of the embedding says.
#
# **How many numbers carry the gist?** An embedding has 64, but they are not independent. Take the image
# embeddings of 2,000 test scenes and find their principal components, the directions in which they vary
# most. Keep only the first $k$ components of each test picture's embedding (plus the mean), and ask CLIP
# which one-shape caption is nearest: does the truncated embedding still say the right shape, colour, size
# and position?

# %%
pca_scenes = make_scenes(2000, seed=4, split="all")
pca_emb = embed_images(clip, pca_scenes.images)  # (2000, 64)
pca_mean = pca_emb.mean(0)
_, singular, components = torch.linalg.svd(pca_emb - pca_mean, full_matrices=False)  # components (64, 64)
explained = (singular**2).cumsum(0) / (singular**2).sum()


def keep_components(emb: torch.Tensor, k: int) -> torch.Tensor:
    """emb (B, 64) projected on the first k principal components (plus the mean), back on the sphere."""
    top = components[:k]  # (k, 64)
    return F.normalize(pca_mean + (emb - pca_mean) @ top.T @ top, dim=-1)


ks = [1, 2, 4, 8, 12, 16, 24, 32, 64]
read_k = [attribute_accuracy_of(read_embeddings(keep_components(gap_image, k)), gap_wanted) for k in ks]  # dicts
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(range(1, 65), explained.numpy(), "o-", ms=2)
axes[0].set(xlabel="principal components kept", ylabel="share of the variance", ylim=(0, 1.02))
for name in ("shape", "colour", "size", "position", "all"):
    axes[1].plot(ks, [r[name] for r in read_k], "o-", ms=3, label=name)
axes[1].set(xscale="log", xticks=ks, xticklabels=ks, xlabel="principal components kept",
            ylabel="nearest caption right", ylim=(0, 1.02))
axes[1].xaxis.set_minor_formatter(plt.NullFormatter())
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"{'k':>3} {'variance':>9} {'shape':>6} {'colour':>7} {'size':>6} {'position':>9} {'all four':>9}")
for k, r in zip(ks, read_k):
    print(f"{k:>3} {float(explained[k - 1]):>9.1%} {r['shape']:>6.0%} {r['colour']:>7.0%} {r['size']:>6.0%} "
          f"{r['position']:>9.0%} {r['all']:>9.0%}")

# %% [markdown]
# The variance is spread over many directions: the first component holds 11 % of it, 16 components 95 %.
# The attributes arrive in an order: the size is read right for every picture from 4 components, shape and
# colour need about 12, the position (five places) comes last; with 12 components all four are right for
# 99 % of the pictures and with 16 for all of them. The remaining 48 directions carry what no caption names:
# the jitter of place and shade that makes two pictures of one caption differ.
# DALL·E 2's Fig. 7 shows the same in pictures, decoding embeddings cut to a few PCA dimensions; here are
# ours, for two test pictures:

# %%
ks_show = [2, 4, 8, 16, 64]
cut = torch.cat([keep_components(gap_image[[0, 5]], k) for k in ks_show])  # (10, 64): picture 0, picture 5, ...
drawn = pipe.decode(cut.to(device), steps=decoder_steps, generator=torch.Generator().manual_seed(3)).cpu()
order = [i for pair in range(2) for i in range(pair, len(cut), 2)]  # picture 0's row first
fig = show_images(torch.cat([gap_scenes.images[[0]], drawn[order[:5]], gap_scenes.images[[5]], drawn[order[5:]]]),
                  nrow=6, scale=1.0, titles=["original"] + [f"k = {k}" for k in ks_show] + ["original"]
                  + [f"k = {k}" for k in ks_show])
plt.show()

# %% [markdown]
# With 2 or 4 components the decoder draws some other scene altogether (two purple shapes, a red-green
# triangle); with 8 the first picture is a blue square in the right place, right colour, wrong shape, and the
# second is already right; with 16 both are right, as the table predicted.
#
# ## 9. The cascade: 32 × 32 → 64 × 64
#
# DALL·E 2 and Imagen draw small and enlarge twice. A diffusion **upsampler** (SR3, Saharia et al. 2021) is a
# denoiser of the *large* picture that also reads the small one: the low-resolution picture is enlarged by
# bilinear interpolation and stacked onto the noisy $x_t$ as three more channels. It is trained on pairs made
# from real pictures: a crop, and the crop shrunk by averaging 2 × 2 blocks.
#
# At sampling, though, the small picture comes from the decoder, not from a real picture, and it has flaws
# no real one has: a wobble in an edge, a speck, a colour slightly off. An upsampler that trusts its input
# completely copies them faithfully, or worse, produces artefacts on inputs unlike anything in training.
# **Noise-conditioning augmentation** (Ho et al. 2021, sec. 4.2; Imagen calls it critical) trains with
# the small picture itself noised by the forward process at a random level $s \in [0, 0.3]$, and tells the
# network $s$. The network learns to use the small picture *as evidence*, trusting it less the noisier it is;
# at sampling, the decoder's output is noised to a small fixed level (0.1 here) so that its flaws drown in
# noise the network knows how to see through.
#
# ### Exercise 10.4: the upsampler's condition
#
# Write `low_res_condition(images, alpha_bar, noise)` returning what the upsampler reads beside $x_t$ during
# training: shrink `images` $(B, C, H, W)$ by averaging 2 × 2 blocks, noise the result to
# $\sqrt{\bar\alpha}\,\text{low} + \sqrt{1-\bar\alpha}\,\text{noise}$ (`alpha_bar` is $(B,)$, one level per
# picture; `noise` is $(B, C, H/2, W/2)$), then enlarge it back to $H \times W$ by bilinear interpolation.

# %%
def low_res_condition(images: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Average 2x2 blocks, noise to alpha_bar (B,), enlarge bilinearly: (B, C, H, W) -> (B, C, H, W)."""
    ### BEGIN SOLUTION
    low = F.avg_pool2d(images, 2)  # (B, C, H/2, W/2)
    a = alpha_bar.view(-1, 1, 1, 1)
    low = a.sqrt() * low + (1 - a).sqrt() * noise
    return F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
check_low_res_condition(low_res_condition)

# %%
big = make_scenes(8, size=64, seed=5).images  # (8, 3, 64, 64)
level = torch.tensor([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.3])  # s, one per picture
aug_noise = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
yours = low_res_condition(big, augmentation_alpha_bar(level), aug_noise)
package = enlarge(noise_augment(downsample(big), level, aug_noise))
print(f"same as the package (models/upsampler.py): {torch.allclose(yours, package, atol=1e-6)}")
fig = show_images(torch.cat([big, yours]), nrow=8, scale=1.0,
                  titles=[""] * 8 + [f"s = {float(s):.2f}" for s in level])
plt.show()

# %% [markdown]
# The top row is what the upsampler should produce, the bottom row what it reads: blurred by the round trip
# through 32 × 32, and noisier as $s$ grows. At $s = 0.3$, the most training uses, the shapes are still
# plain; the exact edges are not.
#
# One more choice, this one the course's rather than the papers'. SR3 and DALL·E 2 start the upsampler from
# pure noise at the large size. This upsampler is small and trained for minutes, and from pure noise it
# draws blotches (`bench/results/upsampler_start.md`: mean error 0.31 against 0.03 for bilinear). So the
# pipeline starts it as SDEdit starts an edit (chapter 08): from the bilinear enlargement noised halfway
# (strength 0.5), and runs the last 10 of its 20 steps. The network then only has to sharpen, not invent.
#
# Now the shipped upsampler, on two kinds of input, with the augmentation level at sampling set to 0 (trust
# the small picture) or 0.1 (the pipeline's default): real pictures shrunk to 32 × 32, where the true
# 64 × 64 is known and the error can be measured; and the decoder's own 32 × 32 pictures from section 7,
# where it cannot, and we ask instead whether the scorer still reads the right attributes and how far the
# enlarged picture, shrunk again, strays from its input. Error alone flatters blur: a blurred edge is never
# far wrong. So we also measure **sharpness**, the mean absolute Laplacian (the sum of a pixel's four
# neighbours minus four times itself), which is large only where the picture changes abruptly.

# %%
n_up = pick(8, 2)
real_low = downsample(big[:n_up])  # (n, 3, 32, 32)
generated_low = ablation["diffusion"]["pictures"][:n_up]  # the decoder's pictures of section 7
enlarged, start = {}, time.perf_counter()
for s in (0.0, 0.1):
    for name, low in [("real", real_low), ("generated", generated_low)]:
        enlarged[name, s] = pipe.upscale(low, augmentation_level=s, steps=pick(20, 4),
                                         generator=torch.Generator().manual_seed(0)).cpu()
print(f"{4 * n_up} pictures enlarged in {time.perf_counter() - start:.0f} s")


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def sharpness(images: torch.Tensor) -> float:
    """Mean absolute Laplacian of (N, 3, H, W): how much edge the pictures have."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(F.conv2d(images, kernel, groups=3).abs().mean())


print(f"real inputs: RMS error against the true 64 x 64: bilinear {rms(enlarge(real_low), big[:n_up]):.3f}, "
      + ", ".join(f"upsampler at s = {s:g} {rms(enlarged['real', s], big[:n_up]):.3f}" for s in (0.0, 0.1)))
print(f"real inputs: sharpness: true 64 x 64 {sharpness(big[:n_up]):.3f}, bilinear {sharpness(enlarge(real_low)):.3f}, "
      + ", ".join(f"upsampler at s = {s:g} {sharpness(enlarged['real', s]):.3f}" for s in (0.0, 0.1)))
for s in (0.0, 0.1):
    back = F.avg_pool2d(enlarged["generated", s], 2)
    read = attribute_accuracy(scorer, back, prompt_wanted[:n_up])
    print(f"generated inputs, s = {s:g}: all four attributes read right {read['all']:.0%}; shrunk back, RMS "
          f"{rms(back, generated_low):.3f} from the input")
fig = show_images(torch.cat([enlarge(generated_low), enlarged["generated", 0.0], enlarged["generated", 0.1]]),
                  nrow=n_up, scale=1.0, suptitle="the decoder's 32 x 32, enlarged: bilinear / upsampler at s = 0 / "
                                                  "upsampler at s = 0.1 (rows)")
plt.show()

# %% [markdown]
# On real inputs all three are about equally far from the truth (RMS 0.061 to 0.062): error alone cannot
# tell them apart. Sharpness can: the true 64 × 64 pictures have 0.131 of it, bilinear's enlargements
# 0.020 (every edge smeared over two pixels), the upsampler's 0.068, nearly half-way back to the truth at the
# same error.
# On the decoder's own pictures the scorer reads all four attributes right after enlarging at either level,
# and the enlarged pictures, shrunk again, stay close to their inputs (RMS 0.043 at s = 0, 0.044 at 0.1). The
# two bottom rows of the figure are hard to tell apart; the difference is in the principle. With $s = 0$ the
# upsampler treats the decoder's picture as if it were a real one shrunk, and sharpens whatever is there, flaws
# included; with $s = 0.1$ it is allowed to correct them, at the price of straying a little further from its
# input.
#
# **What each stage costs.** One picture end to end, stage by stage, timed now (the bench's table
# `bench/results/unclip_timing.md`, measured on a quiet machine, follows if it exists):

# %%
n_time = pick(4, 1)
timing_prompts = ["a small red circle in the top left"] * n_time
gen = torch.Generator().manual_seed(0)
seconds = {}
start = time.perf_counter()
text_emb = pipe.encode_prompt(timing_prompts)
seconds["CLIP text encoder"] = time.perf_counter() - start
start = time.perf_counter()
image_emb = pipe.prior_embeddings(text_emb, generator=gen)
seconds["prior (DDIM 25)"] = time.perf_counter() - start
start = time.perf_counter()
low = pipe.decode(image_emb, steps=decoder_steps, generator=gen)
seconds[f"decoder (DDIM {decoder_steps}, guided)"] = time.perf_counter() - start
start = time.perf_counter()
high = pipe.upscale(low, steps=pick(20, 4), generator=gen)
seconds[f"upsampler (DDIM {pick(20, 4)})"] = time.perf_counter() - start
for stage, s in seconds.items():
    print(f"{stage:>28}: {1000 * s / n_time:7.1f} ms per picture")
print(f"{'total':>28}: {1000 * sum(seconds.values()) / n_time:7.1f} ms per picture, {tuple(high.shape[1:])}")
timing_bench = bench_results("unclip_timing")
if timing_bench:
    print("bench, one picture: " + ", ".join(f"{k} {v:.2f} s" for k, v in timing_bench["seconds"].items()))

# %% [markdown]
# The decoder dominates: 161 of the 265 ms per picture here (DDIM 25), and 0.57 of the bench's 0.65 s end
# to end (DDIM 50, a quiet machine); the upsampler takes most of the rest, the text encoder and the prior
# about a twentieth together. The prior is nearly free: 64 numbers through a small
# MLP, 25 times. The decoder and the upsampler are U-Nets over pictures, run at every step, and the decoder
# runs twice per step for guidance. The upsampler works on four times as many pixels as the decoder, which
# is why cascades keep their last stages' step counts low (and why Stable Diffusion, chapter 11, moves the
# whole diffusion into a small latent instead).
#
# ## Summary
#
# - CLIP trains two encoders so that a picture and its caption land on nearby unit vectors: a symmetric
#   cross-entropy over the rows and columns of the scaled cosine matrix, with the temperature learned. Where
#   captions repeat, every copy is a match (targets spread over the equal captions).
# - A trained CLIP reads pictures without a classifier: the nearest of the 250 one-shape captions gives
#   every attribute (100 % on training pairs in the bench, 98 % shape on held-out pairs), and a caption
#   retrieves its pictures.
# - This small CLIP binds colours to shapes: it prefers the true two-shape caption to the colour-swapped one
#   99.9 % of the time. A tiny grammar, rivals of the same words in every batch, and an image encoder that
#   keeps the layout make it so; large CLIPs trained on web captions have none of the three.
# - Captions and pictures occupy different regions of CLIP's space (the modality gap): a picture has a cosine
#   of about 0.94 with its caption and about 0.99 with another picture of the caption. A decoder that learnt
#   from pictures' embeddings needs a prior to cross it.
# - The prior is a diffusion model over normalised 64-number embeddings that predicts $x_0$; its samples
#   land where real pictures' embeddings do, and spread as they do. The regression prior lands at their middle
#   and never varies. Fed by either prior, the decoder draws all four attributes right 98.2 % of the time
#   (the bench, 220 captions), fed the caption's text embedding 95.5 %, the true image embedding 97.7 %; the
#   diffusion prior's pictures of one caption vary more than the regression prior's (0.108 against 0.094).
# - Anything that gives an embedding gives pictures: variations (same embedding, new noise), text diffs
#   (move along $e_\text{text}(\text{new}) - e_\text{text}(\text{old})$), truncated embeddings: 16 principal
#   components carry every attribute.
# - The cascade enlarges 32 × 32 to 64 × 64 with a fully convolutional upsampler trained on noised low-res
#   inputs, so that it can see through the flaws of a generated one.
#
# ## What's next
#
# DALL·E 2 draws from one global embedding, and chapter 10's system inherits what that embedding keeps and
# loses. Chapter 11 builds the other family, a small Stable Diffusion: a U-Net in an autoencoder's latent
# space (chapter 08) that reads the caption's words through cross-attention (chapter 06), with
# classifier-free guidance (chapter 07). It measures attribute binding on the same two-shape scenes, against
# this chapter's system, and wraps the whole thing in a Midjourney-style `/imagine` loop.
