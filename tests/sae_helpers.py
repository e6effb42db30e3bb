"""Synthetic data for the SAE tests: planted dictionaries with known features."""

from __future__ import annotations

import torch


def planted(n: int, d: int = 64, features: int = 512, active: int = 4, noise: float = 0.01, seed: int = 0,
            nonneg: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(X (n, d), D (features, d)): each row sums ``active`` random unit directions with Exp(1) coefficients."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(features, d, generator=g)
    if nonneg:
        D = D.abs()
    D /= D.norm(dim=1, keepdim=True)
    idx = torch.randint(0, features, (n, active), generator=g)
    coef = -torch.rand(n, active, generator=g).log()  # Exp(1) > 0
    X = torch.einsum("na,nad->nd", coef, D[idx])
    return X + noise * torch.randn(n, d, generator=g), D


def recovery(D: torch.Tensor, W_dec: torch.Tensor, thresh: float = 0.9) -> tuple[float, float]:
    """(share of true features matched at cosine >= thresh, mean max cosine)."""
    W = W_dec.detach() / W_dec.detach().norm(dim=1, keepdim=True)
    cos = (D @ W.t()).max(1).values
    return float((cos >= thresh).float().mean()), float(cos.mean())
