"""The mini DALL-E 2 (``unclip``, chapter 10), measured: the prior ablation, prior guidance, and time per stage.

    .venv/bin/python bench/unclip_quality.py                 # quality: the ablation and the prior-guidance sweep
    .venv/bin/python bench/unclip_quality.py --timing-only   # one 64x64 picture end to end, per stage (run alone)

Quality. One picture per one-shape prompt (the 220 of the training pairs; the 30 of the held-out colour-shape
pairs separately), each drawn at 64x64 by the whole cascade with the decoder fed:
  (a) "text":        the caption's CLIP text embedding itself, no prior;
  (b) "regression":  the regression prior's one guess;
  (c) "diffusion":   a sample of the diffusion prior;
  (d) "true":        the CLIP image embedding of a real picture of the caption (the upper bound).
Fidelity: the share the shipped ``shapes_scorer`` reads back with all four attributes right (the pictures shrunk
to its 32x32); CLIP score: cosine of the picture's and the caption's CLIP embeddings; diversity: the mean RMS pixel
distance between 8 pictures of one prompt (10 prompts). Binding: two-shape prompts read back by the shipped
``scenes_scorer`` (both objects and the relation right). The bar (issue 16): (c) all four right >= 90 % on the
training pairs, and (c) more diverse than (b) at no worse fidelity. The prior's own guidance is swept with (c).
The decoder's guidance scale is --guidance (3 by default), the decoder samples DDIM --steps 50, the prior DDIM 25.

Timing: one picture, every stage timed (median of 5 after a warm-up), at the machine's threads; the numbers
mean something only on a quiet machine.

Writes bench/results/unclip_quality.md and .json (timing: unclip_timing.md / .json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.data.shapes import combinations, render
from diffusion_lab.judges.binding import binding_accuracy
from diffusion_lab.judges.metrics import attribute_accuracy, diversity
from diffusion_lab.pipelines.unclip import UnCLIPPipeline
from diffusion_lab.pretrained import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("text", "regression", "diffusion", "true")


def binding(pipe: UnCLIPPipeline, args: argparse.Namespace) -> dict:
    """Two-shape prompts: the share of pictures the ``scenes_scorer`` reads with both objects and the relation
    right, for each way of feeding the decoder; "true" embeds the generator's own picture of the caption."""
    scorer = load_pretrained("scenes_scorer", device="cpu").model
    record = {}
    for split, n in (("train", args.two_shape_prompts), ("held_out", args.two_shape_prompts // 2)):
        scenes = make_scenes(n, size=32, seed=7, split=split, two_shape_fraction=1.0)
        for variant in VARIANTS:
            generator = torch.Generator().manual_seed(args.seed)
            image_emb = pipe.encode_image(scenes.images) if variant == "true" else pipe.prior_embeddings(
                pipe.encode_prompt(scenes.captions), prior=variant, generator=generator)
            pictures = pipe.generate_from_embeddings(image_emb, steps=args.steps, guidance_scale=args.guidance,
                                                     generator=generator)
            record[f"{split}/{variant}"] = {**binding_accuracy(scorer, pictures, scenes.captions), "n": n}
            print("binding", split, variant, round(record[f"{split}/{variant}"]["all"], 3), flush=True)
    return record


def real_pictures(attributes: list, size: int = 32) -> torch.Tensor:
    """One canonical picture per attribute set, (N, 3, size, size) in [-1, 1]: what (d) embeds."""
    pictures = torch.stack([torch.from_numpy(render(a, size)) for a in attributes])  # (N, size, size, 3) uint8
    return pictures.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def draw(pipe: UnCLIPPipeline, captions: list[str], attributes: list, variant: str, *, seed: int, guidance: float,
         prior_guidance: float, steps: int) -> torch.Tensor:
    """64x64 pictures (N, 3, 64, 64) of ``captions``, the decoder fed embeddings of kind ``variant``."""
    generator = torch.Generator().manual_seed(seed)
    if variant == "true":
        image_emb = pipe.encode_image(real_pictures(attributes))
    else:
        image_emb = pipe.prior_embeddings(pipe.encode_prompt(captions), prior=variant, guidance_scale=prior_guidance,
                                          generator=generator)
    return pipe.generate_from_embeddings(image_emb, steps=steps, guidance_scale=guidance, generator=generator)


def score(pipe: UnCLIPPipeline, scorer: torch.nn.Module, pictures: torch.Tensor, captions: list[str],
          attributes: list) -> dict[str, float]:
    small = F.interpolate(pictures, size=(32, 32), mode="area")  # (N, 3, 32, 32): what the scorer and CLIP read
    wanted = torch.tensor([a.indices() for a in attributes])
    return {**attribute_accuracy(scorer, small, wanted),
            "clip_score": float((pipe.encode_image(pictures) * pipe.encode_prompt(captions)).sum(dim=1).mean())}


def quality(pipe: UnCLIPPipeline, args: argparse.Namespace) -> dict:
    scorer = load_pretrained("shapes_scorer", device="cpu").model
    record: dict = {}
    settings = {"guidance": args.guidance, "steps": args.steps}
    for split in ("train", "held_out"):
        attributes = combinations(split)
        captions = [a.caption() for a in attributes]
        runs = [(v, 1.0) for v in VARIANTS] + [("diffusion", w) for w in args.prior_scales if w != 1.0]
        for variant, w in runs:
            start = time.perf_counter()
            pictures = draw(pipe, captions, attributes, variant, seed=args.seed, prior_guidance=w, **settings)
            row = score(pipe, scorer, pictures, captions, attributes)
            if split == "train" and w == 1.0:  # diversity: 8 pictures of each of 10 prompts
                few = attributes[::len(attributes) // 10][:10]
                groups = [draw(pipe, [a.caption()] * 8, [a] * 8, variant, seed=args.seed + 1 + i, prior_guidance=w,
                               **settings) for i, a in enumerate(few)]
                row["diversity"] = sum(diversity(g) for g in groups) / len(groups)
            row["seconds"] = time.perf_counter() - start
            record[f"{split}/{variant}/w={w:g}"] = row
            print(split, variant, w, {k: round(v, 3) for k, v in row.items()}, flush=True)
    return record


def timing(pipe: UnCLIPPipeline, steps: int, guidance: float, repeats: int = 5) -> dict:
    """Seconds per stage for ONE 64x64 picture: median of ``repeats`` after one warm-up."""
    prompt = ["a small red circle in the top left"]
    stages = {
        "text encoder": lambda g: pipe.encode_prompt(prompt),
        "prior (DDIM 25)": lambda g: pipe.prior_embeddings(pipe.encode_prompt(prompt), generator=g),
        f"decoder (DDIM {steps}, guided)": lambda g: pipe.decode(pipe.encode_prompt(prompt), steps=steps,
                                                                   guidance_scale=guidance, generator=g),
        "upsampler (DDIM 20)": lambda g: pipe.upscale(torch.zeros(1, 3, 32, 32), generator=g),
        "end to end": lambda g: pipe(1, prompt=prompt[0], steps=steps, guidance_scale=guidance, generator=g),
    }
    out = {}
    with torch.inference_mode():
        for name, run in stages.items():
            run(torch.Generator().manual_seed(0))  # warm-up
            times = []
            for i in range(repeats):
                start = time.perf_counter()
                run(torch.Generator().manual_seed(i))
                times.append(time.perf_counter() - start)
            out[name] = statistics.median(times)
            print(f"{name}: {out[name]:.3f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guidance", type=float, default=3.0, help="the decoder's classifier-free guidance scale")
    parser.add_argument("--prior-scales", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--steps", type=int, default=50, help="the decoder's DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--two-shape-prompts", type=int, default=200, help="two-shape prompts of training pairs "
                        "(half as many of held-out pairs) for the binding measurement")
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the results file")
    parser.add_argument("--checkpoints", default=None, help="where the unclip stages are (default data/checkpoints)")
    args = parser.parse_args()
    pipe = UnCLIPPipeline.from_pretrained("unclip", root=args.checkpoints, device="cpu")
    head = {"date": dt.date.today().isoformat(), "torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(), "note": args.note, **{k: v for k, v in vars(args).items()}}
    RESULTS.mkdir(exist_ok=True)
    if args.timing_only:
        record = {**head, "seconds": timing(pipe, args.steps, args.guidance)}
        lines = [f"# unclip: time per stage for one 64x64 picture ({head['date']})", "",
                 f"`.venv/bin/python bench/unclip_quality.py --timing-only`, torch {torch.__version__}, "
                 f"{head['threads']} threads, {platform.machine()} CPU. {args.note}", "",
                 "| stage | seconds (median of 5) |", "|---|---|",
                 *[f"| {k} | {v:.3f} |" for k, v in record["seconds"].items()], "",
                 f"Bar (issue 16): one 64x64 picture end to end well under 5 s on 2 cores: "
                 f"**{'met' if record['seconds']['end to end'] < 2.5 else 'not met'}** (read 'well under' as < 2.5 s)."]
        (RESULTS / "unclip_timing.json").write_text(json.dumps(record, indent=2) + "\n")
        (RESULTS / "unclip_timing.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    record = {**head, "results": quality(pipe, args), "binding": binding(pipe, args)}
    r = record["results"]
    table = ["| prompts | decoder fed | prior w | all four right | shape | colour | size | position | CLIP score | "
             "diversity (RMS pixels) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in r.items():
        split, variant, w = key.split("/")
        cells = ["training pairs" if split == "train" else "held-out pairs", variant, w[2:],
                 *(f"{row[a]:.1%}" for a in ("all", "shape", "colour", "size", "position")),
                 f"{row['clip_score']:.3f}", f"{row['diversity']:.3f}" if "diversity" in row else "-"]
        table.append("| " + " | ".join(cells) + " |")
    diffusion, regression = r["train/diffusion/w=1"], r["train/regression/w=1"]
    more_diverse = diffusion["diversity"] > regression["diversity"] and diffusion["all"] >= regression["all"]
    lines = [f"# unclip: the prior ablation and prior guidance ({head['date']})", "",
             f"`.venv/bin/python bench/unclip_quality.py`, torch {torch.__version__}, {head['threads']} threads. "
             f"Decoder: DDIM {args.steps} steps, guidance {args.guidance:g}; prior: DDIM 25; upsampler: DDIM 20. "
             f"One picture per prompt (seed {args.seed}); diversity over 8 pictures of each of 10 prompts. {args.note}",
             "", *table, "",
             f"Bar (issue 16): diffusion prior, training pairs, all four right >= 90 %: "
             f"**{'met' if diffusion['all'] >= 0.9 else 'missed'}** ({diffusion['all']:.1%}). "
             f"Diffusion prior more diverse than the regression prior at no worse fidelity: "
             f"**{'yes' if more_diverse else 'no'}** ({diffusion['diversity']:.3f} vs {regression['diversity']:.3f}; "
             f"{diffusion['all']:.1%} vs {regression['all']:.1%})."]
    lines += ["", "Binding on two-shape prompts (``scenes_scorer``: both objects' shape and colour and the relation "
              "right), one picture per prompt:", "", "| prompts | decoder fed | all right | n |", "|---|---|---|---|",
              *[f"| {'training pairs' if k.startswith('train') else 'held-out pairs'} | {k.split('/')[1]} | "
                f"{v['all']:.1%} | {v['n']} |" for k, v in record["binding"].items()]]
    (RESULTS / "unclip_quality.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "unclip_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
