"""The course's command line (chapter 00 introduces it; chapters 04-05 train and sample with it).

    python -m diffusion_lab doctor                      is this machine ready?
    python -m diffusion_lab student --out DIR [--force] chapters with the solutions blanked
    python -m diffusion_lab train --preset NAME [--steps N] [--out DIR] [--resume] [--publish]
    python -m diffusion_lab sample NAME --num N [--sampler ddpm|ddim|euler|heun|dpmpp2m|sde|dpmpp2m_sde]
        [--steps K] [--class C] --seed S --out FILE.npz
        [--prompt TEXT] [--negative-prompt TEXT] [--guidance-scale W] [--classifier-scale S]
        [--autoguidance-scale W] [--batch-size B]
        (without --sampler or --steps: the model's own, from its checkpoint (mnist: dpmpp2m_sde, 25 steps,
        autoguided), else ddim for a noise predictor and euler for a flow such as mnist_flow, which takes euler or
        heun only)
    python -m diffusion_lab imagine "PROMPT --no W --seed S --chaos C --steps K --cfg W" --out JOB.npz
    python -m diffusion_lab upscale JOB.npz I --out UP.npz
    python -m diffusion_lab vary JOB.npz I [--subtle|--strong] [--seed S] --out V.npz
        (chapter 11's /imagine loop; pictures count 1-4; --checkpoint-dir reads the checkpoints elsewhere)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _doctor(args: argparse.Namespace) -> int:
    from diffusion_lab.cli.doctor import report, run_checks

    findings = run_checks()
    print(report(findings))
    return 0 if all(f.ok for f in findings) else 1


def _student(args: argparse.Namespace) -> int:
    from diffusion_lab.cli.student import SolutionMarkerError, make_student_copy

    notebooks = [Path(p) for p in args.notebooks] or sorted(Path("chapters").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("no chapters found: run this from the course folder or name the notebooks", file=sys.stderr)
        return 2
    existing = [Path(args.out) / nb.name for nb in notebooks if (Path(args.out) / nb.name).exists()]
    if existing and not args.force:  # a copy may hold the learner's answers: write nothing, say why
        print(f"error: {', '.join(map(str, existing))} already exist(s) and may hold your answers; nothing was "
              f"written (pass --force to replace them with fresh copies)", file=sys.stderr)
        return 2
    for nb in notebooks:
        try:
            dest, n = make_student_copy(nb, args.out, overwrite=args.force)
        except (FileNotFoundError, SolutionMarkerError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{dest}: {n} solution(s) blanked")
    return 0


def _deterministic(args: argparse.Namespace) -> None:
    """--deterministic: bit-for-bit repeatable GPU runs (``config.set_deterministic``); the CPU already is."""
    if args.deterministic:
        from diffusion_lab.config import set_deterministic

        set_deterministic(True)


def _train(args: argparse.Namespace) -> int:
    from diffusion_lab.cli.commands import train_command

    _deterministic(args)
    try:
        train_command(args.preset, steps=args.steps, out=args.out, resume=args.resume, publish=args.publish)
    except KeyboardInterrupt as err:  # Ctrl-C: one line saying what is kept, not a trace through torch
        if os.environ.get("RANK", "0") == "0":
            print(_interrupted(args, getattr(err, "step", None)), file=sys.stderr)
        return 130
    return 0


def _interrupted(args: argparse.Namespace, step: int | None) -> str:
    """What a learner needs after Ctrl-C: the step reached, the checkpoint kept and how to continue."""
    import torch

    out = Path(args.out) if args.out is not None else Path("runs") / args.preset
    stopped = "training stopped" + (f" at step {step}" if step is not None else "") + " (Ctrl-C)"
    ckpt = out / "checkpoint.pt"
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]
    except Exception:  # none yet, or unreadable: say nothing was kept
        return f"{stopped} before its first checkpoint: nothing was saved in {out}"
    again = f"python -m diffusion_lab train --preset {args.preset}" + (f" --steps {args.steps}" if args.steps else "")
    return (f"{stopped}; the last checkpoint, {ckpt}, holds step {saved}: continue with "
            f"`{again} --out {out} --resume`")


def _sample(args: argparse.Namespace) -> int:
    from diffusion_lab.cli.commands import sample_command

    _deterministic(args)
    path = sample_command(args.name, num=args.num, sampler=args.sampler, steps=args.steps,
                          class_label=args.class_label, seed=args.seed, out=args.out, eta=args.eta,
                          prompt=args.prompt, negative_prompt=args.negative_prompt,
                          guidance_scale=args.guidance_scale, classifier_scale=args.classifier_scale,
                          autoguidance_scale=args.autoguidance_scale, checkpoints_root=args.checkpoint_dir,
                          batch_size=args.batch_size)
    print(f"wrote {args.num} samples to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffusion_lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check that this machine is ready for the course")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("student", help="write copies of the chapters with the exercise solutions blanked")
    p.add_argument("notebooks", nargs="*", help="chapters to copy (default: chapters/NN_*.ipynb)")
    p.add_argument("--out", default="student", help="folder for the copies (default: ./student)")
    p.add_argument("--force", action="store_true", help="replace copies that already exist (loses their answers)")
    p.set_defaults(func=_student)

    from diffusion_lab.cli.presets import preset_names

    p = sub.add_parser("train", help="train a preset (also under torchrun for several processes)")
    p.add_argument("--preset", required=True, choices=preset_names())
    p.add_argument("--steps", type=int, help="override the preset's number of training steps")
    p.add_argument("--out", help="folder for resumable training checkpoints (default: runs/PRESET)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint if there is one")
    p.add_argument("--publish", action="store_true", help="write the final weights to data/checkpoints")
    p.add_argument("--deterministic", action="store_true",
                   help="on a GPU: no TF32, deterministic kernels, so a rerun gives the same weights (slower)")
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="generate samples from a named checkpoint into an .npz file")
    p.add_argument("name", help="checkpoint name, e.g. mnist")
    p.add_argument("--num", type=int, required=True)
    from diffusion_lab.pipelines.samplers import SAMPLERS

    p.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="; ".join(f"{name}: {s.about}" for name, s in SAMPLERS.items()) +
                        " (default: the model's own, named in its checkpoint, e.g. dpmpp2m_sde for mnist; else ddim "
                        "for a noise predictor, euler for a flow)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps K (heun evaluates the network 2K - 1 times; default: the model's own, 50 for "
                        "most, 25 with mnist's own sampler)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM's eta (0 = deterministic)")
    p.add_argument("--class", dest="class_label", type=int,
                   help="digit to generate: mnist_cond, or mnist with --classifier-scale")
    p.add_argument("--prompt", help="what to draw (text models), e.g. 'a small red circle in the top left'")
    p.add_argument("--negative-prompt", help="what to steer away from (text models, with --guidance-scale > 1)")
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance w: 1 = none, 0 = ignore the condition, 3 = stronger (default: the "
                        "model's own, 1 for the chapter models, 3 for unclip)")
    p.add_argument("--classifier-scale", type=float, default=0.0,
                   help="classifier guidance s for the unconditional MNIST model with --class (default 0)")
    p.add_argument("--autoguidance-scale", type=float, default=None,
                   help="autoguidance w by the weaker model the checkpoint names (mnist: mnist_cond without its class; "
                        "default: 1.5 at noise levels 1 to 5 without --sampler, else none); 1 turns it off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz (array `images`, uint8, N x H x W x C)")
    p.add_argument("--checkpoint-dir", help="read checkpoints from here instead of data/checkpoints")
    p.add_argument("--batch-size", type=int, default=256,
                   help="samples drawn at once (memory; the same seed and batch size give the same samples)")
    p.add_argument("--deterministic", action="store_true",
                   help="on a GPU: no TF32, deterministic kernels, so the same seed gives the same samples bit "
                        "for bit (slower); the CPU is always so")
    p.set_defaults(func=_sample)

    from diffusion_lab.cli.imagine_commands import add_imagine_commands

    add_imagine_commands(sub)  # chapter 11: imagine, upscale, vary
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffusion_lab.data.integrity import DataIntegrityError
    from diffusion_lab.training import TrainingDiverged

    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, DataIntegrityError, TrainingDiverged) as err:
        # bad input, damaged data or a diverged run: one clear line, not a stack trace
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
