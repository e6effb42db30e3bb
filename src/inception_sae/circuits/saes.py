"""Circuits' reading of an SAE's features: the dominant branch of each decoder row.

SAE folders are read by :meth:`inception_sae.sae.model.TopKSAE.load`; circuits work on
its frozen tensors (:class:`inception_sae.sae.view.SAETensors`).
"""

from __future__ import annotations

from torch import Tensor

from ..errors import UserError
from ..models.layers import layer_info


def dominant_branches(
    W_dec: Tensor, layer: str, scale: Tensor | None = None, n_max: int | None = None, seed: int = 0
) -> tuple[list[str], Tensor]:
    """The analysis's dominant branch per feature ("none" if no branch is significant), and the shares (m, 4).

    Same definition as ``analyze`` (:func:`inception_sae.analysis.branches.dominant_branches`):
    the most significant branch of the positive-part share under the permutation
    null, if its Benjamini-Hochberg q <= 0.01. ``scale`` is the null's per-channel
    scale (``null_channel_scale`` of the layer's ``branches.json``; None: 1).
    """
    from ..analysis import branches as br

    branches = layer_info(layer).branches
    if not branches:
        raise UserError(f"{layer} is not an inception block; it has no branches")
    slices, names = [b.slice for b in branches], [b.name for b in branches]
    stats = br.branch_stats(W_dec, slices, names, scale, n_max or br.N_MAX, seed)
    return stats.dominant_names(), stats.shares["pos"]
