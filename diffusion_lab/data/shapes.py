"""Captioned pictures of coloured shapes, the course's text-to-image data set (chapters 06-08, 10).

Each image shows ONE shape on a dark background, described by four attributes and a caption:

    ShapeAttributes("circle", "red", "small", "top left").caption()  ->  "a small red circle in the top left"

Because the attributes are known exactly, a generated image can be scored (did the model draw a red
circle in the top left?). Some (colour, shape) pairs are kept out of the training split (``HELD_OUT``)
so chapter 06 can ask whether a model composes words it has only seen apart.

Drawing is pure numpy: each shape is a boolean mask on a grid four times finer than the image, and
averaging 4 x 4 blocks gives anti-aliased edges. With an ``rng``, position, scale and colour jitter a
little and the background gets faint noise, so images vary but stay unambiguous at 32 x 32.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from diffusion_lab.data._validate import check_choice, check_int

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {  # name -> RGB, chosen to stay distinct after noise and blur
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 100, 245),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 220),
}
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "centre")
HELD_OUT: frozenset[tuple[str, str]] = frozenset({("green", "triangle"), ("blue", "circle"), ("yellow", "square")})
SPLITS = ("train", "held_out", "all")

BACKGROUND = (18, 18, 24)


def caption_vocabulary() -> tuple[str, ...]:
    """Every word of the captions, in a fixed order: what a text encoder for this data set must know."""
    words = ["a", "in", "the", *SIZES, *COLOURS, *SHAPES]
    for position in POSITIONS:
        words += [w for w in position.split() if w not in words]
    return tuple(words)
SUPERSAMPLE = 4
# Shape centre in units of the image side (x to the right, y downwards).
_CENTRES = {
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "centre": (0.5, 0.5),
}
_RADII = {"small": 0.1, "large": 0.17}  # half the shape's width, in units of the image side
_POSITION_JITTER = 0.025  # at most this far from the centre above (under 1 pixel at 32 x 32)
_SCALE_JITTER = 0.08  # radius varies by at most 8 %
_COLOUR_JITTER = 12  # per channel, out of 255
_NOISE_STD = 4.0  # background noise, out of 255


@dataclass(frozen=True)
class ShapeAttributes:
    """What one image shows: a ``shape`` of a ``colour`` and ``size`` at a ``position``."""

    shape: str
    colour: str
    size: str
    position: str

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("size", self.size, SIZES)
        check_choice("position", self.position, POSITIONS)

    def caption(self) -> str:
        """The English description, e.g. ``"a large blue square in the centre"``."""
        return f"a {self.size} {self.colour} {self.shape} in the {self.position}"

    def indices(self) -> tuple[int, int, int, int]:
        """Positions in ``SHAPES``, ``COLOURS`` (dict order), ``SIZES`` and ``POSITIONS``."""
        return (
            SHAPES.index(self.shape),
            list(COLOURS).index(self.colour),
            SIZES.index(self.size),
            POSITIONS.index(self.position),
        )


def _mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` with half-width ``r``, given offsets (dx, dy) from its centre."""
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        side = 0.9 * r  # a bit smaller than the circle so both cover a similar area
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    if shape == "cross":
        arm = 0.36 * r
        return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    # triangle pointing up: apex at (0, -r), base from (-r, r) to (r, r)
    inside_sides = np.abs(dx) <= r * (dy + r) / (2.0 * r)
    return inside_sides & (dy <= r)


def colour_rgb(colour: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """The RGB value (3,) float64 that ``colour`` is drawn with; with ``rng``, jittered a little per channel."""
    rgb = np.array(COLOURS[colour], dtype=np.float64)
    return rgb if rng is None else rgb + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, size=3)


def layout(attrs: ShapeAttributes, rng: np.random.Generator | None = None) -> tuple[tuple[float, float], float, np.ndarray]:
    """Where and how ``render`` draws ``attrs``: the centre (x, y) and radius (half the shape's width), both
    in units of the image side, and the RGB colour (3,). With ``rng`` all three jitter slightly."""
    cx, cy = _CENTRES[attrs.position]
    radius = _RADII[attrs.size]
    if rng is not None:
        cx, cy = np.array([cx, cy]) + rng.uniform(-_POSITION_JITTER, _POSITION_JITTER, size=2)
        radius *= 1.0 + rng.uniform(-_SCALE_JITTER, _SCALE_JITTER)
    return (float(cx), float(cy)), float(radius), colour_rgb(attrs.colour, rng)


def background(size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """An empty canvas (size, size, 3) float64 in 0..255: the dark background, with faint noise given ``rng``."""
    image = np.broadcast_to(np.array(BACKGROUND, dtype=np.float64), (size, size, 3))
    return image if rng is None else image + rng.normal(0.0, _NOISE_STD, size=(size, size, 3))


def coverage(shape: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """The share (size, size) in [0, 1] of each pixel that ``shape`` covers: a mask on a grid ``SUPERSAMPLE``
    times finer, averaged over blocks (anti-aliasing). Rows are y, downwards."""
    fine = size * SUPERSAMPLE
    grid = (np.arange(fine) + 0.5) / fine  # sample points at the centres of the fine pixels
    mask = _mask(shape, grid[None, :] - centre[0], grid[:, None] - centre[1], radius)  # (fine, fine)
    return mask.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))  # (size, size)


def paint(image: np.ndarray, shape: str, centre: tuple[float, float], radius: float, colour: np.ndarray) -> np.ndarray:
    """``image`` (size, size, 3) float64 with one anti-aliased ``shape`` of RGB ``colour`` blended in (a new array)."""
    cover = coverage(shape, centre, radius, image.shape[0])[:, :, None]  # (size, size, 1)
    return (1.0 - cover) * image + cover * colour  # (size, size, 3)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float canvas in 0..255 -> uint8 pixels, rounded."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render(attrs: ShapeAttributes, size: int = 32, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw one image of ``attrs``; returns uint8 (size, size, 3) RGB.

    Without ``rng`` the drawing is canonical (exact centre, scale and colour, flat background); with
    it, position, scale and colour jitter slightly and the background gets faint noise.
    """
    if not isinstance(attrs, ShapeAttributes):
        raise TypeError(f"attrs must be a ShapeAttributes, got {type(attrs).__name__}; "
                        f"build one with ShapeAttributes('circle', 'red', 'small', 'top left').")
    check_int("size", size, low=16)
    centre, radius, colour = layout(attrs, rng)
    return to_uint8(paint(background(size, rng), attrs.shape, centre, radius, colour))


@dataclass(frozen=True)
class ShapesDataset:
    """A batch of shapes pictures with their captions and attributes.

    ``images``: float32 (n, 3, size, size) in [-1, 1]; ``captions`` and ``attributes``: n each;
    ``attribute_indices``: int64 (n, 4), columns (shape, colour, size, position) as in ``indices()``.
    """

    images: torch.Tensor
    captions: list[str]
    attributes: list[ShapeAttributes]
    attribute_indices: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)


def combinations(split: str = "all") -> list[ShapeAttributes]:
    """Every attribute combination in ``split``: ``"train"`` (without ``HELD_OUT``), ``"held_out"`` or ``"all"``."""
    check_choice("split", split, SPLITS)
    every = [ShapeAttributes(*combo) for combo in itertools.product(SHAPES, COLOURS, SIZES, POSITIONS)]
    if split == "all":
        return every
    want_held_out = split == "held_out"
    return [a for a in every if ((a.colour, a.shape) in HELD_OUT) == want_held_out]


def balanced_choice(pool: list, n: int, rng: np.random.Generator) -> list:
    """``n`` items of ``pool`` visited in shuffled rounds, so each appears ``n // len(pool)`` or one more times."""
    rounds = -(-n // len(pool))  # ceil(n / len(pool))
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(rounds)])[:n]
    return [pool[i] for i in order]


def make_shapes(n: int, *, size: int = 32, seed: int = 0, split: str = "train") -> ShapesDataset:
    """Generate ``n`` captioned images, identical for the same arguments.

    The combinations of ``split`` (see ``combinations``) are visited in shuffled rounds (``balanced_choice``),
    so every one appears ``n // len(combinations(split))`` or one more times.
    """
    check_int("n", n, low=1)
    check_int("size", size, low=16)
    check_int("seed", seed, low=0)
    rng = np.random.default_rng(seed)
    attributes = balanced_choice(combinations(split), n, rng)
    pictures = np.stack([render(a, size, rng=rng) for a in attributes])  # (n, size, size, 3) uint8
    images = torch.from_numpy(pictures).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0  # (n, 3, size, size)
    return ShapesDataset(
        images=images.contiguous(),
        captions=[a.caption() for a in attributes],
        attributes=attributes,
        attribute_indices=torch.tensor([a.indices() for a in attributes], dtype=torch.int64),
    )
