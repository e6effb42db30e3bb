"""Shares of matched features: overall, per dominant branch, per firing-frequency band, branch pairs."""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import Tensor

from ..circuits.validate import NONE, label_agreement

#: Similarity thresholds reported for every matching (cosine or correlation).
THRESHOLDS = (0.7, 0.9)
#: Firing-frequency bands (share of positions), lower edges; the first band is "never fires".
FREQ_EDGES = (1e-4, 1e-3, 1e-2, 1e-1)


def shares(values: Tensor, thresholds=THRESHOLDS) -> dict[str, float | None]:
    """Share of ``values`` (NaN = unmatched) at or above each threshold."""
    n = values.numel()
    v = torch.nan_to_num(values.float(), nan=-2.0)
    return {f"{t:g}": (float((v >= t).float().mean()) if n else None) for t in thresholds}


def freq_band(f: float) -> str:
    """Name of the frequency band of a feature firing on share ``f`` of positions."""
    if f <= 0:
        return "never fires"
    lo = 0.0
    for edge in FREQ_EDGES:
        if f < edge:
            return f"{lo:g}-{edge:g}" if lo else f"<{edge:g}"
        lo = edge
    return f">={FREQ_EDGES[-1]:g}"


def band_order() -> list[str]:
    names = ["never fires"]
    lo = 0.0
    for edge in FREQ_EDGES:
        names.append(f"{lo:g}-{edge:g}" if lo else f"<{edge:g}")
        lo = edge
    return [*names, f">={FREQ_EDGES[-1]:g}"]


def grouped(values: Tensor, groups: list[str], order: list[str] | None = None, extra: Tensor | None = None) -> dict:
    """Per group: count, share above each threshold and (with ``extra`` booleans) share above the null."""
    out = {}
    keys = order or sorted(set(groups))
    for g in keys:
        idx = torch.tensor([i for i, x in enumerate(groups) if x == g], dtype=torch.long)
        if idx.numel() == 0:
            continue
        row: dict = {"n": int(idx.numel()), "share_above": shares(values[idx])}
        if extra is not None:
            row["share_above_null"] = float(extra[idx].float().mean())
        out[g] = row
    return out


def branch_pairs(
    matched: Tensor,
    partner: Tensor,
    dom_a: list[str],
    dom_b: list[str],
    permutations: int = 2000,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Cross-table of the dominant branches of matched pairs, and how often they agree vs chance.

    ``matched`` (ma,) booleans select side-A features with a match; ``partner`` gives the side-B
    feature. Over pairs where both sides have a dominant branch (not "none"): the share in the same
    branch against chance ``sum_b p_A(b) p_B(b)`` from the pairs' own margins, and the test of
    ``validate.label_agreement`` with side B's features as the partners, so a side-B feature that is
    the best match of many side-A features counts once.
    """
    index = matched.nonzero().flatten().tolist()
    ids = [int(partner[i]) for i in index]
    pairs = [(dom_a[i], dom_b[j]) for i, j in zip(index, ids, strict=True)]
    table: dict[str, dict[str, int]] = {}
    for a, b in pairs:
        table.setdefault(a, Counter())[b] += 1
    test = label_agreement([b for _, b in pairs], [a for a, _ in pairs], ids, permutations, bootstrap, seed,
                           sorted({*dom_a, *dom_b} - {NONE}))  # fmt: skip
    per_branch = {
        k: {"both": v["both"], "a_only": v["other_only"], "b_only": v["partner_only"],
            **{f: v[f] for f in ("neither", "odds_ratio", "ci95", "p_value")}}
        for k, v in test.per_branch.items()
    }  # fmt: skip
    return {
        "pairs": len(pairs),
        "pairs_with_both_dominant": test.labelled_pairs,
        "table": {a: dict(c) for a, c in table.items()},
        "same_branch_share": test.pair_agreement,
        "chance_same_branch": test.pair_chance,
        "partners": test.partners,
        "partner_same_branch_share": test.agreement,
        "partner_chance_same_branch": test.chance,
        "difference": test.difference,
        "ci95": test.ci95,
        "p_value": test.p_value,
        "per_branch": per_branch,
        "status": test.status,
        "note": "dominant branch of each side of every matched pair (best-correlation match above the null)",
        "null": "side-B partners' dominant branches permuted among the distinct partners, each keeping its "
        "side-A features; partner_* and the test count each distinct side-B partner once (its pairs weighted "
        "1/size); ci95: percentile bootstrap over distinct side-B partners",
    }


def finite(x):
    """JSON-safe floats (NaN/inf -> None), recursively over lists and dicts."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def rounded(t: Tensor, nd: int = 4) -> list:
    """A float tensor as a JSON list rounded to ``nd`` decimals (NaN -> None)."""
    return [None if v != v else round(v, nd) for v in t.float().tolist()]
