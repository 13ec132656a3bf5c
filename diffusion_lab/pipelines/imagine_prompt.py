"""Midjourney-style prompts for the /imagine loop: the picture's description, then ``--parameters`` (chapter 11).

    parse_prompt("a red circle to the left of a blue square --no green --seed 3 --chaos 20 --steps 20 --cfg 4")
    Settings(prompt='a red circle to the left of a blue square', negative_prompt='green', seed=3, chaos=20,
             steps=20, guidance_scale=4.0)

The words before the first parameter are the prompt; each parameter's value runs to the next one. ``--no``
takes words (the negative prompt, which classifier-free guidance steers away from); the others take one
number each, in the ranges of ``PARAMETERS``. An unknown parameter, a missing or bad value, a parameter given
twice and an empty prompt are each a one-line error that says what is allowed. As Midjourney does, a long
dash (what phones make of "--") counts as "--".
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass

from diffusion_lab.pipelines.text_to_image import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS

SEED_MAX = 2**32 - 1  # Midjourney's seeds: 0 to 4294967295
MAX_STEPS = 100
MAX_CFG = 20.0
# --name -> (Settings field, what it takes, shown in errors)
PARAMETERS = {
    "no": ("negative_prompt", "words to steer away from, e.g. --no green"),
    "seed": ("seed", f"a whole number from 0 to {SEED_MAX}, e.g. --seed 3"),
    "chaos": ("chaos", "a whole number from 0 (the four differ only by seed) to 100 (most varied), e.g. --chaos 20"),
    "steps": ("steps", f"a whole number of sampler steps from 1 to {MAX_STEPS}, e.g. --steps 20"),
    "cfg": ("guidance_scale", f"the guidance scale, a number from 0 to {MAX_CFG:g}, e.g. --cfg 4"),
}


@dataclass(frozen=True)
class Settings:
    """What a job draws: the prompt, the negative prompt (--no), the seed of its first picture (--seed; None:
    not given, a fresh one is drawn), --chaos, the sampler steps (--steps) and the guidance scale w (--cfg)."""

    prompt: str
    negative_prompt: str | None = None
    seed: int | None = None
    chaos: int = 0
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("the prompt is empty: describe the picture before the parameters, "
                             "e.g. 'a red circle to the left of a blue square --seed 3'")
        if self.negative_prompt is not None and (not isinstance(self.negative_prompt, str)
                                                 or not self.negative_prompt.strip()):
            raise ValueError(f"--no needs a value: {PARAMETERS['no'][1]}")
        for name, low, high in (("seed", 0, SEED_MAX), ("chaos", 0, 100), ("steps", 1, MAX_STEPS)):
            value = getattr(self, name)
            if (value is not None or name != "seed") and (isinstance(value, bool) or not isinstance(value, int)
                                                          or not low <= value <= high):
                raise ValueError(f"--{name} must be {PARAMETERS[name][1]}; got {value!r}")
        w = self.guidance_scale
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or not 0 <= w <= MAX_CFG:
            raise ValueError(f"--cfg must be {PARAMETERS['cfg'][1]}; got {w!r}")
        object.__setattr__(self, "guidance_scale", float(w))
        if self.negative_prompt is not None and self.guidance_scale <= 1:
            raise ValueError(f"--no acts through guidance, which needs --cfg above 1 (got --cfg {self.guidance_scale:g})"
                             f": raise --cfg, e.g. --cfg 4, or drop --no")

    def text(self) -> str:
        """The settings written back as a prompt with parameters, e.g. 'a red circle --seed 3 --cfg 4'."""
        parts = [self.prompt] + ([f"--no {self.negative_prompt}"] if self.negative_prompt else [])
        parts += [f"--seed {self.seed}"] if self.seed is not None else []
        parts += [f"--chaos {self.chaos}", f"--steps {self.steps}", f"--cfg {self.guidance_scale:g}"]
        return " ".join(parts)


def parse_prompt(text: str, defaults: Settings | None = None) -> Settings:
    """A prompt with Midjourney-style parameters -> ``Settings``, checked.

    defaults: what a parameter not given takes (a remix keeps its job's settings); the seed is never taken from
    ``defaults``, so each new job is a new draw unless ``--seed`` says otherwise. None: the course's defaults.
    """
    if not isinstance(text, str):
        raise TypeError(f"the prompt must be a str, got {type(text).__name__}")
    words = text.replace("\u2014", "--").replace("\u2013", "--").split()  # a long dash is "--", as in Midjourney
    prompt: list[str] = []
    given: dict[str, list[str]] = {}
    current: list[str] = prompt
    for word in words:
        if not word.startswith("--"):
            current.append(word)
            continue
        name = word[2:].lower()
        if name not in PARAMETERS:
            raise ValueError(_unknown(name))
        if name in given:
            raise ValueError(f"--{name} is given twice: give it once")
        current = given[name] = []
    values: dict[str, object] = {}
    for name, value in given.items():
        if not value:
            raise ValueError(f"--{name} needs a value: {PARAMETERS[name][1]}")
        values[PARAMETERS[name][0]] = " ".join(value) if name == "no" else _number(name, value)
    fields = {"prompt": " ".join(prompt), "seed": None, **values}
    if defaults is None:
        return Settings(**fields)
    if not isinstance(defaults, Settings):
        raise TypeError(f"defaults must be Settings, got {type(defaults).__name__}")
    return dataclasses.replace(defaults, **fields)


def _unknown(name: str) -> str:
    """The error for ``--name``, which is not a parameter here."""
    if not name:
        return "a lone '--': write a parameter's name right after it, e.g. --seed 3"
    if "=" in name:
        return f"write parameters as --{name.split('=')[0]} {name.split('=', 1)[1]}, without '='"
    close = difflib.get_close_matches(name, PARAMETERS, n=1)
    hint = f" (did you mean --{close[0]}?)" if close else ""
    return (f"unknown parameter --{name}{hint}; the parameters are "
            + "; ".join(f"--{p}: {about}" for p, (_, about) in PARAMETERS.items()))


def _number(name: str, value: list[str]) -> int | float:
    """The one number a parameter takes, as its type; range checks are ``Settings``'s."""
    if len(value) > 1:
        raise ValueError(f"--{name} takes one value, got {' '.join(value)!r}: {PARAMETERS[name][1]} "
                         f"(write the prompt before the parameters)")
    try:
        return float(value[0]) if name == "cfg" else int(value[0])
    except ValueError:
        raise ValueError(f"--{name} must be {PARAMETERS[name][1]}; got {value[0]!r}") from None
