"""Guidance and text conditioning, measured on the shipped models (issue 4's bars, chapters 06-07).

    .venv/bin/python bench/guidance_quality.py                       # what was recorded (see the results file)
    .venv/bin/python bench/guidance_quality.py --num 100 --only mnist_cfg

Three experiments, every sample drawn with DDIM 50 steps (eta 0) unless said otherwise:
- ``mnist_cfg``: classifier-free guidance on ``mnist_cond`` for w in --scales. Classes 0..9 are asked
  for in equal numbers; fidelity = share classified as the requested class by the shipped judge
  (bar: >= 97 % at some w <= 3, rising with w); diversity = mean pairwise distance between samples of
  the same class in the judge's 128-d feature space, averaged over the classes (falls with w).
- ``mnist_classifier``: classifier guidance of the unconditional ``mnist`` by ``mnist_noisy_classifier``
  for s in --classifier-scales (bar: >= 80 % classified as the requested class, chance is 10 %), with
  DDPM 50 steps: deterministic DDIM drifts off the digits once s > 1 (measured: 43 % at s = 1, 10 % at
  s = 2 on 30 samples), while DDPM's fresh noise at every step keeps the samples on course.
- ``shapes``: ``shapes_text`` with prompts seen in training and held-out prompts (attribute
  combinations never trained on), for w in --shapes-scales; fidelity = share of samples whose four
  attributes the shipped ``shapes_scorer`` reads back as asked (bar: >= 90 % at the best w on seen
  prompts; held-out reported as measured); diversity = mean RMS pixel distance between samples of
  one prompt.
Writes bench/results/guidance_quality.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import torch

from diffusion_lab.config import pick_device
from diffusion_lab.data.shapes import combinations
from diffusion_lab.judges.metrics import (
    attribute_accuracy,
    class_accuracy,
    class_probabilities,
    diversity,
    features,
)
from diffusion_lab.pipelines import generate
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"


def per_group_diversity(images: torch.Tensor, groups: torch.Tensor, features_fn=None) -> float:
    """Mean over groups (e.g. classes, prompts) of the diversity among that group's samples."""
    values = [diversity(images[groups == g], features_fn) for g in groups.unique() if (groups == g).sum() >= 2]
    return sum(values) / len(values)


def mnist_cfg(num: int, scales: list[float], seed: int, device: torch.device) -> list[dict]:
    pre = load_pretrained("mnist_cond", device=device)
    judge = load_pretrained("mnist_classifier", device=device).model
    per_class = max(2, num // 10)
    rows = []
    for w in scales:
        start = time.perf_counter()
        images = torch.cat([generate(pre, per_class, class_label=c, guidance_scale=w, seed=seed + c).cpu()
                            for c in range(10)])
        seconds = time.perf_counter() - start
        wanted = torch.arange(10).repeat_interleave(per_class)
        acc = class_accuracy(class_probabilities(judge, images), wanted)
        div = per_group_diversity(images, wanted, lambda x: features(judge, x))
        rows.append({"w": w, "accuracy": acc, "diversity": div, "num": len(images), "seconds": seconds})
        print("mnist_cfg", rows[-1], flush=True)
    return rows


def mnist_classifier(num: int, scales: list[float], seed: int, device: torch.device, sampler: str = "ddpm"
                     ) -> list[dict]:
    pre = load_pretrained("mnist", device=device)
    guide = load_pretrained("mnist_noisy_classifier", device=device).model
    judge = load_pretrained("mnist_classifier", device=device).model
    per_class = max(2, num // 10)
    rows = []
    for s in scales:
        start = time.perf_counter()
        images = torch.cat([generate(pre, per_class, sampler=sampler, seed=seed + c,
                                     **({"class_label": c, "classifier": guide, "classifier_scale": s} if s > 0 else {})
                                     ).cpu() for c in range(10)])
        seconds = time.perf_counter() - start
        wanted = torch.arange(10).repeat_interleave(per_class)
        acc = class_accuracy(class_probabilities(judge, images), wanted)
        div = per_group_diversity(images, wanted, lambda x: features(judge, x))
        rows.append({"scale": s, "sampler": f"{sampler}-50", "accuracy": acc, "diversity": div, "num": len(images), "seconds": seconds})
        print("mnist_classifier", rows[-1], flush=True)
    return rows


def shapes(num_prompts: int, per_prompt: int, scales: list[float], seed: int, device: torch.device) -> list[dict]:
    pre = load_pretrained("shapes_text", device=device)
    scorer = load_pretrained("shapes_scorer", device=device).model
    rng = torch.Generator().manual_seed(seed)
    rows = []
    for split in ("train", "held_out"):
        pool = combinations(split)
        chosen = [pool[i] for i in torch.randperm(len(pool), generator=rng)[:num_prompts].tolist()]
        prompts = [a.caption() for a in chosen for _ in range(per_prompt)]
        wanted = torch.tensor([a.indices() for a in chosen for _ in range(per_prompt)])
        groups = torch.arange(len(chosen)).repeat_interleave(per_prompt)
        for w in scales:
            start = time.perf_counter()
            images = torch.cat([generate(pre, len(prompts[i:i + 100]), prompt=prompts[i:i + 100], guidance_scale=w,
                                         seed=seed + i).cpu() for i in range(0, len(prompts), 100)])
            seconds = time.perf_counter() - start
            acc = attribute_accuracy(scorer, images, wanted)
            rows.append({"split": split, "w": w, **acc, "diversity": per_group_diversity(images, groups),
                         "prompts": len(chosen), "num": len(images), "seconds": seconds})
            print("shapes", rows[-1], flush=True)
    return rows


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=200, help="MNIST samples per scale, equal per class (default 200)")
    parser.add_argument("--scales", type=floats, default=[0, 1, 2, 3, 5, 8], help="CFG scales w for mnist_cond")
    parser.add_argument("--classifier-scales", type=floats, default=[0, 1, 2, 4, 8])
    parser.add_argument("--classifier-sampler", choices=["ddpm", "ddim"], default="ddpm")
    parser.add_argument("--shapes-scales", type=floats, default=[1, 2, 3, 5])
    parser.add_argument("--prompts", type=int, default=30, help="shapes prompts per split (default 30)")
    parser.add_argument("--per-prompt", type=int, default=4, help="samples per shapes prompt (default 4)")
    parser.add_argument("--only", choices=["mnist_cfg", "mnist_classifier", "shapes"], action="append")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = pick_device()
    only = args.only or ["mnist_cfg", "mnist_classifier", "shapes"]
    out = RESULTS / "guidance_quality.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    runners = {"mnist_cfg": lambda: mnist_cfg(args.num, args.scales, args.seed, device),
               "mnist_classifier": lambda: mnist_classifier(args.num, args.classifier_scales, args.seed, device,
                                                     args.classifier_sampler),
               "shapes": lambda: shapes(args.prompts, args.per_prompt, args.shapes_scales, args.seed, device)}
    for name in only:
        results[name] = {"rows": runners[name](), "date": dt.date.today().isoformat(), "hardware": hardware,
                         "torch": torch.__version__, "args": {k: v for k, v in vars(args).items() if k != "only"}}
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "guidance_quality.md").write_text(report(results))
    print(report(results))


def report(results: dict) -> str:
    lines = ["# Guidance and text conditioning on the shipped models", "",
             "Written by `bench/guidance_quality.py` (see its docstring for what each number means). "
             "DDIM 50 steps, eta 0, except where a sampler column says otherwise.", ""]
    bars = []
    if "mnist_cfg" in results:
        r = results["mnist_cfg"]
        lines += [f"## Classifier-free guidance, mnist_cond ({r['date']}, {r['hardware']})", "",
                  "| w | requested class | diversity (judge features) | samples | seconds |", "|---|---|---|---|---|"]
        lines += [f"| {x['w']:g} | {x['accuracy']:.1%} | {x['diversity']:.2f} | {x['num']} | {x['seconds']:.0f} |"
                  for x in r["rows"]]
        best = max((x for x in r["rows"] if x["w"] <= 3), key=lambda x: x["accuracy"], default=None)
        if best is not None:
            bars.append(("mnist_cond + CFG, w <= 3: requested class >= 97 %",
                         f"{best['accuracy']:.1%} at w = {best['w']:g}", best["accuracy"] >= 0.97))
        lines.append("")
    if "mnist_classifier" in results:
        r = results["mnist_classifier"]
        lines += [f"## Classifier guidance, mnist + mnist_noisy_classifier ({r['date']}, {r['hardware']})", "",
                  "| scale s | sampler | requested class | diversity (judge features) | samples | seconds |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {x['scale']:g} | {x['sampler']} | {x['accuracy']:.1%} | {x['diversity']:.2f} | {x['num']} | {x['seconds']:.0f} |"
                  for x in r["rows"]]
        best = max(r["rows"], key=lambda x: x["accuracy"])
        bars.append(("classifier guidance on mnist: requested class >= 80 %",
                     f"{best['accuracy']:.1%} at s = {best['scale']:g}", best["accuracy"] >= 0.8))
        lines.append("")
    if "shapes" in results:
        r = results["shapes"]
        lines += [f"## Text to image, shapes_text judged by shapes_scorer ({r['date']}, {r['hardware']})", "",
                  "| prompts | w | all four right | shape | colour | size | position | diversity (RMS pixels) | "
                  "samples | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {x['split']} | {x['w']:g} | {x['all']:.1%} | {x['shape']:.1%} | {x['colour']:.1%} | "
                  f"{x['size']:.1%} | {x['position']:.1%} | {x['diversity']:.3f} | {x['num']} | {x['seconds']:.0f} |"
                  for x in r["rows"]]
        seen = [x for x in r["rows"] if x["split"] == "train"]
        best = max(seen, key=lambda x: x["all"])
        held = next(x for x in r["rows"] if x["split"] == "held_out" and x["w"] == best["w"])
        bars.append(("shapes, seen prompts, best w: all attributes right >= 90 %",
                     f"{best['all']:.1%} at w = {best['w']:g}", best["all"] >= 0.9))
        bars.append(("shapes, held-out combinations, same w (reported)", f"{held['all']:.1%}", None))
        lines.append("")
    lines += ["## Bars (issue 4)", "", "| bar | measured | met |", "|---|---|---|"]
    lines += [f"| {b} | {m} | {'–' if ok is None else 'yes' if ok else 'NO'} |" for b, m, ok in bars]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
