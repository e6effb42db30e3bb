"""Weight-based connections between SAE features of consecutive layers.

For upstream feature i (written with its decoder row ``d_i``) and downstream
feature j (read with its encoder column ``e_j``):

* ``exact_1x1``: ``e_j^T M_1x1 d_i`` with ``M_1x1`` the 1x1 branch's conv weights
  in its concat slice (Gorton's ``W_dec^T W W_dec``, read exactly): the change of
  feature j's encoder pre-activation, restricted to the 1x1 slice, per unit of i.
* ``expanded``: ``e_j^T J(y, x) d_i`` with ``J`` the Jacobian of the linearised
  block at the downstream centre: a spatial kernel; its sum over positions is
  the scalar weight (the effect of i written uniformly around the unit).

All pairs are scanned in chunks of downstream features so that the (m_b, m_a)
matrix never exists in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from ..models.inception_v1 import InceptionV1
from ..sae.view import SAETensors
from .linearize import Linearised, crop_box, one_by_one_matrix


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

    def _matrix(self, kind: str) -> Tensor:
        """(d_out, d_in) summed linear map of ``kind`` ("exact_1x1" or "expanded")."""
        if kind == "exact_1x1":
            return one_by_one_matrix(self.model, self.lin.chain)
        if kind == "expanded":
            return self.lin.summed
        raise ValueError(f"unknown weight kind {kind!r}")

    def written(self, kind: str) -> Tensor:
        """(d_out, m_a): every upstream decoder row pushed through the summed map."""
        if kind not in self._written:
            self._written[kind] = self._matrix(kind) @ self.up.W_dec.T
        return self._written[kind]

    def rows(self, features: Tensor | list[int], kind: str = "expanded") -> Tensor:
        """(len(features), m_a): weights from every upstream feature to the given downstream ones."""
        return self.down.W_enc[:, features].T @ self.written(kind)

    def pair(self, i: int, j: int, kind: str = "expanded") -> float:
        """Scalar weight from upstream feature i to downstream feature j."""
        return float(self.down.W_enc[:, j] @ self.written(kind)[:, i])

    def feature_kernels(self, j: int) -> tuple[Tensor, tuple[int, int]]:
        """Kernels from every upstream feature to downstream feature j: ((m_a, h, w), centre (y, x)).

        Cropped to the support of the linearised path; ``centre`` is where the
        downstream unit itself sits on the upstream grid inside the crop.
        """
        grad = self.lin.kernels(self.down.W_enc[:, j].unsqueeze(0))[0]  # (d_in, S, S)
        ys, xs = crop_box(grad)
        c = self.lin.chain.centre
        return torch.einsum("md,dhw->mhw", self.up.W_dec, grad[:, ys, xs]), (c - ys.start, c - xs.start)

    def kernel(self, i: int, j: int) -> PairKernel:
        """The expanded weight of (i, j) as a spatial kernel, cropped to its support."""
        kernels, centre = self.feature_kernels(j)
        return PairKernel(kernels[i], centre, float(kernels[i].sum()))

    def neighbours(self, top: int = 10, kind: str = "expanded") -> Neighbours:
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

    def top_partners(self, kind: str = "expanded") -> tuple[Tensor, Tensor]:
        """(m_b,) upstream feature with the largest positive weight into each downstream feature, and the weight."""
        idx, val = [], []
        for start in range(0, self.down.m, self.chunk):
            v, i = self.rows(torch.arange(start, min(start + self.chunk, self.down.m)), kind).max(1)
            idx.append(i)
            val.append(v)
        return torch.cat(idx), torch.cat(val)

    def strongest_pairs(self, n: int, kind: str = "expanded") -> tuple[Tensor, Tensor, Tensor]:
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
                (circuit.up.node(i), circuit.down.node(j), v, "expanded")
                for v, i in zip(wa.tolist(), ups.tolist(), strict=True)
            ]
    return edges
