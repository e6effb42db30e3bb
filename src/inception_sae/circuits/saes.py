"""Circuits' reading of an SAE's features: the dominant branch of each decoder row.

SAE folders are read by :meth:`inception_sae.sae.model.TopKSAE.load`; circuits work on
its frozen tensors (:class:`inception_sae.sae.view.SAETensors`). The label itself is the
analysis's (:func:`inception_sae.analysis.branches.dominant_branches`): read from the layer's
analysis folder when one is given, else computed by the same rule on the circuits' own images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.images import ImageDataset, iter_batches
from ..models.inception_v1 import InceptionV1


def layer_rms(model: InceptionV1, dataset: ImageDataset, layers: Sequence[str], batch_size: int = 16) -> dict:
    """Layer -> (C,) RMS activation of every channel over every position of the dataset's images."""
    sq = {layer: torch.zeros(0, dtype=torch.float64) for layer in layers}
    n = 0
    with torch.no_grad():
        for x, _ in iter_batches(dataset, batch_size):
            acts = model.capture(x, list(layers))
            for layer in layers:
                a = acts[layer].double()  # (B, C, H, W)
                s = a.pow(2).sum((0, 2, 3)).cpu()
                sq[layer] = s if sq[layer].numel() == 0 else sq[layer] + s
            n += acts[layers[0]].shape[0] * acts[layers[0]].shape[2] * acts[layers[0]].shape[3]
    return {layer: (sq[layer] / max(n, 1)).sqrt().float() for layer in layers} if n else {}
