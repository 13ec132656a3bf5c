"""The shipped ``mnist`` against the one it replaced, at the sampling costs the course uses (issue 15, chapter 09).

Issue 15's bars for the shipped unconditional model, judged by the course classifier: with the default sampler
at <= 50 network evaluations (NFE), a recognised share (confidence >= 0.9) within 3 points of real test digits;
at 10 evaluations, within 8 points. This script measures both models the same way:

- ``before``: the ``mnist`` weights of commit ``BEFORE`` (the 20,000-step noise predictor trained on the bundled
  20,000 digits with the plain loss, shipped until chapter 09 replaced it), read from git;
- ``after``: the shipped ``mnist``, or with ``--candidate runs/NAME`` the EMA weights of a training run's
  checkpoint (to judge a run before publishing it, or part way through);

each with every (sampler, steps) of ``--points`` (default: DDIM 10 and 50, DPM-Solver++(2M) 10 and 20), ``--num``
samples from each seed of ``--seeds``, the same starting noise for both models: the recognised share, the classes
present and FID on the classifier's features against the 2,000 bundled test digits, each the mean over the seeds
(the per-seed values are kept). Real test digits' recognised share is the line to reach.

    .venv/bin/python bench/better_mnist.py                                     # shipped vs before
    .venv/bin/python bench/better_mnist.py --candidate runs/mnist_candidate --seeds 0 --models after

Writes bench/results/better_mnist.json and .md, or with ``--candidate`` only prints (a run is not a result).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.metrics import (
    class_counts,
    class_probabilities,
    features,
    frechet_distance,
    recognised_fraction,
)
from diffusion_lab.pipelines import load_pipeline
from diffusion_lab.pipelines.samplers import get_sampler
from diffusion_lab.pretrained import load_pretrained, read_manifest

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
BEFORE = "8c07fe785076405fad0ab321aebc950c6fd9fc90"  # the last commit that shipped the 20,000-digit, plain-loss mnist
POINTS = ("ddim:10", "ddim:50", "dpmpp2m:10", "dpmpp2m:20")


def before_weights() -> dict[str, torch.Tensor]:
    """The replaced model's weights, from git."""
    blob = subprocess.run(["git", "show", f"{BEFORE}:data/checkpoints/mnist.safetensors"], cwd=REPO,
                          capture_output=True, check=True).stdout
    return load_safetensors(blob)


def candidate_weights(run: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The EMA weights in ``run``/checkpoint.pt and the step they were saved at."""
    saved = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    return saved["ema"]["model"], int(saved["step"])


def measure(pipeline, points: list[tuple[str, int]], num: int, seeds: list[int], judge: torch.nn.Module,
            test_features: torch.Tensor) -> list[dict]:
    rows = []
    for sampler, steps in points:
        per_seed = []
        for seed in seeds:
            start = time.perf_counter()
            images = pipeline(num, sampler=sampler, steps=steps, seed=seed).cpu()
            seconds = time.perf_counter() - start
            probs = class_probabilities(judge, images)
            per_seed.append({"seed": seed, "recognised": recognised_fraction(probs, 0.9),
                             "fid": frechet_distance(features(judge, images), test_features),
                             "classes_present": int((class_counts(probs) > 0).sum()),
                             "ms_per_sample": 1000 * seconds / num})
        mean = {k: sum(r[k] for r in per_seed) / len(per_seed) for k in ("recognised", "fid", "ms_per_sample")}
        rows.append({"sampler": sampler, "steps": steps, "nfe": get_sampler(sampler).nfe(steps), **mean,
                     "classes_present": min(r["classes_present"] for r in per_seed), "per_seed": per_seed})
        print(f"  {sampler}-{steps} ({rows[-1]['nfe']} NFE): recognised {mean['recognised']:.1%} "
              f"({', '.join(format(r['recognised'], '.1%') for r in per_seed)}), FID {mean['fid']:.1f}, "
              f"{rows[-1]['classes_present']} classes", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["before", "after"], choices=["before", "after"])
    parser.add_argument("--candidate", type=Path, help="judge this run's EMA weights as 'after', print only")
    parser.add_argument("--points", nargs="+", default=list(POINTS), help="sampler:steps, e.g. ddim:50 heun:5")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    points = [(p.split(":")[0], int(p.split(":")[1])) for p in args.points]
    judge = load_pretrained("mnist_classifier").model
    test_digits, _ = mnist_tensors("test")
    test_features = features(judge, test_digits)
    real = recognised_fraction(class_probabilities(judge, test_digits), 0.9)
    print(f"real test digits: recognised {real:.1%}")
    pipeline = load_pipeline("mnist", device="cpu")
    record = {"date": dt.date.today().isoformat(), "num": args.num, "seeds": args.seeds, "test_digits": real,
              "hardware": f"CPU {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
              "models": {}}
    for name in args.models:
        if name == "before":
            pipeline.model.load_state_dict(before_weights())
            label = f"before ({BEFORE[:7]})"
        elif args.candidate is not None:
            weights, step = candidate_weights(args.candidate)
            pipeline.model.load_state_dict(weights)
            label = f"candidate {args.candidate} at step {step:,}"
        else:
            pipeline = load_pipeline("mnist", device="cpu")
            label = f"after (shipped: {read_manifest()['mnist']['command']})"
        print(label, flush=True)
        record["models"][name] = {"label": label, "rows": measure(pipeline, points, args.num, args.seeds, judge,
                                                                  test_features)}
    if args.candidate is None:
        (RESULTS / "better_mnist.json").write_text(json.dumps(record, indent=2) + "\n")
        write_markdown(record, " ".join(sys.argv[1:]))


def write_markdown(record: dict, options: str) -> None:
    real = record["test_digits"]
    lines = ["# The shipped mnist against the one it replaced", "",
             f"`python bench/better_mnist.py{' ' + options if options else ''}` ({record['date']}, {record['hardware']}). "
             f"{record['num']} samples per seed, seeds {', '.join(map(str, record['seeds']))}; the same starting noise "
             f"for both models; means over the seeds (per seed in the JSON). Recognised: the course classifier's "
             f"confidence >= 0.9; real test digits: {real:.1%}. FID on the classifier's features against the 2,000 "
             f"bundled test digits.", "",
             "| model | sampler | NFE | recognised | gap to real digits | FID | classes | ms per sample |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in record["models"].values():
        for r in entry["rows"]:
            lines.append(f"| {entry['label']} | {r['sampler']}, {r['steps']} steps | {r['nfe']} | "
                         f"{r['recognised']:.1%} | {100 * (real - r['recognised']):.1f} points | {r['fid']:.1f} | "
                         f"{r['classes_present']} | {r['ms_per_sample']:.0f} |")
    after = record["models"].get("after")
    if after is not None:
        default = load_pipeline("mnist", device="cpu").default_sampler
        at_50 = max((r for r in after["rows"] if r["sampler"] == default and r["nfe"] <= 50),
                    key=lambda r: r["recognised"], default=None)
        at_10 = next((r for r in after["rows"] if r["sampler"] == default and r["nfe"] == 10), None)
        lines += ["", "| bar (issue 15), default sampler " + default + " | measured | met |", "|---|---|---|"]
        if at_50 is not None:
            gap = 100 * (real - at_50["recognised"])
            lines.append(f"| <= 50 NFE: within 3 points of real digits | {at_50['recognised']:.1%} at {at_50['nfe']} "
                         f"NFE, {gap:.1f} points | {'yes' if gap <= 3 else 'NO'} |")
        if at_10 is not None:
            gap = 100 * (real - at_10["recognised"])
            lines.append(f"| 10 NFE: within 8 points | {at_10['recognised']:.1%}, {gap:.1f} points | "
                         f"{'yes' if gap <= 8 else 'NO'} |")
    (RESULTS / "better_mnist.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
