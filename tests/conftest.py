"""Shared fixtures: a tiny random-init model and a folder of small generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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


@pytest.fixture(scope="session")
def model():
    from inception_sae import load_model

    return load_model("random", seed=0)


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("images"), 12)
