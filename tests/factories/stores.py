"""Small harvests and stores for tests: fast harvest settings and a store read back as a set."""

from __future__ import annotations

import numpy as np

#: Small, fast harvest settings: random weights, 48 px crops, no workers, no bar, batches of 4.
SMALL_HARVEST = {"weights": "random", "resize": 56, "crop": 48, "workers": 0, "progress": False, "batch_size": 4}


def store_as_dict(store) -> dict[tuple, np.ndarray]:
    """(image id, view, y, x) -> vector: an ActivationStore as a set with provenance."""
    prov, vec = store.provenance, np.asarray(store.vectors)
    out = {(store.images[p[0]], *map(int, p[1:])): v for p, v in zip(prov, vec, strict=True)}
    assert len(out) == len(store)  # no duplicates
    return out
