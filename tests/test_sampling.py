"""Tests for diffusion_lab.sampling: against diffusers' DDPM/DDIM schedulers, exact 2-D answers, the loop.

Two kinds of comparison with diffusers:
- "stock": diffusers builds its own alphas_cumprod (a float32 cumprod), ours comes from a float64 cumprod,
  so the two differ by float32 rounding (about 1e-7 relative, tested in test_schedules.py); tolerances
  below are sized for that.
- "same alpha_bars": diffusers' ``alphas_cumprod`` is replaced by ours, so only the step algorithm is
  compared; the results then agree to float32 rounding of the arithmetic (1e-6).
Noise: diffusers draws its step noise with ``randn_tensor(model_output.shape, generator, dtype)``, i.e.
``torch.randn`` on the generator's device; ours draws the same shape, dtype and device in the same order
(none at DDPM's t = 0, every step for DDIM with eta > 0), so one seed gives both sides the same z. The
tests check that by comparing the generators' states after stepping.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion_lab.sampling import (
    DDIMScheduler,
    DDPMScheduler,
    StepOutput,
    Trajectory,
    ddim_sigma,
    ddim_step,
    ddpm_step,
    posterior_mean_variance,
    predict_x0,
    record_trajectory,
    sample,
)
from diffusion_lab.schedules import DIFFUSERS_NAMES, NoiseSchedule
from diffusion_lab.tensors import append_dims

diffusers = pytest.importorskip("diffusers")

T = 1000
NAMES = ["linear", "cosine"]
SHAPE = (4, 3, 8, 8)  # (B, C, H, W)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for a trained network. 0.9 x (not 0.1 x) keeps samples of order 1, so absolute
    tolerances mean something; the t term makes the output depend on the step."""
    return 0.9 * x + 0.01 * append_dims(t.to(x.dtype), x.ndim) / 1000


def _ref_ddpm(name: str, clip: bool = True, same_alpha_bars: bool = False):
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T, beta_schedule=DIFFUSERS_NAMES[name], variance_type="fixed_small",
        clip_sample=clip, prediction_type="epsilon", timestep_spacing="leading", steps_offset=0,
    )
    if same_alpha_bars:
        ref.alphas_cumprod = NoiseSchedule.from_name(name, T).alpha_bars.clone()
    return ref


def _ref_ddim(name: str, clip: bool = True, same_alpha_bars: bool = False):
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule=DIFFUSERS_NAMES[name], clip_sample=clip, set_alpha_to_one=True,
        steps_offset=0, prediction_type="epsilon", timestep_spacing="leading",
    )
    if same_alpha_bars:
        ref.alphas_cumprod = NoiseSchedule.from_name(name, T).alpha_bars.clone()
    return ref


def _ref_loop(ref, x_T: torch.Tensor, generator: torch.Generator | None = None, **step_kwargs):
    """diffusers' pipeline loop, written out: for t in timesteps: eps = model(x, t); x = step(...)."""
    x = x_T
    for t in ref.timesteps:
        eps = toy_model(x, t.expand(x.shape[0]))
        x = ref.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    return x


def _xt_eps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(SHAPE, generator=_gen(seed)), torch.randn(SHAPE, generator=_gen(seed + 1))


# ----- one step against diffusers ----------------------------------------------------------------

# Tolerances for one step: with the same alpha_bars the algorithms agree to float32 arithmetic (in fact
# bit for bit today). Stock diffusers' float32 cumprod differs from ours by ~1 ulp, and near t = 0 the
# posterior coefficients (1 - abar_t / abar_prev) / (1 - abar_t) cancel, amplifying that to ~3e-4 relative.
TOLS = {True: dict(rtol=1e-6, atol=1e-6), False: dict(rtol=1e-3, atol=1e-3)}


@pytest.mark.parametrize("same", [True, False], ids=["same_alpha_bars", "stock"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_ddpm_one_step_matches_diffusers(name: str, clip: bool, same: bool) -> None:
    ours = DDPMScheduler(NoiseSchedule.from_name(name, T), clip_sample=clip)
    ref = _ref_ddpm(name, clip, same_alpha_bars=same)
    xt, eps = _xt_eps()
    for t in [0, 1, 2, 500, T - 2, T - 1]:
        g_ours, g_ref = _gen(7), _gen(7)
        out = ours.step(eps, t, xt, generator=g_ours)
        exp = ref.step(eps, torch.tensor(t), xt, generator=g_ref)
        assert isinstance(out, StepOutput)
        assert torch.equal(g_ours.get_state(), g_ref.get_state())  # same noise draws (none at t = 0)
        torch.testing.assert_close(out.pred_x0, exp.pred_original_sample, **TOLS[same])
        torch.testing.assert_close(out.prev_sample, exp.prev_sample, **TOLS[same])


@pytest.mark.parametrize("same", [True, False], ids=["same_alpha_bars", "stock"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_ddim_one_step_matches_diffusers(name: str, clip: bool, eta: float, same: bool) -> None:
    """With diffusers' default use_clipped_model_output=False (ours is True: tested below)."""
    ours = DDIMScheduler(NoiseSchedule.from_name(name, T), eta=eta, clip_sample=clip, use_clipped_model_output=False)
    ref = _ref_ddim(name, clip, same_alpha_bars=same)
    ours.set_timesteps(20)
    ref.set_timesteps(20)
    xt, eps = _xt_eps(3)
    for t in ours.timesteps.tolist():
        g_ours, g_ref = _gen(11), _gen(11)
        out = ours.step(3 * eps, t, xt, generator=g_ours)  # 3 eps: pred_x0 leaves [-1, 1], so clip acts
        exp = ref.step(3 * eps, t, xt, eta=eta, generator=g_ref)
        assert torch.equal(g_ours.get_state(), g_ref.get_state())  # eta > 0: one draw per step, as diffusers
        torch.testing.assert_close(out.pred_x0, exp.pred_original_sample, **TOLS[same])
        torch.testing.assert_close(out.prev_sample, exp.prev_sample, **TOLS[same])


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("name", NAMES)
def test_ddim_clipped_model_output_matches_diffusers(name: str, eta: float) -> None:
    """use_clipped_model_output=True (our default) re-derives eps from the clamped x_0, as diffusers' step does."""
    ours = DDIMScheduler(NoiseSchedule.from_name(name, T), eta=eta)
    assert ours.use_clipped_model_output
    ref = _ref_ddim(name, True, same_alpha_bars=True)
    ours.set_timesteps(20)
    ref.set_timesteps(20)
    xt, eps = _xt_eps(3)
    plain = DDIMScheduler(NoiseSchedule.from_name(name, T), eta=eta, use_clipped_model_output=False)
    plain.set_timesteps(20)
    for t in ours.timesteps.tolist():
        out = ours.step(3 * eps, t, xt, generator=_gen(11))
        exp = ref.step(3 * eps, t, xt, eta=eta, use_clipped_model_output=True, generator=_gen(11))
        torch.testing.assert_close(out.prev_sample, exp.prev_sample, **TOLS[True])
    assert not torch.allclose(plain.step(3 * eps, 950, xt, generator=_gen(1)).prev_sample,
                              ours.step(3 * eps, 950, xt, generator=_gen(1)).prev_sample)
    with pytest.raises(TypeError, match="use_clipped_model_output must be True or False"):
        DDIMScheduler(NoiseSchedule.from_name(name, T), use_clipped_model_output=1)


# ----- timesteps and full loops against diffusers ------------------------------------------------

@pytest.mark.parametrize("K", [1, 3, 7, 10, 50, 999, 1000])
def test_timesteps_match_diffusers_leading_spacing(K: int) -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    pairs = [(DDPMScheduler(schedule), _ref_ddpm("linear")), (DDIMScheduler(schedule), _ref_ddim("linear"))]
    for ours, ref in pairs:
        ours.set_timesteps(K)
        ref.set_timesteps(K)
        assert ours.timesteps.dtype == torch.int64
        assert torch.equal(ours.timesteps, ref.timesteps)
        assert ours.timesteps.tolist() == sorted(ours.timesteps.tolist(), reverse=True)


def test_ddpm_default_timesteps_are_all_T_steps() -> None:
    ours = DDPMScheduler(NoiseSchedule.from_name("linear", T))
    assert ours.timesteps.tolist() == list(range(T - 1, -1, -1))


@pytest.mark.parametrize("K", [10, 50])
@pytest.mark.parametrize("name", NAMES)
def test_ddim_eta0_full_loop_matches_diffusers(name: str, K: int) -> None:
    x_T = torch.randn(SHAPE, generator=_gen(0))
    ours = DDIMScheduler(NoiseSchedule.from_name(name, T))
    ours.set_timesteps(K)
    got = sample(toy_model, ours, SHAPE, x_T=x_T)
    for same, tol in [(False, 1e-5), (True, 1e-6)]:  # stock diffusers; same alpha_bars
        ref = _ref_ddim(name, same_alpha_bars=same)
        ref.set_timesteps(K)
        torch.testing.assert_close(got, _ref_loop(ref, x_T, eta=0.0, use_clipped_model_output=True), rtol=0, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_ddim_eta_full_loop_matches_diffusers(name: str) -> None:
    x_T = torch.randn(SHAPE, generator=_gen(0))
    ours = DDIMScheduler(NoiseSchedule.from_name(name, T), eta=0.7)
    ours.set_timesteps(25)
    got = sample(toy_model, ours, SHAPE, x_T=x_T, generator=_gen(5))
    ref = _ref_ddim(name, same_alpha_bars=True)
    ref.set_timesteps(25)
    torch.testing.assert_close(got, _ref_loop(ref, x_T, _gen(5), eta=0.7, use_clipped_model_output=True),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_ddpm_full_1000_step_loop_matches_diffusers(name: str) -> None:
    x_T = torch.randn(SHAPE, generator=_gen(0))
    ours = DDPMScheduler(NoiseSchedule.from_name(name, T))
    got = sample(toy_model, ours, SHAPE, x_T=x_T, generator=_gen(9))
    # stock diffusers: float32 alpha_bar rounding, amplified by 1/sqrt(abar_t) at large t, adds up over
    # 1000 steps to ~5e-5; with the same alpha_bars the loops agree to float32 arithmetic.
    for same, tol in [(False, 2e-4), (True, 1e-6)]:
        ref = _ref_ddpm(name, same_alpha_bars=same)
        torch.testing.assert_close(got, _ref_loop(ref, x_T, _gen(9)), rtol=0, atol=tol)


@pytest.mark.parametrize("K", [7, 100])
def test_ddpm_fewer_steps_matches_diffusers(K: int) -> None:
    x_T = torch.randn(SHAPE, generator=_gen(0))
    ours = DDPMScheduler(NoiseSchedule.from_name("linear", T))
    ours.set_timesteps(K)
    got = sample(toy_model, ours, SHAPE, x_T=x_T, generator=_gen(4))
    ref = _ref_ddpm("linear", same_alpha_bars=True)
    ref.set_timesteps(K)
    torch.testing.assert_close(got, _ref_loop(ref, x_T, _gen(4)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("make", [_ref_ddim, _ref_ddpm])
def test_sample_runs_diffusers_schedulers_too(make) -> None:
    """Chapter 05 swaps diffusers' scheduler into our loop and compares."""
    ref = make("linear", same_alpha_bars=True)
    ref.set_timesteps(20)
    schedule = NoiseSchedule.from_name("linear", T)
    ours = (DDIMScheduler(schedule, use_clipped_model_output=False) if isinstance(ref, diffusers.DDIMScheduler)
            else DDPMScheduler(schedule))
    ours.set_timesteps(20)
    seen: list[int] = []
    a = sample(toy_model, ref, SHAPE, generator=_gen(2), callback=lambda i, t, x, x0: seen.append(t))
    b = sample(toy_model, ours, SHAPE, generator=_gen(2))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert seen == ours.timesteps.tolist()


# ----- formulas against hand computations ---------------------------------------------------------

def test_predict_x0_and_clip_by_hand() -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    xt, eps = _xt_eps()
    t = torch.tensor([0, 10, 500, 999])
    abar = schedule.alpha_bars.double()[t].view(4, 1, 1, 1)  # hand computation, float64
    expected = (xt.double() - (1 - abar).sqrt() * eps.double()) / abar.sqrt()
    # float64 inputs: float64 arithmetic, equal to the hand computation; float32: cancellation in
    # x_t - sqrt(1 - abar) eps, times 1 / sqrt(abar_999) ~ 160, costs ~1e-5.
    got64 = predict_x0(schedule, xt.double(), eps.double(), t)
    torch.testing.assert_close(got64, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(predict_x0(schedule, xt, eps, t), expected.float(), rtol=0, atol=1e-4)
    clipped = predict_x0(schedule, xt, eps, t, clip=True)
    assert clipped.min() == -1 and clipped.max() == 1  # some values were out of range
    torch.testing.assert_close(clipped, expected.float().clamp(-1, 1), rtol=0, atol=1e-4)
    # with the true noise, predict_x0 inverts add_noise
    x0 = torch.rand(SHAPE, generator=_gen(5)) * 2 - 1
    xt_true = schedule.add_noise(x0, eps, t)
    torch.testing.assert_close(predict_x0(schedule, xt_true, eps, t), x0, rtol=0, atol=1e-3)


def test_posterior_by_hand() -> None:
    """DDPM eq. 6-7, computed by hand in float64 from the stored alpha_bars. The function computes in its
    inputs' dtype (as diffusers does): exact for float64; for float32, 1 - abar_t / abar_prev cancels near
    t = 0 and costs ~1e-3 relative in the coefficients."""
    schedule = NoiseSchedule.from_name("cosine", T)
    xt, x0 = _xt_eps(8)
    ab = schedule.alpha_bars.double()
    for t in [1, 2, 300, 999]:
        alpha_t = ab[t] / ab[t - 1]  # the schedule's alpha_t, up to float32 rounding of alpha_bars
        assert abs(float(alpha_t - schedule.alphas[t])) < 1e-6
        coef_x0 = ab[t - 1].sqrt() * (1 - alpha_t) / (1 - ab[t])
        coef_xt = alpha_t.sqrt() * (1 - ab[t - 1]) / (1 - ab[t])
        beta_tilde = (1 - ab[t - 1]) / (1 - ab[t]) * (1 - alpha_t)
        expected = coef_x0 * x0.double() + coef_xt * xt.double()
        mean, var = posterior_mean_variance(schedule, x0.double(), xt.double(), t)
        torch.testing.assert_close(mean, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var.reshape(()), beta_tilde, rtol=1e-12, atol=0)
        mean, var = posterior_mean_variance(schedule, x0, xt, t)
        torch.testing.assert_close(mean, expected.float(), rtol=0, atol=2e-4)
        torch.testing.assert_close(var.double().reshape(()), beta_tilde, rtol=2e-3, atol=0)
        assert float(var) <= float(schedule.betas[t]) + 1e-7  # beta_tilde_t <= beta_t
    mean, var = posterior_mean_variance(schedule, x0, xt, 0)  # abar_{-1} = 1: x_{-1} is x_0, no noise
    torch.testing.assert_close(mean, x0)
    assert float(var) == 0.0
    # per-sample t gives per-sample variances shaped for broadcasting
    _, var = posterior_mean_variance(schedule, x0, xt, torch.tensor([0, 1, 2, 3]))
    assert var.shape == (4, 1, 1, 1)


def test_ddim_with_eta_one_has_the_ddpm_posterior_noise() -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    ab = schedule.alpha_bars
    for t in [1, 50, 999]:
        _, var = posterior_mean_variance(schedule, torch.zeros(1), torch.zeros(1), t)
        torch.testing.assert_close(ddim_sigma(ab[t], ab[t - 1], 1.0) ** 2, var.reshape(()), rtol=1e-5, atol=0)
        assert float(ddim_sigma(ab[t], ab[t - 1], 0.0)) == 0.0


def test_pure_steps_are_deterministic_given_noise() -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    xt, eps = _xt_eps()
    z = torch.randn(SHAPE, generator=_gen(3))
    a = ddpm_step(schedule, xt, eps, 10, 9, z)
    mean, var = posterior_mean_variance(schedule, a.pred_x0, xt, 10)
    torch.testing.assert_close(a.prev_sample, mean + var.sqrt() * z)
    torch.testing.assert_close(ddpm_step(schedule, xt, eps, 10, 9, None).prev_sample, mean)
    b = ddim_step(schedule, xt, eps, 10, 5, eta=0.0)
    ab10, ab5 = schedule.alpha_bars[10], schedule.alpha_bars[5]
    torch.testing.assert_close(b.prev_sample, ab5.sqrt() * b.pred_x0 + (1 - ab5).sqrt() * eps)
    torch.testing.assert_close(b.pred_x0, (xt - (1 - ab10).sqrt() * eps) / ab10.sqrt())


# ----- exact answers: data that is a single point -------------------------------------------------

def _delta_model(schedule: NoiseSchedule, x_star: torch.Tensor):
    """The exact eps-prediction when all data is the point x*:

    eps(x_t, t) = (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t)
    """

    def model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = append_dims(schedule.alpha_bars[t].to(xt.dtype), xt.ndim)
        return (xt - abar.sqrt() * x_star) / (1 - abar).sqrt()

    return model


@pytest.mark.parametrize("name", NAMES)
def test_exact_model_for_a_point_lands_on_the_point(name: str) -> None:
    schedule = NoiseSchedule.from_name(name, T)
    x_star = torch.tensor([0.5, -1.0])  # (2,)
    model = _delta_model(schedule, x_star)
    target = x_star.expand(64, 2)
    for K in [5, 50]:
        ddim = DDIMScheduler(schedule)
        ddim.set_timesteps(K)
        x_T = 3 * torch.randn(64, 2, generator=_gen(K))  # "any x_T": even far from N(0, I)
        torch.testing.assert_close(sample(model, ddim, (64, 2), x_T=x_T), target, rtol=0, atol=1e-4)
    ddpm = sample(model, DDPMScheduler(schedule), (64, 2), generator=_gen(1))
    torch.testing.assert_close(ddpm, target, rtol=0, atol=1e-3)
    ddim_noisy = DDIMScheduler(schedule, eta=1.0)
    ddim_noisy.set_timesteps(20)
    noisy = sample(model, ddim_noisy, (64, 2), generator=_gen(2))
    torch.testing.assert_close(noisy, target, rtol=0, atol=1e-3)


# ----- the loop: callbacks, trajectories, devices, randomness ------------------------------------

def test_callback_sees_every_step_in_order_with_pred_x0() -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    scheduler = DDIMScheduler(schedule)
    scheduler.set_timesteps(10)
    inputs: list[torch.Tensor] = []

    def model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.dtype == torch.int64 and t.shape == (SHAPE[0],)
        inputs.append(xt)
        return toy_model(xt, t)

    calls: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
    out = sample(model, scheduler, SHAPE, generator=_gen(0), callback=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == list(range(10))
    assert [c[1] for c in calls] == scheduler.timesteps.tolist()
    for (i, t, xt, x0), x_in in zip(calls, inputs):
        eps = toy_model(x_in, torch.full((SHAPE[0],), t))
        torch.testing.assert_close(x0, predict_x0(schedule, x_in, eps, t, clip=True))  # the guess made at t
        if i + 1 < len(inputs):
            assert xt is inputs[i + 1]  # the sample after step i is the model's next input
    assert calls[-1][2] is out


def test_trajectory_records_chosen_steps_and_the_last() -> None:
    scheduler = DDIMScheduler(NoiseSchedule.from_name("linear", T))
    scheduler.set_timesteps(10)
    traj = record_trajectory(every=4)
    out = sample(toy_model, scheduler, SHAPE, generator=_gen(0), callback=traj)
    assert isinstance(traj, Trajectory)
    assert traj.steps == [0, 4, 8, 9]
    assert traj.timesteps == [900, 500, 100, 0]
    xts, x0s = traj.stacked()
    assert xts.shape == x0s.shape == (4, *SHAPE)
    torch.testing.assert_close(xts[-1], out)
    with pytest.raises(ValueError, match="every must be a positive int"):
        record_trajectory(every=0)
    with pytest.raises(ValueError, match="trajectory is empty"):
        record_trajectory().stacked()


def test_dtype_and_device_follow_the_inputs() -> None:
    scheduler = DDIMScheduler(NoiseSchedule.from_name("linear", T))  # eta = 0: float64 noise would differ
    scheduler.set_timesteps(10)
    x_T = torch.randn(SHAPE, generator=_gen(0))
    out64 = sample(toy_model, scheduler, SHAPE, x_T=x_T.double(), generator=_gen(1))
    out32 = sample(toy_model, scheduler, SHAPE, x_T=x_T, generator=_gen(1), device="cpu")
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    torch.testing.assert_close(out64.float(), out32, rtol=0, atol=1e-4)
    drawn = sample(toy_model, scheduler, SHAPE, generator=_gen(0), device="cpu")
    assert drawn.dtype == torch.float32 and drawn.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_the_same_samples_on_cuda() -> None:
    scheduler = DDPMScheduler(NoiseSchedule.from_name("linear", T))
    scheduler.set_timesteps(50)
    cpu = sample(toy_model, scheduler, SHAPE, generator=_gen(3))
    gpu = sample(toy_model, scheduler, SHAPE, generator=_gen(3), device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_same_seed_same_samples_and_no_gradients() -> None:
    scheduler = DDPMScheduler(NoiseSchedule.from_name("cosine", T))
    scheduler.set_timesteps(30)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    a = sample(lambda x, t: net(x), scheduler, SHAPE, generator=_gen(0))
    b = sample(lambda x, t: net(x), scheduler, SHAPE, generator=_gen(0))
    c = sample(lambda x, t: net(x), scheduler, SHAPE, generator=_gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not a.requires_grad


def test_step_output_is_frozen_with_diffusers_alias() -> None:
    out = StepOutput(prev_sample=torch.zeros(1), pred_x0=torch.ones(1))
    assert out.pred_original_sample is out.pred_x0
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.prev_sample = torch.ones(1)  # type: ignore[misc]


# ----- bad input ---------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors() -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    ddim = DDIMScheduler(schedule)
    xt, eps = _xt_eps()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        ddim.step(eps, 999, xt)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sample(toy_model, ddim, SHAPE)
    for bad in [0, -3, T + 1]:
        with pytest.raises(ValueError, match="num_inference_steps must be between 1 and T=1000"):
            ddim.set_timesteps(bad)
    for bad in [10.0, True]:
        with pytest.raises(TypeError, match="num_inference_steps must be an int"):
            ddim.set_timesteps(bad)  # type: ignore[arg-type]
    for bad in [-0.1, 1.5]:
        with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
            DDIMScheduler(schedule, eta=bad)
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        DDPMScheduler("linear")  # type: ignore[arg-type]
    ddim.set_timesteps(10)
    with pytest.raises(ValueError, match="t=5 is not one of this scheduler's timesteps"):
        ddim.step(eps, 5, xt)
    for bad in [T, -1]:
        with pytest.raises(ValueError, match="t must lie in 0..999"):
            ddim.step(eps, bad, xt)
    with pytest.raises(TypeError, match="integer step indices"):
        ddim.step(eps, torch.tensor(900.0), xt)
    with pytest.raises(ValueError, match="one t for the whole batch"):
        ddim.step(eps, torch.tensor([900, 800]), xt)
    with pytest.raises(ValueError, match="eps_pred and xt must have the same shape"):
        ddim.step(eps[:, :1], 900, xt)
    with pytest.raises(ValueError, match="eps_pred and xt must have the same shape"):
        sample(lambda x, t: x[:, :1], ddim, SHAPE)
    with pytest.raises(ValueError, match="x_T has shape"):
        sample(toy_model, ddim, SHAPE, x_T=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="eta > 0 needs noise"):
        ddim_step(schedule, xt, eps, 10, 0, eta=0.5)
    with pytest.raises(ValueError, match="t_prev must be smaller than t"):
        posterior_mean_variance(schedule, xt, xt, 5, 5)
    with pytest.raises(ValueError, match="t has 3 steps but the batch has 4"):
        predict_x0(schedule, xt, eps, torch.tensor([1, 2, 3]))


def test_default_clipping_keeps_the_cosine_schedules_first_guess_in_range() -> None:
    """At t = T-1 the cosine schedule keeps sqrt(abar) ~ 5e-5 of x_0: an eps error of 0.05 becomes a guess
    of x_0 off by ~1000, which ruined DDPM samples of a trained MNIST model. Clipping the guess (the
    default, as in diffusers) keeps it in the data's range."""
    schedule = NoiseSchedule.from_name("cosine", 1000)
    x0 = torch.rand(SHAPE, generator=_gen(0)) * 2 - 1
    eps = torch.randn(SHAPE, generator=_gen(1))
    xt = schedule.add_noise(x0, eps, 999)
    eps_pred = eps + 0.05  # a good model's error at that step
    default, unclipped = DDPMScheduler(schedule), DDPMScheduler(schedule, clip_sample=False)
    assert default.step(eps_pred, 999, xt, generator=_gen(2)).pred_x0.abs().max() <= 1.0
    assert unclipped.step(eps_pred, 999, xt, generator=_gen(2)).pred_x0.abs().min() > 100


def test_clip_sample_range_is_checked_and_used() -> None:
    schedule = NoiseSchedule.from_name("linear", T)
    for bad in [0, -1.0, "2", True]:
        with pytest.raises(ValueError, match="clip_sample_range must be a positive number"):
            DDIMScheduler(schedule, clip_sample_range=bad)  # type: ignore[arg-type]
    wide = DDIMScheduler(schedule, clip_sample_range=3.0)
    wide.set_timesteps(5)
    t = int(wide.timesteps[0])
    xt = torch.full(SHAPE, 5.0)
    out = wide.step(torch.zeros(SHAPE), t, xt)
    assert torch.allclose(out.pred_x0, torch.full(SHAPE, 3.0))
