"""Seed stability: do two SAEs trained alike (another seed) find the same features? (Paulo & Belrose 2025,
"Sparse autoencoders trained on the same data learn different features", 2501.16615.)

The decoder rows of the two SAEs are matched one-to-one by cosine (:func:`..compare.match.one_to_one`:
Hungarian up to 4,096 latents, greedy above). Reported, over the matched pairs (``n`` = latents of the
smaller SAE):

- ``mean_cosine``: mean matched decoder cosine, with a bootstrap 95% interval over pairs;
- ``above_0.9`` / ``above_0.7``: share of pairs matched above that cosine (Wilson intervals);
- ``mcc``: mean over matched pairs of the Pearson correlation of the two latents' activations on the same
  held-out rows (pairs where either latent is constant on those rows are left out and counted).

Baselines in the same report: ``baseline_mean_cosine`` matches A against a random Gaussian dictionary of B's
shape, and ``baseline_mcc`` pairs A's latents with a random permutation of B's, so a score is read against
what unrelated features give. Every number is unchanged by reordering either SAE's latents.
"""

from __future__ import annotations

import numpy as np
import torch

from ..matching import decoder_cosine, one_to_one
from ..model import TopKSAE
from .intervals import mean_interval, share

THRESHOLDS = (0.9, 0.7)
NULL_STREAM = 0x5EED  #: the baselines' random stream, apart from every SAE's own initialisation


@torch.no_grad()
def dense_codes(sae: TopKSAE, x: torch.Tensor) -> torch.Tensor:
    """(n, m) non-negative codes of rows ``x`` (n, d)."""
    values, indices = sae.encode(x.to(sae.b_dec.device).float())
    out = torch.zeros(x.shape[0], sae.d_sae)
    return out.scatter_(1, indices.long().cpu(), values.float().cpu().clamp_min(0))


class PairCorrelation:
    """Streaming Pearson correlation of latent ``i`` of A with latent ``pairs[i]`` of B over rows."""

    def __init__(self, pairs: np.ndarray) -> None:
        self.pairs = torch.as_tensor(pairs, dtype=torch.long)
        k = len(pairs)
        self.n = 0
        self.sa, self.sb, self.saa, self.sbb, self.sab = (torch.zeros(k, dtype=torch.float64) for _ in range(5))

    def add(self, za: torch.Tensor, zb: torch.Tensor) -> None:
        ok = self.pairs >= 0
        a = za.double()
        b = torch.zeros_like(a)
        b[:, ok] = zb.double()[:, self.pairs[ok]]
        self.n += a.shape[0]
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.saa += (a * a).sum(0)
        self.sbb += (b * b).sum(0)
        self.sab += (a * b).sum(0)

    def result(self) -> np.ndarray:
        """(k,) Pearson r per pair; NaN where either side is constant (or the pair is unmatched)."""
        n = max(self.n, 1)
        cov = self.sab - self.sa * self.sb / n
        va, vb = self.saa - self.sa**2 / n, self.sbb - self.sb**2 / n
        ok = (va > 1e-12) & (vb > 1e-12) & (self.pairs >= 0)
        r = torch.full_like(cov, float("nan"))
        r[ok] = cov[ok] / (va[ok] * vb[ok]).sqrt()
        return r.numpy()


def seed_stability(sae_a: TopKSAE, sae_b: TopKSAE, rows, batch_size: int = 2048, seed: int = 0) -> dict:
    """Matched decoder cosine and activation MCC of two SAEs of one layer on the same ``rows`` (n, d).

    A is the SAE with fewer latents (or ``sae_a`` when they have as many), so every pair is one of its latents.
    """
    if sae_b.d_sae < sae_a.d_sae:
        sae_a, sae_b = sae_b, sae_a
    match = one_to_one(decoder_cosine(sae_a.W_dec, sae_b.W_dec))
    cos = match.value.numpy()
    # numpy's stream, not torch's: TopKSAE initialises its decoder with torch.randn from a generator seeded with
    # its seed, so a torch draw seeded alike would be the initial decoder of an SAE of that seed
    rng = np.random.default_rng([seed, NULL_STREAM])
    null_dec = torch.from_numpy(rng.standard_normal(tuple(sae_b.W_dec.shape)).astype(np.float32))
    null = one_to_one(decoder_cosine(sae_a.W_dec, null_dec)).value.numpy()
    perm = rng.permutation(sae_b.d_sae)[: sae_a.d_sae]
    acc, base = PairCorrelation(match.index.numpy()), PairCorrelation(perm)
    n = 0
    for start in range(0, len(rows), batch_size):
        x = torch.as_tensor(np.asarray(rows[start : start + batch_size]), dtype=torch.float32)
        x = x[torch.isfinite(x).all(1)]
        za, zb = dense_codes(sae_a, x), dense_codes(sae_b, x)
        acc.add(za, zb)
        base.add(za, zb)
        n += x.shape[0]
    r, r0 = acc.result(), base.result()
    matched = cos[np.isfinite(cos)]
    return {
        "latents": [sae_a.d_sae, sae_b.d_sae],
        "matching": match.method,
        "mean_cosine": mean_interval(matched, seed),
        **{f"above_{t:g}": share(int((matched > t).sum()), len(matched)) for t in THRESHOLDS},
        "mcc": {**mean_interval(r, seed), "constant_pairs": int(np.isnan(r).sum())},
        "rows": n,
        "baseline_mean_cosine": mean_interval(null[np.isfinite(null)], seed),
        "baseline_mcc": mean_interval(r0, seed),
    }
