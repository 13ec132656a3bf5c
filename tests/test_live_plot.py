"""The live loss plot (chapter 04) draws from a training history, and the per-timestep loss curve."""

from __future__ import annotations

import pytest
import torch

from diffusion_lab.models import MLPConfig, MLPDenoiser
from diffusion_lab.notebook.live_plot import LiveLossPlot
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import DiffusionObjective, LossHistory, TrainConfig, fit, loss_by_timestep


def test_live_plot_draws_both_panels_from_a_history() -> None:
    history = LossHistory(steps=[10, 20, 30], losses=[0.9, 0.5, 0.4])
    history.add_per_sample(torch.tensor([0, 5, 95]) * 10 // 100, torch.tensor([1.0, 0.8, 0.1]))  # t -> tenths
    fig = LiveLossPlot(T=100, title="test").draw(history)
    loss_ax, t_ax = fig.axes
    assert list(loss_ax.lines[0].get_ydata()) == [0.9, 0.5, 0.4]
    heights = [bar.get_height() for bar in t_ax.patches]
    assert len(heights) == 10
    assert heights[0] == pytest.approx(0.9) and heights[9] == pytest.approx(0.1) and heights[4] == 0
    assert "step 30" in loss_ax.get_title()


def test_live_plot_is_called_by_fit_and_keeps_the_final_state() -> None:
    plot = LiveLossPlot(T=50, min_seconds=3600)  # only the first and the final call draw
    config = TrainConfig(steps=6, batch_size=8, log_every=2, checkpoint_every=100)
    torch.manual_seed(0)
    objective = DiffusionObjective(NoiseSchedule.from_name("linear", 50), torch.randn(64, 2))
    state = fit(MLPDenoiser(MLPConfig(hidden_dim=16, num_layers=1)), objective, config, on_log=plot, progress=False)
    title = plot.figure.axes[0].get_title()
    assert title.startswith(f"step {state.step}:")


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_live_plot_rejects_a_bad_T(bad) -> None:
    with pytest.raises(ValueError, match="T must be a positive int"):
        LiveLossPlot(T=bad)


def test_loss_by_timestep_uses_the_same_noise_at_every_step() -> None:
    schedule = NoiseSchedule.from_name("cosine", 100)
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))

    def knows_eps_at_large_t(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return xt  # x_t is nearly eps when abar_t ~ 0, and nearly x_0 when abar_t ~ 1

    curve = loss_by_timestep(knows_eps_at_large_t, schedule, x0, [0, 50, 99], generator=torch.Generator().manual_seed(1))
    assert curve.shape == (3,)
    assert curve[0] > curve[1] > curve[2] and curve[2] < 1e-3
    again = loss_by_timestep(knows_eps_at_large_t, schedule, x0, [0, 50, 99], generator=torch.Generator().manual_seed(1))
    assert torch.equal(curve, again)
