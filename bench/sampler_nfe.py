"""Sample quality against the number of network evaluations (NFE), every sampler on one network (chapter 09).

Two parts, each one table of quality against NFE:

- ``mnist``: the shipped ``mnist`` eps-model sampled by DDPM, DDIM, Euler and Heun on the probability-flow ODE
  and DPM-Solver++(2M) at K = 1, 2, 4, ... 128 steps (``--steps``; Heun costs 2K - 1 evaluations, so its NFE are
  1, 3, 7, ... 127; points beyond ``--max-nfe`` are left out), and ``mnist_flow`` (flow matching, the same U-Net,
  data and budget) with its Euler and Heun when that checkpoint exists (skipped with a note when it does not).
  ``--num`` samples per point from one seed, so every sampler starts from the same x_T; judged by the course
  classifier: the share recognised with confidence >= 0.9, the classes present, and FID on its features against
  the 2,000 bundled test digits.
- ``mixture``: the 2-D ``GaussianMixture.unequal()``, where the exact score of the noised data is known at every
  step, so eps(x_t, t) = -sigma_t score_t(x_t) is a perfect eps-model: DDPM with all 1,000 steps against the
  PF-ODE samplers at few steps, the sliced Wasserstein distance to exact samples (mean over ``--seeds``); then the
  same for a small MLP trained here (``--mlp-steps``, 0 to skip), with its score error against the exact score.
  The bar (issue 15): one PF-ODE sampler reaches DDPM-1000's distance at <= 1/20 of its evaluations.

    .venv/bin/python bench/sampler_nfe.py                                # everything (about 45 min on 2 cores)
    .venv/bin/python bench/sampler_nfe.py --parts mixture                # the 2-D part alone (a few minutes)
    .venv/bin/python bench/sampler_nfe.py --num 20 --steps 1 4 --mixture-steps 2 10 --mixture-num 500 \
        --seeds 0 --mlp-steps 200 --results /tmp/nfe                     # a smoke test, results kept apart

Writes bench/results/sampler_nfe.json and .md (parts not run keep their last results); chapter 09 plots them.
Run it alone: the times per sample are wrong beside other jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffusion_lab.config import pick_device, seed_everything
from diffusion_lab.data import GaussianMixture, mnist_tensors
from diffusion_lab.judges.metrics import (
    class_counts,
    class_probabilities,
    fid,
    recognised_fraction,
    sliced_wasserstein,
)
from diffusion_lab.models import MLPConfig, MLPDenoiser
from diffusion_lab.notation import alpha_sigma
from diffusion_lab.pipelines import load_pipeline
from diffusion_lab.pipelines.samplers import get_sampler, plan_sampler
from diffusion_lab.pretrained import load_pretrained, read_manifest
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.scores import score_from_eps
from diffusion_lab.training import DiffusionObjective, TrainConfig, fit

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("mnist", "mixture")
EPS_SAMPLERS = ("ddpm", "ddim", "euler", "heun", "dpmpp2m")
FLOW_SAMPLERS = ("euler", "heun")
ODE_SAMPLERS = ("ddim", "euler", "heun", "dpmpp2m")  # deterministic: they solve the probability-flow ODE


# ----- MNIST ---------------------------------------------------------------------------------------------------


def judge_samples(clf: torch.nn.Module, reference: torch.Tensor, images: torch.Tensor) -> dict:
    probs = class_probabilities(clf, images)
    return {"recognised": recognised_fraction(probs, 0.9), "fid": fid(clf, images, reference),
            "classes_present": int((class_counts(probs) > 0).sum())}


def nfe_curve(name: str, samplers: tuple[str, ...], steps: list[int], max_nfe: int, num: int, seed: int,
              clf: torch.nn.Module, reference: torch.Tensor, device: torch.device) -> list[dict]:
    """One row per (sampler, K) of checkpoint ``name``: K, NFE, seconds per sample and the judge's scores."""
    pipeline = load_pipeline(name, device=device)
    rows = []
    for sampler in samplers:
        for k in steps:
            nfe = get_sampler(sampler).nfe(k)
            if nfe > max_nfe:
                continue
            start = time.perf_counter()
            images = pipeline(num, sampler=sampler, steps=k, seed=seed).cpu()
            seconds = (time.perf_counter() - start) / num
            rows.append({"sampler": sampler, "steps": k, "nfe": nfe, "ms_per_sample": 1000 * seconds,
                         **judge_samples(clf, reference, images)})
            print(name, rows[-1], flush=True)
    return rows


def mnist_part(args: argparse.Namespace, device: torch.device) -> dict:
    clf = load_pretrained("mnist_classifier", device=device).model
    reference, _ = mnist_tensors("test")  # (2000, 1, 28, 28)
    real = judge_samples(clf, reference, reference)  # FID 0 by construction: the recognised share is the line
    out = {"test_digits": {"recognised": real["recognised"], "classes_present": real["classes_present"]},
           "mnist": nfe_curve("mnist", EPS_SAMPLERS, args.steps, args.max_nfe, args.num, args.seed, clf, reference,
                              device)}
    if "mnist_flow" in read_manifest():
        out["mnist_flow"] = nfe_curve("mnist_flow", FLOW_SAMPLERS, args.steps, args.max_nfe, args.num, args.seed,
                                      clf, reference, device)
    else:
        out["mnist_flow_note"] = ("skipped: no mnist_flow checkpoint yet; make it with `python -m diffusion_lab "
                                  "train --preset mnist_flow --publish`, then rerun with --parts mnist")
        print(out["mnist_flow_note"], flush=True)
    return out


# ----- the 2-D mixture -----------------------------------------------------------------------------------------


def score_error(model: Callable, mixture: GaussianMixture, schedule: NoiseSchedule, ts: list[int], num: int,
                seed: int) -> dict[int, float]:
    """At each step t: E||s_theta - s||^2 / E||s||^2 on x_t drawn from the noised mixture (relative, 0 is exact)."""
    gen = torch.Generator().manual_seed(seed)
    score = score_from_eps(model, schedule)
    out = {}
    with torch.no_grad():
        for t in ts:
            alpha, sigma = (float(c) for c in alpha_sigma(schedule, t))
            noised = mixture.noised(alpha, sigma)
            xt = noised.sample(num, gen)
            exact = noised.score(xt)
            learned = score(xt, torch.full((num,), t, dtype=torch.long))
            out[t] = float((learned - exact).pow(2).sum(1).mean() / exact.pow(2).sum(1).mean())
    return out


def mixture_curve(model: Callable, schedule: NoiseSchedule, mixture: GaussianMixture, steps: list[int], num: int,
                  seeds: list[int], max_nfe: int) -> dict:
    """DDPM-1000 and the ODE samplers at ``steps``: sliced Wasserstein to exact samples, mean over seeds."""
    exact = [mixture.sample(num, torch.Generator().manual_seed(1000 + s)) for s in seeds]

    def distance(sampler: str, k: int) -> float:
        run = plan_sampler(sampler, schedule, k, clip_range=None)  # the mixture is unbounded: no clipping
        values = []
        for seed, target in zip(seeds, exact):
            gen = torch.Generator().manual_seed(seed)
            x_T = torch.randn(num, 2, generator=gen)
            with torch.no_grad():
                values.append(sliced_wasserstein(run(model, x_T, generator=gen), target))
        return sum(values) / len(values)

    floor = sum(sliced_wasserstein(mixture.sample(num, torch.Generator().manual_seed(2000 + s)), target)
                for s, target in zip(seeds, exact)) / len(seeds)
    out = {"floor": floor, "ddpm_1000": distance("ddpm", 1000), "rows": []}
    print("floor", floor, "ddpm-1000", out["ddpm_1000"], flush=True)
    for sampler in ("ddpm", *ODE_SAMPLERS):
        for k in steps:
            nfe = get_sampler(sampler).nfe(k)
            if nfe <= max_nfe:
                out["rows"].append({"sampler": sampler, "steps": k, "nfe": nfe, "sw": distance(sampler, k)})
                print(out["rows"][-1], flush=True)
    reached = [r for r in out["rows"] if r["sampler"] in ODE_SAMPLERS and r["sw"] <= out["ddpm_1000"]]
    best = min(reached, key=lambda r: (r["nfe"], r["sw"]), default=None)
    out["fewest_nfe_reaching_ddpm_1000"] = best
    return out


def mixture_part(args: argparse.Namespace) -> dict:
    mixture = GaussianMixture.unequal()
    schedule = NoiseSchedule.from_name("cosine", 1000)
    out = {"exact": mixture_curve(mixture.noise_predictor(schedule), schedule, mixture, args.mixture_steps,
                                  args.mixture_num, args.seeds, 1000)}
    if args.mlp_steps > 0:
        seed_everything(0)
        mlp = MLPDenoiser(MLPConfig(hidden_dim=128, num_layers=3))
        config = TrainConfig(steps=args.mlp_steps, batch_size=512, lr=2e-3, warmup_steps=100, ema_decay=0.995,
                             log_every=100, checkpoint_every=10**9)
        start = time.perf_counter()
        state = fit(mlp, DiffusionObjective(schedule, mixture.sample(50_000, torch.Generator().manual_seed(0))),
                    config, progress=False)
        model = state.ema.model.eval()
        out["mlp"] = {"train_steps": args.mlp_steps, "train_seconds": time.perf_counter() - start,
                      "score_error": score_error(model, mixture, schedule, [10, 100, 300, 600, 900], 4000, 7),
                      **mixture_curve(model, schedule, mixture, args.mixture_steps, args.mixture_num, args.seeds,
                                      1000)}
    return out


# ----- the report ----------------------------------------------------------------------------------------------


def _mnist_table(name: str, rows: list[dict]) -> list[str]:
    lines = [f"### {name}", "", "| sampler | steps K | NFE | recognised | FID | classes | ms / sample |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['recognised']:.1%} | {r['fid']:.1f} | "
              f"{r['classes_present']} | {r['ms_per_sample']:.0f} |" for r in rows]
    return lines + [""]


def _mixture_table(what: str, part: dict) -> list[str]:
    lines = [f"### {what}", "", f"DDPM with all 1,000 steps: sliced Wasserstein {part['ddpm_1000']:.4f}; two sets of "
             f"exact samples differ by {part['floor']:.4f} (the floor).", "",
             "| sampler | steps K | NFE | sliced Wasserstein |", "|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['sw']:.4f} |" for r in part["rows"]]
    best = part["fewest_nfe_reaching_ddpm_1000"]
    met = best is not None and best["nfe"] * 20 <= 1000
    lines += ["", "| bar (issue 15) | measured | met |", "|---|---|---|",
              "| a PF-ODE sampler reaches DDPM-1000's distance at <= 50 NFE (1/20) | " +
              (f"{best['sampler']}, {best['nfe']} NFE: {best['sw']:.4f} <= {part['ddpm_1000']:.4f}" if best else
               "none within the steps measured") + f" | {'yes' if met else 'no'} |", ""]
    return lines


def write_markdown(results: dict, folder: Path) -> None:
    lines = [f"# Sample quality against network evaluations ({results.get('date', '?')})", "",
             f"Measured by `{results.get('command', '')}` on {results.get('hardware', '?')}; the load average was "
             f"{results.get('load_at_start', float('nan')):.2f} when it started (run it alone: times beside other "
             "jobs are wrong). NFE: network evaluations per sample (Heun: 2K - 1 for K steps). Euler, Heun and "
             "DPM-Solver++(2M) step over Karras et al.'s noise levels (rho = 7, sigma_max = 80); DDPM and DDIM over "
             "chapter 05's evenly spaced steps.", ""]
    mn = results.get("mnist")
    if mn:
        lines += ["## MNIST", "", f"{results.get('num', '?')} samples per point, seed {results.get('seed', '?')} (the "
                  "same x_T for every sampler), judged by the course classifier; FID on its features against the "
                  f"2,000 test digits. The test digits themselves: {mn['test_digits']['recognised']:.1%} recognised.",
                  ""]
        lines += _mnist_table("mnist (eps-prediction)", mn["mnist"])
        lines += (_mnist_table("mnist_flow (flow matching)", mn["mnist_flow"]) if "mnist_flow" in mn
                  else [f"mnist_flow: {mn['mnist_flow_note']}", ""])
    mx = results.get("mixture")
    if mx:
        lines += ["## The 2-D mixture (GaussianMixture.unequal)", "",
                  f"{results.get('mixture_num', '?')} points per seed, seeds {results.get('seeds', '?')}, sliced "
                  "Wasserstein-2 to exact samples (256 directions), mean over the seeds; no clipping.", ""]
        lines += _mixture_table("The exact eps-model (eps = -sigma_t * exact score)", mx["exact"])
        if "mlp" in mx:
            m = mx["mlp"]
            errors = ", ".join(f"t = {t}: {e:.3f}" for t, e in m["score_error"].items())
            lines += _mixture_table(f"A small MLP trained here ({m['train_steps']} steps, {m['train_seconds']:.0f} s)", m)
            lines += [f"Its score error against the exact score, E||s_theta - s||^2 / E||s||^2: {errors}.", ""]
    (folder / "sampler_nfe.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128], help="K (MNIST)")
    parser.add_argument("--max-nfe", type=int, default=128, help="leave out points above this NFE (MNIST)")
    parser.add_argument("--num", type=int, default=500, help="samples per point (MNIST)")
    parser.add_argument("--seed", type=int, default=0, help="the one seed of the MNIST samples")
    parser.add_argument("--mixture-steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20, 50, 100])
    parser.add_argument("--mixture-num", type=int, default=10_000, help="points per seed (mixture)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (mixture)")
    parser.add_argument("--mlp-steps", type=int, default=3000, help="training steps of the 2-D MLP, 0 to skip")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results (smoke tests: /tmp)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    device = pick_device()
    path = args.results / "sampler_nfe.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "mnist" in args.parts:
        results["mnist"] = mnist_part(args, device)
        results.update(num=args.num, seed=args.seed)
    if "mixture" in args.parts:
        results["mixture"] = mixture_part(args)
        results.update(mixture_num=args.mixture_num, seeds=args.seeds)
    results.update(date=dt.date.today().isoformat(), load_at_start=load_at_start,
                   command="python bench/sampler_nfe.py " + " ".join(
                       f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                       for k, v in vars(args).items() if k != "results"),
                   hardware=f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
                            f"device {device}")
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.results)


if __name__ == "__main__":
    main()
