"""Weight-based connections between SAE features of consecutive layers.

For upstream feature i (written with its decoder row ``d_i``) and downstream feature j, a weight is
``r_j . M . d_i`` with ``M`` a linear map of the path between the layers and ``r_j`` how j is read:

* ``weight`` (the headline edge; Gorton's ``W_dec^(l) W_inception W_dec^(l-1)``): ``r_j = d_j``, the
  downstream DECODER row, ``M = J`` the summed Jacobian of the linearised block ("expanded weights": ReLU
  -> identity, max pool -> average pool). How much of feature j's direction the block writes per unit of i.
* ``weight_1x1``: the same with ``M = W_1x1``, the 1x1 branch's conv weights in its concat slice (Gorton's
  formula read through the one branch where it is linear). Exact for the 1x1 branch's PRE-ReLU output when
  only the block lies between the layers (no max pool); after the branch's ReLU it is not.
* ``encoder_expanded`` / ``encoder_1x1``: ``r_j = e_j``, the downstream ENCODER column: what j's encoder
  reads (the quantity ablation measures). For a tied SAE (``tie: full``) encoder and decoder coincide and so
  do the two readings; for ``tie: init`` they differ.

``expanded`` kernels: the Jacobian at the downstream centre is a spatial kernel; its sum over positions is
the scalar weight (the effect of i written uniformly around the unit). All pairs are scanned in chunks of
downstream features so that the (m_b, m_a) matrix never exists in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..models.inception_v1 import InceptionV1
from ..sae.view import SAETensors
from .linearize import Linearised, crop_box, one_by_one_matrix

#: Weight kind -> (path map, downstream read). ``weight`` is the headline edge of graphs and neighbours.
KINDS = {
    "weight": ("expanded", "decoder"),
    "weight_1x1": ("1x1", "decoder"),
    "encoder_expanded": ("expanded", "encoder"),
    "encoder_1x1": ("1x1", "encoder"),
}
HEADLINE = "weight"


@dataclass(frozen=True)
class Neighbours:
    """Top-k neighbours per feature, by |weight| (the sign is kept in ``weights``)."""

    up_index: Tensor  #: (m_b, k) upstream features of each downstream feature
    up_weight: Tensor  #: (m_b, k)
    down_index: Tensor  #: (m_a, k) downstream features of each upstream feature
    down_weight: Tensor  #: (m_a, k)


@dataclass(frozen=True)
class PairKernel:
    """Expanded weight of one pair as a spatial kernel on the upstream grid."""

    kernel: Tensor  #: (h, w); [y, x] = effect of i at that upstream position on j at the centre
    centre: tuple[int, int]  #: (y, x) of the downstream unit's own position inside ``kernel``
    scalar: float  #: kernel.sum()


class WeightCircuit:
    """Feature-to-feature weights between ``up`` and ``down`` SAEs through ``lin``'s chain."""

    def __init__(
        self, model: InceptionV1, lin: Linearised, up: SAETensors, down: SAETensors, chunk: int = 1024
    ) -> None:
        self.model, self.lin, self.up, self.down, self.chunk = model, lin, up, down, chunk
        self._written: dict[str, Tensor] = {}

    def _matrix(self, path: str) -> Tensor:
        """(d_out, d_in) summed linear map of ``path`` ("1x1" or "expanded")."""
        if path == "1x1":
            return one_by_one_matrix(self.model, self.lin.chain)
        if path == "expanded":
            return self.lin.summed
        raise ValueError(f"unknown path {path!r}")

    def written(self, path: str) -> Tensor:
        """(d_out, m_a): every upstream decoder row pushed through the summed map of ``path``."""
        if path not in self._written:
            self._written[path] = self._matrix(path) @ self.up.W_dec.T
        return self._written[path]

    def read(self, features: Tensor | list[int], how: str) -> Tensor:
        """(len(features), d_out): how the downstream features are read ("decoder" rows or "encoder" columns)."""
        return self.down.W_dec[features] if how == "decoder" else self.down.W_enc[:, features].T

    def rows(self, features: Tensor | list[int], kind: str = HEADLINE) -> Tensor:
        """(len(features), m_a): weights of ``kind`` from every upstream feature to the given downstream ones."""
        if kind not in KINDS:
            raise ValueError(f"unknown weight kind {kind!r}; one of {', '.join(KINDS)}")
        path, how = KINDS[kind]
        return self.read(features, how) @ self.written(path)

    def pair(self, i: int, j: int, kind: str = HEADLINE) -> float:
        """Scalar weight of ``kind`` from upstream feature i to downstream feature j."""
        return float(self.rows([j], kind)[0, i])

    def feature_kernels(self, j: int, how: str = "decoder") -> tuple[Tensor, tuple[int, int]]:
        """Expanded kernels from every upstream feature to downstream feature j: ((m_a, h, w), centre (y, x)).

        ``how``: j read by its decoder row (Gorton's weight, the default) or its encoder column (what its
        encoder reads). Cropped to the support of the linearised path; ``centre`` is where the downstream
        unit itself sits on the upstream grid inside the crop.
        """
        grad = self.lin.kernels(self.read([j], how))[0]  # (d_in, S, S)
        ys, xs = crop_box(grad)
        c = self.lin.chain.centre
        return torch.einsum("md,dhw->mhw", self.up.W_dec, grad[:, ys, xs]), (c - ys.start, c - xs.start)

    def kernel(self, i: int, j: int) -> PairKernel:
        """The expanded weight of (i, j) as a spatial kernel, cropped to its support."""
        kernels, centre = self.feature_kernels(j)
        return PairKernel(kernels[i], centre, float(kernels[i].sum()))

    def neighbours(self, top: int = 10, kind: str = HEADLINE) -> Neighbours:
        """Top-``top`` upstream neighbours of every downstream feature and vice versa, chunked."""
        m_a, m_b = self.up.m, self.down.m
        ka, kb = min(top, m_a), min(top, m_b)
        up_i, up_w = [], []
        best_v = torch.empty(0, m_a)
        best_i = torch.empty(0, m_a, dtype=torch.long)
        for start in range(0, m_b, self.chunk):
            rows = self.rows(torch.arange(start, min(start + self.chunk, m_b)), kind)  # (c, m_a)
            _, idx = rows.abs().topk(ka, dim=1)
            up_i.append(idx)
            up_w.append(rows.gather(1, idx))
            _, cidx = rows.abs().topk(min(kb, rows.shape[0]), dim=0)  # (<=kb, m_a)
            cand_v = torch.cat([best_v, rows.gather(0, cidx)])
            cand_i = torch.cat([best_i, cidx + start])
            _, keep = cand_v.abs().topk(min(kb, cand_v.shape[0]), dim=0)
            best_v, best_i = cand_v.gather(0, keep), cand_i.gather(0, keep)
        return Neighbours(torch.cat(up_i), torch.cat(up_w), best_i.T.contiguous(), best_v.T.contiguous())

    def top_partners(self, kind: str = HEADLINE) -> tuple[Tensor, Tensor]:
        """(m_b,) upstream feature with the largest positive weight into each downstream feature, and the weight."""
        idx, val = [], []
        for start in range(0, self.down.m, self.chunk):
            v, i = self.rows(torch.arange(start, min(start + self.chunk, self.down.m)), kind).max(1)
            idx.append(i)
            val.append(v)
        return torch.cat(idx), torch.cat(val)

    def strongest_pairs(self, n: int, kind: str = HEADLINE) -> tuple[Tensor, Tensor, Tensor]:
        """The ``n`` most positive (excitatory) pairs overall: (upstream, downstream, weight), chunked."""
        best_v, best_flat = torch.empty(0), torch.empty(0, dtype=torch.long)
        m_a = self.up.m
        for start in range(0, self.down.m, self.chunk):
            rows = self.rows(torch.arange(start, min(start + self.chunk, self.down.m)), kind).flatten()
            v, idx = rows.topk(min(n, rows.numel()))
            cand_v, cand_i = torch.cat([best_v, v]), torch.cat([best_flat, idx + start * m_a])
            best_v, keep = cand_v.topk(min(n, cand_v.numel()))
            best_flat = cand_i[keep]
        return best_flat % m_a, best_flat // m_a, best_v


def logit_weights(model: InceptionV1, sae: SAETensors) -> Tensor:
    """(1008, m): exact direct effect of each mixed5b feature on each logit.

    After mixed5b come a global mean and the FC layer, both linear, so a unit of
    feature i averaged over positions moves the logits by ``W_fc d_i`` (Gorton).
    """
    if sae.layer != "mixed5b":
        raise UserError(f"logit weights need a mixed5b SAE, got {sae.layer}")
    return model.fc.weight @ sae.W_dec.T


def class_circuit(
    model: InceptionV1, circuit: WeightCircuit, classes: list[int], top_b: int = 5, top_a: int = 5
) -> list[tuple[str, str, float, str]]:
    """class -> its top mixed5b features -> their top mixed5a features, as (source, target, weight, kind) edges.

    ``circuit`` connects a mixed5a SAE (upstream) to a mixed5b SAE (downstream).
    Edges point along the forward pass (upstream -> downstream -> class).
    """
    logits = logit_weights(model, circuit.down)  # (1008, m_b)
    edges: list[tuple[str, str, float, str]] = []
    for c in classes:
        w, feats = logits[c].topk(min(top_b, circuit.down.m))
        for wb, j in zip(w.tolist(), feats.tolist(), strict=True):
            edges.append((circuit.down.node(j), f"class/{c}", wb, "logit"))
            row = circuit.rows([j])[0]
            wa, ups = row.topk(min(top_a, circuit.up.m))
            edges += [
                (circuit.up.node(i), circuit.down.node(j), v, HEADLINE)
                for v, i in zip(wa.tolist(), ups.tolist(), strict=True)
            ]
    return edges
