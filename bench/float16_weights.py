"""Do the float16 weights of chapter 08's (and 11's) checkpoints measure the same as the float32 weights they came from?

The course stores new weights in float16 (half the bytes) only where the samples measure the same. This
compares each shipped float16 checkpoint with the float32 weights of its training run (the EMA weights in
``runs/NAME/checkpoint.pt``, which ``train --publish`` leaves behind; they are not shipped):

- ``mnist_autoencoder``: reconstructions of the 2,000 test digits (mean |error|, read as the right digit);
- ``shapes64_autoencoder``: reconstructions of 500 generated 64x64 shapes (mean |error|);
- ``scenes64_autoencoder`` (chapter 11): reconstructions of 500 64x64 scenes of one or two shapes;
- ``mnist_latent``: ``--num`` DDIM-50 samples from the same seed (recognised share, FID) and how far the
  two sets of pictures are apart;
- ``tiny_sd`` (chapter 11): one picture for each of the 220 one-shape training prompts (DDIM 25, w = 4, the
  same seeds), the share the ``shapes_scorer`` reads with all four attributes right, and how far the two sets
  of pictures are apart.

``mnist`` and ``mnist_cond`` (chapters 04 and 07) shipped in float32 before the course stored weights in
float16; their float32 files live on in git (``FLOAT32_FROM``, the last commit that held them). Each is
compared with the same weights rounded to float16: ``--num`` DDIM-50 samples from the same seed (recognised
share and FID; for ``mnist_cond``, guided at w = 3 towards digits 0-9 in turn, the share that is the digit
asked for) and how far the two sets of pictures are apart. Three more followed (``OTHER_FLOAT32_FROM``):

- ``shapes_text`` (chapter 06): one picture for each of the 220 one-shape training prompts (DDIM 50, w = 3,
  the same seeds), the share ``shapes_scorer`` reads with all four attributes right;
- ``mnist_noisy_classifier`` (chapter 07): its accuracy on the 2,000 test digits noised to t = 0 ... 999 (the
  same noise), and ``mnist`` guided by it at s = 2 towards each digit (``--num`` samples, the share that is
  the digit asked for);
- ``toy2d``: 2,000 DDIM-50 points from the same seed, their sliced W_1 to 2,000 swiss-roll points.

    .venv/bin/python bench/float16_weights.py --runs runs
    .venv/bin/python bench/float16_weights.py --names mnist mnist_cond
    .venv/bin/python bench/float16_weights.py --names shapes_text mnist_noisy_classifier toy2d

Writes bench/results/float16_weights.json (one entry per checkpoint, kept across runs of other names) and
bench/results/float16_weights.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors

from diffusion_lab.data import mnist_tensors
from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.data.shapes import combinations, make_shapes
from diffusion_lab.data.toys import make_toy
from diffusion_lab.judges.metrics import (
    attribute_accuracy,
    class_probabilities,
    fid,
    recognised_fraction,
    sliced_wasserstein,
)
from diffusion_lab.judges.noisy_accuracy import accuracy_by_timestep
from diffusion_lab.latent import decode, encode
from diffusion_lab.pipelines import load_pipeline
from diffusion_lab.pipelines.text_to_image import TinySDPipeline
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
FLOAT32_FROM = {"mnist": "e8d9549c675159c1954914da86225db8830330b4",  # the last commits with the float32 files
                "mnist_cond": "20a3fbdae12d1ff4cc32f237045ab7ec5948b93a"}
# shipped in float32 until chapter 09 needed room in data/ for mnist_flow; compared by
# their own functions below, since they are not unconditional digit models
OTHER_FLOAT32_FROM = {name: "8c07fe785076405fad0ab321aebc950c6fd9fc90"
                      for name in ("shapes_text", "mnist_noisy_classifier", "toy2d")}


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
                        choices=["mnist_autoencoder", "shapes64_autoencoder", "scenes64_autoencoder", "mnist_latent",
                                 "tiny_sd", *FLOAT32_FROM, *OTHER_FLOAT32_FROM],
                        help="which checkpoints to compare (default: the three trained in float16's time)")
    args = parser.parse_args()
    judge = load_pretrained("mnist_classifier").model
    digits, labels = mnist_tensors("test")
    rows: list[str] = []
    path = RESULTS / "float16_weights.json"
    record = json.loads(path.read_text()) if path.exists() else {}

    def right(images: torch.Tensor) -> float:
        return float((class_probabilities(judge, images).argmax(1) == labels).float().mean())

    if "mnist_autoencoder" in args.names:
        compare_mnist_autoencoder(args.runs, digits, right, rows)
    for name in ("shapes64_autoencoder", "scenes64_autoencoder"):
        if name in args.names:
            compare_64_autoencoder(name, args.runs, rows)
    if "mnist_latent" in args.names:
        compare_mnist_latent(args.runs, args.num, judge, digits, rows)
    if "tiny_sd" in args.names:
        compare_tiny_sd(args.runs, rows)
    for name in FLOAT32_FROM:
        if name in args.names:
            compare_rounded(name, args.num, judge, digits, rows)
    if "shapes_text" in args.names:
        compare_shapes_text(rows)
    if "mnist_noisy_classifier" in args.names:
        compare_noisy_classifier(args.num, judge, digits, labels, rows)
    if "toy2d" in args.names:
        compare_toy2d(rows)
    print("\n".join(rows))
    command = f"python bench/float16_weights.py --runs {args.runs} --num {args.num} --names {' '.join(args.names)}"
    for name in args.names:
        record[name] = {"date": dt.date.today().isoformat(), "command": command, "threads": torch.get_num_threads(),
                        "rows": [r for r in rows if r.startswith(f"| {name},")]}
    path.write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(record)


def write_markdown(record: dict) -> None:
    """bench/results/float16_weights.md from the JSON record: one table per command run."""
    text = ["# float16 against float32 weights", "",
            "The chapter 08 checkpoints (trained after the course began storing float16) against the float32 EMA "
            "weights of the training runs that made them; `mnist` and `mnist_cond` (shipped in float32 first) "
            "against their own weights rounded to float16. Each block says the command and date that measured it.",
            ""]
    runs: dict[tuple, list[str]] = {}  # one table per command run, in the order first measured
    for entry in record.values():
        runs.setdefault((entry["command"], entry["date"], entry.get("threads")), []).extend(entry["rows"])
    for (command, date, threads), measured in runs.items():
        text += [f"`{command}` ({date}{f', {threads} threads' if threads else ''}):", "",
                 "| checkpoint | measured |", "|---|---|", *measured, ""]
    (RESULTS / "float16_weights.md").write_text("\n".join(text))


def compare_mnist_autoencoder(runs: Path, digits: torch.Tensor, right, rows: list[str]) -> None:
    half, full = load_pretrained("mnist_autoencoder").model, float32_twin("mnist_autoencoder", runs)
    for label, ae in (("float16", half), ("float32", full)):
        recon = decode(ae, encode(ae, digits))
        rows.append(f"| mnist_autoencoder, {label} | reconstructions: mean abs error {float((recon - digits).abs().mean()):.4f}, "
                    f"right digit {right(recon):.2%} |")


def compare_64_autoencoder(name: str, runs: Path, rows: list[str]) -> None:
    """shapes64_autoencoder on 500 generated 64x64 shapes, scenes64_autoencoder on 500 64x64 test scenes."""
    pictures = (make_shapes(500, size=64, seed=7, split="all") if name == "shapes64_autoencoder"
                else make_scenes(500, size=64, seed=7, split="all")).images
    for label, ae in (("float16", load_pretrained(name).model), ("float32", float32_twin(name, runs))):
        recon = decode(ae, encode(ae, pictures))
        rows.append(f"| {name}, {label} | reconstructions: mean abs error {float((recon - pictures).abs().mean()):.4f} |")


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


def compare_tiny_sd(runs: Path, rows: list[str]) -> None:
    """tiny_sd's float16 and float32 weights on the 220 one-shape training prompts, one picture each."""
    pipeline = TinySDPipeline.from_pretrained("tiny_sd", device="cpu")
    scorer = load_pretrained("shapes_scorer").model
    attributes = combinations("train")
    prompts, wanted = [a.caption() for a in attributes], torch.tensor([a.indices() for a in attributes])
    pictures = {}
    for label, model in (("float16", pipeline.model), ("float32", float32_twin("tiny_sd", runs))):
        pipeline.model = model
        pictures[label] = torch.cat([pipeline(prompt=prompts[i:i + 64], generator=torch.Generator().manual_seed(i))
                                     for i in range(0, len(prompts), 64)])  # DDIM 25, w = 4: the defaults
        right = attribute_accuracy(scorer, F.interpolate(pictures[label], size=32, mode="area"), wanted)["all"]
        rows.append(f"| tiny_sd, {label} | {len(prompts)} one-shape prompts, DDIM 25, w = 4: all four right "
                    f"{right:.1%} |")
    gap = (pictures["float16"] - pictures["float32"]).abs()
    rows.append(f"| tiny_sd, float16 vs float32 | same seeds: mean abs pixel difference {float(gap.mean()):.4f}, "
                f"largest {float(gap.max()):.3f} |")


def float32_weights(name: str) -> dict[str, torch.Tensor]:
    """``name``'s float32 weights, read from the commit that last shipped them (``FLOAT32_FROM``)."""
    commit = {**FLOAT32_FROM, **OTHER_FLOAT32_FROM}[name]
    blob = subprocess.run(["git", "show", f"{commit}:data/checkpoints/{name}.safetensors"], cwd=REPO,
                          capture_output=True, check=True).stdout
    weights = load_safetensors(blob)
    if any(v.dtype != torch.float32 for v in weights.values() if v.is_floating_point()):
        raise SystemExit(f"{commit} does not hold float32 weights of {name}")
    return weights


def both_precisions(model: torch.nn.Module, name: str):
    """Yield ("float16", model) then ("float32", model): the float32 weights of ``name`` and the same rounded as
    ``save_pretrained(float16=True)`` rounds them (parameters only), loaded in turn into ``model``."""
    full = float32_weights(name)
    parameters = {k for k, _ in model.named_parameters()}
    rounded = {k: v.half() if k in parameters and v.is_floating_point() else v for k, v in full.items()}
    for label, weights in (("float16", rounded), ("float32", full)):
        model.load_state_dict(weights)  # copied into the float32 parameters: float16 values, exactly
        yield label, model


def compare_shapes_text(rows: list[str]) -> None:
    """shapes_text on the 220 one-shape training prompts, one picture each (chapter 06's bench setting)."""
    pipeline = load_pipeline("shapes_text", device="cpu")
    scorer = load_pretrained("shapes_scorer").model
    attributes = combinations("train")
    prompts, wanted = [a.caption() for a in attributes], torch.tensor([a.indices() for a in attributes])
    pictures = {}
    for label, _ in both_precisions(pipeline.model, "shapes_text"):
        pictures[label] = pipeline(len(prompts), prompt=prompts, sampler="ddim", steps=50, guidance_scale=3.0,
                                   seed=0)
        right = attribute_accuracy(scorer, pictures[label], wanted)["all"]
        rows.append(f"| shapes_text, {label} | {len(prompts)} one-shape prompts, DDIM 50, w = 3, seed 0: all four "
                    f"right {right:.1%} |")
    gap = (pictures["float16"] - pictures["float32"]).abs()
    rows.append(f"| shapes_text, float16 vs float32 | same seed: mean abs pixel difference {float(gap.mean()):.4f}, "
                f"largest {float(gap.max()):.3f} |")


def compare_noisy_classifier(num: int, judge: torch.nn.Module, digits: torch.Tensor, labels: torch.Tensor,
                             rows: list[str]) -> None:
    """The noise-aware classifier: accuracy over t on the test digits, and classifier guidance of mnist by it."""
    pre = load_pretrained("mnist_noisy_classifier")
    pipeline = load_pipeline("mnist", device="cpu")
    asked = torch.arange(num) % 10
    samples = {}
    for label, model in both_precisions(pre.model, "mnist_noisy_classifier"):
        model.eval()
        accuracy = accuracy_by_timestep(model, digits, labels, pipeline.schedule, (0, 250, 500, 750, 999))
        per = [pipeline(int((asked == d).sum()), steps=50, seed=d, class_label=d, classifier_scale=2.0,
                        classifier=model) for d in range(10)]
        samples[label] = torch.cat(per)
        order = torch.cat([torch.full((len(p),), d) for d, p in enumerate(per)])
        hit = float((class_probabilities(judge, samples[label]).argmax(1) == order).float().mean())
        rows.append(f"| mnist_noisy_classifier, {label} | accuracy on the 2,000 test digits at t = "
                    f"{', '.join(f'{t}: {a:.1%}' for t, a in accuracy.items())}; mnist guided at s = 2, {num} "
                    f"DDIM-50 samples, seed d for digit d: the digit asked for {hit:.1%} |")
    gap = (samples["float16"] - samples["float32"]).abs()
    rows.append(f"| mnist_noisy_classifier, float16 vs float32 | same seeds: mean abs pixel difference of the guided "
                f"samples {float(gap.mean()):.4f}, largest {float(gap.max()):.3f} |")


def compare_toy2d(rows: list[str]) -> None:
    """The 2-D swiss-roll denoiser: 2,000 DDIM-50 points each, against 2,000 points of the data."""
    pipeline = load_pipeline("toy2d", device="cpu")
    data = make_toy("swiss_roll", 2000, seed=1)
    points = {}
    for label, _ in both_precisions(pipeline.model, "toy2d"):
        points[label] = pipeline(2000, steps=50, seed=0)
        rows.append(f"| toy2d, {label} | 2,000 DDIM-50 points, seed 0: sliced W_1 to 2,000 swiss-roll points "
                    f"{sliced_wasserstein(points[label], data, p=1):.4f} |")
    gap = (points["float16"] - points["float32"]).abs()
    rows.append(f"| toy2d, float16 vs float32 | same seed: mean abs difference {float(gap.mean()):.5f}, largest "
                f"{float(gap.max()):.4f} |")


def compare_rounded(name: str, num: int, judge: torch.nn.Module, digits: torch.Tensor, rows: list[str]) -> None:
    """``name``'s float32 weights against the same weights rounded to float16: ``num`` DDIM-50 samples each."""
    pipeline = load_pipeline(name, device="cpu")
    full = float32_weights(name)
    conditional = name == "mnist_cond"
    asked = torch.arange(num) % 10
    samples = {}
    parameters = {k for k, _ in pipeline.model.named_parameters()}  # rounded as save_pretrained(float16=True) does
    rounded = {k: v.half() if k in parameters and v.is_floating_point() else v for k, v in full.items()}
    for label, weights in (("float16", rounded), ("float32", full)):
        pipeline.model.load_state_dict(weights)  # copied into the float32 parameters: float16 values, exactly
        if conditional:  # 10 batches, one digit each, guided at w = 3 (chapter 07's setting)
            per = [pipeline(int((asked == d).sum()), steps=50, seed=d, class_label=d, guidance_scale=3.0)
                   for d in range(10)]
            samples[label] = torch.cat(per)
            order = torch.cat([torch.full((len(p),), d) for d, p in enumerate(per)])
        else:
            samples[label] = pipeline(num, steps=50, seed=0)
        probs = class_probabilities(judge, samples[label])
        extra = (f", the digit asked for {float((probs.argmax(1) == order).float().mean()):.1%}" if conditional
                 else "")
        seeds = "seed d for digit d" if conditional else "seed 0"
        rows.append(f"| {name}, {label} | {num} DDIM-50 samples{', w = 3' if conditional else ''}, {seeds}: "
                    f"recognised {recognised_fraction(probs):.1%}, FID {fid(judge, samples[label], digits):.2f}{extra} |")
    gap = (samples["float16"] - samples["float32"]).abs()
    rows.append(f"| {name}, float16 vs float32 | same seed: mean abs pixel difference {float(gap.mean()):.4f}, "
                f"largest {float(gap.max()):.3f} |")


if __name__ == "__main__":
    main()
