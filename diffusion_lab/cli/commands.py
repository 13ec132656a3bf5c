"""What `python -m diffusion_lab train` and `... sample` do (chapters 04 and 05).

Every preset, denoiser or judge, trains through ``training.fit`` with the objective its preset names.

    python -m diffusion_lab train --preset mnist --publish           # remake data/checkpoints/mnist.*
    torchrun --nproc_per_node 2 -m diffusion_lab train --preset mnist  # the same on two processes
    python -m diffusion_lab sample mnist --num 16 --sampler ddim --steps 50 --seed 0 --out digits.npz
    python -m diffusion_lab sample mnist_flow --num 16 --out digits.npz   # the model's default sampler (euler)
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from diffusion_lab.cli.presets import Preset, build_objective, checkpoint_extra, get_preset, noise_schedule
from diffusion_lab.cli.training_data import frozen_text_encoder, start_from_checkpoint
from diffusion_lab.config import pick_device, seed_everything
from diffusion_lab.data.files import atomic_write, check_writable
from diffusion_lab.pretrained import checkpoints_dir, model_kinds, save_pretrained
from diffusion_lab.training import fit
from diffusion_lab.training.distributed import init_distributed


def describe_hardware(device: torch.device) -> str:
    """A one-line description of where a run happened, recorded beside each checkpoint."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    if device.type == "mps":
        return f"Apple GPU (MPS) on {platform.machine()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def build_model(preset: Preset) -> torch.nn.Module:
    """A fresh model of the preset's kind and config; with ``preset.text_encoder``, it reads prompts through that
    checkpoint's text encoder, copied in and frozen (``frozen_text_encoder``); with ``preset.init``, it starts
    from that checkpoint's weights (``start_from_checkpoint``)."""
    model_cls, _ = model_kinds()[preset.kind]
    if preset.init is not None:
        return start_from_checkpoint(model_cls(preset.model_config), preset)
    if preset.text_encoder is None:
        return model_cls(preset.model_config)
    return model_cls(preset.model_config, text_encoder=frozen_text_encoder(preset.text_encoder,
                                                                           preset.model_config.text))


def train_command(name: str, *, steps: int | None = None, out: str | Path | None = None, resume: bool = False,
                  publish: bool = False, checkpoints_root: str | Path | None = None, progress: bool = True) -> Path:
    """Train preset ``name``; save its (EMA) weights as a named checkpoint and return their path.

    Training checkpoints go to ``out`` (default runs/NAME) for ``--resume``. The final weights go to
    data/checkpoints with ``publish=True`` (or to ``checkpoints_root``), else into ``out``.
    """
    preset = get_preset(name)
    if steps is not None:
        preset = preset.with_steps(steps)
    out = Path(out) if out is not None else Path("runs") / name
    check_writable(out, f"--out {out}")  # before training, not at the first checkpoint
    if publish or checkpoints_root is not None:
        check_writable(checkpoints_dir(checkpoints_root), "--publish" if publish else "checkpoints_root")
    device = pick_device()
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = init_distributed(device)
    seed_everything(preset.train.seed)  # identical initial weights in every process
    model = build_model(preset).to(device)
    objective = build_objective(preset, model)
    start = time.perf_counter()
    state = fit(model, objective, preset.train, out_dir=out, resume=resume, device=device, progress=progress)
    seconds = time.perf_counter() - start
    launcher = f"torchrun --nproc_per_node {world} -m" if world > 1 else "python -m"
    command = f"{launcher} diffusion_lab train --preset {name} --steps {preset.train.steps}"
    if resume:  # the manifest says the weights continue an earlier run, and train_seconds counts only this one
        command += " --resume"
    path = out / f"{name}.safetensors"
    if rank == 0:
        finished = objective.finish(state.ema.model)  # e.g. the autoencoder's latent scale, saved with it
        root = checkpoints_root if checkpoints_root is not None else (None if publish else out)
        path = save_pretrained(name, state.ema.model, preset.model_config, kind=preset.kind,
                               schedule=noise_schedule(preset),
                               made_by={"command": command + (" --publish" if publish else ""),
                                        "train_seconds": round(seconds), "hardware": describe_hardware(device),
                                        "processes": world, "steps": preset.train.steps,
                                        "precision": state.precision, **finished},
                               root=root, extra=checkpoint_extra(preset), float16=preset.float16)
        print(f"saved {path} after {seconds / 60:.1f} min")
    if world > 1:
        dist.destroy_process_group()
    return path


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> uint8 array (N, H, W, C)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def sample_command(name: str, *, num: int, sampler: str | None = None, steps: int | None = None,
                   class_label: int | None = None, seed: int = 0, out: str | Path, eta: float = 0.0,
                   prompt: str | None = None, negative_prompt: str | None = None, guidance_scale: float | None = None,
                   classifier_scale: float = 0.0, autoguidance_scale: float | None = None,
                   checkpoints_root: str | Path | None = None, batch_size: int = 256) -> Path:
    """Generate ``num`` samples from checkpoint ``name`` and write them to ``out`` (.npz); see ``generate``.

    sampler, steps: None is the checkpoint's default: the sampler its JSON names (mnist: "dpmpp2m_sde", 25 steps,
    autoguided; ``pipelines.defaults``), else DDIM for a noise predictor and Euler for a flow, 50 steps. Prints
    the sampler used and its network evaluations per sample.

    autoguidance_scale: None leaves the checkpoint's own (mnist without a sampler: 1.5 at noise levels 1 to 5);
    1 turns it off.

    guidance_scale: None leaves the pipeline's own default (1, no guidance, for a single checkpoint; 3 for the
    ``unclip`` system's decoder).

    Image models write ``images``: uint8 (N, H, W, C), with ``labels`` (N,) (the class asked for, or -1)
    and, for text models, ``prompts``; the 2-D model writes ``points``: float32 (N, 2). ``out`` is checked
    before any work and written atomically (a unique temporary file, then a rename).
    """
    from diffusion_lab.pipelines import load_pipeline
    if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    out = check_out_file(out)
    pipeline = load_pipeline(name, root=checkpoints_root, device=pick_device())
    guidance = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
    auto = {} if autoguidance_scale is None else {"autoguidance_scale": autoguidance_scale}
    x = pipeline(num, sampler=sampler, steps=steps, eta=eta, seed=seed, class_label=class_label, prompt=prompt,
                 negative_prompt=negative_prompt, classifier_scale=classifier_scale, batch_size=batch_size,
                 **guidance, **auto)
    used, used_steps = pipeline.sampler_and_steps(sampler, steps, classifier_scale=classifier_scale)
    guided = " with classifier guidance" if classifier_scale > 0 else ""
    which = used if sampler is not None else f"{used} (the default for {name}{guided})"
    print(f"{which}, {used_steps} steps: {pipeline.cost(sampler, steps, classifier_scale=classifier_scale, **auto)}")
    if x.ndim == 2:  # points (N, D), not images
        arrays = {"points": x.float().cpu().numpy()}
    else:
        extra = {"prompts": np.array([prompt] * num)} if prompt is not None else {}
        arrays = {"images": to_uint8_images(x), "labels": np.full(num, -1 if class_label is None else class_label),
                  **extra}
    return atomic_write(out, lambda f: np.savez(f, **arrays), f"--out {out}")


def check_out_file(out: str | Path) -> Path:
    """``--out`` as a Path, after checking it names an .npz file that can be written (nothing is written)."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give a file in it, e.g. {out / 'samples.npz'}")
    if out.name == ".npz":
        raise ValueError(f"--out {out} has no file name before .npz: give one, e.g. {out.with_name('samples.npz')}")
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")
    check_writable(out.parent, f"--out {out}")
    return out
