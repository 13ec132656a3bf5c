"""Tests for `python -m diffusion_lab train` / `sample` (diffusion_lab.cli.commands and __main__).

One tiny model is trained once per module (4 steps) into a temporary folder and sampled from; nothing is
written into the repository's data/checkpoints. Subprocesses run on the CPU with one thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lab.cli.commands import sample_command, train_command
from diffusion_lab.cli.main import main
from diffusion_lab.data import mnist_tensors
from diffusion_lab.judges.mnist_classifier import MNISTClassifier
from diffusion_lab.pretrained import load_pretrained, read_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")  # in-process runs compare with CPU subprocesses


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", DIFFUSION_LAB_DEVICE="cpu",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "diffusion_lab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding tiny.safetensors, tiny.json and manifest.json after 4 training steps."""
    out = tmp_path_factory.mktemp("tiny_run")
    result = run_cli("train", "--preset", "tiny", "--steps", "4", "--out", out, cwd=out)
    assert result.returncode == 0, result.stderr
    assert f"saved {out / 'tiny.safetensors'}" in result.stdout
    return out


def test_train_writes_named_checkpoint(trained):
    assert {p.name for p in trained.iterdir()} >= {"tiny.safetensors", "tiny.json", "manifest.json",
                                                    "checkpoint.pt"}
    entry = read_manifest(trained)["tiny"]
    assert entry["command"] == "python -m diffusion_lab train --preset tiny --steps 4"
    assert entry["processes"] == 1 and entry["steps"] == 4 and "CPU" in entry["hardware"]
    for filename, digest in entry["sha256"].items():
        assert hashlib.sha256((trained / filename).read_bytes()).hexdigest() == digest
    pre = load_pretrained("tiny", root=trained)
    assert pre.schedule is not None and pre.schedule.name == "cosine"
    assert torch.load(trained / "checkpoint.pt", weights_only=True)["step"] == 4
    assert not (trained / "runs").exists()


def test_resumed_train_says_so_in_the_manifest(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = run_cli("train", "--preset", "tiny", "--steps", "6", "--out", run, "--resume", cwd=run)
    assert result.returncode == 0, result.stderr
    entry = read_manifest(run)["tiny"]
    assert entry["command"] == "python -m diffusion_lab train --preset tiny --steps 6 --resume"
    assert entry["steps"] == 6 and torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6


def sample_args(out: Path, trained: Path, *extra: str) -> list[str]:
    return ["sample", "tiny", "--num", "3", "--sampler", "ddim", "--steps", "5", "--seed", "1", "--out", str(out),
            "--checkpoint-dir", str(trained), *extra]


def test_sample_writes_uint8_images_reproducibly(trained, tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "sub" / "b.npz"
    result = run_cli(*sample_args(a, trained), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote 3 samples to {a}" in result.stdout
    assert main(sample_args(b, trained)) == 0  # the same command in-process, same seed
    with np.load(a) as fa, np.load(b) as fb:
        assert sorted(fa.files) == sorted(fb.files) == ["images", "labels"]
        assert fa["images"].dtype == np.uint8 and fa["images"].shape == (3, 28, 28, 1)
        assert np.array_equal(fa["images"], fb["images"]) and np.array_equal(fa["labels"], fb["labels"])
        assert fa["labels"].tolist() == [-1, -1, -1]
        assert fa["images"].std() > 0
    c = tmp_path / "c.npz"
    args = sample_args(c, trained)
    args[args.index("--seed") + 1] = "2"
    assert main(args) == 0
    with np.load(a) as fa, np.load(c) as fc:
        assert not np.array_equal(fa["images"], fc["images"])
    assert not list(tmp_path.rglob("*.tmp.npz"))


def test_sample_ddpm(trained, tmp_path):
    out = tmp_path / "ddpm.npz"
    path = sample_command("tiny", num=2, sampler="ddpm", steps=20, seed=0, out=out, checkpoints_root=trained)
    assert path == out
    with np.load(out) as f:
        assert f["images"].shape == (2, 28, 28, 1) and f["images"].dtype == np.uint8


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_same_seed_same_bytes_whatever_the_thread_count(trained, tmp_path, sampler):
    """Issue 21 keeps this under test: one seed gives byte-identical samples on 1 and 2 threads, run after run."""
    images = []
    for threads, name in [(1, "a"), (2, "b"), (1, "c")]:
        torch.set_num_threads(threads)  # conftest restores the count after the test
        out = sample_command("tiny", num=4, sampler=sampler, steps=6, seed=5, out=tmp_path / f"{name}.npz",
                             checkpoints_root=trained)
        with np.load(out) as f:
            images.append(f["images"].tobytes())
    assert images[0] == images[1] == images[2]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("change, message", [
    ({"--num": "0"}, "--num must be positive"),
    ({"--out": "x.png"}, "--out must end in .npz"),
    ({"--steps": "0"}, "num_inference_steps must be between 1 and T"),
    ({"--class": "3"}, "tiny is unconditional"),
])
def test_sample_bad_input_is_one_error_line(trained, tmp_path, capsys, change, message):
    args = sample_args(tmp_path / "x.npz", trained)
    for flag, value in change.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    assert message in error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_unknown_checkpoint_name_from_the_shell(trained, tmp_path):
    result = run_cli("sample", "nope", "--num", "2", "--out", tmp_path / "x.npz", "--checkpoint-dir", trained,
                     cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: no checkpoint called 'nope'") and "['tiny']" in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "gigantic"], "invalid choice: 'gigantic'"),
    (["train", "--preset", "tiny", "--steps", "many"], "invalid int value"),
    (["sample", "tiny", "--num", "2", "--sampler", "lms", "--out", "x.npz"], "invalid choice: 'lms'"),
])
def test_argparse_rejects(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_bad_steps_is_one_error_line(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--steps", "0", "--out", str(tmp_path / "run")]) == 2
    assert "TrainConfig.steps must be a positive int" in error_line(capsys)


def test_classifier_preset_trains_and_loads(tmp_path):
    path = train_command("mnist_classifier", steps=30, out=tmp_path / "run", checkpoints_root=tmp_path,
                         progress=False)
    assert path == tmp_path / "mnist_classifier.safetensors" and path.exists()
    # Judges train through the same fit as the denoisers: a resumable checkpoint, and --resume continues it.
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 30
    again = train_command("mnist_classifier", steps=40, out=tmp_path / "run", resume=True,
                          checkpoints_root=tmp_path / "more", progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 40 and again.exists()
    pre = load_pretrained("mnist_classifier", root=tmp_path)
    assert isinstance(pre.model, MNISTClassifier) and pre.schedule is None and not pre.model.training
    assert read_manifest(tmp_path)["mnist_classifier"]["steps"] == 30
    x, y = mnist_tensors("test", n=200)
    with torch.no_grad():
        accuracy = (pre.model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.5, f"30 steps should beat chance (0.1) clearly, got {accuracy:.2f}"
    with pytest.raises(ValueError, match="not a diffusion model"):
        sample_command("mnist_classifier", num=2, out=tmp_path / "x.npz", checkpoints_root=tmp_path)
    info = json.loads((tmp_path / "mnist_classifier.json").read_text())
    assert info["kind"] == "classifier" and info["schedule"] is None


def test_presets_are_consistent():
    from diffusion_lab.cli.commands import build_model
    from diffusion_lab.cli.presets import get_preset, preset_names
    from diffusion_lab.pretrained import model_kinds

    names = preset_names()
    assert {"tiny", "mnist", "mnist_cond", "mnist_classifier", "toy2d", "mnist_noisy_classifier", "shapes_text",
            "shapes_scorer"} <= set(names)
    for name in names:
        preset = get_preset(name)
        assert preset.name == name and preset.kind in model_kinds()
        assert isinstance(preset.model_config, model_kinds()[preset.kind][1])
        conditional_unet = getattr(preset.model_config, "num_classes", None) is not None and preset.kind == "unet"
        assert preset.conditional == (conditional_unet or preset.kind in ("text_unet", "embedding_unet", "latent_text_unet"))
        assert preset.with_steps(7).train.steps == 7 and preset.with_steps(7).train.lr == preset.train.lr
    tiny = get_preset("tiny")
    assert tiny.train.checkpoint_every == 10 and tiny.data == "mnist"
    assert sum(p.numel() for p in build_model(tiny).parameters()) < 200_000
    with pytest.raises(ValueError, match=r"unknown preset 'nope'; choose one of \["):
        get_preset("nope")
