"""All methods side by side for one downstream feature, over many upstream features, next to baselines.

Rows of a :class:`PairTable` are (upstream i, downstream j) pairs with every method's value, so that rank
correlations are computed on exactly the same pairs. The measured effect is the ablation of i (its
decoder contribution removed at every position) on j's encoder pre-activation at j's sites.

Methods, by what they rest on:
- weights alone: ``weight``, ``weight_1x1`` (Gorton's decoder-decoder weights), ``encoder_expanded``,
  ``encoder_1x1`` (read with j's encoder: what ablation measures);
- weights and data: ``kernel_prediction`` (j's encoder-read expanded kernel correlated with i's activation
  map around each site);
- a first-order view of the ablation itself: ``attribution`` (gradient x activation). Not independent
  evidence: it agrees with ablation wherever the block is close to linear, whatever the weights mean.
Baselines on the same pairs: ``activation`` (no weights at all: i's activation summed over the window the
kernel covers around each site), ``kernel_shuffled`` (kernel prediction with the kernels of other
candidates), and each method with its values shuffled across the feature's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.layers import tf_same_pad
from .attribution import Sites, ablation_effects, feature_maps, gradient_x_activation
from .validate import bootstrap_median, sign_disagreements, spearman
from .weights import WeightCircuit

#: Methods whose value is compared with the measured ablation (the 1x1 ones only where nothing but the block
#: lies between the layers).
METHODS = ("weight", "weight_1x1", "encoder_expanded", "encoder_1x1", "kernel_prediction", "attribution")
BASELINES = ("activation", "kernel_shuffled")
GROUPS = {
    "weight": "weights", "weight_1x1": "weights", "encoder_expanded": "weights", "encoder_1x1": "weights",
    "kernel_prediction": "weights + data", "attribution": "first-order view of the ablation (not independent)",
}  # fmt: skip
#: Bootstrap resamples of the downstream features for the intervals.
BOOTSTRAP = 2000


@dataclass
class PairTable:
    """Per-pair values of every method and baseline (numpy columns of equal length)."""

    methods: tuple[str, ...] = METHODS  #: without the 1x1 ones where a max pool lies between the layers
    up: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    error_attribution: dict[int, float] = field(default_factory=dict)  #: downstream feature -> mean error attr

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.methods, *BASELINES, "ablation")

    def extend(self, j: int, ups: list[int], cols: dict[str, Tensor]) -> None:
        self.up += ups
        self.down += [j] * len(ups)
        for m in self.columns:
            self.values.setdefault(m, []).extend(cols[m].tolist())

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.values.get(name, []), dtype=float)

    def per_feature(self, values: np.ndarray) -> np.ndarray:
        """Spearman of ``values`` vs ablation within each downstream feature (NaN where undefined)."""
        down, abl = np.asarray(self.down), self.column("ablation")
        return np.array([spearman(values[down == j], abl[down == j]) for j in sorted(set(self.down))])

    def shuffled(self, values: np.ndarray, seed: int = 0) -> np.ndarray:
        """``values`` permuted across the candidates of each downstream feature (seeded)."""
        rng, down, out = np.random.default_rng(seed), np.asarray(self.down), values.copy()
        for j in sorted(set(self.down)):
            idx = np.flatnonzero(down == j)
            out[idx] = values[rng.permutation(idx)]
        return out

    def per_feature_spearman(self, method: str) -> dict:
        """Spearman of ``method`` vs ablation within each downstream feature: median, IQR, count."""
        rhos = self.per_feature(self.column(method))
        rhos = rhos[np.isfinite(rhos)]
        if not len(rhos):
            return {"median": float("nan"), "iqr": [float("nan")] * 2, "features": 0}
        q25, med, q75 = np.percentile(rhos, [25, 50, 75]).tolist()
        return {"median": med, "iqr": [q25, q75], "features": len(rhos)}

    def validation(self, seed: int = 0) -> dict:
        """Every method's per-feature Spearman vs ablation with a bootstrap interval over features, its baselines,
        and a verdict: does it beat the weight-free activation baseline on the same features?"""
        base = self.per_feature(self.column("activation"))
        out: dict = {}
        for name in (*self.methods, *BASELINES):
            rho = self.per_feature(self.column(name))
            shuf = self.per_feature(self.shuffled(self.column(name), seed))
            row = {"group": GROUPS.get(name, "baseline"), **bootstrap_median(rho, BOOTSTRAP, seed),
                   "shuffled": bootstrap_median(shuf, BOOTSTRAP, seed)}  # fmt: skip
            if name != "activation":
                diff = bootstrap_median(rho - base, BOOTSTRAP, seed)
                row["minus_activation"] = diff
                lo = diff["ci95"][0]
                row["beats_activation_baseline"] = None if lo is None else bool(lo > 0)
            out[name] = row
        return out

    def summary(self, seed: int = 0) -> dict:
        """Validation against ablation (with baselines and intervals) and sign disagreements."""
        abl = self.column("ablation")
        ref = "encoder_expanded"
        flagged = sign_disagreements(self.column(ref), abl)
        worst = flagged[np.argsort(-np.abs(abl[flagged]))][:20]
        val = self.validation(seed)
        return {
            "pairs": len(self.up),
            "downstream_features": sorted(set(self.down)),
            "validation": val,
            "verdicts": {m: verdict(m, val[m]) for m in self.methods},
            "spearman_vs_ablation": {m: val[m]["median"] for m in self.methods},
            "spearman_vs_ablation_pooled": {m: spearman(self.column(m), abl) for m in self.methods},
            "spearman_note": "per downstream feature, the Spearman of the method's values over its candidates "
            "against their measured ablation effects; median over features with a bootstrap 95% interval (features "
            "resampled); the pooled value mixes features whose weights and ablations both scale with their encoder "
            "norm, so it is flattered and shown only for reference",
            f"sign_disagreements_{ref}_vs_ablation": {
                "count": len(flagged),
                "share": len(flagged) / max(len(self.up), 1),
                "worst": [self.pair_dict(k, ref) for k in worst.tolist()],
            },
            "error_attribution": self.error_attribution,
        }

    def pair_dict(self, k: int, method: str) -> dict:
        """Pair ``k``: its ids, ``method``'s value and the measured ablation."""
        return {"up": self.up[k], "down": self.down[k], method: self.values[method][k],
                "ablation": self.values["ablation"][k]}  # fmt: skip

    def to_dict(self) -> dict:
        return {"up": self.up, "down": self.down, **{m: self.values.get(m, []) for m in self.columns}}


def verdict(method: str, row: dict) -> str:
    """One line: the method's median per-feature Spearman, its interval, and whether it beats the baseline."""
    ci = row["ci95"]
    if row["median"] is None or ci[0] is None:
        return f"{method}: not enough features to say"
    beats = row.get("beats_activation_baseline")
    said = "yes" if beats else "no"
    extra = " (a first-order view of the ablation, not independent evidence)" if method == "attribution" else ""
    return (f"{method}: median per-feature Spearman {row['median']:.2f} (95% CI {ci[0]:.2f} to {ci[1]:.2f}) over "
            f"{row['features']} features; beats the activation baseline: {said}{extra}")  # fmt: skip


def kernel_prediction(circuit: WeightCircuit, j: int, sites: Sites, z: Tensor, ups: list[int], seed: int = 0):
    """Linearised predictions of the ablation of each candidate, and two baselines on the same windows.

    ``z`` (n, m_a, H, W) upstream feature maps. The expanded kernel of (i, j), read with j's encoder, is
    correlated with i's actual activation map at the site's position, mean over sites. Equal to the
    linearised chain run on the real map (tested), except within 2 units of the top/left border after a
    stride-2 pool on an even-sized map (there the block's zero padding stands for pool windows that would
    overlap the map). Returns (prediction, activation baseline: i's activation summed over the same window,
    shuffled: the prediction with another candidate's kernel), each (len(ups),).
    """
    all_kernels, (cy, cx) = circuit.feature_kernels(j, "encoder")
    kernels = all_kernels[ups]  # (u, h, w)
    perm = torch.randperm(len(ups), generator=torch.Generator().manual_seed(seed + j))
    h, w = kernels.shape[-2:]
    s = circuit.lin.chain.stride
    # a stride-2 SAME pool window of output k is centred on input 2k + 1 - pad_before (pad depends on parity)
    oy = 0 if s == 1 else 1 - tf_same_pad(z.shape[-2], 3, 2)[0]
    ox = 0 if s == 1 else 1 - tf_same_pad(z.shape[-1], 3, 2)[0]
    zp = F.pad(z[:, ups], (w, w, h, h))  # (n, u, H+2h, W+2w): zeros outside the map
    preds, window, shuffled = torch.zeros(len(ups)), torch.zeros(len(ups)), torch.zeros(len(ups))
    for n in range(z.shape[0]):
        y0 = int(sites.pos[n, 0]) * s + oy - cy + h
        x0 = int(sites.pos[n, 1]) * s + ox - cx + w
        patch = zp[n, :, y0 : y0 + h, x0 : x0 + w]
        preds += (patch * kernels).sum((1, 2))
        shuffled += (patch * kernels[perm]).sum((1, 2))
        window += patch.sum((1, 2))
    n = max(z.shape[0], 1)
    return preds / n, window / n, shuffled / n


def compare_feature(circuit: WeightCircuit, sites: Sites, max_candidates: int = 64, batch_size: int = 64) -> tuple:
    """Every method and baseline for downstream feature ``sites.feature`` against the upstream features active
    at its sites.

    Candidates: upstream features active anywhere in the sites' maps, the ``max_candidates`` largest by
    |attribution| (ablating an inactive feature changes nothing). Returns (candidates, {column: (u,)}, attribution).
    """
    model, chain, up, down = circuit.model, circuit.lin.chain, circuit.up, circuit.down
    j = sites.feature
    attr = gradient_x_activation(model, chain, up, down, sites)
    z = feature_maps(up, sites.acts)
    active = torch.nonzero(z.amax((0, 2, 3)) > 0).flatten()
    order = attr.mean[active].abs().argsort(descending=True)[:max_candidates]
    ups = active[order].tolist()
    pred, window, shuffled = kernel_prediction(circuit, j, sites, z, ups)
    cols = {
        "kernel_prediction": pred, "activation": window, "kernel_shuffled": shuffled,
        "attribution": attr.mean[ups],
        "ablation": ablation_effects(model, chain, up, down, sites, ups, batch_size).mean(1),
    }  # fmt: skip
    kinds = ("weight", "encoder_expanded") + (("weight_1x1", "encoder_1x1") if chain.only_block else ())
    for kind in kinds:  # with a max pool between, the 1x1 path is not a circuit: no 1x1 columns at all
        cols[kind] = circuit.rows([j], kind)[0, ups]
    return ups, cols, attr


def plot_agreement(table: PairTable, path, title: str = ""):
    """Rank-vs-rank scatter of each method against measured ablation, with Spearman's rho; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .validate import rankdata

    abl = table.column("ablation")
    methods = ("weight", "encoder_expanded", "kernel_prediction", "activation")
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
