"""Validation: weights vs measured effects, and the cross-layer branch claim.

* Agreement: Spearman rank correlation between weight-based values and the
  measured ablation effects, per downstream feature (median and IQR over
  features; both the expanded weight and the ablation scale with the feature's
  encoder norm, so a correlation pooled over features is flattered and is only
  reported beside it); pairs whose signs disagree are flagged (high/low-frequency
  paths cancelling, as for boundary detectors).
* Branch consistency (Bozoukov: similar features sit in the same-size branch
  across layers): each downstream feature with its top upstream partner,
  dominant branches by the analysis's definition (q <= 0.01, else "none").
  Chance is ``sum_b p_up(b) p_down(b)`` from the labelled pairs' own margins, and
  the null shuffles the partners' labels among the DISTINCT partners actually
  chosen, keeping every partner's set of downstream features: partner choice
  skewed towards one branch then raises chance, not the evidence, whereas a
  null over all upstream features mistakes that skew for agreement. Each
  distinct partner counts once (its pairs are weighted 1/size, and it is the
  unit of the permutation and of the bootstrap interval), so a hub that is the
  top partner of many downstream features, which may resemble one another, is
  one observation, not many.

Through the 1x1 branch a weight equals the injected effect by construction
(a 1x1 conv is linear); that is a unit test of the code (see the tests), not a
validation of the method, and it is not reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

NONE = "none"
#: Fewest labelled pairs, and fewest distinct labelled partners, for the agreement test to be run.
MIN_PAIRS, MIN_PARTNERS = 10, 5


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


def bootstrap_median(values, resamples: int = 2000, seed: int = 0) -> dict:
    """Median of the finite ``values`` (one per downstream feature) with a percentile bootstrap 95% interval."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return {"median": float(np.median(x)) if len(x) else None, "ci95": [None, None], "features": len(x)}
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), (resamples, len(x)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return {"median": float(np.median(x)), "ci95": [float(lo), float(hi)], "features": len(x)}


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


def _haldane(both, p_only, o_only, neither) -> np.ndarray:
    """Odds ratio with Haldane's +0.5, elementwise over arrays of 2x2 cells."""
    return (both + 0.5) * (neither + 0.5) / ((p_only + 0.5) * (o_only + 0.5))


@dataclass(frozen=True)
class LabelAgreement:
    """Same-label agreement of (partner, other) pairs vs chance from their margins, partners as the unit."""

    labelled_pairs: int  #: pairs where both sides have a label (not "none")
    partners: int  #: distinct partners among the labelled pairs: the permutation and bootstrap units
    pair_agreement: float | None  #: share of labelled pairs with the same label (None: status is not "ok")
    pair_chance: float | None  #: sum_b p_partner(b) p_other(b) over labelled pairs
    agreement: float | None  #: as pair_agreement, each distinct partner counted once (its pairs weighted 1/size)
    chance: float | None  #: as pair_chance, each distinct partner counted once
    difference: float | None  #: agreement - chance
    ci95: list[float] | None  #: percentile interval of the difference, bootstrap over distinct partners
    p_value: float | None  #: one-sided, (1 + #null >= observed) / (1 + permutations)
    per_branch: dict[str, dict]  #: label -> 2x2 pair counts, odds ratio with bootstrap 95% CI, permutation p
    status: str  #: "ok", or why no test was run


def label_agreement(
    partner_labels: Sequence[str],
    other_labels: Sequence[str],
    partner_ids,
    permutations: int = 2000,
    bootstrap: int = 1000,
    seed: int = 0,
    branches: Sequence[str] | None = None,
) -> LabelAgreement:
    """Do pairs share a label beyond chance from their margins, with each distinct partner as one unit?

    Pair ``k`` joins a feature labelled ``other_labels[k]`` to its partner ``partner_ids[k]``,
    labelled ``partner_labels[k]``; pairs with a "none" side are left out. Null: the labels of
    the distinct partners are permuted among themselves, each keeping its pairs (which features
    are partners, and of whom, is kept). ``per_branch`` counts pairs: ``both``, ``partner_only``,
    ``other_only``, ``neither``; its p-value uses the same null on the partner-weighted ``both``.
    """
    cats = sorted(branches if branches is not None else {*partner_labels, *other_labels} - {NONE})
    code = {c: i for i, c in enumerate(cats)}
    a = np.array([code.get(x, -1) for x in partner_labels], dtype=int)
    b = np.array([code.get(x, -1) for x in other_labels], dtype=int)
    keep = (a >= 0) & (b >= 0)
    a, b, ids = a[keep], b[keep], np.asarray(partner_ids, dtype=int)[keep]
    n, K = len(a), len(cats)
    _, first, cluster = np.unique(ids, return_index=True, return_inverse=True)
    C = len(first)
    ac = a[first]  # one label per distinct partner
    M = np.zeros((C, K))
    np.add.at(M, (cluster, b), 1.0)  # pairs per (partner, other label)
    counts = {}
    for k, name in enumerate(cats):
        both, up, down = int(((a == k) & (b == k)).sum()), int((a == k).sum()), int((b == k).sum())
        counts[name] = {"both": both, "partner_only": up - both, "other_only": down - both,
                        "neither": n - up - down + both}  # fmt: skip
    if n < MIN_PAIRS or C < MIN_PARTNERS:
        status = (f"not enough labelled pairs ({n} < {MIN_PAIRS})" if n < MIN_PAIRS
                  else f"not enough distinct labelled partners ({C} < {MIN_PARTNERS})")  # fmt: skip
        per_branch: dict[str, dict] = {
            k: {**v, "odds_ratio": None, "ci95": None, "p_value": None} for k, v in counts.items()
        }
        return LabelAgreement(n, C, None, None, None, None, None, None, None, per_branch, status)
    pair_agree = float((a == b).mean())
    pair_chance = float(np.bincount(a, minlength=K) @ np.bincount(b, minlength=K) / n**2)
    rng = np.random.default_rng(seed)
    Mw = M / M.sum(1, keepdims=True)  # each partner's pairs weighted 1/size
    onehot = np.eye(K)[ac]  # (C, K)
    both_w = (Mw * onehot).sum(0) / C  # per label: partner-weighted share of pairs with both sides in it
    agree, chance = float(both_w.sum()), float(onehot.mean(0) @ Mw.mean(0))
    # null: partner labels permuted among the distinct partners; the label counts of the partners and each
    # partner's pairs are kept, so the chance term is the same in every permutation (chunks bound the memory)
    ge, ge_k, done = 0, np.zeros(K), 0
    while done < permutations:
        P = min(500, permutations - done)
        perm = rng.permuted(np.broadcast_to(ac, (P, C)).copy(), axis=1)
        null_both = np.stack([(perm == k) @ Mw[:, k] for k in range(K)], 1) / C  # (P, K)
        ge += int((null_both.sum(1) >= agree - 1e-12).sum())
        ge_k += (null_both >= both_w - 1e-12).sum(0)
        done += P
    # interval: bootstrap over distinct partners (W: how often each is drawn)
    idx = rng.integers(0, C, (bootstrap, C))
    W = np.bincount((idx + C * np.arange(bootstrap)[:, None]).ravel(), minlength=bootstrap * C)
    W = W.reshape(bootstrap, C).astype(float)
    boot_diff = (W @ (Mw * onehot)).sum(1) / C - ((W @ onehot) * (W @ Mw)).sum(1) / C**2
    lo, hi = np.percentile(boot_diff, [2.5, 97.5])
    # odds ratios on the resampled pair counts
    up_r, down_r, size_r, both_r = W @ (onehot * M.sum(1, keepdims=True)), W @ M, W @ M.sum(1), W @ (M * onehot)
    per_branch = {}
    for k, name in enumerate(cats):
        c = counts[name]
        ors = _haldane(both_r[:, k], up_r[:, k] - both_r[:, k], down_r[:, k] - both_r[:, k],
                       size_r - up_r[:, k] - down_r[:, k] + both_r[:, k])  # fmt: skip
        ratio = odds_ratio(c["both"], c["partner_only"], c["other_only"], c["neither"])[0]
        per_branch[name] = {**c, "odds_ratio": ratio, "ci95": [float(x) for x in np.percentile(ors, [2.5, 97.5])],
                            "p_value": float((1 + ge_k[k]) / (1 + permutations))}  # fmt: skip
    return LabelAgreement(n, C, pair_agree, pair_chance, agree, chance, agree - chance, [float(lo), float(hi)],
                          float((1 + ge) / (1 + permutations)), per_branch, "ok")  # fmt: skip


@dataclass(frozen=True)
class BranchConsistency:
    """Dominant-branch agreement of (downstream feature, its top upstream partner) vs chance from the margins."""

    pairs: int  #: downstream features paired with their top upstream partner
    labelled_pairs: int  #: pairs where both features have a dominant branch (not "none")
    agreement: float | None  #: share of labelled pairs in the same branch
    chance: float | None  #: sum_b p_up(b) p_down(b) from the labelled pairs' margins
    partner_agreement: float | None  #: agreement with each distinct upstream partner counted once
    partner_chance: float | None  #: chance with each distinct upstream partner counted once
    difference: float | None  #: partner_agreement - partner_chance: the tested excess
    ci95: list[float] | None  #: 95% interval of the difference, bootstrap over distinct upstream partners
    p_value: float | None  #: one-sided, partner labels permuted among the distinct partners
    permutations: int
    bootstrap: int
    table: dict[str, dict[str, int]]  #: upstream branch -> downstream branch -> pairs ("none" included)
    per_branch: dict[str, dict]  #: branch -> labelled-pair 2x2 counts, odds ratio with bootstrap 95% CI, p
    upstream_features: int  #: distinct upstream features among the partners (hubs make this small)
    labelled_partners: int  #: distinct upstream partners among the labelled pairs: the test's units
    status: str  #: "ok", or why agreement and the test are null
    pairing: str = "each downstream feature with the upstream feature of largest positive expanded weight"
    labels: str = "dominant branch (analysis.branches.dominant_branches): most significant if q <= 0.01, else none"
    null: str = ("dominant branches of the distinct upstream partners permuted among themselves, each keeping "
                 "its downstream features; each distinct partner counted once")  # fmt: skip
    interval: str = "percentile bootstrap over distinct upstream partners"

    def to_dict(self) -> dict:
        return asdict(self)


def branch_consistency(
    names_up: list[str],
    names_down: list[str],
    ups,
    downs,
    permutations: int = 2000,
    seed: int = 0,
    bootstrap: int = 1000,
) -> BranchConsistency:
    """Do downstream features and their top upstream partners share a dominant branch beyond chance?

    ``names_up`` / ``names_down``: dominant branch (or "none") of every feature of
    each SAE; ``ups[k]`` is the top upstream partner of downstream feature ``downs[k]``.
    """
    ups, downs = np.asarray(ups, dtype=int), np.asarray(downs, dtype=int)
    pa, pb = [names_up[i] for i in ups.tolist()], [names_down[i] for i in downs.tolist()]
    res = label_agreement(pa, pb, ups, permutations, bootstrap, seed, sorted({*names_up, *names_down} - {NONE}))
    table: dict[str, dict[str, int]] = {}
    for x, y in zip(pa, pb, strict=True):
        table.setdefault(x, {}).setdefault(y, 0)
        table[x][y] += 1
    per_branch = {
        k: {"both": v["both"], "up_only": v["partner_only"], "down_only": v["other_only"],
            **{f: v[f] for f in ("neither", "odds_ratio", "ci95", "p_value")}}
        for k, v in res.per_branch.items()
    }  # fmt: skip
    return BranchConsistency(
        len(pb), res.labelled_pairs, res.pair_agreement, res.pair_chance, res.agreement, res.chance, res.difference,
        res.ci95, res.p_value, permutations, bootstrap, table, per_branch, len(set(ups.tolist())), res.partners,
        res.status,
    )  # fmt: skip
