"""Numba CPU kernels for the SAE hot path: TopK selection and the sparse weight gradients.

Stock PyTorch ops on CPU cost as much as a sixth of the encoder GEMM each for the
steps around it (``torch.topk`` over (B, m); the sort inside ``embedding_bag``'s
weight-gradient backward, twice). These kernels do the same maths with less work:

* :func:`topk_rows` (in :mod:`.cpu_topk`) selects by block maxima: one vertically
  vectorised pass over the row plus O(k) work, instead of a selection over m.
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

import numpy as np
from numba import njit, prange

from .cpu_topk import BLOCK, collect_above, count_above, fill_kept, topk_rows
from .numba_ops import at, f32_to_bf16_bits, prefetch_row, set_threads, sum_parts

__all__ = [
    "BLOCK",
    "backward_rows",
    "build_csr",
    "collect_above",
    "count_above",
    "decode_nested",
    "decode_residual",
    "fill_kept",
    "moments",
    "normalize_rows",
    "remove_parallel",
    "set_threads",
    "topk_rows",
]

PREFETCH_AHEAD = 4  #: gathered rows requested this many rows before they are used


@njit(cache=True)
def build_csr(idx, vals, m):  # pragma: no cover - compiled
    """Counting sort of the flat entries of ``idx`` (B, k) by latent: (ptr (m+1,), order (<= B·k,)).

    Entries whose value is 0 (ReLU-closed, or the padding of BatchTopK's rows) are left out: they add
    nothing to any gradient, and a BatchTopK batch can hold many of them.
    """
    flat = idx.ravel()
    vf = vals.ravel()
    n = flat.size
    ptr = np.zeros(m + 1, np.int64)
    for e in range(n):
        if vf[e] > 0:
            ptr[flat[e] + 1] += 1
    for i in range(m):
        ptr[i + 1] += ptr[i]
    fill = ptr[:-1].copy()
    order = np.empty(ptr[m], np.int64)
    for e in range(n):
        if vf[e] > 0:
            i = flat[e]
            order[fill[i]] = e
            fill[i] += 1
    return ptr, order


@njit(parallel=True, fastmath=True, cache=True)
def backward_rows(  # pragma: no cover - compiled
    ptr, order, k, W, vals, gvals, has_gvals, xc, gx, grp, gscale, out_g, out_enc, out_dec, out_benc, tied
):
    """The SAE's weight gradients, one latent row at a time.

    For each latent i and each entry e = (b, j) that selected it (idx[b, j] == i, b = e // k;
    ascending e, as a sequential index-add would), with the reconstruction's gradient
    G = gscale * gx (the scale is applied on the fly: the loss's gradient is a multiple of
    the residual, which then needs no pass of its own):

    * g[e] = (<W[i], G[b]> + gvals[e]) * (vals[e] > 0) (gvals read only if ``has_gvals``): the gradient
      reaching the kept pre-activation (decoder row W, ReLU gate); written to ``out_g`` (B, k);
    * out_enc[i] = sum g[e] xc[b]; out_dec[i] = sum vals[e] G[b]; out_benc[i] = sum g[e].

    ``gx`` is (G, B, d): latent i reads ``gx[grp[i]]`` (G = 1 and ``grp`` all zero but for a
    Matryoshka SAE, whose latent reads the summed residuals of the prefixes it belongs to).
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
        gxi = gx[grp[i]]
        # float32 accumulators in fresh arrays: no aliasing with the inputs, so LLVM vectorises
        # (a float64 ``0.0`` accumulator, numba's default, costs half the speed)
        ae = np.zeros(d, np.float32)
        ad = np.zeros(d, np.float32)
        s = zero
        for p in range(ptr[i], ptr[i + 1]):
            e = order[p]
            b = e // k
            xb = gxi[b]
            dot = zero
            for t in range(d):
                dot += w[t] * at(xb, t)
            c = vf[e]
            a = (gs * dot + (gvf[e] if has_gvals else zero)) if c > 0 else zero
            gf[e] = a
            s += a
            xa = xc[b]
            cs = c * gs
            if tied:
                for t in range(d):
                    ae[t] += a * at(xa, t) + cs * at(xb, t)
            else:
                for t in range(d):
                    ae[t] += a * at(xa, t)
                    ad[t] += cs * at(xb, t)
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
    vf = vals.ravel()
    n_all = idf.size
    chunk = (B + nth - 1) // nth
    part = np.zeros((nth, d + 1), np.float64)  # per thread: column sums of r, then the sum of r^2
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
                if q < n_all and vf[q] != 0:  # a padding entry's row is never read
                    prefetch_row(Wf, idf[q] * d, d)
                c = vals[b, j]
                if c == 0:  # ReLU-closed, or BatchTopK's padding
                    continue
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
                    r16[t] = f32_to_bf16_bits(rb[t])
        part[th, :d] = acc
        part[th, d] = sq
    return sum_parts(part, out_rsum)


@njit(parallel=True, fastmath=True, cache=True)
def decode_nested(idx, vals, grp, W, b_dec, x, out_xhat, out_R, out_R16, out_rsum, out_sq, nth):  # pragma: no cover
    """The Matryoshka decoding: :func:`decode_residual` for G nested prefixes of the latents at once.

    ``grp`` (m,) gives each latent's group g (latents of prefix i = groups 0..i). With r_i = the residual
    of the reconstruction from prefix i alone (B, d), it writes out_xhat = the full reconstruction,
    out_R[g] = sum_{i >= g} r_i (the residual a group-g latent's gradient reads: it is in prefixes g..G-1),
    out_rsum = the column sums of out_R[0], out_R16 (unless empty) = out_R as bfloat16 bit patterns, and
    out_sq[i] = sum r_i^2 (G,). Each row gathers its k decoder rows once.
    """
    B, k = idx.shape
    G, d = out_R.shape[0], W.shape[1]
    chunk = (B + nth - 1) // nth
    part = np.zeros((nth, d + G), np.float64)
    low = out_R16.shape[0] > 0
    for th in prange(nth):
        acc = np.zeros(d, np.float32)
        sq = np.zeros(G, np.float64)
        P = np.empty((G, d), np.float32)  # per-group partial decodings of one row
        r = np.empty((G, d), np.float32)
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            P[:] = 0.0
            for j in range(k):
                c = vals[b, j]
                if c == 0:
                    continue
                w = W[idx[b, j]]
                pg = P[grp[idx[b, j]]]
                for t in range(d):
                    pg[t] += c * w[t]
            xb = x[b]
            ob = out_xhat[b]
            for t in range(d):
                ob[t] = b_dec[t]
            for i in range(G):
                row_sq = np.float32(0.0)
                for t in range(d):
                    ob[t] += P[i, t]
                    e = ob[t] - xb[t]
                    r[i, t] = e
                    row_sq += e * e
                sq[i] += row_sq
            for i in range(G - 2, -1, -1):  # suffix sums: out_R[g] = r_g + ... + r_{G-1}
                for t in range(d):
                    r[i, t] += r[i + 1, t]
            for i in range(G):
                Rb = out_R[i, b]
                for t in range(d):
                    Rb[t] = r[i, t]
                if low:
                    R16 = out_R16[i, b]
                    for t in range(d):
                        R16[t] = f32_to_bf16_bits(r[i, t])
            for t in range(d):
                acc[t] += r[0, t]
        part[th, :d] = acc
        part[th, d:] = sq
    for t in range(d):
        s = 0.0
        for th in range(nth):
            s += part[th, t]
        out_rsum[t] = s
    for i in range(G):
        s = 0.0
        for th in range(nth):
            s += part[th, d + i]
        out_sq[i] = s


@njit(inline="always", fastmath=True, cache=True)
def _dot(a, b):  # pragma: no cover - compiled
    """float32 dot product of two rows (inlined into the row kernels)."""
    s = np.float32(0.0)
    for t in range(a.shape[0]):
        s += a[t] * b[t]
    return s


@njit(parallel=True, fastmath=True, cache=True)
def remove_parallel(grad, w):  # pragma: no cover - compiled
    """In place, per row: grad[i] -= <grad[i], w[i]> w[i] (w's rows unit-norm)."""
    m, d = grad.shape
    for i in prange(m):
        g, r = grad[i], w[i]
        s = _dot(g, r)
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
    return sum_parts(part, out_s)


@njit(parallel=True, fastmath=True, cache=True)
def normalize_rows(w, eps):  # pragma: no cover - compiled
    """In place: w[i] /= max(||w[i]||, eps)."""
    m, d = w.shape
    for i in prange(m):
        r = w[i]
        inv = np.float32(1.0) / max(np.sqrt(_dot(r, r)), np.float32(eps))
        for t in range(d):
            r[t] *= inv
