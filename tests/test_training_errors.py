"""fit's inputs and resumes, each a clear one-line answer (issue 21): NaN in the data is named as such before
training, --resume without a checkpoint says it starts afresh, a resume past the steps asked for is refused,
and an out_dir that cannot be written is refused before the first step, not at the first checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import ClassifierObjective, DiffusionObjective, TrainConfig, fit

FAST = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=2, log_every=2)


def data(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


def run(out_dir, config=FAST, **kwargs):
    torch.manual_seed(0)
    objective = DiffusionObjective(NoiseSchedule.from_name("cosine", 1000), data())
    return fit(UNet(UNetConfig.tiny()), objective, config, out_dir=out_dir, progress=False, **kwargs)


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_in_the_data_is_named_before_training(value):
    x = data()
    x[5, 0, 3, 4] = value
    with pytest.raises(ValueError) as info:
        DiffusionObjective(NoiseSchedule.from_name("cosine", 1000), x)
    message = one_line(info)
    assert "the training data x0 contain NaN or inf in 1 of 16 samples (the first is sample 5)" in message
    assert "a lower learning rate will not help" in message
    match = ("the training images contain NaN or inf in 1 of 16 samples" if value != value  # NaN
             else r"images must be scaled to \[-1, 1\].*got values in \[-1, inf\]")  # inf: out of range already
    with pytest.raises(ValueError, match=match):
        ClassifierObjective(x, torch.zeros(16, dtype=torch.long), num_classes=10)


def test_resume_without_a_checkpoint_says_it_starts_afresh(tmp_path, capsys):
    state = run(tmp_path / "run", resume=True)
    assert state.step == 4
    assert f"no checkpoint in {tmp_path / 'run'} to resume from: starting from step 0" in capsys.readouterr().out


def test_resume_past_the_steps_asked_for_is_refused(tmp_path):
    run(tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError) as info:
        run(tmp_path, dataclasses.replace(FAST, steps=3), resume=True)
    assert (f"{tmp_path / 'checkpoint.pt'} is already at step 4, past the 3 steps asked for: resume with --steps 4 "
            f"or more") in one_line(info)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert run(tmp_path, resume=True).step == 4  # the same number of steps is fine: nothing left to do


def test_out_dir_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(UNet, "forward", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError) as info:
        run(blocker / "run")
    assert f"out_dir {blocker / 'run'}: {blocker} is a file, not a folder" in one_line(info)
    assert not calls
