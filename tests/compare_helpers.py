"""A stand-in model with planted activation patterns shared between two layers (compare tests)."""

from __future__ import annotations

import torch
from analysis_helpers import unit_rows

from inception_sae.models.layers import layer_info


class PlantedModel:
    """Stands in for InceptionV1: two 14x14 layers whose activations share planted concept maps.

    Concepts 0..S-1 drive a direction in both layers (the same activation pattern); concepts
    S..K-1 drive only the first layer, and the second gets its own independent concepts instead.
    """

    def __init__(self, K: int = 12, S: int = 6, seed: int = 0, layers=("mixed4b", "mixed4c")) -> None:
        self.K, self.S, self.layers = K, S, layers
        self.g = torch.Generator().manual_seed(seed)
        self.D = {n: unit_rows(torch.randn(2 * K, layer_info(n).channels, generator=self.g)) for n in layers}

    def layer_info(self, name: str):
        return layer_info(name)

    def capture(self, x, layers):
        B, K = x.shape[0], self.K
        z = torch.rand(B, 2 * K, 14, 14, generator=self.g)
        z = torch.where(z > 0.85, -torch.rand(z.shape, generator=self.g).log(), torch.zeros(()))  # sparse Exp(1)
        own = z[:, K:]  # mixed4c's independent concepts
        zc = torch.cat([z[:, : self.S], own[:, self.S :]], 1)
        zc = torch.cat([zc, torch.zeros_like(zc)], 1)
        out = {}
        lo, hi = self.layers
        for name, codes in ((lo, torch.cat([z[:, :K], torch.zeros_like(own)], 1)), (hi, zc)):
            acts = torch.einsum("bkhw,kd->bdhw", codes, self.D[name])
            out[name] = acts + 0.01 * torch.randn(acts.shape, generator=self.g)
        return {n: out[n] for n in layers}
