"""A real photograph to noise, so the forward process can be seen on a picture (chapters 01-02).

The photo is the portrait of Rear Admiral Grace Hopper, U.S. Navy (a U.S. Navy photograph, in the
public domain), that matplotlib ships as the sample file ``grace_hopper.jpg``; it is read from the
installed matplotlib, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from diffusion_lab.data._validate import check_int

PHOTO_NAME = "grace_hopper.jpg"
MIN_SIZE, MAX_SIZE = 8, 512


def photo_path() -> Path:
    """Where matplotlib keeps ``grace_hopper.jpg`` (inside its ``mpl-data/sample_data`` folder)."""
    path = Path(matplotlib.get_data_path()) / "sample_data" / PHOTO_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: matplotlib's sample data seems incomplete. Reinstall matplotlib "
            f"(`pip install --force-reinstall matplotlib`) to get the sample photo back."
        )
    return path


def load_photo(size: int = 128, *, grey: bool = False) -> torch.Tensor:
    """The photo centre-cropped to a square and resized to ``size`` x ``size`` (Lanczos filter).

    Returns float32 (3, size, size), or (1, size, size) when ``grey`` is true, scaled from [0, 255]
    to [-1, 1], the range the diffusion chapters use for images.
    """
    check_int("size", size, low=MIN_SIZE, high=MAX_SIZE)
    if not isinstance(grey, bool):
        raise TypeError(f"grey must be True or False, got {grey!r}.")
    with Image.open(photo_path()) as image:
        image = image.convert("L" if grey else "RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.LANCZOS)
        pixels = np.asarray(image, dtype=np.float32)  # (size, size, 3) or (size, size)
    if grey:
        pixels = pixels[:, :, None]
    x = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (C, size, size)
    return x / 127.5 - 1.0
