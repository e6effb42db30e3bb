"""TopK selection over the rows of a (B, m) matrix by block maxima (Numba, CPU).

The k-th largest maximum of blocks of ``BLOCK`` values is a lower bound on a row's k-th
largest value, so only the few values at or above it (the blocks' maxima, and the rare second
value that reaches it) enter a k-heap: one vertically vectorised pass over the row plus O(k)
work, instead of a selection over m. The pass runs at memory bandwidth.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_ops import at

BLOCK = 32  #: values per block in the block-maximum prefilter


@njit
def _sift_down(hv, hi, k, pos):  # pragma: no cover - compiled
    """Restore the min-heap property of (hv, hi)[:k] below ``pos``."""
    v = hv[pos]
    ix = hi[pos]
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        if child + 1 < k and hv[child + 1] < hv[child]:
            child += 1
        if hv[child] >= v:
            break
        hv[pos] = hv[child]
        hi[pos] = hi[child]
        pos = child
    hv[pos] = v
    hi[pos] = ix


@njit
def _heap_select(cv, ci, n, k, hv, hi):  # pragma: no cover - compiled
    """Top k of (cv, ci)[:n] (n >= k) into the min-heap (hv, hi)."""
    for j in range(k):
        hv[j] = cv[j]
        hi[j] = ci[j]
    for p in range(k // 2 - 1, -1, -1):
        _sift_down(hv, hi, k, p)
    for j in range(k, n):
        if cv[j] > hv[0]:
            hv[0] = cv[j]
            hi[0] = ci[j]
            _sift_down(hv, hi, k, 0)


@njit
def _sort_desc(hv, hi, k):  # pragma: no cover - compiled
    """Heap-sort a min-heap in place into descending order."""
    for end in range(k - 1, 0, -1):
        v = hv[0]
        ix = hi[0]
        hv[0] = hv[end]
        hi[0] = hi[end]
        hv[end] = v
        hi[end] = ix
        _sift_down(hv, hi, end, 0)


@njit(parallel=True, fastmath=True, cache=True)
def topk_rows(pre, bias, k, out_v, out_i, out_sum, sort, nth, slack=8):  # pragma: no cover - compiled
    """out_v[b], out_i[b] = the k largest values of pre[b] + bias (B, m) and their columns.

    ``pre`` is float32, or uint16 holding bfloat16 bit patterns (widened to float32 as they are
    read: the pass over memory reads half the bytes); bias and outputs are float32.

    Column c of the first ``S = m // BLOCK`` holds block c = {c, c + S, ..., c + (BLOCK-1) S}:
    strided blocks, so one pass down the row keeps (S,) running maxima with plain vertical
    vector ops (no horizontal reductions), along with each block's argmax and second-largest
    value. A threshold ``thr`` with between k and k + ``slack`` block maxima at or above it
    (bisection over the S maxima) is a lower bound on the row's k-th largest value; the
    candidates are those block maxima plus, only in blocks whose second value reaches
    ``thr``, the rest of the block. A k-heap picks the answer from those ~k + slack values.

    Adding the bias here rather than in the GEMM (``addmm``) saves a pass that first
    broadcasts it into the whole (B, m) output.
    Unordered unless ``sort`` (then descending, like ``torch.topk(sorted=True)``). ``nth``:
    the number of Numba threads (one chunk of rows each; passed in, because calling
    ``numba.get_num_threads()`` inside a kernel stops Numba from caching it).
    ``out_sum[b]`` gets the row's sum, which is non-finite when the row holds a NaN or
    inf: such rows get unspecified results here, and the caller redoes them (under
    fastmath the kernel itself cannot test for NaN).
    """
    B, m = pre.shape
    S = m // BLOCK
    blocked = k <= S  # (BLOCK >= 2)
    chunk = (B + nth - 1) // nth
    for th in prange(nth):  # one chunk of rows per thread: scratch allocated once per thread
        bm = np.empty(S, np.float32)  # block maxima
        sm = np.empty(S, np.float32)  # second-largest value of each block
        tot = np.empty(S, np.float32)  # block sums (NaN/inf detection)
        arg = np.empty(S, np.int32)  # block argmax, as the block-local position t
        cv = np.empty(m, np.float32)
        ci = np.empty(m, np.int64)
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            row = pre[b]
            hv = out_v[b]
            hi = out_i[b]
            n = 0
            total = np.float32(0.0)
            if blocked:
                for c in range(S):
                    v0 = at(row, c) + bias[c]
                    v1 = at(row, S + c) + bias[S + c]
                    bm[c] = max(v0, v1)
                    sm[c] = min(v0, v1)
                    arg[c] = 1 if v1 > v0 else 0
                    tot[c] = v0 + v1
                for t in range(2, BLOCK):  # the one full pass over the row
                    base = t * S
                    for c in range(S):
                        v = at(row, base + c) + bias[base + c]
                        old = bm[c]
                        arg[c] = t if v > old else arg[c]
                        sm[c] = max(sm[c], min(old, v))
                        bm[c] = max(old, v)
                        tot[c] += v
                lo = bm[0]
                hi_ = bm[0]
                for c in range(S):
                    total += tot[c]
                    lo = min(lo, bm[c])
                    hi_ = max(hi_, bm[c])
                for _ in range(64):  # invariant: at least k block maxima >= lo
                    mid = np.float32(0.5) * (lo + hi_)
                    if mid <= lo or mid >= hi_:
                        break
                    cnt = 0
                    for c in range(S):
                        cnt += bm[c] >= mid
                    if cnt >= k:
                        lo = mid
                        if cnt <= k + slack:
                            break
                    else:
                        hi_ = mid
                thr = lo  # <= k-th largest block maximum <= k-th largest value
                for c in range(S):
                    if bm[c] >= thr:
                        a = arg[c]
                        cv[n] = bm[c]
                        ci[n] = a * S + c
                        n += 1
                        if sm[c] >= thr:  # another value of this block may be in the top k
                            for t in range(BLOCK):
                                j = t * S + c
                                v = at(row, j) + bias[j]
                                if t != a and v >= thr:
                                    cv[n] = v
                                    ci[n] = j
                                    n += 1
                for j in range(S * BLOCK, m):  # the ragged tail, directly
                    v = at(row, j) + bias[j]
                    total += v
                    if v >= thr:
                        cv[n] = v
                        ci[n] = j
                        n += 1
            if n < k:  # small rows, or NaN defeated the prefilter: plain selection over the row
                total = np.float32(0.0)
                for j in range(m):
                    cv[j] = at(row, j) + bias[j]
                    ci[j] = j
                    total += cv[j]
                n = m
            _heap_select(cv, ci, n, k, hv, hi)
            if sort:
                _sort_desc(hv, hi, k)
            out_sum[b] = total


@njit(parallel=True, fastmath=True, cache=True)
def count_above(pre, bias, cut, out, nth):  # pragma: no cover - compiled
    """out[b] = how many entries of pre[b] + bias (B, m) are >= ``cut``: one vectorised pass per row.

    ``pre`` float32, or uint16 bfloat16 bit patterns. :func:`collect_above` and :func:`fill_kept` form the
    same sums and compare them the same way, so their counts agree with these to the last entry.
    """
    B, m = pre.shape
    chunk = (B + nth - 1) // nth
    for th in prange(nth):
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            row = pre[b]
            n = 0
            for j in range(m):
                n += at(row, j) + bias[j] >= cut
            out[b] = n


@njit(parallel=True, fastmath=True, cache=True)
def collect_above(pre, bias, cut, ptr, out_v, nth):  # pragma: no cover - compiled
    """out_v[ptr[b]:ptr[b + 1]] = the entries of pre[b] + bias (B, m) that are >= ``cut``, in column order.

    ``ptr``: the prefix sums of :func:`count_above`'s counts for the same ``bias`` and ``cut``. BatchTopK's exact
    batch threshold is then a selection among these few candidates, not among all B·m values.
    """
    B, m = pre.shape
    chunk = (B + nth - 1) // nth
    for th in prange(nth):
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            row = pre[b]
            p = ptr[b]
            end = ptr[b + 1]
            for j in range(m):
                v = at(row, j) + bias[j]
                if v >= cut and p < end:
                    out_v[p] = v
                    p += 1


@njit(parallel=True, fastmath=True, cache=True)
def fill_kept(pre, bias, cut, counts, out_v, out_i, nth):  # pragma: no cover - compiled
    """Row b of (out_v, out_i) (B, w) = the entries of pre[b] + bias that are >= ``cut``, in column order,
    then zero values at the row's first columns below the cut (distinct latents: a scatter stays exact).

    ``counts[b]``: how many entries of row b reach the cut (<= w; :func:`count_above`). One pass over each row:
    the codes of the batch and threshold rules without a TopK as wide as the busiest row.
    """
    B, m = pre.shape
    w = out_v.shape[1]
    chunk = (B + nth - 1) // nth
    for th in prange(nth):
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            row = pre[b]
            ov = out_v[b]
            oi = out_i[b]
            p = 0
            q = counts[b]
            for j in range(m):
                v = at(row, j) + bias[j]
                if v >= cut:
                    if p < w:
                        ov[p] = v
                        oi[p] = j
                        p += 1
                elif q < w:
                    ov[q] = 0.0
                    oi[q] = j
                    q += 1
