"""Which encoder pre-activations an SAE keeps: TopK per row, BatchTopK over the batch, or a threshold.

* ``topk`` (Gao et al. 2024): the k largest of each row.
* ``batch`` (BatchTopK, Bussmann et al. 2024): the k·B largest of the whole (B, m) batch, so a row
  keeps as many latents as it needs and the batch keeps k per row on average.
* ``threshold`` (the BatchTopK inference rule, SAELens's JumpReLU): every pre-activation above its
  latent's threshold.

All three return fixed-width codes ((B, w) values, (B, w) int64 indices): a row that keeps fewer
than w latents is padded with zero values at distinct latent ids, so decoding, firing counts and
``scatter`` into a dense (B, m) code are unaffected by the padding. On CPU none forms a dense (B, m)
mask or sort: the batch rule collects the values above a bound drawn from a sample of the batch and
selects the batch's k·B-th largest among those few; both rules then write each row's survivors in
one pass (``cpu_topk.fill_kept``). Elsewhere (GPU, ``INCEPTION_SAE_KERNELS=torch``) torch ops do the
same on the dense pre-activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from . import cpu_kernels as _cpu


@dataclass(frozen=True, eq=False)
class Rule:
    """A selection rule; ``k`` is the per-row count (topk) or the mean per row (batch)."""

    kind: Literal["topk", "batch", "threshold"]
    k: int
    threshold: Tensor | None = None  #: (m,) per-latent thresholds (kind "threshold")
    distributed: bool = False  #: batch rule: select over every rank's rows together (data parallel)
    #: batch rule: the inference threshold so far (< 0: none); the selection then reports, in ``report``, how many
    #: of the batch's values exceed it ("above", over all ranks), the count kept ("kept") and its own cut ("cut")
    track: float | None = None
    report: dict = field(default_factory=dict)


def as_rule(k: int | Rule) -> Rule:
    return k if isinstance(k, Rule) else Rule("topk", int(k))


def _bits(t: Tensor) -> np.ndarray:
    """A bfloat16 tensor's storage as uint16 bit patterns (what the kernels read); float32 as is."""
    return t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()


def topk_biased(pre: Tensor, bias: Tensor, k: int, sort: bool) -> tuple[Tensor, Tensor]:
    """TopK over the rows of ``pre + bias`` (B, m) by the block-maximum kernel (CPU; ``pre``
    float32 or bfloat16, ``bias`` float32); float32 values, int64 indices."""
    B = pre.shape[0]
    vals = torch.empty(B, k)
    idx = torch.empty(B, k, dtype=torch.int64)
    nth = _cpu.set_threads(torch.get_num_threads())
    sums = torch.empty(B)
    _cpu.topk_rows(_bits(pre), bias.detach().numpy(), k, vals.numpy(), idx.numpy(), sums.numpy(), sort, nth)
    bad = ~torch.isfinite(sums)  # the row held a NaN/inf (or its sum overflowed: redone, harmlessly)
    if bad.any():  # torch's ordering for those rows (NaN counts as largest)
        rows = bad.nonzero().squeeze(1)
        v, i = (pre[rows].float() + bias.detach()).topk(k, dim=1, sorted=sort)
        vals[rows], idx[rows] = v, i
    return vals, idx


def _row_topk(pre: Tensor, bias: Tensor | None, k: int, sort: bool, cpu: bool) -> tuple[Tensor, Tensor]:
    """(float32 values, int64 indices) of the k largest of each row of ``pre + bias`` (bias None: none)."""
    if cpu:
        return topk_biased(pre, bias if bias is not None else pre.new_zeros(pre.shape[1], dtype=torch.float32), k, sort)
    v, i = (pre if bias is None else pre + bias.to(pre.dtype)).topk(k, dim=1, sorted=sort)
    return v.float(), i


#: the smallest positive float32: a cut at it keeps exactly the values > 0 (the kernels keep values >= a cut)
POSITIVE = float(torch.finfo(torch.float32).tiny)


def _count_above(pre: Tensor, bias: Tensor, cut: float, cpu: bool) -> Tensor:
    """(B,) int64: how many entries of each row of ``pre + bias`` are >= ``cut``."""
    if cpu:
        out = np.empty(pre.shape[0], np.int64)
        nth = _cpu.set_threads(torch.get_num_threads())
        _cpu.count_above(_bits(pre), bias.detach().numpy(), cut, out, nth)
        return torch.from_numpy(out)
    return ((pre.float() + bias) >= cut).sum(1)


def select(pre: Tensor, bias: Tensor | None, rule: Rule, sort: bool, cpu: bool) -> tuple[Tensor, Tensor]:
    """The kept ReLU values (B, w) float32 and latent ids (B, w) int64 of ``pre + bias`` under ``rule``.

    ``bias`` None: ``pre`` already holds it. ``cpu``: use the Numba kernels (``pre`` a float32 or bfloat16
    CPU tensor, ``bias`` float32).
    """
    if rule.kind == "topk":
        vals, idx = _row_topk(pre, bias, rule.k, sort, cpu)
        return vals.relu_(), idx
    if rule.kind == "threshold":
        assert rule.threshold is not None
        thr = rule.threshold.to(device=pre.device, dtype=torch.float32)
        shifted = -thr if bias is None else bias.float() - thr  # keep pre + bias - thr > 0
        counts = _count_above(pre, shifted, POSITIVE, cpu)
        if cpu:  # the kept margins in column order, then add the thresholds back
            v, i = _fill(pre, shifted, POSITIVE, counts)
        else:
            v, i = _row_topk(pre, shifted, max(1, int(counts.max())), True, cpu)
        return torch.where(v > 0, v + thr[i], torch.zeros_like(v)).relu_(), i
    return _batch_select(pre, bias, rule, cpu)


def _batch_select(pre: Tensor, bias: Tensor | None, rule: Rule, cpu: bool) -> tuple[Tensor, Tensor]:
    """BatchTopK: the k·B largest ReLU values of the batch (all ranks' rows when ``rule.distributed``).

    A low bound ``lo`` from a fixed sample of the batch's values (a little below its share k/m) leaves about
    1.5 k·B candidates above it (one counting and one collecting pass over the rows); the exact threshold t
    is the k·B-th largest candidate (``lo`` drops to 0 when too few are above it), and one more pass writes
    each row's values >= t (the row's kept count, known from the candidates, fixes where its padding starts).
    """
    B, m = pre.shape
    zero = torch.zeros(m, device=pre.device) if bias is None else bias.float()
    n_keep = rule.k * B
    lo = _sample_bound(pre, zero, rule.k / m, n_keep)
    if rule.distributed:  # one bound for all ranks, so that the gathered candidates hold the global top
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    cand, ptr = _candidates(pre, zero, max(float(lo), POSITIVE), cpu)
    total = torch.tensor(float(cand.numel()), device=pre.device)
    if rule.distributed:
        dist.all_reduce(total)
    if int(total) < n_keep * (dist.get_world_size() if rule.distributed else 1) and float(lo) > 0:
        lo = torch.zeros((), device=pre.device)  # the sample's bound was too high: every positive value
        cand, ptr = _candidates(pre, zero, POSITIVE, cpu)
    t = _kth_largest(cand, rule.k, B, rule.distributed).clamp_min(POSITIVE)
    if rule.track is not None:
        _report(rule, cand, lo, t, n_keep)
    ge = torch.zeros(cand.numel() + 1, dtype=torch.int64, device=cand.device)
    torch.cumsum(cand >= t, 0, out=ge[1:])
    kept = ge[ptr[1:]] - ge[ptr[:-1]]  # per row: its candidates at or above the cut
    if cpu:
        return _fill(pre, zero, float(t), kept)
    v, i = _row_topk(pre, bias, min(max(1, int(kept.max())), m), True, cpu)  # sorted: the kept are a prefix
    v.relu_()
    return torch.where(v >= t, v, torch.zeros_like(v)), i


def _fill(pre: Tensor, bias: Tensor, cut: float, counts: Tensor) -> tuple[Tensor, Tensor]:
    """(B, w) codes of the values of ``pre + bias`` >= ``cut`` (w = the largest count), zero-padded (CPU)."""
    B, w = pre.shape[0], max(1, int(counts.max()))
    vals, idx = torch.empty(B, w), torch.empty(B, w, dtype=torch.int64)
    _cpu.fill_kept(_bits(pre), bias.detach().numpy(), cut, counts.numpy(), vals.numpy(), idx.numpy(),
                   _cpu.set_threads(torch.get_num_threads()))  # fmt: skip
    return vals, idx


def _report(rule: Rule, cand: Tensor, lo: Tensor, t: Tensor, n_keep: int) -> None:
    """What the threshold's update needs: the values above it (exact when it is above the candidates' bound,
    else the candidates' count, a lower bound), the count kept, and this batch's cut."""
    thr = float(rule.track or -1.0)
    above = float((cand > thr).sum()) if thr >= float(lo) else float(cand.numel())
    stats = torch.tensor([above, float(n_keep)], device=cand.device)
    if rule.distributed:
        dist.all_reduce(stats)
    rule.report.update(above=float(stats[0]), kept=float(stats[1]), cut=float(t))


def _sample_bound(pre: Tensor, bias: Tensor, share: float, n_keep: int) -> Tensor:
    """A value that about 1.5 x ``share`` of the batch's ``pre + bias`` exceed (>= 0), from a fixed sample."""
    n = pre.numel()
    s = min(n, max(8192, int(200 / share)))  # about 200 sampled values above the share's cut
    pos = _sample_positions(n, s, pre.device)
    vals = pre.reshape(-1)[pos].float() + bias[pos % pre.shape[1]]
    want = min(s, int(1.5 * share * s + 3 * (share * s) ** 0.5 + 8))
    return vals.topk(want, sorted=False).values.min().clamp_min(0)


_POSITIONS: dict[tuple, Tensor] = {}


def _sample_positions(n: int, s: int, device) -> Tensor:
    """``s`` fixed pseudo-random positions in 0..n-1 (the same every call: a resumed run selects bitwise alike)."""
    key = (n, s, str(device))
    if key not in _POSITIONS:
        g = torch.Generator(device="cpu").manual_seed(0)
        pos = torch.randint(0, n, (s,), generator=g) if s < n else torch.arange(n)
        _POSITIONS.clear()  # one batch shape at a time
        _POSITIONS[key] = pos.to(device)
    return _POSITIONS[key]


def _candidates(pre: Tensor, bias: Tensor, cut: float, cpu: bool) -> tuple[Tensor, Tensor]:
    """The values of ``pre + bias`` that are >= ``cut`` (flat, float32, row by row) and the rows' offsets (B + 1,)."""
    counts = _count_above(pre, bias, cut, cpu)
    ptr = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=pre.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    if cpu:
        out = torch.empty(int(ptr[-1]))
        _cpu.collect_above(_bits(pre), bias.detach().numpy(), cut, ptr.numpy(), out.numpy(),
                           _cpu.set_threads(torch.get_num_threads()))  # fmt: skip
        return out, ptr
    z = pre.float() + bias
    return z[z >= cut], ptr


def _kth_largest(flat: Tensor, k: int, rows: int, distributed: bool) -> Tensor:
    """The (k·rows)-th largest of ``flat`` (over every rank's values when ``distributed``; then ``rows``
    is this rank's and the count is k times all ranks' rows)."""
    if distributed:
        n = torch.tensor([flat.numel(), rows], device=flat.device)
        sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, n)
        width = int(max(int(s[0]) for s in sizes))
        padded = torch.full((width,), -1.0, device=flat.device)  # below every ReLU value: never kept
        padded[: flat.numel()] = flat
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        flat, rows = torch.cat(parts), sum(int(s[1]) for s in sizes)
    n_keep = min(k * rows, flat.numel())
    if n_keep == 0:
        return flat.new_tensor(float("inf"))  # no positive value: nothing is kept
    return flat.topk(n_keep, sorted=False).values.min()


def prefix_groups(prefixes: tuple[int, ...], m: int, device=None) -> Tensor:
    """(m,) int64: the group of each latent for nested prefix sizes ``prefixes`` (increasing, last = m):
    latent l is in group g when prefixes[g-1] <= l < prefixes[g]."""
    bounds = torch.tensor(prefixes, dtype=torch.int64, device=device)
    return torch.searchsorted(bounds, torch.arange(m, device=device), right=True)


@torch.no_grad()
def pooled_cut(x: Tensor, enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int, hint: float, cpu: bool) -> float:
    """The (k·N)-th largest pre-activation ``enc (x - b_dec) + b_enc`` of the N rows ``x``, i.e. the threshold
    above which the rows keep k latents on average: the GEMM in chunks of 4096 rows, keeping only the values
    above ``hint`` / 2 (every positive value when too few are)."""
    n_keep = k * x.shape[0]
    for lo in (max(POSITIVE, 0.5 * hint), POSITIVE):
        parts = []
        for s in range(0, x.shape[0], 4096):
            pre = (x[s : s + 4096] - b_dec) @ enc.t()
            parts.append(_candidates(pre.contiguous(), b_enc.float(), lo, cpu)[0])
        cand = torch.cat(parts)
        if cand.numel() >= n_keep or lo == POSITIVE:
            break
    if cand.numel() == 0:
        return 0.0
    return float(cand.topk(min(n_keep, cand.numel()), sorted=False).values.min())
