"""Every exercise check accepts a right answer and rejects an unfinished stub and typical wrong answers.

Each key of ``exercises.CHECKS`` needs an entry in ``exercise_cases.CASES``: a reference solution written there
(independently of the package's own answer) and at least one wrong answer a learner might write.
A new check without cases fails ``test_every_check_has_cases``.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exercise_cases import (
    CASES,
    clip,
    conditioning,
    flows,
    foundations,
    latent,
    scores,
    text_to_image,
    training,
)
from exercise_cases.foundations import alpha_bars_cumsum, alpha_bars_numpy

from diffusion_lab import exercises
from diffusion_lab.exercises import CHECKS, ExerciseFailed

ROOT = Path(__file__).resolve().parents[1]
RIGHT = [pytest.param(k, fn, id=f"{k}-{fn.__name__}") for k, c in CASES.items() for fn in c.right]
WRONG = [pytest.param(k, fn, id=f"{k}-{fn.__name__}") for k, c in CASES.items() for fn in c.wrong]


def test_every_check_has_cases() -> None:
    assert set(CASES) == set(CHECKS), "add a right and a wrong answer to CASES for every new check"
    for key, cases in CASES.items():
        assert cases.right and cases.wrong, f"exercise {key} needs at least one right and one wrong answer"


def test_checks_are_the_public_check_functions() -> None:
    public = {getattr(exercises, n) for n in dir(exercises) if n.startswith("check_")}
    assert set(CHECKS.values()) == public


@pytest.mark.parametrize(("key", "solution"), RIGHT)
def test_right_answer_passes(key: str, solution: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    CHECKS[key](solution)
    assert f"Exercise {key} passed" in capsys.readouterr().out


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_stub_is_not_done_yet(key: str) -> None:
    def stub(*args):
        raise NotImplementedError("Your turn: write your answer here, then run the check below.")

    with pytest.raises(ExerciseFailed, match="not done yet") as info:
        CHECKS[key](stub)
    assert info.value.exercise == key
    assert str(info.value).startswith(f"Exercise {key}:")


@pytest.mark.parametrize(("key", "wrong"), WRONG)
def test_wrong_answer_fails(key: str, wrong: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ExerciseFailed, match=rf"^Exercise {re.escape(key)}: ") as info:
        CHECKS[key](wrong)
    assert "not done yet" not in str(info.value)
    assert "passed" not in capsys.readouterr().out


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_not_a_function(key: str) -> None:
    with pytest.raises(ExerciseFailed, match="expected a function, got int"):
        CHECKS[key](42)


def test_exercise_failed_is_an_assertion_error() -> None:
    assert issubclass(ExerciseFailed, AssertionError)  # pytest and nbval report it as a failed check


def test_wrong_answer_message_points_at_the_error() -> None:
    with pytest.raises(ExerciseFailed, match=r"alpha_bars for 50 steps is not right: you added the \(1 - beta\)s up"):
        CHECKS["1.3"](alpha_bars_cumsum)
    with pytest.raises(ExerciseFailed, match=r"should have shape \(5, 1, 4, 4\)"):
        CHECKS["1.4"](lambda x0, a, eps: (x0 + eps)[0])
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got ndarray"):
        CHECKS["1.3"](alpha_bars_numpy)


# ----- every check tries more than one configuration ------------------------------------------------

@pytest.mark.parametrize("key", sorted(CHECKS))
def test_check_runs_the_function_on_several_inputs(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One input can hide a mistake (a fixed broadcast, head width = head count); every check uses several."""
    calls = []
    solution = CASES[key].right[0]

    def counted(*args):
        calls.append(args)
        return solution(*args)

    CHECKS[key](counted)
    assert len(calls) >= 2, f"check {key} calls the learner's function only {len(calls)} time(s)"


# ----- the mistakes issue 20 found accepted, now rejected with a message naming the part --------------

ISSUE_20_MISTAKES = [
    ("1.4", foundations.q_sample_4d_view, r"points \(B, 2\).*append_dims"),  # hard-coded 4-D view
    ("1.4", foundations.q_sample_no_broadcast, r"RuntimeError.*Hint: alpha_bar has shape \(B,\): broadcast it "
                                               r"with append_dims"),
    ("4.1", training.diffusion_loss_hardcoded_broadcast, r"RuntimeError.*Hint: alpha_bars\[t\] has shape \(B,\): "
                                                         r"broadcast it with append_dims"),
    ("4.2", training.train_step_hardcoded_broadcast, r"append_dims"),
    ("6.3", conditioning.cross_attention_heads_scale, r"divide the scores by sqrt\(d\).*not by sqrt\(heads\)"),
    ("6.3", conditioning.cross_attention_swapped_split, r"\.view\(B, -1, heads, d\)"),
    ("6.1", conditioning.tokenize_not_lower_cased, r"KeyError: 'A'.*lower-case the prompt first"),
    ("4.2", training.train_step_zero_grad_late, r"optimizer\.step\(\) was called but found no gradients"),
    ("4.2", training.train_step_no_step, r"optimizer\.step\(\) was never called"),
    ("4.2", training.train_step_no_zero_grad, r"optimizer\.zero_grad\(\) before"),
    ("4.2", training.train_step_steps_twice, r"called 2 times"),
]


@pytest.mark.parametrize(("key", "wrong", "message"), ISSUE_20_MISTAKES,
                         ids=[f"{k}-{fn.__name__}" for k, fn, _ in ISSUE_20_MISTAKES])
def test_named_mistake_is_rejected_and_explained(key: str, wrong: Callable[..., Any], message: str) -> None:
    with pytest.raises(ExerciseFailed, match=message) as info:
        CHECKS[key](wrong)
    assert "at index" not in str(info.value)  # a named part, not only where the numbers differ


# ----- chapter 08: each typical mistake is named -----------------------------------------------------

LATENT_MISTAKES = [
    ("8.1", latent.reparameterise_variance, r"exp\(logvar\) is the variance"),
    ("8.1", latent.reparameterise_half_outside, r"the 0\.5 belongs inside the exp"),
    ("8.1", latent.reparameterise_logvar_as_std, r"logvar is the log of the variance"),
    ("8.1", latent.reparameterise_mean_only, r"that is the mean only"),
    ("8.1", latent.reparameterise_fresh_noise, r"use the noise you are given"),
    ("8.1", latent.reparameterise_detached, r"the sample has no gradient"),
    ("8.2", latent.kl_mean_over_values, r"averages over the latent values"),
    ("8.2", latent.kl_summed_over_batch, r"should have shape \(3,\), got \(\); return one KL per picture"),
    ("8.2", latent.kl_no_half, r"factor 0\.5"),
    ("8.2", latent.kl_no_minus_one, r"has a - 1"),
    ("8.2", latent.kl_plus_logvar, r"minus sign"),
    ("8.3", latent.latent_scale_std, r"that is the std itself"),
    ("8.3", latent.latent_scale_per_channel, r"one per channel"),
    ("8.3", latent.latent_scale_variance, r"divides by the variance"),
    ("8.3", latent.latent_scale_mean_abs, r"mean absolute value"),
    ("8.3", latent.latent_scale_rms, r"root mean square"),
    ("8.4", latent.min_snr_weight_max, r"max instead of min"),
    ("8.4", latent.min_snr_weight_undivided, r"divide it by SNR"),
    ("8.4", latent.min_snr_weight_inverted, r"upside down: the weight"),
    ("8.4", latent.min_snr_weight_noise_over_signal, r"the SNR is upside down"),
    ("8.4", latent.min_snr_weight_sqrt, r"without square roots"),
    ("8.4", latent.min_snr_weight_five, r"use the gamma you are given"),
    ("8.4", latent.min_snr_weight_python_min, r"torch\.clamp\(snr, max=gamma\)"),
    ("8.4", latent.min_snr_weight_per_batch, r"should have shape \(8,\), got \(\); one weight per sample"),
    ("8.5", latent.sdedit_start_reversed, r"reversed"),
    ("8.5", latent.sdedit_start_truncated, r"int\(\) and floor cut it down"),
    ("8.5", latent.sdedit_start_float, r"the start is an index, an int"),
    ("8.5", latent.sdedit_start_timestep, r"a timestep t instead of its index"),
]


@pytest.mark.parametrize(("key", "wrong", "message"), LATENT_MISTAKES,
                         ids=[f"{k}-{fn.__name__}" for k, fn, _ in LATENT_MISTAKES])
def test_latent_mistake_is_named(key: str, wrong: Callable[..., Any], message: str) -> None:
    with pytest.raises(ExerciseFailed, match=message) as info:
        CHECKS[key](wrong)
    assert "at index" not in str(info.value)


def test_train_step_never_blames_a_missing_step_that_was_called() -> None:
    for wrong in (training.train_step_zero_grad_late, training.train_step_no_zero_grad, training.train_step_steps_twice):
        with pytest.raises(ExerciseFailed) as info:
            CHECKS["4.2"](wrong)
        assert "never called" not in str(info.value) and "did you call optimizer.step()" not in str(info.value)


def test_numbered_in_order_of_appearance() -> None:
    """Chapter NN's exercises are NN.1, NN.2, ... in the order the chapter defines them."""
    import ast

    from diffusion_lab.exercises import CHECKS as checks

    chapters = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
    for chapter in chapters:
        text = chapter.read_text()
        headings = re.findall(r"^# ### Exercise (\d+)\.(\d+)", text, flags=re.M)
        assert headings == [(chapter.name[:2].lstrip("0") or "0", str(i)) for i in range(1, len(headings) + 1)], \
            f"{chapter.name}: exercises appear as {['.'.join(h) for h in headings]}"
        called = [node.func.id for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Name) and node.func.id.startswith("check_")]
        called = sorted(set(called), key=called.index)
        by_check = {fn.__name__: key for key, fn in checks.items()}
        keys = [by_check[name] for name in called if name in by_check]
        assert keys == [f"{h[0]}.{h[1]}" for h in headings], f"{chapter.name}: checks run in the order {keys}"


# ----- a failed check never shows its own source ------------------------------------------------------

def _check_source_lines(key: str) -> list[str]:
    import inspect

    lines = inspect.getsource(CHECKS[key]).splitlines()[2:]  # below the def line and the docstring
    return [line.strip() for line in lines if len(line.strip()) > 25 and not line.strip().startswith(("#", '"'))]


@pytest.mark.parametrize(("key", "wrong"), [
    ("1.1", foundations.noising_step_no_sqrt), ("1.3", alpha_bars_cumsum), ("1.4", foundations.q_sample_swapped),
    ("1.4", foundations.q_sample_no_broadcast), ("4.3", training.ema_update_plain_mean),
    ("8.1", latent.reparameterise_variance), ("8.2", latent.kl_no_minus_one), ("8.3", latent.latent_scale_std),
    ("8.4", latent.min_snr_weight_max), ("8.5", latent.sdedit_start_truncated), ("9.1", scores.score_over_variance), ("9.2", scores.heun_euler_only),
    ("9.2", scores.heun_no_last_step_guard), ("9.3", flows.interpolate_swapped),
    ("9.3", flows.interpolate_points_broadcast), ("9.4", flows.target_velocity_reversed),
    ("10.1", clip.clip_loss_diagonal), ("10.2", clip.prior_loss_eps_target), ("10.3", clip.text_diff_reversed),
    ("10.4", clip.low_res_condition_nearest), ("11.3", text_to_image.inpaint_blend_inverted),
    ("11.2", text_to_image.latent_mask_average), ("11.2", text_to_image.latent_mask_bool_pool),
    ("11.1", text_to_image.dynamic_threshold_no_max),
])
def test_failure_in_ipython_shows_the_diagnosis_only(key: str, wrong: Callable[..., Any]) -> None:
    """Jupyter shows what ``_render_traceback_`` returns: the message, not the check's frames (its answer)."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    out = io.StringIO()
    shell.user_ns.update(check=CHECKS[key], wrong=wrong)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        shell.run_cell("check(wrong)")
    shown = out.getvalue()
    assert f"Exercise {key}:" in shown
    assert "Traceback" not in shown and "core.py" not in shown
    leaked = [line for line in _check_source_lines(key) if line in shown]
    assert not leaked, f"the check's source shows: {leaked}"
    assert len(shown.strip().splitlines()) <= 3


def test_a_learners_function_stopped_by_hand_or_a_time_limit_fails_without_the_checks_frames() -> None:
    """Jupyter's stop button and nbgrader's cell time limit raise KeyboardInterrupt inside the learner's code."""
    def q_sample(x0, alpha_bar, eps):
        raise KeyboardInterrupt

    with pytest.raises(ExerciseFailed, match=r"^Exercise 1\.4: your function was stopped before it returned: "
                                             r"if it never finishes, look for a loop") as info:
        CHECKS["1.4"](q_sample)
    assert info.value.__suppress_context__


def test_error_in_the_learners_function_is_reported_as_theirs() -> None:
    def q_sample(x0, alpha_bar, eps):
        scale = math.sqrt(alpha_bar)  # math.sqrt on a tensor of B values
        return scale * x0 + eps

    with pytest.raises(ExerciseFailed, match=r"^Exercise 1\.4: your function raised \w+: only one element") as info:
        CHECKS["1.4"](q_sample)
    message = str(info.value)
    assert "(in q_sample: `scale = math.sqrt(alpha_bar)" in message
    assert "Hint: math.sqrt" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
