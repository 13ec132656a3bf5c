"""How large should the autoencoder's KL weight be? A sweep, chapter 08's choice of ``KL_WEIGHT``.

Trains the ``mnist_autoencoder`` preset's network for ``--steps`` steps at each KL weight and measures, on the
2,000 bundled test digits:

- reconstruction: mean |x - D(E(x))| and the share the course classifier recognises as the right digit
  (blur shows up in both);
- compactness: the std of the raw latents (what the latent scale s = 1/std must undo), the mean KL per
  latent value, and the posterior's mean std (how much noise the decoder learned to tolerate);
- robustness: the L1 change of the decoded picture when the scaled latent moves by N(0, 0.1^2), which a
  diffusion model's small errors do.

    python bench/autoencoder_kl.py --steps 800 --weights 0 1e-6 1e-4 1e-2 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from diffusion_lab.cli.presets import build_objective, get_preset
from diffusion_lab.config import seed_everything
from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.metrics import class_probabilities
from diffusion_lab.latent import decode, encode, measure_latent_scale
from diffusion_lab.models.autoencoder import Autoencoder
from diffusion_lab.pretrained import load_pretrained
from diffusion_lab.training import fit

RESULTS = Path(__file__).parent / "results"


@torch.no_grad()
def measure(model: Autoencoder, x: torch.Tensor, y: torch.Tensor, judge: torch.nn.Module, train: torch.Tensor) -> dict:
    measure_latent_scale(model, train[:5000])
    q = model.posterior(x)
    z = encode(model, x)
    x_hat = decode(model, z)
    g = torch.Generator().manual_seed(0)
    x_moved = decode(model, z + 0.1 * torch.randn(z.shape, generator=g))
    probs = class_probabilities(judge, x_hat)
    return {"l1": float((x_hat - x).abs().mean()), "recognised_right": float((probs.argmax(1) == y).float().mean()),
            "raw_latent_std": float(q.mean.std()), "latent_scale": float(model.latent_scale),
            "kl_per_value": float(q.kl().mean() / q.mean[0].numel()), "posterior_std": float(q.std.mean()),
            "moved_l1": float((x_moved - x_hat).abs().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1e-6, 1e-4, 1e-2, 0.1, 1.0])
    parser.add_argument("--merge", action="store_true",
                        help="add these weights to the recorded rows (same --steps) instead of replacing them")
    args = parser.parse_args()
    base = get_preset("mnist_autoencoder")
    train = dataclasses.replace(base.train, steps=args.steps, cooldown_steps=args.steps // 4, checkpoint_every=10**9)
    x, y = mnist_tensors("test")
    judge = load_pretrained("mnist_classifier").model
    rows = []
    for weight in args.weights:
        preset = dataclasses.replace(base, kl_weight=weight, train=train)
        seed_everything(0)
        model = Autoencoder(preset.model_config)
        objective = build_objective(preset, model)
        start = time.perf_counter()
        fit(model, objective, train, progress=False)
        row = {"kl_weight": weight, "train_seconds": round(time.perf_counter() - start),
               **measure(model.eval(), x, y, judge, objective.images)}
        print(row, flush=True)
        rows.append(row)
    originals = float((class_probabilities(judge, x).argmax(1) == y).float().mean())
    RESULTS.mkdir(exist_ok=True)
    weights = list(args.weights)
    if args.merge and (RESULTS / "autoencoder_kl.json").exists():
        old = json.loads((RESULTS / "autoencoder_kl.json").read_text())
        if old["steps"] != args.steps:
            raise SystemExit(f"--merge needs the recorded --steps {old['steps']}, got {args.steps}")
        kept = [r for r in old["rows"] if r["kl_weight"] not in args.weights]
        rows = sorted(kept + rows, key=lambda r: r["kl_weight"])
        weights = [r["kl_weight"] for r in rows]
    (RESULTS / "autoencoder_kl.json").write_text(json.dumps({"steps": args.steps, "originals": originals,
                                                             "rows": rows}, indent=2) + "\n")
    lines = [f"# The autoencoder's KL weight ({time.strftime('%Y-%m-%d')})", "",
             f"Measured by `python bench/autoencoder_kl.py --steps {args.steps} --weights "
             f"{' '.join(f'{w:g}' for w in weights)}`: the mnist_autoencoder network trained {args.steps} "
             f"steps at each weight (torch {torch.__version__}, {torch.get_num_threads()} threads), scored on the "
             f"2,000 bundled test digits. The classifier recognises {originals:.1%} of the originals as the right "
             "digit. 'moved' is the mean L1 change of the decoded picture when the scaled latent moves by "
             "N(0, 0.1^2).", "",
             "| KL weight | L1 error | recognised right | raw latent std | s = 1/std | KL per value | posterior std "
             "| moved |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kl_weight']:g} | {r['l1']:.4f} | {r['recognised_right']:.1%} | {r['raw_latent_std']:.3f} "
                     f"| {r['latent_scale']:.3f} | {r['kl_per_value']:.3f} | {r['posterior_std']:.4f} "
                     f"| {r['moved_l1']:.4f} |")
    (RESULTS / "autoencoder_kl.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
