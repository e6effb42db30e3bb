"""Procedural demo images: deterministic, varied, one folder per class."""

from __future__ import annotations

import numpy as np

from inception_sae.data.images import ImageDataset
from inception_sae.data.synthetic import CLASSES, make_image, write_synthetic_images


def test_deterministic_and_varied():
    a = np.asarray(make_image(3, 64, seed=1)[1])
    b = np.asarray(make_image(3, 64, seed=1)[1])
    c = np.asarray(make_image(3, 64, seed=2)[1])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for i in range(len(CLASSES)):
        img = np.asarray(make_image(i, 64)[1], dtype=float)
        assert img.shape == (64, 64, 3) and img.std() > 5, f"class {i} is flat"


def test_written_as_class_folders_and_loadable(tmp_path):
    paths = write_synthetic_images(tmp_path, 14, size=96)
    assert len(paths) == 14 and all(p.exists() for p in paths)
    assert {p.parent.name for p in paths} == set(CLASSES)
    mtime = paths[0].stat().st_mtime_ns
    write_synthetic_images(tmp_path, 14, size=96)  # resumable: existing files untouched
    assert paths[0].stat().st_mtime_ns == mtime
    ds = ImageDataset.from_folder(tmp_path)
    assert len(ds) == 14 and ds[0][0].shape == (3, 224, 224)
