"""All methods side by side for one downstream feature, over many upstream features.

Rows of a :class:`PairTable` are (upstream i, downstream j) pairs with every
method's value, so that rank correlations and sign disagreements are computed
on exactly the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.layers import tf_same_pad
from .attribution import Sites, ablation_effects, feature_maps, gradient_x_activation
from .validate import sign_disagreements, spearman
from .weights import WeightCircuit

#: Columns of a pair table besides the ids.
METHODS = ("expanded", "exact_1x1", "kernel_prediction", "attribution", "ablation")


@dataclass
class PairTable:
    """Per-pair values of every method (numpy columns of equal length)."""

    methods: tuple[str, ...] = METHODS  #: without "exact_1x1" where a max pool lies between the layers
    up: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    error_attribution: dict[int, float] = field(default_factory=dict)  #: downstream feature -> mean error attr

    def extend(self, j: int, ups: list[int], cols: dict[str, Tensor]) -> None:
        self.up += ups
        self.down += [j] * len(ups)
        for m in self.methods:
            self.values.setdefault(m, []).extend(cols[m].tolist())

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.values.get(name, []), dtype=float)

    def per_feature_spearman(self, method: str) -> dict:
        """Spearman of ``method`` vs ablation within each downstream feature: median, IQR, count."""
        down, col, abl = np.asarray(self.down), self.column(method), self.column("ablation")
        rhos = [spearman(col[down == j], abl[down == j]) for j in sorted(set(self.down))]
        rhos = [r for r in rhos if np.isfinite(r)]
        if not rhos:
            return {"median": float("nan"), "iqr": [float("nan")] * 2, "features": 0}
        q25, med, q75 = np.percentile(rhos, [25, 50, 75]).tolist()
        return {"median": med, "iqr": [q25, q75], "features": len(rhos)}

    def summary(self) -> dict:
        """Spearman of each method against ablation, and sign disagreements of expanded vs ablation."""
        abl = self.column("ablation")
        compared = [m for m in self.methods if m != "ablation"]
        flagged = sign_disagreements(self.column("expanded"), abl)
        worst = flagged[np.argsort(-np.abs(abl[flagged]))][:20]
        return {
            "pairs": len(self.up),
            "downstream_features": sorted(set(self.down)),
            "spearman_vs_ablation": {m: self.per_feature_spearman(m)["median"] for m in compared},
            "spearman_vs_ablation_per_feature": {m: self.per_feature_spearman(m) for m in compared},
            "spearman_vs_ablation_pooled": {m: spearman(self.column(m), abl) for m in compared},
            "spearman_note": "median over downstream features of the within-feature Spearman (IQR beside it); the "
            "pooled value mixes features whose weights and ablations both scale with their encoder norm, so it "
            "is flattered and shown only for reference",
            "spearman_expanded_vs_attribution": spearman(self.column("expanded"), self.column("attribution")),
            "sign_disagreements_expanded_vs_ablation": {
                "count": len(flagged),
                "share": len(flagged) / max(len(self.up), 1),
                "worst": [
                    {
                        "up": self.up[k],
                        "down": self.down[k],
                        "expanded": self.values["expanded"][k],
                        "ablation": self.values["ablation"][k],
                    }
                    for k in worst.tolist()
                ],
            },
            "error_attribution": self.error_attribution,
        }

    def to_dict(self) -> dict:
        return {"up": self.up, "down": self.down, **{m: self.values.get(m, []) for m in self.methods}}


def kernel_prediction(circuit: WeightCircuit, j: int, sites: Sites, z: Tensor, ups: list[int]) -> Tensor:
    """(len(ups),) linearised prediction of the ablation: kernel (*) z_i around each site, mean over sites.

    ``z`` (n, m_a, H, W) upstream feature maps. The expanded kernel of (i, j) is
    correlated with i's actual activation map at the site's position. Equal to
    the linearised chain run on the real map (tested), except within 2 units of
    the top/left border after a stride-2 pool on an even-sized map (there the
    block's zero padding stands for pool windows that would overlap the map).
    """
    all_kernels, (cy, cx) = circuit.feature_kernels(j)
    kernels = all_kernels[ups]  # (u, h, w)
    h, w = kernels.shape[-2:]
    s = circuit.lin.chain.stride
    # a stride-2 SAME pool window of output k is centred on input 2k + 1 - pad_before (pad depends on parity)
    oy = 0 if s == 1 else 1 - tf_same_pad(z.shape[-2], 3, 2)[0]
    ox = 0 if s == 1 else 1 - tf_same_pad(z.shape[-1], 3, 2)[0]
    zp = F.pad(z[:, ups], (w, w, h, h))  # (n, u, H+2h, W+2w): zeros outside the map
    preds = torch.zeros(len(ups))
    for n in range(z.shape[0]):
        y0 = int(sites.pos[n, 0]) * s + oy - cy + h
        x0 = int(sites.pos[n, 1]) * s + ox - cx + w
        preds += (zp[n, :, y0 : y0 + h, x0 : x0 + w] * kernels).sum((1, 2))
    return preds / max(z.shape[0], 1)


def compare_feature(circuit: WeightCircuit, sites: Sites, max_candidates: int = 64, batch_size: int = 64) -> tuple:
    """Every method for downstream feature ``sites.feature`` against the upstream features active at its sites.

    Candidates: upstream features active anywhere in the sites' maps, the
    ``max_candidates`` largest by |attribution| (ablating an inactive feature
    changes nothing). Returns (candidate list, {method: (u,) tensor}, attribution).
    """
    model, chain, up, down = circuit.model, circuit.lin.chain, circuit.up, circuit.down
    j = sites.feature
    attr = gradient_x_activation(model, chain, up, down, sites)
    z = feature_maps(up, sites.acts)
    active = torch.nonzero(z.amax((0, 2, 3)) > 0).flatten()
    order = attr.mean[active].abs().argsort(descending=True)[:max_candidates]
    ups = active[order].tolist()
    cols = {
        "expanded": circuit.rows([j], "expanded")[0, ups],
        "kernel_prediction": kernel_prediction(circuit, j, sites, z, ups),
        "attribution": attr.mean[ups],
        "ablation": ablation_effects(model, chain, up, down, sites, ups, batch_size).mean(1),
    }
    if chain.exact_1x1:  # with a max pool between, the 1x1 path is not a circuit: no exact_1x1 at all
        cols["exact_1x1"] = circuit.rows([j], "exact_1x1")[0, ups]
    return ups, cols, attr


def plot_agreement(table: PairTable, path, title: str = ""):
    """Rank-vs-rank scatter of each method against measured ablation, with Spearman's rho; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .validate import rankdata

    abl = table.column("ablation")
    methods = ("expanded", "kernel_prediction", "attribution")
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 4))
    for ax, m in zip(axes, methods, strict=True):
        col = table.column(m)
        if len(col) >= 2:
            ax.scatter(rankdata(col), rankdata(abl), s=6, alpha=0.5)
        ax.set_xlabel(f"rank of {m}")
        ax.set_ylabel("rank of measured ablation effect")
        rho = table.per_feature_spearman(m)["median"] if len(col) else float("nan")
        ax.set_title(f"{m}: median per-feature Spearman {rho:.2f} (n={len(col)})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
