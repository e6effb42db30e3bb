"""Labelled activation stores with planted class, "dog" and background directions, and SAEs read off them
(the quality tests: absorption and probing on labelled images, stability across siblings)."""

import numpy as np
import torch

from inception_sae import ActivationStore
from inception_sae.data.labels import load_labels
from inception_sae.data.wordnet import load_hierarchy
from inception_sae.sae.model import TopKSAE

ROWS_PER_IMAGE = 4


def labelled_store(tmp_path, labelled: bool = True):
    """Images of 8 dog breeds and 8 other classes, 4 rows each: one row holds the image's class direction (plus
    the dog direction for dogs), the others a background direction. Returns the store and the dictionary
    (classes, then dog, then 16 background directions)."""
    hier, labels = load_hierarchy(), load_labels()
    dogs = hier.covers["n02084071"][:8]
    others = [c for c in range(1, 1000) if c not in hier.covers["n02084071"]][:8]
    classes = dogs + others
    rng = np.random.default_rng(0)
    D = rng.standard_normal((len(classes) + 1 + 16, 48))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    n_img = 800
    cls = rng.integers(0, len(classes), n_img)
    rows, image = [], []
    for i, c in enumerate(cls):
        x = (1 + rng.exponential()) * D[c] + (1 + rng.exponential()) * D[len(classes)] * (c < len(dogs))
        rows.append(x)
        for _ in range(ROWS_PER_IMAGE - 1):
            rows.append((1 + rng.exponential()) * D[len(classes) + 1 + rng.integers(16)])
        image += [i] * ROWS_PER_IMAGE
    ids = [f"{labels.wnids[classes[c]] if labelled else 'folder'}/img_{i:04d}.png" for i, c in enumerate(cls)]
    v = np.asarray(rows, np.float32) + 0.01 * rng.standard_normal((len(rows), 48)).astype(np.float32)
    store = ActivationStore.write(tmp_path / ("store" if labelled else "plain"), v, "mixed3a", image_ids=image,
                                  images=ids, meta={"model": "random:0"})  # fmt: skip
    return store, torch.as_tensor(D, dtype=torch.float32)


def save_sae(path, D, k, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = D[torch.randperm(len(D), generator=g)] + noise * torch.randn(D.shape, generator=g) / 7
    W = W / W.norm(dim=1, keepdim=True)
    t = {"W_enc": W.t().contiguous(), "W_dec": W, "b_enc": torch.zeros(len(W)), "b_dec": torch.zeros(W.shape[1])}
    sae = TopKSAE.from_tensors(t, k, seed=seed, meta={"layer": "mixed3a", "model": "random:0"})
    sae.save(path)
    return path
