"""The /imagine loop on the command line: imagine, upscale and vary (chapter 11).

    python -m diffusion_lab imagine "a red circle to the left of a blue square --seed 3" --out job.npz
    python -m diffusion_lab upscale job.npz 2 --out up.npz          # U2: images 1 x 128 x 128 x 3
    python -m diffusion_lab vary job.npz 3 --strong --out v.npz     # V3 (strong); --subtle is the default

Each command writes a job (.npz: ``images`` uint8 (n, H, W, 3) and ``job``, its settings as JSON; see
``pipelines.imagine.save_job``) that the next one reads. Pictures count 1 to 4, as Midjourney's buttons do.
``--out`` is checked before any work and written atomically; a bad prompt, job or number is one line.
"""

from __future__ import annotations

import argparse

from diffusion_lab.cli.commands import check_out_file


def _imagine(args: argparse.Namespace) -> int:
    from diffusion_lab.pipelines.imagine import imagine, save_job

    out = check_out_file(args.out)
    job = imagine(" ".join(args.prompt), root=args.checkpoint_dir)
    save_job(job, out)
    print(f"wrote {out}: {job.describe()}")
    return 0


def _upscale(args: argparse.Namespace) -> int:
    from diffusion_lab.pipelines.imagine import load_job, save_job, upscale

    out = check_out_file(args.out)
    job = upscale(load_job(args.job), args.index, root=args.checkpoint_dir)
    save_job(job, out)
    print(f"wrote {out}: picture {args.index} at {job.images.shape[1]}x{job.images.shape[2]}")
    return 0


def _vary(args: argparse.Namespace) -> int:
    from diffusion_lab.pipelines.imagine import load_job, save_job, vary

    out = check_out_file(args.out)
    job = vary(load_job(args.job), args.index, args.strength, seed=args.seed, root=args.checkpoint_dir)
    save_job(job, out)
    print(f"wrote {out}: {job.describe()}")
    return 0


def _out_and_root(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", required=True, help=f"output .npz: {what}")
    p.add_argument("--checkpoint-dir", help="read tiny_sd, its autoencoder and the upsampler from here instead of "
                                            "data/checkpoints")


def add_imagine_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``imagine``, ``upscale`` and ``vary`` to the course's command line (``main.build_parser``)."""
    p = sub.add_parser("imagine", help="a grid of four pictures from a prompt with Midjourney-style parameters")
    p.add_argument("prompt", nargs="+", help='what to draw, quoted with its parameters: "a red circle to the left '
                                             'of a blue square --no green --seed 3 --chaos 20 --steps 20 --cfg 4"')
    _out_and_root(p, "the job (array `images`, uint8, 4 x 64 x 64 x 3, and its settings)")
    p.set_defaults(func=_imagine)

    p = sub.add_parser("upscale", help="U: one picture of a job at twice the size (64 -> 128)")
    p.add_argument("job", help="a job .npz written by imagine or vary")
    p.add_argument("index", type=int, help="which picture, 1 to 4 (as U1-U4)")
    _out_and_root(p, "a job of one picture (array `images`, uint8, 1 x 128 x 128 x 3)")
    p.set_defaults(func=_upscale)

    p = sub.add_parser("vary", help="V: four variations of one picture of a job (SDEdit)")
    p.add_argument("job", help="a job .npz written by imagine or vary")
    p.add_argument("index", type=int, help="which picture, 1 to 4 (as V1-V4)")
    strength = p.add_mutually_exclusive_group()
    strength.add_argument("--subtle", dest="strength", action="store_const", const="subtle",
                          help="keep the picture's layout (the default)")
    strength.add_argument("--strong", dest="strength", action="store_const", const="strong",
                          help="change more of it")
    p.set_defaults(strength="subtle")
    p.add_argument("--seed", type=int, help="the first variation's seed (default: a fresh one, recorded in the job)")
    _out_and_root(p, "the job of four variations (array `images`, uint8, 4 x 64 x 64 x 3)")
    p.set_defaults(func=_vary)
