"""The judge of two-shape scenes: reads which objects a picture shows and how they are placed (chapters 10-11).

One picture has two true captions: "a red circle to the left of a blue square" is the same picture as
"a blue square to the right of a red circle". A judge cannot guess which of the two a prompt used, so it
reads the picture's CANONICAL form, five indices that both captions share:

    axis       0 horizontal ("left of" / "right of"), 1 vertical ("above" / "below")
    shape_a    colour_a    the first object: the LEFT one on a horizontal axis, the TOP one on a vertical one
    shape_b    colour_b    the other object

``canonical(scene_or_caption)`` maps a caption or a ``Scene`` to that ``Reading``; ``Reading.captions()`` goes
back to both captions. ``SceneScorer`` is the shapes scorer's small CNN (``attribute_scorer.py``: features
flattened, so where things are survives) with five heads, one per field:

    x (B, 3, 32, 32) in [-1, 1] -> {"axis": (B, 2), "shape_a": (B, 5), "colour_a": (B, 5),
                                    "shape_b": (B, 5), "colour_b": (B, 5)} logits

It is trained on generated two-shape scenes of every pair, the held-out ones included (it judges the
generator's pictures), by ``fit`` with ``training.AttributeObjective`` and these five heads (preset
``scenes_scorer``). ``judges/binding.py`` scores generated pictures with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from diffusion_lab.data._validate import check_choice
from diffusion_lab.data.scenes import RELATIONS, Scene, SceneObject
from diffusion_lab.data.shapes import COLOURS, SHAPES
from diffusion_lab.judges.attribute_scorer import AttributeScorer, AttributeScorerConfig

AXES = ("horizontal", "vertical")
READING_NAMES: tuple[str, ...] = ("axis", "shape_a", "colour_a", "shape_b", "colour_b")  # columns of a reading
READING_SIZES: dict[str, int] = {"axis": len(AXES), "shape_a": len(SHAPES), "colour_a": len(COLOURS),
                                 "shape_b": len(SHAPES), "colour_b": len(COLOURS)}
# relation -> (axis, True when objects[0] is the first object: the left or the top one)
_CANONICAL = {"left of": (0, True), "right of": (0, False), "above": (1, True), "below": (1, False)}
_EXAMPLE = "'a red circle to the left of a blue square'"


class Reading(NamedTuple):
    """A two-shape picture in canonical form: indices into ``AXES``, ``SHAPES`` and ``COLOURS`` (dict order)."""

    axis: int
    shape_a: int
    colour_a: int
    shape_b: int
    colour_b: int

    def captions(self) -> tuple[str, str]:
        """The two captions of this picture: "A left of B" and "B right of A" (or "A above B", "B below A")."""
        colours = list(COLOURS)
        # made-up places on the reading's axis: Scene writes the caption, so the wording is never copied here
        xy_a, xy_b = ((0.3, 0.5), (0.7, 0.5)) if self.axis == 0 else ((0.5, 0.3), (0.5, 0.7))
        a = SceneObject(SHAPES[self.shape_a], colours[self.colour_a], "small", xy_a, 0.1)
        b = SceneObject(SHAPES[self.shape_b], colours[self.colour_b], "small", xy_b, 0.1)
        first, second = ("left of", "right of") if self.axis == 0 else ("above", "below")
        return Scene((a, b), relation=first).caption(), Scene((b, a), relation=second).caption()


def _parse(caption: str) -> tuple[tuple[str, str], str, tuple[str, str]]:
    """"a red circle to the left of a blue square" -> (("circle", "red"), "left of", ("square", "blue"))."""
    words = caption.split()
    phrase = " ".join(words[3:-3]).removeprefix("to the ")  # "to the left of" -> "left of"; "above" stays
    if len(words) < 7 or words[0] != "a" or words[-3] != "a" or phrase not in RELATIONS:
        raise ValueError(f"canonical reads two-shape captions such as {_EXAMPLE} (relations {RELATIONS}); got "
                         f"{caption!r}. A one-shape caption is scored with the shapes_scorer's attribute_accuracy")
    for colour, shape in (words[1:3], words[-2:]):
        check_choice("colour", colour, COLOURS)
        check_choice("shape", shape, SHAPES)
    return (words[2], words[1]), phrase, (words[-1], words[-2])


def canonical(scene_or_caption: Scene | str) -> Reading:
    """The canonical reading of a two-shape ``Scene`` or caption; both captions of one picture give the same.

    "a red circle to the left of a blue square" and "a blue square to the right of a red circle" both give
    Reading(axis=0 (horizontal), circle, red, square, blue). Raises a ValueError for a one-shape scene or caption.
    """
    if isinstance(scene_or_caption, Scene):
        if len(scene_or_caption.objects) != 2:
            raise ValueError(f"canonical reads scenes of two shapes; this one has one ({scene_or_caption.caption()!r})")
        first, second = ((o.shape, o.colour) for o in scene_or_caption.objects)
        relation = scene_or_caption.relation
    elif isinstance(scene_or_caption, str):
        first, relation, second = _parse(scene_or_caption)
    else:
        raise TypeError(f"canonical takes a Scene or a caption str such as {_EXAMPLE}, "
                        f"got {type(scene_or_caption).__name__}")
    if first == second:
        raise ValueError(f"both objects are {first[1]} {first[0]}s, so no reading can tell them apart; "
                         f"give two objects that differ in colour or shape")
    axis, in_order = _CANONICAL[relation]
    (shape_a, colour_a), (shape_b, colour_b) = (first, second) if in_order else (second, first)
    colours = list(COLOURS)
    return Reading(axis, SHAPES.index(shape_a), colours.index(colour_a), SHAPES.index(shape_b),
                   colours.index(colour_b))


def canonical_indices(scenes_or_captions: Sequence[Scene | str]) -> torch.Tensor:
    """N two-shape scenes or captions -> (N, 5) int64 readings, columns ``READING_NAMES``."""
    if isinstance(scenes_or_captions, str) or not isinstance(scenes_or_captions, Sequence) or not scenes_or_captions:
        raise TypeError(f"give a non-empty list of two-shape captions or Scenes, got {scenes_or_captions!r:.80}")
    return torch.tensor([canonical(s) for s in scenes_or_captions], dtype=torch.int64)  # (N, 5)


class SceneScorer(AttributeScorer):
    """x (B, 3, 32, 32) in [-1, 1] -> {"axis": (B, 2), "shape_a": (B, 5), "colour_a": (B, 5), "shape_b": (B, 5),
    "colour_b": (B, 5)} logits. The shapes scorer's body and features (``AttributeScorer``), five other heads."""

    def __init__(self, config: AttributeScorerConfig | None = None) -> None:
        super().__init__(AttributeScorerConfig() if config is None else config)
        self.heads = nn.ModuleDict({name: nn.Linear(self.config.feature_dim, n) for name, n in READING_SIZES.items()})

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 5) int64 readings, columns ``READING_NAMES``. Call ``model.eval()`` first."""
        logits = self(x)
        return torch.stack([logits[name].argmax(dim=1) for name in READING_NAMES], dim=1)  # (B, 5)
