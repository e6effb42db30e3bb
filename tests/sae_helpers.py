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


def planted_varied(n: int, d: int = 32, features: int = 256, most: int = 12, seed: int = 0,
                   zipf: bool = False) -> torch.Tensor:  # fmt: skip
    """Rows whose number of active atoms (1..``most``, uniform) and overall scale (log-normal, sigma 0.5) vary
    widely: non-negative unit atoms, Exp(1) coefficients, noise 0.01. The regime where a per-batch budget
    of active latents (BatchTopK) can give some rows more than others. ``zipf``: atom i is drawn with
    probability proportional to 1 / (i + 1) (a few common atoms, many rare ones) instead of uniformly."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(features, d, generator=g).abs()
    D /= D.norm(dim=1, keepdim=True)
    active = torch.randint(1, most + 1, (n,), generator=g)
    if zipf:
        p = 1.0 / torch.arange(1, features + 1)
        idx = torch.multinomial(p, n * most, replacement=True, generator=g).view(n, most)
    else:
        idx = torch.randint(0, features, (n, most), generator=g)
    coef = -torch.rand(n, most, generator=g).log() * (torch.arange(most)[None] < active[:, None])
    scale = (0.5 * torch.randn(n, 1, generator=g)).exp()
    return scale * torch.einsum("na,nad->nd", coef, D[idx]) + 0.01 * torch.randn(n, d, generator=g)
