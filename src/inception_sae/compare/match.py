"""Matching the features of two SAEs: decoder cosine and activation correlation.

Two views of "is this the same feature":

- **decoder cosine** (same layer only): ``cos(d_i^A, d_j^B)`` of the unit decoder rows. Each
  feature's best match in the other SAE, and a one-to-one assignment that maximises the summed
  cosine (the Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`, where SciPy is
  installed and the matrix is small enough; else a greedy assignment over each row's top candidates).
- **activation correlation** (any two layers): Pearson correlation of the two features' codes over
  the same image positions (:class:`CorrelationAccumulator`). Its null pairs each image's codes of
  side A with the codes of *another* image of side B at the same positions (images shuffled), in
  ``NULL_SHUFFLES`` different pairings accumulated in the same pass.

Per-feature null (:func:`null_test`). A feature's best null match is a maximum over the other
side's correlations, so it is right-skewed, and its spread grows as the feature fires more rarely
(a few co-firing positions make a large r), so one pooled quantile is too strict for frequent
features and too lax for rare ones. Each feature is compared with its own null location (the mean,
in Fisher z, of its K shuffled best matches: this absorbs what every shuffle keeps, such as
position), and the deviation is ranked among the shuffled deviations of the ``POOL_FEATURES``
features of nearest firing frequency (64 x K values, enough for a 1% tail where K alone is not;
Fisher z makes deviations comparable across levels). Taking the ``ceil((N + 1)(1 - alpha))``-th of
those N values as threshold makes "above null" a level-``NULL_ALPHA`` test for rare and frequent
features alike. The maxima cannot be taken batch by batch (r is a ratio of sums over all images),
so the K shuffles' cross-moments are kept whole: ``K * ma * mb`` float32.

Position-tied features (:meth:`CorrelationAccumulator.position_r2`): a code map explained by the
position in the image (borders, padding) correlates with any other such map whatever the image, so
its correlations say nothing about content. The statistic is the share of a feature's variance
explained by its mean map over images (chance-corrected between-position R^2); above
``POSITION_R2`` = 0.5 position explains most of the variance, and so most of any correlation with
a feature of the same position profile, and the feature is flagged and never counted as a match.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..sae.matching import (  # noqa: F401 - compare's public names
    GREEDY_CANDIDATES,
    HUNGARIAN_MAX,
    Assignment,
    BestMatch,
    best_matches,
    decoder_cosine,
    matched_values,
    one_to_one,
    unit_rows,
)

#: Shuffled pairings of the images accumulated for the activation null.
NULL_SHUFFLES = 8
#: Level of the per-feature null test ("above null": p <= 1%).
NULL_ALPHA = 0.01
#: Features of similar firing frequency whose null deviations calibrate each feature's test.
POOL_FEATURES = 64
#: Chance-corrected share of variance explained by position above which a feature is position-tied.
POSITION_R2 = 0.5


class CorrelationAccumulator:
    """Streaming Pearson correlations between two code matrices on the same positions, with a null.

    Feed :meth:`add` the dense codes of the same positions on both sides, grouped by image:
    ``za`` (B, P, ma) and ``zb`` (B, P, mb), B >= 2. Besides the true pairing it accumulates
    ``shuffles`` null pairings, each giving every image of side A the side-B codes of another image
    of the batch (a derangement; with B > ``shuffles`` an image meets a different partner in each).
    Memory: ``ma * mb`` float64 cross-moments for the true pairing and ``shuffles * ma * mb`` float32 ones for
    the null, e.g. 571 MB + 8 x 285 MB = 2.9 GB at 8,448 x 8,448 features and 8 shuffles, plus the (P, m)
    per-position sums of each side. The null's sums need no more: they only place each feature's best shuffled
    correlation, and float32 sums of a few thousand co-firings are exact to ~1e-5 relative (the true pairing
    keeps float64: its correlations are reported, near zero included).
    """

    def __init__(
        self, ma: int, mb: int, shuffles: int = NULL_SHUFFLES, seed: int = 0, null_dtype: torch.dtype = torch.float32
    ) -> None:
        if shuffles < 2:
            raise ValueError("the per-feature null needs at least 2 shuffles")
        self.n, self.images, self.shuffles = 0, 0, shuffles
        self.sa, self.saa = torch.zeros(ma, dtype=torch.float64), torch.zeros(ma, dtype=torch.float64)
        self.sb, self.sbb = torch.zeros(mb, dtype=torch.float64), torch.zeros(mb, dtype=torch.float64)
        self.fa, self.fb = torch.zeros(ma, dtype=torch.float64), torch.zeros(mb, dtype=torch.float64)
        self.sab = torch.zeros(ma, mb, dtype=torch.float64)
        self.sab_null = torch.zeros(shuffles, ma, mb, dtype=null_dtype)  # float64: benchmarks/compare_memory.py
        self.pos_a: Tensor | None = None  #: (P, ma) sum over images of each position's codes
        self.pos_b: Tensor | None = None
        self.partners: list[Tensor] = []  #: per batch, (shuffles, B): the side-B image paired with each side-A image
        self.gen = torch.Generator().manual_seed(seed)
        self.channel_sq: dict[str, Tensor] = {}  #: layer -> sum of squared activations per channel
        self.channel_n: dict[str, int] = {}  #: layer -> positions summed

    def channel_rms(self, layer: str) -> Tensor | None:
        """(d,) RMS activation of each channel of ``layer`` over the positions seen, if recorded."""
        if not self.channel_n.get(layer):
            return None
        return (self.channel_sq[layer] / self.channel_n[layer]).sqrt().float()

    def pairings(self, B: int) -> Tensor:
        """(shuffles, B) derangements of a batch: a random order, then shifts 1 .. B-1 along it.

        Each image meets a different partner in each shuffle (up to B - 1 shuffles; a fresh order
        for each further B - 1).
        """
        out = torch.empty(self.shuffles, B, dtype=torch.long)
        for k in range(self.shuffles):
            if k % (B - 1) == 0:
                order = torch.randperm(B, generator=self.gen)
            out[k, order] = order.roll(-(1 + k % (B - 1)))
        return out

    def add(self, za: Tensor, zb: Tensor) -> None:
        if za.shape[:2] != zb.shape[:2]:
            raise ValueError(f"codes cover different positions: {tuple(za.shape[:2])} vs {tuple(zb.shape[:2])}")
        if za.shape[0] < 2:
            raise ValueError("the shuffled-image null needs at least two images per batch")
        if self.pos_a is None or self.pos_b is None:  # set together
            self.pos_a = torch.zeros(za.shape[1], za.shape[2], dtype=torch.float64)
            self.pos_b = torch.zeros(zb.shape[1], zb.shape[2], dtype=torch.float64)
        if za.shape[1] != self.pos_a.shape[0]:
            raise ValueError(f"positions per image changed: {self.pos_a.shape[0]} then {za.shape[1]}")
        za, zb = za.float(), zb.float()
        a, b = za.reshape(-1, za.shape[-1]), zb.reshape(-1, zb.shape[-1])
        self.n += a.shape[0]
        self.images += za.shape[0]
        self.sa += a.sum(0).double()
        self.saa += a.pow(2).sum(0).double()
        self.fa += (a > 0).sum(0).double()
        self.sb += b.sum(0).double()
        self.sbb += b.pow(2).sum(0).double()
        self.fb += (b > 0).sum(0).double()
        self.pos_a += za.sum(0).double()
        self.pos_b += zb.sum(0).double()
        partners = self.pairings(za.shape[0])
        self.partners.append(partners)
        P = za.shape[1]
        within = torch.arange(P)
        rows = [None, *((partners[k][:, None] * P + within).flatten() for k in range(self.shuffles))]
        cross_add_many([self.sab, *self.sab_null], a, b, rows)

    def _corr_blocks(self, sab: Tensor, chunk: int = 1024):
        """Row blocks ``(start, r)`` of the correlations of the cross-moments ``sab``."""
        n = max(self.n, 1)
        ma, mb = self.sa / n, self.sb / n
        va, vb = (self.saa / n - ma**2).clamp_min(0), (self.sbb / n - mb**2).clamp_min(0)
        sa, sb = va.sqrt(), vb.sqrt()
        for s in range(0, sab.shape[0], chunk):  # row blocks keep the float64 temporaries small
            e = min(s + chunk, sab.shape[0])
            cov = sab[s:e].double() / n - ma[s:e, None] * mb[None, :]
            r = (cov / (sa[s:e, None] * sb[None, :]).clamp_min(1e-30)).clamp(-1, 1)
            r[(va[s:e] <= 1e-20)[:, None] | (vb <= 1e-20)[None, :]] = 0.0  # a silent feature correlates with nothing
            yield s, r.float()

    def _corr(self, sab: Tensor) -> Tensor:
        out = torch.empty(sab.shape, dtype=torch.float32)
        for s, r in self._corr_blocks(sab):
            out[s : s + r.shape[0]] = r
        return out

    def correlation(self) -> Tensor:
        """(ma, mb) correlations on the same images and positions."""
        return self._corr(self.sab)

    def null_correlation(self, k: int = 0) -> Tensor:
        """(ma, mb) correlations of null pairing ``k`` (side B's images shuffled, same positions)."""
        return self._corr(self.sab_null[k])

    def null_best(self) -> tuple[Tensor, Tensor]:
        """(shuffles, ma) and (shuffles, mb): each feature's best null correlation in each shuffle."""
        K, ma, mb = self.sab_null.shape
        best_a, best_b = torch.empty(K, ma), torch.full((K, mb), -1.0)
        for k in range(K):
            for s, r in self._corr_blocks(self.sab_null[k]):
                best_a[k, s : s + r.shape[0]] = r.max(1).values
                best_b[k] = torch.maximum(best_b[k], r.max(0).values)
        return best_a, best_b

    def frequencies(self) -> tuple[Tensor, Tensor]:
        """Share of positions where each feature fires, on each side."""
        n = max(self.n, 1)
        return (self.fa / n).float(), (self.fb / n).float()

    def position_r2(self) -> tuple[Tensor, Tensor]:
        """Each feature's share of variance explained by its per-position mean map, above chance.

        ``R2 = sum_p I (mean_p - mean)^2 / sum_(i,p) (z - mean)^2`` over I images and P positions,
        the between-position share of a one-way ANOVA; with no position effect its expectation is
        ``e = (P - 1) / (I P - 1)`` (about 1 / I), so the value reported is ``(R2 - e) / (1 - e)``.
        Silent features get 0.
        """
        if self.pos_a is None or self.pos_b is None or self.images < 2:
            return torch.zeros(self.sa.shape[0]), torch.zeros(self.sb.shape[0])
        e = (self.pos_a.shape[0] - 1) / max(self.n - 1, 1)
        out = []
        for pos, s, ss in ((self.pos_a, self.sa, self.saa), (self.pos_b, self.sb, self.sbb)):
            total = ss - s**2 / self.n
            between = pos.pow(2).sum(0) / self.images - s**2 / self.n
            live = total / self.n > 1e-20
            r2 = between / total.where(live, torch.ones(()))
            out.append(torch.where(live, (r2 - e) / (1 - e), 0.0).float())
        return out[0], out[1]


def cross_add(out: Tensor, a: Tensor, b: Tensor, max_pairs: int = 1 << 23) -> None:
    """``out += a.T @ b`` for (N, ma), (N, mb) code matrices, exploiting their sparsity (:func:`cross_add_many`)."""
    cross_add_many([out], a, b, [None], max_pairs)


def cross_add_many(
    outs: list[Tensor], a: Tensor, b: Tensor, rows: list[Tensor | None], max_pairs: int = 1 << 23
) -> None:
    """``outs[t] += a.T @ b[rows[t]]`` (``rows[t]`` None: ``b`` itself) for (N, ma), (N, mb) code matrices.

    TopK codes have k of m entries per row, so the product only has ``sum_rows nnz_a * nnz_b``
    terms (k^2 per position, versus ma * mb for the dense GEMM): each row's outer product of its
    non-zeros is index-added into ``out`` (in its own dtype), in row blocks of at most ``max_pairs`` terms.
    The non-zeros are found once for all pairings. Above 2% density the float32 GEMM is faster
    (measured crossover on 2 CPU cores: 1,200 features at 3.5% density, sparse 7x slower).
    """
    density = float((a != 0).float().mean() + (b != 0).float().mean()) / 2 if a.numel() else 0.0
    if density > 0.02:
        for out, r in zip(outs, rows, strict=True):
            out += (a.T @ (b if r is None else b[r])).to(out.dtype)
        return
    mb = b.shape[1]
    ra, ca = a.nonzero(as_tuple=True)
    rb, cb = b.nonzero(as_tuple=True)
    va, vb = a[ra, ca].double(), b[rb, cb].double()
    cnt_b = torch.bincount(rb, minlength=b.shape[0])
    start_b = cnt_b.cumsum(0) - cnt_b
    for out, r_b in zip(outs, rows, strict=True):
        src = ra if r_b is None else r_b[ra]  # the row of b paired with each non-zero of a
        rep = cnt_b[src]  # pairs contributed by each non-zero of a
        ends = rep.cumsum(0)
        flat_out = out.view(-1)
        s = 0
        while s < ra.numel():
            e = int(torch.searchsorted(ends, ends[s] - rep[s] + max_pairs, right=True).clamp_min(s + 1))
            r = rep[s:e]
            ai = torch.repeat_interleave(torch.arange(s, e), r)
            offset = torch.arange(int(r.sum())) - torch.repeat_interleave(r.cumsum(0) - r, r)
            bi = start_b[src[ai]] + offset
            flat_out.index_add_(0, ca[ai] * mb + cb[bi], (va[ai] * vb[bi]).to(out.dtype))
            s = e


class NullTest(NamedTuple):
    """Each feature's best match against its own null (see the module docstring)."""

    location: Tensor  #: (m,) the null best match, averaged over the shuffles in Fisher z
    threshold: Tensor  #: (m,) the null's (1 - alpha) quantile of the best match (NaN if silent)
    p: Tensor  #: (m,) one-sided p of the observed best match (NaN if silent)
    above: Tensor  #: (m,) bool: best match > threshold


def null_test(
    best: Tensor, null_best: Tensor, freq: Tensor, alpha: float = NULL_ALPHA, pool: int = POOL_FEATURES
) -> NullTest:
    """Per-feature test of the best match ``best`` (m,) against the null best matches ``null_best`` (K, m).

    In Fisher z, a feature's observed best minus the mean of its own K null bests is compared with
    the null bests' deviations from their own feature's mean (scaled by ``sqrt((K + 1) / (K - 1))``
    to the same variance) of the ``pool`` firing features nearest in firing frequency ``freq``.
    """
    K, m = null_best.shape
    lim = 1 - 1e-6
    z_obs, z_null = best.double().clamp(-lim, lim).atanh(), null_best.double().clamp(-lim, lim).atanh()
    mu = z_null.mean(0)
    dev = (z_null - mu) * math.sqrt((K + 1) / (K - 1))  # (K, m)
    nan = torch.full((m,), float("nan"), dtype=torch.float64)
    thr_z, p = nan.clone(), nan.clone()
    live = (freq > 0).nonzero().flatten()
    if live.numel():
        order = live[torch.argsort(freq[live].double(), stable=True)]  # live features by frequency
        n, w = order.numel(), min(pool, order.numel())
        start = (torch.arange(n) - w // 2).clamp(0, n - w)
        members = order[start[:, None] + torch.arange(w)]  # (n, w): each feature's frequency neighbours
        ref = dev.T[members].reshape(n, w * K).sort(dim=1).values  # (n, w K) null deviations of the neighbours
        # The order statistic j = ceil((N + 1)(1 - alpha)) of N null values: a value exchangeable with
        # them exceeds it with probability (N + 1 - j) / (N + 1) <= alpha (none: never exceeded).
        j = math.ceil((w * K + 1) * (1 - alpha))
        q = ref[:, j - 1] if j <= w * K else torch.full((n,), float("inf"), dtype=torch.float64)
        d = z_obs[order] - mu[order]
        thr_z[order] = mu[order] + q
        p[order] = (1 + (ref >= d[:, None]).sum(1).double()) / (1 + w * K)
    above = torch.nan_to_num(z_obs - thr_z, nan=-1.0) > 0  # the same as p <= alpha
    return NullTest(torch.tanh(mu).float(), torch.tanh(thr_z).float(), p.float(), above)


class SideMatches(NamedTuple):
    """One side's activation matches: best correlation, its null test, position tie, the final call."""

    best: Tensor  #: (m,) best correlation with the other side
    test: NullTest
    position_r2: Tensor  #: (m,) chance-corrected share of variance explained by position
    tied: Tensor  #: (m,) bool: position_r2 > POSITION_R2
    above: Tensor  #: (m,) bool: above its own null and not position-tied


def activation_matches(acc: CorrelationAccumulator, corr: Tensor | None = None) -> tuple[SideMatches, SideMatches]:
    """Each feature of both sides tested against its own null, position-tied features excluded."""
    corr = acc.correlation() if corr is None else corr
    best = (corr.max(1).values, corr.max(0).values)
    freq, r2 = acc.frequencies(), acc.position_r2()
    out = []
    for f, nb in enumerate(acc.null_best()):
        test, tied = null_test(best[f], nb, freq[f]), r2[f] > POSITION_R2
        out.append(SideMatches(best[f], test, r2[f], tied, test.above & ~tied))
    return out[0], out[1]
