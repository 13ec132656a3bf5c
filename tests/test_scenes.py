"""diffusion_lab.data.scenes (chapters 10-11): scenes of one or two shapes, their captions and ground truth,
and the refactored drawing of shapes.py, which must stay bit for bit what it was."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from diffusion_lab.data.scenes import (
    MIN_GAP,
    RELATIONS,
    Scene,
    SceneObject,
    make_scenes,
    object_masks,
    scene_vocabulary,
    swap_colours,
    two_shape_combinations,
)
from diffusion_lab.data.shapes import (
    COLOURS,
    HELD_OUT,
    ShapeAttributes,
    caption_vocabulary,
    make_shapes,
    render,
)
from diffusion_lab.models.text import Tokenizer

# sha256 (first 16 hex digits) of render()'s bytes, recorded before render was split into layout / background /
# paint / to_uint8: the refactoring must not move a single pixel.
RENDER_BEFORE = [
    (("circle", "red", "small", "top left"), 32, 0, "53aae7b4a0b95287"),
    (("triangle", "green", "large", "centre"), 64, 1, "7b1f7644a847b603"),
    (("cross", "purple", "large", "bottom right"), 32, 7, "d0a0300a2017eabe"),
    (("diamond", "yellow", "small", "top right"), 16, None, "ac18328e1bb1eb53"),
    (("square", "blue", "large", "bottom left"), 32, None, "628ed3af8275d274"),
]
MAKE_SHAPES_BEFORE = "f87f8624cb3c2daa"  # make_shapes(50, size=32, seed=3, split="all").images


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("attrs", "size", "seed", "expected"), RENDER_BEFORE)
def test_render_is_unchanged_by_the_refactoring(attrs, size, seed, expected):
    rng = None if seed is None else np.random.default_rng(seed)
    assert digest(render(ShapeAttributes(*attrs), size, rng=rng)) == expected


def test_make_shapes_is_unchanged_by_the_refactoring():
    assert digest(make_shapes(50, size=32, seed=3, split="all").images.numpy()) == MAKE_SHAPES_BEFORE


def test_scenes_are_deterministic_and_seeded():
    a, b = make_scenes(40, seed=5), make_scenes(40, seed=5)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.scenes == b.scenes
    assert not torch.equal(a.images, make_scenes(40, seed=6).images)
    assert a.images.shape == (40, 3, 32, 32) and a.images.dtype == torch.float32
    assert -1.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0
    assert make_scenes(3, size=64).images.shape == (3, 3, 64, 64)


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_one_shape_scenes_are_the_shapes_data_set(fraction):
    scenes = make_scenes(60, seed=3, split="all", two_shape_fraction=fraction)
    one = (scenes.num_objects == 1).nonzero().flatten()
    shapes = make_shapes(len(one), seed=3, split="all")
    assert len(one) == 60 - round(60 * fraction)
    assert torch.equal(scenes.images[one], shapes.images)
    assert [scenes.captions[i] for i in one] == shapes.captions
    assert [scenes.scenes[i].attributes() for i in one] == shapes.attributes
    assert torch.equal(scenes.object_indices[one, 0], shapes.attribute_indices[:, :3])
    assert (scenes.object_indices[one, 1] == -1).all() and (scenes.relations[one] == -1).all()


def test_the_fraction_is_exact_and_the_tensors_agree_with_the_scenes():
    data = make_scenes(101, seed=2, two_shape_fraction=0.3)
    assert int((data.num_objects == 2).sum()) == round(101 * 0.3)
    assert make_scenes(7, two_shape_fraction=1.0).num_objects.tolist() == [2] * 7
    for i, scene in enumerate(data.scenes):
        assert data.captions[i] == scene.caption()
        for k, obj in enumerate(scene.objects):
            assert tuple(data.object_indices[i, k].tolist()) == obj.indices()
            assert torch.allclose(data.centres[i, k], torch.tensor(obj.centre, dtype=torch.float32))
        if len(scene.objects) == 2:
            assert RELATIONS[int(data.relations[i])] == scene.relation
            assert torch.isfinite(data.centres[i]).all()
        else:
            assert torch.isnan(data.centres[i, 1]).all()


def test_two_shape_captions():
    red_circle = SceneObject("circle", "red", "small", (0.2, 0.5), 0.1)
    blue_square = SceneObject("square", "blue", "small", (0.7, 0.5), 0.1)
    captions = [Scene((red_circle, blue_square), relation=r).caption() for r in RELATIONS]
    assert captions == ["a red circle to the left of a blue square", "a red circle to the right of a blue square",
                        "a red circle above a blue square", "a red circle below a blue square"]
    assert swap_colours(captions[0]) == "a blue circle to the left of a red square"
    assert swap_colours(swap_colours(captions[2])) == captions[2]


@pytest.mark.parametrize("size", [32, 64])
def test_relations_are_true_and_objects_do_not_touch(size):
    data = make_scenes(300, size=size, seed=11, split="all", two_shape_fraction=1.0)
    seen = set()
    for scene, picture in zip(data.scenes, data.images):
        a, b = scene.objects
        axis = 0 if scene.relation in ("left of", "right of") else 1
        sign = -1 if scene.relation in ("left of", "above") else 1  # y runs downwards: above = smaller y
        along = sign * (a.centre[axis] - b.centre[axis])
        across = abs(a.centre[1 - axis] - b.centre[1 - axis])
        assert along >= MIN_GAP - 1e-9, scene
        assert across < along / 3, scene  # plainly on that side, not diagonal
        masks = object_masks(scene, size)  # (2, size, size)
        assert masks.shape == (2, size, size) and (masks.sum(axis=(1, 2)) > 4).all()
        assert not ((masks[0] > 0) & (masks[1] > 0)).any(), f"the objects share a pixel: {scene}"
        for m in masks:  # fully inside: the outermost rows and columns are empty
            assert m[0].sum() == m[-1].sum() == m[:, 0].sum() == m[:, -1].sum() == 0, scene
        # the picture shows each object in its colour at its centre (well away from the other)
        for obj in (a, b):
            x, y = (int(c * size) for c in obj.centre)
            pixel = (picture[:, y, x] + 1) * 127.5
            assert (pixel - torch.tensor(COLOURS[obj.colour])).abs().max() <= 13, scene  # colour jitter: 12
        seen.add(scene.relation)
    assert seen == set(RELATIONS)


def test_held_out_pairs_never_in_train():
    train = make_scenes(400, seed=1, split="train")
    assert not any(s.held_out for s in train.scenes)
    assert not any((o.colour, o.shape) in HELD_OUT for s in train.scenes for o in s.objects)
    held = make_scenes(200, seed=1, split="held_out")
    assert all(s.held_out for s in held.scenes)
    two = [s for s in held.scenes if len(s.objects) == 2]
    assert two and any(not all((o.colour, o.shape) in HELD_OUT for o in s.objects) for s in two)  # one is enough
    assert len(two_shape_combinations("train")) == 22 * 21 * 4
    assert len(two_shape_combinations("all")) == 25 * 24 * 4
    assert len(two_shape_combinations("train")) + len(two_shape_combinations("held_out")) == 25 * 24 * 4


def test_the_two_objects_always_differ():
    data = make_scenes(500, seed=4, split="all", two_shape_fraction=1.0)
    assert all((a.shape, a.colour) != (b.shape, b.colour) for a, b in (s.objects for s in data.scenes))
    with pytest.raises(ValueError, match="both red circles"):
        Scene((SceneObject("circle", "red", "small", (0.2, 0.5), 0.1),
               SceneObject("circle", "red", "small", (0.8, 0.5), 0.1)), relation="left of")


def test_every_caption_tokenises_with_the_default_max_length():
    vocabulary = scene_vocabulary()
    assert vocabulary[:len(caption_vocabulary())] == caption_vocabulary()
    assert vocabulary[len(caption_vocabulary()):] == ("to", "of", "above", "below")
    tokenizer = Tokenizer(vocabulary)  # max_length 12 by default
    longest = max((Scene((SceneObject(a[0], a[1], "small", (0.2, 0.5), 0.1),
                          SceneObject(b[0], b[1], "small", (0.8, 0.5), 0.1)), relation=r).caption()
                   for a, b, r in two_shape_combinations("all")), key=lambda c: len(c.split()))
    assert len(longest.split()) == 10 and tokenizer.max_length >= 11
    data = make_scenes(200, seed=0, split="all")
    ids = tokenizer.encode(data.captions)
    assert tokenizer.decode(ids) == data.captions
    assert tokenizer.decode(tokenizer.encode(swap_colours("a red circle below a blue square"))) == [
        "a blue circle below a red square"]


def test_swap_colours_refuses_what_it_cannot_swap():
    for caption in ["a small red circle in the top left", "a red circle to the left of a red square", "hello"]:
        with pytest.raises(ValueError, match="two different colours"):
            swap_colours(caption)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n": 0}, ValueError, "n must be at least 1"),
    ({"n": 4, "size": 8}, ValueError, "size must be at least 16"),
    ({"n": 4, "split": "test"}, ValueError, "unknown split 'test'"),
    ({"n": 4, "two_shape_fraction": 1.5}, ValueError, r"two_shape_fraction must be a number in \[0, 1\]"),
    ({"n": 4, "two_shape_fraction": -0.1}, ValueError, "two_shape_fraction"),
    ({"n": 4, "two_shape_fraction": True}, ValueError, "two_shape_fraction"),
    ({"n": 2.0}, TypeError, "n must be an int"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_scenes(**kwargs)


def test_bad_scenes_are_clear_errors():
    obj = SceneObject("circle", "red", "small", (0.2, 0.5), 0.1)
    with pytest.raises(ValueError, match="unknown relation"):
        Scene((obj, SceneObject("square", "red", "small", (0.8, 0.5), 0.1)), relation="near")
    with pytest.raises(ValueError, match="unknown position"):
        Scene((obj,))
    with pytest.raises(ValueError, match="one or two objects"):
        Scene((obj, obj, obj), relation="left of")
    with pytest.raises(ValueError, match="centre must be"):
        SceneObject("circle", "red", "small", (1.2, 0.5), 0.1)
    with pytest.raises(ValueError, match="only a scene of one object"):
        Scene((obj, SceneObject("square", "red", "small", (0.8, 0.5), 0.1)), relation="left of").attributes()
