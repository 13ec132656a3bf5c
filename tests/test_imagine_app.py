"""The /imagine widget driven as a learner drives it, on tiny random checkpoints: type, imagine, U2, V3 (subtle
and strong), remix, re-roll, the history, a bad prompt, and the static picture a saved notebook shows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tiny_sd_checkpoints import write_tiny_sd, write_upsampler

from diffusion_lab.notebook.figures import LIVE_ONLY
from diffusion_lab.notebook.imagine_app import ImagineApp, grid_picture, picture_png
from diffusion_lab.notebook.widgets import WIDGET_MIME
from diffusion_lab.pipelines.imagine import imagine
from diffusion_lab.pipelines.text_to_image import TinySDPipeline
from diffusion_lab.pretrained import load_pretrained

PROMPT = "a red circle to the left of a blue square --seed 3 --steps 2"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_upsampler(write_tiny_sd(tmp_path_factory.mktemp("imagine_app")))


@pytest.fixture(scope="module")
def models(root):
    return {"pipeline": TinySDPipeline.from_pretrained("tiny_sd", root=root, device="cpu"),
            "upsampler": load_pretrained("upsampler", root=root, device="cpu"), "device": "cpu"}


def _png(image) -> Image.Image:
    return Image.open(io.BytesIO(image.value))


def test_before_a_prompt_only_imagine_is_live_and_there_is_no_picture(models):
    app = ImagineApp(**models)
    assert not app.imagine_button.disabled
    assert all(b.disabled for b in (*app.upscale_buttons, *app.vary_buttons, app.reroll_button))
    data, metadata = app._repr_mimebundle_()
    assert "image/png" not in data and WIDGET_MIME in data and metadata == {LIVE_ONLY: [WIDGET_MIME]}


def test_imagine_then_u2_then_v3_as_a_learner_presses_them(models):
    app = ImagineApp(**models)
    app.prompt.value = PROMPT
    assert app.jobs == []  # typing alone draws nothing
    app.prompt._handle_custom_msg({"event": "submit"}, [])  # Enter in the box draws
    assert len(app.jobs) == 1 and app.job.action == "imagine" and app.job.seeds == (3, 4, 5, 6)
    assert [_png(p).size for p in app.pictures] == [(192, 192)] * 4  # 64 px, three times, square pixels
    assert np.array_equal(np.asarray(_png(app.pictures[1]))[::3, ::3], app.job.images[1])
    assert "seeds 3, 4, 5, 6" in app.status.value and " s" in app.status.value
    assert not any(b.disabled for b in app.upscale_buttons)
    grid = app.job

    app.upscale_buttons[1].click()  # U2
    up = app.jobs[-1]
    assert up.action == "upscale" and up.index == 2 and up.images.shape == (1, 128, 128, 3)
    assert _png(app.enlarged).size == (256, 256) and app.enlarged.layout.display is None
    assert app.job is grid  # U acts on the grid; the grid stays

    app.vary_buttons[2].click()  # V3, subtle: its four variations become the grid the buttons act on
    subtle = app.job
    assert subtle.parent is grid and subtle.index == 3
    app.strength.value = "strong"
    app.vary_buttons[2].click()  # V3 of the variations, strong
    assert [j.action for j in app.jobs] == ["imagine", "upscale", "vary (subtle)", "vary (strong)"]
    assert app.job is app.jobs[-1] and app.job.parent is subtle and app.job.index == 3
    assert len(app.history.options) == 4 and app.history.index == 3
    assert app.history.options[0].startswith("1. imagine: a red circle")


def test_remix_draws_the_edited_prompt_and_reroll_keeps_the_settings(models):
    app = ImagineApp(**models, prompt=PROMPT)
    app.imagine_button.click()
    app.remix.value = True
    app.prompt.value = "a blue circle to the left of a red square"
    app.vary_buttons[0].click()
    assert app.job.action == "remix" and app.job.prompt == "a blue circle to the left of a red square"
    assert app.job.settings.steps == 2  # parameters the edit leaves out keep the job's
    app.reroll_button.click()
    assert app.job.action == "reroll" and app.job.prompt == "a blue circle to the left of a red square"
    assert app.job.seeds != app.jobs[-2].seeds


def test_a_bad_prompt_is_one_line_and_the_pictures_stay(models):
    app = ImagineApp(**models, prompt=PROMPT)
    app.imagine_button.click()
    before = [p.value for p in app.pictures]
    app.prompt.value = "a red circle --sed 3"
    app.imagine_button.click()
    assert "unknown parameter --sed (did you mean --seed?)" in app.status.value
    assert "Traceback" not in app.status.value and "color:#b00" in app.status.value
    assert [p.value for p in app.pictures] == before and len(app.jobs) == 1
    assert not app.imagine_button.disabled and not app.vary_buttons[0].disabled  # nothing left locked


def test_picking_an_older_job_in_the_history_makes_the_buttons_act_on_it(models):
    app = ImagineApp(**models, prompt=PROMPT)
    app.imagine_button.click()
    app.vary_buttons[0].click()
    first = app.jobs[0]
    app.history.index = 0
    assert app.job is first and "from the history" in app.status.value
    assert np.array_equal(np.asarray(_png(app.pictures[0]))[::3, ::3], first.images[0])
    app.vary_buttons[1].click()
    assert app.job.parent is first and len(app.jobs) == 3


def test_a_job_made_with_the_api_shows_in_the_app_and_in_its_static_picture(models):
    job = imagine(PROMPT, pipeline=models["pipeline"])
    app = ImagineApp(job=job, **models)
    assert app.jobs == [job] and not app.vary_buttons[0].disabled
    data, _ = app._repr_mimebundle_()
    assert "image/png" in data and "seeds 3, 4, 5, 6" in data["text/plain"]
    assert app.static_picture().size == (130, 130)  # 2 x 64 + a 2-pixel gap
    app.upscale_buttons[3].click()
    assert app.static_picture().size == (130 + 8 + 128, 130)


def test_picture_helpers_check_their_input():
    with pytest.raises(ValueError, match=r"one uint8 picture \(H, W, 3\)"):
        picture_png(np.zeros((64, 64), np.uint8), 128)
    assert Image.open(io.BytesIO(picture_png(np.zeros((64, 64, 3), np.uint8), 160))).size == (192, 192)


def test_grid_picture_lays_four_out_two_by_two(models):
    job = imagine(PROMPT, pipeline=models["pipeline"])
    picture = np.asarray(grid_picture(job))
    assert np.array_equal(picture[66:130, 66:130], job.images[3])


def test_without_the_checkpoint_the_app_says_so_in_one_line(tmp_path):
    app = ImagineApp(prompt=PROMPT, root=tmp_path, device="cpu")  # an empty checkpoints folder
    app.imagine_button.click()
    assert "no checkpoint called &#x27;tiny_sd&#x27;" in app.status.value and app.jobs == []
    assert not app.imagine_button.disabled
