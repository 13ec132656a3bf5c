"""What latent diffusion buys: pixel-space against latent-space MNIST models of the same U-Net (chapter 08).

Latent diffusion's Figs. 5-6 (Rombach et al. 2022) in miniature, on this machine, in one run:

- ``speed``: training images per second of the ``mnist`` U-Net on 1x28x28 pixels and of the same widths on
  the ``mnist_autoencoder``'s 4x8x8 latents (each preset's batch and precision; latents encoded once, the
  encoding's one-off cost reported apart; the median of ``--repeats`` timed windows, the models taking
  turns so that the machine's drift hits all alike), and sampling time per image with DDIM-50, decoding included;
  the same two numbers at 64x64 RGB (3x64x64 pixels against the ``shapes64_autoencoder``'s 4x16x16 latents,
  untrained U-Nets of equal widths: throughput does not depend on the weights).
- ``quality``: the shipped ``mnist`` and ``mnist_latent``, DDIM-50, ``--num`` samples per seed: the share the
  course classifier recognises (confidence >= 0.9), FID on its features against the 2,000 test digits,
  classes present; ``mnist_latent`` also with DDPM's 1,000 stochastic steps (``--ddpm-num`` samples, first seed;
  the pixel model's DDPM-1000 is in bench/sample_quality.py's results); and the
  autoencoder's reconstructions of the test digits, read as the right digit.
- ``budget``: both models trained from scratch for ``--budget-minutes`` of wall-clock each (the preset's
  recipe without its cooldown), scored with ``--budget-num`` DDIM-50 samples at ``--evals`` points: quality
  against training time at equal CPU budget. Evaluation time is not counted as training time.

    .venv/bin/python bench/latent_vs_pixel.py                          # everything (about 30 min on 2 cores)
    .venv/bin/python bench/latent_vs_pixel.py --parts speed quality    # the bars only

Writes bench/results/latent_vs_pixel.json and .md (parts not run keep their last results). Run it alone:
timings taken beside another job are wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from diffusion_lab.cli.presets import build_objective, get_preset
from diffusion_lab.config import pick_device, seed_everything
from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.metrics import class_counts, class_probabilities, fid, recognised_fraction
from diffusion_lab.latent import decode, encode
from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pipelines import load_pipeline
from diffusion_lab.pretrained import load_pretrained
from diffusion_lab.sampling import DDIMScheduler, sample
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import DiffusionObjective, TrainConfig, fit

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("speed", "quality", "budget")


def training_rates(runs: dict[str, tuple], repeats: int, device) -> dict[str, list[float]]:
    """Images per second of ``fit`` for each of ``runs`` (name -> (model, objective, config, steps per window)).

    After 5 untimed warm-up steps each, the runs take turns: ``repeats`` rounds of one timed window per
    run. A shared machine's speed drifts by 20 % and more over minutes; timing one model and then the
    other puts that drift into their ratio, taking turns puts both under the same conditions. The caller
    reports each run's median window.
    """
    def window(model, objective, config, steps):
        start = time.perf_counter()
        fit(model, objective, dataclasses.replace(config, steps=steps, checkpoint_every=10**9), device=device,
            progress=False)
        return steps * config.batch_size / (time.perf_counter() - start)

    for model, objective, config, _ in runs.values():
        window(model, objective, config, 5)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(window(*run))
    return rates


@torch.no_grad()
def sampling_seconds(model: torch.nn.Module, shape: tuple[int, ...], num: int, device,
                     autoencoder: Autoencoder | None = None) -> float:
    """Seconds per image of DDIM-50 on ``num`` samples at once (best of 2), decoding included when latent."""
    scheduler = DDIMScheduler(NoiseSchedule.from_name("cosine", 1000), clip_sample=autoencoder is None)
    scheduler.set_timesteps(50)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        x = sample(model.eval(), scheduler, (num, *shape), generator=torch.Generator().manual_seed(0), device=device)
        if autoencoder is not None:
            x = decode(autoencoder, x)
        float(x.sum())  # wait for the device
        best = min(best, time.perf_counter() - start)
    return best / num


def speed(device, steps: int, repeats: int) -> dict:
    """Training images / s (median of ``repeats`` interleaved windows) and DDIM-50 ms / image, pixel and latent."""
    out = {}
    images, _ = mnist_tensors("train")
    autoencoder = load_pretrained("mnist_autoencoder", device=device).model
    start = time.perf_counter()
    latents = encode(autoencoder, images)
    out["encode_seconds_20000"] = time.perf_counter() - start
    schedule = NoiseSchedule.from_name("cosine", 1000)
    runs, shapes = {}, {}
    for name, data, window in (("mnist", images, max(steps // 4, 5)), ("mnist_latent", latents, steps)):
        preset = get_preset(name)  # each at its preset's batch, precision and loss weighting, as it trains
        seed_everything(0)
        model = UNet(preset.model_config)
        runs[name] = (model, DiffusionObjective(schedule, data, snr_gamma=preset.snr_gamma), preset.train, window)
        shapes[name] = (preset.model_config.in_channels, preset.model_config.image_size,
                        preset.model_config.image_size)
    # 64 x 64 RGB: the same widths over 3x64x64 pixels and over 4x16x16 latents (untrained: throughput only)
    ae64 = Autoencoder(AutoencoderConfig.shapes64()).to(device).eval()
    ae64.latent_scale.fill_(1.0)
    base = UNetConfig(base_channels=32, channel_mults=(1, 2, 2))
    config = TrainConfig(batch_size=32, mixed_precision=True)
    for name, unet_config, window in (
            ("pixels_64", dataclasses.replace(base, in_channels=3, out_channels=3, image_size=64), max(steps // 4, 5)),
            ("latent_16", dataclasses.replace(base, in_channels=4, out_channels=4, image_size=16), steps)):
        seed_everything(0)
        shapes[name] = (unet_config.in_channels, unet_config.image_size, unet_config.image_size)
        data = torch.randn(512, *shapes[name]).clamp(-1, 1)
        runs[name] = (UNet(unet_config), DiffusionObjective(schedule, data), config, window)
    rates = training_rates(runs, repeats, device)
    for name, (model, _, config, window) in runs.items():
        num = 100 if name.startswith("mnist") else 16
        decoder = {"mnist_latent": autoencoder, "latent_16": ae64}.get(name)
        per_image = sampling_seconds(model, shapes[name], num, device, decoder)
        out[name] = {"train_images_per_s": statistics.median(rates[name]), "train_windows": rates[name],
                     "window_steps": window, "sample_ms_per_image": 1000 * per_image,
                     "batch_size": config.batch_size, "precision": str(config.mixed_precision)}
        print(name, out[name], flush=True)
    return out


def judge_samples(clf, reference, images: torch.Tensor) -> dict:
    probs = class_probabilities(clf, images)
    return {"recognised": recognised_fraction(probs, 0.9), "fid": fid(clf, images, reference),
            "classes_present": int((class_counts(probs) > 0).sum())}


def quality(device, num: int, seeds: list[int], ddpm_num: int) -> dict:
    clf = load_pretrained("mnist_classifier", device=device).model
    reference, labels = mnist_tensors("test")
    out = {}
    for name in ("mnist", "mnist_latent"):
        pipeline = load_pipeline(name, device=device)
        rows = []
        for seed in seeds:
            start = time.perf_counter()
            images = pipeline(num, sampler="ddim", steps=50, seed=seed).cpu()
            rows.append({"seed": seed, "seconds": time.perf_counter() - start, **judge_samples(clf, reference, images)})
            print(name, rows[-1], flush=True)
        out[name] = {"per_seed": rows, **{k: sum(r[k] for r in rows) / len(rows) for k in ("recognised", "fid")},
                     "classes_present": min(r["classes_present"] for r in rows)}
        if ddpm_num and name == "mnist_latent":  # DDPM-1000, first seed: what DDIM's deterministic path costs
            # (the pixel model's DDPM-1000 takes ~25 min here; bench/sample_quality.py measured it: it ties DDIM-50)
            start = time.perf_counter()
            images = pipeline(ddpm_num, sampler="ddpm", steps=1000, seed=seeds[0]).cpu()
            out[name]["ddpm_1000"] = {"seed": seeds[0], "num": ddpm_num, "seconds": time.perf_counter() - start,
                                      **judge_samples(clf, reference, images)}
            print(name, "ddpm 1000", out[name]["ddpm_1000"], flush=True)
    autoencoder = load_pretrained("mnist_autoencoder", device=device).model
    for name, images in (("originals", reference), ("reconstructions", decode(autoencoder, encode(autoencoder, reference)))):
        probs = class_probabilities(clf, images)
        out[name] = {"right_digit": float((probs.argmax(1) == labels).float().mean()),
                     "fid": fid(clf, images, reference) if name != "originals" else 0.0}
        if name == "reconstructions":
            out[name]["l1"] = float((images - reference).abs().mean())
        print(name, out[name], flush=True)
    return out


class BudgetReached(Exception):
    pass


def budget(device, minutes: float, evals: int, num: int) -> dict:
    clf = load_pretrained("mnist_classifier", device=device).model
    reference, _ = mnist_tensors("test")
    out = {}
    for name in ("mnist", "mnist_latent"):
        preset = get_preset(name)
        seed_everything(0)
        model = UNet(preset.model_config)
        objective = build_objective(preset, model)
        config = dataclasses.replace(preset.train, steps=10**7, cooldown_steps=0, checkpoint_every=10**9, log_every=10)
        autoencoder = load_pretrained("mnist_autoencoder", device=device).model if preset.autoencoder else None
        shape = (preset.model_config.in_channels, preset.model_config.image_size, preset.model_config.image_size)
        marks = [minutes * 60 * (k + 1) / evals for k in range(evals)]
        clock = {"start": time.perf_counter(), "paused": 0.0}
        points = []

        def on_log(state, *, autoencoder=autoencoder, shape=shape, points=points, marks=marks, clock=clock,
                   name=name) -> None:
            trained = time.perf_counter() - clock["start"] - clock["paused"]
            if trained < marks[len(points)]:
                return
            pause = time.perf_counter()
            scheduler = DDIMScheduler(NoiseSchedule.from_name("cosine", 1000), clip_sample=autoencoder is None)
            scheduler.set_timesteps(50)
            x = sample(state.ema.model.eval(), scheduler, (num, *shape), generator=torch.Generator().manual_seed(0),
                       device=device)
            state.ema.model.train()
            images = (decode(autoencoder, x) if autoencoder is not None else x.clamp(-1, 1)).cpu()
            points.append({"train_seconds": trained, "step": state.step, **judge_samples(clf, reference, images)})
            print(name, points[-1], flush=True)
            clock["paused"] += time.perf_counter() - pause
            if len(points) == len(marks):
                raise BudgetReached

        try:
            fit(model, objective, config, device=device, on_log=on_log, progress=False)
        except BudgetReached:
            pass
        out[name] = points
    return out


def write_markdown(results: dict) -> None:
    lines = [f"# Latent against pixel diffusion on MNIST ({results.get('date', '?')})", "",
             f"Measured by `{results.get('command', '')}` on {results.get('hardware', '?')}; the load average was "
             f"{results.get('load_at_start', float('nan')):.2f} when it started (run it alone: timings beside other "
             "jobs are wrong). "
             "Both MNIST models are the same U-Net (channels 32, 64, 128, attention in the middle); the latent one "
             "reads the mnist_autoencoder's 4x8x8 latents instead of 1x28x28 pixels.", ""]
    sp = results.get("speed")
    if sp:
        p, q = sp["mnist"], sp["mnist_latent"]

        def rate(r: dict) -> str:
            windows = r.get("train_windows")
            spread = f" ({min(windows):.0f}-{max(windows):.0f})" if windows else ""
            return f"{r['train_images_per_s']:.0f}{spread}"

        lines += ["## Speed", "",
                  "| model | training images / s | DDIM-50 ms / image (decode included) |", "|---|---|---|",
                  f"| mnist (1x28x28 pixels) | {rate(p)} | {p['sample_ms_per_image']:.1f} |",
                  f"| mnist_latent (4x8x8 latents) | {rate(q)} | {q['sample_ms_per_image']:.1f} |",
                  f"| **latent / pixel** | **{q['train_images_per_s'] / p['train_images_per_s']:.1f}x** | "
                  f"**{p['sample_ms_per_image'] / q['sample_ms_per_image']:.1f}x faster** |",
                  f"| pixels 3x64x64 (untrained, same widths) | {rate(sp['pixels_64'])} | "
                  f"{sp['pixels_64']['sample_ms_per_image']:.1f} |",
                  f"| latents 4x16x16 (untrained, same widths) | {rate(sp['latent_16'])} | "
                  f"{sp['latent_16']['sample_ms_per_image']:.1f} |",
                  f"| **latent / pixel at 64x64** | **{sp['latent_16']['train_images_per_s'] / sp['pixels_64']['train_images_per_s']:.1f}x** | "
                  f"**{sp['pixels_64']['sample_ms_per_image'] / sp['latent_16']['sample_ms_per_image']:.1f}x faster** |",
                  "", "Training images / s: the median of the timed windows (their range in brackets), the models "
                  f"taking turns, {len(q.get('train_windows', [])) or 1} windows each, at each preset's batch and "
                  f"precision (mnist: {p['batch_size']}, {'bf16' if p['precision'] == 'True' else 'fp32'}; "
                  f"mnist_latent: {q['batch_size']}, {'bf16' if q['precision'] == 'True' else 'fp32'}).",
                  "", f"Encoding the 20,000 training digits once took {sp['encode_seconds_20000']:.1f} s "
                  "(not in the training rate: it is paid once per data set). Sampling: 100 images at once for MNIST, "
                  "16 at 64x64, best of two.", ""]
    qu = results.get("quality")
    if qu:
        lines += ["## Quality (DDIM-50, mean over seeds)", "", "| model | recognised | FID | classes present |",
                  "|---|---|---|---|"]
        for name in ("mnist", "mnist_latent"):
            r = qu[name]
            seeds = ", ".join(f"{x['recognised']:.1%}" for x in r["per_seed"])
            lines.append(f"| {name} | {r['recognised']:.1%} ({seeds}) | {r['fid']:.2f} | {r['classes_present']} |")
        for name in ("mnist", "mnist_latent"):
            d = qu[name].get("ddpm_1000")
            if d:
                lines.append(f"| {name}, DDPM-1000 ({d['num']} samples, seed {d['seed']}) | {d['recognised']:.1%} | "
                             f"{d['fid']:.2f} | {d['classes_present']} |")
        lines += ["", f"The autoencoder's reconstructions of the 2,000 test digits: {qu['reconstructions']['right_digit']:.1%} "
                  f"read as the right digit (originals: {qu['originals']['right_digit']:.1%}); L1 error "
                  f"{qu['reconstructions']['l1']:.4f}; FID {qu['reconstructions']['fid']:.2f}.", ""]
    bu = results.get("budget")
    if bu:
        lines += ["## Quality against training time, equal CPU budget", "",
                  "| model | minutes trained | steps | recognised | FID |", "|---|---|---|---|---|"]
        for name, points in bu.items():
            for pt in points:
                lines.append(f"| {name} | {pt['train_seconds'] / 60:.1f} | {pt['step']} | {pt['recognised']:.1%} "
                             f"| {pt['fid']:.1f} |")
        lines.append("")
    if sp and qu:
        p, q = sp["mnist"], sp["mnist_latent"]
        recon = qu["reconstructions"]["right_digit"] - qu["originals"]["right_digit"]
        lines += ["## Bars (issue 14)", "", "| bar | measured | met |", "|---|---|---|",
                  f"| mnist_latent recognised within 3 points of mnist | {qu['mnist_latent']['recognised']:.1%} vs "
                  f"{qu['mnist']['recognised']:.1%} | {'yes' if qu['mnist_latent']['recognised'] >= qu['mnist']['recognised'] - 0.03 else 'no'} |",
                  f"| every class present | {qu['mnist_latent']['classes_present']} of 10 | "
                  f"{'yes' if qu['mnist_latent']['classes_present'] == 10 else 'no'} |",
                  f"| sampling >= 4x faster per image | {p['sample_ms_per_image'] / q['sample_ms_per_image']:.1f}x | "
                  f"{'yes' if p['sample_ms_per_image'] >= 4 * q['sample_ms_per_image'] else 'no'} |",
                  f"| training >= 5x more images / s | {q['train_images_per_s'] / p['train_images_per_s']:.1f}x | "
                  f"{'yes' if q['train_images_per_s'] >= 5 * p['train_images_per_s'] else 'no'} |",
                  f"| reconstructions recognised within 1 point of originals | {recon * 100:+.1f} points | "
                  f"{'yes' if recon >= -0.01 else 'no'} |", ""]
    (RESULTS / "latent_vs_pixel.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--train-steps", type=int, default=40,
                        help="training steps per timed window of a latent model; a pixel model's are a quarter (speed)")
    parser.add_argument("--repeats", type=int, default=5, help="timed training windows per model, taken in turns (speed)")
    parser.add_argument("--num", type=int, default=500, help="samples per seed (quality)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ddpm-num", type=int, default=500,
                        help="samples of DDPM-1000 from mnist_latent, first seed (quality; 0 to skip)")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="training wall-clock per model (budget)")
    parser.add_argument("--evals", type=int, default=4, help="evaluations per model, evenly spaced (budget)")
    parser.add_argument("--budget-num", type=int, default=200, help="samples per evaluation (budget)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    device = pick_device()
    path = RESULTS / "latent_vs_pixel.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "speed" in args.parts:
        results["speed"] = speed(device, args.train_steps, args.repeats)
    if "quality" in args.parts:
        results["quality"] = quality(device, args.num, args.seeds, args.ddpm_num)
    if "budget" in args.parts:
        results["budget"] = budget(device, args.budget_minutes, args.evals, args.budget_num)
    results.update(date=dt.date.today().isoformat(), load_at_start=load_at_start,
                   command="python bench/latent_vs_pixel.py " + " ".join(
                       f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                       for k, v in vars(args).items()),
                   hardware=f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
                            f"device {device}")
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)


if __name__ == "__main__":
    main()
