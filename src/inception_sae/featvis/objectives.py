"""Feature-visualisation objectives: small composable objects scored per image.

An :class:`Objective` names the layers it needs (so ``render`` can stop the
forward pass there) and maps captured activations ``{layer: (B, C, H, W)}`` to
one score per image, shape (B,), to be **maximised**. Objectives compose with
``+``, ``-``, unary ``-`` and scalar ``*`` / ``/``, and carry a description.

Unit arguments (``n``, ``feature``) take an int (every image gets that unit) or
a sequence of length B (image ``i`` gets unit ``i``), which is how one batch
renders many different features at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.layers import layer_info

Acts = Mapping[str, Tensor]
Units = int | Sequence[int] | Tensor
#: Lucid clamps the cosine at 0.1 before raising it to a power (``direction_neuron``).
COSSIM_FLOOR = 0.1


class Objective:
    """A per-image score ``fn(acts) -> (B,)`` plus the layers it reads and a description."""

    def __init__(self, fn: Callable[[Acts], Tensor], layers: Sequence[str], description: str) -> None:
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.description = description

    def __call__(self, acts: Acts) -> Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.description} + {other}")
        return Objective(
            lambda a: self(a) + other(a), self.layers + other.layers, f"{self.description} + {other.description}"
        )

    def __radd__(self, other: float) -> Objective:
        # lets sum([obj1, obj2]) start from 0
        return self if other == 0 else self + other

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self(a), self.layers, f"-({self.description})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Objective(lambda a: k * self(a), self.layers, f"{k:g} * ({self.description})")

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)


# -- helpers -------------------------------------------------------------------


def _units(units: Units, batch: int, device: torch.device) -> Tensor:
    """Unit index per image, (B,) long."""
    t = torch.as_tensor(units, device=device, dtype=torch.long)
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"got {t.numel()} units for a batch of {batch} images")
    return t


def _gather_channels(x: Tensor, units: Units) -> Tensor:
    """x[i, units[i]] for each image: (B, C, H, W) -> (B, H, W)."""
    idx = _units(units, x.shape[0], x.device)
    return x[torch.arange(x.shape[0], device=x.device), idx]


def _reduce(maps: Tensor, at: str | tuple[int, int]) -> Tensor:
    """(B, H, W) -> (B,): the centre position, the mean over positions, or a given (y, x)."""
    if at == "mean":
        return maps.mean(dim=(1, 2))
    if at == "center":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    if isinstance(at, tuple):
        return maps[:, at[0], at[1]]
    raise ValueError(f"position must be 'center', 'mean' or (y, x), got {at!r}")


def _slice_name(layer: str, branch: str | None) -> tuple[str, slice, str]:
    """Where to read: the block, its channel slice for ``branch``, and a label."""
    if branch is None:
        return layer, slice(None), layer
    start, stop = layer_info(layer).branch(branch).slice
    return layer, slice(start, stop), f"{layer}[{branch} {start}:{stop}]"


def _label(units: Units) -> str:
    t = torch.as_tensor(units)
    if t.dim() == 0:
        return str(int(t))
    vals = t.tolist()
    if len(vals) == 1:
        return str(vals[0])
    return str(vals) if len(vals) <= 6 else f"[{vals[0]}, {vals[1]}, ... {vals[-1]}] ({len(vals)} units)"


# -- unit objectives -----------------------------------------------------------


def channel(layer: str, n: Units, branch: str | None = None) -> Objective:
    """Mean over positions of channel ``n`` (indexed within ``branch`` when given)."""
    return neuron(layer, n, at="mean", branch=branch)


def neuron(layer: str, n: Units, at: str | tuple[int, int] = "center", branch: str | None = None) -> Objective:
    """Channel ``n`` at the centre position (or ``at=(y, x)``, or ``"mean"``)."""
    src, sl, label = _slice_name(layer, branch)

    def fn(acts: Acts) -> Tensor:
        return _reduce(_gather_channels(acts[src][:, sl], n), at)

    kind = "channel" if at == "mean" else "neuron"
    return Objective(fn, [src], f"{kind} {label}:{_label(n)}" + ("" if at in ("mean", "center") else f"@{at}"))


def direction(
    layer: str,
    vectors: Tensor,
    *,
    cossim_pow: float = 1.0,
    at: str | tuple[int, int] = "mean",
    branch: str | None = None,
    offset: Tensor | None = None,
) -> Objective:
    """Lucid's direction score ``dot(v, a) * max(cos(v, a), 0.1) ** p`` per position.

    ``vectors`` is (C,) for one direction or (B, C) for one per image; with
    ``cossim_pow = 0`` this is the plain dot product. ``offset`` (C,) is
    subtracted from the activations first (e.g. an SAE's ``b_dec``).
    """
    src, sl, label = _slice_name(layer, branch)

    def fn(acts: Acts) -> Tensor:
        a = acts[src][:, sl]  # (B, C, H, W)
        if offset is not None:
            a = a - offset.to(a)[:, None, None]
        v = vectors.to(a)
        v = v.expand(a.shape[0], -1) if v.dim() == 1 else v  # (B, C)
        dot = torch.einsum("bchw,bc->bhw", a, v)
        score = dot
        if cossim_pow:
            cos = dot / (a.norm(dim=1) * v.norm(dim=1)[:, None, None] + 1e-8)
            score = dot * cos.clamp(min=COSSIM_FLOOR) ** cossim_pow
        return _reduce(score, at)

    return Objective(fn, [src], f"direction {label} cos^{cossim_pow:g} ({at})")


# -- SAE features --------------------------------------------------------------


class SAEWeightsLike(Protocol):
    """Anything with an SAE's weights (raw activation units) and its layer (read-only: frozen tensors fit)."""

    @property
    def W_enc(self) -> Tensor: ...  # (d_in, d_sae)
    @property
    def W_dec(self) -> Tensor: ...  # (d_sae, d_in)
    @property
    def b_enc(self) -> Tensor: ...  # (d_sae,)
    @property
    def b_dec(self) -> Tensor: ...  # (d_in,)
    @property
    def layer(self) -> str | None: ...  # None: unknown, refused by the SAE objectives


def _sae_layer(sae: SAEWeightsLike) -> str:
    if sae.layer is None:
        raise ValueError("the SAE does not name the layer it reads")
    return sae.layer


def sae_encoder(
    sae: SAEWeightsLike, feature: Units, at: str | tuple[int, int] = "center", branch: str | None = None
) -> Objective:
    """The feature's encoder pre-activation ``w_enc_f . (a - b_dec) + b_enc_f``.

    Read at the centre position (default) or averaged over positions. This is
    the quantity whose top-k the SAE keeps, so raising it is raising the
    feature's activation (before the TopK competition). With ``branch`` only
    that branch's channel slice of the dot product counts (no bias): what the
    feature reads from one branch, e.g. its 5x5 part.
    """
    W_enc, b_enc, b_dec, layer = sae.W_enc, sae.b_enc, sae.b_dec, _sae_layer(sae)
    _, sl, label = _slice_name(layer, branch)

    def fn(acts: Acts) -> Tensor:
        a = acts[layer][:, sl]  # (B, d_branch, H, W)
        idx = _units(feature, a.shape[0], a.device)
        w = W_enc.to(a)[sl][:, idx].T  # (B, d_branch)
        pre = torch.einsum("bchw,bc->bhw", a - b_dec.to(a)[sl, None, None], w)
        if branch is None:
            pre = pre + b_enc.to(a)[idx][:, None, None]
        return _reduce(pre, at)

    return Objective(fn, [layer], f"sae encoder {label}/f:{_label(feature)} ({at})")


def sae_decoder(
    sae: SAEWeightsLike,
    feature: Units,
    *,
    branch: str | None = None,
    cossim_pow: float = 1.0,
    at: str | tuple[int, int] = "center",
) -> Objective:
    """Lucid's direction score along the feature's decoder row, on ``a - b_dec``.

    With ``branch``, the direction and the activations are restricted to that
    branch's channel slice.
    """
    idx, layer = torch.as_tensor(feature, dtype=torch.long), _sae_layer(sae)
    _, sl, _ = _slice_name(layer, branch)
    W_dec, b_dec = sae.W_dec[:, sl], sae.b_dec[sl]
    obj = direction(layer, W_dec[idx], cossim_pow=cossim_pow, at=at, offset=b_dec, branch=branch)
    obj.description = f"sae decoder {sae.layer}/f:{_label(feature)} cos^{cossim_pow:g} ({at})"
    return obj


# -- diversity -----------------------------------------------------------------


def diversity(layer: str, groups: Sequence[Any] | None = None) -> Objective:
    """Negative Gram-matrix similarity to the other images of the same group.

    Per image i: ``-sum_{j != i, group_j == group_i} <G_i, G_j> / n_i`` over
    L2-normalised Gram matrices of ``layer``, with ``n_i`` the size of i's group.
    Summed over a group this is exactly Lucid's diversity term (which divides
    the batch's sum by the batch size), so Lucid's weights of about 1e2 to 1e3
    apply. ``groups`` (length B) keeps several features' variants in one batch
    apart: images only push away from their own feature's variants; ``None``
    puts the whole batch in one group.
    """

    def fn(acts: Acts) -> Tensor:
        a = acts[layer]
        b, c = a.shape[:2]
        flat = a.reshape(b, c, -1)
        grams = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).reshape(b, -1), dim=1)  # (B, C*C)
        sim = grams @ grams.T  # (B, B)
        if groups is None:
            mask = torch.ones(b, b, dtype=torch.bool, device=a.device)
        elif len(groups) != b:
            raise ValueError(f"diversity got {len(groups)} group labels for a batch of {b} images")
        else:
            mask = torch.tensor([[gi == gj for gj in groups] for gi in groups], device=a.device)
        size = mask.sum(1).to(sim.dtype)  # group size incl. the image itself
        mask = mask & ~torch.eye(b, dtype=torch.bool, device=a.device)
        return -(sim * mask).sum(dim=1) / size

    return Objective(fn, [layer], f"diversity {layer}")
