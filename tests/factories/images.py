"""Image folders for tests: generated photos in the layouts the package's readers expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: The shared data outside the repository (never copied into it): a real ImageNet sample, the class labels.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SHARED_SAMPLE = SHARED_DATA / "imagenet-sample-1000"


def make_images(folder: Path, n: int, classes: int = 0, size: tuple[int, int] = (96, 80), seed: int = 0,
                suffix: str = ".jpg") -> Path:  # fmt: skip
    """``n`` images of ``size`` (width, height) in ``folder``; returns ``folder``.

    Each image is a random-coloured gradient with pixel noise, so activations vary over space. With
    ``classes`` > 0 the folder is laid out like ImageNet's training set, class by class: ``n`` images in each
    of ``folder/n00000000/`` ... (wnid-shaped names, so labels come from the folders). ``suffix`` picks
    the format (``.jpg``, ``.png``).
    """
    if classes:
        for c in range(classes):
            make_images(folder / f"n{c:08d}", n, size=size, seed=seed * 1000 + c, suffix=suffix)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 255 * rng.uniform(0.3, 1, 3)
        img = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img{i:03d}{suffix}"
        Image.fromarray(img).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    return folder


def synthetic_images(folder: Path, n: int = 12, size: int = 64) -> Path:
    """The package's own synthetic images (shapes on textures, class folders), as ``run --demo`` writes them."""
    from inception_sae.data.synthetic import write_synthetic_images

    write_synthetic_images(folder, n, size=size, seed=0)
    return folder


def classes_per_window(labels, window: int) -> float:
    """Mean number of distinct labels in consecutive, non-overlapping windows of ``window`` items."""
    labels = list(labels)
    counts = [len(set(labels[s : s + window])) for s in range(0, len(labels) - window + 1, window)]
    return sum(counts) / len(counts)
