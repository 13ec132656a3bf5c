"""Tests for diffusion_lab.pretrained: named, checksummed safetensors checkpoints (always under tmp_path)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from pathlib import Path

import pytest
import torch

from diffusion_lab.cli.main import build_parser
from diffusion_lab.cli.presets import get_preset, preset_names
from diffusion_lab.judges.mnist_classifier import ClassifierConfig, MNISTClassifier
from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pretrained import (
    CheckpointError,
    checkpoints_dir,
    load_pretrained,
    model_kinds,
    read_manifest,
    save_pretrained,
)
from diffusion_lab.schedules import NoiseSchedule

MADE_BY = {"command": "python -m diffusion_lab train --preset tiny --steps 4", "train_seconds": 1,
           "hardware": "a test", "processes": 1, "steps": 4}


def save_tiny_unet(root: Path, name: str = "tiny") -> UNet:
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    with torch.no_grad():  # conv_out starts at zero: make the output depend on every weight
        model.conv_out.weight.normal_(0, 0.1)
    save_pretrained(name, model, model.config, kind="unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by=MADE_BY, root=root)
    return model.eval()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_unet_round_trip(tmp_path):
    model = save_tiny_unet(tmp_path)
    pre = load_pretrained("tiny", root=tmp_path)
    assert pre.name == "tiny" and isinstance(pre.model, UNet) and not pre.model.training
    assert pre.model.config == UNetConfig.tiny()
    assert pre.schedule is not None and pre.schedule.name == "cosine" and pre.schedule.T == 1000
    assert torch.equal(pre.schedule.alpha_bars, NoiseSchedule.from_name("cosine", 1000).alpha_bars)
    x, t = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 900])
    with torch.no_grad():
        assert torch.equal(pre.model(x, t), model(x, t))
    assert pre.info["kind"] == "unet" and pre.info["made_by"] == MADE_BY


def test_conditional_unet_config_survives_json(tmp_path):
    torch.manual_seed(0)
    config = UNetConfig(base_channels=8, channel_mults=(1, 2), num_groups=4, num_heads=2, num_classes=3,
                        attention_resolutions=(14,))
    model = UNet(config)
    save_pretrained("cond", model, config, kind="unet", schedule=NoiseSchedule.from_name("linear", 50),
                    made_by=MADE_BY, root=tmp_path)
    pre = load_pretrained("cond", root=tmp_path)
    assert pre.model.config == config  # lists from JSON come back as tuples
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([0, 49]), torch.tensor([2, 3])
    with torch.no_grad():
        assert torch.equal(pre.model(x, t, y), model.eval()(x, t, y))


def test_classifier_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MNISTClassifier(ClassifierConfig())
    model.train()(torch.randn(8, 1, 28, 28))  # give BatchNorm non-default running statistics
    model.eval()
    save_pretrained("judge", model, model.config, kind="classifier", schedule=None, made_by=MADE_BY,
                    root=tmp_path)
    pre = load_pretrained("judge", root=tmp_path)
    assert isinstance(pre.model, MNISTClassifier) and pre.schedule is None and not pre.model.training
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(pre.model(x), model(x))
        assert torch.equal(pre.model.features(x), model.features(x))


def test_mlp_round_trip(tmp_path):
    torch.manual_seed(0)
    config = MLPConfig(hidden_dim=32, num_layers=2)
    model = MLPDenoiser(config).eval()
    save_pretrained("toy", model, config, kind="mlp", schedule=NoiseSchedule.from_name("linear", 100),
                    made_by=MADE_BY, root=tmp_path)
    pre = load_pretrained("toy", root=tmp_path)
    assert isinstance(pre.model, MLPDenoiser) and pre.model.config == config
    x, t = torch.randn(5, 2), torch.arange(5) * 20
    with torch.no_grad():
        assert torch.equal(pre.model(x, t), model(x, t))


def test_manifest_records_digests_and_made_by(tmp_path):
    save_tiny_unet(tmp_path)
    save_tiny_unet(tmp_path, name="another")
    manifest = read_manifest(tmp_path)
    assert list(manifest) == ["another", "tiny"]
    entry = manifest["tiny"]
    weights, config = tmp_path / "tiny.safetensors", tmp_path / "tiny.json"
    assert entry["weights"] == weights.name and entry["config"] == config.name
    assert entry["sha256"] == {weights.name: sha256(weights), config.name: sha256(config)}
    assert entry["bytes"] == weights.stat().st_size
    assert {k: entry[k] for k in MADE_BY} == MADE_BY
    info = json.loads(config.read_text())
    assert info["kind"] == "unet" and info["schedule"] == {"name": "cosine", "T": 1000}
    assert info["made_by"] == MADE_BY
    assert not list(tmp_path.glob("*.tmp"))


def test_weights_are_safetensors_and_never_unpickled(tmp_path, monkeypatch):
    save_tiny_unet(tmp_path)
    data = (tmp_path / "tiny.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])  # safetensors: u64 header length, then a JSON header
    header = json.loads(data[8:8 + header_len])
    assert "conv_in.weight" in header and header["conv_in.weight"]["dtype"] == "F32"
    assert not data.startswith(b"PK") and b"\x80\x02" not in data[:2]  # not a torch zip, not a pickle

    def no_pickles(*args, **kwargs):
        raise AssertionError("load_pretrained called torch.load")

    monkeypatch.setattr(torch, "load", no_pickles)
    load_pretrained("tiny", root=tmp_path)


@pytest.mark.parametrize("filename", ["tiny.safetensors", "tiny.json"])
def test_flipped_byte_is_caught(tmp_path, filename):
    save_tiny_unet(tmp_path)
    path = tmp_path / filename
    flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(CheckpointError) as info:
        load_pretrained("tiny", root=tmp_path)
    message = str(info.value)
    assert str(path) in message and "SHA-256" in message
    assert "restore it with `git checkout" in message and MADE_BY["command"] in message


@pytest.mark.parametrize("filename", ["tiny.safetensors", "tiny.json"])
def test_missing_file(tmp_path, filename):
    save_tiny_unet(tmp_path)
    (tmp_path / filename).unlink()
    with pytest.raises(CheckpointError, match="is missing") as info:
        load_pretrained("tiny", root=tmp_path)
    assert str(tmp_path / filename) in str(info.value) and MADE_BY["command"] in str(info.value)


def test_unknown_name_lists_available(tmp_path):
    with pytest.raises(CheckpointError, match="available: none"):
        load_pretrained("tiny", root=tmp_path)
    save_tiny_unet(tmp_path, "alpha")
    save_tiny_unet(tmp_path, "beta")
    with pytest.raises(CheckpointError, match=r"no checkpoint called 'gamma' .*\['alpha', 'beta'\]"):
        load_pretrained("gamma", root=tmp_path)


def test_config_that_does_not_fit_the_weights(tmp_path):
    save_tiny_unet(tmp_path)
    config_path = tmp_path / "tiny.json"
    info = json.loads(config_path.read_text())
    info["config"]["base_channels"] = 32  # a valid config, but not the one the weights were made for
    config_path.write_text(json.dumps(info, indent=2) + "\n")
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["tiny"]["sha256"]["tiny.json"] = sha256(config_path)  # only the mismatch remains
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="weights do not fit a UNet built from tiny.json") as info:
        load_pretrained("tiny", root=tmp_path)
    assert "size mismatch for " in str(info.value)  # the first offending tensor, not just torch's header


def rewrite_config(root: Path, name: str, edit) -> None:
    """Edit NAME.json and update its digest in the manifest, so only the edit is wrong."""
    path = root / f"{name}.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest[name]["sha256"][path.name] = sha256(path)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit, match", [
    (lambda info: info["config"].update(num_groups=5), "not a valid UNetConfig: .*num_groups=5"),
    (lambda info: info["config"].update(wingspan=3), r"fields \['wingspan'\]"),
    (lambda info: info.update(kind="vae"), "unknown model kind 'vae'"),
])
def test_bad_config_file_is_a_checkpoint_error(tmp_path, edit, match):
    save_tiny_unet(tmp_path)
    rewrite_config(tmp_path, "tiny", edit)
    with pytest.raises(CheckpointError, match=match):
        load_pretrained("tiny", root=tmp_path)


def test_truncated_manifest(tmp_path):
    save_tiny_unet(tmp_path)
    path = tmp_path / "manifest.json"
    path.write_text(path.read_text()[:20])
    with pytest.raises(CheckpointError, match="manifest.json is not valid JSON"):
        load_pretrained("tiny", root=tmp_path)


def test_save_rejects_unknown_kind_and_defaults(tmp_path):
    model = MLPDenoiser(MLPConfig())
    with pytest.raises(ValueError, match="unknown model kind 'gan'"):
        save_pretrained("x", model, model.config, kind="gan", schedule=None, made_by={}, root=tmp_path)
    assert set(model_kinds()) == {"unet", "mlp", "classifier", "text_unet", "noisy_classifier", "attribute_scorer",
                                  "scene_scorer",
                                  "autoencoder", "latent_unet", "flow_unet", "embedding_unet", "upsampler",
                                  "prior", "regression_prior", "clip", "latent_text_unet"}
    assert checkpoints_dir(tmp_path) == tmp_path
    assert checkpoints_dir().parts[-2:] == ("data", "checkpoints")


def test_load_to_device(tmp_path):
    save_tiny_unet(tmp_path)
    pre = load_pretrained("tiny", root=tmp_path, device="cpu")
    assert next(pre.model.parameters()).device.type == "cpu" and pre.schedule.device.type == "cpu"


@pytest.mark.parametrize("name", sorted(read_manifest()))
def test_every_shipped_checkpoint_names_a_command_that_remakes_it(name):
    """The manifest's command made the shipped weights: a valid `train` command line for the checkpoint's own
    preset that publishes the recorded number of steps."""
    entry = read_manifest()[name]
    words = entry["command"].split()
    assert words[0] in ("python", "torchrun") and "-m" in words, entry["command"]
    module = words.index("-m") + 1
    assert words[module] == "diffusion_lab", entry["command"]
    args = build_parser().parse_args(words[module + 1:])
    assert args.command == "train" and args.preset == name and args.publish, entry["command"]
    assert (args.steps or get_preset(name).train.steps) == entry["steps"]


# --- issue 21: files others can read, and damaged manifests and configs named in one line ------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """safetensors writes 0600 whatever the umask; a shared course folder needs the usual mode."""
    old = os.umask(umask)
    try:
        save_tiny_unet(tmp_path)
    finally:
        os.umask(old)
    for name in ("tiny.safetensors", "tiny.json", "manifest.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_manifest_entry_without_sha256_is_a_clear_error(tmp_path):
    save_tiny_unet(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["tiny"]["sha256"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as info:
        load_pretrained("tiny", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "manifest.json") in message and "'sha256'" in message
    assert "remake it with: python -m diffusion_lab train --preset tiny" in message


def test_config_with_a_json_syntax_error_names_the_file(tmp_path):
    save_tiny_unet(tmp_path)
    path = tmp_path / "tiny.json"
    path.write_text(path.read_text()[:-5])  # cut off: a syntax error, with its digest updated to match
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["tiny"]["sha256"]["tiny.json"] = sha256(path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as info:
        load_pretrained("tiny", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and f"{path} is not valid JSON" in message and "git checkout data/checkpoints" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_to_a_missing_device_is_a_clear_error(tmp_path):
    save_tiny_unet(tmp_path)
    with pytest.raises(ValueError, match="sees no CUDA GPU; use 'cpu'") as info:
        load_pretrained("tiny", root=tmp_path, device="cuda")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", [n for n in preset_names() if get_preset(n).float16])
def test_shipped_weights_are_stored_as_their_preset_says(name):
    """A preset with float16=True publishes half-precision parameters: a shipped float32 file means it was made
    before the preset said so and not yet re-stored (tools/store_float16.py, after bench/float16_weights.py)."""
    from safetensors import safe_open

    manifest = read_manifest()
    if name not in manifest:
        pytest.skip(f"{name} is not shipped (yet)")
    model = load_pretrained(name, device="cpu").model
    parameters = {k for k, _ in model.named_parameters()}
    with safe_open(str(checkpoints_dir() / manifest[name]["weights"]), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys() if k in parameters}
    assert dtypes == {"F16"}, f"{name}: parameters stored as {sorted(dtypes)}"
