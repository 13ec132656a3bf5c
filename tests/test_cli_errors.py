"""`python -m diffusion_lab train|sample` meet bad input and faults with one clear line, and lose nothing (issue 21).

Sampling uses a tiny untrained checkpoint written to a temporary folder; training uses the tiny preset for a
few steps. Nothing is written into the repository's data/ (the bundled MNIST is only read, or copied).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lab.cli.main import main
from diffusion_lab.data import files
from diffusion_lab.data.paths import data_dir
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pretrained import save_pretrained
from diffusion_lab.schedules import NoiseSchedule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    with torch.no_grad():  # conv_out starts at zero: make the samples depend on the seed's noise and the model
        model.conv_out.weight.normal_(0, 0.1)
    save_pretrained("tiny", model, model.config, kind="unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=folder)
    return folder


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nobody may write in (as root, whom permissions do not stop, os.access is made to say so)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(files.os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    yield folder
    folder.chmod(0o755)


def env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", DIFFUSION_LAB_DEVICE="cpu",
                PYTHONPATH=str(ROOT))


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def sample(checkpoints: Path, out, *extra: str) -> int:
    return main(["sample", "tiny", "--num", "3", "--steps", "3", "--seed", "1", "--out", str(out),
                 "--checkpoint-dir", str(checkpoints), *extra])


# --- sample --out: checked before any work, written under a unique temporary name with the umask's mode -------


@pytest.mark.parametrize("out, message", [
    ("folder", "--out {t}/folder is a folder: give a file in it, e.g. {t}/folder/samples.npz"),
    ("folder.npz", "--out {t}/folder.npz is a folder: give a file in it, e.g. {t}/folder.npz/samples.npz"),
    ("a_file/x.npz", "--out {t}/a_file/x.npz: {t}/a_file is a file, not a folder; choose another path"),
    ("a_file/deeper/x.npz", "--out {t}/a_file/deeper/x.npz: {t}/a_file is a file, not a folder"),
    (".npz", "--out {t}/.npz has no file name before .npz: give one, e.g. {t}/samples.npz"),
    ("x.png", "--out must end in .npz, got {t}/x.png"),
])
def test_sample_out_is_checked_first(checkpoints, tmp_path, capsys, monkeypatch, out, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "a_file").write_text("")
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(UNet, "forward", lambda *a, **k: pytest.fail("sampled before checking --out"))
    assert sample(checkpoints, tmp_path / out) == 2
    assert error_line(capsys).startswith("error: " + message.format(t=tmp_path))
    assert sorted(tmp_path.rglob("*")) == before


def test_sample_into_a_read_only_folder(checkpoints, read_only, capsys, monkeypatch):
    monkeypatch.setattr(UNet, "forward", lambda *a, **k: pytest.fail("sampled before checking --out"))
    assert sample(checkpoints, read_only / "x.npz") == 2
    line = error_line(capsys)
    assert f"--out {read_only / 'x.npz'}: cannot write in {read_only}" in line
    assert "choose a folder you can write to" in line


def test_sample_temp_files_are_unique_and_the_file_readable(checkpoints, tmp_path, monkeypatch):
    renamed = []
    real = os.replace
    monkeypatch.setattr(files.os, "replace", lambda src, dst: (renamed.append(Path(src)), real(src, dst)))
    old = os.umask(0o022)
    try:
        out = tmp_path / "same.npz"
        assert sample(checkpoints, out) == 0 and sample(checkpoints, out) == 0
    finally:
        os.umask(old)
    assert len(renamed) == 2 and renamed[0] != renamed[1] and all(p.parent == tmp_path for p in renamed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.npz"]  # no temporary file left behind
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # mkstemp's 0600 would hide it from the course's group


def test_a_failed_write_is_one_line_and_leaves_nothing(checkpoints, tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    assert sample(checkpoints, tmp_path / "x.npz") == 2
    assert error_line(capsys) == (f"error: cannot write --out {tmp_path / 'x.npz'}: No space left on device; "
                                  f"choose a folder you can write to, with free space")
    assert not list(tmp_path.iterdir())


def test_two_processes_sampling_to_one_file(checkpoints, tmp_path):
    out = tmp_path / "shared.npz"
    cmd = [sys.executable, "-m", "diffusion_lab", "sample", "tiny", "--num", "3", "--steps", "3", "--seed", "1",
           "--out", str(out), "--checkpoint-dir", str(checkpoints)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert sample(checkpoints, tmp_path / "alone.npz") == 0
    with np.load(out) as shared, np.load(tmp_path / "alone.npz") as alone:
        assert np.array_equal(shared["images"], alone["images"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.npz", "shared.npz"]


# --- sample's other settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["--seed", str(2**70)], "error: seed must be a whole number from 0 to 2**63 - 1, got 1180591620717411303424"),
    (["--seed", "-1"], "error: seed must be a whole number from 0 to 2**63 - 1, got -1"),
    (["--sampler", "ddpm", "--eta", "0.5"], "error: eta=0.5 is DDIM's setting: DDPM always adds its full noise. "
                                            "Drop eta (--eta) or use sampler='ddim' (--sampler ddim)"),
    (["--batch-size", "0"], "error: batch_size must be a positive int, got 0"),
])
def test_sample_bad_settings(checkpoints, tmp_path, capsys, extra, message):
    assert sample(checkpoints, tmp_path / "x.npz", *extra) == 2
    assert error_line(capsys).startswith(message)
    assert not list(tmp_path.iterdir())


def test_sample_too_many_says_the_memory_up_front(checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(UNet, "forward", lambda *a, **k: pytest.fail("sampled before checking the memory"))
    args = ["sample", "tiny", "--num", str(10**12), "--out", str(tmp_path / "x.npz"), "--checkpoint-dir",
            str(checkpoints)]
    assert main(args) == 2
    line = error_line(capsys)
    assert "error: 1,000,000,000,000 samples of shape (1, 28, 28) need about" in line
    assert "for the samples alone) but this cpu has" in line and "ask for at most about" in line


def test_sample_in_batches(checkpoints, tmp_path):
    assert sample(checkpoints, tmp_path / "a.npz", "--num", "5", "--batch-size", "2", "--sampler", "ddpm") == 0
    assert sample(checkpoints, tmp_path / "b.npz", "--num", "5", "--batch-size", "2", "--sampler", "ddpm") == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a["images"].shape == (5, 28, 28, 1) and np.array_equal(a["images"], b["images"])


# --- train: --out, --resume, damaged data, Ctrl-C -----------------------------------------------------------


def train(out, *extra: str) -> int:
    return main(["train", "--preset", "tiny", "--steps", "2", "--out", str(out), *extra])


def test_train_out_is_checked_before_training(tmp_path, read_only, capsys, monkeypatch):
    monkeypatch.setattr(UNet, "forward", lambda *a, **k: pytest.fail("trained before checking --out"))
    (tmp_path / "a_file").write_text("")
    assert train(tmp_path / "a_file") == 2
    assert error_line(capsys) == f"error: --out {tmp_path / 'a_file'}: {tmp_path / 'a_file'} is a file, not a " \
                                 f"folder; choose another path"
    assert train(tmp_path / "a_file" / "run") == 2
    assert f"{tmp_path / 'a_file'} is a file, not a folder" in error_line(capsys)
    assert train(read_only / "run") == 2
    assert f"--out {read_only / 'run'}: cannot write in {read_only}" in error_line(capsys)
    monkeypatch.setenv("DIFFUSION_LAB_DATA", str(tmp_path / "a_file"))  # so data/checkpoints lies under a file
    assert train(tmp_path / "run", "--publish") == 2
    assert f"error: --publish: {tmp_path / 'a_file'} is a file, not a folder" in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_train_resume_without_a_checkpoint_and_past_its_steps(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "--resume") == 0
    assert f"no checkpoint in {run} to resume from: starting from step 0" in capsys.readouterr().out
    weights = (run / "tiny.safetensors").read_bytes()
    assert main(["train", "--preset", "tiny", "--steps", "1", "--out", str(run), "--resume"]) == 2
    assert error_line(capsys) == (f"error: {run / 'checkpoint.pt'} is already at step 2, past the 1 steps asked "
                                  f"for: resume with --steps 2 or more, or use another --out to start afresh")
    assert (run / "tiny.safetensors").read_bytes() == weights  # nothing relabelled


def test_train_on_a_corrupted_mnist_subset(tmp_path, capsys, monkeypatch):
    mnist = tmp_path / "data" / "mnist"
    shutil.copytree(data_dir() / "mnist", mnist)  # the bundled files are only read
    blob = bytearray((mnist / "mnist_subset.npz").read_bytes())
    blob[5000] ^= 0xFF
    (mnist / "mnist_subset.npz").write_bytes(bytes(blob))
    monkeypatch.setenv("DIFFUSION_LAB_DATA", str(tmp_path / "data"))
    assert train(tmp_path / "run") == 2
    line = error_line(capsys)
    assert f"error: {mnist / 'mnist_subset.npz'} is corrupted" in line and "git checkout data/" in line


def test_ctrl_c_during_training_says_what_is_kept(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_lab", "train", "--preset", "tiny", "--steps", "100000",
                             "--out", str(run)], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # a job started in the background inherits SIGINT ignored; a terminal's Ctrl-C is not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoint.pt").exists():  # the tiny preset saves every 10 steps
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint to keep"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert last.startswith("training stopped at step ") and "(Ctrl-C)" in last
    assert (f"the last checkpoint, {run / 'checkpoint.pt'}, holds step {saved}: continue with "
            f"`python -m diffusion_lab train --preset tiny --steps 100000 --out {run} --resume`") in last
