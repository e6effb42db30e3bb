"""Validation: weights vs measured effects, and the cross-layer branch claim.

* Exactness: through the 1x1 branch, the weight equals the measured pre-ReLU
  effect of injecting the upstream decoder direction (up to float error).
* Agreement: Spearman rank correlation between weight-based values and the
  measured ablation effects over many pairs; pairs whose signs disagree are
  flagged (high/low-frequency paths cancelling, as for boundary detectors).
* Branch consistency: among the strongest pairs, how often upstream and
  downstream features share a dominant branch, vs a permutation null.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from ..models.inception_v1 import InceptionV1
from .linearize import Chain
from .saes import SAEView, dominant_branches


@torch.no_grad()
def inject_1x1(
    model: InceptionV1, chain: Chain, up: SAEView, down: SAEView, i: int, j: int, acts: Tensor, eps: float = 1.0
) -> Tensor:
    """Measured change of j's 1x1-slice pre-activation per unit of ``d_i`` injected at each position.

    ``acts`` (n, d_a, H, W). Injects ``eps * d_i`` at every position of a copy and
    reads the 1x1 conv's pre-ReLU output there (a 1x1 conv has no cross-position
    effects). Returns (n, H, W), which must equal the exact_1x1 weight everywhere.
    """
    if not chain.exact_1x1:
        raise ValueError(f"{chain.upstream} -> {chain.downstream} has stages between; the 1x1 path is not exact")
    conv = getattr(model, chain.downstream).conv_1x1
    c1 = conv.conv.weight.shape[0]
    shifted = acts + eps * up.W_dec[i][None, :, None, None]
    delta = conv.pre_relu(shifted) - conv.pre_relu(acts)  # (n, c1, H, W)
    return torch.einsum("c,nchw->nhw", down.W_enc[:c1, j], delta) / eps


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]


def spearman(a, b) -> float:
    """Spearman rank correlation (NaN when either side is constant or has < 3 values)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def sign_disagreements(weight: np.ndarray, measured: np.ndarray, rel_tol: float = 0.05) -> np.ndarray:
    """Indices of pairs whose weight and measured effect have opposite signs.

    Both must exceed ``rel_tol`` times their own largest magnitude, so that
    numerically-zero pairs are not flagged.
    """
    w_ok = np.abs(weight) > rel_tol * max(np.abs(weight).max(initial=0), 1e-12)
    m_ok = np.abs(measured) > rel_tol * max(np.abs(measured).max(initial=0), 1e-12)
    return np.flatnonzero(w_ok & m_ok & (np.sign(weight) != np.sign(measured)))


@dataclass(frozen=True)
class BranchConsistency:
    """Dominant-branch agreement of strongly connected pairs vs a permutation null."""

    pairs: int
    agreement: float  #: share of pairs whose dominant branches match
    null_mean: float  #: mean agreement when upstream branches are shuffled across the pairs
    null_std: float
    p_value: float  #: one-sided, (1 + #null >= observed) / (1 + permutations)
    permutations: int
    table: dict[str, dict[str, int]]  #: upstream branch -> downstream branch -> count

    def to_dict(self) -> dict:
        return asdict(self)


def branch_consistency(
    up: SAEView, down: SAEView, ups: Tensor, downs: Tensor, permutations: int = 2000, seed: int = 0
) -> BranchConsistency:
    """Do strongly connected features share their dominant branch (Bozoukov's cross-layer claim)?

    The null keeps both marginals: upstream labels are permuted across the pairs.
    """
    names_a, _ = dominant_branches(up.W_dec, up.layer)
    names_b, _ = dominant_branches(down.W_dec, down.layer)
    a = np.array([names_a[i] for i in ups.tolist()])
    b = np.array([names_b[j] for j in downs.tolist()])
    observed = float((a == b).mean()) if len(a) else float("nan")
    rng = np.random.default_rng(seed)
    null = np.array([(rng.permutation(a) == b).mean() for _ in range(permutations)]) if len(a) else np.zeros(1)
    table: dict[str, dict[str, int]] = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        table.setdefault(x, {}).setdefault(y, 0)
        table[x][y] += 1
    p = float((1 + (null >= observed - 1e-12).sum()) / (1 + permutations))
    return BranchConsistency(len(a), observed, float(null.mean()), float(null.std()), p, permutations, table)
