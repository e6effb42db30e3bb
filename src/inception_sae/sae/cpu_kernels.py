"""Numba CPU kernels for the SAE hot path: TopK selection and the sparse weight gradients.

Stock PyTorch ops on CPU cost as much as a sixth of the encoder GEMM each for the
steps around it (``torch.topk`` over (B, m); the sort inside ``embedding_bag``'s
weight-gradient backward, twice). These kernels do the same maths with less work:

* :func:`topk_rows` selects by block maxima: the k-th largest maximum of blocks of
  ``BLOCK`` values is a lower bound on the row's k-th largest value, so only the few
  values at or above it (the blocks' maxima, and the rare second value that reaches it)
  enter a k-heap. One vertically vectorised pass over the row plus O(k) work, instead
  of a selection over m; the pass runs at memory bandwidth.
* :func:`build_csr` counting-sorts the (B·k) selected latent ids once (O(B·k + m));
  :func:`backward_rows` then walks each latent's own entries and produces, in one
  pass with the latent's decoder row in cache, the decoder's per-value gradient
  ``<W_dec[i], dL/dx_hat>`` (ReLU-gated), the encoder row, the decoder row and the
  encoder-bias gradient. Each gradient row is written once: no zero-fill, no atomics.
* :func:`decode_residual` decodes, and forms the residual and the squared error, in one pass.
* :func:`remove_parallel` projects the decoder rows' gradients in place.
* :func:`moments` scales a batch and gives its float64 column sums and sum of squares (the
  FVU denominator) in one pass, without a float64 copy of the batch.
* :func:`normalize_rows` rescales the decoder rows to unit norm in place, one pass.

All kernels run in parallel over rows with Numba's threads. Importing this module
compiles nothing; the first call compiles (cached on disk by Numba).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

BLOCK = 32  #: values per block in the block-maximum prefilter
LINE = 16  #: float32 values per 64-byte cache line
PREFETCH_AHEAD = 4  #: gathered rows requested this many rows before they are used


@intrinsic
def _prefetch(typingctx, arr, i):
    """Ask the CPU to start loading the cache line of ``arr[i]`` (1-D array): no effect on results.

    Decoding gathers k decoder rows per sample from an array that lives in L3; fetching the
    next rows while the current one is being summed hides the latency, as FBGEMM's
    embedding-bag kernels do (~1 ms of ~5 at B=4096, k=32). The backward's batch-row reads
    gained nothing from it (measured, 1-4 entries ahead, 4-33 lines each).
    """

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@njit
def _prefetch_row(flat, start, d):  # pragma: no cover - compiled
    """Prefetch ``flat[start : start + d]``, one request per cache line."""
    for t in range(0, d, LINE):
        _prefetch(flat, start + t)


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


@intrinsic
def _bf16_bits_to_f32(typingctx, bits):
    """The float32 whose top half is the bfloat16 bit pattern ``bits`` (uint16): exact widening."""

    def codegen(context, builder, signature, args):
        wide = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(wide, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_to_bf16_bits(typingctx, v):
    """float32 -> bfloat16 bit pattern (uint16), rounding to nearest even (as ``Tensor.bfloat16()``)."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        odd = builder.and_(builder.lshr(bits, i32(16)), i32(1))
        rounded = builder.add(bits, builder.add(i32(0x7FFF), odd))
        return builder.trunc(builder.lshr(rounded, i32(16)), ir.IntType(16))

    return types.uint16(v), codegen


def _at(row, j):  # pragma: no cover - replaced by the overload below
    """row[j] as float32, for a float32 row or a row of bfloat16 bit patterns (uint16)."""


@overload(_at, inline="always")
def _at_impl(row, j):  # pragma: no cover - compiled
    if row.dtype == types.float32:
        return lambda row, j: row[j]
    if row.dtype == types.uint16:
        return lambda row, j: _bf16_bits_to_f32(row[j])
    return None


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
                    v0 = _at(row, c) + bias[c]
                    v1 = _at(row, S + c) + bias[S + c]
                    bm[c] = max(v0, v1)
                    sm[c] = min(v0, v1)
                    arg[c] = 1 if v1 > v0 else 0
                    tot[c] = v0 + v1
                for t in range(2, BLOCK):  # the one full pass over the row
                    base = t * S
                    for c in range(S):
                        v = _at(row, base + c) + bias[base + c]
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
                                v = _at(row, j) + bias[j]
                                if t != a and v >= thr:
                                    cv[n] = v
                                    ci[n] = j
                                    n += 1
                for j in range(S * BLOCK, m):  # the ragged tail, directly
                    v = _at(row, j) + bias[j]
                    total += v
                    if v >= thr:
                        cv[n] = v
                        ci[n] = j
                        n += 1
            if n < k:  # small rows, or NaN defeated the prefilter: plain selection over the row
                total = np.float32(0.0)
                for j in range(m):
                    cv[j] = _at(row, j) + bias[j]
                    ci[j] = j
                    total += cv[j]
                n = m
            _heap_select(cv, ci, n, k, hv, hi)
            if sort:
                _sort_desc(hv, hi, k)
            out_sum[b] = total


@njit(cache=True)
def build_csr(idx, m):  # pragma: no cover - compiled
    """Counting sort of the flat entries of ``idx`` (B, k) by latent: (ptr (m+1,), order (B·k,))."""
    flat = idx.ravel()
    n = flat.size
    ptr = np.zeros(m + 1, np.int64)
    for e in range(n):
        ptr[flat[e] + 1] += 1
    for i in range(m):
        ptr[i + 1] += ptr[i]
    fill = ptr[:-1].copy()
    order = np.empty(n, np.int64)
    for e in range(n):
        i = flat[e]
        order[fill[i]] = e
        fill[i] += 1
    return ptr, order


@njit(parallel=True, fastmath=True, cache=True)
def backward_rows(  # pragma: no cover - compiled
    ptr, order, k, W, vals, gvals, xc, gx, gscale, out_g, out_enc, out_dec, out_benc, tied
):
    """The SAE's weight gradients, one latent row at a time.

    For each latent i and each entry e = (b, j) that selected it (idx[b, j] == i, b = e // k;
    ascending e, as a sequential index-add would), with the reconstruction's gradient
    G = gscale * gx (the scale is applied on the fly: the loss's gradient is a multiple of
    the residual, which then needs no pass of its own):

    * g[e] = (<W[i], G[b]> + gvals[e]) * (vals[e] > 0): the gradient reaching the kept
      pre-activation (decoder row W, ReLU gate); written to ``out_g`` (B, k);
    * out_enc[i] = sum g[e] xc[b]; out_dec[i] = sum vals[e] G[b]; out_benc[i] = sum g[e].

    ``xc`` and ``gx`` are float32, or both uint16 bfloat16 bit patterns (half the bytes to
    fetch: the random row reads bound this kernel). W[i] and the row accumulators stay in L1
    while the entries stream; each gradient row
    is written once (no zero-fill, no atomics). ``tied``: ``out_dec`` is ``out_enc`` (the
    decoder is the encoder) and both terms land in one row.
    """
    m = ptr.size - 1
    d = xc.shape[1]
    vf = vals.ravel()
    gvf = gvals.ravel()
    gf = out_g.ravel()
    zero = np.float32(0.0)
    gs = np.float32(gscale)  # a float64 scale would turn the row loops into float64 (1.5x slower)
    for i in prange(m):
        w = W[i]
        # float32 accumulators in fresh arrays: no aliasing with the inputs, so LLVM vectorises
        # (a float64 ``0.0`` accumulator, numba's default, costs half the speed)
        ae = np.zeros(d, np.float32)
        ad = np.zeros(d, np.float32)
        s = zero
        for p in range(ptr[i], ptr[i + 1]):
            e = order[p]
            b = e // k
            xb = gx[b]
            dot = zero
            for t in range(d):
                dot += w[t] * _at(xb, t)
            c = vf[e]
            a = (gs * dot + gvf[e]) if c > 0 else zero
            gf[e] = a
            s += a
            xa = xc[b]
            cs = c * gs
            if tied:
                for t in range(d):
                    ae[t] += a * _at(xa, t) + cs * _at(xb, t)
            else:
                for t in range(d):
                    ae[t] += a * _at(xa, t)
                    ad[t] += cs * _at(xb, t)
        out_enc[i, :] = ae
        if not tied:
            out_dec[i, :] = ad
        out_benc[i] = s


@njit(parallel=True, fastmath=True, cache=True)
def decode_residual(idx, vals, W, b_dec, x, out_xhat, out_r, out_r16, out_rsum, nth):  # pragma: no cover - compiled
    """x_hat = b_dec + sum_j vals[:, j] W[idx[:, j]] and r = x_hat - x (B, d), in one pass.

    Also out_rsum (d,) = the column sums of r, for b_dec's gradient, and, unless it is empty,
    out_r16 (B, d) = r rounded to bfloat16 bit patterns; returns the float64 sum of r^2 (the
    squared error). ``nth``: Numba threads, one chunk of rows each.
    """
    B, k = idx.shape
    d = W.shape[1]
    Wf = W.ravel()
    idf = idx.ravel()
    n_all = idf.size
    chunk = (B + nth - 1) // nth
    part = np.zeros((nth, d), np.float32)
    sqs = np.zeros(nth, np.float64)
    low = out_r16.shape[0] > 0
    for th in prange(nth):
        acc = np.zeros(d, np.float32)  # thread-local, fresh: no aliasing, so the loops vectorise
        xh = np.empty(d, np.float32)
        sq = 0.0
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            for t in range(d):
                xh[t] = b_dec[t]
            for j in range(k):
                q = b * k + j + PREFETCH_AHEAD
                if q < n_all:
                    _prefetch_row(Wf, idf[q] * d, d)
                c = vals[b, j]
                w = W[idx[b, j]]
                for t in range(d):
                    xh[t] += c * w[t]
            xb = x[b]
            rb = out_r[b]
            ob = out_xhat[b]
            row_sq = np.float32(0.0)
            for t in range(d):
                r = xh[t] - xb[t]
                ob[t] = xh[t]
                rb[t] = r
                acc[t] += r
                row_sq += r * r
            sq += row_sq
            if low:
                r16 = out_r16[b]
                for t in range(d):
                    r16[t] = _f32_to_bf16_bits(rb[t])
        part[th, :] = acc
        sqs[th] = sq
    sq = 0.0
    for t in range(d):
        s = 0.0
        for th in range(nth):
            s += part[th, t]
        out_rsum[t] = s
    for th in range(nth):
        sq += sqs[th]
    return sq


@njit(parallel=True, fastmath=True, cache=True)
def remove_parallel(grad, w):  # pragma: no cover - compiled
    """In place, per row: grad[i] -= <grad[i], w[i]> w[i] (w's rows unit-norm)."""
    m, d = grad.shape
    for i in prange(m):
        g = grad[i]
        r = w[i]
        s = np.float32(0.0)
        for t in range(d):
            s += g[t] * r[t]
        for t in range(d):
            g[t] -= s * r[t]


@njit(parallel=True, fastmath=True, cache=True)
def moments(x, scale, out, out_s, nth):  # pragma: no cover - compiled
    """Column sums (float64, into out_s) and the float64 sum of squares (returned) of scale * x (B, d).

    Unless ``out`` is empty, it receives scale * x (the batch as the SAE sees it), in the same
    pass. A NaN or inf anywhere makes the returned sum non-finite.
    """
    B, d = x.shape
    chunk = (B + nth - 1) // nth
    part = np.zeros((nth, d + 1), np.float64)
    write = out.shape[0] > 0
    sc = np.float32(scale)
    for th in prange(nth):
        acc = part[th]
        sq = 0.0
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            row = x[b]
            if write:
                ob = out[b]
                for t in range(d):
                    ob[t] = row[t] * sc
                row = ob
            for t in range(d):
                v = np.float64(row[t])
                acc[t] += v
                sq += v * v
        acc[d] = sq
    out_s[:] = 0.0
    sq = 0.0
    for th in range(nth):
        for t in range(d):
            out_s[t] += part[th, t]
        sq += part[th, d]
    return sq


@njit(parallel=True, fastmath=True, cache=True)
def normalize_rows(w, eps):  # pragma: no cover - compiled
    """In place: w[i] /= max(||w[i]||, eps)."""
    m, d = w.shape
    for i in prange(m):
        r = w[i]
        s = np.float32(0.0)
        for t in range(d):
            s += r[t] * r[t]
        inv = np.float32(1.0) / max(np.sqrt(s), np.float32(eps))
        for t in range(d):
            r[t] *= inv


def set_threads(n: int) -> int:
    """Use ``n`` Numba threads (clamped to what Numba started with); returns the count used."""
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n
