"""Tests for diffusion_lab.schedules: against diffusers' DDPMScheduler, properties, and bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion_lab.schedules import (
    BETA_SCHEDULES,
    DIFFUSERS_NAMES,
    NoiseSchedule,
    cosine_betas,
    linear_betas,
    make_betas,
    scaled_linear_betas,
    sigmoid_betas,
)

NAMES = ["linear", "scaled_linear", "cosine", "sigmoid"]
# scaled_linear is compared with Stable Diffusion's range, passed to both sides explicitly.
KWARGS = {"scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012}}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(name: str, T: int):
    diffusers = pytest.importorskip("diffusers")
    kwargs = KWARGS.get(name, {})
    ours = NoiseSchedule.from_name(name, T, **kwargs)
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_NAMES[name], **kwargs)
    return ours, ref


def test_every_schedule_has_a_diffusers_name() -> None:
    assert set(DIFFUSERS_NAMES) == set(BETA_SCHEDULES) == set(NAMES)


# ----- against diffusers -------------------------------------------------------------------------

@pytest.mark.parametrize("T", [10, 1000])
@pytest.mark.parametrize("name", NAMES)
def test_matches_diffusers_betas_and_alpha_bars(name: str, T: int) -> None:
    ours, ref = _pair(name, T)
    assert ours.T == T
    assert ours.betas.dtype == ours.alphas.dtype == ours.alpha_bars.dtype == torch.float32
    torch.testing.assert_close(ours.betas, ref.betas.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.alphas, ref.alphas.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.alpha_bars, ref.alphas_cumprod.float(), rtol=0, atol=1e-6)


def _images_and_points(T: int):
    x0 = torch.rand(8, 3, 16, 16, generator=_gen(0)) * 2 - 1  # (B, C, H, W) in [-1, 1]
    eps = torch.randn(x0.shape, generator=_gen(1))
    t = torch.randint(0, T, (8,), generator=_gen(2))
    t[0], t[1] = 0, T - 1  # both ends of the chain
    pts = torch.randn(64, 2, generator=_gen(3))  # (B, 2) toy points
    pts_eps = torch.randn(pts.shape, generator=_gen(4))
    pts_t = torch.randint(0, T, (64,), generator=_gen(5))
    return [(x0, eps, t), (pts, pts_eps, pts_t)]


@pytest.mark.parametrize("T", [10, 1000])
@pytest.mark.parametrize("name", NAMES)
def test_add_noise_same_formula_as_diffusers(name: str, T: int) -> None:
    """Given the same alpha_bars, our add_noise and diffusers' agree to 1e-6 (images and 2-D points)."""
    ours, ref = _pair(name, T)
    ref.alphas_cumprod = ours.alpha_bars.clone()
    for x0, eps, t in _images_and_points(T):
        got = ours.add_noise(x0, eps, t)
        assert got.shape == x0.shape and got.dtype == x0.dtype
        torch.testing.assert_close(got, ref.add_noise(x0, eps, t), rtol=0, atol=1e-6)


@pytest.mark.parametrize("T", [10, 1000])
@pytest.mark.parametrize("name", NAMES)
def test_add_noise_matches_diffusers_end_to_end(name: str, T: int) -> None:
    """Against an untouched DDPMScheduler.

    diffusers takes its cumprod in float32, we take ours in float64; the alpha_bars then differ by
    an ulp (~6e-8), and sqrt(1 - alpha_bar) near alpha_bar = 1 magnifies that to a few 1e-6 in x_t
    (measured up to 5e-6 for sigmoid, T=10). Hence 1e-5 here; the formula itself is checked to 1e-6
    in test_add_noise_same_formula_as_diffusers.
    """
    ours, ref = _pair(name, T)
    for x0, eps, t in _images_and_points(T):
        torch.testing.assert_close(ours.add_noise(x0, eps, t), ref.add_noise(x0, eps, t), rtol=0, atol=1e-5)


# ----- float64 maths, frozen object --------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_schedules_are_float64(name: str) -> None:
    assert make_betas(name, 20).dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_alpha_bars_are_float64_cumprod_cast_to_float32(name: str) -> None:
    betas64 = make_betas(name, 1000)
    s = NoiseSchedule.from_betas(betas64, name=name)
    assert torch.equal(s.alpha_bars, torch.cumprod(1 - betas64, dim=0).float())
    assert torch.equal(s.alphas, (1 - betas64).float())
    assert torch.equal(s.betas, betas64.float())


def test_from_betas_accepts_float32_and_computes_in_float64() -> None:
    betas32 = linear_betas(1000).float()
    s = NoiseSchedule.from_betas(betas32)
    assert s.name == "custom"
    assert torch.equal(s.alpha_bars, torch.cumprod(1 - betas32.double(), dim=0).float())


def test_from_betas_does_not_alias_its_input() -> None:
    betas = linear_betas(10)
    s = NoiseSchedule.from_betas(betas)
    betas[0] = 0.5
    assert float(s.betas[0]) == pytest.approx(1e-4)


def test_to_returns_a_new_frozen_schedule() -> None:
    s = NoiseSchedule.from_name("linear", 10)
    moved = s.to("cpu")
    assert moved is not s
    assert isinstance(moved, NoiseSchedule)
    assert moved.device == torch.device("cpu")
    assert moved.name == s.name and moved.T == s.T
    assert torch.equal(moved.alpha_bars, s.alpha_bars)
    with pytest.raises(dataclasses.FrozenInstanceError):
        moved.betas = torch.zeros(10)  # type: ignore[misc]


def test_dataclass_is_frozen() -> None:
    s = NoiseSchedule.from_name("cosine", 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.alpha_bars = torch.ones(10)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "other"  # type: ignore[misc]


def test_repr_names_the_schedule() -> None:
    text = repr(NoiseSchedule.from_name("cosine", 50))
    assert "cosine" in text and "T=50" in text


def test_pure_functions_match_the_named_table() -> None:
    assert torch.equal(make_betas("linear", 7), linear_betas(7))
    assert torch.equal(make_betas("scaled_linear", 7), scaled_linear_betas(7))
    assert torch.equal(make_betas("cosine", 7), cosine_betas(7))
    assert torch.equal(make_betas("sigmoid", 7), sigmoid_betas(7))


# ----- properties --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_alpha_bars_decrease_within_unit_interval(name: str) -> None:
    s = NoiseSchedule.from_name(name, 1000)
    assert bool((s.betas > 0).all() and (s.betas < 1).all())
    assert bool((s.alpha_bars > 0).all() and (s.alpha_bars <= 1).all())
    assert bool((s.alpha_bars.diff() < 0).all())
    assert float(s.alpha_bars[-1]) < 0.05  # almost pure noise at the end


@pytest.mark.parametrize("name", NAMES)
def test_snr_and_log_snr_consistent(name: str) -> None:
    s = NoiseSchedule.from_name(name, 1000)
    t = torch.arange(s.T)
    snr, log_snr = s.snr(t), s.log_snr(t)
    assert snr.shape == log_snr.shape == (s.T,)
    torch.testing.assert_close(log_snr, torch.log(snr), rtol=1e-5, atol=1e-5)
    abar = s.alpha_bars.double()
    torch.testing.assert_close(snr.double(), abar / (1 - abar), rtol=1e-6, atol=0)
    assert bool((snr.diff() < 0).all())
    assert bool((log_snr.diff() < 0).all())
    assert s.snr(3).ndim == 0 and float(s.snr(3)) == pytest.approx(float(snr[3]))


@pytest.mark.parametrize("name", NAMES)
def test_add_noise_preserves_unit_variance(name: str) -> None:
    s = NoiseSchedule.from_name(name, 1000)
    x0 = torch.randn(200_000, generator=_gen(0))
    eps = torch.randn(200_000, generator=_gen(1))
    for t in (0, 250, 500, 999):
        xt = s.add_noise(x0, eps, t)
        assert float(xt.var()) == pytest.approx(1.0, abs=0.02)
        assert float(xt.mean()) == pytest.approx(0.0, abs=0.02)


def test_add_noise_int_and_tensor_t_agree() -> None:
    s = NoiseSchedule.from_name("linear", 100)
    x0 = torch.randn(4, 1, 5, 5, generator=_gen(0))
    eps = torch.randn(x0.shape, generator=_gen(1))
    by_int = s.add_noise(x0, eps, 42)
    assert torch.equal(by_int, s.add_noise(x0, eps, torch.full((4,), 42)))
    assert torch.equal(by_int, s.add_noise(x0, eps, torch.tensor(42)))
    assert torch.equal(by_int, s.add_noise(x0, eps, torch.tensor([42])))


def test_add_noise_keeps_float64() -> None:
    s = NoiseSchedule.from_name("linear", 10)
    x0 = torch.randn(3, 2, dtype=torch.float64)
    assert s.add_noise(x0, torch.randn_like(x0), 5).dtype == torch.float64


# ----- bad input ---------------------------------------------------------------------------------

def test_unknown_schedule_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'") as info:
        NoiseSchedule.from_name("quadratic", 10)
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("T", "error", "pattern"),
    [(0, ValueError, "must be positive, got 0"), (-5, ValueError, "must be positive, got -5"),
     (1.5, TypeError, "must be an int, got float"), (True, TypeError, "must be an int, got bool")],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_T(name: str, T: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        NoiseSchedule.from_name(name, T)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "sigmoid"])
@pytest.mark.parametrize(("start", "end"), [(0.0, 0.02), (-1e-4, 0.02), (0.02, 1e-4), (1e-4, 1.0), (1e-4, 1.5)])
def test_bad_beta_range(name: str, start: float, end: float) -> None:
    with pytest.raises(ValueError, match=r"need 0 < beta_start <= beta_end < 1"):
        NoiseSchedule.from_name(name, 10, beta_start=start, beta_end=end)


@pytest.mark.parametrize("max_beta", [0.0, 1.0])
def test_bad_cosine_max_beta(max_beta: float) -> None:
    with pytest.raises(ValueError, match="max_beta must be in"):
        cosine_betas(10, max_beta=max_beta)


@pytest.fixture
def sched() -> NoiseSchedule:
    return NoiseSchedule.from_name("linear", 10)


@pytest.mark.parametrize("t", [-1, 10, torch.tensor([0, 10]), torch.tensor([-1, 3])])
def test_t_out_of_range(sched: NoiseSchedule, t: int | torch.Tensor) -> None:
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.9 .*T=10"):
        sched.add_noise(x0, torch.zeros_like(x0), t)
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.9"):
        sched.snr(t)


def test_float_t_tensor(sched: NoiseSchedule) -> None:
    x0 = torch.zeros(2, 3)
    with pytest.raises(TypeError, match=r"integer step indices.*float32.*t\.long\(\)"):
        sched.add_noise(x0, torch.zeros_like(x0), torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("t", [1.0, True, None, "3"])
def test_t_not_int_or_tensor(sched: NoiseSchedule, t: object) -> None:
    x0 = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="t must be an int"):
        sched.add_noise(x0, torch.zeros_like(x0), t)  # type: ignore[arg-type]


def test_2d_t_tensor(sched: NoiseSchedule) -> None:
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"scalar or a 1-D tensor.*\(2, 1\)"):
        sched.add_noise(x0, torch.zeros_like(x0), torch.tensor([[1], [2]]))


def test_t_batch_size_mismatch(sched: NoiseSchedule) -> None:
    x0 = torch.zeros(4, 1, 2, 2)
    with pytest.raises(ValueError, match="t has 3 steps but the batch has 4 samples"):
        sched.add_noise(x0, torch.zeros_like(x0), torch.tensor([1, 2, 3]))


def test_x0_eps_shape_mismatch(sched: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\) and \(2, 4\).*randn_like"):
        sched.add_noise(torch.zeros(2, 3), torch.zeros(2, 4), 1)


def test_integer_x0(sched: NoiseSchedule) -> None:
    with pytest.raises(TypeError, match=r"x0 must be a floating-point tensor.*int64.*x0\.float\(\)"):
        sched.add_noise(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), 1)


def test_integer_eps(sched: NoiseSchedule) -> None:
    with pytest.raises(TypeError, match=r"eps must be a floating-point tensor"):
        sched.add_noise(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.uint8), 1)


def test_non_tensor_x0(sched: NoiseSchedule) -> None:
    with pytest.raises(TypeError, match=r"x0 must be a torch\.Tensor, got list.*as_tensor"):
        sched.add_noise([[0.0, 1.0]], torch.zeros(1, 2), 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "betas", [torch.tensor([0.1, 1.0]), torch.tensor([0.1, 1.5]), torch.tensor([0.0, 0.1]),
              torch.tensor([0.1, -0.1]), torch.tensor([0.1, float("nan")])],
)
def test_from_betas_outside_unit_interval(betas: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        NoiseSchedule.from_betas(betas)


@pytest.mark.parametrize("betas", [torch.tensor([]), torch.full((2, 3), 0.1), torch.tensor(0.1)])
def test_from_betas_empty_or_not_1d(betas: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D tensor"):
        NoiseSchedule.from_betas(betas)


def test_from_betas_not_float() -> None:
    with pytest.raises(TypeError, match="betas must be a floating-point tensor"):
        NoiseSchedule.from_betas(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match=r"betas must be a torch\.Tensor, got list"):
        NoiseSchedule.from_betas([0.1, 0.2])  # type: ignore[arg-type]
