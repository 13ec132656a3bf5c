"""The /imagine loop: a grid of four from a Midjourney-style prompt, then upscale, vary, re-roll, remix and vary
region, each making a new job (chapter 11).

    job = imagine("a red circle to the left of a blue square --no green --seed 3 --chaos 20")
    big = upscale(job, 2)                         # U2: chapter 10's upsampler, 64 -> 128
    new = vary(job, 3, strength="strong")         # V3: SDEdit from picture 3 (chapter 08)
    again = reroll(job)                           # the same prompt and settings, new seeds
    other = remix(job, 1, "a blue circle to the left of a red square")   # vary, with an edited prompt
    fixed = vary_region(job, 4, (8, 8, 40, 40), "a green cross")        # inpainting (RePaint) in a box
    save_job(job, "job.npz"); job = load_job("job.npz")

Pictures count from 1 to 4, as Midjourney's buttons (U1..U4, V1..V4) do. A job is never changed: each action
returns a new one that knows its parent and the action. Picture k of a job is drawn from its own seed,
``seeds[k - 1]`` = --seed + k - 1, so it can be drawn again alone. Without --seed a fresh seed is drawn and
recorded. The pictures are the job's own truth: vary, remix and vary region start from them, so a job saved
and loaded varies as it would have in memory.

--chaos c spreads the four pictures' guidance: picture k is guided with w_k = 1 + (w - 1)(1 - c/100 s_k),
s = ``CHAOS_SPREAD``. At c = 0 the four share every setting and differ by seed alone; higher c moves pictures
2-4 towards the plain conditional model (w = 1, never below), which follows the prompt more loosely and
varies more, so the grid mixes faithful and unusual takes on it (Midjourney: "more unusual results").

The pipelines are loaded lazily from ``root`` (default data/checkpoints) and kept until the checkpoints there
change: tiny_sd (``TinySDPipeline``) and the upsampler. Tests pass their own as ``pipeline=``, ``upsampler=``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffusion_lab.config import pick_device
from diffusion_lab.data.files import atomic_write
from diffusion_lab.pipelines.imagine_prompt import SEED_MAX, Settings, parse_prompt
from diffusion_lab.pipelines.super_resolution import upsample
from diffusion_lab.pipelines.text_to_image import TinySDPipeline
from diffusion_lab.pretrained import Pretrained, checkpoints_dir, load_pretrained

GRID = 4
CHAOS_SPREAD = (0.0, 0.25, 0.5, 0.75)  # how far --chaos 100 moves each picture's w - 1 towards 0
STRENGTHS = {"subtle": 0.4, "strong": 0.75}  # SDEdit strength of V (subtle) and V (strong); not tuned yet
UPSCALE_STEPS, UPSCALE_AUGMENTATION = 20, 0.1  # the upsampler's DDIM steps and low-res noise level (chapter 10)
FORMAT = "diffusion_lab imagine job 1"
# draw(w, n, generators) -> n pictures (n, 3, 64, 64) in [-1, 1], guided with w, one generator each
Draw = Callable[[float, int, list[torch.Generator]], torch.Tensor]


@dataclass(frozen=True, eq=False)
class Job:
    """What an action made: ``images`` uint8 (n, H, W, 3) (a grid: 4 x 64 x 64; an upscale: 1 x 128 x 128),
    drawn with ``settings``, picture k from ``seeds[k - 1]`` guided with ``guidance_scales[k - 1]``. ``action``
    and ``index`` (1-4) say what made it from which of its ``parent``'s pictures; ``history`` holds one line per
    ancestor, oldest first (kept in a saved job, where ``parent`` is not)."""

    settings: Settings
    seeds: tuple[int, ...]
    guidance_scales: tuple[float, ...]
    images: np.ndarray
    action: str = "imagine"
    index: int | None = None
    parent: Job | None = None
    history: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"a job's images must be uint8 (n, H, W, 3), got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        if not len(x) == len(self.seeds) == len(self.guidance_scales):
            raise ValueError(f"a job needs one seed and one guidance scale per picture: {len(x)} pictures, "
                             f"{len(self.seeds)} seeds, {len(self.guidance_scales)} scales")

    @property
    def prompt(self) -> str:
        return self.settings.prompt

    @property
    def negative_prompt(self) -> str | None:
        return self.settings.negative_prompt

    def tensors(self) -> torch.Tensor:
        """The pictures as floats (n, 3, H, W) in [-1, 1], what the models read."""
        return torch.from_numpy(self.images).permute(0, 3, 1, 2).float() / 127.5 - 1

    def describe(self) -> str:
        """One line: the action, the prompt with its parameters, the seeds."""
        action = self.action if self.index is None else f"{self.action} of picture {self.index}"
        return f"{action}: {self.settings.text()} (seeds {', '.join(map(str, self.seeds))})"

    def record(self) -> dict:
        """Everything but the pictures and the parent, as JSON-ready values (what ``save_job`` stores)."""
        return {"format": FORMAT, "settings": dataclasses.asdict(self.settings), "text": self.settings.text(),
                "seeds": list(self.seeds), "guidance_scales": list(self.guidance_scales), "action": self.action,
                "index": self.index, "history": list(self.history)}


# ----- the actions ------------------------------------------------------------------------------------------

def imagine(text: str, *, pipeline: TinySDPipeline | None = None, root: str | Path | None = None,
            device: torch.device | str | None = None) -> Job:
    """/imagine: a grid of four pictures of ``text``, a prompt with parameters (``parse_prompt``)."""
    return _grid(parse_prompt(text), "imagine", None, _pipe(pipeline, root, device))


def reroll(job: Job, *, seed: int | None = None, pipeline: TinySDPipeline | None = None,
           root: str | Path | None = None, device: torch.device | str | None = None) -> Job:
    """Re-roll: a new grid of the job's prompt and settings from new seeds (``seed``, else fresh ones)."""
    return _grid(dataclasses.replace(job.settings, seed=seed), "reroll", job, _pipe(pipeline, root, device))


def vary(job: Job, i: int, strength: str = "subtle", *, seed: int | None = None,
         pipeline: TinySDPipeline | None = None, root: str | Path | None = None,
         device: torch.device | str | None = None) -> Job:
    """V i: four variations of picture ``i`` (1-4): SDEdit from it, "subtle" (keeps its layout) or "strong"."""
    _check_index(job, i)  # before loading anything
    return _from_picture(job, i, dataclasses.replace(job.settings, seed=seed), f"vary ({strength})",
                         _strength(strength), _pipe(pipeline, root, device))


def remix(job: Job, i: int, text: str, *, strength: str = "strong", seed: int | None = None,
          pipeline: TinySDPipeline | None = None, root: str | Path | None = None,
          device: torch.device | str | None = None) -> Job:
    """Remix: vary picture ``i`` towards an edited prompt ``text``; parameters it leaves out keep the job's."""
    _check_index(job, i)
    settings = parse_prompt(text, defaults=job.settings)
    settings = dataclasses.replace(settings, seed=seed if settings.seed is None else settings.seed)
    return _from_picture(job, i, settings, "remix", _strength(strength), _pipe(pipeline, root, device))


def vary_region(job: Job, i: int, box: tuple[int, int, int, int], text: str | None = None, *,
                seed: int | None = None, pipeline: TinySDPipeline | None = None, root: str | Path | None = None,
                device: torch.device | str | None = None) -> Job:
    """Vary region: redraw the ``box`` (x0, y0, x1, y1) of picture ``i``, in pixels, x1 and y1 excluded, to fit
    ``text`` (default: the job's prompt; parameters it leaves out keep the job's). Inpainting by RePaint
    (``TinySDPipeline.inpaint``); outside the box the picture is kept pixel for pixel (decoding alone would
    shift it a little: the decoder's GroupNorms see the whole picture)."""
    _check_index(job, i)
    settings = parse_prompt(text, defaults=job.settings) if text is not None else job.settings
    settings = dataclasses.replace(settings, seed=seed if text is None or settings.seed is None else settings.seed)
    pipe = _pipe(pipeline, root, device)
    picture = _picture(job, i, pipe)  # (1, 3, 64, 64)
    mask = box_mask(box, picture.shape[-1])  # (64, 64), True inside the box
    out = _grid(settings, "vary region", job, pipe, index=i,
                draw=lambda w, n, gens: pipe.inpaint(picture.expand(n, -1, -1, -1), mask, settings.prompt,
                                                     negative_prompt=settings.negative_prompt,
                                                     num_inference_steps=settings.steps, guidance_scale=w,
                                                     generator=gens))
    kept = np.where(mask.numpy()[None, :, :, None], out.images, _to_uint8(picture))  # (4, 64, 64, 3)
    return dataclasses.replace(out, images=kept)


def upscale(job: Job, i: int, *, upsampler: Pretrained | None = None, root: str | Path | None = None,
            device: torch.device | str | None = None, steps: int = UPSCALE_STEPS) -> Job:
    """U i: picture ``i`` (1-4) at twice the size, 64 -> 128, by chapter 10's diffusion upsampler, from the
    picture's own seed (so U i gives the same picture every time)."""
    _check_index(job, i)
    if job.action == "upscale":
        raise ValueError("this job is already an upscale: upscale a picture of a grid (imagine, vary, ...)")
    up = upsampler if upsampler is not None else _load_upsampler(_key(root), str(pick_device(device)))
    low_res = job.tensors()[i - 1:i].to(next(up.model.parameters()).device)  # (1, 3, 64, 64)
    x = upsample(up.model, low_res, schedule=up.schedule, steps=steps, augmentation_level=UPSCALE_AUGMENTATION,
                 generator=torch.Generator().manual_seed(job.seeds[i - 1]))  # (1, 3, 128, 128)
    return Job(job.settings, job.seeds[i - 1:i], job.guidance_scales[i - 1:i], _to_uint8(x), "upscale", i, job,
               (*job.history, job.describe()))


def box_mask(box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """A (size, size) bool mask, True inside ``box`` = (x0, y0, x1, y1) in pixels (x1, y1 excluded)."""
    ok = (isinstance(box, tuple | list) and len(box) == 4
          and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in box))
    if not ok or not (0 <= box[0] < box[2] <= size and 0 <= box[1] < box[3] <= size):
        raise ValueError(f"box must be (x0, y0, x1, y1), whole pixels inside the {size}x{size} picture with "
                         f"0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size}, got {box!r}")
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


# ----- saving a job -----------------------------------------------------------------------------------------

def save_job(job: Job, path: str | Path) -> Path:
    """Write ``job`` to an .npz file: ``images`` uint8 (n, H, W, 3) and ``job``, its ``record()`` as JSON."""
    arrays = {"images": job.images, "job": np.array(json.dumps(job.record()))}
    return atomic_write(path, lambda f: np.savez(f, **arrays), str(path))


def load_job(path: str | Path) -> Job:
    """The job ``save_job`` wrote to ``path`` (without its parent; its history is kept)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            images, record = arrays["images"], json.loads(str(arrays["job"]))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: make a job with python -m diffusion_lab imagine "
                         f"\"PROMPT\" --out {path}") from None
    except (OSError, KeyError, ValueError) as err:  # not an npz, no 'job', bad JSON
        raise ValueError(f"{path} is not an /imagine job ({err}): make one with python -m diffusion_lab "
                         f"imagine \"PROMPT\" --out job.npz") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path} is not an /imagine job of this course (its format is "
                         f"{record.get('format') if isinstance(record, dict) else None!r}, expected {FORMAT!r})")
    return Job(Settings(**record["settings"]), tuple(record["seeds"]), tuple(record["guidance_scales"]), images,
               record["action"], record["index"], None, tuple(record["history"]))


# ----- how the actions draw ---------------------------------------------------------------------------------

def chaos_scales(guidance_scale: float, chaos: int, num: int = GRID) -> tuple[float, ...]:
    """Each picture's w: w_k = 1 + (w - 1)(1 - chaos/100 s_k) with s = ``CHAOS_SPREAD`` (see the module)."""
    return tuple(1 + (guidance_scale - 1) * (1 - chaos / 100 * CHAOS_SPREAD[k % GRID]) for k in range(num))


def _grid(settings: Settings, action: str, parent: Job | None, pipe: TinySDPipeline, *, index: int | None = None,
          draw: Draw | None = None) -> Job:
    """Four pictures of ``settings`` by ``draw(w, n, generators) -> (n, 3, 64, 64)`` (default: text to image),
    pictures that share a guidance scale drawn together, each from its own seed's generator."""
    seed = secrets.randbelow(SEED_MAX + 1) if settings.seed is None else settings.seed
    settings = dataclasses.replace(settings, seed=seed)
    seeds = tuple((seed + k) % (SEED_MAX + 1) for k in range(GRID))
    scales = chaos_scales(settings.guidance_scale, settings.chaos)
    if draw is None:
        def draw(w: float, n: int, gens: list[torch.Generator]) -> torch.Tensor:
            return pipe(prompt=settings.prompt, negative_prompt=settings.negative_prompt, num_images_per_prompt=n,
                        num_inference_steps=settings.steps, guidance_scale=w, generator=gens)
    images: list[np.ndarray | None] = [None] * GRID
    for w in dict.fromkeys(scales):  # each distinct scale once, in order
        ks = [k for k in range(GRID) if scales[k] == w]
        drawn = _to_uint8(draw(w, len(ks), [torch.Generator().manual_seed(seeds[k]) for k in ks]))
        for k, picture in zip(ks, drawn):
            images[k] = picture
    history = () if parent is None else (*parent.history, parent.describe())
    return Job(settings, seeds, scales, np.stack(images), action, index, parent, history)


def _from_picture(job: Job, i: int, settings: Settings, action: str, strength: float, pipe: TinySDPipeline) -> Job:
    """Four SDEdits of picture ``i`` towards ``settings`` (vary, remix)."""
    picture = _picture(job, i, pipe)  # (1, 3, 64, 64)
    return _grid(settings, action, job, pipe, index=i,
                 draw=lambda w, n, gens: pipe.img2img(picture.expand(n, -1, -1, -1), settings.prompt, strength,
                                                      negative_prompt=settings.negative_prompt,
                                                      num_inference_steps=settings.steps, guidance_scale=w,
                                                      generator=gens))


def _strength(name: str) -> float:
    if name not in STRENGTHS:
        raise ValueError(f"strength must be one of {', '.join(map(repr, STRENGTHS))}, got {name!r}")
    return STRENGTHS[name]


def _check_index(job: Job, i: int) -> None:
    n = len(job.images)
    if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 1 <= i <= n:
        counts = "1 to 4, as Midjourney's buttons U1-U4 and V1-V4" if n == GRID else f"1 to {n}"
        raise ValueError(f"picture numbers count {counts}; this job has {n} picture(s), got {i!r}")


def _picture(job: Job, i: int, pipe: TinySDPipeline) -> torch.Tensor:
    """Picture ``i`` (1-based) as (1, 3, S, S) in [-1, 1] at the autoencoder's size S (an upscale is shrunk)."""
    _check_index(job, i)
    picture = job.tensors()[i - 1:i]
    size = pipe.autoencoder.config.image_size
    return picture if picture.shape[-1] == size else F.interpolate(picture, size=(size, size), mode="area")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """Pictures (n, 3, H, W) in [-1, 1] -> uint8 (n, H, W, 3)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _key(root: str | Path | None) -> tuple[str, str]:
    """(the checkpoints folder, a digest of its manifest): a cache key that changes when a checkpoint does."""
    manifest = checkpoints_dir(root) / "manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else ""
    return str(checkpoints_dir(root)), digest


def _pipe(pipeline: TinySDPipeline | None, root: str | Path | None, device: torch.device | str | None) -> TinySDPipeline:
    return pipeline if pipeline is not None else _load_tiny_sd(_key(root), str(pick_device(device)))


@functools.lru_cache(maxsize=2)
def _load_tiny_sd(key: tuple[str, str], device: str) -> TinySDPipeline:
    return TinySDPipeline.from_pretrained("tiny_sd", root=key[0], device=device)


@functools.lru_cache(maxsize=2)
def _load_upsampler(key: tuple[str, str], device: str) -> Pretrained:
    return load_pretrained("upsampler", root=key[0], device=device)
