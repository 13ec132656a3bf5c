"""The /imagine loop of chapter 11 on tiny random checkpoints: the prompt parser's every error, jobs and their
actions (upscale, vary, reroll, remix, vary region), saving and loading, and the imagine / upscale / vary commands."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from tiny_sd_checkpoints import write_tiny_sd, write_upsampler

from diffusion_lab.cli.main import main
from diffusion_lab.pipelines.imagine import (
    Job,
    box_mask,
    chaos_scales,
    imagine,
    load_job,
    remix,
    reroll,
    save_job,
    upscale,
    vary,
    vary_region,
)
from diffusion_lab.pipelines.imagine_prompt import SEED_MAX, Settings, parse_prompt
from diffusion_lab.pipelines.text_to_image import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS, TinySDPipeline
from diffusion_lab.pretrained import load_pretrained

PROMPT = "a red circle to the left of a blue square"


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_upsampler(write_tiny_sd(tmp_path_factory.mktemp("imagine")))


@pytest.fixture(scope="module")
def pipe(root) -> TinySDPipeline:
    return TinySDPipeline.from_pretrained("tiny_sd", root=root, device="cpu")


@pytest.fixture(scope="module")
def job(pipe) -> Job:
    return imagine(f"{PROMPT} --no green --seed 3 --steps 3 --cfg 3", pipeline=pipe)


# ----- the parser ---------------------------------------------------------------------------------------------

def test_parse_prompt_reads_every_parameter():
    settings = parse_prompt(f"{PROMPT} --no a green cross --seed 3 --chaos 20 --steps 20 --cfg 4.5")
    assert settings == Settings(PROMPT, "a green cross", 3, 20, 20, 4.5)
    assert parse_prompt(PROMPT) == Settings(PROMPT, None, None, 0, DEFAULT_STEPS, DEFAULT_GUIDANCE_SCALE)
    assert parse_prompt(f"{PROMPT} \u2014seed 3 --CFG 2").seed == 3  # a phone's long dash, any case
    assert parse_prompt(settings.text()) == settings  # written back and read again
    assert parse_prompt(f"{PROMPT} --seed {SEED_MAX}").seed == SEED_MAX


def test_parameters_left_out_keep_the_defaults_given_but_never_the_seed():
    parent = Settings(PROMPT, "green", seed=5, chaos=20, steps=10, guidance_scale=4.0)
    remixed = parse_prompt("a blue square --cfg 2", defaults=parent)
    assert remixed == Settings("a blue square", "green", None, 20, 10, 2.0)
    assert parse_prompt("a blue square --seed 9", defaults=parent).seed == 9


@pytest.mark.parametrize(("text", "message"), [
    (f"{PROMPT} --sed 3", r"unknown parameter --sed \(did you mean --seed\?\); the parameters are --no"),
    (f"{PROMPT} --ar 16:9", r"unknown parameter --ar; the parameters are --no: .* --cfg: the guidance scale"),
    (f"{PROMPT} --seed", r"--seed needs a value: a whole number from 0 to 4294967295"),
    (f"{PROMPT} --seed --chaos 3", r"--seed needs a value"),
    (f"{PROMPT} --no", r"--no needs a value: words to steer away from"),
    (f"{PROMPT} --seed abc", r"--seed must be a whole number from 0 to 4294967295, e.g. --seed 3; got 'abc'"),
    (f"{PROMPT} --seed -1", r"--seed must be a whole number from 0 .*; got -1"),
    (f"{PROMPT} --seed {SEED_MAX + 1}", r"--seed must be"),
    (f"{PROMPT} --chaos 101", r"--chaos must be a whole number from 0 .* to 100 .*; got 101"),
    (f"{PROMPT} --chaos 2.5", r"--chaos must be .*; got '2.5'"),
    (f"{PROMPT} --steps 0", r"--steps must be a whole number of sampler steps from 1 to 100"),
    (f"{PROMPT} --cfg 25", r"--cfg must be the guidance scale, a number from 0 to 20"),
    (f"{PROMPT} --cfg nan", r"--cfg must be"),
    (f"{PROMPT} --seed 3 --seed 4", r"--seed is given twice: give it once"),
    (f"{PROMPT} --seed 3 blue", r"--seed takes one value, got '3 blue'.*write the prompt before the parameters"),
    (f"{PROMPT} --seed=3", r"write parameters as --seed 3, without '='"),
    (f"{PROMPT} -- seed 3", r"a lone '--'"),
    ("--seed 3", r"the prompt is empty: describe the picture before the parameters"),
    ("   ", r"the prompt is empty"),
    (f"{PROMPT} --no green --cfg 1", r"--no acts through guidance, which needs --cfg above 1"),
])
def test_every_bad_prompt_says_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt(text)


def test_a_prompt_must_be_text():
    with pytest.raises(TypeError, match="must be a str"):
        parse_prompt(3)


# ----- jobs ---------------------------------------------------------------------------------------------------

def test_imagine_draws_a_grid_of_four_each_from_its_own_seed(job, pipe):
    assert job.images.shape == (4, 64, 64, 3) and job.images.dtype == np.uint8
    assert job.seeds == (3, 4, 5, 6) and job.settings.seed == 3 and job.negative_prompt == "green"
    assert job.guidance_scales == (3.0,) * 4 and job.action == "imagine" and job.parent is None
    assert len({picture.tobytes() for picture in job.images}) == 4
    same = imagine(f"{PROMPT} --no green --seed 3 --steps 3 --cfg 3", pipeline=pipe)
    assert np.array_equal(same.images, job.images)
    alone = pipe(prompt=PROMPT, negative_prompt="green", num_inference_steps=3, guidance_scale=3.0,
                 generator=[torch.Generator().manual_seed(5)])  # picture 3, drawn again alone
    assert (job.tensors()[2:3] - alone).abs().max() <= 1 / 127.5 + 1e-6  # at most one uint8 level apart
    fresh = imagine(f"{PROMPT} --steps 3", pipeline=pipe)  # no --seed: a fresh one, recorded
    assert fresh.settings.seed is not None and fresh.seeds[1] == (fresh.settings.seed + 1) % (SEED_MAX + 1)


def test_chaos_spreads_the_guidance_of_pictures_2_to_4(job, pipe):
    assert chaos_scales(4.0, 0) == (4.0,) * 4
    assert chaos_scales(4.0, 100) == (4.0, 3.25, 2.5, 1.75)
    assert chaos_scales(0.0, 100)[3] == pytest.approx(0.75) and min(chaos_scales(9.0, 100)) > 1
    wild = imagine(f"{PROMPT} --no green --seed 3 --steps 3 --cfg 3 --chaos 100", pipeline=pipe)
    assert wild.guidance_scales == (3.0, 2.5, 2.0, 1.5)
    assert np.abs(wild.images[0].astype(int) - job.images[0]).max() <= 1  # picture 1: the same seed and w
    moved = [np.abs(wild.images[k].astype(int) - job.images[k]).mean() for k in (1, 2, 3)]
    assert 0 < moved[0] < moved[1] < moved[2], f"the same seeds with less guidance should move further: {moved}"


def test_upscale_doubles_one_picture_with_chapter_10s_upsampler(job, root):
    up = load_pretrained("upsampler", root=root)
    big = upscale(job, 2, upsampler=up, steps=3)
    assert big.images.shape == (1, 128, 128, 3) and big.images.dtype == np.uint8
    assert big.action == "upscale" and big.index == 2 and big.parent is job and big.seeds == (4,)
    assert big.history == (job.describe(),)
    assert np.array_equal(upscale(job, 2, upsampler=up, steps=3).images, big.images)  # U2 again: the same
    assert not np.array_equal(upscale(job, 3, upsampler=up, steps=3).images, big.images)
    lazily = upscale(job, 2, root=root, device="cpu", steps=3)  # loads the upsampler from root itself
    assert np.array_equal(lazily.images, big.images)
    with pytest.raises(ValueError, match="already an upscale"):
        upscale(big, 1, upsampler=up)
    with pytest.raises(ValueError, match="count 1 to 1"):
        upscale(big, 2, upsampler=up)


def test_an_upscaled_picture_can_be_varied_at_the_grid_size(job, pipe, root):
    big = upscale(job, 2, upsampler=load_pretrained("upsampler", root=root), steps=2)
    varied = vary(big, 1, seed=3, pipeline=pipe)  # shrunk back to 64x64 first
    assert varied.images.shape == (4, 64, 64, 3) and varied.parent is big
    assert varied.history == (job.describe(), big.describe())


@pytest.mark.parametrize("i", [0, 5, -1, True, 2.0])
def test_picture_numbers_count_1_to_4(job, pipe, i):
    with pytest.raises(ValueError, match="count 1 to 4, as Midjourney's buttons"):
        vary(job, i, pipeline=pipe)
    with pytest.raises(ValueError, match="count 1 to 4"):
        upscale(job, i)


def test_vary_subtle_stays_closer_to_the_picture_than_strong(job, pipe):
    subtle = vary(job, 2, "subtle", seed=11, pipeline=pipe)
    strong = vary(job, 2, "strong", seed=11, pipeline=pipe)
    for new, action in ((subtle, "vary (subtle)"), (strong, "vary (strong)")):
        assert new.images.shape == (4, 64, 64, 3) and new.action == action and new.index == 2
        assert new.seeds == (11, 12, 13, 14) and new.settings.prompt == PROMPT and new.parent is job
    source = job.images[1].astype(float)
    assert np.abs(subtle.images - source).mean() < np.abs(strong.images - source).mean()
    assert np.array_equal(vary(job, 2, "subtle", seed=11, pipeline=pipe).images, subtle.images)
    with pytest.raises(ValueError, match="strength must be one of 'subtle', 'strong'"):
        vary(job, 2, "medium", pipeline=pipe)


def test_reroll_and_remix(job, pipe):
    again = reroll(job, seed=40, pipeline=pipe)
    assert again.settings == dataclasses.replace(job.settings, seed=40) and again.action == "reroll"
    assert not np.array_equal(again.images, job.images)
    assert reroll(job, pipeline=pipe).seeds != job.seeds  # a fresh seed
    mixed = remix(job, 1, "a blue circle to the left of a red square --cfg 2", seed=8, pipeline=pipe)
    assert mixed.prompt == "a blue circle to the left of a red square" and mixed.settings.guidance_scale == 2.0
    assert mixed.negative_prompt == "green" and mixed.settings.steps == 3  # kept from the job
    assert mixed.action == "remix" and mixed.index == 1 and mixed.seeds[0] == 8
    with pytest.raises(ValueError, match="unknown parameter --sede"):
        remix(job, 1, "a blue circle --sede 3", pipeline=pipe)


def test_vary_region_redraws_only_the_box(job, pipe):
    box = (8, 16, 40, 48)
    new = vary_region(job, 3, box, "a green cross", seed=2, pipeline=pipe)
    assert new.images.shape == (4, 64, 64, 3) and new.action == "vary region" and new.prompt == "a green cross"
    mask = box_mask(box, 64).numpy()
    assert np.array_equal(new.images[:, ~mask], np.broadcast_to(job.images[2][~mask], new.images[:, ~mask].shape))
    assert np.abs(new.images[:, mask].astype(int) - job.images[2][mask]).mean() > 1
    same_prompt = vary_region(job, 3, box, seed=2, pipeline=pipe)
    assert same_prompt.prompt == PROMPT and same_prompt.seeds == (2, 3, 4, 5)


@pytest.mark.parametrize("box", [(0, 0, 65, 10), (10, 0, 10, 5), (-1, 0, 5, 5), (0, 0, 5), (0.5, 0, 5, 5),
                                 "0 0 5 5"])
def test_a_box_outside_the_picture_is_refused(job, pipe, box):
    with pytest.raises(ValueError, match=r"box must be \(x0, y0, x1, y1\), whole pixels inside the 64x64 picture"):
        vary_region(job, 1, box, pipeline=pipe)


# ----- saving -------------------------------------------------------------------------------------------------

def test_a_job_round_trips_through_npz_and_varies_the_same(job, pipe, tmp_path):
    child = vary(job, 1, seed=5, pipeline=pipe)
    path = save_job(child, tmp_path / "job.npz")
    arrays = np.load(path)
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (4, 64, 64, 3)
    assert json.loads(str(arrays["job"]))["text"] == child.settings.text()
    loaded = load_job(path)
    assert np.array_equal(loaded.images, child.images) and loaded.settings == child.settings
    assert (loaded.seeds, loaded.guidance_scales, loaded.action, loaded.index) == (
        child.seeds, child.guidance_scales, child.action, child.index)
    assert loaded.history == (job.describe(),) and loaded.parent is None
    assert np.array_equal(vary(loaded, 2, seed=9, pipeline=pipe).images, vary(child, 2, seed=9, pipeline=pipe).images)


def test_what_is_not_a_job_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "samples.npz", images=np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="is not an /imagine job"):
        load_job(tmp_path / "samples.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="is not an /imagine job"):
        load_job(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_job(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="uint8"):
        Job(Settings(PROMPT), (1,), (1.0,), np.zeros((1, 64, 64, 3), np.float32))


# ----- the commands -------------------------------------------------------------------------------------------

def test_imagine_upscale_and_vary_commands_end_to_end(root, job, tmp_path, capsys):
    folder = ["--checkpoint-dir", str(root)]
    text = f"{PROMPT} --no green --seed 3 --steps 3 --cfg 3"
    assert main(["imagine", text, "--out", str(tmp_path / "job.npz"), *folder]) == 0
    made = np.load(tmp_path / "job.npz")
    assert made["images"].shape == (4, 64, 64, 3) and made["images"].dtype == np.uint8
    assert np.array_equal(made["images"], job.images)  # the API's grid
    assert json.loads(str(made["job"]))["seeds"] == [3, 4, 5, 6]
    assert main(["upscale", str(tmp_path / "job.npz"), "2", "--out", str(tmp_path / "up.npz"), *folder]) == 0
    assert np.load(tmp_path / "up.npz")["images"].shape == (1, 128, 128, 3)
    assert main(["vary", str(tmp_path / "job.npz"), "3", "--strong", "--seed", "4", "--out", str(tmp_path / "v.npz"),
                 *folder]) == 0
    varied = load_job(tmp_path / "v.npz")
    assert varied.images.shape == (4, 64, 64, 3) and varied.action == "vary (strong)" and varied.index == 3
    assert varied.history == (job.describe(),)
    assert main(["vary", str(tmp_path / "job.npz"), "3", "--seed", "4", "--out", str(tmp_path / "s.npz"),
                 *folder]) == 0
    assert load_job(tmp_path / "s.npz").action == "vary (subtle)"  # the default
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["imagine", f"{PROMPT} --sed 3", "--out", "{tmp}/j.npz"], "error: unknown parameter --sed (did you mean --seed?)"),
    (["imagine", PROMPT, "--out", "{tmp}/j.png"], "error: --out must end in .npz"),
    (["upscale", "{tmp}/missing.npz", "1", "--out", "{tmp}/u.npz"], "does not exist"),
    (["upscale", "{job}", "5", "--out", "{tmp}/u.npz"], "error: picture numbers count 1 to 4"),
    (["vary", "{job}", "0", "--out", "{tmp}/v.npz"], "error: picture numbers count 1 to 4"),
])
def test_command_errors_are_one_line_and_exit_2(root, job, tmp_path, capsys, argv, message):
    save_job(job, tmp_path / "job.npz")
    argv = [a.format(tmp=tmp_path, job=tmp_path / "job.npz") for a in argv] + ["--checkpoint-dir", str(root)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "u.npz").exists() and not (tmp_path / "v.npz").exists()


def test_vary_takes_subtle_or_strong_not_both(tmp_path):
    with pytest.raises(SystemExit):
        main(["vary", "job.npz", "1", "--subtle", "--strong", "--out", str(tmp_path / "v.npz")])
