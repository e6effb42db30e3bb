"""InceptionV1 as in the public ``inception5h`` graph (Lucid / Microscope / Circuits).

Faithful to the public graph: TF "SAME" padding computed from
the input size, LRN with the exact TF constants, ``x * 255 - 117``
preprocessing inside the model, true ReLU gradients, a global average pool, and
logits (not softmax) as the output. Inception blocks keep their four branches as
named sub-modules so that any branch can be captured by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnknownNameError
from .layers import (
    BLOCK_SPECS,
    NUM_CLASSES,
    STAGES,
    LayerInfo,
    layer_info,
    layer_names,
    stage_of,
    tf_same_pad,
    unknown_layer_message,
)

#: LRN after maxpool0 and conv2d2. TF: depth_radius 5, alpha 1e-4, beta 0.5,
#: bias 2; PyTorch divides alpha by the window size, hence alpha = 11 * 1e-4.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 11, 1.1e-3, 0.5, 2.0
#: Input preprocessing of inception5h: RGB in [0, 1] -> x * 255 - 117.
INPUT_SCALE, INPUT_MEAN = 255.0, 117.0


class RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward pass lets gradients through where the true one is zero.

    Lucid's trick for feature visualisation only: for a batch item whose ReLU
    gradient is entirely zero, pass the gradient for inputs below zero when it
    would push them up (towards firing). Never use it for attribution.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        relu_grad = grad * (x > 0)
        redirected = grad * ((x > 0) | (grad < 0))
        dead = relu_grad.flatten(1).abs().sum(1) == 0  # (B,)
        return torch.where(dead.view(-1, *[1] * (grad.dim() - 1)), redirected, relu_grad)


class ConvReLU(nn.Module):
    """Convolution with TF "SAME" padding computed from the input, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)
        self.kernel, self.stride = kernel, stride
        self.redirect = False

    def pre_relu(self, x: Tensor) -> Tensor:
        """The convolution's output before ReLU, (B, cout, H', W')."""
        if self.kernel > 1:
            ph = tf_same_pad(x.shape[-2], self.kernel, self.stride)
            pw = tf_same_pad(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (*pw, *ph))
        return self.conv(x)

    def forward(self, x: Tensor) -> Tensor:
        z = self.pre_relu(x)
        return RedirectedReLU.apply(z) if self.redirect else F.relu(z)


def max_pool_same(x: Tensor, kernel: int = 3, stride: int = 1) -> Tensor:
    """Max pool with TF "SAME" padding filled with -inf."""
    ph = tf_same_pad(x.shape[-2], kernel, stride)
    pw = tf_same_pad(x.shape[-1], kernel, stride)
    return F.max_pool2d(F.pad(x, (*pw, *ph), value=float("-inf")), kernel, stride)


def lrn(x: Tensor) -> Tensor:
    """TF's local response normalisation with inception5h's constants."""
    return F.local_response_norm(x, LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated in the order 1x1, 3x3, 5x5, pool."""

    def __init__(self, name: str) -> None:
        super().__init__()
        cin, c1, cb3, c3, cb5, c5, cp = BLOCK_SPECS[name]
        self.name = name
        self.conv_1x1 = ConvReLU(cin, c1, 1)
        self.conv_3x3_bottleneck = ConvReLU(cin, cb3, 1)
        self.conv_3x3 = ConvReLU(cb3, c3, 3)
        self.conv_5x5_bottleneck = ConvReLU(cin, cb5, 1)
        self.conv_5x5 = ConvReLU(cb5, c5, 5)
        self.conv_pool_reduce = ConvReLU(cin, cp, 1)

    def branches(self, x: Tensor) -> dict[str, Tensor]:
        """Every branch output and internal sub-layer, post-ReLU, by short name."""
        b3 = self.conv_3x3_bottleneck(x)
        b5 = self.conv_5x5_bottleneck(x)
        pool = self.conv_pool_reduce(max_pool_same(x))
        return {
            "1x1": self.conv_1x1(x),
            "3x3": self.conv_3x3(b3),
            "5x5": self.conv_5x5(b5),
            "pool": pool,
            "3x3_bottleneck": b3,
            "5x5_bottleneck": b5,
            "pool_reduce": pool,
        }

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches(x)
        return torch.cat([out["1x1"], out["3x3"], out["5x5"], out["pool"]], dim=1)


class InceptionV1(nn.Module):
    """InceptionV1 / GoogLeNet as in ``inception5h``: 1008 logits from RGB in [0, 1].

    ``model(x)`` returns logits; ``model.capture(x, layers)`` returns named
    post-ReLU activations and stops after the last one requested;
    ``model.forward_from(layer, acts)`` runs the rest of the network from a
    layer's activations (for splicing SAE reconstructions back in).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv2d0 = ConvReLU(3, 64, 7, stride=2)
        self.conv2d1 = ConvReLU(64, 64, 1)
        self.conv2d2 = ConvReLU(64, 192, 3)
        for name in BLOCK_SPECS:
            setattr(self, name, InceptionBlock(name))
        self.fc = nn.Linear(1024, NUM_CLASSES)
        #: Weights identity recorded in every artefact: "<file>:sha256:<hex>" or "random:<seed>".
        self.identity = "uninitialised"

    # -- metadata ---------------------------------------------------------------
    @property
    def is_random(self) -> bool:
        """True when the weights are a seeded random init (not the trained model)."""
        return self.identity.startswith("random:") or self.identity == "uninitialised"

    @staticmethod
    def layer_info(name: str, input_size: int = 224) -> LayerInfo:
        """Geometry and branch records of a layer (see :mod:`.layers`)."""
        return layer_info(name, input_size)

    @staticmethod
    def layer_names(include_branches: bool = True) -> list[str]:
        """Capturable layer names in forward order."""
        return layer_names(include_branches)

    def set_redirected_relu(self, enabled: bool) -> None:
        """Lucid-style redirected ReLU gradients (feature visualisation only)."""
        for m in self.modules():
            if isinstance(m, ConvReLU):
                m.redirect = enabled

    # -- forward ----------------------------------------------------------------
    def preprocess(self, x: Tensor) -> Tensor:
        """RGB in [0, 1] -> the model's input range [-117, 138]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        return x * INPUT_SCALE - INPUT_MEAN

    def _run_stage(self, name: str, kind: str, x: Tensor, want_branches: bool) -> tuple[Tensor, dict[str, Tensor]]:
        if kind == "conv":
            return getattr(self, name)(x), {}
        if kind == "maxpool":
            return max_pool_same(x, 3, 2), {}
        if kind == "lrn":
            return lrn(x), {}
        block: InceptionBlock = getattr(self, name)
        if not want_branches:
            return block(x), {}
        parts = block.branches(x)
        out = torch.cat([parts["1x1"], parts["3x3"], parts["5x5"], parts["pool"]], dim=1)
        return out, {f"{name}_{k}": v for k, v in parts.items()}

    def _head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pooled = x.mean(dim=(2, 3))  # global average pool: correct at any input size
        return pooled, self.fc(pooled)

    def run(
        self,
        x: Tensor,
        layers: Iterable[str] = ("logits",),
        *,
        start: str | None = None,
    ) -> dict[str, Tensor]:
        """Run the network and return the requested layers' activations.

        ``x`` is an image batch (B, 3, H, W) in [0, 1], or with ``start`` the
        activations of layer ``start`` (a top-level stage); the pass begins
        after it. The pass stops after the last requested layer.
        """
        wanted = list(dict.fromkeys(layers))
        if not wanted:
            raise ValueError("no layers requested")
        stages = [s[0] for s in STAGES] + ["avgpool", "logits"]
        for name in wanted:
            if name not in layer_names():
                raise UnknownNameError(unknown_layer_message(name))
        order = {s: i for i, s in enumerate(stages)}
        first = 0
        if start is not None:
            if start not in order:
                raise KeyError(f"start layer must be a top-level stage, got {start!r}")
            first = order[start] + 1
        last = max(order[stage_of(n)] for n in wanted)
        if last < first:
            raise ValueError(f"requested layers {wanted} come before the start layer {start!r}")
        branch_blocks = {stage_of(n) for n in wanted if stage_of(n) != n}
        out: dict[str, Tensor] = {}
        h = self.preprocess(x) if start is None else x
        for name, kind, *_ in STAGES[first : last + 1]:
            h, parts = self._run_stage(name, kind, h, name in branch_blocks)
            out[name] = h
            out.update(parts)
        if last >= order["avgpool"]:
            out["avgpool"], out["logits"] = self._head(h)
        return {n: out[n] for n in wanted}

    def capture(self, x: Tensor, layers: Sequence[str] | str) -> dict[str, Tensor]:
        """Post-ReLU activations of named layers, ``{name: (B, C, H, W)}``.

        Layer names: stem layers (``conv2d0``, ``maxpool1``...), mixed layers
        (``mixed4d``), branches (``mixed4d_5x5``), block internals
        (``mixed4d_5x5_bottleneck``), ``avgpool`` and ``logits``. No hooks are used,
        so none can be left behind.
        """
        return self.run(x, [layers] if isinstance(layers, str) else layers)

    def forward_from(self, layer: str, acts: Tensor, to: str = "logits") -> Tensor:
        """Continue the forward pass from ``layer``'s activations to layer ``to``."""
        return self.run(acts, [to], start=layer)[to]

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, 1008) for RGB images (B, 3, H, W) in [0, 1]."""
        return self.run(x, ["logits"])["logits"]

    def probabilities(self, x: Tensor) -> Tensor:
        """Softmax over the 1008 logits."""
        return self(x).softmax(dim=-1)
