"""Named, checksummed checkpoints in data/checkpoints/ (chapters 04, 05 and later).

Each checkpoint is two files plus a line in ``manifest.json``:

    NAME.safetensors   the weights (safetensors: plain tensors, nothing is ever unpickled)
    NAME.json          what to build: the model kind and its config, the noise schedule, how it was made
    manifest.json      NAME -> SHA-256 of both files, the command that made them, time and hardware

``load_pretrained(NAME)`` checks both digests, rebuilds the model from its config and loads the
weights strictly, so a corrupted, truncated or mismatched file is a clear error, never a model that
silently computes the wrong thing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from diffusion_lab.config import pick_device
from diffusion_lab.data.files import chmod_to_umask
from diffusion_lab.data.paths import data_dir
from diffusion_lab.schedules import NoiseSchedule


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, or does not match the model it claims to be."""


def model_kinds() -> dict[str, tuple[type[nn.Module], type]]:
    """kind -> (model class, config dataclass). Imported here to keep this module light to import."""
    from diffusion_lab.judges.attribute_scorer import AttributeScorer, AttributeScorerConfig
    from diffusion_lab.judges.mnist_classifier import ClassifierConfig, MNISTClassifier
    from diffusion_lab.judges.scene_scorer import SceneScorer
    from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
    from diffusion_lab.models.clip import CLIP, CLIPConfig
    from diffusion_lab.models.embedding_unet import EmbeddingUNet, EmbeddingUNetConfig
    from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
    from diffusion_lab.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
    from diffusion_lab.models.prior import DiffusionPrior, PriorConfig
    from diffusion_lab.models.regression_prior import RegressionPrior, RegressionPriorConfig
    from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
    from diffusion_lab.models.unet import UNet, UNetConfig
    from diffusion_lab.models.upsampler import Upsampler, UpsamplerConfig

    return {"unet": (UNet, UNetConfig), "mlp": (MLPDenoiser, MLPConfig), "text_unet": (TextUNet, TextUNetConfig),
            "classifier": (MNISTClassifier, ClassifierConfig),
            "noisy_classifier": (NoisyClassifier, NoisyClassifierConfig),
            "attribute_scorer": (AttributeScorer, AttributeScorerConfig),
            "scene_scorer": (SceneScorer, AttributeScorerConfig),
            "autoencoder": (Autoencoder, AutoencoderConfig), "latent_unet": (UNet, UNetConfig),
            "flow_unet": (UNet, UNetConfig), "clip": (CLIP, CLIPConfig),
            "embedding_unet": (EmbeddingUNet, EmbeddingUNetConfig), "upsampler": (Upsampler, UpsamplerConfig),
            "prior": (DiffusionPrior, PriorConfig), "regression_prior": (RegressionPrior, RegressionPriorConfig),
            "latent_text_unet": (TextUNet, TextUNetConfig)}


def checkpoints_dir(root: str | Path | None = None) -> Path:
    """Where checkpoints live: ``root`` if given, else ``data/checkpoints`` of the course."""
    return Path(root) if root is not None else data_dir() / "checkpoints"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(root: str | Path | None = None) -> dict[str, dict]:
    path = checkpoints_dir(root) / "manifest.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); restore it with `git checkout data/`") from err


def _config_to_json(config: Any) -> dict:
    return dataclasses.asdict(config)


def _config_from_json(config_cls: type, values: dict) -> Any:
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - names
    if unknown:
        raise CheckpointError(f"the checkpoint's config has fields {sorted(unknown)} that {config_cls.__name__} "
                              f"does not know; the checkpoint is from a different version of the course")
    try:
        return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError) as err:  # a value its config class rejects
        raise CheckpointError(f"the checkpoint's config is not a valid {config_cls.__name__}: {err}") from err


def _remake(entry: dict) -> str:
    return (f"restore it with `git checkout data/checkpoints` or remake it with: "
            f"{entry.get('command', '(see the manifest)')}")


def _manifest_entry(manifest: dict, name: str, folder: Path) -> dict:
    """manifest[name], after checking it names both files and a SHA-256 for each."""
    entry = manifest[name]
    digests = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(digests, dict) or not digests or not {entry.get("weights"), entry.get("config")} <= set(digests):
        raise CheckpointError(f"{folder / 'manifest.json'}: the entry for {name!r} does not give the files and the "
                              f"SHA-256 of each ('weights', 'config', 'sha256'), so they cannot be verified; "
                              f"{_remake(entry if isinstance(entry, dict) else {})}")
    return entry


def _read_config(path: Path, entry: dict) -> dict:
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); {_remake(entry)}") from err
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} should hold a JSON object, got {type(info).__name__}; {_remake(entry)}")
    return info


@dataclass(frozen=True)
class Pretrained:
    """A loaded checkpoint: the model (in eval mode), its schedule (None for classifiers) and its metadata."""

    name: str
    model: nn.Module
    schedule: NoiseSchedule | None
    info: dict


def save_pretrained(name: str, model: nn.Module, config: Any, *, kind: str, schedule: NoiseSchedule | None,
                    made_by: dict, root: str | Path | None = None, extra: dict | None = None,
                    float16: bool = False) -> Path:
    """Write NAME.safetensors and NAME.json and record both digests in manifest.json; return the weights path.

    made_by: how the checkpoint was made, e.g. {"command": ..., "train_seconds": ..., "hardware": ...}.
    extra: more for NAME.json, e.g. a latent model's {"latent": {"autoencoder": ..., "latent_scale": ...}}.
    float16: store the parameters in half precision (half the bytes; buffers such as a latent scale stay as
    they are); ``load_pretrained`` loads them into the float32 model, so they compute in float32.
    """
    if kind not in model_kinds():
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(model_kinds())}")
    folder = checkpoints_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    weights, meta = folder / f"{name}.safetensors", folder / f"{name}.json"
    parameters = {k for k, _ in model.named_parameters()}
    tensors = {k: v.detach().to("cpu", torch.float16 if float16 and k in parameters and v.is_floating_point()
                                else v.dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights))
    chmod_to_umask(weights)  # safetensors writes 0600 whatever the umask; others sharing the folder must read it
    info = {"name": name, "kind": kind, "config": _config_to_json(config),
            "schedule": None if schedule is None else {"name": schedule.name, "T": schedule.T},
            **(extra or {}), "made_by": made_by}
    meta.write_text(json.dumps(info, indent=2) + "\n")
    manifest = read_manifest(root)
    manifest[name] = {"weights": weights.name, "config": meta.name,
                      "sha256": {weights.name: _sha256(weights), meta.name: _sha256(meta)},
                      "bytes": weights.stat().st_size, **made_by}
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    os.replace(tmp, folder / "manifest.json")
    return weights


def load_pretrained(name: str, *, root: str | Path | None = None,
                    device: torch.device | str | None = None) -> Pretrained:
    """Load the checkpoint called ``name`` after verifying its digests; the model is returned in eval mode."""
    folder = checkpoints_dir(root)
    manifest = read_manifest(root)
    if name not in manifest:
        raise CheckpointError(f"no checkpoint called {name!r} in {folder}; available: {sorted(manifest) or 'none'}")
    entry = _manifest_entry(manifest, name, folder)
    for filename, digest in entry["sha256"].items():
        path = folder / filename
        if not path.exists():
            raise CheckpointError(f"{path} is missing; restore it with `git checkout data/checkpoints` "
                                  f"or remake it with: {entry.get('command', '(see the manifest)')}")
        actual = _sha256(path)
        if actual != digest:
            raise CheckpointError(f"{path} is corrupted or was changed: its SHA-256 is {actual}, the manifest "
                                  f"says {digest}; restore it with `git checkout data/checkpoints` "
                                  f"or remake it with: {entry.get('command', '(see the manifest)')}")
    info = _read_config(folder / entry["config"], entry)
    kinds = model_kinds()
    if info.get("kind") not in kinds:
        raise CheckpointError(f"{name}: unknown model kind {info.get('kind')!r}")
    model_cls, config_cls = kinds[info["kind"]]
    model = model_cls(_config_from_json(config_cls, info["config"]))
    try:
        state = load_file(str(folder / entry["weights"]))
    except SafetensorError as err:
        raise CheckpointError(f"cannot read {folder / entry['weights']}: {err}") from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        details = [line.strip() for line in str(err).splitlines() if line.strip()]  # [header, first problem, ...]
        raise CheckpointError(f"{name}: the weights do not fit a {model_cls.__name__} built from {entry['config']}: "
                              f"{details[min(1, len(details) - 1)]}") from err
    schedule = None
    if info.get("schedule"):
        schedule = NoiseSchedule.from_name(info["schedule"]["name"], info["schedule"]["T"])
    if device is not None:
        device = pick_device(device)  # a device this machine lacks is a clear error, not torch's AssertionError
        model.to(device)
        schedule = schedule.to(device) if schedule is not None else None
    return Pretrained(name, model.eval(), schedule, info)
