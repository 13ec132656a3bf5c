"""Tests for diffusion_lab.models.embeddings: the sinusoidal timestep embedding against hand-written
values and diffusers, its properties, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab.models.embeddings import TimestepEmbedding, timestep_embedding


def _reference(t: float, dim: int, max_period: float = 10000.0) -> list[float]:
    """The formula in the module docstring, one timestep at a time in plain Python floats."""
    half = dim // 2
    freqs = [max_period ** (-i / half) for i in range(half)]
    return [math.sin(t * f) for f in freqs] + [math.cos(t * f) for f in freqs] + [0.0] * (dim % 2)


@pytest.mark.parametrize("dim", [2, 8, 9, 32])
def test_matches_hand_written_formula(dim: int) -> None:
    ts = [0, 1, 10, 500, 999]
    emb = timestep_embedding(torch.tensor(ts), dim)
    assert emb.shape == (len(ts), dim) and emb.dtype == torch.float32
    expected = torch.tensor([_reference(t, dim) for t in ts], dtype=torch.float32)
    torch.testing.assert_close(emb, expected, rtol=0, atol=1e-4)


def test_first_values_by_hand() -> None:
    # dim 4: frequencies 1 and 1/100; t = 1 -> [sin 1, sin 0.01, cos 1, cos 0.01]
    emb = timestep_embedding(torch.tensor([0, 1]), 4)
    torch.testing.assert_close(emb[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(emb[1], torch.tensor([math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]))


def test_matches_diffusers() -> None:
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    t = torch.arange(0, 1000, 37)
    ref = embeddings.get_timestep_embedding(t, 64, flip_sin_to_cos=False, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_embedding(t, 64), ref, rtol=0, atol=1e-4)


def test_bounded_and_distinct() -> None:
    emb = timestep_embedding(torch.arange(1000), 32)
    assert emb.abs().max() <= 1.0
    assert torch.cdist(emb, emb).add(torch.eye(1000) * 10).min() > 1e-3  # no two steps share an embedding


def test_int_and_float_timesteps_agree_and_float64_is_kept() -> None:
    t = torch.tensor([3, 250, 999])
    torch.testing.assert_close(timestep_embedding(t, 16), timestep_embedding(t.float(), 16))
    emb64 = timestep_embedding(t.double(), 16)
    assert emb64.dtype == torch.float64
    torch.testing.assert_close(emb64.float(), timestep_embedding(t, 16), rtol=0, atol=1e-5)
    assert timestep_embedding(torch.tensor([0.5]), 8).shape == (1, 8)  # continuous time (chapter 09)


def test_timestep_embedding_module() -> None:
    module = TimestepEmbedding(32, 128)
    out = module(torch.tensor([0, 10, 999]))
    assert out.shape == (3, 128) and out.dtype == torch.float32
    assert module.double()(torch.tensor([1, 2])).dtype == torch.float64


@pytest.mark.parametrize(
    ("t", "dim", "error", "match"),
    [
        (torch.zeros(2, 3), 8, ValueError, "1-D"),
        (torch.tensor(5), 8, ValueError, "1-D"),
        ([1, 2], 8, TypeError, "torch.Tensor"),
        (torch.tensor([True, False]), 8, TypeError, "dtype"),
        (torch.tensor([1, 2]), 1, ValueError, "dim must be an int >= 2"),
        (torch.tensor([1, 2]), 8.0, ValueError, "dim must be an int >= 2"),
    ],
)
def test_bad_input(t, dim, error, match) -> None:
    with pytest.raises(error, match=match):
        timestep_embedding(t, dim)


def test_bad_max_period() -> None:
    with pytest.raises(ValueError, match="max_period"):
        timestep_embedding(torch.tensor([1]), 8, max_period=0)
    with pytest.raises(ValueError, match="sinusoidal_dim"):
        TimestepEmbedding(1, 8)
