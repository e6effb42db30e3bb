"""SAE folders and planted dictionaries for tests.

:func:`make_sae` writes through the package's own SAE writer (:meth:`TopKSAE.save`), so a test folder has
exactly the format ``train`` writes (docs/formats.md, "SAE folder"), however its weights were chosen.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inception_sae.sae.model import TopKSAE
from inception_sae.sae.view import TENSORS, SAETensors

#: The ``data`` record of a hand-made SAE folder: no harvest, so no training positions to replay.
HAND_MADE = {"rule": None, "rule_reason": "a hand-made test SAE: no harvest"}


def unit_rows(W: torch.Tensor) -> torch.Tensor:
    return W / W.norm(dim=1, keepdim=True)


def random_sae(layer: str, d: int, m: int, k: int, seed: int) -> SAETensors:
    """Unit-norm random decoder rows, encoder = decoder^T, zero biases."""
    W = unit_rows(torch.randn(m, d, generator=torch.Generator().manual_seed(seed)))
    return SAETensors(W.T.contiguous(), W, torch.zeros(m), torch.zeros(d), k, layer)


def make_sae(folder: Path, d: int = 256, m: int = 48, k: int = 8, seed: int = 0, *, layer: str = "mixed3a",
             W_dec: torch.Tensor | None = None, tensors: SAETensors | None = None, model: str = "random:0",
             data: dict | None = HAND_MADE, **cfg: object) -> Path:  # fmt: skip
    """An SAE folder at ``folder``; returns it.

    The weights are ``tensors`` (all four, e.g. a planted circuit), else ``W_dec`` (m, d) with
    W_enc = W_dec^T and zero biases (raw activation units), else ``m`` random unit rows of dimension ``d``
    drawn with ``seed``. ``data`` is cfg.json's record of the training data (None: no record, as in
    folders written before it existed); ``cfg`` adds further cfg.json keys (e.g. ``store``).
    """
    if tensors is not None:
        t = {n: getattr(tensors, n).detach().float().contiguous() for n in TENSORS}
        k, layer = tensors.k, tensors.layer or layer
    else:
        W = W_dec if W_dec is not None else random_sae(layer, d, m, k, seed).W_dec
        m, d = W.shape
        t = {"W_enc": W.T.contiguous().float(), "W_dec": W.contiguous().float(), "b_enc": torch.zeros(m),
             "b_dec": torch.zeros(d)}  # fmt: skip
    meta = {"layer": layer, "model": model, **({"data": data} if data is not None else {}), **cfg}
    return TopKSAE.from_tensors(t, k, meta=meta).save(folder)


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
