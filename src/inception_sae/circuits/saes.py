"""A read-only view of a TopK SAE's four tensors, as circuits need them.

Circuits only need the contract tensors (``W_enc`` (d, m), ``W_dec`` (m, d),
``b_enc`` (m,), ``b_dec`` (d,)) and the TopK rule, so this view accepts a
folder in the contract format, a ``TopKSAE`` or plain tensors
(tests build planted circuits from tensors directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UserError
from ..models.layers import layer_info

TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")


@dataclass(frozen=True)
class SAEView:
    """Frozen SAE tensors in the raw units of ``layer``'s activations."""

    W_enc: Tensor  #: (d, m) encoder; column j reads feature j
    W_dec: Tensor  #: (m, d) decoder; row i writes feature i
    b_enc: Tensor  #: (m,)
    b_dec: Tensor  #: (d,)
    k: int  #: active latents per vector
    layer: str  #: layer the SAE reads, e.g. "mixed4c"
    source: str = "tensors"  #: where the weights came from (folder path)

    def __post_init__(self) -> None:
        d, m = self.W_enc.shape
        if self.W_dec.shape != (m, d) or self.b_enc.shape != (m,) or self.b_dec.shape != (d,):
            raise UserError(
                f"SAE tensors disagree: W_enc {tuple(self.W_enc.shape)}, W_dec {tuple(self.W_dec.shape)}, "
                f"b_enc {tuple(self.b_enc.shape)}, b_dec {tuple(self.b_dec.shape)}"
            )
        if not 0 < self.k <= m:
            raise UserError(f"SAE k={self.k} must be in 1..{m}")

    @property
    def d(self) -> int:
        return self.W_enc.shape[0]

    @property
    def m(self) -> int:
        return self.W_enc.shape[1]

    def preacts(self, v: Tensor) -> Tensor:
        """Encoder pre-activations ``W_enc^T (v - b_dec) + b_enc``: (B, d) -> (B, m)."""
        return (v - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """TopK codes: (B, d) -> ((B, k) values >= 0, (B, k) indices)."""
        values, indices = self.preacts(v).topk(self.k, dim=-1)
        return values.clamp(min=0), indices

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """(B, k) codes -> (B, d) reconstruction."""
        return (values.unsqueeze(-1) * self.W_dec[indices]).sum(1) + self.b_dec

    def dense_codes(self, v: Tensor) -> Tensor:
        """(B, d) -> (B, m) TopK activations with zeros elsewhere."""
        values, indices = self.encode(v)
        return torch.zeros(v.shape[0], self.m, dtype=v.dtype, device=v.device).scatter_(1, indices, values)

    def node(self, feature: int) -> str:
        """Graph node id of a feature, e.g. ``mixed4c/f/12``."""
        return f"{self.layer}/f/{feature}"

    @classmethod
    def from_module(cls, sae, layer: str | None = None) -> SAEView:
        """A view of any object with the contract tensors (e.g. ``TopKSAE``)."""
        tensors = {n: getattr(sae, n).detach().float() for n in TENSORS}
        layer = layer or getattr(sae, "layer", None)
        if not layer:
            raise UserError("the SAE does not say which layer it reads; pass layer=")
        return cls(**tensors, k=int(sae.k), layer=layer)


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SAEView:
    """Read an SAE folder (contract format) through ``TopKSAE.load`` and view its tensors."""
    from ..sae import TopKSAE

    sae = TopKSAE.load(path, device=device)
    if not sae.layer:
        raise UserError(f"{Path(path) / 'cfg.json'} has no 'layer'; circuits need to know which layer the SAE reads")
    view = SAEView.from_module(sae)
    view = SAEView(view.W_enc, view.W_dec, view.b_enc, view.b_dec, view.k, view.layer, source=str(path))
    if layer_info(view.layer).channels != view.d:
        channels = layer_info(view.layer).channels
        raise UserError(f"{path}: layer {view.layer} has {channels} channels but the SAE has d={view.d}")
    return view


def dominant_branches(
    W_dec: Tensor, layer: str, scale: Tensor | None = None, n_max: int | None = None, seed: int = 0
) -> tuple[list[str], Tensor]:
    """The analysis's dominant branch per feature ("none" if no branch is significant), and the shares (m, 4).

    Same definition as ``analyze`` (:func:`inception_sae.analysis.branches.dominant_branches`):
    the most significant branch of the positive-part share under the permutation
    null, if its Benjamini-Hochberg q <= 0.01. ``scale`` is the null's per-channel
    scale (``null_channel_scale`` of the layer's ``branches.json``; None: 1).
    """
    from ..analysis import branches as br

    branches = layer_info(layer).branches
    if not branches:
        raise UserError(f"{layer} is not an inception block; it has no branches")
    slices, names = [b.slice for b in branches], [b.name for b in branches]
    stats = br.branch_stats(W_dec, slices, names, scale, n_max or br.N_MAX, seed)
    return stats.dominant_names(), stats.shares["pos"]
