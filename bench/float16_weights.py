"""Do the float16 weights of chapter 08's checkpoints measure the same as the float32 weights they came from?

The course stores new weights in float16 (half the bytes) only where the samples measure the same. This
compares each shipped float16 checkpoint with the float32 weights of its training run (the EMA weights in
``runs/NAME/checkpoint.pt``, which ``train --publish`` leaves behind; they are not shipped):

- ``mnist_autoencoder``: reconstructions of the 2,000 test digits (mean |error|, read as the right digit);
- ``shapes64_autoencoder``: reconstructions of 500 generated 64x64 shapes (mean |error|);
- ``mnist_latent``: ``--num`` DDIM-50 samples from the same seed (recognised share, FID) and how far the
  two sets of pictures are apart.

    .venv/bin/python bench/float16_weights.py --runs runs

Writes bench/results/float16_weights.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import torch

from diffusion_lab.data import mnist_tensors
from diffusion_lab.data.shapes import make_shapes
from diffusion_lab.judges.metrics import class_probabilities, fid, recognised_fraction
from diffusion_lab.latent import decode, encode
from diffusion_lab.pipelines import load_pipeline
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"


def float32_twin(name: str, runs: Path) -> torch.nn.Module:
    """The shipped model with the float32 EMA weights of its training run (the latent scale kept as shipped)."""
    model = load_pretrained(name).model
    saved = torch.load(runs / name / "checkpoint.pt", map_location="cpu", weights_only=True)
    weights = saved["ema"]["model"]
    weights = {k: v for k, v in weights.items() if k != "latent_scale"}  # measured after training, not in the run
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - {"latent_scale"}:
        raise SystemExit(f"{runs / name / 'checkpoint.pt'} does not hold {name}'s weights")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the folder train wrote its runs to")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--names", nargs="+", default=["mnist_autoencoder", "shapes64_autoencoder", "mnist_latent"],
                        help="which checkpoints to compare (default: all three)")
    args = parser.parse_args()
    judge = load_pretrained("mnist_classifier").model
    digits, labels = mnist_tensors("test")
    rows = []

    def right(images: torch.Tensor) -> float:
        return float((class_probabilities(judge, images).argmax(1) == labels).float().mean())

    if "mnist_autoencoder" in args.names:
        compare_mnist_autoencoder(args.runs, digits, right, rows)
    if "shapes64_autoencoder" in args.names:
        compare_shapes64_autoencoder(args.runs, rows)
    if "mnist_latent" in args.names:
        compare_mnist_latent(args.runs, args.num, judge, digits, rows)
    print("\n".join(rows))
    text = [f"# float16 against float32 weights ({dt.date.today().isoformat()})", "",
            f"Measured by `python bench/float16_weights.py --runs {args.runs} --num {args.num} --names "
            f"{' '.join(args.names)}`: the shipped float16 checkpoints against the float32 EMA weights of the "
            "training runs that made them.", "",
            "| checkpoint | measured |", "|---|---|", *rows, ""]
    (RESULTS / "float16_weights.md").write_text("\n".join(text))


def compare_mnist_autoencoder(runs: Path, digits: torch.Tensor, right, rows: list[str]) -> None:
    half, full = load_pretrained("mnist_autoencoder").model, float32_twin("mnist_autoencoder", runs)
    for label, ae in (("float16", half), ("float32", full)):
        recon = decode(ae, encode(ae, digits))
        rows.append(f"| mnist_autoencoder, {label} | reconstructions: mean abs error {float((recon - digits).abs().mean()):.4f}, "
                    f"right digit {right(recon):.2%} |")


def compare_shapes64_autoencoder(runs: Path, rows: list[str]) -> None:
    shapes = make_shapes(500, size=64, seed=7, split="all").images
    for label, ae in (("float16", load_pretrained("shapes64_autoencoder").model),
                      ("float32", float32_twin("shapes64_autoencoder", runs))):
        recon = decode(ae, encode(ae, shapes))
        rows.append(f"| shapes64_autoencoder, {label} | reconstructions: mean abs error "
                    f"{float((recon - shapes).abs().mean()):.4f} |")


def compare_mnist_latent(runs: Path, num: int, judge: torch.nn.Module, digits: torch.Tensor, rows: list[str]) -> None:
    pipeline = load_pipeline("mnist_latent", device="cpu")
    samples = {}
    for label, model in (("float16", pipeline.model), ("float32", float32_twin("mnist_latent", runs))):
        pipeline.model = model
        samples[label] = pipeline(num, steps=50, seed=0)
        probs = class_probabilities(judge, samples[label])
        rows.append(f"| mnist_latent, {label} | {num} DDIM-50 samples, seed 0: recognised "
                    f"{recognised_fraction(probs):.1%}, FID {fid(judge, samples[label], digits):.2f} |")
    gap = (samples["float16"] - samples["float32"]).abs()
    rows.append(f"| mnist_latent, float16 vs float32 | same seed: mean abs pixel difference {float(gap.mean()):.4f}, "
                f"largest {float(gap.max()):.3f} |")


if __name__ == "__main__":
    main()
