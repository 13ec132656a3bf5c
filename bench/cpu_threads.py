"""Threads for tiny models: chapter 04's 2-D training and sampling with 1 thread and with all of them.

    .venv/bin/python bench/cpu_threads.py

Times, for each thread count, 300 ``fit`` steps of the 2-D MLP on 512 points (the ``toy2d`` preset's batch)
and 100 DDPM steps over 2,000 points; best of three. Writes bench/results/cpu_threads.md. Run it alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from pathlib import Path

import torch

from diffusion_lab.cli.presets import get_preset
from diffusion_lab.config import cpu_threads
from diffusion_lab.data import make_toy
from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lab.sampling import DDPMScheduler, sample
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import DiffusionObjective, fit

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    schedule = NoiseSchedule.from_name("cosine", 1000)
    data = make_toy("swiss_roll", 50_000, seed=0)
    config = dataclasses.replace(get_preset("toy2d").train, steps=300, checkpoint_every=10**9)
    model = MLPDenoiser(MLPConfig())
    scheduler = DDPMScheduler(schedule, clip_sample_range=3.0)
    scheduler.set_timesteps(100)
    rows = []
    for n in sorted({1, os.cpu_count() or 1}):
        with cpu_threads(n):
            train = best_of(lambda: fit(model, DiffusionObjective(schedule, data), config, progress=False))
            draw = best_of(lambda: sample(model, scheduler, (2000, 2), generator=torch.Generator().manual_seed(0)))
        rows.append((n, train, draw))
        print(n, train, draw, flush=True)
    lines = [f"# Threads for the 2-D toy model ({dt.date.today().isoformat()})", "",
             f"Measured by `python bench/cpu_threads.py` on {platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, nothing else running; best of three.", "",
             "| threads | 300 training steps (512 points) | 100 DDPM steps (2,000 points) |", "|---|---|---|"]
    lines += [f"| {n} | {train:.2f} s | {draw:.2f} s |" for n, train, draw in rows]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_threads.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
