"""Shares of matched features: overall, per dominant branch, per firing-frequency band, branch pairs."""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import Tensor

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


def branch_pairs(matched: Tensor, partner: Tensor, dom_a: list[str], dom_b: list[str]) -> dict:
    """Cross-table of the dominant branches of matched pairs, and how often they agree vs chance.

    ``matched`` (ma,) booleans select side-A features with a match; ``partner`` gives the side-B
    feature. The chance agreement is ``sum_b p_A(b) p_B(b)`` from the pairs' own margins, computed
    over pairs where both sides have a dominant branch (not "none").
    """
    pairs = [(dom_a[i], dom_b[int(partner[i])]) for i in matched.nonzero().flatten().tolist()]
    table: dict[str, dict[str, int]] = {}
    for a, b in pairs:
        table.setdefault(a, Counter())[b] += 1
    both = [(a, b) for a, b in pairs if a != "none" and b != "none"]
    n = len(both)
    same = sum(a == b for a, b in both)
    ca, cb = Counter(a for a, _ in both), Counter(b for _, b in both)
    chance = sum(ca[k] * cb[k] for k in ca) / n**2 if n else None
    return {
        "pairs": len(pairs),
        "pairs_with_both_dominant": n,
        "table": {a: dict(c) for a, c in table.items()},
        "same_branch_share": same / n if n else None,
        "chance_same_branch": chance,
        "note": "dominant branch of each side of every matched pair (best-correlation match above the null)",
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
