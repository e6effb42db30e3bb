"""Branch specialization of SAE features (Bozoukov 2025, Figs 5-10) with a null model.

A feature's decoder vector ``d_i`` (d,) splits into the four branch slices of the
block. Three shares per branch:

- ``pos``:  ``||relu(d_i[b])|| / ||relu(d_i)||`` (the paper's notebooks; its figures use this),
- ``norm``: ``||d_i[b]|| / ||d_i||``,
- ``sq``:   ``||d_i[b]||^2 / ||d_i||^2`` (sums to 1 over branches).

A random direction's share grows with the branch's channel count and with its
channels' activation scale, so every share is compared with a null: random
directions ``r_c = s_c g_c`` (g ~ N(0, 1)), where ``s_c`` is channel c's RMS
activation (or 1: isotropic), i.e. directions drawn like a decoder row learned
in raw activation units. The p-value is the one-sided empirical tail
``(1 + #{null >= obs}) / (n_null + 1)`` (floor ``1 / (n_null + 1)``) and the
z-score is ``(obs - mean_null) / std_null``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

KINDS = ("pos", "norm", "sq")


class BranchStats(NamedTuple):
    """Shares, null comparison and dominant branch of every feature."""

    names: tuple[str, ...]  #: branch names in concat order
    shares: dict[str, Tensor]  #: kind -> (m, nb) shares
    z: dict[str, Tensor]  #: kind -> (m, nb) z-scores against the null
    p: dict[str, Tensor]  #: kind -> (m, nb) one-sided empirical p-values
    null: dict[str, Tensor]  #: kind -> (n_null, nb) null shares
    dominant: Tensor  #: (m,) branch index with the largest z of the ``pos`` share
    largest: Tensor  #: (m,) branch index with the largest raw ``pos`` share


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


def null_directions(scale: Tensor, n: int, seed: int = 0) -> Tensor:
    """(n, d) random directions ``s_c g_c`` (g ~ N(0, 1)), scale (d,) per-channel."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, scale.shape[0], generator=g) * scale.float().view(1, -1)


def branch_stats(
    W_dec: Tensor, slices: Sequence[tuple[int, int]], names: Sequence[str], scale: Tensor | None = None,
    n_null: int = 10000, seed: int = 0,
) -> BranchStats:  # fmt: skip
    """Shares of decoder rows ``W_dec`` (m, d) with z-scores and p-values against the null."""
    d = W_dec.shape[1]
    scale = torch.ones(d) if scale is None else scale
    obs = branch_shares(W_dec, slices)
    null = branch_shares(null_directions(scale, n_null, seed), slices)
    z, p = {}, {}
    for k in KINDS:
        mu, sd = null[k].mean(0), null[k].std(0).clamp_min(1e-12)
        z[k] = (obs[k] - mu) / sd
        # (m, nb): count null samples at least as large, per branch, via sorted search
        srt = null[k].sort(0).values  # (n, nb)
        ge = torch.stack(
            [
                n_null - torch.searchsorted(srt[:, j].contiguous(), obs[k][:, j].contiguous())
                for j in range(len(slices))
            ],
            1,
        )
        p[k] = (1 + ge.float()) / (n_null + 1)
    return BranchStats(tuple(names), obs, z, p, null, z["pos"].argmax(1), obs["pos"].argmax(1))


def dominance_null(stats: BranchStats) -> Tensor:
    """(nb,) probability that a null direction's largest-z ``pos`` branch is each branch."""
    mu, sd = stats.null["pos"].mean(0), stats.null["pos"].std(0).clamp_min(1e-12)
    dom = ((stats.null["pos"] - mu) / sd).argmax(1)
    return torch.bincount(dom, minlength=len(stats.names)).float() / dom.shape[0]


def family_chance(stats: BranchStats, features: Sequence[int]) -> dict:
    """Voss et al.'s test: chance that all ``features`` share one dominant branch under the null.

    Returns the common branch (or None) and ``p = sum_b q_b^n`` (any branch) with
    ``q_b`` the null probability of branch b being dominant.
    """
    dom = stats.dominant[list(features)]
    q = dominance_null(stats)
    common = stats.names[int(dom[0])] if bool((dom == dom[0]).all()) else None
    return {"branch": common, "n": len(features), "p_all_same": float((q ** len(features)).sum()) if common else None}


def specialised_table(stats: BranchStats, top: int = 10) -> dict[str, list[dict]]:
    """Branch -> the ``top`` features with the largest ``pos`` z-score in it."""
    table = {}
    for j, name in enumerate(stats.names):
        zs = stats.z["pos"][:, j]
        order = zs.argsort(descending=True)[:top].tolist()
        table[name] = [
            {"id": f, "share": float(stats.shares["pos"][f, j]), "z": float(zs[f]), "p": float(stats.p["pos"][f, j])}
            for f in order
        ]
    return table


def figure_data(stats: BranchStats, kind: str = "pos") -> dict:
    """Per branch: sorted shares (descending) and the null's 5/50/95% quantiles."""
    q = torch.tensor([0.05, 0.5, 0.95])
    out = {"kind": kind, "branches": {}}
    for j, name in enumerate(stats.names):
        nq = torch.quantile(stats.null[kind][:, j], q).tolist()
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
