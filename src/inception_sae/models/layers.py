"""InceptionV1 (inception5h) architecture as data.

Everything the rest of the package needs to know about the network's shape lives
here: the order of stages, the inception blocks' branch widths and concat
slices, and per-layer geometry (spatial size, jump, receptive field, the input
pixel at which unit 0 is centred), all derived from the kernel sizes, strides and
TF "SAME" padding rather than typed in by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import UnknownNameError

#: Order in which inception blocks concatenate their branches (the concat of the inception5h graph).
BRANCH_ORDER = ("1x1", "3x3", "5x5", "pool")

#: Per block: in, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce.
BLOCK_SPECS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "mixed3a": (192, 64, 96, 128, 16, 32, 32),
    "mixed3b": (256, 128, 128, 192, 32, 96, 64),
    "mixed4a": (480, 192, 96, 204, 16, 48, 64),
    "mixed4b": (508, 160, 112, 224, 24, 64, 64),
    "mixed4c": (512, 128, 128, 256, 24, 64, 64),
    "mixed4d": (512, 112, 144, 288, 32, 64, 64),
    "mixed4e": (528, 256, 160, 320, 32, 128, 128),
    "mixed5a": (832, 256, 160, 320, 48, 128, 128),
    "mixed5b": (832, 384, 192, 384, 48, 128, 128),
}

#: The network as a sequence of stages: (name, kind, kernel, stride, out channels).
#: ``kind`` is one of conv, maxpool, lrn, mixed. Channels of mixed blocks are the
#: concatenation width.
STAGES: tuple[tuple[str, str, int, int, int], ...] = (
    ("conv2d0", "conv", 7, 2, 64),
    ("maxpool0", "maxpool", 3, 2, 64),
    ("localresponsenorm0", "lrn", 1, 1, 64),
    ("conv2d1", "conv", 1, 1, 64),
    ("conv2d2", "conv", 3, 1, 192),
    ("localresponsenorm1", "lrn", 1, 1, 192),
    ("maxpool1", "maxpool", 3, 2, 192),
    ("mixed3a", "mixed", 5, 1, 256),
    ("mixed3b", "mixed", 5, 1, 480),
    ("maxpool4", "maxpool", 3, 2, 480),
    ("mixed4a", "mixed", 5, 1, 508),
    ("mixed4b", "mixed", 5, 1, 512),
    ("mixed4c", "mixed", 5, 1, 512),
    ("mixed4d", "mixed", 5, 1, 528),
    ("mixed4e", "mixed", 5, 1, 832),
    ("maxpool10", "maxpool", 3, 2, 832),
    ("mixed5a", "mixed", 5, 1, 832),
    ("mixed5b", "mixed", 5, 1, 1024),
)
STAGE_NAMES = tuple(s[0] for s in STAGES)
MIXED_LAYERS = tuple(name for name, kind, *_ in STAGES if kind == "mixed")
NUM_CLASSES = 1008
#: Sub-layers of a block that can be captured in addition to its four branches.
BLOCK_INTERNALS = ("3x3_bottleneck", "5x5_bottleneck", "pool_reduce")


def tf_same_pad(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis of length ``n``.

    ``pad_total = max((ceil(n / s) - 1) * s + k - n, 0)``; the odd pixel goes
    after (right/bottom), as TensorFlow does.
    """
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class BranchInfo:
    """One branch of an inception block, as it appears in the concatenation."""

    name: str  #: "1x1", "3x3", "5x5" or "pool"
    channels: int
    slice: tuple[int, int]  #: (start, stop) channel range in the block output
    kernel: int  #: spatial kernel of the branch (pool branch: its 3x3 max pool)
    rf: int  #: receptive field of the branch's units, in input pixels
    layer: str  #: capture name, e.g. "mixed4d_5x5"


@dataclass(frozen=True)
class LayerInfo:
    """Geometry of a capturable layer at a given input size.

    A unit at grid position ``i`` (along one axis) is centred on input pixel
    ``offset + jump * i`` and sees ``rf`` pixels around it (clipped to the image).
    """

    name: str
    kind: str  #: conv, maxpool, lrn, mixed, branch, internal
    channels: int
    size: int  #: spatial height/width of the output at ``input_size``
    jump: int  #: stride in input pixels between neighbouring units
    rf: int  #: theoretical receptive field in input pixels
    offset: float  #: input pixel at which unit 0 is centred
    input_size: int = 224
    branches: tuple[BranchInfo, ...] = ()
    parent: str | None = None  #: block of a branch or internal layer

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the captured activation at ``input_size``."""
        return (self.channels, self.size, self.size)

    def branch(self, name: str) -> BranchInfo:
        """The branch record called ``name`` ("1x1", "3x3", "5x5", "pool")."""
        for b in self.branches:
            if b.name == name:
                return b
        raise UnknownNameError(f"{self.name} has no branch {name!r}; branches: {[b.name for b in self.branches]}")

    def center(self, i: int) -> float:
        """Input-pixel coordinate of the centre of unit ``i`` along one axis."""
        return self.offset + self.jump * i

    def rf_box(self, y: int, x: int, rf: int | None = None) -> tuple[int, int, int, int]:
        """Receptive-field box (top, left, bottom, right), clipped, end-exclusive.

        ``rf`` overrides the layer's receptive field (e.g. one branch's).
        """
        rf = self.rf if rf is None else rf
        half = (rf - 1) / 2
        top = max(0, math.floor(self.center(y) - half + 0.5))
        left = max(0, math.floor(self.center(x) - half + 0.5))
        bottom = min(self.input_size, math.floor(self.center(y) + half + 0.5) + 1)
        right = min(self.input_size, math.floor(self.center(x) + half + 0.5) + 1)
        return top, left, bottom, right


def block_branches(name: str) -> tuple[tuple[str, int], ...]:
    """(branch, channels) of a block in concat order."""
    _, c1, _, c3, _, c5, cp = BLOCK_SPECS[name]
    return (("1x1", c1), ("3x3", c3), ("5x5", c5), ("pool", cp))


@lru_cache(maxsize=32)
def _geometry(input_size: int) -> dict[str, LayerInfo]:
    """Walk the stages once, tracking size, jump, RF and unit-0 centre."""
    infos: dict[str, LayerInfo] = {}
    n, jump, rf, offset = input_size, 1, 1, 0.0
    for name, kind, kernel, stride, channels in STAGES:
        if kind == "mixed":
            infos.update(_block_infos(name, n, jump, rf, offset, input_size))
            rf = rf + (kernel - 1) * jump
        elif kind in ("conv", "maxpool"):
            before, _ = tf_same_pad(n, kernel, stride)
            offset = offset + ((kernel - 1) / 2 - before) * jump
            rf = rf + (kernel - 1) * jump
            jump *= stride
            n = math.ceil(n / stride)
        infos[name] = LayerInfo(
            name=name,
            kind=kind,
            channels=channels,
            size=n,
            jump=jump,
            rf=rf,
            offset=offset,
            input_size=input_size,
            branches=infos[name].branches if name in infos else (),
        )
    return infos


def _block_infos(name: str, n: int, jump: int, rf_in: int, offset: float, input_size: int) -> dict[str, LayerInfo]:
    """Records for a block, its branches and its internal sub-layers."""
    _, _c1, cb3, _c3, cb5, _c5, cp = BLOCK_SPECS[name]
    kernels = {"1x1": 1, "3x3": 3, "5x5": 5, "pool": 3}
    branches, start = [], 0
    for branch, channels in block_branches(name):
        rf = rf_in + (kernels[branch] - 1) * jump
        branches.append(
            BranchInfo(branch, channels, (start, start + channels), kernels[branch], rf, f"{name}_{branch}")
        )
        start += channels
    common: dict[str, Any] = dict(size=n, jump=jump, offset=offset, input_size=input_size, parent=name)
    infos = {b.layer: LayerInfo(name=b.layer, kind="branch", channels=b.channels, rf=b.rf, **common) for b in branches}
    for internal, channels in (("3x3_bottleneck", cb3), ("5x5_bottleneck", cb5), ("pool_reduce", cp)):
        rf = rf_in + 2 * jump if internal == "pool_reduce" else rf_in
        infos[f"{name}_{internal}"] = LayerInfo(
            name=f"{name}_{internal}", kind="internal", channels=channels, rf=rf, **common
        )
    infos[name] = LayerInfo(
        name=name,
        kind="mixed",
        channels=start,
        size=n,
        jump=jump,
        rf=max(b.rf for b in branches),
        offset=offset,
        input_size=input_size,
        branches=tuple(branches),
    )
    return infos


def layer_names(include_branches: bool = True) -> list[str]:
    """All capturable layer names in forward order (branches after their block)."""
    names = []
    for stage in STAGE_NAMES:
        names.append(stage)
        if stage in BLOCK_SPECS and include_branches:
            names += [f"{stage}_{b}" for b in BRANCH_ORDER] + [f"{stage}_{i}" for i in BLOCK_INTERNALS]
    return [*names, "avgpool", "logits"]


def layer_info(name: str, input_size: int = 224) -> LayerInfo:
    """Geometry record of a capturable layer; an ``UnknownNameError`` (a KeyError) otherwise."""
    infos = _geometry(input_size)
    if name == "avgpool":
        return LayerInfo("avgpool", "pool", 1024, 1, 0, 0, 0.0, input_size)
    if name == "logits":
        return LayerInfo("logits", "fc", NUM_CLASSES, 1, 0, 0, 0.0, input_size)
    if name not in infos:
        raise UnknownNameError(unknown_layer_message(name))
    return infos[name]


def spatial_layer_info(name: str, input_size: int = 224) -> LayerInfo:
    """:func:`layer_info` of a layer with spatial positions (what harvest, SAEs and analyses take)."""
    info = layer_info(name, input_size)
    if name in ("avgpool", "logits"):
        raise UnknownNameError(
            f"layer {name!r} has one vector per image, not a spatial map; harvest, train and analyze take the "
            "conv and mixed layers and their branches (e.g. mixed5b)"
        )
    if info.size < 1:
        raise UnknownNameError(f"layer {name!r} has no positions at input size {input_size} px; use larger images")
    return info


def unknown_layer_message(name: str) -> str:
    """One-line error naming close matches."""
    import difflib

    close = difflib.get_close_matches(name, layer_names(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown layer {name!r}.{hint} Run `inception-sae layers` to list them."


def stage_of(name: str) -> str:
    """The top-level stage that produces layer ``name`` (a block for its branches)."""
    if name in ("avgpool", "logits") or name in STAGE_NAMES:
        return name
    info = layer_info(name)
    assert info.parent is not None
    return info.parent
