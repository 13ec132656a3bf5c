"""Which words does a text-to-image model listen to? Swap one kind of word in real captions and see how much the
model's noise prediction gets worse (chapter 11's diagnosis of tiny_sd).

    .venv/bin/python bench/word_sensitivity.py                                  # the published tiny_sd
    .venv/bin/python bench/word_sensitivity.py --checkpoint runs/tiny_sd/checkpoint.pt --raw   # a training run

For 300 test scenes (seed 5, encoded by the model's autoencoder) and their true captions, the denoising loss
E||eps - eps_theta(z_t, t, c)||^2 at fixed noise, t = 500 and 900, with c the true caption and with c edited:
top <-> bottom and left <-> right (one-shape captions, centre left out), small <-> large, one colour for another,
one shape for another, and in two-shape captions the relation reversed (above <-> below, left of <-> right of) and
the relation's axis changed. A model that uses a kind of word loses accuracy when it is swapped: the table gives the
loss increase. A swap that costs nothing is a word the model ignores: the first tiny_sd ignored top and bottom.

--checkpoint reads a training checkpoint's EMA weights (--raw: its raw weights) into the published tiny_sd's
architecture, so a run can be watched while it trains. Writes bench/results/word_sensitivity.md and .json unless
--no-write.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.latent import encode
from diffusion_lab.pipelines.text_to_image import TinySDPipeline

RESULTS = Path(__file__).resolve().parent / "results"
COLOURS = ("red", "green", "blue", "yellow", "purple")
SHAPES = ("circle", "square", "triangle", "diamond", "cross")


def swap(caption: str, a: str, b: str) -> str:
    """Exchange the words (or phrases) a and b in a caption."""
    return caption.replace(a, "\0").replace(b, a).replace("\0", b)


def next_word(caption: str, words: tuple[str, ...]) -> str:
    """Replace each word of ``words`` in the caption by the next one in the list (so it names another)."""
    return " ".join(words[(words.index(w) + 1) % len(words)] if w in words else w for w in caption.split())


EDITS: dict[str, tuple[str, Callable[[str], str]]] = {  # name -> (which captions, edit)
    "top <-> bottom": ("one", lambda c: swap(c, "top", "bottom")),
    "left <-> right": ("one", lambda c: swap(c, "left", "right")),
    "small <-> large": ("one", lambda c: swap(c, "small", "large")),
    "another colour": ("one", lambda c: next_word(c, COLOURS)),
    "another shape": ("one", lambda c: next_word(c, SHAPES)),
    "relation reversed": ("two", lambda c: swap(swap(c, "above", "below"), "left of", "right of")),
    "relation's axis changed": ("two", lambda c: swap(swap(c, " above ", " to the left of "), " below ",
                                                      " to the right of ")),
}


def load(args: argparse.Namespace) -> TinySDPipeline:
    pipe = TinySDPipeline.from_pretrained("tiny_sd", root=args.checkpoints, device="cpu")
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        weights = state["model"] if args.raw else state["ema"]
        weights = weights.get("model", weights) if isinstance(weights, dict) else weights
        pipe.model.load_state_dict({k: v.float() for k, v in weights.items()})
        print(f"weights of {args.checkpoint}, step {state['step']} ({'raw' if args.raw else 'EMA'})")
    return pipe


def denoising_loss(model: torch.nn.Module, zt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                   captions: list[str]) -> float:
    """Mean squared error of the model's noise prediction for latents zt (N, 4, 16, 16) at steps t (N,)."""
    return float(((model(zt, t, model.encode_prompts(captions)) - eps) ** 2).mean())


@torch.no_grad()
def sensitivity(pipe: TinySDPipeline, ts: tuple[int, ...] = (500, 900)) -> dict:
    model, out = pipe.model.eval(), {}
    for kind, fraction in (("one", 0.0), ("two", 1.0)):
        scenes = make_scenes(300, size=64, seed=5, two_shape_fraction=fraction)
        keep = [i for i, c in enumerate(scenes.captions) if kind == "two" or "centre" not in c]
        captions = [scenes.captions[i] for i in keep]
        z = encode(pipe.autoencoder, scenes.images[keep])  # (N, 4, 16, 16)
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        for t in ts:
            abar = pipe.schedule.alpha_bars[t]
            zt, tt = abar.sqrt() * z + (1 - abar).sqrt() * eps, torch.full((len(z),), t)

            base = denoising_loss(model, zt, tt, eps, captions)
            out[f"{kind}/t={t}/true caption"] = base
            for name, (which, edit) in EDITS.items():
                if which == kind:
                    out[f"{kind}/t={t}/{name}"] = denoising_loss(model, zt, tt, eps, [edit(c) for c in captions]) - base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=None, help="where tiny_sd is published (default data/checkpoints)")
    parser.add_argument("--checkpoint", default=None, help="a training checkpoint (runs/NAME/checkpoint.pt)")
    parser.add_argument("--raw", action="store_true", help="the checkpoint's raw weights instead of its EMA")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    result = sensitivity(load(args))
    lines = ["# Which words tiny_sd listens to: the loss increase when one kind of word is swapped", "",
             f"`.venv/bin/python bench/word_sensitivity.py{' --checkpoint ' + args.checkpoint if args.checkpoint else ''}`"
             f"; 300 test scenes, fixed noise.", "", "| captions | t | edit | loss (true caption) or its increase |",
             "|---|---|---|---|"]
    for key, value in result.items():
        kind, t, name = key.split("/")
        lines.append(f"| {kind}-shape | {t[2:]} | {name} | {'' if name == 'true caption' else '+'}{value:.5f} |")
    print("\n".join(lines))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "word_sensitivity.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "word_sensitivity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
