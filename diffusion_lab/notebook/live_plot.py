"""A loss plot that redraws itself while a notebook trains (chapter 04).

    plot = LiveLossPlot(T=schedule.T)
    state = train(model, schedule, data, config, on_log=plot)

Every ``config.log_every`` steps ``train`` calls ``plot(state)``; the plot redraws two panels in the
same notebook output: the logged mean loss against the step, and the mean loss per tenth of the
timestep range [0, T) so far (is the model worse at small t or at large t?). The last drawing stays
in the saved notebook as an ordinary picture. Outside a notebook (a script, a test) nothing is
displayed; ``plot.figure`` always holds the latest drawing.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from diffusion_lab.training import LossHistory, TrainState


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class LiveLossPlot:
    """Pass as ``on_log`` to ``train``: redraws the loss curve and the loss by timestep.

    T: the number of diffusion steps (the x axis of the right panel). min_seconds: redraw at most
    this often, so that plotting never slows training noticeably (the final call always draws).
    """

    def __init__(self, T: int, *, title: str | None = None, min_seconds: float = 1.0,
                 figsize: tuple[float, float] = (8.0, 2.6)) -> None:
        if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
            raise ValueError(f"T must be a positive int (the number of diffusion steps), got {T!r}")
        self.T = T
        self.title = title
        self.min_seconds = min_seconds
        self.figure: Figure = plt.figure(figsize=figsize)
        plt.close(self.figure)  # shown through the display handle only, never twice
        self._handle = None
        self._last_draw = -math.inf

    def __call__(self, state: TrainState) -> None:
        now = time.monotonic()
        last = state.step >= state.total_steps
        if now - self._last_draw < self.min_seconds and not last:
            return
        self._last_draw = now
        self.draw(state.history)

    def draw(self, history: LossHistory) -> Figure:
        """Redraw from ``history`` and update the notebook output; returns the figure."""
        fig = self.figure
        fig.clear()
        ax_loss, ax_t = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        ax_loss.plot(history.steps, history.losses, color="C0")
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("training step")
        ax_loss.set_ylabel("loss (MSE on $\\epsilon$)")
        if history.losses:
            ax_loss.set_title(f"step {history.steps[-1]}: loss {history.losses[-1]:.4f}", fontsize=10)
        means = history.bucket_means()
        width = self.T / len(means)
        lefts = [i * width for i in range(len(means))]
        ax_t.bar(lefts, [0 if math.isnan(m) else m for m in means], width=width * 0.9, align="edge", color="C1")
        ax_t.set_xlim(0, self.T)
        ax_t.set_xlabel("timestep t")
        ax_t.set_ylabel("mean loss so far")
        ax_t.set_title("loss by timestep", fontsize=10)
        if self.title:
            fig.suptitle(self.title, fontsize=11)
        fig.tight_layout()
        self._show()
        return fig

    def _show(self) -> None:
        if not _in_notebook():
            return
        from IPython.display import display

        if self._handle is None:
            self._handle = display(self.figure, display_id=True)
        else:
            self._handle.update(self.figure)
