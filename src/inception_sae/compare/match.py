"""Matching the features of two SAEs: decoder cosine and activation correlation.

Two views of "is this the same feature":

- **decoder cosine** (same layer only): ``cos(d_i^A, d_j^B)`` of the unit decoder rows. Each
  feature's best match in the other SAE, and a one-to-one assignment that maximises the summed
  cosine (the Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`, where SciPy is
  installed and the matrix is small enough; else a greedy assignment over each row's top candidates).
- **activation correlation** (any two layers): Pearson correlation of the two features' codes over
  the same image positions (:class:`CorrelationAccumulator`). Its null pairs each image's codes of
  side A with the codes of *another* image of side B at the same positions (images shuffled), so a
  correlation above the null's best matches is more than the shared statistics of natural images.
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

    index: Tensor  #: (n,) column of the best match
    value: Tensor  #: (n,) its similarity


class Assignment(NamedTuple):
    """A one-to-one matching (unmatched rows get -1 and value NaN)."""

    index: Tensor  #: (n,) matched column or -1
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
            return Assignment(index, _values(sim, index), "hungarian")
    return Assignment(*_greedy(s), "greedy")


def _values(sim: Tensor, index: Tensor) -> Tensor:
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
    return idx, _values(s, idx)


class CorrelationAccumulator:
    """Streaming Pearson correlations between two code matrices on the same positions, with a null.

    Feed :meth:`add` the dense codes of the same positions on both sides, grouped by image:
    ``za`` (B, P, ma) and ``zb`` (B, P, mb). The null cross-product pairs image ``i`` of side A
    with image ``i + 1`` (cyclically, within the batch) of side B, so batches need two images.
    """

    def __init__(self, ma: int, mb: int) -> None:
        self.n = 0
        self.sa, self.saa = torch.zeros(ma, dtype=torch.float64), torch.zeros(ma, dtype=torch.float64)
        self.sb, self.sbb = torch.zeros(mb, dtype=torch.float64), torch.zeros(mb, dtype=torch.float64)
        self.fa, self.fb = torch.zeros(ma, dtype=torch.float64), torch.zeros(mb, dtype=torch.float64)
        self.sab = torch.zeros(ma, mb, dtype=torch.float64)
        self.sab_null = torch.zeros(ma, mb, dtype=torch.float64)
        self.channel_sq: dict[str, Tensor] = {}  #: layer -> sum of squared activations per channel
        self.channel_n: dict[str, int] = {}  #: layer -> positions summed

    def channel_rms(self, layer: str) -> Tensor | None:
        """(d,) RMS activation of each channel of ``layer`` over the positions seen, if recorded."""
        if not self.channel_n.get(layer):
            return None
        return (self.channel_sq[layer] / self.channel_n[layer]).sqrt().float()

    def add(self, za: Tensor, zb: Tensor) -> None:
        if za.shape[:2] != zb.shape[:2]:
            raise ValueError(f"codes cover different positions: {tuple(za.shape[:2])} vs {tuple(zb.shape[:2])}")
        if za.shape[0] < 2:
            raise ValueError("the shuffled-image null needs at least two images per batch")
        a, b = za.reshape(-1, za.shape[-1]).float(), zb.reshape(-1, zb.shape[-1]).float()
        b_null = zb.roll(1, dims=0).reshape(-1, zb.shape[-1]).float()
        self.n += a.shape[0]
        self.sa += a.sum(0).double()
        self.saa += a.pow(2).sum(0).double()
        self.fa += (a > 0).sum(0).double()
        self.sb += b.sum(0).double()
        self.sbb += b.pow(2).sum(0).double()
        self.fb += (b > 0).sum(0).double()
        cross_add(self.sab, a, b)
        cross_add(self.sab_null, a, b_null)

    def _corr(self, sab: Tensor, chunk: int = 1024) -> Tensor:
        n = max(self.n, 1)
        ma, mb = self.sa / n, self.sb / n
        va, vb = (self.saa / n - ma**2).clamp_min(0), (self.sbb / n - mb**2).clamp_min(0)
        sa, sb = va.sqrt(), vb.sqrt()
        out = torch.empty(sab.shape, dtype=torch.float32)
        for s in range(0, sab.shape[0], chunk):  # row blocks keep the float64 temporaries small
            e = min(s + chunk, sab.shape[0])
            cov = sab[s:e] / n - ma[s:e, None] * mb[None, :]
            r = (cov / (sa[s:e, None] * sb[None, :]).clamp_min(1e-30)).clamp(-1, 1)
            r[(va[s:e] <= 1e-20)[:, None] | (vb <= 1e-20)[None, :]] = 0.0  # a silent feature correlates with nothing
            out[s:e] = r
        return out

    def correlation(self) -> Tensor:
        """(ma, mb) correlations on the same images and positions."""
        return self._corr(self.sab)

    def null_correlation(self) -> Tensor:
        """(ma, mb) correlations with side B's images shuffled (same positions, other image)."""
        return self._corr(self.sab_null)

    def frequencies(self) -> tuple[Tensor, Tensor]:
        """Share of positions where each feature fires, on each side."""
        n = max(self.n, 1)
        return (self.fa / n).float(), (self.fb / n).float()


def cross_add(out: Tensor, a: Tensor, b: Tensor, max_pairs: int = 1 << 23) -> None:
    """``out += a.T @ b`` for (N, ma), (N, mb) code matrices, exploiting their sparsity.

    TopK codes have k of m entries per row, so the product only has ``sum_rows nnz_a * nnz_b``
    terms (k^2 per position, versus ma * mb for the dense GEMM): each row's outer product of its
    non-zeros is index-added into ``out`` (float64), in row blocks of at most ``max_pairs`` terms.
    """
    density = float((a != 0).float().mean() + (b != 0).float().mean()) / 2 if a.numel() else 0.0
    if density > 0.05:
        out += (a.T @ b).double()
        return
    mb = b.shape[1]
    ra, ca = a.nonzero(as_tuple=True)
    rb, cb = b.nonzero(as_tuple=True)
    va, vb = a[ra, ca].double(), b[rb, cb].double()
    cnt_b = torch.bincount(rb, minlength=a.shape[0])
    start_b = cnt_b.cumsum(0) - cnt_b
    rep = cnt_b[ra]  # pairs contributed by each non-zero of a
    ends = rep.cumsum(0)
    flat_out = out.view(-1)
    s = 0
    while s < ra.numel():
        e = int(torch.searchsorted(ends, ends[s] - rep[s] + max_pairs, right=True).clamp_min(s + 1))
        r = rep[s:e]
        ai = torch.repeat_interleave(torch.arange(s, e), r)
        offset = torch.arange(int(r.sum())) - torch.repeat_interleave(r.cumsum(0) - r, r)
        bi = start_b[ra[ai]] + offset
        flat_out.index_add_(0, ca[ai] * mb + cb[bi], va[ai] * vb[bi])
        s = e


def null_threshold(null_best: Tensor, live: Tensor, q: float = 0.99) -> float:
    """The ``q`` quantile of the null's best-match correlations over features that fire."""
    vals = null_best[live]
    return float(torch.quantile(vals.float(), q)) if vals.numel() else float("nan")


def empirical_p(observed: Tensor, null: Tensor) -> Tensor:
    """One-sided p of each observed value among the null values: ``(1 + #{null >= obs}) / (n + 1)``."""
    srt = null.float().sort().values.contiguous()
    ge = null.numel() - torch.searchsorted(srt, observed.float().contiguous(), right=False)
    return (1 + ge.float()) / (null.numel() + 1)
