"""Scenes of one or two coloured shapes, with captions and ground truth (chapters 10-11).

A scene of one shape is exactly a picture of the shapes data set (``shapes.py``), caption and all. A
scene of two shapes names both objects and where the first is relative to the second:

    "a red circle to the left of a blue square"      "a red circle above a blue square"
    "a red circle to the right of a blue square"     "a red circle below a blue square"

Two-shape captions leave out sizes and positions, and the two objects always differ in colour or shape,
so the caption says unambiguously which object is which. Every object's shape, colour, size, centre and
radius are kept, so a scorer can check *attribute binding*: did the model put red on the circle and blue
on the square, or the other way round? ``swap_colours`` writes the caption with the colours exchanged,
the wrong-binding rival that chapter 10's CLIP must score lower.

Each object of a two-shape scene is drawn as ``shapes.py`` draws a small shape (same scale and colour
jitter, anti-aliasing and background noise), then placed so the relation is plainly true: centres at
least ``MIN_GAP`` apart along the relation's axis, at most ``2 * MAX_OFFSET`` apart across it, the
shapes never touching and always fully inside the picture. The held-out (colour, shape) pairs of
``shapes.HELD_OUT`` stay out of the "train" split for both objects.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from diffusion_lab.data._validate import check_choice, check_int
from diffusion_lab.data.shapes import (
    COLOURS,
    HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLITS,
    ShapeAttributes,
    background,
    balanced_choice,
    caption_vocabulary,
    combinations,
    coverage,
    layout,
    paint,
    to_uint8,
)

RELATIONS = ("left of", "right of", "above", "below")  # where objects[0] is, relative to objects[1]
_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
_AXIS = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}  # (x=0 / y=1, sign of a - b)
MIN_GAP, MAX_GAP = 0.3, 0.5  # distance between the centres along the relation's axis, in image sides
MAX_OFFSET = 0.04  # each centre's offset across the axis from a shared line
EXTENT = 1.15  # the widest shape (the diamond) reaches 1.15 radii from its centre along x or y
MARGIN = 0.03  # kept clear between a shape and the picture's edge


def scene_vocabulary() -> tuple[str, ...]:
    """The shapes' ``caption_vocabulary()`` followed by the relation words it lacks, in a fixed order.

    The longest caption ("a red circle to the right of a blue square") has 10 words, so the chapter-06
    ``Tokenizer`` with its default ``max_length=12`` (``<start>`` + 11) reads every caption."""
    words = list(caption_vocabulary())
    for phrase in _PHRASES.values():
        words += [w for w in phrase.split() if w not in words]
    return tuple(words)


@dataclass(frozen=True)
class SceneObject:
    """One drawn shape: ``shape``, ``colour``, ``size`` ("small" / "large") and where it was drawn: ``centre``
    (x, y) and ``radius`` (half its width) in units of the image side, x to the right and y downwards."""

    shape: str
    colour: str
    size: str
    centre: tuple[float, float]
    radius: float

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("size", self.size, SIZES)
        object.__setattr__(self, "centre", tuple(float(c) for c in self.centre))
        if len(self.centre) != 2 or not all(0.0 <= c <= 1.0 for c in self.centre):
            raise ValueError(f"centre must be (x, y) inside the picture, both in [0, 1], got {self.centre}")
        if not 0.0 < self.radius < 0.5:
            raise ValueError(f"radius must be in (0, 0.5) image sides, got {self.radius}")

    def indices(self) -> tuple[int, int, int]:
        """Positions in ``SHAPES``, ``COLOURS`` (dict order) and ``SIZES``."""
        return SHAPES.index(self.shape), list(COLOURS).index(self.colour), SIZES.index(self.size)


@dataclass(frozen=True)
class Scene:
    """What one picture shows: one object at a named ``position``, or two objects in a ``relation``
    (one of ``RELATIONS``, saying where ``objects[0]`` is relative to ``objects[1]``)."""

    objects: tuple[SceneObject, ...]
    relation: str | None = None
    position: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if len(self.objects) == 1:
            check_choice("position", self.position, POSITIONS)
            if self.relation is not None:
                raise ValueError("a scene of one object has a position, not a relation; pass relation=None")
        elif len(self.objects) == 2:
            check_choice("relation", self.relation, RELATIONS)
            if self.position is not None:
                raise ValueError("a scene of two objects has a relation, not a position; pass position=None")
            a, b = self.objects
            if (a.shape, a.colour) == (b.shape, b.colour):
                raise ValueError(f"the two objects are both {a.colour} {a.shape}s, so the caption would not say "
                                 f"which is which; make them differ in colour or shape")
        else:
            raise ValueError(f"a scene has one or two objects, got {len(self.objects)}")

    @property
    def held_out(self) -> bool:
        """True when any object is a (colour, shape) pair of ``HELD_OUT``."""
        return any((o.colour, o.shape) in HELD_OUT for o in self.objects)

    def attributes(self) -> ShapeAttributes:
        """A one-object scene as the shapes data set describes it (two-object scenes have no such description)."""
        if len(self.objects) != 1:
            raise ValueError("only a scene of one object has ShapeAttributes; this one has two")
        o = self.objects[0]
        return ShapeAttributes(o.shape, o.colour, o.size, self.position)

    def caption(self) -> str:
        """"a small red circle in the top left" or "a red circle to the left of a blue square"."""
        if len(self.objects) == 1:
            return self.attributes().caption()
        a, b = self.objects
        return f"a {a.colour} {a.shape} {_PHRASES[self.relation]} a {b.colour} {b.shape}"


def object_masks(scene: Scene, size: int) -> np.ndarray:
    """How much of each pixel each object covers, (k, size, size) float64 in [0, 1] for k objects: where the
    objects are (a region to repaint, a check that two objects do not touch)."""
    check_int("size", size, low=16)
    return np.stack([coverage(o.shape, o.centre, o.radius, size) for o in scene.objects])


def swap_colours(caption: str) -> str:
    """The caption of a two-shape scene with its two colours exchanged: the wrong binding.

    "a red circle to the left of a blue square" -> "a blue circle to the left of a red square". Raises a
    ValueError when the caption does not name exactly two different colours (nothing would change)."""
    words = caption.split()
    where = [i for i, w in enumerate(words) if w in COLOURS]
    if len(where) != 2 or words[where[0]] == words[where[1]]:
        raise ValueError(f"swap_colours needs a two-shape caption with two different colours, such as 'a red "
                         f"circle to the left of a blue square'; got {caption!r}")
    i, j = where
    words[i], words[j] = words[j], words[i]
    return " ".join(words)


def two_shape_combinations(split: str = "all") -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    """Every ((shape, colour), (shape, colour), relation) of two different objects in ``split``: "train" (no
    object of ``HELD_OUT``), "held_out" (at least one) or "all"; 600 ordered object pairs x 4 relations."""
    check_choice("split", split, SPLITS)
    objects = list(itertools.product(SHAPES, COLOURS))
    every = [(a, b, r) for a, b in itertools.permutations(objects, 2) for r in RELATIONS]
    if split == "all":
        return every
    want_held_out = split == "held_out"
    return [c for c in every if any((colour, shape) in HELD_OUT for shape, colour in c[:2]) == want_held_out]


def _place_pair(relation: str, radii: list[float], rng: np.random.Generator) -> list[tuple[float, float]]:
    """Centres (x, y) of two shapes of these radii with objects[0] ``relation`` objects[1], not touching and
    fully inside: a gap in [MIN_GAP, MAX_GAP] along the axis, a shared line across it with small offsets."""
    axis, sign = _AXIS[relation]
    reach = [EXTENT * r + MARGIN for r in radii]  # how close each centre may come to an edge
    first, second = (0, 1) if sign < 0 else (1, 0)  # which object has the smaller coordinate along the axis
    gap = rng.uniform(MIN_GAP, MAX_GAP)
    start = rng.uniform(reach[first], 1.0 - reach[second] - gap)
    along = {first: start, second: start + gap}
    edge = max(reach) + MAX_OFFSET
    line = rng.uniform(edge, 1.0 - edge)
    across = line + rng.uniform(-MAX_OFFSET, MAX_OFFSET, size=2)
    centres = []
    for k in (0, 1):
        xy = [0.0, 0.0]
        xy[axis], xy[1 - axis] = along[k], across[k]
        centres.append((float(xy[0]), float(xy[1])))
    return centres


def _draw_one(attrs: ShapeAttributes, size: int, rng: np.random.Generator) -> tuple[np.ndarray, Scene]:
    """A one-shape scene, drawn exactly as ``shapes.render`` draws ``attrs`` (the same random numbers)."""
    centre, radius, colour = layout(attrs, rng)
    image = paint(background(size, rng), attrs.shape, centre, radius, colour)
    obj = SceneObject(attrs.shape, attrs.colour, attrs.size, centre, radius)
    return to_uint8(image), Scene((obj,), position=attrs.position)


def _draw_two(combo: tuple, size: int, rng: np.random.Generator) -> tuple[np.ndarray, Scene]:
    """A two-shape scene: each object jittered as ``shapes.py`` jitters a small shape, then placed."""
    pair, relation = combo[:2], combo[2]  # ((shape, colour), (shape, colour)), relation
    drawn = [layout(ShapeAttributes(shape, colour, "small", "centre"), rng) for shape, colour in pair]
    radii = [radius for _, radius, _ in drawn]  # the jittered centres are not used: _place_pair places them
    centres = _place_pair(relation, radii, rng)
    image = background(size, rng)
    for (shape, _), centre, (_, radius, colour) in zip(pair, centres, drawn):
        image = paint(image, shape, centre, radius, colour)
    objects = tuple(SceneObject(shape, colour, "small", centre, radius)
                    for (shape, colour), centre, radius in zip(pair, centres, radii))
    return to_uint8(image), Scene(objects, relation=relation)


@dataclass(frozen=True)
class SceneDataset:
    """A batch of scenes. ``images``: float32 (n, 3, size, size) in [-1, 1]; ``captions``, ``scenes``: n each.

    Integer tensors for scoring: ``num_objects`` (n,) 1 or 2; ``object_indices`` (n, 2, 3) int64, each object's
    (shape, colour, size) as in ``SceneObject.indices()``, -1 for a missing second object; ``centres``
    (n, 2, 2) float32 (x, y), NaN for a missing object; ``relations`` (n,) int64 into ``RELATIONS``, -1 for
    one-shape scenes.
    """

    images: torch.Tensor
    captions: list[str]
    scenes: list[Scene]
    num_objects: torch.Tensor
    object_indices: torch.Tensor
    centres: torch.Tensor
    relations: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)


def _collect(pictures: list[np.ndarray], scenes: list[Scene]) -> SceneDataset:
    images = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0  # (n, 3, S, S)
    pad = [(-1, -1, -1)]
    return SceneDataset(
        images=images.contiguous(),
        captions=[s.caption() for s in scenes],
        scenes=scenes,
        num_objects=torch.tensor([len(s.objects) for s in scenes], dtype=torch.int64),
        object_indices=torch.tensor([[o.indices() for o in s.objects] + pad * (2 - len(s.objects)) for s in scenes],
                                    dtype=torch.int64),
        centres=torch.tensor([[o.centre for o in s.objects] + [(math.nan, math.nan)] * (2 - len(s.objects))
                              for s in scenes], dtype=torch.float32),
        relations=torch.tensor([RELATIONS.index(s.relation) if s.relation else -1 for s in scenes], dtype=torch.int64),
    )


def make_scenes(n: int, *, size: int = 32, seed: int = 0, split: str = "train",
                two_shape_fraction: float = 0.5) -> SceneDataset:
    """Generate ``n`` captioned scenes, identical for the same arguments; round(n * two_shape_fraction) of
    them show two shapes, at places drawn from the seed.

    The one-shape scenes are ``make_shapes(n_one, size=size, seed=seed, split=split)``, picture for picture
    and in order; the two-shape ones visit ``two_shape_combinations(split)`` in shuffled rounds from a
    separate random stream, so changing the fraction never changes how a one-shape scene looks.
    """
    check_int("n", n, low=1)
    check_int("size", size, low=16)
    check_int("seed", seed, low=0)
    check_choice("split", split, SPLITS)
    if isinstance(two_shape_fraction, bool) or not isinstance(two_shape_fraction, int | float) or not (
            0.0 <= two_shape_fraction <= 1.0):
        raise ValueError(f"two_shape_fraction must be a number in [0, 1] (0: one shape per scene, 1: always two), "
                         f"got {two_shape_fraction!r}")
    n_two = round(n * two_shape_fraction)
    rng_one, rng_two = np.random.default_rng(seed), np.random.default_rng([seed, 2])
    is_two = np.zeros(n, dtype=bool)
    is_two[rng_two.permutation(n)[:n_two]] = True
    ones = iter(balanced_choice(combinations(split), n - n_two, rng_one) if n_two < n else [])
    twos = iter(balanced_choice(two_shape_combinations(split), n_two, rng_two) if n_two else [])
    drawn = [_draw_two(next(twos), size, rng_two) if two else _draw_one(next(ones), size, rng_one) for two in is_two]
    return _collect([picture for picture, _ in drawn], [scene for _, scene in drawn])


def multiscale_pictures(n: int, *, size: int = 64, seed: int = 0, split: str = "train") -> torch.Tensor:
    """``n`` scene pictures (n, 3, size, size) in [-1, 1] at two scales, for a 2x upsampler (chapter 10).

    Half are whole scenes rendered at ``size``; the other half are random ``size`` x ``size`` windows of scenes
    rendered at twice that size, where a shape spans twice as many pixels. An upsampler trained on crops of
    both has seen edges and shapes as they look at 32 -> 64 and at 64 -> 128, so chapter 11 can reuse the
    chapter-10 upsampler one octave higher.
    """
    check_int("n", n, low=2)
    check_int("size", size, low=16)
    check_int("seed", seed, low=0)
    whole = make_scenes(n // 2, size=size, seed=seed, split=split).images  # (n/2, 3, size, size)
    large = make_scenes(n - n // 2, size=2 * size, seed=seed + 1, split=split).images  # (n - n/2, 3, 2size, 2size)
    rng = np.random.default_rng([seed, 3])
    corners = rng.integers(0, size + 1, size=(len(large), 2))  # top, left of each window
    windows = torch.stack([picture[:, top:top + size, left:left + size]
                           for picture, (top, left) in zip(large, corners)])  # (n - n/2, 3, size, size)
    return torch.cat([whole, windows]).contiguous()
