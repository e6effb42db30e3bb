"""The path from an upstream layer to the next inception block, exact and linearised.

"Expanded weights" (Distill, *Visualizing Weights*): replace every ReLU by the
identity and every max pool by an average pool; the path becomes linear and its
Jacobian at one output position is a spatial kernel ``[out, in, h, w]``. LRN
(only on the stem path) is linearised at zero: ``x / k**beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError
from ..models.inception_v1 import LRN_BETA, LRN_K, ConvReLU, InceptionBlock, InceptionV1
from ..models.layers import STAGE_NAMES, STAGES, tf_same_pad

#: Downstream grid side used for kernels, by chain stride: the centre unit's
#: whole receptive field (+-2 downstream pixels, +-5 upstream after a stride-2
#: pool) lies inside the grid, so no padding reaches it.
GRID = {1: 5, 2: 7}


@dataclass(frozen=True)
class Chain:
    """Stages after ``upstream`` up to and including the block ``downstream``."""

    upstream: str
    downstream: str
    stages: tuple[tuple[str, str], ...]  #: (name, kind) with kind maxpool | lrn | mixed

    @property
    def stride(self) -> int:
        """Upstream pixels per downstream pixel."""
        return 2 ** sum(kind == "maxpool" for _, kind in self.stages)

    @property
    def grid(self) -> int:
        """Downstream grid side for kernels (see ``GRID``)."""
        return GRID[self.stride]

    @property
    def centre(self) -> int:
        """Upstream-grid row/column of the downstream centre unit (a stride-2 pool window is centred at 2k+1)."""
        return (self.grid // 2) * self.stride + self.stride // 2

    @property
    def only_block(self) -> bool:
        """True when nothing but the block lies between: the 1x1 branch is then exactly linear."""
        return len(self.stages) == 1


def make_chain(upstream: str, downstream: str) -> Chain:
    """Validate that ``downstream`` is the next inception block after ``upstream``."""
    for name in (upstream, downstream):
        if name not in STAGE_NAMES:
            raise UserError(f"{name!r} is not a top-level layer; circuits connect layers like mixed4b -> mixed4c")
    kinds = {s[0]: s[1] for s in STAGES}
    if kinds[downstream] != "mixed":
        raise UserError(f"downstream layer {downstream} must be an inception block (mixed3a..mixed5b)")
    i, j = STAGE_NAMES.index(upstream), STAGE_NAMES.index(downstream)
    between = [(n, kinds[n]) for n in STAGE_NAMES[i + 1 : j]]
    if j <= i or any(k not in ("maxpool", "lrn") for _, k in between):
        raise UserError(
            f"{upstream} -> {downstream} are not consecutive layers (only max pools / LRN may lie between); "
            "run circuits one block at a time"
        )
    return Chain(upstream, downstream, (*between, (downstream, "mixed")))


def _conv(cr: ConvReLU, x: Tensor, bias: bool) -> Tensor:
    """A branch convolution with SAME zero padding, pre-ReLU, optionally without bias."""
    if cr.kernel > 1:
        ph, pw = tf_same_pad(x.shape[-2], cr.kernel, 1), tf_same_pad(x.shape[-1], cr.kernel, 1)
        x = F.pad(x, (*pw, *ph))
    return F.conv2d(x, cr.conv.weight, cr.conv.bias if bias else None)


def avg_pool_same(x: Tensor, stride: int) -> Tensor:
    """The linearised 3x3 max pool: a 3x3 average (zero padding counted, as in the interior)."""
    ph, pw = tf_same_pad(x.shape[-2], 3, stride), tf_same_pad(x.shape[-1], 3, stride)
    return F.avg_pool2d(F.pad(x, (*pw, *ph)), 3, stride)


def linear_block(block: InceptionBlock, x: Tensor, bias: bool = False) -> Tensor:
    """The block with ReLU -> identity and max pool -> average pool: (B, d_in, H, W) -> (B, d_out, H, W)."""
    b3 = _conv(block.conv_3x3, _conv(block.conv_3x3_bottleneck, x, bias), bias)
    b5 = _conv(block.conv_5x5, _conv(block.conv_5x5_bottleneck, x, bias), bias)
    bp = _conv(block.conv_pool_reduce, avg_pool_same(x, 1), bias)
    return torch.cat([_conv(block.conv_1x1, x, bias), b3, b5, bp], dim=1)


def linear_chain(model: InceptionV1, chain: Chain, x: Tensor, bias: bool = False) -> Tensor:
    """Run the linearised chain from upstream activations to the downstream block output."""
    for name, kind in chain.stages:
        if kind == "maxpool":
            x = avg_pool_same(x, 2)
        elif kind == "lrn":
            x = x * LRN_K**-LRN_BETA  # d LRN / dx at x = 0
        else:
            x = linear_block(getattr(model, name), x, bias)
    return x


def exact_chain(model: InceptionV1, chain: Chain, x: Tensor) -> Tensor:
    """The true (nonlinear) block output from upstream activations."""
    return model.run(x, [chain.downstream], start=chain.upstream)[chain.downstream]


@dataclass
class Linearised:
    """Jacobians of the linearised chain at the centre of a small downstream map (``Chain.grid``)."""

    model: InceptionV1
    chain: Chain
    chunk: int = 512  #: downstream directions per backward pass

    @property
    def upstream_size(self) -> int:
        """Side of the upstream grid (S) that feeds the ``GRID``-wide downstream map."""
        return self.chain.grid * self.chain.stride

    @property
    def d_in(self) -> int:
        return self.model.layer_info(self.chain.upstream).channels

    @property
    def d_out(self) -> int:
        return block_out_channels(self.model, self.chain.downstream)

    def kernels(self, directions: Tensor) -> Tensor:
        """Gradient of ``directions . out[:, :, centre]`` w.r.t. the upstream map, by autograd.

        ``directions`` (n, d_out), e.g. encoder columns transposed -> (n, d_in, S, S)
        kernels on the upstream grid: entry [r, :, y, x] is the linear effect of
        upstream position (y, x) on direction r at the downstream centre.
        """
        out, c = [], self.chain.grid // 2
        for start in range(0, directions.shape[0], self.chunk):
            dirs = directions[start : start + self.chunk]
            S = self.upstream_size
            x = torch.zeros(dirs.shape[0], self.d_in, S, S, dtype=dirs.dtype, requires_grad=True)
            with torch.enable_grad():
                y = linear_chain(self.model, self.chain, x)[:, :, c, c]  # (n, d_out)
                (grad,) = torch.autograd.grad((y * dirs).sum(), x)
            out.append(grad)
        return torch.cat(out)

    @cached_property
    def summed(self) -> Tensor:
        """(d_out, d_in): the Jacobian summed over upstream positions (effect of a uniform input).

        Column k is the linearised chain's response at the centre to a unit of
        channel k written at every upstream position: a Jacobian-vector product
        with a uniform tangent (the chain is linear, so the forward pass is the
        JVP). Equal to ``kernels(...).sum((2, 3))`` (tested), at a third of the cost.
        """
        S, c = self.upstream_size, self.chain.grid // 2
        cols = []
        with torch.no_grad():
            for start in range(0, self.d_in, self.chunk):
                eye = torch.eye(self.d_in)[start : start + self.chunk]  # (n, d_in)
                x = eye[:, :, None, None].expand(-1, -1, S, S)
                cols.append(linear_chain(self.model, self.chain, x)[:, :, c, c].T)
        return torch.cat(cols, dim=1)


def crop_box(kernel: Tensor) -> tuple[slice, slice]:
    """Row and column slices of the non-zero support of (..., S, S) kernels."""
    mass = kernel.abs().reshape(-1, *kernel.shape[-2:]).sum(0)
    ys, xs = torch.nonzero(mass.sum(1)).flatten(), torch.nonzero(mass.sum(0)).flatten()
    if len(ys) == 0:
        c = kernel.shape[-1] // 2
        return slice(c, c + 1), slice(c, c + 1)
    return slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)


def block_out_channels(model: InceptionV1, name: str) -> int:
    """Concatenation width of a block."""
    b = getattr(model, name)
    return sum(cr.conv.weight.shape[0] for cr in (b.conv_1x1, b.conv_3x3, b.conv_5x5, b.conv_pool_reduce))


def one_by_one_matrix(model: InceptionV1, chain: Chain) -> Tensor:
    """(d_out, d_in): the 1x1 branch's weights placed in its concat slice, zeros elsewhere.

    Through the 1x1 branch the block is linear before its ReLU, so
    ``e_j^T M d_i`` is exactly the change of feature j's encoder pre-activation
    restricted to the 1x1 slice per unit of feature i written at the same position.
    """
    block = getattr(model, chain.downstream)
    w = block.conv_1x1.conv.weight[:, :, 0, 0]  # (c1, d_in)
    M = torch.zeros(block_out_channels(model, chain.downstream), w.shape[1])
    M[: w.shape[0]] = w
    scale = math.prod(LRN_K**-LRN_BETA for _, k in chain.stages if k == "lrn")
    return M * scale
