"""Two-dimensional toy distributions, small enough to plot every sample (chapters 01, 04, 09).

Each toy is scaled so that both coordinates have a standard deviation near 1 and a mean near 0,
the same scale as the N(0, I) noise that diffusion mixes in, so one noise schedule suits them all.
The scale factors are fixed constants (not estimated from the sample), so the distribution does not
depend on how many points are drawn.
"""

from __future__ import annotations

import numpy as np
import torch

from diffusion_lab.data._validate import check_choice, check_int

TOY_NAMES = ("swiss_roll", "moons", "gaussians8", "checkerboard")


def _swiss_roll(rng: np.random.Generator, n: int) -> np.ndarray:
    # A spiral: angle t from 1.5 pi to 4.5 pi, radius t, then a little Gaussian noise.
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + 0.5 * rng.standard_normal((n, 2))
    # The exact mean of (t cos t, t sin t) over t is (2, 2 / (3 pi)); the spread is about 7.
    return (points - np.array([2.0, 2.0 / (3.0 * np.pi)])) / 7.0


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    # Two interleaved half circles (as in scikit-learn's make_moons), noise 0.05.
    n_upper = n // 2
    angle = np.pi * rng.random(n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.where((np.arange(n) < n_upper)[:, None], upper, lower)
    points = points + 0.05 * rng.standard_normal((n, 2))
    return (points - np.array([0.5, 0.25])) * 1.5  # centre the pair, then widen to std about 1


def _gaussians8(rng: np.random.Generator, n: int) -> np.ndarray:
    # Eight small Gaussians (std 0.1) on a circle of radius sqrt(2): per-coordinate variance is
    # r^2 / 2 + 0.1^2 = 1.01, so the std is about 1.
    angle = 2.0 * np.pi * rng.integers(0, 8, size=n) / 8.0
    centres = np.sqrt(2.0) * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # Uniform on the "black" squares of a 4 x 4 board covering [-2, 2]^2 (as in the FFJORD paper).
    x = 4.0 * rng.random(n) - 2.0
    y = rng.random(n) - 2.0 * rng.integers(0, 2, size=n)  # in [-2, -1) or [0, 1)
    y = y + np.floor(x) % 2  # shift every other column up by one square
    return np.stack([x, y], axis=1)  # std is about 2 / sqrt(3) = 1.15 already


_TOYS = {"swiss_roll": _swiss_roll, "moons": _moons, "gaussians8": _gaussians8, "checkerboard": _checkerboard}


def make_toy(name: str, n: int, *, seed: int = 0) -> torch.Tensor:
    """Draw ``n`` points from the toy distribution ``name`` (one of ``TOY_NAMES``).

    Returns float32 (n, 2), the same points for the same ``seed``.
    """
    check_choice("toy name", name, TOY_NAMES)
    check_int("n", n, low=1)
    check_int("seed", seed, low=0)
    points = _TOYS[name](np.random.default_rng(seed), n)  # (n, 2) float64
    return torch.from_numpy(points.astype(np.float32))
