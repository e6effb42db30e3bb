"""Helpers for the harvest/store tests: generated images and the shared sample's location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Small, fast harvest settings: random weights, 48 px crops, no workers, no bar, batches of 4.
SMALL = {"weights": "random", "resize": 56, "crop": 48, "workers": 0, "progress": False, "batch_size": 4}


def as_dict(store) -> dict[tuple, np.ndarray]:
    """(image id, view, y, x) -> vector: an ActivationStore as a set with provenance."""
    prov, vec = store.provenance, np.asarray(store.vectors)
    out = {(store.images[p[0]], *map(int, p[1:])): v for p, v in zip(prov, vec, strict=True)}
    assert len(out) == len(store)  # no duplicates
    return out


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


def make_class_images(folder: Path, classes: int, per_class: int, seed: int = 0, size=(80, 96)) -> Path:
    """An ImageNet-shaped, class-sorted folder: ``folder/n0000000<c>/img<i>.png``, ``per_class`` each."""
    for c in range(classes):
        make_images(folder / f"n{c:08d}", per_class, seed=seed * 1000 + c, size=size)
    return folder


def classes_per_window(labels, window: int) -> float:
    """Mean number of distinct labels in consecutive, non-overlapping windows of ``window`` items."""
    labels = list(labels)
    counts = [len(set(labels[s : s + window])) for s in range(0, len(labels) - window + 1, window)]
    return sum(counts) / len(counts)
