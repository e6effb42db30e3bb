"""Branch specialization of SAE features (Bozoukov 2025, Figs 5-10): shares, the branch test, THE dominant branch.

A feature's decoder row ``d_i`` (d,) splits into the four branch slices of the block. For an untied SAE
these are rows of the decoder (what the feature writes); for a tied one encoder and decoder coincide.
Three shares per branch:

- ``pos``:  ``||relu(d_i[b])|| / ||relu(d_i)||`` (the paper's notebooks compute this; the headline),
- ``norm``: ``||d_i[b]|| / ||d_i||`` (the plain norm share; the paper's text speaks of "its total norm"),
- ``sq``:   ``||d_i[b]||^2 / ||d_i||^2`` (sums to 1 over branches; descriptive only).

``pos`` and ``norm`` are each tested (:mod:`.branch_null`: per-row standardisation in data units, the
layer's empirical null, Benjamini-Hochberg). The ONE definition of a feature's dominant branch, used by the
analysis, the circuits, compare, the dashboard and every figure, is :func:`dominant_branches`: the most
significant branch of the ``pos`` test if its q <= 0.01, else ``"none"``; ``dominant_branch_norm`` is the
same rule on the ``norm`` test, reported beside it so a reader sees where the two measures disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .branch_null import KINDS as TESTED
from .branch_null import LEVEL, NULL_TEXT, BranchTest, branch_test, data_units

KINDS = ("pos", "norm", "sq")
NONE = "none"  #: dominant branch of a feature with no branch significant at q <= LEVEL
SHARE_LABELS = {"pos": "||relu(d[b])|| / ||relu(d)||", "norm": "||d[b]|| / ||d||", "sq": "||d[b]||² / ||d||²"}
UNITS = {True: "channel RMS floored at the median live RMS (silent channels left out)", False: "raw (scale 1)"}


class BranchStats(NamedTuple):
    """Shares, the branch tests of the ``pos`` and ``norm`` shares, and the dominant branch of every feature."""

    names: tuple[str, ...]  #: branch names in concat order
    shares: dict[str, Tensor]  #: kind -> (m, nb) shares
    tests: dict[str, BranchTest]  #: "pos" (headline) and "norm" -> the test of that share
    largest: Tensor  #: (m,) branch index with the largest raw ``pos`` share
    scale: Tensor  #: (d,) channel scale of the test's data units
    live: Tensor  #: (d,) channels in the test (RMS > 0)
    data_units: bool  #: True: channel RMS units; False: raw units (no activations were given)

    @property
    def z(self) -> Tensor:
        return self.tests["pos"].z

    @property
    def p(self) -> Tensor:
        return self.tests["pos"].p

    @property
    def q(self) -> Tensor:
        return self.tests["pos"].q

    @property
    def dominant(self) -> Tensor:
        return self.tests["pos"].dominant

    def dominant_names(self, kind: str = "pos") -> list[str]:
        """Dominant branch name per feature, ``"none"`` where no branch is significant."""
        return [self.names[i] if i >= 0 else NONE for i in self.tests[kind].dominant.tolist()]

    def units_text(self) -> str:
        return UNITS[self.data_units]

    def fdr_counts(self, kind: str = "pos", level: float = LEVEL) -> dict[str, int]:
        """Branch -> features with q <= level in that branch."""
        q = self.tests[kind].q
        return {b: int((q[:, j] <= level).sum()) for j, b in enumerate(self.names)}

    def dominant_counts(self, kind: str = "pos") -> dict[str, int]:
        names = self.dominant_names(kind)
        return {b: names.count(b) for b in (*self.names, NONE)}

    def null_dict(self) -> dict:
        """The null, its units and its fitted location/spread per branch and kind (for branches.json)."""
        return {
            "method": NULL_TEXT, "units": self.units_text(), "level": LEVEL,
            "live_channels": int(self.live.sum()), "channels": int(self.live.numel()),
            "fit": {kind: {b: {"location": float(t.location[j]), "spread": float(t.spread[j])}
                           for j, b in enumerate(self.names)} for kind, t in self.tests.items()},
            "spread_note": "robust spread of the per-row statistic below its median; ~1 when the per-row "
                           "standardisation fits this layer, well above 1 (say 1.5) makes the calls liberal",
        }  # fmt: skip


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


def branch_stats(
    W_dec: Tensor, slices: Sequence[tuple[int, int]], names: Sequence[str], rms: Tensor | None = None
) -> BranchStats:
    """Shares and tests of decoder rows ``W_dec`` (m, d); ``rms`` (d,): each channel's RMS activation.

    Without ``rms`` the test runs in raw units (say so wherever its labels are shown).
    """
    W = W_dec.detach().float().cpu()
    scale, live = data_units(rms, W.shape[1])
    obs = branch_shares(W, slices)
    tests = {kind: branch_test(W, slices, scale, live, kind) for kind in TESTED}
    return BranchStats(tuple(names), obs, tests, obs["pos"].argmax(1), scale, live, rms is not None)


def layer_branches(layer: str | None):
    """The branches of ``layer`` (empty for layers that are not inception blocks or unknown names)."""
    from ..models.layers import layer_info

    try:
        return layer_info(layer).branches if layer else ()
    except KeyError:
        return ()


def labels_from_analysis(folder: Path, m: int, kind: str = "pos") -> list[str]:
    """``dominant_branch`` (``kind`` "norm": ``dominant_branch_norm``) of features 0..m-1 of an analysis folder."""
    from ..errors import UserError
    from ..fsio import read_json

    feats = Path(folder) / "features"
    if not feats.is_dir():
        raise UserError(f"{folder} is not an analysis folder: features/ is missing")
    key = "dominant_branch" if kind == "pos" else f"dominant_branch_{kind}"
    return [str(read_json(feats / f"{i}.json", {}).get(key) or NONE) for i in range(m)]


def dominant_branches(
    W_dec: Tensor, layer: str | None, rms: Tensor | None = None, analysis: Path | None = None, kind: str = "pos"
) -> list[str]:
    """THE dominant branch of every feature: the most significant branch with q <= 0.01, else "none".

    With ``analysis`` (the layer's analysis folder) its labels are read, so every stage shows the very same
    label; otherwise they are computed by the same rule from the decoder rows and ``rms``, the channels' RMS
    activation on the stage's own images (None: raw units). Layers without branches: every feature "none".
    """
    m = W_dec.shape[0]
    if analysis is not None:
        return labels_from_analysis(analysis, m, kind)
    branches = layer_branches(layer)
    if not branches:
        return [NONE] * m
    stats = branch_stats(W_dec, [b.slice for b in branches], [b.name for b in branches], rms)
    return stats.dominant_names(kind)


def label_source(analysis: Path | None, rms: Tensor | None, images: str = "the stage's images") -> str:
    """Where a stage's dominant branches come from, in words (for its JSON output)."""
    if analysis is not None:
        return f"dominant_branch of {analysis}/features"
    units = f"channel RMS on {images}" if rms is not None else "raw units (no images, no analysis folder)"
    return f"analysis.branches.dominant_branches of the decoder rows (q <= 0.01, else none; units: {units})"


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


def specialised_table(stats: BranchStats, top: int = 10, kind: str = "pos") -> dict[str, list[dict]]:
    """Branch -> the ``top`` most significant features in it (largest z) under the ``kind`` test."""
    t = stats.tests[kind]
    table = {}
    for j, name in enumerate(stats.names):
        order = np.argsort(-t.z[:, j].numpy(), kind="stable")[:top].tolist()
        table[name] = [
            {"id": f, "share": float(stats.shares[kind][f, j]), "z": float(t.z[f, j]),
             "p": float(t.p[f, j]), "q": float(t.q[f, j])}
            for f in order
        ]  # fmt: skip
    return table


def figure_data(stats: BranchStats, kind: str = "pos") -> dict:
    """Per branch: sorted shares (descending) and the 5/50/95% band of the typical features' shares.

    Typical features of branch b: those the ``kind`` test does not call specialised in b (q > 0.01); for the
    ``sq`` share (not tested) those of the ``pos`` test.
    """
    t = stats.tests.get(kind, stats.tests["pos"])
    qs = torch.tensor([0.05, 0.5, 0.95])
    out: dict[str, Any] = {
        "kind": kind, "band": "5-95% of the shares of the features not specialised in the branch (q > 0.01)",
        "branches": {}}  # fmt: skip
    for j, name in enumerate(stats.names):
        col = stats.shares[kind][:, j]
        typical = col[t.q[:, j] > LEVEL]
        nq = torch.quantile(typical if typical.numel() else col, qs).tolist() if col.numel() else [0.0, 0.0, 0.0]
        out["branches"][name] = {
            "sorted_shares": col.sort(descending=True).values.tolist(),
            "null_q05": nq[0], "null_median": nq[1], "null_q95": nq[2],
            "specialised": int((t.q[:, j] <= LEVEL).sum()),
        }  # fmt: skip
    return out
