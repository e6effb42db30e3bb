"""The branch null: a per-row permutation test of the positive-part branch share, and Benjamini-Hochberg.

Null hypothesis for a decoder row ``d`` (d,): in units of a per-channel scale
``s`` (``null_channel_scale``; all 1 when the null uses none), its entries
``y_c = d_c / s_c`` are exchangeable across channels, i.e. the row has no
preference for any branch. A null row is ``s_c * y_pi(c)`` for a uniformly
random permutation ``pi``: it keeps the row's own sparsity, signs and tails.
The statistic for branch ``b`` is the paper's share ``||relu(d[b])|| / ||relu(d)||``
(tested as its square, the same order).

p-values are Monte Carlo permutation p-values with Besag & Clifford's (1991)
sequential stopping, exact under the null: permutations are drawn (shared by
all rows, in the same order) until ``STOP_AFTER`` null shares reach the observed
one, giving ``p = STOP_AFTER / draws``, or until ``n_max`` draws, giving
``p = (1 + exceedances) / (n_max + 1)`` (the floor ``1 / (n_max + 1)``). Rows
with no preference stop after tens of draws; only rows near the floor go on,
so small p-values cost little. Ties (sparse rows have many equal shares, e.g. a
branch with no positive entry) are broken at random, which keeps the p-values
uniform under the null.

All of it is batched: with ``q_c = relu(y_c)^2``, a permuted row's squared
branch norm is ``q @ A[sigma]`` with ``A`` (d, nb) = ``s_c^2 * [c in b]``, so a
block of permutations for many rows is one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

STOP_AFTER = 20  #: sequential stop: null shares at least as large as the observed one
FIRST_BLOCK = 256  #: permutations in the first round (every row); later rounds double, up to MAX_BLOCK
MAX_BLOCK = 4096  #: permutations per matrix product (bounds memory: d x MAX_BLOCK x nb floats)
TIE_TOL = 1e-6  #: squared shares closer than this are ties (float error of equal sums in another order)
LEVEL = 0.01  #: FDR level of "specialised" and of the dominant branch

NULL_TEXT = (
    "per-row permutation null: the decoder row divided by null_channel_scale, its entries permuted across "
    "channels, multiplied back; p = sequential Monte Carlo tail probability of the positive-part branch share "
    "(Besag-Clifford, stop after {stop} exceedances or {n_max} permutations, floor 1/({n_max}+1), ties broken at "
    "random); q = Benjamini-Hochberg over all features x branches"
)


class PermutationResult(NamedTuple):
    p: Tensor  #: (m, nb) p-values
    draws: Tensor  #: (m, nb) permutations drawn for each test
    z: Tensor  #: (m, nb) (share - null mean) / null sd, from the first round
    null_mean: Tensor  #: (m, nb) mean null share per row (first round)


def channel_matrix(scale: Tensor, slices: Sequence[tuple[int, int]]) -> Tensor:
    """(d, nb) ``s_c^2`` in the column of c's branch (channels outside every slice count in no branch)."""
    A = torch.zeros(scale.shape[0], len(slices))
    for j, (a, b) in enumerate(slices):
        A[a:b, j] = scale[a:b].float() ** 2
    return A


def _ratios(S: Tensor, tot: Tensor) -> Tensor:
    return torch.where(tot > 0, S / tot.clamp_min(1e-30), torch.zeros_like(S))


def permutation_pvalues(
    W: Tensor, slices: Sequence[tuple[int, int]], scale: Tensor | None = None, n_max: int = 2**17,
    seed: int = 0, stop_after: int = STOP_AFTER, chunk: int = 2**20,
) -> PermutationResult:  # fmt: skip
    """Sequential permutation p-values of the positive-part share of every row of ``W`` (m, d) in every slice."""
    W = W.detach().float().cpu()
    m, d = W.shape
    scale = torch.ones(d) if scale is None else scale.detach().float().cpu()
    q = (W / scale).clamp_min(0).pow(2)  # (m, d) in null units
    A = channel_matrix(scale, slices)  # (d, nb)
    nb = A.shape[1]
    w_all = scale**2
    r_obs = _ratios(q @ A, (q @ w_all).unsqueeze(1))  # (m, nb) squared shares
    gen = torch.Generator().manual_seed(seed)
    u_obs = torch.rand(m, nb, generator=gen)  # tie-break rank of the observed share
    count = torch.zeros(m, nb, dtype=torch.long)
    p = torch.full((m, nb), float("nan"))
    draws = torch.zeros(m, nb, dtype=torch.long)
    z = torch.zeros(m, nb)
    null_mean = torch.zeros(m, nb)
    total, block = 0, min(FIRST_BLOCK, n_max)
    AT = A.T.contiguous()  # (nb, d)
    active = torch.arange(m)
    while len(active) and total < n_max:
        n = min(block, n_max - total)
        perm = torch.stack([torch.randperm(d, generator=gen) for _ in range(n)])  # (n, d) sigma
        Ap = AT[:, perm].reshape(nb * n, d).T  # (d, nb * n): s^2 [sigma(c) in b]
        wp = w_all[perm].T  # (d, n): totals over all channels
        for rows in active.split(max(1, chunk // n)):  # (rows x n) per product
            rn = _ratios((q[rows] @ Ap).view(len(rows), nb, n), (q[rows] @ wp).unsqueeze(1))  # (R, nb, n)
            if total == 0:
                sh = rn.sqrt()
                null_mean[rows] = sh.mean(2)
                z[rows] = (r_obs[rows].sqrt() - null_mean[rows]) / sh.std(2).clamp_min(1e-12)
            ro = r_obs[rows].unsqueeze(2)
            tie = (rn - ro).abs() <= TIE_TOL
            exceed = (rn > ro) & ~tie
            if bool(tie.any()):  # a tied null share counts with probability 1 - u_obs: random tie-breaking
                u = u_obs[rows].unsqueeze(2).expand_as(tie)[tie]
                exceed[tie] = torch.rand(u.shape, generator=gen) < 1 - u
            cum = count[rows].unsqueeze(2) + exceed.cumsum(2)  # (R, nb, n)
            hit = cum >= stop_after
            stop = hit.any(2) & p[rows].isnan()
            L = total + hit.int().argmax(2) + 1  # draws up to the stop count
            p[rows] = torch.where(stop, stop_after / L.float(), p[rows])
            draws[rows] = torch.where(stop, L, draws[rows])
            count[rows] = cum[..., -1]
        total += n
        block = min(block * 2, MAX_BLOCK)
        active = active[p[active].isnan().any(1)]
    left = p.isnan()
    p[left] = (count[left] + 1).float() / (total + 1)
    draws[left] = total
    return PermutationResult(p, draws, z, null_mean)


def benjamini_hochberg(p: Tensor) -> Tensor:
    """BH-adjusted q-values of every entry of ``p`` (any shape), over all entries together."""
    flat = p.flatten().double()
    n = flat.numel()
    if n == 0:
        return p.clone()
    order = flat.argsort()
    ranked = flat[order] * n / torch.arange(1, n + 1, dtype=torch.float64)
    ranked = ranked.flip(0).cummin(0).values.flip(0).clamp_max(1.0)
    q = torch.empty_like(flat)
    q[order] = ranked
    return q.view(p.shape).to(p.dtype)


def most_significant(p: Tensor, z: Tensor) -> Tensor:
    """(m,) index of each row's smallest p-value; equal p-values (e.g. at the floor) go to the larger z."""
    key = torch.stack([p.double(), -z.double()], -1)  # lexicographic: p, then -z
    best = key[..., 0].min(1, keepdim=True).values
    cand = torch.where(key[..., 0] <= best, key[..., 1], torch.full_like(key[..., 1], float("inf")))
    return cand.argmin(1)


def dominant_index(p: Tensor, q: Tensor, z: Tensor, level: float = LEVEL) -> Tensor:
    """(m,) THE dominant branch: the most significant branch if its q <= level, else -1 ("none")."""
    best = most_significant(p, z)
    ok = q.gather(1, best.view(-1, 1)).squeeze(1) <= level
    return torch.where(ok, best, torch.full_like(best, -1))


def fdr_reachability(p_floor: float, n_tests: int, level: float = LEVEL) -> dict:
    """How many tests must sit at the p-value floor before BH at ``level`` can reject any of them."""
    need = int(-(-p_floor * n_tests // level))  # ceil
    return {
        "level": level, "p_floor": p_floor, "tests": n_tests, "min_rejections": max(need, 1),
        "reachable": need <= n_tests,
        "note": f"a test at the p-value floor gets q <= {level} only if at least {max(need, 1)} of the {n_tests} "
        "features x branches are rejected together; with fewer true effects than that, a count of 0 means "
        "'not resolvable with this many permutations', not 'no specialisation'",
    }  # fmt: skip
