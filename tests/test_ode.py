"""Tests for diffusion_lab.ode: the probability-flow ODE solvers (Euler, Heun, DPM-Solver++(2M)) in EDM's sigma.

Three kinds of check:
- against exact answers: for data N(0, s^2 I) the best eps-model is known and the ODE only rescales x, so each
  solver's error can be measured, and Heun's must be far smaller than Euler's at equal steps;
- against references: Euler on DDIM's timesteps is DDIM (Song et al. 2021), and Euler, Heun and DPM-Solver++(2M)
  over Karras et al.'s sigmas match diffusers' EulerDiscrete, HeunDiscrete and DPMSolverMultistep schedulers;
- the shared signature: chapter 05's callback and ``record_trajectory``, network evaluations, clear errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from exact_gaussian import CountCalls, exact_ode_solution, gaussian_eps_model

from diffusion_lab.notation import sigma_range, t_to_sigma
from diffusion_lab.ode import dpmpp_2m, euler, heun, heun_step, karras_sigmas, karras_sigmas_for
from diffusion_lab.sampling import DDIMScheduler, record_trajectory, sample
from diffusion_lab.schedules import DIFFUSERS_NAMES, NoiseSchedule
from diffusion_lab.sde import dpmpp_2m_sde, reverse_sde
from diffusion_lab.tensors import append_dims

LINEAR, COSINE = NoiseSchedule.from_name("linear", 1000), NoiseSchedule.from_name("cosine", 1000)
SOLVERS = [euler, heun, dpmpp_2m]
# diffusers turns its torch alphas_cumprod into numpy inside set_timesteps, which numpy 2 warns about
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
S = 0.5  # the data's std


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear stand-in for a network that reads t (whole or fractional)."""
    return 0.9 * x + 0.1 * torch.sin(3 * x) + 0.01 * append_dims(t.to(x.dtype), x.ndim) / 1000


def _factor_error(solver, schedule: NoiseSchedule, steps: int) -> float:
    """For the Gaussian, every solver maps x_T to c x_T (all is linear in x): return c / c_exact - 1."""
    sigmas = karras_sigmas_for(schedule, steps)
    x_T = torch.ones(1, 1, dtype=torch.float64)
    x0 = solver(gaussian_eps_model(schedule, S), schedule, x_T, sigmas)
    return float(x0 / exact_ode_solution(x_T, S, float(sigmas[0]))) - 1


# ----- Karras et al.'s noise levels -------------------------------------------------------------------------


def test_karras_sigmas_follow_edm_eq_5() -> None:
    n, lo, hi, rho = 6, 0.01, 80.0, 7.0
    got = karras_sigmas(n, lo, hi, rho)
    want = [(hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for i in range(n)] + [0.0]
    assert got.dtype == torch.float64 and got.shape == (n + 1,)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)
    assert got[0] == hi and got[-2] == lo and got[-1] == 0  # the ends exactly
    assert karras_sigmas(1, lo, hi).tolist() == [hi, 0.0]
    uniform = karras_sigmas(5, 1.0, 5.0, rho=1.0)
    torch.testing.assert_close(uniform, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, r"n \(the number of steps\) must be a positive int, got 0"),
    ({"sigma_min": 2.0, "sigma_max": 1.0}, r"need 0 < sigma_min <= sigma_max"),
    ({"sigma_min": 0.0}, r"need 0 < sigma_min <= sigma_max"),
    ({"rho": -1.0}, r"rho must be a positive number"),
])
def test_karras_sigmas_bad_arguments(kwargs, message) -> None:
    args = {"n": 5, "sigma_min": 0.1, "sigma_max": 10.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        karras_sigmas(**args)


# ----- exact answers: data N(0, s^2 I) -----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_solvers_converge_to_the_exact_ode_solution(schedule: NoiseSchedule) -> None:
    """Euler is first order (twice the steps, half the error), Heun and DPM-Solver++(2M) second (a quarter)."""
    errors = {f.__name__: [abs(_factor_error(f, schedule, k)) for k in (10, 20, 40, 80)] for f in SOLVERS}
    for name, order in (("euler", 2.0), ("heun", 4.0), ("dpmpp_2m", 4.0)):
        for coarse, fine in zip(errors[name][1:], errors[name][2:]):
            assert order * 0.8 < coarse / fine < order * 1.3, (name, errors)
    for k in range(4):
        assert errors["heun"][k] < errors["euler"][k], errors  # more accurate at equal steps
        assert errors["dpmpp_2m"][k] < errors["euler"][k] / 2, errors  # at equal network evaluations
    assert errors["dpmpp_2m"][0] < 0.15 and errors["dpmpp_2m"][1] < 0.05, errors  # 10 and 20 evaluations
    assert errors["heun"][2] < 0.01 and errors["euler"][3] < 0.04, errors


@pytest.mark.parametrize("solver, steps", [(euler, 200), (heun, 40), (dpmpp_2m, 40)], ids=["euler", "heun", "dpmpp_2m"])
def test_samples_have_the_datas_spread(solver, steps: int) -> None:
    x_T = torch.randn(4000, 2, generator=_gen(1))
    x0 = solver(gaussian_eps_model(COSINE, S), COSINE, x_T, karras_sigmas_for(COSINE, steps))
    assert x0.std().item() == pytest.approx(S, rel=0.03)
    assert abs(x0.mean().item()) < 0.03


def test_the_top_of_the_cosine_schedule_is_skipped() -> None:
    """From sigma = 2e4 a few steps are wasted; from sigma = 80 (EDM) the same steps go where the data form."""
    full = karras_sigmas(20, *sigma_range(COSINE))
    x_T = torch.ones(1, 1, dtype=torch.float64)
    model = gaussian_eps_model(COSINE, S)
    err_full = abs(float(heun(model, COSINE, x_T, full) / exact_ode_solution(x_T, S, float(full[0]))) - 1)
    assert abs(_factor_error(heun, COSINE, 20)) < err_full / 4
    assert float(karras_sigmas_for(COSINE, 20)[0]) == 80.0 and float(karras_sigmas_for(LINEAR, 5)[-2]) == sigma_range(
        LINEAR)[0]


def test_heun_on_the_exact_denoiser_is_second_order() -> None:
    """Halving the step divides Heun's error by about 4 (one step, the exact D, in EDM's scaling)."""
    def denoise(x, sigma):
        return x * S**2 / (S**2 + sigma**2)

    x = torch.randn(10, generator=_gen(2), dtype=torch.float64) * math.sqrt(S**2 + 4.0)
    exact = lambda sigma_next: x * math.sqrt((S**2 + sigma_next**2) / (S**2 + 4.0))  # noqa: E731
    e1 = (heun_step(denoise, x, 2.0, 1.6) - exact(1.6)).abs().max()
    e2 = (heun_step(denoise, heun_step(denoise, x, 2.0, 1.8), 1.8, 1.6) - exact(1.6)).abs().max()
    assert 3.0 < float(e1 / e2) < 5.0


# ----- references: DDIM, diffusers ---------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [False, True])
def test_euler_on_ddims_timesteps_is_ddim(clip: bool) -> None:
    """Song et al. 2021: DDIM is Euler's method on the ODE in x / alpha and sigma. Same x_T, same steps."""
    schedule = LINEAR
    ddim = DDIMScheduler(schedule, eta=0.0, clip_sample=clip)
    ddim.set_timesteps(10)
    x_T = torch.randn(4, 3, 8, 8, generator=_gen(3))
    theirs = record_trajectory()
    want = sample(toy_model, ddim, x_T.shape, x_T=x_T, callback=theirs)
    sigmas = torch.cat([t_to_sigma(schedule, ddim.timesteps), torch.zeros(1, dtype=torch.float64)])
    ours = record_trajectory()
    got = euler(toy_model, schedule, x_T, sigmas, callback=ours, clip=1.0 if clip else None)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert ours.timesteps == ddim.timesteps.tolist()  # whole steps, reported as chapter 05 does
    for a, b in zip(ours.xts + ours.pred_x0s, theirs.xts + theirs.pred_x0s):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _ref_loop(ref, x: torch.Tensor, model, scale_input: bool) -> torch.Tensor:
    """diffusers' pipeline loop: for t in timesteps: eps = model(scaled x, t); x = step(eps, t, x)."""
    for t in ref.timesteps:
        inp = ref.scale_model_input(x, t) if scale_input else x
        x = ref.step(model(inp, t.float().expand(x.shape[0])), t, x).prev_sample
    return x


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("solver", [euler, heun], ids=lambda f: f.__name__)
def test_euler_and_heun_match_diffusers(name: str, solver) -> None:
    diffusers = pytest.importorskip("diffusers")
    make = {euler: diffusers.EulerDiscreteScheduler, heun: diffusers.HeunDiscreteScheduler}[solver]
    ref = make(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name], use_karras_sigmas=True,
               timestep_spacing="linspace", prediction_type="epsilon")
    schedule = NoiseSchedule.from_name(name, 1000)
    ref.alphas_cumprod = schedule.alpha_bars.clone()  # the same alpha_bars: compare the algorithms only
    ref.set_timesteps(8)
    ref.set_begin_index(0)  # the cosine schedule's top steps round to repeated timesteps: say where to start
    ours = karras_sigmas(8, *sigma_range(schedule))
    torch.testing.assert_close(ref.sigmas.unique_consecutive().double(), ours, rtol=1e-5, atol=0)
    x_T = torch.randn(3, 1, 6, 6, generator=_gen(4))
    counted = CountCalls(toy_model)
    want = _ref_loop(ref, x_T * math.sqrt(1 + float(ours[0]) ** 2), counted, scale_input=True)
    assert counted.calls == len(ref.timesteps)
    # diffusers steps in float32 from sigma = 2e4 (cosine), where x is 2e4 times larger than the data: 5e-4
    torch.testing.assert_close(solver(toy_model, schedule, x_T, ours), want, rtol=1e-4, atol=5e-4)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_dpmpp_2m_matches_diffusers(name: str) -> None:
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name], algorithm_type="dpmsolver++", solver_order=2,
        solver_type="midpoint", use_karras_sigmas=True, final_sigmas_type="zero", lower_order_final=True)
    schedule = NoiseSchedule.from_name(name, 1000)
    ref.alphas_cumprod = schedule.alpha_bars.clone()
    ref.set_timesteps(8)
    ref.set_begin_index(0)
    ours = karras_sigmas(8, *sigma_range(schedule))
    torch.testing.assert_close(ref.sigmas.double(), ours, rtol=1e-5, atol=0)

    def model(x, t):  # diffusers rounds DPM-Solver's timesteps to whole steps: a model that ignores t
        return 0.9 * x + 0.1 * torch.sin(3 * x)

    x_T = torch.randn(3, 1, 6, 6, generator=_gen(5))
    want = _ref_loop(ref, x_T, model, scale_input=False)
    torch.testing.assert_close(dpmpp_2m(model, schedule, x_T, ours), want, rtol=1e-4, atol=5e-4)


def test_dpmpp_2m_first_step_is_euler() -> None:
    """Without a previous D, DPM-Solver++'s step is first order: Euler's (DDIM's)."""
    schedule, x_T = LINEAR, torch.randn(2, 4, generator=_gen(6))
    sigmas = karras_sigmas(5, *sigma_range(schedule))
    firsts = []
    for solver in (euler, dpmpp_2m):
        traj = record_trajectory()
        solver(toy_model, schedule, x_T, sigmas, callback=traj)
        firsts.append(traj.xts[0])
    torch.testing.assert_close(firsts[0], firsts[1])


# ----- the shared signature ----------------------------------------------------------------------------------


@pytest.mark.parametrize("solver, nfe", [(euler, lambda k: k), (heun, lambda k: 2 * k - 1),
                                         (dpmpp_2m, lambda k: k), (reverse_sde, lambda k: k),
                                         (dpmpp_2m_sde, lambda k: k)],
                         ids=["euler", "heun", "dpmpp_2m", "reverse_sde", "dpmpp_2m_sde"])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_network_evaluations(solver, nfe, steps: int) -> None:
    counted = CountCalls(toy_model)
    solver(counted, LINEAR, torch.randn(2, 3, generator=_gen(7)), karras_sigmas(steps, *sigma_range(LINEAR)),
           generator=_gen(8))
    assert counted.calls == nfe(steps)
    assert all(t.dtype == torch.float32 and t.shape == (2,) for t in counted.ts)  # float steps, one per sample
    assert float(counted.ts[0][0]) == 999.0  # the first evaluation is at the schedule's last step


@pytest.mark.parametrize("solver", SOLVERS + [reverse_sde, dpmpp_2m_sde], ids=lambda f: f.__name__)
def test_callback_is_chapter_05s(solver) -> None:
    x_T = torch.randn(3, 1, 4, 4, generator=_gen(9))
    calls = []
    traj = record_trajectory(every=3)
    sigmas = karras_sigmas(5, *sigma_range(COSINE))

    def callback(i, t, xt, pred_x0):
        calls.append((i, t, xt.shape, pred_x0.shape))
        traj(i, t, xt, pred_x0)

    x0 = solver(toy_model, COSINE, x_T, sigmas, callback=callback, generator=_gen(10))
    assert [c[0] for c in calls] == list(range(5))
    ts = [c[1] for c in calls]
    assert ts[0] == 999.0 and ts[-1] == 0.0 and ts == sorted(ts, reverse=True)
    assert all(c[2] == x_T.shape and c[3] == x_T.shape for c in calls)
    assert traj.steps == [0, 3, 4]  # every 3rd, and the last (t = 0), as for chapter 05's loop
    torch.testing.assert_close(traj.xts[-1], x0)


def test_callbacks_xt_is_in_the_courses_scaling() -> None:
    """After step i, xt = alpha x at sigma_{i+1}: for the exact model its spread is that of x_t, near 1 early on."""
    x_T = torch.randn(2000, 2, generator=_gen(11))
    traj = record_trajectory()
    heun(gaussian_eps_model(COSINE, S), COSINE, x_T, karras_sigmas_for(COSINE, 40), callback=traj)
    assert traj.xts[0].std().item() == pytest.approx(1.0, rel=0.05)
    assert traj.xts[-1].std().item() == pytest.approx(S, rel=0.05)


def test_deterministic_no_gradients_and_dtype() -> None:
    x_T = torch.randn(2, 3, generator=_gen(12), dtype=torch.float64)
    sigmas = karras_sigmas(4, *sigma_range(LINEAR))
    for solver in SOLVERS:
        a = solver(toy_model, LINEAR, x_T, sigmas, generator=_gen(1))
        b = solver(toy_model, LINEAR, x_T, sigmas, generator=_gen(2))
        assert torch.equal(a, b) and a.dtype == torch.float64 and not a.requires_grad


def test_clip_keeps_the_guess_in_range() -> None:
    traj = record_trajectory()
    heun(lambda x, t: -3 * x, LINEAR, torch.randn(4, 2, generator=_gen(13)), karras_sigmas(4, *sigma_range(LINEAR)),
         callback=traj, clip=1.0)
    assert all(p.abs().max() <= 1.0 for p in traj.pred_x0s)


@pytest.mark.parametrize("sigmas, message", [
    (torch.tensor([10.0, 1.0]), r"sigmas must fall strictly and end in 0"),
    (torch.tensor([1.0, 10.0, 0.0]), r"sigmas must fall strictly and end in 0"),
    (torch.tensor([1e6, 1.0, 0.0]), r"sigma must lie in \[.*\] \(the noise levels this schedule's model was"),
    (torch.tensor([0.0]), r"sigmas must be a 1-D float tensor"),
    ([10.0, 0.0], r"sigmas must be a 1-D float tensor"),
])
def test_bad_sigmas_are_clear_errors(sigmas, message) -> None:
    for solver in SOLVERS + [reverse_sde]:
        with pytest.raises(ValueError, match=message):
            solver(toy_model, LINEAR, torch.randn(2, 2), sigmas)


def test_bad_x_T_and_clip() -> None:
    sigmas = karras_sigmas(2, *sigma_range(LINEAR))
    with pytest.raises(TypeError, match="x_T must be a torch.Tensor"):
        euler(toy_model, LINEAR, [[0.0]], sigmas)
    with pytest.raises(ValueError, match="clip must be a positive number"):
        heun(toy_model, LINEAR, torch.randn(2, 2), sigmas, clip=-1.0)
