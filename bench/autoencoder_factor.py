"""The compression dial of chapter 08: how the downsampling factor f limits what a latent model can reach.

Trains the ``mnist_autoencoder`` recipe with f = 2, 4 and 8 (4 latent channels each, same steps, data,
KL weight and seed) and scores them, and the shipped f = 4 autoencoder, on the 2,000 bundled test digits:
mean |error| of the reconstructions, the share the course classifier reads as the right digit, and their
FID against the real test digits on the classifier's features. A latent diffusion model cannot beat its
decoder, so these are the ceilings it inherits.

    .venv/bin/python bench/autoencoder_factor.py               # the preset's 3,000 steps per factor
    .venv/bin/python bench/autoencoder_factor.py --steps 300   # a quick look

Writes bench/results/autoencoder_factor.json and .md; chapter 08 reads the .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import time
from pathlib import Path

import torch

from diffusion_lab.cli.presets import build_objective, get_preset
from diffusion_lab.config import seed_everything
from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.metrics import class_probabilities, fid
from diffusion_lab.latent import decode, encode
from diffusion_lab.models.autoencoder import Autoencoder
from diffusion_lab.pretrained import load_pretrained, read_manifest
from diffusion_lab.training import fit

RESULTS = Path(__file__).resolve().parent / "results"
MULTS = {2: (1, 2), 4: (1, 2, 4), 8: (1, 2, 4, 4)}  # channel_mults per factor: one level per halving


def score(autoencoder: Autoencoder, judge: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> dict:
    recon = decode(autoencoder, encode(autoencoder, x))
    c, h, w = autoencoder.config.latent_shape
    return {"factor": autoencoder.config.factor, "latent": f"{c}x{h}x{w}", "values": c * h * w,
            "l1": float((recon - x).abs().mean()),
            "right_digit": float((class_probabilities(judge, recon).argmax(1) == labels).float().mean()),
            "fid": fid(judge, recon, x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="training steps per factor (default: the preset's)")
    args = parser.parse_args()
    preset = get_preset("mnist_autoencoder")
    steps = args.steps or preset.train.steps
    train = dataclasses.replace(preset.train, steps=steps, cooldown_steps=preset.train.cooldown_steps * steps
                                // preset.train.steps, checkpoint_every=10**9)
    x, labels = mnist_tensors("test")
    judge = load_pretrained("mnist_classifier").model
    shipped = load_pretrained("mnist_autoencoder").model
    made = read_manifest()["mnist_autoencoder"]
    rows = [{**score(shipped, judge, x, labels), "train_seconds": made["train_seconds"], "steps": made["steps"],
             "note": "shipped"}]
    print(rows[0], flush=True)
    for factor in (2, 4, 8):
        config = dataclasses.replace(preset.model_config, channel_mults=MULTS[factor])
        seed_everything(preset.train.seed)
        autoencoder = Autoencoder(config)
        objective = build_objective(dataclasses.replace(preset, model_config=config), autoencoder)
        start = time.perf_counter()
        fit(autoencoder, objective, train, progress=False)
        objective.finish(autoencoder)
        row = {**score(autoencoder.eval(), judge, x, labels), "train_seconds": round(time.perf_counter() - start),
               "steps": steps}
        print(row, flush=True)
        rows.append(row)
    originals = float((class_probabilities(judge, x).argmax(1) == labels).float().mean())
    RESULTS.mkdir(exist_ok=True)
    command = "python bench/autoencoder_factor.py" + (f" --steps {args.steps}" if args.steps else "")
    (RESULTS / "autoencoder_factor.json").write_text(json.dumps(
        {"date": dt.date.today().isoformat(), "command": command, "originals_right_digit": originals,
         "rows": rows}, indent=2) + "\n")
    lines = [f"# The autoencoder's downsampling factor ({dt.date.today().isoformat()})", "",
             f"Measured by `{command}` ({platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}); other training jobs shared the CPU, so the training times are not "
             "comparable, only the scores. The first row is the shipped mnist_autoencoder. Scores on the 2,000 "
             f"bundled test digits; the originals are read as the right digit {originals:.1%} of the time.", "",
             "| f | latent | values (picture: 784) | mean abs error | right digit | FID | steps |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['factor']}{' (shipped)' if r.get('note') else ''} | {r['latent']} | {r['values']} | {r['l1']:.4f} | {r['right_digit']:.1%} "
                     f"| {r['fid']:.2f} | {r['steps']} |")
    (RESULTS / "autoencoder_factor.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
