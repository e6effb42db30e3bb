"""Validation: weights vs measured effects, and the cross-layer branch claim.

* Agreement: Spearman rank correlation between weight-based values and the
  measured ablation effects, per downstream feature (median and IQR over
  features; both the expanded weight and the ablation scale with the feature's
  encoder norm, so a correlation pooled over features is flattered and is only
  reported beside it); pairs whose signs disagree are flagged (high/low-frequency
  paths cancelling, as for boundary detectors).
* Branch consistency (Bozoukov: similar features sit in the same-size branch
  across layers): each downstream feature with its top upstream partner,
  dominant branches by the analysis's definition (q <= 0.01, else "none"),
  a per-branch 2x2 table with its odds ratio, and a permutation null at the
  FEATURE level (upstream labels shuffled across upstream features), so a hub
  that is many features' top partner counts as one feature, not many pairs.

Through the 1x1 branch a weight equals the injected effect by construction
(a 1x1 conv is linear); that is a unit test of the code (see the tests), not a
validation of the method, and it is not reported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

NONE = "none"


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


def odds_ratio(both: int, up_only: int, down_only: int, neither: int) -> tuple[float, float, float]:
    """Odds ratio of a 2x2 table with Haldane's +0.5 and Woolf's 95% CI: (or, lo, hi)."""
    a, b, c, d = (x + 0.5 for x in (both, up_only, down_only, neither))
    log_or = math.log(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return math.exp(log_or), math.exp(log_or - 1.96 * se), math.exp(log_or + 1.96 * se)


@dataclass(frozen=True)
class BranchConsistency:
    """Dominant-branch agreement of (downstream feature, its top upstream partner) vs a feature-level null."""

    pairs: int  #: downstream features paired with their top upstream partner
    labelled_pairs: int  #: pairs where both features have a dominant branch (not "none")
    agreement: float  #: share of labelled pairs in the same branch (NaN without labelled pairs)
    null_mean: float  #: mean agreement with upstream labels shuffled across upstream features
    null_std: float
    p_value: float  #: one-sided, (1 + #null >= observed) / (1 + permutations)
    permutations: int
    table: dict[str, dict[str, int]]  #: upstream branch -> downstream branch -> pairs ("none" included)
    per_branch: dict[str, dict]  #: branch -> 2x2 counts, odds ratio with 95% CI, permutation p
    upstream_features: int  #: distinct upstream features among the partners (hubs make this small)
    pairing: str = "each downstream feature with the upstream feature of largest positive expanded weight"
    labels: str = "dominant branch: most significant branch under the permutation null if q <= 0.01, else none"
    null: str = "upstream dominant branches permuted across upstream features (feature level)"

    def to_dict(self) -> dict:
        return asdict(self)


def branch_consistency(
    names_up: list[str], names_down: list[str], ups, downs, permutations: int = 2000, seed: int = 0
) -> BranchConsistency:
    """Do downstream features and their top upstream partners share a dominant branch?

    ``names_up`` / ``names_down``: dominant branch (or "none") of every feature of
    each SAE; ``ups[k]`` is the top upstream partner of downstream feature ``downs[k]``.
    """
    ups, downs = np.asarray(ups, dtype=int), np.asarray(downs, dtype=int)
    cats = [*sorted({*names_up, *names_down} - {NONE}), NONE]
    code = {c: i for i, c in enumerate(cats)}
    la = np.array([code[x] for x in names_up], dtype=int)  # per upstream FEATURE
    lb = np.array([code[x] for x in names_down], dtype=int)[downs]  # per pair
    none = code[NONE]
    rng = np.random.default_rng(seed)
    perms = np.stack([la] + [rng.permutation(la) for _ in range(permutations)])  # (1 + P, m_a); row 0 observed
    pa = perms[:, ups]  # (1 + P, pairs)
    labelled = (pa != none) & (lb != none)
    same = (pa == lb) & labelled
    n_lab = labelled.sum(1)
    agree = np.where(n_lab > 0, same.sum(1) / np.maximum(n_lab, 1), np.nan)
    obs, null = agree[0], agree[1:]
    p = float((1 + (null >= obs - 1e-12).sum()) / (1 + permutations)) if n_lab[0] else float("nan")
    table: dict[str, dict[str, int]] = {}
    for x, y in zip(pa[0].tolist(), lb.tolist(), strict=True):
        table.setdefault(cats[x], {}).setdefault(cats[y], 0)
        table[cats[x]][cats[y]] += 1
    per_branch = {}
    for b in cats[:-1]:
        i = code[b]
        both = ((pa == i) & (lb == i)).sum(1)  # (1 + P,)
        up_b, down_b = int((pa[0] == i).sum()), int((lb == i).sum())
        cells = (int(both[0]), up_b - int(both[0]), down_b - int(both[0]), len(lb) - up_b - down_b + int(both[0]))
        ratio, lo, hi = odds_ratio(*cells)
        per_branch[b] = {"both": cells[0], "up_only": cells[1], "down_only": cells[2], "neither": cells[3],
                         "odds_ratio": ratio, "ci95": [lo, hi],
                         "p_value": float((1 + (both[1:] >= both[0]).sum()) / (1 + permutations))}  # fmt: skip
    return BranchConsistency(
        len(lb), int(n_lab[0]), float(obs), float(np.nanmean(null)) if np.isfinite(null).any() else float("nan"),
        float(np.nanstd(null)) if np.isfinite(null).any() else float("nan"), p, permutations, table, per_branch,
        len(set(ups.tolist())),
    )  # fmt: skip
