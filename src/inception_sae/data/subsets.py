"""Seeded orders and class-spread subsets of an image list.

A folder laid out like ImageNet (``train/<wnid>/*.JPEG``) lists its images
grouped by class. Everything that takes "N images" or walks the images in order
goes through here, so that the first N are a sample spread over the classes and
a harvest visits images in a random order that a rerun reproduces exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np

from .images import wnid_of

#: Distinct stream tags, so that orders and subsets drawn from one seed are independent.
_ORDER, _SUBSET = 0x0D0E, 0x5B5E


def class_of(image_id: str) -> str:
    """An image's class: its wnid (parent folder or file stem), else its parent folder ('' at the root)."""
    rel = PurePosixPath(image_id)
    parent = rel.parent.as_posix()
    return wnid_of(rel) or ("" if parent == "." else parent)


def visit_order(n: int, seed: int) -> np.ndarray:
    """(n,) seeded permutation of ``range(n)``: the order a harvest visits its images."""
    return np.random.default_rng([seed, _ORDER]).permutation(n)


def spread_subset(image_ids: Sequence[str], n: int | None, seed: int) -> list[int]:
    """Sorted indices of ``n`` images drawn without replacement, spread evenly over the classes.

    Classes are taken round-robin in a seeded order and images within each class
    at random, so every class gets ``n // classes`` or one more image (fewer only
    where a class runs out). ``n`` of None or >= the list length keeps everything.
    The same ``(image_ids, n, seed)`` always gives the same subset.
    """
    total = len(image_ids)
    if n is None or n >= total:
        return list(range(total))
    rng = np.random.default_rng([seed, _SUBSET])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, image_id in enumerate(image_ids):
        groups[class_of(image_id)].append(i)
    names = sorted(groups)
    queues = [list(rng.permutation(groups[names[c]])) for c in rng.permutation(len(names))]
    chosen: list[int] = []
    while len(chosen) < n:
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(int(q.pop()))
        queues = [q for q in queues if q]
    return sorted(chosen)


def subset_record(image_ids: Sequence[str], chosen: Sequence[int], seed: int) -> dict:
    """What a stage's output records about its image subset."""
    classes = {class_of(image_ids[i]) for i in chosen}
    return {
        "rule": "seeded random, spread over classes (folder names)" if len(chosen) < len(image_ids) else "all",
        "seed": seed,
        "images": len(chosen),
        "of": len(image_ids),
        "classes": len(classes),
        "classes_available": len({class_of(i) for i in image_ids}),
    }


#: Most of a store that training may give up to the held-out range.
HELD_OUT_CAP = 0.2


def held_out_tail(store, rows: int) -> tuple[int, int] | None:
    """``[start, end)``: the store's last ``rows`` rows (at most :data:`HELD_OUT_CAP` of it), never trained on.

    The start moves forward to an image boundary so that no image has rows on both
    sides. The harvest visits images in a seeded random order, so the tail is a
    random sample of the images (of the last rank's share under torchrun).
    """
    n = len(store)
    rows = min(int(rows), int(n * HELD_OUT_CAP))
    if rows <= 0:
        return None
    start = n - rows
    if start > 0:
        before = int(store.image_index(np.array([start - 1]))[0])
        while before >= 0 and start < n:
            block = store.image_index(np.arange(start, min(n, start + 4096)))
            change = np.flatnonzero(block != before)
            if change.size:
                start += int(change[0])
                break
            start += len(block)
    return (start, n) if start < n else None


def take_spread(dataset, n: int | None, seed: int) -> dict:
    """Keep a seeded class-spread subset of ``n`` of ``dataset``'s files (in place); its record."""
    ids = [f.as_posix() for f in dataset.files]
    chosen = spread_subset(ids, n, seed)
    dataset.files = [dataset.files[i] for i in chosen]
    return subset_record(ids, chosen, seed)
