"""CPU training speed of the `mnist` preset, now and at an earlier commit, measured side by side.

    python bench/training_speed.py --ref 264743a --steps 40 --rounds 3

For each round it trains the preset's U-Net for ``--steps`` steps (batch 128, mixed precision as the
preset asks, 2 threads) with this checkout's package and with the package of ``--ref`` (extracted with
``git archive`` into a temporary folder), alternating the two so that a slow minute hurts both. Each run
is a fresh process; the first 5 steps are warm-up and not timed. Writes bench/results/training_speed.md
and .json. Run it on a quiet machine: other jobs on the cores make both numbers wrong.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# Runs inside a fresh interpreter with PYTHONPATH pointing at one version of the package. It trains
# through whichever API that version has (fit + DiffusionObjective now, train before the reshape).
CHILD = textwrap.dedent("""
    import json, sys, time, dataclasses, torch
    torch.set_num_threads(2)
    steps, warm = int(sys.argv[1]), 5
    from diffusion_lab.data import mnist_tensors
    from diffusion_lab.schedules import NoiseSchedule
    try:
        from diffusion_lab.cli.presets import get_preset
    except ImportError:
        from diffusion_lab.presets import get_preset
    import diffusion_lab.training as training
    preset = get_preset("mnist")
    config = dataclasses.replace(preset.train, steps=warm + steps, log_every=10, checkpoint_every=10_000)
    torch.manual_seed(0)
    from diffusion_lab.models.unet import UNet
    model = UNet(preset.model_config)
    data, _ = mnist_tensors("train")
    schedule = NoiseSchedule.from_name("cosine", 1000)
    marks = []
    def on_log(state):
        marks.append((state.step, time.perf_counter()))
    if hasattr(training, "fit"):
        training.fit(model, training.DiffusionObjective(schedule, data), dataclasses.replace(config, log_every=warm),
                     on_log=on_log, progress=False)
    else:
        training.train(model, schedule, data, dataclasses.replace(config, log_every=warm), on_log=on_log, progress=False)
    (s0, t0), (s1, t1) = marks[0], marks[-1]
    print(json.dumps({"steps_per_s": (s1 - s0) / (t1 - t0)}))
""")


def run_once(package_root: Path, steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps)], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(package_root), "OMP_NUM_THREADS": "2", "DIFFUSION_LAB_DEVICE": "cpu",
                              "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="the earlier commit to compare with, e.g. 264743a")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp)
        archive = subprocess.run(["git", "archive", args.ref, "diffusion_lab", "data/mnist"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        speeds: dict[str, list[float]] = {"now": [], args.ref: []}
        for r in range(args.rounds):
            for name, root in (("now", ROOT), (args.ref, old)) if r % 2 == 0 else ((args.ref, old), ("now", ROOT)):
                speeds[name].append(run_once(root, args.steps))
                print(f"round {r + 1}: {name:>8s} {speeds[name][-1]:.3f} steps/s", flush=True)
    medians = {k: statistics.median(v) for k, v in speeds.items()}
    change = medians["now"] / medians[args.ref] - 1
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    record = {"ref": args.ref, "head": head, "steps": args.steps, "rounds": args.rounds, "steps_per_s": speeds,
              "median": medians, "change": change, "cpu": platform.processor() or platform.machine(),
              "torch": torch.__version__}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Training speed of the `mnist` preset on the CPU: {head} against {args.ref}", "",
             f"`python bench/training_speed.py --ref {args.ref} --steps {args.steps} --rounds {args.rounds}`: "
             f"the preset's U-Net, batch 128, mixed precision as the preset asks (bf16 on the CPU), 2 threads, "
             f"{args.steps} timed steps after 5 of warm-up, fresh processes alternating between the two versions.",
             "", "| version | steps/s (each round) | median |", "|---|---|---|"]
    for name, values in speeds.items():
        lines.append(f"| {name} | {', '.join(f'{v:.3f}' for v in values)} | {medians[name]:.3f} |")
    lines += ["", f"Change: {change:+.1%} steps/s. CPU: {record['cpu']}, {torch.get_num_threads()} threads available, "
              f"torch {torch.__version__}."]
    (RESULTS / "training_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
