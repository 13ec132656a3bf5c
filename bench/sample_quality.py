"""Sample quality of the shipped MNIST models, judged by the shipped classifier (issue 3's bars, chapter 05).

    .venv/bin/python bench/sample_quality.py                 # 1,000 samples per row, seeds 0, 1, 2
    .venv/bin/python bench/sample_quality.py --num 500 --ddpm-num 200 --etas 0.5 1   # seeds and eta compared

The .md records the command that wrote it. A record made before ``--seeds`` existed used seed 0 alone;
``--seeds 0`` reproduces it.

On 2 CPU cores (2 threads) one DDIM-50 sample takes about 0.13 s, so DDPM-1000 costs about 2.7 s a sample
(45 min for 1,000; measured 2026-11-21): ``--ddpm-num`` samples fewer for DDPM-1000 and compares it with the first as many DDIM-50
samples (same count, so the FIDs compare too); ``--skip-ddpm`` leaves that comparison out.

Measures, on the same number of samples each:
- unconditional ``mnist``, DDIM 50 steps (eta = 0), once per seed of ``--seeds``: the share recognised with
  confidence >= 0.9 (bar: >= 90 %, judged on the mean over the seeds, since one seed's 500 samples can
  land a point or two either side), and whether every class appears;
- optionally (``--etas``) the same with eta > 0, DDIM's knob that adds fresh noise at each step (eta = 1
  is DDPM's amount), to see how much stochastic steps help this model;
- the same model with DDPM's 1,000 steps, first seed only: quality and time, so that DDIM-50 can be compared with it
  (bar: DDIM-50's recognised share within 5 % of DDPM-1000's, at >= 15x less time);
- class-conditional ``mnist_cond`` without guidance, DDIM 50 steps, first seed, classes 0..9 in equal numbers:
  the share classified as the requested class (bar: >= 90 %).
FID uses the classifier's features against the 2,000 bundled test digits (lower is better; compare FIDs
only at equal sample counts). Writes bench/results/sample_quality.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from diffusion_lab.config import pick_device
from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.metrics import (
    class_accuracy,
    class_counts,
    class_probabilities,
    fid,
    recognised_fraction,
)
from diffusion_lab.pretrained import load_pretrained
from diffusion_lab.sampling import DDIMScheduler, DDPMScheduler, sample

RESULTS = Path(__file__).resolve().parent / "results"


def generate(name: str, sampler: str, steps: int, num: int, seed: int, labels: torch.Tensor | None,
             device: torch.device, batch: int = 250, eta: float = 0.0) -> tuple[torch.Tensor, float]:
    """``num`` samples (num, 1, 28, 28) on the CPU, and the seconds it took, sampling ``batch`` at a time;
    ``eta`` is DDIM's (ignored by DDPM)."""
    pre = load_pretrained(name, device=device)
    scheduler = DDPMScheduler(pre.schedule) if sampler == "ddpm" else DDIMScheduler(pre.schedule, eta=eta)
    scheduler.set_timesteps(steps)
    out = []
    start = time.perf_counter()
    for i, first in enumerate(range(0, num, batch)):
        n = min(batch, num - first)
        if labels is None:
            fn = pre.model
        else:
            y = labels[first:first + n].to(device)
            fn = lambda x, t, y=y: pre.model(x, t, y)  # noqa: E731
        gen = torch.Generator().manual_seed(seed + i)
        out.append(sample(fn, scheduler, (n, 1, 28, 28), generator=gen, device=device).cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return torch.cat(out), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=1000, help="samples per sampler (default 1000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of the unconditional DDIM rows, judged on their mean; the first also seeds "
                             "DDPM-1000 and the conditional row (default: 0 1 2)")
    parser.add_argument("--etas", type=float, nargs="*", default=[],
                        help="also sample unconditional DDIM-50 with each of these eta in (0, 1], same seeds")
    parser.add_argument("--ddpm-num", type=int, help="samples for the slow DDPM-1000 row (default: --num)")
    parser.add_argument("--skip-ddpm", action="store_true", help="skip the slow DDPM-1000 comparison")
    args = parser.parse_args()
    ddpm_num = args.num if args.ddpm_num is None else args.ddpm_num
    if not 0 < ddpm_num <= args.num:
        parser.error(f"--ddpm-num must lie in 1..--num ({args.num}), got {ddpm_num}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must differ from each other, got {args.seeds}")
    if any(not 0 < eta <= 1 for eta in args.etas):
        parser.error(f"--etas must lie in (0, 1] (eta = 0 is the main DDIM row), got {args.etas}")
    seed = args.seeds[0]
    device = pick_device()
    clf = load_pretrained("mnist_classifier", device=device).model
    reference, _ = mnist_tensors("test")

    def judge(images: torch.Tensor, seconds: float, wanted: torch.Tensor | None = None) -> dict:
        probs = class_probabilities(clf, images)
        row = {"recognised": recognised_fraction(probs, 0.9), "fid": fid(clf, images, reference),
               "classes_present": int((class_counts(probs) > 0).sum()),
               "class_counts": class_counts(probs).tolist(), "seconds": seconds,
               "ms_per_image": 1000 * seconds / len(images)}
        if wanted is not None:
            row["class_accuracy"] = class_accuracy(probs, wanted)
        return row

    def over_seeds(eta: float) -> tuple[dict, torch.Tensor]:
        """DDIM-50 once per seed: the mean of each measure, each seed's row, and the first seed's images."""
        per_seed, first = [], None
        for s in args.seeds:
            images, seconds = generate("mnist", "ddim", 50, args.num, s, None, device, eta=eta)
            per_seed.append(judge(images, seconds))
            first = images if first is None else first
            print(f"ddim50 eta {eta} seed {s}", {k: v for k, v in per_seed[-1].items() if k != "class_counts"},
                  flush=True)
        mean = {k: sum(r[k] for r in per_seed) / len(per_seed)
                for k in ("recognised", "fid", "seconds", "ms_per_image")}
        mean["classes_present"] = min(r["classes_present"] for r in per_seed)
        mean["class_counts"] = [sum(c) for c in zip(*(r["class_counts"] for r in per_seed))]
        return {**mean, "eta": eta, "per_seed": per_seed}, first

    rows = {}
    rows["ddim50"], ddim_images = over_seeds(0.0)
    for eta in args.etas:
        rows[f"ddim50_eta{eta:g}"], _ = over_seeds(eta)
    if not args.skip_ddpm:
        images, seconds = generate("mnist", "ddpm", 1000, ddpm_num, seed, None, device)
        rows["ddpm1000"] = judge(images, seconds)
        if ddpm_num < args.num:  # DDIM-50 on as many samples, for a like-for-like comparison
            rows["ddim50_subset"] = judge(ddim_images[:ddpm_num], rows["ddim50"]["seconds"] * ddpm_num / args.num)
        elif len(args.seeds) > 1:  # compare DDPM-1000 with DDIM-50 on the same seed, not with the mean
            rows["ddim50_subset"] = rows["ddim50"]["per_seed"][0]
    for key, row in rows.items():
        print(key, {k: v for k, v in row.items() if k not in ("class_counts", "per_seed")}, flush=True)
    wanted = torch.arange(args.num) % 10
    images, seconds = generate("mnist_cond", "ddim", 50, args.num, seed, wanted, device)
    rows["cond_ddim50"] = judge(images, seconds, wanted)
    print("cond_ddim50", {k: v for k, v in rows["cond_ddim50"].items() if k != "class_counts"}, flush=True)

    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    u, c = rows["ddim50"], rows["cond_ddim50"]
    seeds_note = "" if len(args.seeds) == 1 else \
        f" (mean of {len(args.seeds)} seeds: " + ", ".join(f"{r['recognised']:.1%}" for r in u["per_seed"]) + ")"
    bars = [("unconditional DDIM-50 recognised >= 90 %", f"{u['recognised']:.1%}{seeds_note}", u["recognised"] >= 0.9),
            ("every class present (DDIM-50)", f"{u['classes_present']} of 10" + (" (fewest on any seed)" if seeds_note else ""),
             u["classes_present"] == 10),
            ("conditional, no guidance: requested class >= 90 %", f"{c['class_accuracy']:.1%}",
             c["class_accuracy"] >= 0.9)]
    if "ddpm1000" in rows:
        d, s = rows["ddpm1000"], rows.get("ddim50_subset", u)
        rel = (d["recognised"] - s["recognised"]) / d["recognised"]
        speed = d["ms_per_image"] / u["ms_per_image"]
        bars += [(f"DDIM-50 recognised within 5 % of DDPM-1000 ({ddpm_num} samples each, seed {seed})",
                  f"{s['recognised']:.1%} vs {d['recognised']:.1%} ({-rel:+.1%} relative)", rel <= 0.05),
                 ("DDIM-50 at >= 15x less time than DDPM-1000", f"{speed:.1f}x", speed >= 15)]
    lines = [f"# Sample quality of the shipped MNIST models ({dt.date.today().isoformat()})", "",
             f"Measured by `.venv/bin/python bench/sample_quality.py {' '.join(sys.argv[1:])}` on {hardware}, "
             f"torch {torch.__version__}. {args.num} samples per row unless the row says otherwise. Rows "
             f"marked 'mean' average seeds {', '.join(map(str, args.seeds))} (per-seed values below); the "
             f"others use seed {seed}. The shipped classifier judges the samples; FID against the 2,000 "
             f"bundled test digits (classifier features; compare FIDs only between rows of equal sample "
             f"count). DDIM is `DDIMScheduler`'s default: eta = 0, x_0 clipped, eps re-derived from the "
             f"clipped x_0.", "",
             "| model, sampler | samples | recognised (conf >= 0.9) | FID | classes present | requested class "
             "| ms per image |", "|---|---|---|---|---|---|---|"]
    many = len(args.seeds) > 1
    names = {"ddim50": "mnist, DDIM 50 steps" + (", mean" if many else ""), "ddpm1000": "mnist, DDPM 1000 steps",
             "ddim50_subset": f"mnist, DDIM 50 steps, seed {seed}" + (", its first samples" if ddpm_num < args.num else ""),
             "cond_ddim50": "mnist_cond, DDIM 50 steps, no guidance"}
    names.update({f"ddim50_eta{eta:g}": f"mnist, DDIM 50 steps, eta = {eta:g}" + (", mean" if many else "")
                  for eta in args.etas})
    counts = {"ddpm1000": ddpm_num, "ddim50_subset": ddpm_num}
    for key, r in rows.items():
        acc = f"{r['class_accuracy']:.1%}" if "class_accuracy" in r else "–"
        lines.append(f"| {names[key]} | {counts.get(key, args.num)} | {r['recognised']:.1%} | {r['fid']:.2f} | "
                     f"{r['classes_present']} | {acc} | {r['ms_per_image']:.1f} |")
    lines += ["", "| bar (issue 3) | measured | met |", "|---|---|---|"]
    lines += [f"| {b} | {m} | {'yes' if ok else 'NO'} |" for b, m, ok in bars]
    if many:
        lines += ["", "Each seed (DDIM 50 steps, recognised / FID):", ""]
        lines += [f"- {names[key]}: " + "; ".join(f"seed {s}: {r['recognised']:.1%} / {r['fid']:.2f}"
                                                  for s, r in zip(args.seeds, rows[key]["per_seed"]))
                  for key in rows if "per_seed" in rows[key]]
    lines += ["", "Classes of the unconditional DDIM-50 samples (0..9)" + (", all seeds" if many else "") + ": "
              + ", ".join(map(str, u["class_counts"]))]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sample_quality.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "sample_quality.json").write_text(json.dumps({"num": args.num, "ddpm_num": ddpm_num, "seeds": args.seeds, "etas": args.etas,
                                                             "hardware": hardware,
                                                             "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
