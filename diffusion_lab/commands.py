"""What `python -m diffusion_lab train` and `... sample` do (chapters 04 and 05).

    python -m diffusion_lab train --preset mnist --publish           # remake data/checkpoints/mnist.*
    torchrun --nproc_per_node 2 -m diffusion_lab train --preset mnist  # the same on two processes
    python -m diffusion_lab sample mnist --num 16 --sampler ddim --steps 50 --seed 0 --out digits.npz
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from diffusion_lab.config import pick_device, seed_everything
from diffusion_lab.presets import Preset, get_preset, load_training_data
from diffusion_lab.pretrained import load_pretrained, model_kinds, save_pretrained
from diffusion_lab.schedules import NoiseSchedule


def describe_hardware(device: torch.device) -> str:
    """A one-line description of where a run happened, recorded beside each checkpoint."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def build_model(preset: Preset) -> torch.nn.Module:
    model_cls, _ = model_kinds()[preset.kind]
    return model_cls(preset.model_config)


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"  # Gloo on CPUs, NCCL on GPUs
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


JUDGES = ("classifier", "noisy_classifier", "attribute_scorer")  # classifiers, trained by their own loops


def _train_judge(preset: Preset, model: torch.nn.Module, data: torch.Tensor, labels: torch.Tensor,
                 progress: bool) -> NoiseSchedule | None:
    """Train one of the classifiers; return the noise schedule it was trained for (None if noise-free)."""
    from diffusion_lab.models.attribute_scorer import train_attribute_scorer
    from diffusion_lab.models.classifier import train_classifier
    from diffusion_lab.models.noisy_classifier import train_noisy_classifier

    c = preset.train
    settings = {"steps": c.steps, "batch_size": c.batch_size, "lr": c.lr, "seed": c.seed, "progress": progress}
    if preset.kind == "noisy_classifier":
        schedule = NoiseSchedule.from_name(preset.schedule, preset.T)
        train_noisy_classifier(model, data, labels, schedule.to(data.device), **settings)
        return schedule
    trainer = train_classifier if preset.kind == "classifier" else train_attribute_scorer
    trainer(model, data, labels, **settings)
    return None


def _null_condition(preset: Preset, model: torch.nn.Module) -> int | torch.Tensor | None:
    """What condition dropout swaps in: the null class, the empty prompt's token ids (L,), or None."""
    if preset.kind == "text_unet":
        return model.tokenizer.empty(1)[0]
    return getattr(preset.model_config, "num_classes", None)


def train_command(name: str, *, steps: int | None = None, out: str | Path | None = None, resume: bool = False,
                  publish: bool = False, checkpoints_root: str | Path | None = None, progress: bool = True) -> Path:
    """Train preset ``name``; save its (EMA) weights as a named checkpoint and return their path.

    Training checkpoints go to ``out`` (default runs/NAME) for ``--resume``. The final weights go to
    data/checkpoints with ``publish=True`` (or to ``checkpoints_root``), else into ``out``.
    """
    from diffusion_lab.training import train

    preset = get_preset(name)
    if steps is not None:
        preset = preset.with_steps(steps)
    out = Path(out) if out is not None else Path("runs") / name
    rank, world = _init_distributed()
    device = pick_device()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    seed_everything(preset.train.seed)  # identical initial weights in every process
    model = build_model(preset).to(device)
    data, labels = load_training_data(preset)
    schedule = None
    start = time.perf_counter()
    if preset.kind in JUDGES:
        if world > 1:
            raise ValueError(f"{name} trains in minutes: run it in one process, without torchrun")
        schedule = _train_judge(preset, model, data.to(device), labels.to(device), progress)
        weights = model
    else:
        schedule = NoiseSchedule.from_name(preset.schedule, preset.T)
        null = _null_condition(preset, model)
        state = train(model, schedule, data, preset.train, labels=labels, null_label=null, out_dir=out,
                      resume=resume, device=device, progress=progress)
        weights = state.ema.model
    seconds = time.perf_counter() - start
    launcher = f"torchrun --nproc_per_node {world} -m" if world > 1 else "python -m"
    command = f"{launcher} diffusion_lab train --preset {name} --steps {preset.train.steps}"
    if resume:  # the manifest says the weights continue an earlier run, and train_seconds counts only this one
        command += " --resume"
    path = out / f"{name}.safetensors"
    if rank == 0:
        root = checkpoints_root if checkpoints_root is not None else (None if publish else out)
        path = save_pretrained(name, weights, preset.model_config, kind=preset.kind, schedule=schedule,
                               made_by={"command": command + (" --publish" if publish else ""),
                                        "train_seconds": round(seconds), "hardware": describe_hardware(device),
                                        "processes": world, "steps": preset.train.steps},
                               root=root)
        print(f"saved {path} after {seconds / 60:.1f} min")
    if world > 1:
        dist.destroy_process_group()
    return path


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> uint8 array (N, H, W, C)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def sample_command(name: str, *, num: int, sampler: str = "ddim", steps: int = 50, class_label: int | None = None,
                   seed: int = 0, out: str | Path, eta: float = 0.0, prompt: str | None = None,
                   negative_prompt: str | None = None, guidance_scale: float = 1.0, classifier_scale: float = 0.0,
                   checkpoints_root: str | Path | None = None) -> Path:
    """Generate ``num`` samples from checkpoint ``name`` and write them to ``out`` (.npz); see ``generate``.

    Image models write ``images``: uint8 (N, H, W, C), with ``labels`` (N,) (the class asked for, or -1)
    and, for text models, ``prompts``; the 2-D model writes ``points``: float32 (N, 2).
    """
    from diffusion_lab.generate import generate

    if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")
    pre = load_pretrained(name, root=checkpoints_root, device=pick_device())
    x = generate(pre, num, sampler=sampler, steps=steps, eta=eta, seed=seed, class_label=class_label,
                 prompt=prompt, negative_prompt=negative_prompt, guidance_scale=guidance_scale,
                 classifier_scale=classifier_scale, checkpoints_root=checkpoints_root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    if pre.info["kind"] == "mlp":
        np.savez(tmp, points=x.float().cpu().numpy())
    else:
        extra = {"prompts": np.array([prompt] * num)} if prompt is not None else {}
        np.savez(tmp, images=to_uint8_images(x), labels=np.full(num, -1 if class_label is None else class_label),
                 **extra)
    os.replace(tmp, out)
    return out
