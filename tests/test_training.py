"""Tests for diffusion_lab.training: config checks, the loss, the batch draw, a short run, divergence,
exact resume (in-process and after SIGKILL), two-process DDP and mixed precision.

Everything runs on the CPU with one thread per process: on a small shared machine two OpenMP threads
fighting another job for one core make a step 50x slower.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from diffusion_lab.data import mnist_tensors
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import (
    DiffusionObjective,
    TrainConfig,
    TrainingDiverged,
    diffusion_loss,
    draw_batch,
    fit,
    learning_rate,
)
from diffusion_lab.training.diffusion import min_snr_weight

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_small() -> torch.Tensor:
    x0, _ = mnist_tensors("train", n=200)  # (200, 1, 28, 28) in [-1, 1]
    return x0


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig.tiny())


def train(model, schedule, x0, config, *, labels=None, null_label=None, **kwargs):
    """fit with the diffusion objective, as the denoisers are trained."""
    return fit(model, DiffusionObjective(schedule, x0, labels, null_label), config, **kwargs)


def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_name("cosine", 1000)


# A config that moves the weights visibly in a few steps (the presets warm the lr up over 200 steps).
FAST = TrainConfig(steps=20, batch_size=8, lr=1e-3, warmup_steps=2, checkpoint_every=10, log_every=5)


def cli_env() -> dict[str, str]:
    """The CLI on the CPU, one thread per process, without a GPU even where there is one."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", DIFFUSION_LAB_DEVICE="cpu",
               PYTHONPATH=str(ROOT))
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffusion_lab", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


# --- TrainConfig -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("steps", 2.5), ("steps", True), ("batch_size", -1), ("checkpoint_every", 0),
    ("log_every", 0), ("warmup_steps", -1), ("seed", -3), ("seed", "0"), ("lr", 0.0), ("lr", -1e-3),
    ("lr", math.nan), ("lr", math.inf), ("lr", "1e-3"), ("grad_clip", 0.0), ("grad_clip", math.nan),
    ("weight_decay", -0.1), ("lr_schedule", "cosine"),
    ("ema_decay", 1.0), ("ema_decay", -0.1), ("cond_drop_prob", 1.0), ("cond_drop_prob", -0.5),
    ("mixed_precision", "yes"), ("cooldown_steps", -1), ("cooldown_steps", 1.5),
])
def test_train_config_rejects_bad_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}\b"):
        TrainConfig(**{field: value})


def test_train_config_accepts_edge_values():
    TrainConfig(warmup_steps=0, ema_decay=0.0, cond_drop_prob=0.0, seed=0, lr=1, mixed_precision=True)


# --- diffusion_loss ----------------------------------------------------------------------------------


class Affine(nn.Module):
    """eps_pred = 0.5 x_t + t / 10 (+ the class label): a model whose output we can write down by hand."""

    def forward(self, xt, t, cond=None):
        out = 0.5 * xt + (t.float() / 10).view(-1, 1, 1)
        return out if cond is None else out + cond.float().view(-1, 1, 1)


def test_diffusion_loss_equals_hand_computation():
    sched = NoiseSchedule.from_name("linear", 10)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 2, 3, generator=gen), torch.randn(4, 2, 3, generator=gen)
    t = torch.tensor([0, 3, 7, 9])
    y = torch.tensor([1, 0, 2, 1])

    abar = sched.alpha_bars.double()[t].view(-1, 1, 1)
    xt = abar.sqrt() * x0.double() + (1 - abar).sqrt() * eps.double()  # DDPM eq. 4
    pred = 0.5 * xt + (t.double() / 10).view(-1, 1, 1)
    expected = (pred - eps.double()).pow(2).mean(dim=(1, 2))  # (B,)

    loss = diffusion_loss(Affine(), sched, x0, t, eps)
    assert loss.shape == (4,)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)

    expected_y = (pred + y.double().view(-1, 1, 1) - eps.double()).pow(2).mean(dim=(1, 2))
    loss_y = diffusion_loss(Affine(), sched, x0, t, eps, cond=y)
    torch.testing.assert_close(loss_y.double(), expected_y, rtol=1e-5, atol=1e-6)


def test_min_snr_weight_by_hand_and_in_the_objective():
    sched = NoiseSchedule.from_name("cosine", 1000)
    t = torch.tensor([0, 100, 250, 500, 999])
    abar = sched.alpha_bars.double()[t]
    snr = abar / (1 - abar)
    expected = torch.minimum(snr, torch.full_like(snr, 5.0)) / snr  # Hang et al. 2023, for the noise prediction
    torch.testing.assert_close(min_snr_weight(sched, t, 5.0).double(), expected, rtol=1e-5, atol=1e-7)
    assert min_snr_weight(sched, t, 5.0)[-1] == 1.0 and min_snr_weight(sched, t, 5.0)[0] < 1e-3

    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, 3, generator=gen)
    batch = {"x0": x0, "t": t, "eps": torch.randn(5, 2, 3, generator=gen)}
    plain = DiffusionObjective(sched, x0).loss(Affine(), batch)
    weighted = DiffusionObjective(sched, x0, snr_gamma=5.0)
    torch.testing.assert_close(weighted.loss(Affine(), batch), plain * min_snr_weight(sched, t, 5.0))
    assert weighted.describe()["snr_gamma"] == 5.0 and "snr_gamma" not in DiffusionObjective(sched, x0).describe()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="snr_gamma must be > 0"):
            DiffusionObjective(sched, x0, snr_gamma=bad)


@pytest.mark.parametrize("bad_model", [lambda xt, t: xt[:, :1], lambda xt, t: xt.flatten(1)])
def test_diffusion_loss_wrong_output_shape(bad_model):
    sched = NoiseSchedule.from_name("linear", 10)
    x0 = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match=r"model returned shape .*expected \(3, 2, 4\)"):
        diffusion_loss(bad_model, sched, x0, torch.tensor([0, 1, 2]), torch.zeros_like(x0))


# --- draw_batch --------------------------------------------------------------------------------------


def test_draw_batch_is_deterministic_and_in_a_fixed_order():
    shape = torch.Size([1, 4, 4])
    a = draw_batch(torch.Generator().manual_seed(3), 50, 6, shape, 100, cond_drop_prob=0.3)
    b = draw_batch(torch.Generator().manual_seed(3), 50, 6, shape, 100, cond_drop_prob=0.3)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)

    gen = torch.Generator().manual_seed(3)  # the documented order: indices, steps, noise, drop mask
    idx = torch.randint(50, (6,), generator=gen)
    t = torch.randint(100, (6,), generator=gen)
    eps = torch.randn((6, 1, 4, 4), generator=gen)
    drop = torch.rand(6, generator=gen) < 0.3
    for u, v in zip(a, (idx, t, eps, drop), strict=True):
        assert torch.equal(u, v)

    idx, t, eps, drop = a
    assert idx.shape == t.shape == drop.shape == (6,) and eps.shape == (6, 1, 4, 4)
    assert 0 <= int(idx.min()) and int(idx.max()) < 50 and int(t.max()) < 100
    assert drop.dtype == torch.bool
    assert not draw_batch(torch.Generator().manual_seed(3), 50, 6, shape, 100)[3].any()


# --- train -------------------------------------------------------------------------------------------


def test_short_run_logs_history_and_ema_differs(mnist_small):
    model = tiny_unet()
    config = dataclasses.replace(FAST, steps=30, batch_size=16, log_every=10)
    logged = []
    state = train(model, schedule(), mnist_small, config, progress=False,
                  on_log=lambda s: logged.append(s.step))
    h = state.history
    assert state.step == 30 and logged == [10, 20, 30] and h.steps == [10, 20, 30]
    assert len(h.losses) == 3 and all(math.isfinite(v) and v > 0 for v in h.losses)
    assert sum(h.bucket_counts) == 30 * 16
    means = h.bucket_means()
    assert len(means) == 10 and all(math.isnan(m) == (c == 0) for m, c in zip(means, h.bucket_counts))
    assert not model.training and state.ema.updates == 30
    live, avg = dict(model.named_parameters()), dict(state.ema.model.named_parameters())
    assert any(not torch.equal(live[k], avg[k]) for k in live)
    assert all(not p.requires_grad for p in state.ema.model.parameters())


def test_train_rejects_bad_arguments(mnist_small):
    model = tiny_unet()
    labels = torch.zeros(len(mnist_small), dtype=torch.long)
    with pytest.raises(ValueError, match="cond must be int64"):
        train(model, schedule(), mnist_small, FAST, labels=labels[:5], progress=False)
    with pytest.raises(ValueError, match="null_cond"):
        train(model, schedule(), mnist_small, dataclasses.replace(FAST, cond_drop_prob=0.1), labels=labels,
              progress=False)


class NaNAfter(nn.Module):
    """A tiny U-Net whose output turns NaN on forward call number ``bad_call`` (0-based) and after."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.net = tiny_unet()
        self.bad_call = bad_call
        self.calls = 0

    def forward(self, xt, t):
        out = self.net(xt, t)
        self.calls += 1
        return out * math.nan if self.calls > self.bad_call else out


def test_nan_loss_stops_and_leaves_last_checkpoint_untouched(mnist_small, tmp_path):
    model = NaNAfter(bad_call=6)  # steps 0..5 are fine, step 6 (after 6 completed steps) diverges
    config = dataclasses.replace(FAST, steps=12, checkpoint_every=4, log_every=1)
    ckpt = tmp_path / "checkpoint.pt"
    seen = {}

    def snapshot(state):
        if ckpt.exists():
            seen.update(step=state.step, data=ckpt.read_bytes(), mtime=ckpt.stat().st_mtime_ns)

    with pytest.raises(TrainingDiverged) as info:
        train(model, schedule(), mnist_small, config, out_dir=tmp_path, progress=False, on_log=snapshot)
    message = str(info.value)
    assert "step 6" in message and "nan" in message
    assert "lower learning rate" in message and str(ckpt) in message
    assert model.calls == 7  # the run stopped at the NaN: no further forward passes
    assert seen["step"] == 6
    assert ckpt.read_bytes() == seen["data"] and ckpt.stat().st_mtime_ns == seen["mtime"]
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_equals_straight_run(mnist_small, tmp_path):
    straight = train(tiny_unet(), schedule(), mnist_small, FAST, out_dir=tmp_path / "a", progress=False)

    first = train(tiny_unet(), schedule(), mnist_small, dataclasses.replace(FAST, steps=10),
                  out_dir=tmp_path / "b", progress=False)
    assert first.step == 10
    # A fresh model with other initial weights: everything must come from the checkpoint.
    resumed = train(tiny_unet(seed=1), schedule(), mnist_small, FAST, out_dir=tmp_path / "b", resume=True,
                    progress=False)
    assert resumed.step == 20
    for a, b in [(straight.model, resumed.model), (straight.ema.model, resumed.ema.model)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), "resumed weights differ from the straight run"
    assert straight.ema.updates == resumed.ema.updates == 20
    assert dataclasses.asdict(straight.history) == dataclasses.asdict(resumed.history)
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())

    # The saved checkpoints agree too, and resuming with other settings is refused by name.
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 20 and a["history"] == b["history"]
    with pytest.raises(ValueError, match=r"different settings \(\['lr'\]\)"):
        train(tiny_unet(), schedule(), mnist_small, dataclasses.replace(FAST, lr=5e-4),
              out_dir=tmp_path / "b", resume=True, progress=False)
    with pytest.raises(ValueError, match="different model or data"):
        train(tiny_unet(), schedule(), mnist_small[:100], FAST, out_dir=tmp_path / "b", resume=True,
              progress=False)


def test_learning_rate_warms_up_holds_and_cools_down():
    config = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, cooldown_steps=20)
    lrs = [learning_rate(config, step) for step in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up over 10 steps
    assert all(lr == pytest.approx(1e-3) for lr in lrs[9:81])  # constant until the last 20 steps
    assert lrs[80] == pytest.approx(1e-3) and lrs[90] == pytest.approx(5e-4) and lrs[99] == pytest.approx(5e-5)
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:]))  # then falls every step, towards 0
    no_cooldown = dataclasses.replace(config, cooldown_steps=0)
    assert learning_rate(no_cooldown, 99) == pytest.approx(1e-3)


def test_extended_run_then_cooled_down_equals_straight_run(mnist_small, tmp_path):
    """Train 10 steps at a constant rate, then extend to 20 with a 6-step cooldown: the same weights as
    a straight 20-step run with that cooldown (how the shipped mnist_cond was made)."""
    cooled = dataclasses.replace(FAST, cooldown_steps=6)
    straight = train(tiny_unet(), schedule(), mnist_small, cooled, out_dir=tmp_path / "a", progress=False)
    train(tiny_unet(), schedule(), mnist_small, dataclasses.replace(FAST, steps=10), out_dir=tmp_path / "b",
          progress=False)
    resumed = train(tiny_unet(), schedule(), mnist_small, cooled, out_dir=tmp_path / "b", resume=True,
                    progress=False)
    sa, sb = straight.ema.model.state_dict(), resumed.ema.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    plain = train(tiny_unet(), schedule(), mnist_small, FAST, progress=False)
    assert not all(torch.equal(sa[k], plain.ema.model.state_dict()[k]) for k in sa)  # the cooldown did act


def test_resume_from_unreadable_checkpoint(tmp_path, mnist_small):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the checkpoint .*delete it") as info:
        train(tiny_unet(), schedule(), mnist_small, FAST, out_dir=tmp_path, resume=True, progress=False)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)  # one line, no unsafe advice


def test_mixed_precision_runs_bf16_on_cpu(mnist_small):
    config = dataclasses.replace(FAST, steps=2, mixed_precision=True, log_every=1)
    state = train(tiny_unet(), schedule(), mnist_small, config, progress=False)
    assert state.step == 2 and all(math.isfinite(v) for v in state.history.losses)
    assert all(p.dtype == torch.float32 for p in state.model.parameters())
    assert state.precision == "bf16" and train(tiny_unet(), schedule(), mnist_small, dataclasses.replace(
        config, mixed_precision=False), progress=False).precision == "fp32"


@pytest.mark.parametrize("device, mixed, capability, want", [
    ("cpu", True, None, "bf16"), ("cpu", False, None, "fp32"), ("cuda", True, (8, 0), "bf16"),
    ("cuda", True, (7, 5), "fp16"), ("cuda", False, (9, 0), "fp32"), ("mps", True, None, "fp32"),
])
def test_precision_follows_what_the_device_supports(monkeypatch, device, mixed, capability, want):
    from diffusion_lab.training.precision import choose_precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    assert choose_precision(torch.device(device), mixed) == want


# --- the command line: killed and resumed, and two processes ------------------------------------------


def read_step(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["step"]
    except Exception:  # not there yet (or, were the write not atomic, half written): keep polling
        return -1


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    steps = "60"
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    cmd = [sys.executable, "-m", "diffusion_lab", "train", "--preset", "tiny", "--steps", steps, "--out"]
    proc = subprocess.Popen([*cmd, str(killed)], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while read_step(killed / "checkpoint.pt") < 20:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint at step >= 20 after 90 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "tiny.safetensors").exists(), "the run finished before the kill"
    saved = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)  # atomic write
    assert saved["step"] >= 20 and saved["step"] % 10 == 0

    resumed = run_cli("train", "--preset", "tiny", "--steps", steps, "--out", str(killed), "--resume",
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {killed / 'checkpoint.pt'} at step {saved['step']}" in resumed.stdout
    straight = run_cli("train", "--preset", "tiny", "--steps", steps, "--out", str(ref), cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert "resumed" not in straight.stdout

    a, b = load_file(str(killed / "tiny.safetensors")), load_file(str(ref / "tiny.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=True)
    cb = torch.load(ref / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ca["step"] == cb["step"] == 60 and ca["history"] == cb["history"]
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    assert not (tmp_path / "runs").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_one_process(tmp_path):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), "-m", "diffusion_lab", "train", "--preset", "tiny", "--steps", "10",
         "--out", str(d2)],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    one = run_cli("train", "--preset", "tiny", "--steps", "10", "--out", str(d1), cwd=tmp_path)
    assert one.returncode == 0, one.stderr

    a, b = load_file(str(d1 / "tiny.safetensors")), load_file(str(d2 / "tiny.safetensors"))
    assert a.keys() == b.keys()
    torch.manual_seed(0)  # the CLI's seed_everything(0): the initial weights of both runs
    init = UNet(UNetConfig.tiny()).state_dict()
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-5, "training did not change the weights: the comparison would prove nothing"
    assert diff <= 1e-5, f"one process and two differ by {diff}"
    assert diff <= 0.01 * moved, f"the runs differ by {diff}, the training moved the weights by {moved}"
    # Both record the whole global batch in their history, not just one process's half.
    h1 = torch.load(d1 / "checkpoint.pt", weights_only=True)["history"]
    h2 = torch.load(d2 / "checkpoint.pt", weights_only=True)["history"]
    assert h1["steps"] == h2["steps"] == [5, 10] and h1["bucket_counts"] == h2["bucket_counts"]
    assert sum(h2["bucket_counts"]) == 10 * 16
    torch.testing.assert_close(torch.tensor(h2["losses"]), torch.tensor(h1["losses"]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(h2["bucket_sums"]), torch.tensor(h1["bucket_sums"]), rtol=1e-5,
                               atol=1e-6)
    manifest = json.loads((d2 / "manifest.json").read_text())["tiny"]
    assert manifest["processes"] == 2 and manifest["command"].startswith("torchrun --nproc_per_node 2")


def test_text_conditions_are_dropped_to_the_empty_prompt(tmp_path):
    """Token ids (N, L) train like class labels; cond_drop_prob swaps in the empty prompt's ids."""
    from diffusion_lab.data.shapes import caption_vocabulary, make_shapes
    from diffusion_lab.models.text import TextEncoderConfig
    from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig

    config = TextUNetConfig(dataclasses.replace(UNetConfig.tiny(), in_channels=3, out_channels=3, image_size=16,
                                                cross_attention_resolutions=(4,), context_dim=16),
                            TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))
    torch.manual_seed(0)
    model = TextUNet(config)
    shapes = make_shapes(8, size=16)
    ids = model.tokenizer.encode(shapes.captions)  # (8, 12)
    seen = []
    forward = model.forward
    model.forward = lambda x, t, y: seen.append(y.clone()) or forward(x, t, y)
    empty = model.tokenizer.empty(1)[0]
    cfg = TrainConfig(steps=3, batch_size=8, cond_drop_prob=0.5, log_every=1, checkpoint_every=3)
    state = train(model, NoiseSchedule.from_name("cosine", 1000), shapes.images, cfg, labels=ids, null_label=empty,
                  progress=False)
    assert state.step == 3 and all(math.isfinite(v) for v in state.history.losses)
    batches = torch.cat(seen)  # (24, 12)
    is_empty = (batches == empty).all(1)
    assert 0 < is_empty.sum() < len(batches)  # some captions dropped, not all
    assert all(row.tolist() in ids.tolist() for row in batches[~is_empty])
    with pytest.raises(ValueError, match=r"null_cond must have the shape of one condition, \(12,\)"):
        train(model, NoiseSchedule.from_name("cosine", 1000), shapes.images, cfg, labels=ids, null_label=3,
              progress=False)
