"""Sparse TopK encode/decode with hand-written backward passes, and the dense reference.

Per sample the encoder GEMM costs 2·d·m FLOPs; everything after TopK touches
only k latents (Gao et al. 2024, sec. 5). So:

* decode is an ``embedding_bag`` of k decoder rows weighted by the values;
* the encoder's backward builds its weight gradient from the k selected rows
  only (an ``embedding_bag`` backward, i.e. an index-add without a (B·k, d)
  temporary), and the input gradient is again a k-row gather.

Neither direction ever holds a dense (B, m) gradient. :func:`dense_encode` and
:func:`dense_decode` are the plain autograd version kept as the reference the
tests compare against.

On CPU (float32 parameters, an fp32 or bf16 GEMM), with Numba installed,
:func:`sparse_forward` runs the whole training forward/backward as one function on
the kernels of :mod:`.cpu_kernels`: the GEMM writes into a reused workspace (a fresh
(B, m) buffer costs page faults worth a sixth of the GEMM), TopK is selected by block
maxima (reading bf16 output as bit patterns), decoding also forms the residual and the
squared error (so the loss gradient costs no pass of its own), and both weight
gradients come from one counting sort of the selected ids. ``set_backend("torch")``
(or ``INCEPTION_SAE_KERNELS=torch``) forces the stock-PyTorch path everywhere.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_kernels as _cpu
from .selection import Rule, _bits, as_rule, prefix_groups, select, topk_biased

_topk_biased = topk_biased  #: the CPU TopK kernel's entry point (selection.topk_biased)

BACKENDS = ("auto", "torch")
#: Picks the backend while :func:`set_backend` has not been called; read each time it is needed.
BACKEND_ENV = "INCEPTION_SAE_KERNELS"
_backend: str | None = None  #: set by :func:`set_backend`
_local = threading.local()  #: per-thread (B, m) workspace: the site's live server encodes from several threads
_grad_pool: dict[tuple, list[Tensor]] = {}


def set_backend(name: str) -> None:
    """ "auto": Numba CPU kernels where they apply (CPU, float32); "torch": stock PyTorch ops only."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    """The backend set by :func:`set_backend`, else ``$INCEPTION_SAE_KERNELS``, else "auto"."""
    return _backend or os.environ.get(BACKEND_ENV, "auto")


def _cpu_kernels_apply(*tensors: Tensor | None) -> bool:
    return get_backend() == "auto" and all(
        t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors
    )


_WORKSPACES = 2  #: (B, m) buffers kept per thread: the main encoder's and AuxK's dead-latent one


def _buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A (B, m) scratch tensor reused across calls of the same shape (never returned to callers).

    Each thread keeps its ``_WORKSPACES`` most recently used shapes, so a training step that
    alternates the main GEMM with AuxK's (B, n_dead) one does not free and re-fault the big
    buffer every step (~37 ms at (4096, 8448)).
    """
    key = (shape, dtype, device)
    cache = getattr(_local, "bufs", None)
    if cache is None:
        cache = _local.bufs = {}
    buf = cache.pop(key, None)  # re-inserted below: dict order is the recency order
    if buf is None:
        while len(cache) >= _WORKSPACES:  # free the least recently used before allocating
            del cache[next(iter(cache))]
        buf = torch.empty(shape, dtype=dtype, device=device)
    cache[key] = buf
    return buf


def _new_grad(shape: tuple[int, ...]) -> Tensor:
    """An uninitialised float32 gradient buffer, recycled from :func:`recycle_grads` when one fits.

    Fresh (m, d) buffers cost page faults on every step (the allocator returns large blocks
    to the OS); a recycled one is handed to autograd with no other reference, so it
    becomes ``param.grad`` without a copy.
    """
    pool = _grad_pool.get(shape)
    return pool.pop() if pool else torch.empty(shape)


def recycle_grads(params) -> None:
    """Like ``zero_grad(set_to_none=True)``, keeping the float32 CPU buffers for the next backward."""
    for p in params:
        g = p.grad
        p.grad = None
        if g is not None and g.device.type == "cpu" and g.dtype == torch.float32 and g.is_contiguous():
            pool = _grad_pool.setdefault(tuple(g.shape), [])
            if len(pool) < 4:
                pool.append(g)


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
        vals, idx = _encode_topk(x_c, enc, b_enc, k, compute_dtype, sort)
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


def _encode_topk(
    x_c: Tensor, enc: Tensor, b_enc: Tensor, k: int | Rule, compute_dtype, sort: bool, x_low: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """ReLU(TopK(x_c W^T + b_enc)) as (B, k) float values and int64 indices; the GEMM is the dominant cost.

    ``k`` a :class:`~.selection.Rule`: its selection instead (BatchTopK, a threshold), (B, w) codes.
    ``x_low``: ``x_c`` already cast to ``compute_dtype`` (the fused path keeps it for its backward).
    """
    B, m = x_c.shape[0], enc.shape[0]
    rule = as_rule(k)
    if compute_dtype is None or compute_dtype == enc.dtype:
        if _cpu_kernels_apply(x_c, enc, b_enc):
            pre = torch.mm(x_c.detach(), enc.detach().t(), out=_buffer((B, m), enc.dtype, enc.device))
            return select(pre, b_enc.detach(), rule, sort, cpu=True)
        pre = torch.addmm(b_enc, x_c, enc.t())  # (B, m)
        return select(pre, None, rule, sort, cpu=False)
    if compute_dtype == torch.bfloat16 and _cpu_kernels_apply(x_c, enc, b_enc):  # bf16 GEMM, float32 bias
        x16 = x_c.detach().to(compute_dtype) if x_low is None else x_low
        w16 = enc.detach().to(compute_dtype)
        pre = torch.mm(x16, w16.t(), out=_buffer((B, m), compute_dtype, enc.device))
        return select(pre, b_enc.detach(), rule, sort, cpu=True)
    # low-precision GEMM and selection; only the (B, k) kept values return to float32
    out = _buffer((B, m), compute_dtype, enc.device) if enc.device.type == "cpu" else None
    pre = torch.addmm(b_enc.to(compute_dtype), x_c.to(compute_dtype), enc.to(compute_dtype).t(), out=out)
    return select(pre, None, rule, sort, cpu=False)


class TopKSAEFunction(torch.autograd.Function):
    """x_hat, values, indices, sq_err, parts = the SAE on ``x`` in one function: the CPU kernels' training path.

    ``sq_err`` = sum((x_hat - x)^2), formed with the decoding (``cpu_kernels.decode_residual``):
    a loss built on it costs no extra pass forward or backward, because its gradient
    2 sq_err' (x_hat - x) reaches the weight kernel as a scale on the saved residual.
    ``dec`` is None for a fully tied SAE (the decoder is ``enc``). Backward: one counting sort
    of the selected ids, then one pass per latent (``cpu_kernels.backward_rows``) gives the
    ReLU-gated per-value gradient and the latent's encoder row, decoder row and encoder-bias
    gradient; b_dec's gradient is ``sum(dL/dx_hat) - grad_b_enc @ enc`` (the encoder's
    -b_dec term, without a gather).

    Matryoshka (``grp`` (m,), each latent's group of G nested prefixes): ``sq_err`` is the mean over
    the prefixes of the squared error of the reconstruction from that prefix alone
    (``cpu_kernels.decode_nested``), ``parts`` (G,) those errors (float64, not differentiable); a
    group-g latent's gradient reads the summed residuals of prefixes g..G-1. Otherwise ``parts`` is
    the one full error.
    """

    @staticmethod
    def forward(ctx, x, enc, dec, b_enc, b_dec, k: int | Rule, compute_dtype, grp: Tensor | None = None):
        x_c = (x - b_dec).contiguous()
        bf16 = compute_dtype == torch.bfloat16
        x16 = x_c.detach().to(torch.bfloat16) if bf16 else None
        vals, idx = _encode_topk(x_c, enc, b_enc, k, compute_dtype, False, x_low=x16)
        W = enc if dec is None else dec
        (B, d), nth = x.shape, _cpu.set_threads(torch.get_num_threads())
        G = 1 if grp is None else int(grp.max()) + 1
        x_hat, R, rsum = torch.empty(B, d), torch.empty(G, B, d), torch.empty(d, dtype=torch.float64)
        R16 = torch.empty((G, B, d) if bf16 else (0, 0, 0), dtype=torch.bfloat16)
        xs = x.detach().contiguous().numpy()
        if grp is None:
            parts = torch.tensor([_cpu.decode_residual(
                idx.numpy(), vals.numpy(), W.detach().numpy(), b_dec.detach().numpy(), xs,
                x_hat.numpy(), R[0].numpy(), _bits(R16[0] if bf16 else R16.view(0, 0)), rsum.numpy(), nth,
            )], dtype=torch.float64)  # fmt: skip
        else:
            parts = torch.empty(G, dtype=torch.float64)
            _cpu.decode_nested(
                idx.numpy(), vals.numpy(), grp.numpy(), W.detach().numpy(), b_dec.detach().numpy(), xs,
                x_hat.numpy(), R.numpy(), _bits(R16), rsum.numpy(), parts.numpy(), nth,
            )  # fmt: skip
        ctx.save_for_backward(x_c, enc, dec, idx, vals, R)
        ctx.rsum, ctx.G = rsum, G
        ctx.grp = torch.zeros(enc.shape[0], dtype=torch.int64) if grp is None else grp
        # autocast's rule for the weight-gradient products: bf16 inputs, float32 accumulation.
        # The backward's random batch-row reads are its cost, and bf16 rows halve them.
        ctx.low = (x16, R16) if bf16 else None
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(idx, parts)
        return x_hat, vals, idx, parts.mean().float(), parts

    @staticmethod
    def backward(ctx, g_xhat, g_vals, _g_idx, g_sq, _g_parts):
        x_c, enc, dec, idx, vals, R = ctx.saved_tensors
        tied = dec is None
        W = enc if tied else dec
        (B, k), (m, d) = idx.shape, enc.shape
        coef = 0.0 if g_sq is None else 2.0 * float(g_sq) / ctx.G  # d sq_err / d x_hat_i = 2 r_i / G
        rows = x_c.numpy()
        if g_xhat is None:  # the usual case: the loss is sq_err, x_hat itself feeds nothing differentiable
            gx, gscale, gx_sum = R.numpy(), coef, ctx.rsum.float() * coef
            if ctx.low is not None:
                rows, gx = _bits(ctx.low[0]), _bits(ctx.low[1])
        else:  # every latent is in the full reconstruction x_hat
            gfull = g_xhat.float().unsqueeze(0).expand(ctx.G, B, d)
            gfull = (gfull + coef * R if coef else gfull).contiguous()
            gscale, gx_sum, gx = 1.0, gfull[0].sum(0), gfull.numpy()
        # only the entries of nonzero value are read or written (build_csr leaves out the others): a BatchTopK
        # batch's (B, w) codes are mostly padding early in training, and zeroing them costs a pass
        gext = torch.zeros(1, 1) if g_vals is None else g_vals.float().contiguous()
        ptr, order = _cpu.build_csr(idx.numpy(), vals.numpy(), m)
        g = torch.zeros(B, k) if ctx.needs_input_grad[0] else torch.empty(B, k)
        grad_enc = _new_grad((m, d))
        grad_dec = grad_enc if tied else _new_grad((m, d))
        grad_b_enc = _new_grad((m,))
        _cpu.set_threads(torch.get_num_threads())
        _cpu.backward_rows(
            ptr, order, k, W.detach().numpy(), vals.numpy(), gext.numpy(), g_vals is not None, rows, gx,
            ctx.grp.numpy(), gscale, g.numpy(), grad_enc.numpy(), grad_dec.numpy(), grad_b_enc.numpy(), tied,
        )  # fmt: skip
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(idx, enc.detach(), per_sample_weights=g, mode="sum")
            if coef:
                grad_x -= coef * R[0]  # sq_err's own -x term
        grad_b_dec = gx_sum - grad_b_enc @ enc.detach() if ctx.needs_input_grad[4] else None
        return grad_x, grad_enc, None if tied else grad_dec, grad_b_enc, grad_b_dec, None, None, None


def remove_parallel_rows(grad: Tensor, w: Tensor) -> None:
    """In place: grad[i] -= <grad[i], w[i]> w[i] for unit-norm rows w[i] (one pass on CPU)."""
    if _cpu_kernels_apply(grad, w) and grad.is_contiguous() and w.is_contiguous():
        _cpu.set_threads(torch.get_num_threads())
        _cpu.remove_parallel(grad.numpy(), w.detach().numpy())
    else:
        grad -= (grad * w).sum(1, keepdim=True) * w


def batch_moments(x: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(scale * x, its column sums (d,), its sum of squares ()) for ``x`` (B, d); the sums in float64.

    One pass on CPU (the scaled batch is ``x`` itself when ``scale`` is 1). The sum of squares is
    non-finite when ``x`` holds a NaN or inf.
    """
    x = x.detach()
    if _cpu_kernels_apply(x) and x.is_contiguous():
        s = torch.empty(x.shape[1], dtype=torch.float64)
        out = torch.empty_like(x) if scale != 1.0 else torch.empty(0, 0)
        nth = _cpu.set_threads(torch.get_num_threads())
        sq = _cpu.moments(x.numpy(), scale, out.numpy(), s.numpy(), nth)
        return (out if scale != 1.0 else x), s, torch.tensor(sq, dtype=torch.float64)
    if scale != 1.0:
        x = x * scale
    x64 = x.double()
    return x, x64.sum(0), (x64 * x64).sum()


def normalize_rows_(w: Tensor, eps: float = 1e-12) -> None:
    """In place: w[i] /= max(||w[i]||, eps) (one pass on CPU)."""
    if _cpu_kernels_apply(w) and w.is_contiguous():
        _cpu.set_threads(torch.get_num_threads())
        _cpu.normalize_rows(w.detach().numpy(), eps)
    else:
        w /= w.norm(dim=1, keepdim=True).clamp_min(eps)


def sparse_forward(
    x: Tensor,
    enc: Tensor,
    dec: Tensor | None,
    b_enc: Tensor,
    b_dec: Tensor,
    k: int | Rule,
    compute_dtype=None,
    prefixes: tuple[int, ...] | None = None,
) -> tuple[Tensor, Codes, Tensor | None, Tensor | None]:
    """Training forward: (x_hat, codes, sq_err, parts) of ``x`` (B, d). ``dec`` None means tied to ``enc``.

    One fused function with the CPU kernels' backward where they apply (``sq_err``, the
    differentiable sum((x_hat - x)^2), comes with it), else the composition of
    :func:`sparse_encode` and :func:`sparse_decode` (``sq_err`` None). ``prefixes`` (Matryoshka):
    ``sq_err`` is the mean over the nested prefixes of the squared error of each prefix's own
    reconstruction, ``parts`` (G,) those errors, detached; both paths decode sparsely.
    """
    if _cpu_kernels_apply(x, enc, dec, b_enc, b_dec):
        grp = None if prefixes is None or len(prefixes) < 2 else prefix_groups(prefixes, enc.shape[0])
        x_hat, vals, idx, sq_err, parts = TopKSAEFunction.apply(x, enc, dec, b_enc, b_dec, k, compute_dtype, grp)
        return x_hat, Codes(vals, idx), sq_err, None if grp is None else parts
    codes = sparse_encode(x, enc, b_enc, b_dec, k, compute_dtype)
    W = enc if dec is None else dec
    x_hat = sparse_decode(codes.values, codes.indices, W) + b_dec
    if prefixes is None or len(prefixes) < 2:
        return x_hat, codes, None, None
    errs = []
    for size in prefixes[:-1]:  # each prefix's reconstruction: the codes of its latents only
        part = sparse_decode(codes.values * (codes.indices < size), codes.indices, W) + b_dec
        errs.append((part - x).pow(2).sum())
    errs.append((x_hat - x).pow(2).sum())
    sq = torch.stack(errs)
    return x_hat, codes, sq.mean(), sq.detach().double()


def sparse_encode(
    x: Tensor, enc: Tensor, b_enc: Tensor, b_dec: Tensor, k: int | Rule, compute_dtype=None, sort: bool = False
) -> Codes:
    """TopK codes of ``x`` (B, d) through the sparse autograd path (``k`` a Rule: that selection)."""
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
