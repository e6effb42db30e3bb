"""One-to-one and best matches between two SAEs' features by decoder cosine (used by ``compare`` and by the
quality panel's seed stability).

``cos(d_i^A, d_j^B)`` of the unit decoder rows. Each feature's best match in the other SAE, and a one-to-one
assignment that maximises the summed cosine (the Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`, where SciPy is installed and the matrix is small enough; else a
greedy assignment over each row's top candidates).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError

#: Largest side for which the exact Hungarian assignment is used (O(n^3) time, n^2 memory).
HUNGARIAN_MAX = 4096
#: Candidates per row for the greedy one-to-one assignment of larger matrices.
GREEDY_CANDIDATES = 16


class BestMatch(NamedTuple):
    """Each row's best column in a similarity matrix."""

    #: (n,) column of the best match (a field that shadows tuple.index, which is never called on a match)
    index: Tensor  # type: ignore[assignment]
    value: Tensor  #: (n,) its similarity


class Assignment(NamedTuple):
    """A one-to-one matching (unmatched rows get -1 and value NaN)."""

    #: (n,) matched column or -1 (a field that shadows tuple.index, which is never called on a match)
    index: Tensor  # type: ignore[assignment]
    value: Tensor  #: (n,) similarity of the matched pair
    method: str  #: "hungarian" or "greedy"


def unit_rows(W: Tensor) -> Tensor:
    """Rows scaled to unit norm (zero rows stay zero)."""
    W = W.detach().float().cpu()
    return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)


def decoder_cosine(Wa: Tensor, Wb: Tensor) -> Tensor:
    """(ma, mb) cosine of every pair of decoder rows of ``Wa`` (ma, d) and ``Wb`` (mb, d)."""
    if Wa.shape[1] != Wb.shape[1]:
        raise UserError(f"decoder rows differ in length ({Wa.shape[1]} vs {Wb.shape[1]}): not the same layer")
    return unit_rows(Wa) @ unit_rows(Wb).T


def best_matches(sim: Tensor) -> tuple[BestMatch, BestMatch]:
    """Best match of every row (A -> B) and every column (B -> A) of ``sim``."""
    va, ia = sim.max(dim=1)
    vb, ib = sim.max(dim=0)
    return BestMatch(ia, va), BestMatch(ib, vb)


def one_to_one(sim: Tensor, hungarian_max: int = HUNGARIAN_MAX) -> Assignment:
    """A one-to-one assignment of rows to columns maximising the total similarity."""
    n, m = sim.shape
    s = torch.nan_to_num(sim.float(), nan=-1.0)
    if max(n, m) <= hungarian_max:
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError:
            pass
        else:
            rows, cols = linear_sum_assignment(s.numpy(), maximize=True)
            index = torch.full((n,), -1, dtype=torch.long)
            index[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
            return Assignment(index, matched_values(sim, index), "hungarian")
    return Assignment(*_greedy(s), "greedy")

    """Each row's similarity to its matched column (``index``; -1: unmatched, NaN)."""


def matched_values(sim: Tensor, index: Tensor) -> Tensor:
    ok = index >= 0
    out = torch.full((sim.shape[0],), float("nan"))
    out[ok] = sim[ok.nonzero().squeeze(1), index[ok]].float()
    return out


def _greedy(s: Tensor, candidates: int = GREEDY_CANDIDATES) -> tuple[Tensor, Tensor]:
    """Take pairs in decreasing similarity among each row's top candidates, skipping used columns."""
    n, m = s.shape
    c = min(candidates, m)
    val, col = s.topk(c, dim=1)
    order = np.argsort(-val.flatten().numpy(), kind="stable")
    rows_flat, cols_flat = np.repeat(np.arange(n), c)[order], col.flatten().numpy()[order]
    index = np.full(n, -1, dtype=np.int64)
    used = np.zeros(m, dtype=bool)
    for r, j in zip(rows_flat.tolist(), cols_flat.tolist(), strict=True):
        if index[r] < 0 and not used[j]:
            index[r], used[j] = j, True
    idx = torch.from_numpy(index)
    return idx, matched_values(s, idx)
