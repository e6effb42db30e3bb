"""Bozoukov's Figs 5-10 with a highlighted feature family, and a test that the family sits apart in a branch.

A layer's SAE features each have a share of their decoder norm in every branch of the
inception block (see :mod:`.branches`). The paper sorts the features by that share,
one panel per branch, and points at hand-labelled families (colour features in 1x1,
animal parts in 5x5). Here a family is tested against the rest of its layer:

- a one-sided Mann-Whitney rank test that the family's shares in branch b are larger
  than the other features' (normal approximation with tie and continuity correction);
  the AUC is the chance that a member's share exceeds a non-member's (ties count 1/2);
- an exact one-sided hypergeometric test of how many members are labelled specialised
  in b: the chance that n features drawn at random from this layer hold at least that many.

Both are tests only if the family was chosen without looking at branches (by what its
features detect); a family picked for its shares in b is in b by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..display import fmt_p
from ..errors import UserError

WARNING = (
    "a test only if the family was chosen without looking at branches (e.g. by what its features detect); "
    "a family picked for its branch shares is in that branch by construction. p-values are per branch, "
    "not corrected for the branches tested"
)
BAND_LABEL = "typical features 5-95%"
UNTRAINED_TEXT = "UNTRAINED WEIGHTS (random network)"
FAMILY_COLOUR = "#e6550d"
CURVE_COLOUR = "#3182bd"


def select_family(
    labels: Sequence[str | None] | None = None,
    ids: Sequence[int] | None = None,
    substring: str | None = None,
    m: int | None = None,
) -> list[int]:
    """Sorted, de-duplicated feature ids of a family: ``ids`` as given, or every label containing ``substring``.

    Exactly one of ``ids`` / ``substring`` is given. ``ids`` are checked against
    ``range(m)`` (``m`` defaults to ``len(labels)``); substring matching is
    case-insensitive and needs ``labels`` (a missing label matches nothing). A
    substring that matches nothing gives ``[]``.
    """
    if (ids is None) == (substring is None):
        raise UserError("give a family either as feature ids or as a label substring, not both or neither")
    if m is None:
        m = None if labels is None else len(labels)
    elif labels is not None and m != len(labels):
        raise UserError(f"m={m} but there are {len(labels)} labels")
    if substring is not None:
        if labels is None:
            raise UserError("a family by label substring needs the feature labels")
        needle = substring.strip().lower()
        if not needle:
            raise UserError("the family's label substring is empty; it would select every feature")
        return [i for i, lab in enumerate(labels) if lab and needle in lab.lower()]
    if m is None:
        raise UserError("family ids need the layer's feature count (labels or m) to be checked")
    assert ids is not None  # exactly one of ids / substring, checked above
    return _check_ids(ids, m)


def _check_ids(ids: Sequence[int], m: int) -> list[int]:
    out = set()
    bad = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < m:
            bad.append(i)
        else:
            out.add(int(i))
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise UserError(f"family feature ids must be integers in 0..{m - 1}; got {shown}")
    return sorted(out)


def _num(x: float) -> float | None:
    """A JSON-safe float: None for NaN or infinity."""
    x = float(x)
    return x if math.isfinite(x) else None


def rank_test(x: np.ndarray, y: np.ndarray) -> dict:
    """One-sided Mann-Whitney test that ``x`` tends to be larger than ``y``.

    Returns U (of ``x``; ties count 1/2), the AUC ``U / (nx ny)``, z (tie-corrected
    variance, continuity correction 1/2) and p = P(U >= observed) under the
    normal approximation; z and p are None where a sample is empty, and p is 1
    (z None) where all values are tied.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return {"U": None, "auc": None, "z": None, "p": None}
    v = np.concatenate([x, y])
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]  # average ranks, 1-based
    U = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    N = n1 + n2
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    var = n1 * n2 / 12.0 * ((N + 1) - ties / (N * (N - 1)))
    if var <= 0:
        return {"U": U, "auc": U / (n1 * n2), "z": None, "p": 1.0}
    z = (U - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return {"U": U, "auc": U / (n1 * n2), "z": z, "p": min(1.0, 0.5 * math.erfc(z / math.sqrt(2.0)))}


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def count_pvalue(k: int, n: int, K: int, m: int) -> float:
    """Exact P(X >= k) for X ~ Hypergeometric: ``n`` features drawn without replacement from ``m``, ``K`` marked."""
    if not 0 <= K <= m or not 0 <= n <= m:
        raise ValueError(f"need 0 <= K, n <= m; got K={K}, n={n}, m={m}")
    lo, hi = max(0, n - (m - K)), min(n, K)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    terms = np.array([_log_comb(K, x) + _log_comb(m - K, n - x) for x in range(k, hi + 1)]) - _log_comb(m, n)
    top = float(terms.max())
    return min(1.0, math.exp(top) * float(np.exp(terms - top).sum()))


def family_test(share: np.ndarray, specialised: np.ndarray, family: Sequence[int], names: Sequence[str]) -> dict:
    """Does a family of features sit higher in each branch than the rest of its layer?

    ``share`` (m, nb) is one kind of branch share, ``specialised`` (m, nb) marks
    features called specialised in each branch. Per branch: the rank test of the
    family's shares against the non-members' (:func:`rank_test`) and the count of
    specialised members against the layer's base rate (:func:`count_pvalue`).
    ``status`` is "ok", "empty family" or "whole layer" (then every test value is None).
    """
    share = np.asarray(share, dtype=np.float64)
    spec = np.asarray(specialised, dtype=bool)
    if share.ndim != 2 or share.shape[1] != len(names):
        raise ValueError(f"share must be (m, {len(names)}) for branches {list(names)}; got {share.shape}")
    if spec.shape != share.shape:
        raise ValueError(f"specialised must have the shape of share {share.shape}; got {spec.shape}")
    if not np.isfinite(share).all():
        raise ValueError("share has non-finite entries")
    m = share.shape[0]
    ids = _check_ids(family, m)
    n = len(ids)
    status = "ok" if 0 < n < m else ("empty family" if n == 0 else "whole layer")
    member = np.zeros(m, dtype=bool)
    member[ids] = True
    branches = {}
    for j, name in enumerate(names):
        K, k = int(spec[:, j].sum()), int(spec[member, j].sum())
        row: dict[str, Any] = {"U": None, "auc": None, "z": None, "p": None, "median_family": None, "median_rest": None}
        row |= {"specialised": k, "specialised_layer": K, "base_rate": K / m if m else None}
        row |= {"expected": None, "p_count": None}
        if status == "ok":
            fam, rest = share[member, j], share[~member, j]
            row |= {key: None if v is None else _num(v) for key, v in rank_test(fam, rest).items()}
            row |= {"median_family": _num(np.median(fam)), "median_rest": _num(np.median(rest))}
            row |= {"expected": n * K / m, "p_count": count_pvalue(k, n, K, m)}
        branches[name] = row
    return {
        "status": status, "n": n, "m": m, "family": ids, "branches": branches, "warning": WARNING,
        "test": "one-sided Mann-Whitney U (normal approximation, tie- and continuity-corrected) of the family's "
        "shares against the rest of the layer; exact one-sided hypergeometric count of specialised members",
    }  # fmt: skip


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else fmt_p(p)


def _family_text(name: str, n: int, row: dict | None) -> str:
    lines = [f"{name} (n={n})"]
    if row and row.get("auc") is not None:
        lines.append(f"AUC {row['auc']:.2f}, p {_fmt_p(row.get('p'))}")
    if row and row.get("p_count") is not None:
        lines.append(f"specialised {row['specialised']} (exp {row['expected']:.1f}), p {_fmt_p(row['p_count'])}")
    return "\n".join(lines)


def plot_branch_figure(
    share: np.ndarray,
    band: dict[str, tuple[float, float, float]],
    names: Sequence[str],
    layer: str,
    path: str | Path,
    kind_label: str,
    family: Sequence[int] | None = None,
    family_name: str | None = None,
    family_result: dict | None = None,
    untrained: bool = False,
) -> None:
    """One PNG, a column per branch: sorted shares (top) and their histogram (bottom), family highlighted.

    ``share`` (m, nb) is one kind of share; ``band[branch] = (q05, q50, q95)`` is drawn
    as a grey band with a dashed median (a branch missing from ``band`` gets none).
    Family members are marked at their sorted positions and their histogram is
    overlaid (both histograms as densities); ``family_result`` (from
    :func:`family_test`) adds each branch's AUC and p-values. Size (3.4 nb, 5.5) in at 90 dpi.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = np.asarray(share, dtype=np.float64)
    names = list(names)
    if share.ndim != 2 or share.shape[1] != len(names):
        raise ValueError(f"share must be (m, {len(names)}) for branches {names}; got {share.shape}")
    m, nb = share.shape
    ids = _check_ids(family, m) if family is not None else []
    fam_name = family_name or "family"
    res_rows = (family_result or {}).get("branches", {})
    fig, axes = plt.subplots(2, nb, figsize=(3.4 * nb, 5.5), squeeze=False)
    for j, name in enumerate(names):
        top, bot = axes[0, j], axes[1, j]
        s = share[:, j]
        order = np.argsort(-s, kind="stable")
        pos = np.empty(m, dtype=np.int64)
        pos[order] = np.arange(m)
        q = band.get(name)
        if q is not None:
            top.axhspan(q[0], q[2], color="0.85", label=BAND_LABEL)
            top.axhline(q[1], color="0.45", lw=0.8, ls="--", label="typical median")
            bot.axvspan(q[0], q[2], color="0.85")
            bot.axvline(q[1], color="0.45", lw=0.8, ls="--")
        top.plot(np.arange(m), s[order], lw=1.2, color=CURVE_COLOUR, label="all features")
        bins = np.linspace(min(0.0, float(s.min())), max(1.0, float(s.max())), 31)
        bot.hist(s, bins=bins, density=True, color=CURVE_COLOUR, alpha=0.55, label="all features")
        if ids:
            top.scatter(pos[ids], s[ids], s=16, color=FAMILY_COLOUR, edgecolor="k", lw=0.4, zorder=3, label=fam_name)
            bot.hist(s[ids], bins=bins, density=True, histtype="step", lw=1.6, color=FAMILY_COLOUR, label=fam_name)
            top.text(
                0.97, 0.96, _family_text(fam_name, len(ids), res_rows.get(name)), transform=top.transAxes,
                ha="right", va="top", fontsize=7, bbox={"boxstyle": "round", "fc": "white", "ec": FAMILY_COLOUR},
            )  # fmt: skip
        top.set_title(f"{layer} {name}", fontsize=10)
        top.set_xlabel("features (sorted by share)", fontsize=8)
        top.set_xlim(-0.5, m - 0.5)
        bot.set_xlabel(f"{name} share", fontsize=8)
        for ax in (top, bot):
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel(kind_label, fontsize=8)
    axes[1, 0].set_ylabel("density", fontsize=8)
    handles, labs = axes[0, 0].get_legend_handles_labels()
    axes[1, 0].legend(handles, labs, fontsize=6, loc="best", framealpha=0.9)
    title = f"{layer}: share of each SAE feature's decoder norm per branch ({kind_label})"
    if ids:
        title += f"; {fam_name} highlighted"
    fig.suptitle(title, fontsize=10, y=0.955 if untrained else 0.98)
    if untrained:
        fig.text(0.5, 0.995, UNTRAINED_TEXT, color="red", fontsize=11, fontweight="bold", ha="center", va="top")
        fig.text(
            0.5, 0.5, UNTRAINED_TEXT, color="red", fontsize=26, fontweight="bold", alpha=0.35,
            ha="center", va="center", rotation=12,
        )  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
