"""Sample quality of the shipped MNIST models, judged by the shipped classifier (issue 3's bars, chapter 05).

    .venv/bin/python bench/sample_quality.py                 # 1,000 samples per row
    .venv/bin/python bench/sample_quality.py --num 500 --ddpm-num 200   # what was recorded (see the .md)

On 2 CPU cores one DDIM-50 sample takes about 0.22 s, so DDPM-1000 costs about 4.5 s a sample (75 min
for 1,000): ``--ddpm-num`` samples fewer for DDPM-1000 and compares it with the first as many DDIM-50
samples (same count, so the FIDs compare too); ``--skip-ddpm`` leaves that comparison out.

Measures, on the same number of samples each:
- unconditional ``mnist``, DDIM 50 steps: the share recognised with confidence >= 0.9 (bar: >= 90 %), and
  whether every class appears;
- the same model with DDPM's 1,000 steps: quality and time, so that DDIM-50 can be compared with it
  (bar: DDIM-50's recognised share within 5 % of DDPM-1000's, at >= 15x less time);
- class-conditional ``mnist_cond`` without guidance, DDIM 50 steps, the classes 0..9 in equal numbers:
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
from diffusion_lab.metrics import class_accuracy, class_counts, class_probabilities, fid, recognised_fraction
from diffusion_lab.pretrained import load_pretrained
from diffusion_lab.sampling import DDIMScheduler, DDPMScheduler, sample

RESULTS = Path(__file__).resolve().parent / "results"


def generate(name: str, sampler: str, steps: int, num: int, seed: int, labels: torch.Tensor | None,
             device: torch.device, batch: int = 250) -> tuple[torch.Tensor, float]:
    """``num`` samples (num, 1, 28, 28) on the CPU, and the seconds it took, sampling ``batch`` at a time."""
    pre = load_pretrained(name, device=device)
    scheduler = DDPMScheduler(pre.schedule) if sampler == "ddpm" else DDIMScheduler(pre.schedule)
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ddpm-num", type=int, help="samples for the slow DDPM-1000 row (default: --num)")
    parser.add_argument("--skip-ddpm", action="store_true", help="skip the slow DDPM-1000 comparison")
    args = parser.parse_args()
    ddpm_num = args.num if args.ddpm_num is None else args.ddpm_num
    if not 0 < ddpm_num <= args.num:
        parser.error(f"--ddpm-num must lie in 1..--num ({args.num}), got {ddpm_num}")
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

    rows = {}
    ddim_images, seconds = generate("mnist", "ddim", 50, args.num, args.seed, None, device)
    rows["ddim50"] = judge(ddim_images, seconds)
    if not args.skip_ddpm:
        images, seconds = generate("mnist", "ddpm", 1000, ddpm_num, args.seed, None, device)
        rows["ddpm1000"] = judge(images, seconds)
        if ddpm_num < args.num:  # DDIM-50 on as many samples, for a like-for-like comparison
            rows["ddim50_subset"] = judge(ddim_images[:ddpm_num], rows["ddim50"]["seconds"] * ddpm_num / args.num)
    for key, row in rows.items():
        print(key, {k: v for k, v in row.items() if k != "class_counts"}, flush=True)
    wanted = torch.arange(args.num) % 10
    images, seconds = generate("mnist_cond", "ddim", 50, args.num, args.seed, wanted, device)
    rows["cond_ddim50"] = judge(images, seconds, wanted)
    print("cond_ddim50", {k: v for k, v in rows["cond_ddim50"].items() if k != "class_counts"}, flush=True)

    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    u, c = rows["ddim50"], rows["cond_ddim50"]
    bars = [("unconditional DDIM-50 recognised >= 90 %", f"{u['recognised']:.1%}", u["recognised"] >= 0.9),
            ("every class present (DDIM-50)", f"{u['classes_present']} of 10", u["classes_present"] == 10),
            ("conditional, no guidance: requested class >= 90 %", f"{c['class_accuracy']:.1%}",
             c["class_accuracy"] >= 0.9)]
    if "ddpm1000" in rows:
        d, s = rows["ddpm1000"], rows.get("ddim50_subset", u)
        rel = (d["recognised"] - s["recognised"]) / d["recognised"]
        speed = d["ms_per_image"] / u["ms_per_image"]
        bars += [(f"DDIM-50 recognised within 5 % of DDPM-1000 ({ddpm_num} samples each)",
                  f"{s['recognised']:.1%} vs {d['recognised']:.1%} ({-rel:+.1%} relative)", rel <= 0.05),
                 ("DDIM-50 at >= 15x less time than DDPM-1000", f"{speed:.1f}x", speed >= 15)]
    lines = [f"# Sample quality of the shipped MNIST models ({dt.date.today().isoformat()})", "",
             f"Measured by `.venv/bin/python bench/sample_quality.py {' '.join(sys.argv[1:])}` on {hardware}, "
             f"torch {torch.__version__}. {args.num} samples per row unless the row says otherwise, seed "
             f"{args.seed}; the shipped classifier judges them; FID against the 2,000 bundled test digits "
             f"(classifier features; compare FIDs only between rows of equal sample count). DDIM is "
             f"`DDIMScheduler`'s default: eta = 0, x_0 clipped, eps re-derived from the clipped x_0.", "",
             "| model, sampler | samples | recognised (conf >= 0.9) | FID | classes present | requested class "
             "| ms per image |", "|---|---|---|---|---|---|---|"]
    names = {"ddim50": "mnist, DDIM 50 steps", "ddpm1000": "mnist, DDPM 1000 steps",
             "ddim50_subset": "mnist, DDIM 50 steps, its first samples",
             "cond_ddim50": "mnist_cond, DDIM 50 steps, no guidance"}
    counts = {"ddpm1000": ddpm_num, "ddim50_subset": ddpm_num}
    for key, r in rows.items():
        acc = f"{r['class_accuracy']:.1%}" if "class_accuracy" in r else "–"
        lines.append(f"| {names[key]} | {counts.get(key, args.num)} | {r['recognised']:.1%} | {r['fid']:.2f} | "
                     f"{r['classes_present']} | {acc} | {r['ms_per_image']:.1f} |")
    lines += ["", "| bar (issue 3) | measured | met |", "|---|---|---|"]
    lines += [f"| {b} | {m} | {'yes' if ok else 'NO'} |" for b, m, ok in bars]
    lines += ["", "Classes of the unconditional DDIM-50 samples (0..9): " + ", ".join(map(str, u["class_counts"]))]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sample_quality.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "sample_quality.json").write_text(json.dumps({"num": args.num, "ddpm_num": ddpm_num, "seed": args.seed,
                                                             "hardware": hardware,
                                                             "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
