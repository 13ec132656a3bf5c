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
  PF-ODE samplers at few steps, the sliced Wasserstein-1 distance to exact samples (mean over ``--seeds``) and the
  share of points in the small component (exactly 0.2); then the same for a small MLP trained here
  (``--mlp-steps``, 0 to skip), with its score error against the exact score. W_1 rather than W_2: on these
  far-apart modes W_2 between two sets of exact samples is mostly the chance share of points in the small mode,
  and falls only as n^(-1/4); W_1's noise falls as n^(-1/2). The bar (issue 15): one PF-ODE sampler reaches
  DDPM-1000's distance at <= 1/20 of its evaluations, "reaches" meaning a mean distance within two standard
  errors of DDPM-1000's, the errors those of the noise floor (exact against exact, measured over ``--floor-seeds``
  pairs; ``mixture_curve``).

    .venv/bin/python bench/sampler_nfe.py                                # everything (about 45 min on 2 cores)
    .venv/bin/python bench/sampler_nfe.py --parts mixture                # the 2-D part alone (a few minutes)
    .venv/bin/python bench/sampler_nfe.py --parts mnist --samplers dpmpp2m_sde   # one sampler of mnist's, added
    .venv/bin/python bench/sampler_nfe.py --num 20 --steps 1 4 --mixture-steps 2 10 --mixture-num 500 \
        --seeds 0 1 --floor-seeds 5 --mlp-steps 200 --results /tmp/nfe   # a smoke test, results kept apart

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
EPS_SAMPLERS = ("ddpm", "ddim", "euler", "heun", "dpmpp2m", "dpmpp2m_sde")
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


def mnist_part(args: argparse.Namespace, device: torch.device, last: dict | None = None) -> dict:
    """The MNIST curves; with ``args.samplers``, only those samplers of ``mnist`` are measured and replace their
    rows in ``last`` (the results already there), the others kept (the flow's too)."""
    clf = load_pretrained("mnist_classifier", device=device).model
    reference, _ = mnist_tensors("test")  # (2000, 1, 28, 28)
    real = judge_samples(clf, reference, reference)  # FID 0 by construction: the recognised share is the line
    samplers = tuple(args.samplers) if args.samplers else EPS_SAMPLERS
    rows = nfe_curve("mnist", samplers, args.steps, args.max_nfe, args.num, args.seed, clf, reference, device)
    if args.samplers and last:
        kept = [r for r in last["mnist"] if r["sampler"] not in samplers]
        order = {s: i for i, s in enumerate(EPS_SAMPLERS)}
        rows = sorted(kept + rows, key=lambda r: (order.get(r["sampler"], len(order)), r["steps"]))
        return {**last, "mnist": rows}
    out = {"test_digits": {"recognised": real["recognised"], "classes_present": real["classes_present"]},
           "mnist": rows}
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


def right_share(points: torch.Tensor) -> float:
    """The share of points in the right-hand component (x > 0); GaussianMixture.unequal() puts 0.2 there."""
    return float((points[:, 0] > 0).double().mean())


def mean_sd(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for one value)."""
    values = torch.tensor(values, dtype=torch.float64)
    return float(values.mean()), float(values.std()) if len(values) > 1 else 0.0


def mixture_curve(model: Callable, schedule: NoiseSchedule, mixture: GaussianMixture, steps: list[int], num: int,
                  seeds: list[int], floor_seeds: int, max_nfe: int) -> dict:
    """DDPM-1000 and the ODE samplers at ``steps``: sliced W_1 to exact samples, mean over seeds, and the right share.

    The noise floor: sliced W_1 between two sets of ``num`` exact samples, over ``floor_seeds`` pairs (its mean
    and standard deviation sd_floor). A sampler *reaches* DDPM-1000 when its mean over the S = len(seeds) seeds is
    at most DDPM-1000's plus ``tolerance`` = 2 sd_floor sqrt(2 / S): two standard errors of the difference of two
    S-seed means, each as noisy as exact-vs-exact distances; smaller differences can be sampling noise."""
    exact = [mixture.sample(num, torch.Generator().manual_seed(1000 + s)) for s in seeds]

    def measure(sampler: str, k: int) -> dict:
        run = plan_sampler(sampler, schedule, k, clip_range=None)  # the mixture is unbounded: no clipping
        distances, shares = [], []
        for seed, target in zip(seeds, exact):
            gen = torch.Generator().manual_seed(seed)
            x_T = torch.randn(num, 2, generator=gen)
            with torch.no_grad():
                x = run(model, x_T, generator=gen)
            distances.append(sliced_wasserstein(x, target, p=1))
            shares.append(right_share(x))
        sw1, sd = mean_sd(distances)
        return {"sampler": sampler, "steps": k, "nfe": get_sampler(sampler).nfe(k), "sw1": sw1, "sw1_sd": sd,
                "right_share": mean_sd(shares)[0]}

    floor = [sliced_wasserstein(mixture.sample(num, torch.Generator().manual_seed(2000 + j)),
                                mixture.sample(num, torch.Generator().manual_seed(3000 + j)), p=1)
             for j in range(floor_seeds)]
    floor_mean, floor_sd = mean_sd(floor)
    ddpm_1000 = measure("ddpm", 1000)
    out = {"floor": floor_mean, "floor_sd": floor_sd, "floor_seeds": floor_seeds, "ddpm_1000": ddpm_1000,
           "tolerance": 2 * floor_sd * (2 / len(seeds)) ** 0.5, "rows": []}
    print(f"floor {floor_mean:.4f} +- {floor_sd:.4f} ({floor_seeds} pairs); ddpm-1000 {ddpm_1000['sw1']:.4f}, "
          f"tolerance {out['tolerance']:.4f}", flush=True)
    for sampler in ("ddpm", *ODE_SAMPLERS):
        for k in steps:
            if get_sampler(sampler).nfe(k) <= max_nfe:
                out["rows"].append(measure(sampler, k))
                print(out["rows"][-1], flush=True)
    reached = [r for r in out["rows"]
               if r["sampler"] in ODE_SAMPLERS and r["sw1"] <= ddpm_1000["sw1"] + out["tolerance"]]
    out["fewest_nfe_reaching_ddpm_1000"] = min(reached, key=lambda r: (r["nfe"], r["sw1"]), default=None)
    return out


def mixture_part(args: argparse.Namespace) -> dict:
    mixture = GaussianMixture.unequal()
    schedule = NoiseSchedule.from_name("cosine", 1000)
    out = {"exact": mixture_curve(mixture.noise_predictor(schedule), schedule, mixture, args.mixture_steps,
                                  args.mixture_num, args.seeds, args.floor_seeds, 1000)}
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
                                      args.floor_seeds, 1000)}
    return out


# ----- the report ----------------------------------------------------------------------------------------------


def _mnist_table(name: str, rows: list[dict]) -> list[str]:
    lines = [f"### {name}", "", "| sampler | steps K | NFE | recognised | FID | classes | ms / sample |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['recognised']:.1%} | {r['fid']:.1f} | "
              f"{r['classes_present']} | {r['ms_per_sample']:.0f} |" for r in rows]
    return lines + [""]


def _mixture_table(what: str, part: dict) -> list[str]:
    ddpm, tol = part["ddpm_1000"], part["tolerance"]
    lines = [f"### {what}", "",
             f"DDPM with all 1,000 steps: sliced W_1 {ddpm['sw1']:.4f} (sd over seeds {ddpm['sw1_sd']:.4f}), right "
             f"share {ddpm['right_share']:.3f}. Two sets of exact samples differ by {part['floor']:.4f} "
             f"(sd {part['floor_sd']:.4f} over {part['floor_seeds']} pairs: the floor). Reaches DDPM-1000: a mean "
             f"distance <= {ddpm['sw1']:.4f} + {tol:.4f}, the tolerance being two standard errors of the difference "
             "of two means over as many seeds of distances as noisy as exact-vs-exact ones, 2 sd sqrt(2 / seeds) "
             "(smaller differences can be sampling noise).", "",
             "| sampler | steps K | NFE | sliced W_1 (mean) | sd over seeds | right share | reaches DDPM-1000 |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['sw1']:.4f} | {r['sw1_sd']:.4f} | "
              f"{r['right_share']:.3f} | {'yes' if r['sw1'] <= ddpm['sw1'] + tol else 'no'} |" for r in part["rows"]]
    best = part["fewest_nfe_reaching_ddpm_1000"]
    met = best is not None and best["nfe"] * 20 <= 1000
    lines += ["", "| bar (issue 15) | measured | met |", "|---|---|---|",
              "| a PF-ODE sampler reaches DDPM-1000's sliced W_1 (within the tolerance) at <= 50 NFE (1/20) | " +
              (f"{best['sampler']}, {best['nfe']} NFE: {best['sw1']:.4f} <= {ddpm['sw1']:.4f} + {tol:.4f}" if best
               else "none within the steps measured") + f" | {'yes' if met else 'no'} |", ""]
    return lines


def write_markdown(results: dict, folder: Path) -> None:
    lines = [f"# Sample quality against network evaluations ({results.get('date', '?')})", "",
             f"Measured by `{results.get('command', '')}` on {results.get('hardware', '?')}; the load average was "
             f"{results.get('load_at_start', float('nan')):.2f} when it started (run it alone: times beside other "
             "jobs are wrong). NFE: network evaluations per sample (Heun: 2K - 1 for K steps). Euler, Heun, "
             "DPM-Solver++(2M) and its SDE twin step over Karras et al.'s noise levels (rho = 7, sigma_max = 80); "
             "DDPM and DDIM over chapter 05's evenly spaced steps.", ""]
    for added in results.get("added", []):
        lines += [f"Rows added on {added['date']} by `{added['command']}` on {added['hardware']} (load average "
                  f"{added['load_at_start']:.2f} at its start).", ""]
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
                  "Wasserstein-1 to exact samples (256 directions), mean over the seeds; no clipping. W_1, not W_2: "
                  "moving a share delta of the points between the modes, 4 apart, costs 4 delta in W_1 but "
                  "4 sqrt(delta) in W_2, so W_2 between two exact sets is dominated by how many points land in the "
                  "small mode and its noise falls only as n^(-1/4); W_1's falls as n^(-1/2). The right share "
                  "(points with x > 0) is exactly 0.2 for the mixture.", ""]
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
    parser.add_argument("--samplers", nargs="+", choices=EPS_SAMPLERS,
                        help="measure only these of mnist's samplers, keeping the other rows (MNIST)")
    parser.add_argument("--mixture-steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20, 50, 100])
    parser.add_argument("--mixture-num", type=int, default=10_000, help="points per seed (mixture)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (mixture)")
    parser.add_argument("--floor-seeds", type=int, default=20,
                        help="pairs of exact sample sets that measure the noise floor's spread (mixture)")
    parser.add_argument("--mlp-steps", type=int, default=3000, help="training steps of the 2-D MLP, 0 to skip")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results (smoke tests: /tmp)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    device = pick_device()
    path = args.results / "sampler_nfe.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "mnist" in args.parts:
        if args.samplers and (results.get("num"), results.get("seed")) != (args.num, args.seed):
            parser.error("--samplers adds to results of the same --num and --seed; run without it to start afresh")
        results["mnist"] = mnist_part(args, device, results.get("mnist"))
        results.update(num=args.num, seed=args.seed)
    if "mixture" in args.parts:
        results["mixture"] = mixture_part(args)
        results.update(mixture_num=args.mixture_num, seeds=args.seeds, floor_seeds=args.floor_seeds)
    command = "python bench/sampler_nfe.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k != "results" and v is not None)
    hardware = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}"
    if args.samplers:  # rows added to an earlier run: say so beside its command, which stays
        results["added"] = [*results.get("added", []), {"command": command, "date": dt.date.today().isoformat(),
                                                        "load_at_start": load_at_start, "hardware": hardware}]
    else:
        results.update(date=dt.date.today().isoformat(), load_at_start=load_at_start, command=command,
                       hardware=hardware)
    args.results.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.results)


if __name__ == "__main__":
    main()
