"""Load an SAE folder for analysis: the package's TopKSAE when present, else a minimal reader.

The minimal reader implements the contract (``cfg.json`` + ``sae_weights.safetensors``
with ``W_enc`` (d, m), ``W_dec`` (m, d), ``b_enc`` (m,), ``b_dec`` (d,)) and
``z = ReLU(TopK(W_enc^T (x - b_dec) + b_enc))``, so the analysis never depends on
the trainer being installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError


class ContractSAE:
    """Read-only TopK SAE from a contract-format folder."""

    def __init__(self, W_enc: Tensor, W_dec: Tensor, b_enc: Tensor, b_dec: Tensor, k: int, meta: dict) -> None:
        self.W_enc, self.W_dec, self.b_enc, self.b_dec, self.k, self.meta = W_enc, W_dec, b_enc, b_dec, k, meta

    @classmethod
    def load(cls, path: str | Path) -> ContractSAE:
        from safetensors.torch import load_file

        path = Path(path)
        cfg_path, w_path = path / "cfg.json", path / "sae_weights.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise UserError(f"{path} is not an SAE folder: {p.name} is missing")
        cfg = json.loads(cfg_path.read_text())
        t = load_file(str(w_path))
        missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(t)
        if missing:
            raise UserError(f"{w_path} lacks {sorted(missing)}")
        return cls(t["W_enc"].float(), t["W_dec"].float(), t["b_enc"].float(), t["b_dec"].float(), int(cfg["k"]), cfg)

    def to(self, device: str) -> ContractSAE:
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    @torch.no_grad()
    def encode(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, d) -> values, indices (B, k)."""
        pre = (v - self.b_dec) @ self.W_enc + self.b_enc  # (B, m)
        vals, idx = pre.topk(self.k, dim=1)
        return vals.clamp_min(0), idx


def load_sae(path: str | Path, device: str = "cpu") -> tuple[Any, dict]:
    """(sae with ``encode``/``W_dec``, cfg dict) from an SAE folder."""
    path = Path(path)
    if not (path / "cfg.json").is_file():
        raise UserError(f"{path} is not an SAE folder: cfg.json is missing")
    cfg = json.loads((path / "cfg.json").read_text())
    try:
        from ..sae.model import TopKSAE
    except ImportError:
        return ContractSAE.load(path).to(device), cfg
    return TopKSAE.load(path, device=device), cfg


def decoder(sae) -> Tensor:
    """(m, d) decoder rows as a detached float tensor."""
    return sae.W_dec.detach().float().cpu()
