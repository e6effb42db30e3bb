"""Helpers for the harvest/store tests: generated images and the shared sample's location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: The shared ImageNet sample, outside the repository (never copied into it).
SHARED_SAMPLE = Path(__file__).parents[1] / ".." / "shared" / "data" / "imagenet-sample-1000"


def make_images(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (80, 96)) -> Path:
    """``n`` smooth random PNGs (so activations vary over space) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (6, 7, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR)
        img.save(folder / f"img{i:03d}.png")
    return folder
