"""Tests for diffusion_lab.config: quick mode, device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from diffusion_lab import config
from diffusion_lab.config import QUICK_ENV, mode_name, pick, pick_device, quick_mode, seed_everything


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with neither course variable set, whatever the caller's shell has."""
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)


# ----- quick mode ------------------------------------------------------------------------------

def test_quick_mode_unset_is_full() -> None:
    assert quick_mode() is False
    assert mode_name() == "full"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", False), ("", False), ("false", False), ("no", False), ("off", False),
     ("1", True), ("true", True), ("TRUE", True), (" True ", True), ("yes", True), ("on", True)],
)
def test_quick_mode_values(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv(QUICK_ENV, value)
    assert quick_mode() is expected
    assert mode_name() == ("quick" if expected else "full")


@pytest.mark.parametrize("value", ["garbage", "2", "maybe", "1.0"])
def test_quick_mode_garbage_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(QUICK_ENV, value)
    with pytest.raises(ValueError, match=QUICK_ENV) as info:
        quick_mode()
    assert repr(value) in str(info.value)
    with pytest.raises(ValueError, match=QUICK_ENV):
        mode_name()
    with pytest.raises(ValueError, match=QUICK_ENV):
        pick(full=1, quick=2)


def test_quick_mode_is_read_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    assert quick_mode() is False
    monkeypatch.setenv(QUICK_ENV, "1")
    assert quick_mode() is True


def test_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick(full=2000, quick=50) == 2000
    monkeypatch.setenv(QUICK_ENV, "1")
    assert pick(full=2000, quick=50) == 50
    full, quick = object(), object()
    assert pick(full=full, quick=quick) is quick
    monkeypatch.setenv(QUICK_ENV, "0")
    assert pick(full=full, quick=quick) is full


# ----- device ----------------------------------------------------------------------------------

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
needs_no_mps = pytest.mark.skipif(config._mps_available(), reason="this machine has Apple's MPS")


@needs_no_cuda
@needs_no_mps
def test_pick_device_default_is_cpu_here() -> None:
    device = pick_device()
    assert isinstance(device, torch.device)
    assert device == torch.device("cpu")


@pytest.mark.parametrize("choice", ["cpu", torch.device("cpu")])
def test_pick_device_explicit_cpu(choice: str | torch.device) -> None:
    assert pick_device(choice) == torch.device("cpu")


def test_pick_device_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")
    assert pick_device() == torch.device("cpu")


def test_pick_device_empty_env_means_automatic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.DEVICE_ENV, "")
    assert pick_device() == pick_device(None)


@needs_no_cuda
def test_pick_device_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.DEVICE_ENV, "cuda")
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_not_a_device_name() -> None:
    with pytest.raises(ValueError, match=r"'gpu' is not a device name.*'cpu'"):
        pick_device("gpu")


@needs_no_cuda
@pytest.mark.parametrize("choice", ["cuda", "cuda:1"])
def test_pick_device_cuda_unavailable(choice: str) -> None:
    with pytest.raises(ValueError, match=r"no CUDA GPU.*use 'cpu'"):
        pick_device(choice)


@needs_no_cuda
def test_pick_device_cuda_from_env_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match=r"'cuda'.*no CUDA GPU"):
        pick_device()


@needs_no_mps
def test_pick_device_mps_unavailable() -> None:
    with pytest.raises(ValueError, match=r"MPS is not available.*use 'cpu'"):
        pick_device("mps")


def test_pick_device_unsupported_type() -> None:
    with pytest.raises(ValueError, match=r"'meta' is not supported by the course"):
        pick_device("meta")


# ----- seeding ---------------------------------------------------------------------------------

def _draw(gen: torch.Generator) -> tuple[torch.Tensor, np.ndarray, float, torch.Tensor]:
    return torch.randn(5), np.random.rand(5), random.random(), torch.randn(5, generator=gen)


def test_seed_everything_reproducible() -> None:
    first = _draw(seed_everything(123))
    second = _draw(seed_everything(123))
    assert torch.equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]
    assert torch.equal(first[3], second[3])


def test_seed_everything_different_seeds_differ() -> None:
    a = _draw(seed_everything(1))
    b = _draw(seed_everything(2))
    assert not torch.equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])
    assert not torch.equal(a[3], b[3])


def test_seed_everything_returns_cpu_generator() -> None:
    gen = seed_everything(0)
    assert isinstance(gen, torch.Generator)
    assert gen.device == torch.device("cpu")
    assert gen.initial_seed() == 0


def test_seed_everything_large_seed_fits_numpy() -> None:
    seed_everything(2**40)  # NumPy only takes 32-bit seeds; the helper reduces it


@pytest.mark.parametrize(
    ("seed", "error", "pattern"),
    [(-1, ValueError, r"0\.\.2\*\*63"), (2**64, ValueError, r"0\.\.2\*\*63"), (1.5, TypeError, "must be an int, got float"),
     (True, TypeError, "must be an int, got bool"), ("7", TypeError, "got str")],
)
def test_seed_everything_bad_seeds(seed: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        seed_everything(seed)  # type: ignore[arg-type]


def test_set_deterministic_turns_tf32_off_and_back():
    from diffusion_lab.config import set_deterministic

    try:
        set_deterministic(True)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("command", [["train", "--preset", "tiny", "--steps", "1"],
                                     ["sample", "mnist", "--num", "1", "--steps", "1"]])
def test_cli_deterministic_flag_sets_deterministic_mode(command, tmp_path, monkeypatch) -> None:
    """--deterministic reaches set_deterministic before any work; without it nothing changes."""
    import diffusion_lab.cli.commands as commands
    import diffusion_lab.config as config
    from diffusion_lab.cli.main import main

    calls = []
    monkeypatch.setattr(config, "set_deterministic", lambda on=True: calls.append(on))
    monkeypatch.setattr(commands, "train_command", lambda *a, **k: calls.append("work"))
    monkeypatch.setattr(commands, "sample_command", lambda *a, **k: calls.append("work") or tmp_path / "x.npz")
    out = ["--out", str(tmp_path / ("x.npz" if command[0] == "sample" else "run"))]
    assert main([*command, *out]) == 0
    assert calls == ["work"]
    calls.clear()
    assert main([*command, *out, "--deterministic"]) == 0
    assert calls == [True, "work"]


def test_cpu_threads_sets_and_restores_the_thread_count() -> None:
    from diffusion_lab.config import cpu_threads

    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(1):  # restored even when the block fails
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive int"), cpu_threads(bad):  # type: ignore[arg-type]
            pass
