"""Sparse TopK encode/decode with hand-written backward passes, and the dense reference.

Per sample the encoder GEMM costs 2·d·m FLOPs; everything after TopK touches
only k latents (Gao et al. 2024, sec. 5). So:

* decode is an ``embedding_bag`` of k decoder rows weighted by the values;
* the encoder's backward builds its weight gradient from the k selected rows
  only (an ``embedding_bag`` backward, i.e. an index-add without a (B·k, d)
  temporary), and the input gradient is again a k-row gather.

Neither direction ever holds a dense (B, m) gradient. :func:`dense_forward` is
the plain autograd version kept as the reference the tests compare against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Codes(NamedTuple):
    """Sparse latent code of a batch."""

    values: Tensor  #: (B, k) non-negative activations (ReLU of the kept pre-activations)
    indices: Tensor  #: (B, k) int64 latent ids


def _row_index_add(indices: Tensor, weights: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    """out[indices[b, j]] += weights[b, j] * rows[b] -> (num_rows, d), without a (B·k, d) temporary.

    This is exactly the weight gradient of ``embedding_bag(indices, W, per_sample_weights=weights)``
    for an output gradient ``rows``, so we let that (parallel, gather-free) kernel do it.
    """
    w = torch.zeros(num_rows, rows.shape[1], dtype=rows.dtype, device=rows.device, requires_grad=True)
    with torch.enable_grad():
        y = F.embedding_bag(indices, w, per_sample_weights=weights.to(rows.dtype), mode="sum")
        (grad,) = torch.autograd.grad(y, w, rows)
    return grad


class TopKEncode(torch.autograd.Function):
    """values, indices = TopK(ReLU)(W (x - b_dec) + b_enc), with a sparse backward.

    Shapes: x (B, d), enc (m, d) (one row per latent), b_enc (m,), b_dec (d,).
    ``compute_dtype`` (e.g. bfloat16) is used for the one dense GEMM only; all
    gradients are accumulated in the parameters' dtype.
    """

    @staticmethod
    def forward(ctx, x, enc, b_enc, b_dec, k: int, compute_dtype, sort: bool):
        x_c = x - b_dec  # (B, d)
        if compute_dtype is None or compute_dtype == enc.dtype:
            pre = torch.addmm(b_enc, x_c, enc.t())  # (B, m), the dominant cost
        else:  # low-precision GEMM and selection; only the (B, k) kept values return to float32
            pre = torch.addmm(b_enc.to(compute_dtype), x_c.to(compute_dtype), enc.to(compute_dtype).t())
        vals, idx = pre.topk(k, dim=1, sorted=sort)
        del pre
        vals = vals.float().relu_()
        ctx.save_for_backward(x_c, enc, idx, vals)
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, g_vals, _g_idx):
        x_c, enc, idx, vals = ctx.saved_tensors
        g = torch.where(vals > 0, g_vals, torch.zeros_like(g_vals))  # (B, k) ReLU gate
        m = enc.shape[0]
        grad_x = grad_enc = grad_b_enc = grad_b_dec = None
        if ctx.needs_input_grad[1]:
            grad_enc = _row_index_add(idx, g, x_c, m)  # (m, d): only touched rows are non-zero
        if ctx.needs_input_grad[2]:
            grad_b_enc = torch.zeros(m, dtype=g.dtype, device=g.device).index_add_(0, idx.flatten(), g.flatten())
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[3]:
            grad_xc = F.embedding_bag(idx, enc, per_sample_weights=g.to(enc.dtype), mode="sum")  # (B, d)
            grad_x = grad_xc if ctx.needs_input_grad[0] else None
            grad_b_dec = -grad_xc.sum(0) if ctx.needs_input_grad[3] else None
        return grad_x, grad_enc, grad_b_enc, grad_b_dec, None, None, None


def sparse_encode(
    x: Tensor, enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int, compute_dtype=None, sort: bool = False
) -> Codes:
    """TopK codes of ``x`` (B, d) through the sparse autograd path."""
    vals, idx = TopKEncode.apply(x, enc, b_enc, b_dec, k, compute_dtype, sort)
    return Codes(vals, idx)


def sparse_decode(values: Tensor, indices: Tensor, dec: Tensor) -> Tensor:
    """sum_j values[:, j] * dec[indices[:, j]] -> (B, d); gathers k rows, never a (B, m) matrix."""
    return F.embedding_bag(indices, dec, per_sample_weights=values.to(dec.dtype), mode="sum")


def dense_encode(x: Tensor, enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int) -> tuple[Tensor, Codes]:
    """Reference: dense (B, m) code z by plain autograd, plus the same sparse view of it."""
    pre = (x - b_dec) @ enc.t() + b_enc
    vals, idx = pre.topk(k, dim=1, sorted=False)
    z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    return z, Codes(vals.relu(), idx)


def dense_decode(z: Tensor, dec: Tensor) -> Tensor:
    """Reference decode: the dense (B, m) x (m, d) product."""
    return z @ dec


def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm on (N, d) -> (d,); falls back to the mean if it does not settle.

    Gao et al. initialise b_dec here: it is robust to the heavy tails of post-ReLU activations.
    """
    x = x.double()
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-12)  # (N,)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if not torch.isfinite(y_new).all():
            return x.mean(0).float()
        if (y_new - y).norm() <= tol * y.norm().clamp_min(1e-12):
            return y_new.float()
        y = y_new
    return y.float()
