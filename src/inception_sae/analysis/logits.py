"""Features as facets of output classes (Gorton 2024, mixed5b).

After mixed5b come a global average pool and the FC layer, both linear, so a
mixed5b direction ``d`` added with strength ``a`` at every position changes the
logits by exactly ``a W_fc d``: the direct effect is exact. For earlier layers
the rest of the network is not linear; we report its linearisation at the
dataset's mean activation map: ``G[c] = sum_{y,x} d logit_c / d act[:, y, x]``
and effect ``G d`` (approximate, labelled so).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

LABELLED = slice(1, 1001)  #: inception5h's labelled outputs (0 is a dummy, 1001-1007 unlabelled)


def direct_logit_effect(fc_weight: Tensor, W_dec: Tensor) -> Tensor:
    """Exact mixed5b effect: (m, 1008) = W_dec (m, 1024) @ W_fc^T (1024, 1008)."""
    return W_dec.float() @ fc_weight.float().T


def logit_gradient(model, layer: str, mean_act: Tensor, chunk: int = 64) -> Tensor:
    """(1008, C): gradient of each logit wrt the layer at ``mean_act`` (C, H, W), summed over positions.

    Column c is the directional derivative of the logits along "channel c raised at every position", so forward
    mode gives the whole matrix in C passes (528 at mixed4d) instead of one backward pass per logit (1,008).
    """
    from torch.func import jvp

    C, H, W = mean_act.shape
    base = mean_act.detach()
    cols = []
    for s in range(0, C, chunk):
        ch = torch.arange(s, min(s + chunk, C), device=base.device)
        tangent = torch.zeros(len(ch), C, H, W, device=base.device, dtype=base.dtype)
        tangent[torch.arange(len(ch), device=base.device), ch] = 1.0
        point = base.unsqueeze(0).expand(len(ch), C, H, W).contiguous()
        with torch.no_grad(), warnings.catch_warnings():  # torch's own forward-mode decompositions use jit.script
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            dlogits = jvp(lambda a: model.forward_from(layer, a), (point,), (tangent,))[1]
        cols.append(dlogits)  # (b, 1008): row j is the derivative along channel ch[j]
    return torch.cat(cols).T.contiguous()


def logit_effect(model, layer: str, W_dec: Tensor, mean_act: Tensor | None) -> tuple[Tensor, str]:
    """(m, 1008) effect per unit of feature activation at every position, and its kind."""
    if layer == "mixed5b":
        return direct_logit_effect(model.fc.weight.detach(), W_dec), "exact (W_fc · d, mixed5b)"
    if mean_act is None:
        raise ValueError("the linearised logit effect needs the mean activation map")
    G = logit_gradient(model, layer, mean_act)  # (1008, C)
    return W_dec.float() @ G.T, "approximate (gradient of logits at the mean activation map)"


def top_classes(effect: Tensor, names, n: int = 10) -> tuple[list[dict], list[dict]]:
    """Top and bottom labelled classes of one feature's effect row (1008,)."""
    e = effect[LABELLED]
    up, down = e.topk(n), (-e).topk(n)
    fmt = lambda vals, idx, sign: [  # noqa: E731
        {"index": int(i) + 1, "name": names[int(i) + 1], "weight": sign * float(v)}
        for v, i in zip(vals, idx, strict=True)
    ]
    return fmt(up.values, up.indices, 1.0), fmt(down.values, down.indices, -1.0)


def class_top_features(effect: Tensor, names, n: int = 10) -> list[dict]:
    """For each labelled class: its ``n`` features with the largest effect."""
    e = effect[:, LABELLED].T  # (1000, m)
    vals, idx = e.topk(min(n, e.shape[1]), dim=1)
    return [
        {
            "index": c + 1,
            "name": names[c + 1],
            "features": [{"id": int(i), "weight": float(v)} for v, i in zip(vr, ir, strict=True)],
        }
        for c, (vr, ir) in enumerate(zip(vals, idx, strict=True))
    ]
