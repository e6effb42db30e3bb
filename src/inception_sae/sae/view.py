"""A frozen view of an SAE's four tensors, as circuits and feature visualisation read them.

Circuits and feature visualisation read an SAE as plain tensors in the raw units of
its layer (``W_enc`` (d, m), ``W_dec`` (m, d), ``b_enc`` (m,), ``b_dec`` (d,)) with the
TopK rule of Gao et al. (2024): ``z = ReLU(TopK(W_enc^T (v - b_dec) + b_enc))``, or for a
BatchTopK/Matryoshka SAE its inference rule, every pre-activation above the latent's ``threshold``.
Folders are read only by :meth:`inception_sae.sae.model.TopKSAE.load`;
:meth:`~inception_sae.sae.model.TopKSAE.frozen` gives this view of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError

TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")


@dataclass(frozen=True)
class SAETensors:
    """Detached float32 SAE tensors in the raw units of ``layer``'s activations (m latents, d inputs)."""

    W_enc: Tensor  #: (d, m) encoder; column j reads feature j
    W_dec: Tensor  #: (m, d) decoder; row i writes feature i
    b_enc: Tensor  #: (m,)
    b_dec: Tensor  #: (d,)
    k: int  #: active latents per vector
    layer: str | None  #: capture name of the layer it reads, e.g. "mixed4c"
    cfg: dict[str, Any] = field(default_factory=dict)  #: the folder's cfg.json keys (empty for plain tensors)
    source: str = "tensors"  #: where the weights came from (folder path)
    threshold: Tensor | None = None  #: (m,) BatchTopK/Matryoshka inference thresholds (None: TopK)

    def __post_init__(self) -> None:
        d, m = self.W_enc.shape
        if self.W_dec.shape != (m, d) or self.b_enc.shape != (m,) or self.b_dec.shape != (d,):
            raise UserError(
                f"SAE tensors disagree: W_enc {tuple(self.W_enc.shape)}, W_dec {tuple(self.W_dec.shape)}, "
                f"b_enc {tuple(self.b_enc.shape)}, b_dec {tuple(self.b_dec.shape)}"
            )
        if self.threshold is not None and self.threshold.shape != (m,):
            raise UserError(f"SAE threshold has shape {tuple(self.threshold.shape)}, expected ({m},)")
        if not 0 < self.k <= m:
            raise UserError(f"SAE k={self.k} must be in 1..{m}")

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    d = d_in  #: the papers' names: d inputs
    m = d_sae  #: and m latents

    def preacts(self, v: Tensor) -> Tensor:
        """Encoder pre-activations ``W_enc^T (v - b_dec) + b_enc``: (B, d) -> (B, m)."""
        return (v - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """Codes: (B, d) -> ((B, w) values >= 0, (B, w) indices). TopK: w = k. Threshold: w = the most
        latents any row keeps, the rows that keep fewer padded with zero values at distinct latents."""
        pre = self.preacts(v)
        if self.threshold is None:
            values, indices = pre.topk(self.k, dim=-1)
            return values.clamp(min=0), indices
        margin = pre - self.threshold  # kept: pre > threshold
        w = max(1, int((margin > 0).sum(-1).max())) if margin.numel() else 1
        top, indices = margin.topk(min(w, self.m), dim=-1)
        values = torch.where(top > 0, pre.gather(-1, indices), torch.zeros_like(top)).clamp(min=0)
        return values, indices

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """(B, k) codes -> (B, d) reconstruction."""
        return (values.unsqueeze(-1) * self.W_dec[indices]).sum(1) + self.b_dec

    def dense_codes(self, v: Tensor) -> Tensor:
        """(B, d) -> (B, m) TopK activations with zeros elsewhere."""
        values, indices = self.encode(v)
        return torch.zeros(v.shape[0], self.m, dtype=v.dtype, device=v.device).scatter_(1, indices, values)

    def node(self, feature: int) -> str:
        """The feature's id across analyses, circuit graphs and the site, e.g. ``mixed4c/f/12``."""
        return f"{self.layer}/f/{feature}"
