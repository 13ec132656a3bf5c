"""How fast /imagine is (chapter 11), and what the latent space buys against chapter 06's pixel-space model.

    .venv/bin/python bench/imagine_speed.py --note "alone, 2 threads"      # run it on a quiet machine

Sampling, median of 5 after one warm-up, at the machine's threads:
  - ``imagine``: a grid of four 64x64 pictures, DDIM 25 steps with classifier-free guidance (w = 4), the API's
    defaults; ``upscale`` (U2, chapter 10's upsampler, 64 -> 128, DDIM 20); ``vary`` (V3 subtle, SDEdit);
  - chapter 06's ``shapes_text``, four 32x32 pictures with the same sampler, steps and guidance.
Pixels per second = pictures x height x width / seconds. The bar (issue 17): imagine and upscale under 3 s on 2
cores, and tiny_sd faster per pixel than shapes_text.

Training cost: one training step of each model's U-Net (its preset's batch of 64, forward, backward, AdamW, in
the preset's precision) on random inputs of the right shapes, median of 10 after 3 of warm-up, so both are
timed on the same machine in the same way; and each checkpoint's own recorded training (steps, hours, hardware).
tiny_sd's step also leaves out its first stage, whose cost (scenes64_autoencoder, trained once, reused by every
latent model on these scenes) is listed apart, as is encoding the training pictures once.

Writes bench/results/imagine_speed.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion_lab.cli.commands import build_model
from diffusion_lab.cli.presets import get_preset
from diffusion_lab.pipelines.imagine import imagine, upscale, vary
from diffusion_lab.pipelines.registry import load_pipeline
from diffusion_lab.pipelines.text_to_image import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, TinySDPipeline
from diffusion_lab.pretrained import checkpoints_dir, load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "a red circle to the left of a blue square"
ONE_SHAPE = "a small red circle in the top left"  # chapter 06's model knows one-shape captions only


def median_seconds(run: Callable[[int], object], repeats: int) -> float:
    run(0)  # warm-up
    times = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sampling(repeats: int, root: str | None) -> dict:
    pipe = TinySDPipeline.from_pretrained("tiny_sd", root=root, device="cpu")
    up = load_pretrained("upsampler", root=root, device="cpu")
    text = load_pipeline("shapes_text", device="cpu")
    job = imagine(f"{PROMPT} --seed 0", pipeline=pipe)
    runs = {
        "imagine (4 x 64x64)": (lambda i: imagine(f"{PROMPT} --seed {i}", pipeline=pipe), 4 * 64 * 64),
        "upscale (1 x 128x128)": (lambda i: upscale(job, 2, upsampler=up), 128 * 128),
        "vary, subtle (4 x 64x64)": (lambda i: vary(job, 3, seed=i, pipeline=pipe), 4 * 64 * 64),
        "shapes_text (4 x 32x32)": (lambda i: text(4, prompt=ONE_SHAPE, steps=DEFAULT_STEPS, sampler="ddim",
                                                   guidance_scale=DEFAULT_GUIDANCE_SCALE, seed=i), 4 * 32 * 32),
    }
    out = {}
    with torch.inference_mode():
        for name, (run, pixels) in runs.items():
            seconds = median_seconds(run, repeats)
            out[name] = {"seconds": seconds, "pixels_per_second": pixels / seconds}
            print(f"{name}: {seconds:.3f} s, {pixels / seconds:,.0f} pixels/s", flush=True)
    return out


def training_step_seconds(preset_name: str, repeats: int = 10) -> float:
    """One training step of the preset's U-Net on random inputs shaped as its data, median of ``repeats``."""
    preset = get_preset(preset_name)
    model = build_model(preset)  # a TextUNet, over pixels or over latents
    cfg, train = preset.model_config.unet, preset.train
    b = train.batch_size
    x = torch.randn(b, cfg.in_channels, cfg.image_size, cfg.image_size)
    cond = model.encode_prompts([ONE_SHAPE] * b)
    t = torch.randint(0, 1000, (b,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if train.mixed_precision else None

    def step(_: int) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss = F.mse_loss(model(x, t, cond), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(2):
        step(i)
    return median_seconds(step, repeats)


def training(root: str | None) -> dict:
    manifest = json.loads((checkpoints_dir(root) / "manifest.json").read_text())
    out = {}
    for name in ("tiny_sd", "shapes_text"):
        seconds = training_step_seconds(name)
        preset = get_preset(name)
        entry = manifest.get(name, {})
        out[name] = {"step_seconds": seconds, "batch": preset.train.batch_size,
                     "images_per_second": preset.train.batch_size / seconds,
                     "recorded": {k: entry.get(k) for k in ("steps", "train_seconds", "hardware", "note")}}
        print(f"training {name}: {seconds:.3f} s per step of {preset.train.batch_size}", flush=True)
    entry = manifest.get("scenes64_autoencoder", {})
    out["scenes64_autoencoder"] = {"recorded": {k: entry.get(k) for k in ("steps", "train_seconds", "hardware")}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="", help="what else ran on the machine, for the results file")
    parser.add_argument("--checkpoints", default=None, help="where tiny_sd and the upsampler are")
    args = parser.parse_args()
    record = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "machine": platform.machine(),
              "threads": torch.get_num_threads(), "note": args.note, "sampling": sampling(args.repeats, args.checkpoints),
              "training": training(args.checkpoints)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "imagine_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = report(record)
    (RESULTS / "imagine_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report(r: dict) -> list[str]:
    s, tr = r["sampling"], r["training"]
    grid, up = s["imagine (4 x 64x64)"], s["upscale (1 x 128x128)"]
    ratio = grid["pixels_per_second"] / s["shapes_text (4 x 32x32)"]["pixels_per_second"]
    ok = grid["seconds"] < 3 and up["seconds"] < 3 and ratio > 1
    lines = [f"# /imagine: speed, and the latent model against chapter 06's pixel model ({r['date']})", "",
             f"`.venv/bin/python bench/imagine_speed.py`, torch {r['torch']}, {r['threads']} threads, {r['machine']} "
             f"CPU. DDIM {DEFAULT_STEPS} steps, classifier-free guidance w = {DEFAULT_GUIDANCE_SCALE:g} (two network "
             f"evaluations per step), median of 5 after a warm-up. {r['note']}", "",
             "| what | seconds | pixels per second |", "|---|---|---|",
             *[f"| {k} | {v['seconds']:.3f} | {v['pixels_per_second']:,.0f} |" for k, v in s.items()], "",
             f"tiny_sd draws {ratio:.1f}x as many pixels per second as shapes_text.", "",
             f"Bars (issue 17): imagine under 3 s ({grid['seconds']:.2f} s), upscale under 3 s ({up['seconds']:.2f} s), "
             f"faster per pixel than chapter 06's model ({ratio:.1f}x): **{'met' if ok else 'missed'}**.", "",
             "## Training cost", "",
             "| model | one step (batch 64), this machine | images per second | recorded training |", "|---|---|---|---|"]
    for name, row in tr.items():
        rec = row["recorded"]
        made = (f"{rec['steps']:,} steps, {rec['train_seconds'] / 3600:.2f} h, {rec['hardware']}"
                if rec.get("steps") and rec.get("train_seconds") else "not published here")
        if "step_seconds" in row:
            lines.append(f"| {name} | {row['step_seconds']:.3f} s | {row['images_per_second']:.0f} | {made} |")
        else:
            lines.append(f"| {name} (tiny_sd's first stage) | - | - | {made} |")
    return lines


if __name__ == "__main__":
    main()
