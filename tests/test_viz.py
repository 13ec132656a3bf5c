"""Tests for diffusion_lab.notebook.figures and .animation: grids, display conversion, figures, PNGs and animations."""

from __future__ import annotations

import base64
import importlib
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from diffusion_lab.notebook import animation as animations  # noqa: E402
from diffusion_lab.notebook import figures  # noqa: E402
from diffusion_lab.schedules import NoiseSchedule  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----- make_grid ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("B", "nrow", "padding", "rows", "cols"),
    [(16, 8, 2, 2, 8), (5, 8, 2, 1, 5), (5, 3, 1, 2, 3), (9, 3, 0, 3, 3), (1, 8, 4, 1, 1), (7, 1, 2, 7, 1)],
)
def test_make_grid_shape(B: int, nrow: int, padding: int, rows: int, cols: int) -> None:
    C, H, W = 3, 5, 7
    grid = figures.make_grid(_images(B, C, H, W), nrow=nrow, padding=padding)
    assert grid.shape == (C, rows * (H + padding) + padding, cols * (W + padding) + padding)


def test_make_grid_places_images_and_pads() -> None:
    images = torch.stack([torch.full((1, 2, 3), float(i) / 10) for i in range(4)])  # (4, 1, 2, 3)
    grid = figures.make_grid(images, nrow=2, padding=1, pad_value=-1.0)
    assert grid.shape == (1, 2 * 3 + 1, 2 * 4 + 1)
    for i in range(4):
        r, c = divmod(i, 2)
        top, left = 1 + r * 3, 1 + c * 4
        assert torch.equal(grid[:, top : top + 2, left : left + 3], images[i])
    mask = torch.ones_like(grid, dtype=torch.bool)
    for i in range(4):
        r, c = divmod(i, 2)
        mask[:, 1 + r * 3 : 3 + r * 3, 1 + c * 4 : 4 + c * 4] = False
    assert bool((grid[mask] == -1.0).all())


def test_make_grid_incomplete_last_row_is_padding() -> None:
    grid = figures.make_grid(torch.zeros(3, 1, 2, 2), nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (1, 7, 7)
    assert bool((grid[:, 4:6, 4:6] == 0.5).all())  # the empty fourth slot


def test_make_grid_keeps_dtype() -> None:
    assert figures.make_grid(torch.zeros(2, 1, 3, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("shape", [(3, 8, 8), (8, 8), (2, 1, 1, 8, 8)])
def test_make_grid_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        figures.make_grid(torch.zeros(shape))


# ----- to_display --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("shape", "expected"), [((1, 4, 6), (4, 6)), ((3, 4, 6), (4, 6, 3)), ((4, 6), (4, 6))],
)
def test_to_display_shapes(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    out = figures.to_display(_images(*shape))
    assert isinstance(out, np.ndarray)
    assert out.shape == expected
    assert out.min() >= 0 and out.max() <= 1


def test_to_display_maps_range_and_clamps() -> None:
    x = torch.tensor([[-1.0, 0.0, 1.0, -5.0, 7.0]])
    np.testing.assert_allclose(figures.to_display(x), [[0.0, 0.5, 1.0, 0.0, 1.0]])


def test_to_display_rgb_channel_order() -> None:
    x = torch.stack([torch.full((2, 2), v) for v in (-1.0, 0.0, 1.0)])  # (3, 2, 2): R, G, B
    np.testing.assert_allclose(figures.to_display(x)[0, 0], [0.0, 0.5, 1.0])


def test_to_display_detaches_and_converts() -> None:
    x = torch.zeros(1, 2, 2, dtype=torch.float64, requires_grad=True)
    out = figures.to_display(x)
    assert out.dtype == np.float32


@pytest.mark.parametrize("shape", [(2, 4, 4), (4, 4, 4), (1, 1, 4, 4), (5,), ()])
def test_to_display_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected one image shaped \(C, H, W\)"):
        figures.to_display(torch.zeros(shape))


def test_to_display_not_a_tensor() -> None:
    with pytest.raises(TypeError, match="expected an image tensor, got ndarray"):
        figures.to_display(np.zeros((4, 4)))  # type: ignore[arg-type]


# ----- figures -----------------------------------------------------------------------------------

def test_show_images_returns_figure() -> None:
    fig = figures.show_images(_images(10, 1, 8, 8), nrow=4, titles=[str(i) for i in range(10)], suptitle="batch")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 12  # 3 rows of 4, the last two blank
    assert [ax.get_title() for ax in fig.axes[:3]] == ["0", "1", "2"]


def test_show_images_accepts_list_and_single_image() -> None:
    assert isinstance(figures.show_images([_images(3, 8, 8), _images(3, 8, 8, seed=1)]), Figure)
    assert len(figures.show_images(_images(1, 8, 8)).axes) == 1


def test_show_images_title_count_mismatch() -> None:
    with pytest.raises(ValueError, match="got 2 titles for 3 images"):
        figures.show_images(_images(3, 1, 4, 4), titles=["a", "b"])


def test_noising_strip_returns_figure() -> None:
    schedules = [NoiseSchedule.from_name("linear", 50), NoiseSchedule.from_name("cosine", 50)]
    fig = figures.noising_strip(_images(1, 8, 8), schedules, [0, 10, 49])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 6
    assert fig.axes[0].get_ylabel() == "linear" and fig.axes[3].get_ylabel() == "cosine"
    assert fig.axes[1].get_title().startswith("t=10")


def test_noising_strip_single_schedule() -> None:
    fig = figures.noising_strip(_images(3, 8, 8), NoiseSchedule.from_name("linear", 20), [0, 19])
    assert len(fig.axes) == 2


def test_plot_schedules_returns_figure() -> None:
    schedules = [NoiseSchedule.from_name(n, 100) for n in ("linear", "cosine")]
    fig = figures.plot_schedules(schedules)
    assert isinstance(fig, Figure)
    ax1, ax2 = fig.axes
    assert len(ax1.lines) == 2
    np.testing.assert_allclose(ax1.lines[1].get_ydata(), schedules[1].alpha_bars.numpy())


def test_plot_points() -> None:
    ax = figures.plot_points(torch.randn(50, 2), title="points")
    assert ax.get_title() == "points"
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        figures.plot_points(torch.randn(50, 3))


def test_use_course_style_sets_dpi() -> None:
    with matplotlib.rc_context():
        figures.use_course_style()
        assert matplotlib.rcParams["figure.dpi"] == 80


# ----- PNG ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("shape", "scale", "size", "mode"),
    [((1, 5, 7), 1, (7, 5), "L"), ((3, 5, 7), 3, (21, 15), "RGB"), ((5, 7), 2, (14, 10), "L")],
)
def test_png_bytes_decodes(shape: tuple[int, ...], scale: int, size: tuple[int, int], mode: str) -> None:
    data = figures.png_bytes(_images(*shape), scale=scale)
    assert data.startswith(b"\x89PNG")
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    assert img.size == size
    assert img.mode == mode


def test_png_bytes_pixel_values() -> None:
    x = torch.tensor([[[-1.0, 1.0]]])  # (1, 1, 2): black then white
    img = Image.open(io.BytesIO(figures.png_bytes(x, scale=2)))
    assert np.array(img).tolist() == [[0, 0, 255, 255], [0, 0, 255, 255]]


def test_figure_to_image_closes_figure() -> None:
    fig, _ = plt.subplots(figsize=(2, 1), dpi=50)
    img = figures.figure_to_image(fig)
    assert img.size == (100, 50) and img.mode == "RGB"
    assert not plt.fignum_exists(fig.number)


# ----- animation ---------------------------------------------------------------------------------

def _draw(ax, i: int) -> None:
    ax.plot([0, 1], [0, i])
    ax.set_title(f"frame {i}")


@pytest.fixture(scope="module")
def animation() -> animations.Animation:
    anim = animations.animate(_draw, 5, figsize=(1.5, 1.5))
    plt.close("all")
    return anim


def test_animate_frame_count(animation: animations.Animation) -> None:
    assert len(animation.frames) == 5
    assert all(isinstance(f, Image.Image) for f in animation.frames)
    assert plt.get_fignums() == []  # every frame's figure was closed


def test_animation_mimebundle(animation: animations.Animation) -> None:
    data, metadata = animation._repr_mimebundle_()
    assert set(data) == {"text/plain", "image/png", "text/html"}
    assert "5 frames" in data["text/plain"]
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.format == "PNG"
    w, h = animation.frames[0].size
    assert png.size == (3 * w, 2 * h)  # the filmstrip shows all 5 frames (strip_frames=6), three to a row
    html = data["text/html"]
    assert html.startswith('<img src="data:image/gif;base64,')
    gif_b64 = html.split("base64,", 1)[1].split('"', 1)[0]
    gif = Image.open(io.BytesIO(base64.b64decode(gif_b64)))
    assert gif.format == "GIF" and gif.n_frames == 5
    assert metadata == {figures.LIVE_ONLY: ["text/html"]}


def test_animation_live_only_key_matches_tools() -> None:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    notebooks = importlib.import_module("tools.notebooks")  # the builder that strips live-only outputs
    assert figures.LIVE_ONLY == notebooks.LIVE_ONLY


def test_animation_filmstrip_and_save(animation: animations.Animation, tmp_path) -> None:
    animation.strip_frames = 3
    try:
        strip = animation.filmstrip()
    finally:
        animation.strip_frames = 6
    w, h = animation.frames[0].size
    assert strip.size == (3 * w, h)
    path = tmp_path / "a.gif"
    animation.save(str(path))
    assert Image.open(path).n_frames == 5


@pytest.mark.parametrize("n", [0, -1])
def test_animate_needs_frames(n: int) -> None:
    with pytest.raises(ValueError, match="n_frames must be at least 1"):
        animations.animate(_draw, n)


def test_animation_needs_frames() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        animations.Animation([])


# ----- plot_fidelity_diversity ------------------------------------------------------------------

def test_plot_fidelity_diversity_draws_one_labelled_point_per_scale() -> None:
    fig = figures.plot_fidelity_diversity([0, 1, 3], torch.tensor([0.1, 0.9, 1.0]), [40.0, 30.0, 20.0],
                                      label="MNIST", chance=0.1)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    assert list(x) == [40.0, 30.0, 20.0] and list(y) == pytest.approx([0.1, 0.9, 1.0])
    texts = [t.get_text() for t in ax.texts]
    assert sorted(texts) == ["chance", "w=0", "w=1", "w=3"]
    assert ax.get_legend() is not None


def test_plot_fidelity_diversity_on_given_axes() -> None:
    fig, (a, b) = plt.subplots(1, 2)
    assert figures.plot_fidelity_diversity([0.5, 2], [0.2, 0.4], [1.0, 0.5], ax=b, fidelity_name="all four right") is fig
    assert not a.lines and len(b.lines) == 1
    assert b.get_ylabel().startswith("all four right")


def test_plot_fidelity_diversity_skips_crowded_labels() -> None:
    # saturated guidance: the last three points nearly coincide; the ends are always labelled
    fig = figures.plot_fidelity_diversity([0, 1, 2, 3, 5], [0.1, 0.9, 1.0, 1.0, 1.0], [40.0, 28.0, 20.0, 19.8, 19.6],
                                      scale_name="s")
    assert [t.get_text() for t in fig.axes[0].texts] == ["s=0", "s=5", "s=1"]
    assert len(fig.axes[0].lines[0].get_xdata()) == 5  # every point is drawn, labelled or not


def test_plot_fidelity_diversity_needs_matching_lengths() -> None:
    with pytest.raises(ValueError, match="one fidelity and one diversity per scale"):
        figures.plot_fidelity_diversity([0, 1, 2], [0.1, 0.2], [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="one fidelity and one diversity per scale"):
        figures.plot_fidelity_diversity([], [], [])
