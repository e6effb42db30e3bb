"""Hand-made SAE folders in the format of docs/formats.md, "SAE folder", for the analysis tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

#: The ``data`` record of a hand-made SAE folder: no harvest, so no training positions to replay.
HAND_MADE = {"rule": None, "rule_reason": "a hand-made test SAE: no harvest"}


def write_sae(folder: Path, W_dec: torch.Tensor, layer: str, k: int = 8, model: str = "random:0",
              data: dict | None = HAND_MADE) -> Path:  # fmt: skip
    """cfg.json + sae_weights.safetensors with W_enc = W_dec^T, zero biases (raw activation units).

    ``data`` is cfg.json's record of the training data (None: no record, as in folders made elsewhere).
    """
    folder.mkdir(parents=True, exist_ok=True)
    m, d = W_dec.shape
    tensors = {"W_enc": W_dec.T.contiguous().float(), "W_dec": W_dec.contiguous().float(),
               "b_enc": torch.zeros(m), "b_dec": torch.zeros(d)}  # fmt: skip
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    cfg = {"d_in": d, "d_sae": m, "k": k, "architecture": "topk", "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "layer": layer, "model": model,
           "tie": "init", **({"data": data} if data is not None else {})}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def unit_rows(W: torch.Tensor) -> torch.Tensor:
    return W / W.norm(dim=1, keepdim=True)
