"""Where the shipped upsampler should start sampling: from pure noise, or from the enlargement noised part-way.

    .venv/bin/python bench/upsampler_start.py [--num 32] [--steps 20]

Real scenes (seed 3, training split) at 64x64 and 128x128 are shrunk 2x by averaging and enlarged back by
the ``upsampler`` checkpoint (DDIM, --steps, augmentation level 0.1) started at each strength (1 = pure noise,
as the papers sample; below 1, the bilinear enlargement noised to that share of the steps: SDEdit's start).
Measured against the real pictures: mean absolute error, and edge sharpness = mean |Laplacian| (the real
pictures' is the target; bilinear enlarging loses most of it). Writes bench/results/upsampler_start.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.models.upsampler import downsample, enlarge
from diffusion_lab.pipelines.super_resolution import upsample
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results" / "upsampler_start.md"
STRENGTHS = (1.0, 0.7, 0.5, 0.3)


def sharpness(images: torch.Tensor) -> float:
    """Mean absolute Laplacian over pixels and channels of (N, 3, H, W): how much edge a picture has."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return F.conv2d(images, kernel, groups=3).abs().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    pre = load_pretrained("upsampler", device="cpu")
    rows = []
    for size in (64, 128):
        real = make_scenes(args.num, size=size, seed=3, split="train").images
        low = downsample(real)
        bilinear = enlarge(low)
        rows.append(f"| {size // 2} -> {size} | bilinear | - | {(bilinear - real).abs().mean():.4f} | "
                    f"{sharpness(bilinear):.4f} (real {sharpness(real):.4f}) |")
        for strength in STRENGTHS:
            up = upsample(pre.model, low, schedule=pre.schedule, steps=args.steps, augmentation_level=0.1,
                          generator=torch.Generator().manual_seed(0), strength=strength)
            calls = args.steps - (args.steps - round(strength * args.steps))
            rows.append(f"| {size // 2} -> {size} | upsampler, strength {strength:g} | {calls} | "
                        f"{(up - real).abs().mean():.4f} | {sharpness(up):.4f} |")
            print(rows[-1], flush=True)
    lines = [f"# Upsampler: where sampling starts ({dt.date.today().isoformat()}, torch {torch.__version__})", "",
             f"`.venv/bin/python bench/upsampler_start.py --num {args.num} --steps {args.steps}`, "
             f"{torch.get_num_threads()} threads. {args.num} real scenes per size, DDIM {args.steps} steps, "
             "augmentation level 0.1.", "",
             "| enlarging | how | model calls | mean abs error | edge sharpness (mean abs Laplacian) |",
             "|---|---|---|---|---|", *rows]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
