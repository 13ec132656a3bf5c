"""Tests for diffusion_lab.notebook.attention_maps: recorded cross-attention -> one map per word (chapter 06)."""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import pytest
import torch

from diffusion_lab.data.shapes import ShapeAttributes, caption_vocabulary, make_shapes, render
from diffusion_lab.models.attention import CrossAttention, record_cross_attention
from diffusion_lab.models.text import TextEncoderConfig, Tokenizer
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNetConfig
from diffusion_lab.notebook.attention_maps import (
    foreground_mask,
    region_contrast,
    show_word_maps,
    token_labels,
    token_maps,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _one_hot_weights(B: int, heads: int, side: int, L: int, row: int, col: int, token: int) -> torch.Tensor:
    """Weights (B, heads, side*side, L) where the pixel (row, col) reads only ``token`` and every other pixel token 0."""
    w = torch.zeros(B, heads, side * side, L)
    w[..., 0] = 1.0
    pixel = row * side + col  # CrossAttention flattens (H, W) row by row: x.flatten(2)
    w[:, :, pixel, 0] = 0.0
    w[:, :, pixel, token] = 1.0
    return w


def test_pixels_go_back_to_their_place() -> None:
    w = _one_hot_weights(2, 3, 4, 5, row=1, col=3, token=2)
    maps = token_maps({"block": [w]}, size=None)
    assert maps.shape == (2, 5, 4, 4)
    expected = torch.zeros(4, 4)
    expected[1, 3] = 1.0
    torch.testing.assert_close(maps[0, 2], expected)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, 4, 4))  # still sums to 1 over the tokens


def test_flattening_matches_cross_attention() -> None:
    """A block whose queries depend only on the row: the recorded map must vary down the rows, not across."""
    torch.manual_seed(0)
    block = CrossAttention(channels=8, context_dim=4, num_heads=2, num_groups=2)
    x = torch.zeros(1, 8, 4, 4)
    x[:, :, 0] = 3.0  # the top row differs from the others
    context = torch.randn(1, 3, 4)
    block.keep_weights = True
    block(x, context)
    maps = token_maps({"b": block.recorded}, size=None)[0]  # (L, 4, 4)
    assert torch.allclose(maps[:, 1:], maps[:, 1:2].expand(-1, 3, -1))  # rows 1..3 alike
    assert torch.allclose(maps, maps[:, :, :1].expand(-1, -1, 4))  # constant along each row
    assert not torch.allclose(maps[:, 0], maps[:, 1])


def test_averages_heads_steps_and_blocks() -> None:
    a = _one_hot_weights(1, 2, 2, 3, row=0, col=0, token=1)
    b = _one_hot_weights(1, 2, 2, 3, row=1, col=1, token=1)
    maps = token_maps({"x": [a, b]}, size=None)
    assert maps[0, 1, 0, 0] == 0.5 and maps[0, 1, 1, 1] == 0.5  # two steps averaged
    assert token_maps({"x": [a, b]}, size=None, steps=slice(0, 1))[0, 1, 1, 1] == 0
    assert token_maps({"x": [a, b]}, size=None, steps=[1])[0, 1, 1, 1] == 1
    heads = torch.cat([a[:, :1], b[:, 1:]], dim=1)  # head 0 like a, head 1 like b
    torch.testing.assert_close(token_maps({"x": [heads]}, size=None), maps)
    two_blocks = token_maps({"x": [a], "y": [b]}, size=None)
    torch.testing.assert_close(two_blocks, maps)
    torch.testing.assert_close(token_maps({"x": [a], "y": [b]}, size=None, blocks=["y"]),
                               token_maps({"y": [b]}, size=None))


def test_blocks_of_different_resolutions_are_enlarged() -> None:
    small = _one_hot_weights(1, 1, 2, 3, row=0, col=0, token=2)
    large = _one_hot_weights(1, 1, 4, 3, row=3, col=3, token=2)
    maps = token_maps({"small": [small], "large": [large]}, size=8)
    assert maps.shape == (1, 3, 8, 8)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(1, 8, 8))
    assert maps[0, 2, :4, :4].mean() > maps[0, 2, 4:, :4].mean()  # the small block's top-left pixel
    assert maps[0, 2, -1, -1] > 0.2  # the large block's bottom-right pixel
    with pytest.raises(ValueError, match="different resolutions"):
        token_maps({"small": [small], "large": [large]}, size=None)


@pytest.mark.parametrize("maps, kwargs, message", [
    ({}, {}, "no recorded maps"),
    ({"x": []}, {}, "recorded no calls"),
    ({"x": [torch.ones(1, 1, 4, 2) / 2]}, {"blocks": ["y"]}, "unknown blocks"),
    ({"x": [torch.ones(1, 1, 4, 2) / 2]}, {"steps": slice(3, 5)}, "selects none"),
    ({"x": [torch.ones(1, 1, 6, 2) / 2]}, {}, "not a square"),
    ({"x": [torch.ones(1, 1, 4, 2) / 2, torch.ones(2, 1, 4, 2) / 2]}, {}, "all alike"),
    ({"x": [torch.ones(1, 4, 2)]}, {}, r"\(B, heads, h\*w, L\)"),
])
def test_bad_recordings_are_clear_errors(maps, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        token_maps(maps, **kwargs)


def _tiny_text_model() -> TextUNet:
    unet = dataclasses.replace(UNetConfig.tiny(), in_channels=3, out_channels=3, image_size=16,
                               cross_attention_resolutions=(8, 4), context_dim=16)
    torch.manual_seed(0)
    return TextUNet(TextUNetConfig(unet, TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))).eval()


def test_end_to_end_with_a_text_model() -> None:
    model = _tiny_text_model()
    ids = model.encode_prompts(["a red circle", "a small blue square in the top left"])
    with torch.no_grad(), record_cross_attention(model) as recorded:
        for t in (900, 500, 100):  # three "sampling steps"
            model(torch.randn(2, 3, 16, 16), torch.full((2,), t), ids)
    assert all(len(calls) == 3 for calls in recorded.values())
    maps = token_maps(recorded, size=16)
    assert maps.shape == (2, 12, 16, 16)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, 16, 16))
    assert (maps[0, 4:] == 0).all()  # "a red circle": <start> + 3 words, then padding
    labels = token_labels(ids, model.tokenizer)
    assert labels == [["<start>", "a", "red", "circle"],
                      ["<start>", "a", "small", "blue", "square", "in", "the", "top", "left"]]
    fig = show_word_maps(torch.zeros(2, 3, 16, 16), labels, maps, outline=torch.ones(2, 16, 16, dtype=torch.bool),
                         skip=["<start>"])
    assert len(fig.axes) == 2 * (1 + 8)  # picture + 8 words for the longer prompt
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1].startswith("a\n") and "<start>" not in " ".join(titles)


def test_token_labels_rejects_non_ids() -> None:
    with pytest.raises(ValueError, match=r"\(B, L\) token ids"):
        token_labels(torch.zeros(12, dtype=torch.long), Tokenizer(caption_vocabulary()))


def test_foreground_mask_finds_the_shape() -> None:
    attrs = ShapeAttributes("square", "purple", "large", "top left")
    picture = torch.from_numpy(render(attrs)).permute(2, 0, 1).float()[None] / 127.5 - 1  # (1, 3, 32, 32)
    mask = foreground_mask(picture)
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.bool
    assert mask[0, 8, 8] and not mask[0, 24, 24]  # centre of the top-left quarter; the empty bottom right
    side = 2 * 0.9 * 0.17 * 32  # the square's side in pixels (data/shapes.py)
    assert abs(mask.sum().item() - side**2) < 4 * side  # the area, up to the anti-aliased edge
    noisy = make_shapes(20, seed=3).images
    assert foreground_mask(noisy).any(dim=(1, 2)).all()  # every picture has a shape
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        foreground_mask(picture[0])


def test_region_contrast() -> None:
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True  # a quarter of the picture
    maps = torch.zeros(1, 3, 4, 4)
    maps[0, 0] = 1.0  # everywhere alike
    maps[0, 1] = mask[0].float()  # only inside the mask
    contrast = region_contrast(maps, mask)
    assert contrast[0, 0] == pytest.approx(1.0)
    assert contrast[0, 1] == pytest.approx(4.0)
    assert math.isnan(contrast[0, 2])  # a token with no weight (padding)
    assert torch.isnan(region_contrast(maps, torch.zeros(1, 4, 4, dtype=torch.bool))).all()
    with pytest.raises(ValueError, match="same pictures"):
        region_contrast(maps, mask[0])


def test_show_word_maps_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="one label list and one set of maps per picture"):
        show_word_maps(torch.zeros(2, 3, 4, 4), [["a"]], torch.zeros(2, 1, 4, 4))
