"""Does the shipped scene scorer (``scenes_scorer``, the binding judge of chapters 10-11) read real scenes right?

    .venv/bin/python bench/scene_scorer_accuracy.py [--n 2000] [--runs runs]

On fresh two-shape test scenes of every pair (seed 1, split "all"; the scorer learnt from seed 0), rendered at
32x32 and at 64x64 (shrunk 2x by average pooling before scoring, as ``judges.binding.binding_accuracy`` does),
``binding_accuracy`` of the real pictures against their own captions: each field of the canonical reading and
"all" (every field right). A judge must read real pictures right >= 99 % ("all") at both sizes.

The shipped weights are float16. When ``--runs`` holds the training run (``runs/scenes_scorer/checkpoint.pt``,
left behind by ``train --publish``, not shipped), the same scenes are also scored with its float32 weights, to
check that storing half precision changes nothing.

Writes bench/results/scene_scorer_accuracy.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import torch

from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.judges.binding import binding_accuracy
from diffusion_lab.judges.scene_scorer import READING_NAMES
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results" / "scene_scorer_accuracy.md"
NAME = "scenes_scorer"
BAR = 0.99


def float32_twin(runs: Path) -> torch.nn.Module | None:
    """The scorer with the float32 weights its training run ended with, or None when the run is not there."""
    path = runs / NAME / "checkpoint.pt"
    if not path.exists():
        return None
    model = load_pretrained(NAME).model
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["ema"]["model"])
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="test scenes per picture size")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the folder train wrote its runs to")
    args = parser.parse_args()
    start = time.perf_counter()
    scorers = {"float16 (shipped)": load_pretrained(NAME).model}
    twin = float32_twin(args.runs)
    if twin is not None:
        scorers["float32 (training run)"] = twin
    rows, worst = [], 1.0
    for size in (32, 64):
        scenes = make_scenes(args.n, size=size, seed=1, split="all", two_shape_fraction=1.0)
        for label, scorer in scorers.items():
            scores = binding_accuracy(scorer, scenes.images, scenes.captions)
            worst = min(worst, scores["all"])
            rows.append(f"| {size}x{size} | {label} | " + " | ".join(f"{scores[k]:.2%}" for k in (*READING_NAMES, "all"))
                        + " |")
    seconds = time.perf_counter() - start
    lines = [f"# Scene scorer on real scenes ({dt.date.today().isoformat()}, torch {torch.__version__})", "",
             f"`.venv/bin/python bench/scene_scorer_accuracy.py --n {args.n}`, {torch.get_num_threads()} thread(s), "
             f"{seconds:.0f} s. {args.n:,} fresh two-shape scenes of every pair per size (seed 1, split \"all\"; the "
             f"scorer learnt from seed 0), each scored against its own caption; 64x64 pictures are shrunk by 2x2 "
             f"average pooling first.", "",
             "| pictures | weights | axis | shape_a | colour_a | shape_b | colour_b | all |",
             "|---|---|---|---|---|---|---|---|", *rows, "",
             f"Bar: every field right (\"all\") >= {BAR:.0%} at both sizes: **{'met' if worst >= BAR else 'missed'}** "
             f"(lowest {worst:.2%})."]
    if twin is None:
        lines += ["", f"The float32 weights were not measured: no {args.runs / NAME / 'checkpoint.pt'}."]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
