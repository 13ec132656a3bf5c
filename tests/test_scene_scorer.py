"""The scene scorer (chapters 10-11): canonical readings of two-shape scenes, the network, the binding metric, and
the shipped checkpoint reading real scenes."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.data.shapes import COLOURS, SHAPES
from diffusion_lab.judges.attribute_scorer import AttributeScorerConfig
from diffusion_lab.judges.binding import at_scorer_size, binding_accuracy
from diffusion_lab.judges.scene_scorer import (
    AXES,
    READING_NAMES,
    READING_SIZES,
    Reading,
    SceneScorer,
    canonical,
    canonical_indices,
)
from diffusion_lab.pretrained import load_pretrained

SMALL = AttributeScorerConfig(width=8, feature_dim=32)
COLOUR = {name: i for i, name in enumerate(COLOURS)}
SHAPE = {name: i for i, name in enumerate(SHAPES)}


# ----- canonical readings ----------------------------------------------------------------------

def test_horizontal_case_by_hand():
    want = Reading(axis=0, shape_a=SHAPE["circle"], colour_a=COLOUR["red"], shape_b=SHAPE["square"],
                   colour_b=COLOUR["blue"])
    assert canonical("a red circle to the left of a blue square") == want
    assert canonical("a blue square to the right of a red circle") == want  # the same picture, worded the other way
    assert canonical("a red circle to the right of a blue square") == Reading(0, SHAPE["square"], COLOUR["blue"],
                                                                              SHAPE["circle"], COLOUR["red"])


def test_vertical_case_by_hand():
    # "below": the yellow cross is on top, so it is the first object
    want = Reading(axis=1, shape_a=SHAPE["cross"], colour_a=COLOUR["yellow"], shape_b=SHAPE["triangle"],
                   colour_b=COLOUR["green"])
    assert AXES[want.axis] == "vertical"
    assert canonical("a green triangle below a yellow cross") == want
    assert canonical("a yellow cross above a green triangle") == want
    assert tuple(want) == (1, 4, 3, 2, 1)  # the columns of READING_NAMES, indices into AXES, SHAPES, COLOURS


def test_both_captions_of_every_reading_map_back_to_it():
    objects = list(itertools.product(range(len(SHAPES)), range(len(COLOURS))))
    readings = [Reading(axis, *a, *b) for axis in (0, 1) for a, b in itertools.permutations(objects, 2)]
    assert len(readings) == 1200  # 600 ordered pairs of different objects on 2 axes
    captions = set()
    for reading in readings:
        first, second = reading.captions()
        assert first != second
        assert canonical(first) == reading and canonical(second) == reading
        captions |= {first, second}
    assert len(captions) == 2400  # every caption of two_shape_combinations, each read once


def test_scenes_and_their_captions_agree_and_the_first_object_is_left_or_top():
    scenes = make_scenes(200, seed=4, split="all", two_shape_fraction=1.0)
    from_scenes, from_captions = canonical_indices(scenes.scenes), canonical_indices(scenes.captions)
    assert from_scenes.shape == (200, 5) and from_scenes.dtype == torch.int64
    assert torch.equal(from_scenes, from_captions)
    assert set(from_scenes[:, 0].tolist()) == {0, 1}
    for reading, scene in zip(from_scenes.tolist(), scenes.scenes):
        a, b = scene.objects
        if (SHAPE[a.shape], COLOUR[a.colour]) != tuple(reading[1:3]):
            a, b = b, a
        assert (SHAPE[a.shape], COLOUR[a.colour], SHAPE[b.shape], COLOUR[b.colour]) == tuple(reading[1:])
        axis = reading[0]
        assert a.centre[axis] + 0.25 < b.centre[axis]  # x grows to the right, y downwards: a is left / on top


def test_canonical_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match=r"two-shape captions.*'a small red circle in the top left'.*attribute_accuracy"):
        canonical("a small red circle in the top left")
    one_shape = make_scenes(2, seed=0, two_shape_fraction=0.0).scenes[0]
    with pytest.raises(ValueError, match="scenes of two shapes; this one has one"):
        canonical(one_shape)
    with pytest.raises(ValueError, match="two-shape captions"):
        canonical("a red circle next to a blue square")
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        canonical("a pink circle above a blue square")
    with pytest.raises(ValueError, match="both objects are red circles"):
        canonical("a red circle above a red circle")
    with pytest.raises(TypeError, match="Scene or a caption str"):
        canonical(3)
    with pytest.raises(TypeError, match="non-empty list"):
        canonical_indices("a red circle above a blue square")


# ----- the network -----------------------------------------------------------------------------

def test_forward_and_predict_shapes():
    torch.manual_seed(0)
    model = SceneScorer(SMALL).eval()
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    logits = model(x)
    assert list(logits) == list(READING_NAMES)
    assert {name: tuple(v.shape) for name, v in logits.items()} == {name: (6, n) for name, n in READING_SIZES.items()}
    predicted = model.predict(x)
    assert predicted.shape == (6, 5) and predicted.dtype == torch.int64
    for column, name in enumerate(READING_NAMES):
        assert torch.equal(predicted[:, column], logits[name].argmax(dim=1))


def test_model_rejects_wrong_pictures():
    model = SceneScorer(SMALL)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.zeros(2, 3, 64, 64))  # the metric shrinks 64x64 pictures; the network does not
    with pytest.raises(TypeError, match="AttributeScorerConfig"):
        SceneScorer({"width": 8})


# ----- the metric ------------------------------------------------------------------------------

class Oracle(SceneScorer):
    """Answers ``readings[i]`` for a picture filled with the value i / 100: a scorer whose answers we choose."""

    def __init__(self, readings: list[Reading]) -> None:
        super().__init__(SMALL)
        self.readings = torch.tensor(readings)  # (N, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        which = (x[:, 0, 0, 0] * 100).round().long()  # (B,)
        return {name: F.one_hot(self.readings[which, k], n).float() for k, (name, n) in enumerate(READING_SIZES.items())}


def test_binding_accuracy_on_a_hand_made_case():
    captions = ["a red circle to the left of a blue square", "a green triangle below a yellow cross",
                "a purple diamond above a red circle", "a blue square to the right of a red circle"]
    right = [canonical(c) for c in captions]
    answers = [right[0],
               right[1]._replace(colour_a=COLOUR["red"]),  # the cross in the wrong colour
               Reading(1, right[2].shape_b, right[2].colour_b, right[2].shape_a, right[2].colour_a),  # upside down
               right[3]._replace(axis=1)]  # the right objects, one above the other
    scorer = Oracle(answers)
    pictures = torch.arange(4.0).div(100).view(4, 1, 1, 1).expand(4, 3, 32, 32)
    want = {"axis": 0.75, "shape_a": 0.75, "colour_a": 0.5, "shape_b": 0.75, "colour_b": 0.75, "all": 0.25}
    assert binding_accuracy(scorer, pictures, captions, batch_size=3) == pytest.approx(want)
    big = torch.arange(4.0).div(100).view(4, 1, 1, 1).expand(4, 3, 64, 64)  # 64x64 pictures are pooled to 32x32
    assert binding_accuracy(scorer, big, captions) == pytest.approx(want)
    scorer.train()
    binding_accuracy(scorer, pictures, captions)
    assert scorer.training  # the scorer's mode is restored


def test_at_scorer_size_averages_2x2_blocks():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    small = at_scorer_size(x)
    assert small.shape == (2, 3, 32, 32)
    assert torch.allclose(small[:, :, 3, 5], x[:, :, 6:8, 10:12].mean(dim=(2, 3)))
    same = torch.zeros(1, 3, 32, 32)
    assert at_scorer_size(same) is same


def test_binding_accuracy_rejects_bad_inputs():
    scorer = SceneScorer(SMALL)
    captions = ["a red circle above a blue square"] * 2
    with pytest.raises(ValueError, match=r"32x32 pictures, or 64x64.*got \(48, 48\)"):
        binding_accuracy(scorer, torch.zeros(2, 3, 48, 48), captions)
    with pytest.raises(ValueError, match="2 pictures, 1 captions"):
        binding_accuracy(scorer, torch.zeros(2, 3, 32, 32), captions[:1])
    with pytest.raises(ValueError, match="two-shape captions"):
        binding_accuracy(scorer, torch.zeros(1, 3, 32, 32), ["a small red circle in the top left"])
    with pytest.raises(TypeError, match="SceneScorer"):
        binding_accuracy(torch.nn.Linear(2, 2), torch.zeros(2, 3, 32, 32), captions)
    with pytest.raises(TypeError, match="floating point"):
        binding_accuracy(scorer, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), captions)


# ----- the shipped judge -----------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64])
def test_shipped_scorer_reads_fresh_scenes(size):
    scorer = load_pretrained("scenes_scorer").model
    scenes = make_scenes(200, size=size, seed=2, split="all", two_shape_fraction=1.0)  # it learnt from seed 0
    scores = binding_accuracy(scorer, scenes.images, scenes.captions)
    assert scores["all"] >= 0.97, scores
