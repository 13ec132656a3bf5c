"""The mini Stable Diffusion (``tiny_sd``, chapter 11), measured: one-shape fidelity, two-shape binding against
chapter 10's unCLIP, the guidance sweep with and without dynamic thresholding, and chapter 06's pixel-space
``shapes_text`` drawn on the same prompts for the cost table.

    .venv/bin/python bench/tiny_sd_quality.py --note "alone, 2 threads"

One-shape fidelity: one picture per one-shape prompt (the 220 training pairs, the 30 held-out pairs apart), the
share the shipped ``shapes_scorer`` reads with all four attributes right (64x64 pictures shrunk to its 32x32 by
2x2 averaging); diversity: the mean RMS pixel distance between 8 pictures of one prompt (10 prompts). The bar
(issue 17): tiny_sd, training pairs, all four right >= 95 % at its defaults (DDIM 25, w = 4).

Binding: the two-shape prompts of ``bench/unclip_quality.py`` (``make_scenes(200, seed=7, split="train",
two_shape_fraction=1)``, and 100 of held-out pairs), one picture each, read by the shipped ``scenes_scorer``:
both objects' shape and colour and the relation right. unCLIP's figures are read from
``results/unclip_quality.json`` (same prompts, same scorer) and shown beside.

Guidance sweep: every other training one-shape prompt (110), at each w, plain and with Imagen's dynamic
thresholding (percentile 99.5, in latent space): all four right, and "at the limits", the share of colour values
a picture has at 0 or 255 (the decoder's output clipped to [-1, 1]), which over-guidance drives up; real pictures
of the same captions give the baseline.

Writes bench/results/tiny_sd_quality.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.data.shapes import combinations, render
from diffusion_lab.judges.binding import binding_accuracy
from diffusion_lab.judges.metrics import attribute_accuracy, diversity, share_at_limits
from diffusion_lab.pipelines.registry import load_pipeline
from diffusion_lab.pipelines.text_to_image import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, TinySDPipeline
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 64
# draw(prompts, seed, guidance_scale, dynamic_threshold) -> pictures (N, 3, S, S) in [-1, 1]
Draw = Callable[[list[str], int, float, float | None], torch.Tensor]


def tiny_sd_draw(pipe: TinySDPipeline, steps: int) -> Draw:
    def draw(prompts: list[str], seed: int, w: float, threshold: float | None) -> torch.Tensor:
        out = [pipe(prompt=prompts[i:i + BATCH], num_inference_steps=steps, guidance_scale=w,
                    dynamic_threshold=threshold, generator=torch.Generator().manual_seed(seed + i))
               for i in range(0, len(prompts), BATCH)]
        return torch.cat(out)
    return draw


def shapes_text_draw(steps: int) -> Draw:
    """Chapter 06's 32x32 pixel-space text model, sampled by DDIM with classifier-free guidance."""
    pipe = load_pipeline("shapes_text", device="cpu")

    def draw(prompts: list[str], seed: int, w: float, threshold: float | None) -> torch.Tensor:
        assert threshold is None
        return pipe(len(prompts), prompt=prompts, steps=steps, sampler="ddim", guidance_scale=w, seed=seed)
    return draw


def at_32(pictures: torch.Tensor) -> torch.Tensor:
    return pictures if pictures.shape[-1] == 32 else F.interpolate(pictures, size=(32, 32), mode="area")


def one_shape(draw: Draw, scorer: torch.nn.Module, split: str, seed: int, w: float,
              threshold: float | None = None, every: int = 1, with_diversity: bool = False) -> dict:
    attributes = combinations(split)[::every]
    prompts = [a.caption() for a in attributes]
    start = time.perf_counter()
    pictures = draw(prompts, seed, w, threshold)
    row = {**attribute_accuracy(scorer, at_32(pictures), torch.tensor([a.indices() for a in attributes])),
           "at_limits": share_at_limits(pictures), "n": len(prompts)}
    if with_diversity:  # 8 pictures of each of 10 prompts
        few = attributes[::len(attributes) // 10][:10]
        row["diversity"] = sum(diversity(draw([a.caption()] * 8, seed + 1 + i, w, threshold))
                               for i, a in enumerate(few)) / len(few)
    row["seconds"] = time.perf_counter() - start
    return row


def binding(draw: Draw, scorer: torch.nn.Module, n: int, seed: int, w: float) -> dict:
    record = {}
    for split, count in (("train", n), ("held_out", n // 2)):
        scenes = make_scenes(count, size=32, seed=7, split=split, two_shape_fraction=1.0)
        pictures = draw(list(scenes.captions), seed, w, None)
        record[split] = {**binding_accuracy(scorer, pictures, scenes.captions), "n": count}
        print("binding", split, {k: round(v, 3) for k, v in record[split].items()}, flush=True)
    return record


def real_at_limits(every: int) -> float:
    attributes = combinations("train")[::every]
    pictures = torch.stack([torch.from_numpy(render(a, 64)) for a in attributes]).permute(0, 3, 1, 2)
    return share_at_limits(pictures.float() / 127.5 - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE)
    parser.add_argument("--sweep", type=float, nargs="+", default=[1.0, 2.0, 4.0, 7.0, 12.0])
    parser.add_argument("--threshold", type=float, default=99.5, help="dynamic thresholding's percentile")
    parser.add_argument("--two-shape-prompts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="what else ran on the machine, for the results file")
    parser.add_argument("--checkpoints", default=None, help="where tiny_sd is (default data/checkpoints)")
    args = parser.parse_args()
    started = time.perf_counter()
    pipe = TinySDPipeline.from_pretrained("tiny_sd", root=args.checkpoints, device="cpu")
    shapes_scorer = load_pretrained("shapes_scorer", device="cpu").model
    scenes_scorer = load_pretrained("scenes_scorer", device="cpu").model
    sd, pixel = tiny_sd_draw(pipe, args.steps), shapes_text_draw(args.steps)
    head = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(), **vars(args)}

    fidelity = {}
    for name, draw in (("tiny_sd", sd), ("shapes_text", pixel)):
        for split in ("train", "held_out"):
            row = one_shape(draw, shapes_scorer, split, args.seed, args.guidance, with_diversity=split == "train")
            fidelity[f"{name}/{split}"] = row
            print(name, split, {k: round(v, 3) for k, v in row.items()}, flush=True)
    bound = {"tiny_sd": binding(sd, scenes_scorer, args.two_shape_prompts, args.seed, args.guidance)}
    unclip_file = RESULTS / "unclip_quality.json"
    unclip = json.loads(unclip_file.read_text())["binding"] if unclip_file.exists() else {}
    sweep = {}
    for w in args.sweep:
        for threshold in (None, args.threshold):
            row = one_shape(sd, shapes_scorer, "train", args.seed, w, threshold, every=2)
            sweep[f"w={w:g}/{'dynamic' if threshold else 'plain'}"] = row
            print("sweep", w, threshold, {k: round(v, 3) for k, v in row.items()}, flush=True)
    record = {**head, "fidelity": fidelity, "binding": bound, "unclip_binding": unclip, "sweep": sweep,
              "real_at_limits": real_at_limits(2), "seconds": time.perf_counter() - started}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tiny_sd_quality.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = report(record)
    (RESULTS / "tiny_sd_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report(r: dict) -> list[str]:
    pct = "{:.1%}".format
    main_row = r["fidelity"]["tiny_sd/train"]
    lines = [f"# tiny_sd: fidelity, binding and the guidance sweep ({r['date']})", "",
             f"`.venv/bin/python bench/tiny_sd_quality.py`, torch {r['torch']}, {r['threads']} threads, "
             f"{r['machine']} CPU; {r['seconds'] / 60:.1f} min in all. DDIM {r['steps']} steps, guidance w = "
             f"{r['guidance']:g}, one picture per prompt (seed {r['seed']}). {r['note']}", "",
             "## One-shape prompts (`shapes_scorer`, pictures read at its 32x32)", "",
             "| model | prompts | all four right | shape | colour | size | position | diversity (RMS pixels) | n |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, row in r["fidelity"].items():
        name, split = key.split("/")
        model = "tiny_sd (64x64, latent)" if name == "tiny_sd" else "shapes_text (32x32, pixels; chapter 06)"
        cells = [model, "training pairs" if split == "train" else "held-out pairs",
                 *(pct(row[a]) for a in ("all", "shape", "colour", "size", "position")),
                 f"{row['diversity']:.3f}" if "diversity" in row else "-", str(row["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    met = main_row["all"] >= 0.95
    lines += ["", f"Bar (issue 17): tiny_sd, training pairs, all four right >= 95 %: **{'met' if met else 'missed'}** "
              f"({pct(main_row['all'])}).", "",
              "## Two-shape prompts: attribute binding (`scenes_scorer`)", "",
              "All right: both objects' shape and colour and the relation (its axis and order) read as the caption "
              "says; the same prompts for both systems.", "",
              "| system | prompts | all right | relation | shape A | colour A | shape B | colour B | n |",
              "|---|---|---|---|---|---|---|---|---|"]
    fields = ("all", "axis", "shape_a", "colour_a", "shape_b", "colour_b")
    rows = [("tiny_sd (cross-attention over the tokens)", split, row) for split, row in r["binding"]["tiny_sd"].items()]
    rows += [("unclip (one pooled embedding, diffusion prior; unclip_quality.json)", key.split("/")[0], row)
             for key, row in r["unclip_binding"].items() if key.endswith("/diffusion")]
    for system, split, row in rows:
        lines.append(f"| {system} | {split.replace('_', '-')} pairs | " + " | ".join(pct(row[f]) for f in fields)
                     + f" | {row['n']} |")
    lines += ["", f"## Guidance sweep, with and without dynamic thresholding (percentile {r['threshold']:g})", "",
              f"Every other training one-shape prompt; 'at the limits' is the share of colour values at 0 or 255 "
              f"(real pictures of the same captions: {pct(r['real_at_limits'])}).", "",
              "| w | thresholding | all four right | at the limits | n |", "|---|---|---|---|---|"]
    for key, row in r["sweep"].items():
        w, kind = key.split("/")
        lines.append(f"| {w[2:]} | {kind} | {pct(row['all'])} | {pct(row['at_limits'])} | {row['n']} |")
    return lines


if __name__ == "__main__":
    main()
