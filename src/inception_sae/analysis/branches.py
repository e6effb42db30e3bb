"""Branch specialization of SAE features (Bozoukov 2025, Figs 5-10) with a calibrated null model.

A feature's decoder vector ``d_i`` (d,) splits into the four branch slices of the
block. Three shares per branch:

- ``pos``:  ``||relu(d_i[b])|| / ||relu(d_i)||`` (the paper's notebooks; its figures use this),
- ``norm``: ``||d_i[b]|| / ||d_i||``,
- ``sq``:   ``||d_i[b]||^2 / ||d_i||^2`` (sums to 1 over branches).

A share grows with the branch's channel count and its channels' activation
scale, so the ``pos`` share is tested against a per-row permutation null
(:mod:`.branch_null`): the row in units of ``null_channel_scale`` with its
entries permuted across channels. p-values are exact under that null and
Benjamini-Hochberg q-values are taken over all features x branches.

The ONE definition of a feature's dominant branch, used by the analysis, the
circuits, the dashboard and every figure: the branch with the smallest p-value
(ties at the floor: the larger z) if its q <= 0.01, else ``"none"``. "none" is
the expected answer for a random network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .branch_null import (
    LEVEL,
    NULL_TEXT,
    STOP_AFTER,
    benjamini_hochberg,
    dominant_index,
    permutation_pvalues,
)

KINDS = ("pos", "norm", "sq")
NONE = "none"  #: dominant branch of a feature with no branch significant at q <= LEVEL
N_MAX = 2**17  #: default cap of permutations per test (p-value floor 1 / (N_MAX + 1))
POOL_ROWS = 4096  #: rows permuted once each for the pooled null band of the figures


class BranchStats(NamedTuple):
    """Shares, null comparison and dominant branch of every feature (tests on the ``pos`` share)."""

    names: tuple[str, ...]  #: branch names in concat order
    shares: dict[str, Tensor]  #: kind -> (m, nb) shares
    z: Tensor  #: (m, nb) (pos share - its null mean) / null sd, per row
    p: Tensor  #: (m, nb) permutation p-values of the pos share
    q: Tensor  #: (m, nb) Benjamini-Hochberg q-values over all features x branches
    draws: Tensor  #: (m, nb) permutations drawn per test
    null: dict[str, Tensor]  #: kind -> (n, nb) pooled null shares (rows permuted once each), for figures
    dominant: Tensor  #: (m,) dominant branch index, -1 for "none" (see module docstring)
    largest: Tensor  #: (m,) branch index with the largest raw ``pos`` share
    scale: Tensor  #: (d,) null_channel_scale
    n_max: int  #: permutation cap; p-value floor 1 / (n_max + 1)

    def dominant_names(self) -> list[str]:
        """Dominant branch name per feature, ``"none"`` where no branch is significant."""
        return [self.names[i] if i >= 0 else NONE for i in self.dominant.tolist()]

    @property
    def p_floor(self) -> float:
        return 1.0 / (self.n_max + 1)

    def null_text(self) -> str:
        return NULL_TEXT.format(stop=STOP_AFTER, n_max=self.n_max)

    def fdr_counts(self, level: float = LEVEL) -> dict[str, int]:
        """Branch -> features with q <= level in that branch."""
        return {b: int((self.q[:, j] <= level).sum()) for j, b in enumerate(self.names)}

    def dominant_counts(self) -> dict[str, int]:
        names = self.dominant_names()
        return {b: names.count(b) for b in (*self.names, NONE)}


def branch_shares(W: Tensor, slices: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
    """Shares of each row of ``W`` (m, d) in each slice: kind -> (m, nb)."""
    W = W.float()
    pos = W.clamp_min(0)
    eps = 1e-12
    cols = {
        "pos": [pos[:, a:b].norm(dim=1) for a, b in slices],
        "norm": [W[:, a:b].norm(dim=1) for a, b in slices],
        "sq": [W[:, a:b].pow(2).sum(1) for a, b in slices],
    }
    tot = {"pos": pos.norm(dim=1), "norm": W.norm(dim=1), "sq": W.pow(2).sum(1)}
    return {k: torch.stack(cols[k], 1) / tot[k].clamp_min(eps).unsqueeze(1) for k in KINDS}


def pooled_null(W: Tensor, slices: Sequence[tuple[int, int]], scale: Tensor, n: int = POOL_ROWS, seed: int = 0):
    """kind -> (n, nb) shares of ``n`` rows of ``W`` (drawn with replacement) each permuted once under the null."""
    g = torch.Generator().manual_seed(seed + 1)
    rows = torch.randint(0, W.shape[0], (n,), generator=g)
    perm = torch.rand(n, W.shape[1], generator=g).argsort(1)
    Y = (W[rows].float() / scale).gather(1, perm) * scale
    return branch_shares(Y, slices)


def branch_stats(
    W_dec: Tensor, slices: Sequence[tuple[int, int]], names: Sequence[str], scale: Tensor | None = None,
    n_max: int = N_MAX, seed: int = 0,
) -> BranchStats:  # fmt: skip
    """Shares of decoder rows ``W_dec`` (m, d), their permutation p-values, BH q-values and dominant branch."""
    W = W_dec.detach().float().cpu()
    scale = torch.ones(W.shape[1]) if scale is None else scale.detach().float().cpu()
    obs = branch_shares(W, slices)
    res = permutation_pvalues(W, slices, scale, n_max=n_max, seed=seed)
    q = benjamini_hochberg(res.p)
    dom = dominant_index(res.p, q, res.z)
    null = pooled_null(W, slices, scale, seed=seed)
    return BranchStats(tuple(names), obs, res.z, res.p, q, res.draws, null, dom, obs["pos"].argmax(1), scale, n_max)


def dominant_branches(
    W_dec: Tensor, slices: Sequence[tuple[int, int]], names: Sequence[str], scale: Tensor | None = None,
    n_max: int = N_MAX, seed: int = 0,
) -> list[str]:  # fmt: skip
    """THE dominant branch of every row of ``W_dec``: most significant branch with q <= 0.01, else "none"."""
    return branch_stats(W_dec, slices, names, scale, n_max, seed).dominant_names()


def family_chance(stats: BranchStats, features: Sequence[int]) -> dict:
    """Voss et al.'s family test with the SAE's own base rates of dominant branches.

    The chance that ``n`` features drawn at random from this SAE all have
    dominant branch b is ``r_b^n``, with ``r_b`` the share of the SAE's features
    dominant in b ("none" included in the denominator). Returns the common branch
    (None if they differ or are "none"), ``p_all_in_branch`` = ``r_b^n`` and
    ``p_all_same`` = ``sum_b r_b^n`` over named branches.
    """
    feats = list(features)
    names = stats.dominant_names()
    counts = stats.dominant_counts()
    m = max(len(names), 1)
    rate = {b: counts[b] / m for b in stats.names}
    labels = {names[f] for f in feats}
    common = next(iter(labels)) if len(labels) == 1 and NONE not in labels else None
    n = len(feats)
    return {
        "branch": common, "n": n, "base_rates": rate,
        "p_all_in_branch": rate[common] ** n if common else None,
        "p_all_same": sum(r**n for r in rate.values()) if common else None,
        "warning": "only a test if the family was chosen without looking at branches (e.g. by what the "
        "features detect); a family picked for its branch has p = 1",
    }  # fmt: skip


def specialised_table(stats: BranchStats, top: int = 10) -> dict[str, list[dict]]:
    """Branch -> the ``top`` most significant features in it (smallest p, then largest z)."""
    table = {}
    for j, name in enumerate(stats.names):
        order = np.lexsort((-stats.z[:, j].numpy(), stats.p[:, j].numpy()))[:top].tolist()
        table[name] = [
            {"id": f, "share": float(stats.shares["pos"][f, j]), "z": float(stats.z[f, j]),
             "p": float(stats.p[f, j]), "q": float(stats.q[f, j])}
            for f in order
        ]  # fmt: skip
    return table


def figure_data(stats: BranchStats, kind: str = "pos") -> dict:
    """Per branch: sorted shares (descending) and the pooled null's 5/50/95% quantiles."""
    qs = torch.tensor([0.05, 0.5, 0.95])
    out = {"kind": kind, "null": "pooled: rows permuted once each under the branch null", "branches": {}}
    for j, name in enumerate(stats.names):
        nq = torch.quantile(stats.null[kind][:, j], qs).tolist()
        out["branches"][name] = {
            "sorted_shares": stats.shares[kind][:, j].sort(descending=True).values.tolist(),
            "null_q05": nq[0], "null_median": nq[1], "null_q95": nq[2],
        }  # fmt: skip
    return out


def plot_branch_shares(data: dict, layer: str, path) -> None:
    """Figs 5-10 style: one panel per branch, sorted shares with the null's 5-95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(data["branches"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), sharey=True)
    for ax, name in zip(axes, names, strict=True):
        b = data["branches"][name]
        y = b["sorted_shares"]
        ax.axhspan(b["null_q05"], b["null_q95"], color="0.85", label="null 5-95%")
        ax.axhline(b["null_median"], color="0.5", lw=0.8, ls="--", label="null median")
        ax.plot(range(len(y)), y, lw=1.2)
        ax.set_title(f"{layer} {name}")
        ax.set_xlabel("features (sorted)")
    axes[0].set_ylabel(
        {"pos": "||relu(d[b])|| / ||relu(d)||", "norm": "||d[b]|| / ||d||", "sq": "||d[b]||² / ||d||²"}[data["kind"]]
    )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
